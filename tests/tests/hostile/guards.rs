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
    // The whole message, word for word (a run of spaces once crept in).
    assert_eq!(
        out,
        "mxgate: error: the new list takes access from 256 of the 256 live IPv4 addresses \
         (100.0%), more than --max-shrink 50%; the new list takes access from 2^80 of the 2^80 \
         live IPv6 addresses (100.0%), more than --max-shrink 50%; nothing changed. Check the \
         list, or run again with --force (or a larger --max-shrink)\n"
    );
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

// ---------------------------------------------------------------------
// The grow guard and the ceiling, and the shrink guard in addresses
// (issue 18, item 7).

/// 32 prefixes that cover every IPv4 address but 255.255.255.255.
fn all_but_one() -> String {
    (1..=32u32)
        .map(|len| {
            let start = if len == 1 {
                0
            } else {
                !(u32::MAX >> (len - 1))
            };
            format!("{}/{len}\n", std::net::Ipv4Addr::from(start))
        })
        .collect()
}

#[test]
fn a_list_that_opens_the_gate_is_refused_and_changes_nothing() {
    let h = Host::new("ho-grow");
    let before = Live::of(h.mx());
    let half = h.file("half.txt", "192.0.2.0/24\n0.0.0.0/1\n2001:db8:5e::/48\n");
    let nearly_all = h.file("all-but-one.txt", &all_but_one());
    for list in [&half, &nearly_all] {
        // The ceiling, and the grow guard beside it.
        let out = h.expect(
            3,
            &["refresh", "--ranges", list],
            "more than any list may (--max-allow-v4 8: as many as a /8 holds, 16,777,216)",
        );
        assert!(out.contains("more than --max-grow 10"), "{out}");
        assert!(
            out.contains("run again with a larger --max-allow-v4 (--force does not lift it), or --force (or a larger --max-grow)"),
            "{out}"
        );
        // --force lifts the grow guard, not the ceiling.
        let out = h.expect(
            3,
            &["refresh", "--ranges", list, "--force"],
            "--max-allow-v4 8",
        );
        assert!(!out.contains("--max-grow"), "{out}");
        // --diff shows the change, and exits as the refresh would.
        let out = h.expect(3, &["refresh", "--ranges", list, "--diff"], "+ 0.0.0.0/1");
        assert!(
            out.contains("refresh would refuse: the new list allows"),
            "{out}"
        );
        // attach refuses it too, before anything changes.
        h.expect(
            3,
            &["attach", "--iface", SERVER_IF, "--ranges", list],
            "--max-allow-v4 8",
        );
    }
    assert_eq!(Live::of(h.mx()), before);
    h.protects();

    // Under the ceiling, a list 256 times the live one: the grow guard.
    let wide = h.file("wide.txt", "10.0.0.0/16\n192.0.2.0/24\n2001:db8:5e::/48\n");
    let out = h.expect(3, &["refresh", "--ranges", &wide], "");
    assert_eq!(
        out,
        "mxgate: error: refreshing the allowlist: the new list allows 65,792 IPv4 addresses, \
         257.0 times the 256 live ones, more than --max-grow 10; nothing changed. Check the \
         list, or run again with --force (or a larger --max-grow)\n"
    );
    assert_eq!(Live::of(h.mx()), before);
    h.expect(
        0,
        &["refresh", "--ranges", &wide, "--max-grow", "300"],
        "refreshed: IPv4 +1 -0",
    );
    h.expect(
        0,
        &["refresh", "--ranges", &h.s.ranges(), "--force"],
        "refreshed: IPv4 +0 -1",
    );
    h.protects();
}

#[test]
fn a_first_list_meets_only_the_ceiling() {
    let s = Setup::new("ho-first");
    // Nothing live: a list of any size under the ceiling is taken.
    let big = s.write("big.txt", "10.0.0.0/9\n192.0.2.0/24\n2001:db8:5e::/48\n");
    let out = s.mx.ok(&["attach", "--iface", SERVER_IF, "--ranges", &big]);
    assert!(
        out.contains("allowlist: 2 IPv4 and 1 IPv6 prefixes"),
        "{out}"
    );
    s.mx.ok(&["detach"]);
    // Over it: refused, and nothing is left behind.
    let half = s.write("half.txt", "0.0.0.0/1\n");
    let err =
        s.mx.fails(3, &["attach", "--iface", SERVER_IF, "--ranges", &half]);
    assert!(
        err.contains("more than any list may (--max-allow-v4 8"),
        "{err}"
    );
    assert!(!err.contains("--max-grow"), "{err}");
    assert!(!s.mx.pin_dir().exists(), "the refused attach left nothing");
    s.assert_connects(DENIED_V4, 25);
    // An IPv6 /20 is over the IPv6 ceiling, a /28.
    let v6 = s.write("v6.txt", "192.0.2.0/24\n2001:db0::/20\n");
    let err =
        s.mx.fails(3, &["attach", "--iface", SERVER_IF, "--ranges", &v6]);
    assert!(
        err.contains("the new list allows 2^108 IPv6 addresses, more than any list may (--max-allow-v6 28: as many as a /28 holds, 2^100)"),
        "{err}"
    );
    let out = s.mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &v6,
        "--max-allow-v6",
        "/16",
    ]);
    assert!(
        out.contains("allowlist: 1 IPv4 and 1 IPv6 prefixes"),
        "{out}"
    );
}

#[test]
fn the_shrink_guard_counts_addresses_not_entries() {
    let h = Host::new("ho-shrinkaddr");
    let many = h.file(
        "many.txt",
        "10.0.0.0/9\n192.0.2.1\n192.0.2.3\n192.0.2.5\n192.0.2.7\n2001:db8:5e::/48\n",
    );
    h.mx().ok(&["refresh", "--ranges", &many, "--force"]);
    // Four entries of five go, but four addresses of 8 million: no shrink.
    let slash9 = h.file("slash9.txt", "10.0.0.0/9\n2001:db8:5e::/48\n");
    h.expect(
        0,
        &["refresh", "--ranges", &slash9],
        "refreshed: IPv4 +0 -4",
    );
    let before = Live::of(h.mx());
    // One entry for one entry: 8 million addresses lost.
    let slash32 = h.file("slash32.txt", "10.0.0.0/32\n2001:db8:5e::/48\n");
    let out = h.expect(3, &["refresh", "--ranges", &slash32], "");
    assert_eq!(
        out,
        "mxgate: error: refreshing the allowlist: the new list takes access from 8,388,607 of \
         the 8,388,608 live IPv4 addresses (100.0%), more than --max-shrink 50%; nothing \
         changed. Check the list, or run again with --force (or a larger --max-shrink)\n"
    );
    assert_eq!(Live::of(h.mx()), before);
    h.expect(
        0,
        &["refresh", "--ranges", &slash32, "--force"],
        "refreshed: IPv4 +1 -1",
    );
}

#[test]
fn run_keeps_the_live_list_when_the_ceiling_refuses_its_list() {
    let h = Host::new("ho-runceil");
    let before = Live::of(h.mx());
    let half = h.file("half.txt", "192.0.2.0/24\n0.0.0.0/1\n2001:db8:5e::/48\n");
    let mut run = h.mx().start(&[
        "run",
        "--iface",
        SERVER_IF,
        "--ranges",
        &half,
        "--log-format",
        "json",
    ]);
    let (refused, _) = until_event(&mut run.lines(), "refresh_refused");
    assert_eq!(refused["level"], "warn", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("more than any list may (--max-allow-v4 8"),
        "{refused}"
    );
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
    assert!(run.signal(libc::SIGTERM).success());
}
