//! Pins removed by hand, interfaces lost: commands keep working, name the damage, and attach repairs it.

use super::*;

// ---------------------------------------------------------------------
// Pins removed by hand: commands keep working, name the damage, and attach
// repairs it without ever detaching a live interface (cases 4 and 12).

#[test]
fn a_removed_program_pin_is_named_and_repaired_while_the_filter_keeps_working() {
    let h = Host::new("ho-prog");
    let before = Live::of(h.mx());
    let link_before = before.status["interfaces"][0]["link_id"].clone();
    fs::remove_file(h.mx().pin_dir().join("prog")).unwrap();
    h.protects();

    let status = h.expect(0, &["status"], "DAMAGED: the program's pin");
    assert!(
        status.contains("still runs on mx-mail through its link"),
        "{status}"
    );
    assert!(status.contains("attached to mx-mail"), "{status}");
    let json: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(json["interfaces"][0]["link_id"], link_before);
    // Every command still works on what it needs.
    let list = h.file(
        "more.txt",
        "192.0.2.0/24\n198.51.100.0/24\n2001:db8:5e::/48\n",
    );
    h.expect(0, &["refresh", "--ranges", &list], "refreshed: IPv4 +1");
    h.expect(0, &["open"], "filter OPEN");
    h.expect(0, &["enforce"], "enforcing");
    h.expect(0, &["stats"], "examined");
    h.expect(0, &["lookup", "198.51.100.7"], "allowed by 198.51.100.0/24");
    h.protects();

    // The repair: the same program and link, pinned again.
    let out = h.expect(
        0,
        &["attach", "--iface", SERVER_IF, "--ranges", &list],
        "repaired: pinned",
    );
    assert!(out.contains("already attached to mx-mail"), "{out}");
    let after = Live::of(h.mx());
    assert_eq!(after.status["interfaces"][0]["link_id"], link_before);
    assert_eq!(
        after.status["program"]["id"],
        before.status["program"]["id"]
    );
    assert!(h.mx().pin_dir().join("prog").exists());
    h.expect(0, &["status"], "filter installed in");
    h.protects();
}

#[test]
fn removed_map_pins_are_found_through_the_program() {
    let h = Host::new("ho-maps");
    let before = Live::of(h.mx());
    for map in ["DENIED", "CONFIG", "ALLOW_V4"] {
        fs::remove_file(h.mx().pin_dir().join(map)).unwrap();
    }
    h.protects();
    let status = h.expect(0, &["status"], "DAMAGED:");
    assert!(
        status.contains("/CONFIG is missing; the map still works"),
        "{status}"
    );
    // The emergency switch works without its pin.
    h.expect(0, &["open"], "filter OPEN");
    h.s.assert_connects(DENIED_V4, 25);
    h.expect(0, &["enforce"], "enforcing");
    h.expect(0, &["stats", "--json"], "\"top_denied\"");
    h.expect(0, &["lookup", ALLOWED_V4], "allowed by 192.0.2.0/24");
    h.expect(
        0,
        &["attach", "--iface", SERVER_IF, "--ranges", &h.s.ranges()],
        "repaired: pinned",
    );
    for map in ["DENIED", "CONFIG", "ALLOW_V4"] {
        assert!(h.mx().pin_dir().join(map).exists(), "{map} pinned again");
    }
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
}

#[test]
fn a_filter_whose_program_is_gone_is_reloaded_with_its_allowlist() {
    let h = Host::new("ho-gone");
    let before = Live::of(h.mx());
    let dir = h.mx().pin_dir().to_path_buf();
    fs::remove_file(dir.join("prog")).unwrap();
    fs::remove_file(dir.join("link_mx-mail")).unwrap();
    // Nothing runs it: the interface is open to everyone.
    h.s.assert_connects(DENIED_V4, 25);
    let status = h.expect(0, &["status"], "has no live program: it protects nothing");
    assert!(status.contains("attached to no interface"), "{status}");
    // A refresh still keeps the allowlist current for the repair.
    h.expect(0, &["refresh", "--ranges", &h.s.ranges()], "no change");
    let out = h.expect(
        0,
        &["attach", "--iface", SERVER_IF, "--ranges", &h.s.ranges()],
        "loaded the filter into the kernel",
    );
    assert!(
        out.contains("(unchanged)"),
        "the maps' allowlist was kept: {out}"
    );
    assert_eq!(Live::of(h.mx()).allowlist, before.allowlist);
    h.protects();
}

#[test]
fn run_names_damage_and_lost_interfaces_and_stops_only_on_a_real_detach() {
    let h = Host::new("ho-run");
    h.s.wire.server.add_veth("mx-b").unwrap();
    h.s.wire.server.add_veth("mx-c").unwrap();
    h.mx().ok(&[
        "attach",
        "--iface",
        "mx-b",
        "mx-c",
        "--ranges",
        &h.s.ranges(),
    ]);
    let mut run = h
        .mx()
        .start(&["run", "--log-format", "json", "--interval", "3600"]);
    let mut lines = run.lines();
    let mut next = |event: &str| -> Value {
        loop {
            let line = lines.next().expect("run ended early").expect("reading run");
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_ne!(v["event"], "detached", "run stopped: {v}");
            if v["event"] == event {
                return v;
            }
        }
    };
    next("adopted");
    fs::remove_file(h.mx().pin_dir().join("prog")).unwrap();
    let v = next("damaged");
    assert_eq!(v["level"], "warn");
    assert!(
        v["message"].as_str().unwrap().contains("the program's pin"),
        "{v}"
    );
    h.mx().ok(&["detach", "--iface", "mx-b"]);
    let v = next("link_removed");
    assert_eq!(
        (v["level"].as_str(), v["iface"].as_str()),
        (Some("warn"), Some("mx-b"))
    );
    h.s.wire.server.ip(&["link", "del", "mx-c"]).unwrap();
    let v = next("interface_gone");
    assert_eq!(
        (v["level"].as_str(), v["iface"].as_str()),
        (Some("warn"), Some("mx-c"))
    );
    h.protects();
    // SIGHUP (a closed terminal, a careless `kill -HUP`) stops run cleanly,
    // saying so; the filter stays.
    let status = run.signal(libc::SIGHUP);
    assert!(status.success(), "{status}");
    let v = next("stopped");
    assert_eq!(v["signal"], "SIGHUP", "{v}");
    h.protects();
}

#[test]
fn run_warns_when_the_filter_is_left_attached_nowhere() {
    let h = Host::new("ho-unprot");
    let mut run = h.mx().start(&["run", "--log-format", "json"]);
    let mut lines = run.lines();
    until_event(&mut lines, "adopted");
    h.mx().ok(&["detach", "--iface", SERVER_IF]);
    let (removed, _) = until_event(&mut lines, "link_removed");
    assert_eq!(removed["iface"], SERVER_IF, "{removed}");
    let (v, _) = until_event(&mut lines, "unprotected");
    assert_eq!(v["level"], "warn", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("protects nothing"),
        "{v}"
    );
    // The filter is still installed: run keeps watching until stopped.
    assert!(run.signal(libc::SIGTERM).success());
}

#[test]
fn run_adopting_a_filter_attached_nowhere_warns() {
    let h = Host::new("ho-nowhere");
    h.mx().ok(&["detach", "--iface", SERVER_IF]);
    let mut run = h.mx().start(&["run", "--log-format", "json"]);
    let line = run.lines().next().unwrap().unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "adopted", "{v}");
    assert_eq!(v["level"], "warn", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("protects nothing"),
        "{v}"
    );
}

// ---------------------------------------------------------------------
// Attached nowhere, said once; a link detached from outside is not a
// deleted interface (issue 18, item 9).

/// The events of run's JSON lines up to the `count`-th `stats` line.
fn events_until_stats<B: io::BufRead>(lines: &mut io::Lines<B>, count: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..count {
        let (stats, earlier) = events::until(lines, |v| v["event"] == "stats");
        seen.extend(earlier);
        seen.push(stats);
    }
    seen
}

#[test]
fn unprotected_is_said_when_it_happens_not_every_second() {
    let h = Host::new("ho-once");
    h.s.wire.server.add_veth("mx-b").unwrap();
    h.mx()
        .ok(&["attach", "--iface", "mx-b", "--ranges", &h.s.ranges()]);
    h.mx().ok(&["detach", "--iface", SERVER_IF]);
    let mut run = h
        .mx()
        .start(&["run", "--log-format", "json", "--interval", "1"]);
    let mut lines = run.lines();
    let (adopted, _) = until_event(&mut lines, "adopted");
    assert_eq!(adopted["level"], "info", "{adopted}");
    assert_eq!(
        adopted["interfaces"],
        serde_json::json!(["mx-b"]),
        "{adopted}"
    );
    // The last attached interface goes: said once...
    h.s.wire.server.ip(&["link", "del", "mx-b"]).unwrap();
    let (gone, _) = until_event(&mut lines, "interface_gone");
    assert_eq!(gone["iface"], "mx-b", "{gone}");
    let (v, _) = until_event(&mut lines, "unprotected");
    assert_eq!(v["level"], "warn", "{v}");
    // ... and not again for the next three intervals (it used to be every
    // second; the reminder comes every 15 minutes).
    let after = events_until_stats(&mut lines, 3);
    assert!(
        !after.iter().any(|v| v["event"] == "unprotected"),
        "{after:?}"
    );
    assert!(run.signal(libc::SIGTERM).success());

    // Adopting it now, with a link pinned but attached to nothing: a
    // warning, not a plain `adopted`.
    let mut run = h.mx().start(&["run", "--log-format", "json"]);
    let (adopted, _) = until_event(&mut run.lines(), "adopted");
    assert_eq!(adopted["level"], "warn", "{adopted}");
    assert_eq!(adopted["interfaces"], serde_json::json!([]), "{adopted}");
    assert!(
        adopted["message"]
            .as_str()
            .unwrap_or_default()
            .contains("protects nothing"),
        "{adopted}"
    );
    assert!(run.signal(libc::SIGTERM).success());
}

#[test]
fn a_link_detached_from_outside_is_named_as_such_and_attach_restores_it() {
    let h = Host::new("ho-linkdet");
    let mut run = h
        .mx()
        .start(&["run", "--log-format", "json", "--interval", "1"]);
    let mut lines = run.lines();
    until_event(&mut lines, "adopted");
    // `bpftool link detach pinned DIR/link_mx-mail`: the link and its pin
    // stay, attached to nothing.
    let pin = h.mx().pin_dir().join(format!("link_{SERVER_IF}"));
    filter_user::sys::detach_pinned_link(&pin).expect("BPF_LINK_DETACH");
    h.s.assert_connects(DENIED_V4, 25);
    // The first line about it says what happened, not that the interface
    // was deleted.
    let mut intervals = 0;
    let v = loop {
        let line = lines.next().expect("run ended early").expect("reading run");
        let v: Value = serde_json::from_str(&line).expect("a JSON log line");
        if v["event"] == "link_detached" || v["event"] == "interface_gone" {
            break v;
        }
        intervals += usize::from(v["event"] == "stats");
        assert!(intervals < 5, "run said nothing of the detached link: {v}");
    };
    assert_eq!(v["event"], "link_detached", "{v}");
    assert_eq!(
        (v["level"].as_str(), v["iface"].as_str()),
        (Some("warn"), Some(SERVER_IF)),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`mxgate attach --iface mx-mail …` restores it"),
        "{v}"
    );
    let status = h.expect(0, &["status"], "DETACHED from mx-mail: its link");
    assert!(
        status.contains("`mxgate attach --iface mx-mail …` restores it"),
        "{status}"
    );
    assert!(!status.contains("no longer exists"), "{status}");
    let json: Value = serde_json::from_str(&h.mx().ok(&["status", "--json"])).unwrap();
    assert_eq!(json["interfaces"][0]["state"], "detached", "{json}");
    // What status says restores it does.
    h.expect(
        0,
        &["attach", "--iface", SERVER_IF, "--ranges", &h.s.ranges()],
        "attached to mx-mail",
    );
    h.protects();
    let (v, _) = until_event(&mut lines, "attached");
    assert_eq!(v["iface"], SERVER_IF, "{v}");
    assert!(run.signal(libc::SIGTERM).success());
}
