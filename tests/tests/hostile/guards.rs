//! The guards under attach and run, and the limits checked before the kernel is touched.

use super::*;

// ---------------------------------------------------------------------
// The shrink guard under attach and run (case 6).

#[test]
fn attach_and_run_take_the_guard_options_and_run_never_loops_on_a_refusal() {
    let h = Host::new("ho-guard");
    let before = Live::of(h.mx());
    // Half of the 2 entries → 1 of 2 = 50% is allowed; drop both but add
    // another: 100% of the live entries lose access.
    let other = h.file("other.txt", "198.51.100.0/24\n");
    let out = h.expect(
        3,
        &["attach", "--iface", SERVER_IF, "--ranges", &other],
        "more than --max-shrink 50%",
    );
    assert!(out.contains("run again with --force"), "{out}");
    assert_eq!(Live::of(h.mx()), before);

    // run (the service) keeps the live list, warns, and keeps running.
    let run_with = |guard: &[&str]| {
        let mut args = vec![
            "run",
            "--iface",
            SERVER_IF,
            "--ranges",
            &other,
            "--log-format",
            "json",
        ];
        args.extend_from_slice(guard);
        h.mx().start(&args)
    };
    let mut run = run_with(&[]);
    let (refused, _) = until_event(&mut run.lines(), "refresh_refused");
    assert_eq!(refused["level"], "warn");
    assert!(
        refused["action"]
            .as_str()
            .unwrap()
            .contains("kept the live allowlist")
    );
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
    assert!(run.signal(libc::SIGTERM).success());

    h.expect(
        0,
        &[
            "attach",
            "--iface",
            SERVER_IF,
            "--ranges",
            &other,
            "--max-shrink",
            "100",
        ],
        "allowlist: 1 IPv4 and 0 IPv6 prefixes (+1 -2)",
    );
    h.expect(
        0,
        &[
            "attach",
            "--iface",
            SERVER_IF,
            "--ranges",
            &h.s.ranges(),
            "--force",
        ],
        "(+2 -1)",
    );

    // run takes the same options: with them, the shrinking list is applied.
    for guard in [&["--max-shrink", "100"][..], &["--force"]] {
        let mut run = run_with(guard);
        let (applied, earlier) = until_event(&mut run.lines(), "refreshed");
        assert!(
            !earlier.contains(&"refresh_refused".to_owned()),
            "{guard:?}: {earlier:?}"
        );
        assert_eq!(applied["v4_prefixes"], 1, "{guard:?}: {applied}");
        assert!(run.signal(libc::SIGTERM).success());
        h.mx()
            .ok(&["refresh", "--ranges", &h.s.ranges(), "--force"]);
    }

    // And the unit never restarts a run that a guard (3) or bad input (2)
    // stopped: it would only be refused again, every 5 s.
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/mxgate.service"
    ))
    .expect("reading dist/mxgate.service");
    assert!(
        unit.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=2 3"),
        "{unit}"
    );
}

#[test]
fn run_keeps_the_live_list_when_its_source_fails() {
    let h = Host::new("ho-runsrc");
    let before = Live::of(h.mx());
    let server = Https::start(&h.s.wire.server, |_| Reply::Status(503)).unwrap();
    let url = server.url("/list.txt");
    let ca = server.ca_file.display().to_string();
    let mut run = h.mx().start(&[
        "run",
        "--iface",
        SERVER_IF,
        "--ranges",
        &url,
        "--https-ca",
        &ca,
        "--log-format",
        "json",
    ]);
    let mut lines = run.lines();
    let (failed, _) = until_event(&mut lines, "list_failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("HTTP status 503"),
        "{failed}"
    );
    let attached: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(attached["event"], "attached", "{attached}");
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
    assert!(run.signal(libc::SIGTERM).success());
}

// ---------------------------------------------------------------------
// Limits: lists larger than the maps, too many destinations (8, 9).

#[test]
fn limits_are_checked_before_the_kernel_is_touched() {
    let h = Host::new("ho-limits");
    let before = Live::of(h.mx());
    let mut big = String::new();
    for i in 0..=131_072u32 {
        big.push_str(&format!(
            "{}\n",
            std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i)
        ));
    }
    let big = h.file("big.txt", &big);
    let needle = "131073 IPv4 prefixes after merging; mxgate takes at most 131072";
    h.expect(2, &["check", "--ranges", &big], needle);
    h.expect(2, &["refresh", "--ranges", &big, "--force"], needle);
    h.expect(
        2,
        &["attach", "--iface", SERVER_IF, "--ranges", &big],
        needle,
    );

    let mut args = vec!["attach", "--iface", SERVER_IF, "--ranges"];
    let ranges = h.s.ranges();
    args.push(&ranges);
    args.push("--protect-dst");
    let dsts: Vec<String> = (0..257)
        .map(|i| format!("10.9.{}.{}", i / 256, i % 256))
        .collect();
    args.extend(dsts.iter().map(String::as_str));
    h.expect(
        2,
        &args,
        "257 IPv4 --protect-dst addresses; the filter holds at most 256",
    );
    assert_eq!(Live::of(h.mx()), before);
    h.protects();
}
