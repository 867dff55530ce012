//! Files mxgate reads that never end or never open: devices and FIFOs
//! named as `--https-ca`, planted at a cache copy's path or over
//! /etc/resolv.conf, and files larger than their bound.

use std::os::unix::process::CommandExt as _;

use super::*;

/// How long any of these commands may take: they must fail at once, not
/// after a timeout of theirs.
const PROMPT: Duration = Duration::from_secs(20);

/// Runs `cmd` (stdin closed) with its address space capped, so that a
/// command reading without a bound fails instead of taking the machine's
/// memory; kills it if it is still running after [`PROMPT`].
fn run_bounded(mut cmd: Command) -> Output {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mxgate");
    let deadline = Instant::now() + PROMPT;
    while child.try_wait().expect("waiting for mxgate").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {PROMPT:?} (it hangs): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("mxgate's output")
}

fn mkfifo(path: &Path) {
    must({
        let mut c = Command::new("mkfifo");
        c.arg(path);
        c
    });
}

#[test]
fn files_that_never_end_or_never_open_are_refused_at_once() {
    let h = Host::new("ho-reads");
    let before = Live::of(h.mx());
    let server = Https::start(&h.s.wire.server, |path| match path {
        "/list.txt" => Reply::Body(b"192.0.2.0/24\n2001:db8:5e::/48\n".to_vec()),
        _ => Reply::Status(503),
    })
    .unwrap();
    let list = server.url("/list.txt");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.fifo");
    mkfifo(&fifo);
    let huge = dir.path().join("huge.pem");
    fs::File::create(&huge).unwrap().set_len(64 << 20).unwrap();

    // --https-ca: a device (it grew to 22 GB), a FIFO (it waits for a
    // writer), a directory, a file far larger than any CA bundle.
    for (ca, needle) in [
        (
            "/dev/zero".to_owned(),
            "--https-ca: reading /dev/zero: not a regular file",
        ),
        (fifo.display().to_string(), "not a regular file"),
        (dir.path().display().to_string(), "not a regular file"),
        (huge.display().to_string(), "larger than 4194304 bytes"),
    ] {
        for command in ["refresh", "check"] {
            let out = run_bounded(
                h.mx()
                    .command(&[command, "--ranges", &list, "--https-ca", &ca]),
            );
            judge(&out, 2, needle);
        }
    }

    // A FIFO at a cache copy's path, the source down: the copy is not
    // opened (it would wait for a writer, past --fetch-timeout).
    let cache_dir = dir.path().join("cache");
    fs::create_dir(&cache_dir).unwrap();
    fs::set_permissions(&cache_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let down = server.url("/down.txt");
    mkfifo(&filter_user::sources::cache_path(&cache_dir, &down));
    let cache_arg = cache_dir.display().to_string();
    let ca = ca_of(&server);
    let fallback = |source: &str, extra: &[&str]| {
        let mut args = vec![
            "refresh",
            "--ranges",
            source,
            "--https-ca",
            &ca,
            "--cache-dir",
            &cache_arg,
            "--use-cache-on-failure",
            "--fetch-timeout",
            "3",
        ];
        args.extend_from_slice(extra);
        run_bounded(h.mx().command(&args))
    };
    let out = judge(&fallback(&down, &[]), 1, "HTTP status 503");
    assert!(
        out.contains("not using the copy") && out.contains("not a regular file"),
        "{out}"
    );

    // A copy larger than --max-download is not read.
    let big = server.url("/big.txt");
    let copy = filter_user::sources::cache_path(&cache_dir, &big);
    fs::write(&copy, "192.0.2.0/24\n".repeat(200)).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600)).unwrap();
    let out = judge(
        &fallback(&big, &["--max-download", "1000"]),
        1,
        "HTTP status 503",
    );
    assert!(
        out.contains("not using the copy") && out.contains("larger than 1000 bytes"),
        "{out}"
    );
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}

#[test]
fn a_fifo_over_resolv_conf_does_not_hang_an_spf_source() {
    let h = Host::new("ho-resolv");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("resolv.fifo");
    mkfifo(&fifo);
    // In a mount namespace of its own, /etc/resolv.conf is the FIFO.
    let inner = h.mx().command(&["check", "--ranges", "spf:_spf.svc.test"]);
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#)
        .arg(&fifo)
        .arg(inner.get_program())
        .args(inner.get_args());
    let out = run_bounded(cmd);
    judge(&out, 1, "/etc/resolv.conf: not a regular file");
}
