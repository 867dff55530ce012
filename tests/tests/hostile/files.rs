//! Files mxgate writes and reads outside bpffs: planted temporaries, untrusted caches.

use super::*;

// ---------------------------------------------------------------------
// Files mxgate writes and reads outside bpffs (case 10).

#[test]
fn planted_temporaries_and_untrusted_caches_are_not_followed_or_used() {
    let h = Host::new("ho-files");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("shadow");
    fs::write(&secret, "root:secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    // The old predictable temporary names, planted as symlinks.
    let prom = dir.path().join("mxgate.prom");
    symlink(&secret, dir.path().join("mxgate.prom.tmp")).unwrap();
    // And a symlink at the metrics file itself.
    symlink(&secret, &prom).unwrap();
    let mut run = h.mx().start(&[
        "run",
        "--log-format",
        "json",
        "--prom-file",
        &prom.display().to_string(),
    ]);
    let _ = run.lines().next();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::symlink_metadata(&prom)
        .unwrap()
        .file_type()
        .is_symlink()
    {
        assert!(
            Instant::now() < deadline,
            "the metrics file was never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(run.signal(libc::SIGTERM).success());
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root:secret\n");
    assert!(
        fs::read_to_string(&prom)
            .unwrap()
            .contains("mxgate_syns_total")
    );

    // A cache written by someone else is never applied.
    let before = Live::of(h.mx());
    let failing = Https::start(&h.s.wire.server, |_| Reply::Status(500)).unwrap();
    let url = failing.url("/list.txt");
    let ca = ca_of(&failing);
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("cache");
    let cache_arg = cache_dir.display().to_string();
    // A good copy made by mxgate itself first: the directory is mxgate's.
    let good = Https::start(&h.s.wire.server, |_| {
        Reply::Body(b"192.0.2.0/24\n2001:db8:5e::/48\n".to_vec())
    })
    .unwrap();
    let good_url = good.url("/list.txt");
    h.expect(
        0,
        &[
            "refresh",
            "--ranges",
            &good_url,
            "--https-ca",
            &ca_of(&good),
            "--cache-dir",
            &cache_arg,
        ],
        "no change",
    );
    let copy = cache_dir.join(&cached_copies(&cache_dir)[0]);
    assert_eq!(
        fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An everyone-in list planted under the name the failing source uses.
    let planted = filter_user::sources::cache_path(&cache_dir, &url);
    fs::write(&planted, "0.0.0.0/1\n128.0.0.0/2\n").unwrap();
    let args = [
        "refresh",
        "--ranges",
        url.as_str(),
        "--https-ca",
        ca.as_str(),
        "--use-cache-on-failure",
        "--cache-dir",
        cache_arg.as_str(),
    ];
    for (owner, mode, needle) in [
        (NOBODY, 0o600, "is owned by uid 65534"),
        (0, 0o666, "is writable by everyone"),
    ] {
        std::os::unix::fs::chown(&planted, Some(owner), Some(owner)).unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(mode)).unwrap();
        let out = h.expect(1, &args, "failed: HTTP status 500 (nothing changed)");
        assert!(out.contains("not using the copy"), "{out}");
        assert!(out.contains(needle), "{out}");
        assert_eq!(Live::of(h.mx()), before);
    }
    // A trusted copy (root's, 0600) that holds host bits is damaged, not
    // widened into 192.0.2.0/24: refused like a cut-off download.
    fs::write(&planted, "192.0.2.77/24\n").unwrap();
    std::os::unix::fs::chown(&planted, Some(0), Some(0)).unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o600)).unwrap();
    let out = h.expect(1, &args, "failed: HTTP status 500 (nothing changed)");
    assert!(
        out.contains("not using the copy") && out.contains("(cached):1: host bits"),
        "{out}"
    );
    assert_eq!(Live::of(h.mx()), before);
    // A cache directory that is a symlink is neither written nor read.
    let elsewhere = tempfile::tempdir().unwrap();
    let link = cache.path().join("linked");
    symlink(elsewhere.path(), &link).unwrap();
    let out = h.expect(
        0,
        &[
            "refresh",
            "--ranges",
            &good_url,
            "--https-ca",
            &ca_of(&good),
            "--cache-dir",
            &link.display().to_string(),
        ],
        "no change",
    );
    assert!(
        out.contains("could not keep a copy") && out.contains("symbolic link"),
        "{out}"
    );
    assert!(fs::read_dir(elsewhere.path()).unwrap().next().is_none());
    h.protects();
}
