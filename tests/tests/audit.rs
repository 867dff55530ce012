//! `mxgate audit`: the logs real MTAs write (Postfix and Exim in the
//! mail server's namespace, swaks in the internet's, listed and unlisted
//! senders, accepted and rejected mail) audited against the list, and a
//! corpus of real-shaped log lines (tests/mta-logs) with their odd forms;
//! logs as files, rotated .gz files and standard input; memory that stays
//! flat however long the log streamed through standard input is.

use std::{
    io::{BufWriter, Write as _},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output, Stdio},
};

use mxgate_tests::{
    cli::binary,
    env_u64,
    exim::Exim,
    postfix::Postfix,
    scenario::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, SERVER_V4, SERVER_V6, Setup},
    swaks::{Mail, send},
};
use serde::Deserialize;
use serde_json::Value;

/// The corpus directory.
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mta-logs")
}

/// `mxgate audit ARGS`, in UTC (the corpus's stamps without an offset are
/// local time), with `stdin` as standard input.
fn audit(args: &[&str], stdin: Stdio) -> Output {
    Command::new(binary())
        .arg("audit")
        .args(args)
        .env("TZ", "UTC")
        .stdin(stdin)
        .output()
        .expect("running mxgate audit")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn counts(v: &Value) -> [u64; 4] {
    ["connections", "accepted", "rejected", "incomplete"].map(|k| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("no count {k} in {v}"))
    })
}

/// The blocks of a report: [prefix, connections, accepted, rejected, incomplete].
fn blocks(report: &Value) -> Vec<(String, [u64; 4])> {
    report["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| {
            (
                b["prefix"].as_str().expect("a prefix").to_owned(),
                counts(b),
            )
        })
        .collect()
}

#[derive(Deserialize)]
struct Expected {
    log: Vec<ExpectedLog>,
}

#[derive(Deserialize)]
struct ExpectedLog {
    file: String,
    exit: i32,
    events: u64,
    unreadable: u64,
    other_services: u64,
    allowed: [u64; 4],
    loopback: [u64; 4],
    blocks: Vec<(String, u64, u64, u64, u64)>,
    first_event: Option<String>,
    last_event: Option<String>,
    names: Option<Vec<String>>,
}

fn gzip(path: &Path, to: &Path) {
    let out = Command::new("gzip")
        .arg("-c")
        .arg(path)
        .output()
        .expect("running gzip");
    assert!(out.status.success());
    std::fs::write(to, out.stdout).unwrap();
}

#[test]
fn the_corpus_of_real_shaped_lines_is_read_as_expected_from_files_gz_and_stdin() {
    let dir = corpus();
    let expected: Expected =
        toml::from_str(&std::fs::read_to_string(dir.join("expected.toml")).unwrap()).unwrap();
    let ranges = dir.join("ranges.txt").display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(expected.log.len(), 7);
    for e in &expected.log {
        let path = dir.join(&e.file);
        let gz = tmp.path().join(format!("{}.1.gz", e.file));
        gzip(&path, &gz);
        let file = path.display().to_string();
        let gz = gz.display().to_string();
        for (how, args, stdin) in [
            ("file", vec!["--mta-log", &file], Stdio::null()),
            ("gz", vec!["--mta-log", &gz], Stdio::null()),
            (
                "stdin",
                vec!["--mta-log", "-"],
                Stdio::from(std::fs::File::open(&path).unwrap()),
            ),
        ] {
            let what = format!("{} ({how})", e.file);
            let mut all = args.clone();
            all.extend(["--ranges", &ranges, "--json"]);
            let out = audit(&all, stdin);
            assert_eq!(out.status.code(), Some(e.exit), "{what}: {out:?}");
            let r = json_of(&out);
            assert_eq!(r["events"], e.events, "{what}: {r}");
            assert_eq!(r["unreadable"], e.unreadable, "{what}: {r}");
            assert_eq!(r["other_services"], e.other_services, "{what}: {r}");
            assert_eq!(counts(&r["allowed"]), e.allowed, "{what}: {r}");
            assert_eq!(counts(&r["loopback"]), e.loopback, "{what}: {r}");
            let want: Vec<(String, [u64; 4])> = e
                .blocks
                .iter()
                .map(|(p, c, a, rj, i)| (p.clone(), [*c, *a, *rj, *i]))
                .collect();
            assert_eq!(blocks(&r), want, "{what}: {r}");
            assert_eq!(
                r["refused_with_accepted_mail"].as_u64(),
                Some(want.iter().filter(|b| b.1[1] > 0).count() as u64),
                "{what}"
            );
            if let Some(first) = &e.first_event {
                assert_eq!(r["first_event"], first.as_str(), "{what}");
            }
            if let Some(last) = &e.last_event {
                assert_eq!(r["last_event"], last.as_str(), "{what}");
            }
            if let Some(names) = &e.names {
                assert_eq!(r["blocks"][0]["names"], serde_json::json!(names), "{what}");
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            if e.exit == 3 {
                assert!(
                    stderr.contains("would refuse 1 sender block(s) that delivered accepted mail"),
                    "{what}: {stderr}"
                );
            } else {
                assert!(stderr.is_empty(), "{what}: {stderr}");
            }
        }
    }
}

#[test]
fn unreadable_lines_are_counted_and_the_first_shown_never_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("mail.log");
    let mut text = std::fs::read(corpus().join("odd-and-broken.log")).unwrap();
    // A line longer than any syslog line: read past without being kept.
    text.extend(
        format!(
            "Nov  3 10:00:07 mail postfix/smtpd[1]: {}\n",
            "x".repeat(70_000)
        )
        .bytes(),
    );
    std::fs::write(&log, text).unwrap();
    let ranges = corpus().join("ranges.txt").display().to_string();
    let out = audit(
        &["--mta-log", &log.display().to_string(), "--ranges", &ranges],
        Stdio::null(),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    let name = log.display().to_string();
    for line in [
        "unreadable lines: 8 (the first 5 below)".to_owned(),
        format!("{name}:2: not a syslog time (Mmm dd HH:MM:SS): \"this line has no time\""),
        format!(
            "{name}:3: `connect from` without NAME[ADDRESS]: \"Nov  3 10:00:01 mail postfix/smtpd[1]: \
             connect from unknown[unknown]\""
        ),
        format!("{name}:6: `<=` with an unreadable H= field"),
    ] {
        assert!(report.contains(&line), "missing {line:?} in\n{report}");
    }
    let out = audit(
        &["--mta-log", &name, "--ranges", &ranges, "--json"],
        Stdio::null(),
    );
    let r = json_of(&out);
    assert_eq!(r["unreadable"], 8);
    assert_eq!(r["unreadable_lines"].as_array().map(Vec::len), Some(5));
}

#[test]
fn since_bounds_the_window() {
    let log = corpus().join("postfix-rfc5424.log").display().to_string();
    let ranges = corpus().join("ranges.txt").display().to_string();
    let args = |since: &'static str| {
        vec![
            "--mta-log".to_owned(),
            log.clone(),
            "--ranges".to_owned(),
            ranges.clone(),
            "--json".to_owned(),
            "--since".to_owned(),
            since.to_owned(),
        ]
    };
    let run = |since| {
        let a = args(since);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        audit(&a, Stdio::null())
    };
    let r = json_of(&run("2026-11-03T09:01:00Z"));
    assert_eq!(r["events"], 2, "{r}");
    assert_eq!(r["before_since"], 3, "{r}");
    assert_eq!(r["since"], "2026-11-03T09:01:00Z");
    assert_eq!(blocks(&r), []);
    // Local time, as the logs write it (UTC here), and an age.
    let r = json_of(&run("2026-11-03 09:01"));
    assert_eq!(r["events"], 2, "{r}");
    let out = run("1h");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r = json_of(&out);
    assert_eq!(
        (r["events"].as_u64(), r["before_since"].as_u64()),
        (Some(0), Some(6))
    );
}

#[test]
fn bad_input_is_refused_with_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let ranges = corpus().join("ranges.txt").display().to_string();
    let log = corpus().join("exim-mainlog").display().to_string();
    let fifo = tmp.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.display().to_string();
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let empty = empty.display().to_string();
    for (args, code, message) in [
        (
            vec!["--mta-log", "/nonexistent/mail.log", "--ranges", &ranges],
            2,
            "reading /nonexistent/mail.log: No such file or directory",
        ),
        (
            vec!["--mta-log", &fifo, "--ranges", &ranges],
            2,
            "not a regular file (a FIFO)",
        ),
        (
            vec!["--mta-log", &ranges, "--ranges", &ranges],
            2,
            "no line of Postfix or Exim about an SMTP client (3 lines read, 3 unreadable; the \
             first unreadable line",
        ),
        (
            vec!["--mta-log", "-", "--ranges", "-"],
            2,
            "standard input (-) can be read once",
        ),
        (
            vec!["--mta-log", "-", "-", "--ranges", &ranges],
            2,
            "standard input (-) can be read once",
        ),
        (
            vec!["--mta-log", &log, "--ranges", &empty],
            2,
            "has no entries; an empty allowlist would deny every sender",
        ),
        (
            vec![
                "--mta-log",
                &log,
                "--ranges",
                &ranges,
                "--since",
                "yesterday-ish",
            ],
            2,
            "is neither a time",
        ),
        (vec!["--ranges", &ranges], 2, "--mta-log <FILE>"),
        (vec!["--mta-log", &log], 2, "--ranges <SRC>"),
    ] {
        let out = audit(&args, Stdio::null());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: a report on bad input");
    }
}

/// Peak resident memory of `mxgate audit` reading a generated Postfix log
/// of `megabytes` MB through standard input (written as it is read, never
/// stored), and its report.
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also gives its peak memory"
)]
fn audit_streamed(megabytes: u64) -> (u64, Value, ExitStatus, u64) {
    let ranges = corpus().join("ranges.txt").display().to_string();
    let mut child = Command::new(binary())
        .args(["audit", "--mta-log", "-", "--ranges", &ranges, "--json"])
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mxgate audit");
    let stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || write_log(stdin, megabytes * 1_000_000));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut text).map(|_| text)
    });
    let pid = i32::try_from(child.id()).expect("a pid");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, which nothing else waits for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let written = writer.join().expect("the writer");
    let text = reader
        .join()
        .expect("the reader")
        .expect("reading the report");
    let report = serde_json::from_slice(&text).unwrap_or(Value::Null);
    // ru_maxrss is in KiB on Linux.
    (
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
        report,
        ExitStatus::from_raw(status),
        written,
    )
}

/// Writes a Postfix log of about `bytes` bytes: 1,000 refused /24s that
/// connect and are rejected, and a listed relay whose messages are
/// accepted. Returns the messages accepted.
fn write_log(stdin: std::process::ChildStdin, bytes: u64) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, stdin);
    let (mut written, mut i, mut accepted) = (0u64, 0u64, 0u64);
    while written < bytes {
        let spam = format!("203.{}.{}.{}", i % 1000 / 250, i % 250, i % 7 + 1);
        let lines = format!(
            "Nov  3 10:00:01 mail postfix/smtpd[2101]: connect from unknown[{spam}]\n\
             Nov  3 10:00:01 mail postfix/smtpd[2101]: NOQUEUE: reject: RCPT from unknown[{spam}]: \
             554 5.7.1 <x@other.test>: Relay access denied; from=<a@b.example> to=<x@other.test> \
             proto=ESMTP helo=<spam>\n\
             Nov  3 10:00:02 mail postfix/smtpd[2101]: connect from relay[192.0.2.10]\n\
             Nov  3 10:00:02 mail postfix/smtpd[2101]: Q{i:X}: client=relay[192.0.2.10]\n\
             Nov  3 10:00:02 mail postfix/qmgr[880]: Q{i:X}: from=<a@service.example>, size=1, \
             nrcpt=1 (queue active)\n"
        );
        if out.write_all(lines.as_bytes()).is_err() {
            break;
        }
        written += lines.len() as u64;
        accepted += 1;
        i += 1;
    }
    let _ = out.flush();
    accepted
}

#[test]
fn memory_stays_flat_on_a_log_streamed_through_stdin() {
    // MXGATE_AUDIT_LOG_MB=1000 measures a 1 GB log (by hand: minutes).
    let large = env_u64("MXGATE_AUDIT_LOG_MB", 100);
    let mut peaks = Vec::new();
    for megabytes in [10, large] {
        let (peak_kib, report, status, accepted) = audit_streamed(megabytes);
        assert_eq!(status.code(), Some(0), "{megabytes} MB: {report}");
        assert_eq!(
            report["allowed"]["accepted"], accepted,
            "{megabytes} MB: {report}"
        );
        assert_eq!(report["blocks"].as_array().map(Vec::len), Some(1000));
        assert_eq!(report["refused"]["rejected"], accepted);
        eprintln!("audit of {megabytes} MB through stdin: peak RSS {peak_kib} KiB");
        peaks.push(peak_kib);
    }
    assert!(
        peaks[1] < peaks[0] + 4 * 1024,
        "peak RSS grew from {} KiB ({} MB) to {} KiB ({large} MB)",
        peaks[0],
        10,
        peaks[1]
    );
    assert!(peaks[1] < 64 * 1024, "peak RSS {} KiB", peaks[1]);
}

/// The mail of the MTA tests: (source, server, mail, accepted by the MTA).
/// The listed relays deliver (one of them also tries to relay); the
/// unlisted spammer is rejected for its sender, at the end of its message,
/// and quits after RCPT once; an unlisted partner delivers over IPv6 —
/// mail the list would refuse.
fn sessions() -> Vec<(&'static str, &'static str, Mail<'static>, bool)> {
    let mail = Mail::default();
    vec![
        (ALLOWED_V4, SERVER_V4, mail, true),
        (ALLOWED_V4, SERVER_V4, mail, true),
        (ALLOWED_V6, SERVER_V6, mail, true),
        (
            ALLOWED_V6,
            SERVER_V6,
            Mail {
                to: "user@other.test",
                ..mail
            },
            false,
        ),
        (
            DENIED_V4,
            SERVER_V4,
            Mail {
                from: "spam@spam.example",
                ..mail
            },
            false,
        ),
        (
            DENIED_V4,
            SERVER_V4,
            Mail {
                subject: "reject-me",
                ..mail
            },
            false,
        ),
        (
            DENIED_V4,
            SERVER_V4,
            Mail {
                quit_after: Some("RCPT"),
                ..mail
            },
            true,
        ),
        (
            DENIED_V6,
            SERVER_V6,
            Mail {
                from: "orders@partner.example",
                ..mail
            },
            true,
        ),
    ]
}

fn send_all(s: &Setup) {
    for (src, server, mail, ok) in sessions() {
        let out = send(&s.wire.client, src, server, &mail);
        assert_eq!(
            out.status.success(),
            ok,
            "{src} {mail:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Audits `log` against the scenario's list and checks the report against
/// [`sessions`]; `incomplete` is what the MTA logs of the session that
/// quit after RCPT (Postfix: a message begun; Exim: nothing).
fn check_audit(s: &Setup, log: &Path, incomplete: u64) {
    let log = log.display().to_string();
    let ranges = s.ranges();
    let out = audit(
        &["--mta-log", &log, "--ranges", &ranges, "--json"],
        Stdio::null(),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let r = json_of(&out);
    assert_eq!(r["unreadable"], 0, "{r}");
    // Listed: 4 sessions, 3 messages accepted, a relay attempt refused.
    assert_eq!(counts(&r["allowed"]), [4, 3, 1, 0], "{r}");
    assert_eq!(
        blocks(&r),
        [
            ("2001:db8:bad::/48".to_owned(), [1, 1, 0, 0]),
            ("203.0.113.0/24".to_owned(), [3, 0, 2, incomplete]),
        ],
        "{r}"
    );
    assert_eq!(r["blocks"][0]["addresses"], serde_json::json!([DENIED_V6]));
    assert_eq!(r["refused_with_accepted_mail"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "mxgate: error: the list would refuse 1 sender block(s) that delivered accepted \
             mail (the first: 2001:db8:bad::/48, 1 accepted message(s)"
        ),
        "{stderr}"
    );
    // The partner allowed by hand: nothing that delivered would be refused.
    let out = audit(
        &["--mta-log", &log, "--ranges", &ranges, "--allow", DENIED_V6],
        Stdio::null(),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("result: every sender that delivered accepted mail is in the list"),
        "{report}"
    );
    assert!(
        report.contains("would refuse, no accepted mail (1):"),
        "{report}"
    );
}

#[test]
fn postfix_logs_of_listed_and_unlisted_senders_audit_to_what_was_sent() {
    let s = Setup::with_listener_ports("aud-pf", &[]);
    let postfix = Postfix::start_with(
        &s.wire.server,
        "smtpd_sender_restrictions = check_sender_access inline:{ { spam.example = REJECT spammer } }\n\
         header_checks = regexp:{conf}/header_checks",
        &[("header_checks", "/^Subject: reject-me/ REJECT message refused\n")],
    )
    .expect("starting Postfix");
    send_all(&s);
    postfix.wait_delivered(4).unwrap();
    // Every session ended in the log before it is read.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while postfix.log().matches("disconnect from").count() < 8 {
        assert!(std::time::Instant::now() < deadline, "{}", postfix.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    check_audit(&s, &postfix.log_path(), 1);
    // The sessions that quit after RCPT and sent `reject-me` began
    // messages Postfix logged as their client's, without a queue manager
    // line: neither was accepted.
    assert_eq!(
        postfix
            .log()
            .matches(": client=unknown[203.0.113.66]")
            .count(),
        2
    );
}

#[test]
fn exim_logs_of_listed_and_unlisted_senders_audit_to_what_was_sent() {
    let s = Setup::with_listener_ports("aud-ex", &[]);
    let exim = Exim::start(&s.wire.server).expect("starting Exim");
    send_all(&s);
    exim.wait_sessions(8).unwrap();
    let log = exim.log();
    assert_eq!(log.matches(" <= ").count(), 4, "{log}");
    check_audit(&s, &exim.log_path(), 0);
}
