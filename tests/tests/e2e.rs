//! mxgate end to end: two namespaces joined by a veth pair, mxgate attached
//! on the mail server's side by the real binary, real TCP connects.

use std::os::unix::process::ExitStatusExt as _;

use mxgate_tests::scenario::{
    ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, Setup, flip_under_load,
};
use serde_json::Value;

#[test]
fn allowed_sources_connect_and_denied_ones_time_out() {
    let s = Setup::new("e2e-basic");
    // Before attaching, everyone gets in.
    s.assert_connects(DENIED_V4, 25);
    let out = s.attach();
    assert!(out.contains("attached to mx-mail"), "{out}");
    s.assert_connects(ALLOWED_V4, 25);
    s.assert_connects(ALLOWED_V6, 25);
    s.assert_times_out(DENIED_V4, 25);
    s.assert_times_out(DENIED_V6, 25);
}

#[test]
fn other_ports_are_unaffected() {
    let s = Setup::new("e2e-ports");
    s.attach();
    s.assert_connects(DENIED_V4, 2525);
    s.assert_connects(DENIED_V6, 2525);
    s.assert_times_out(DENIED_V4, 25);
}

#[test]
fn counters_match_the_syns_sent() {
    let s = Setup::new("e2e-count");
    s.attach();
    for _ in 0..3 {
        s.assert_connects(ALLOWED_V4, 25);
    }
    for _ in 0..2 {
        s.assert_times_out(DENIED_V4, 25);
    }
    s.assert_connects(ALLOWED_V6, 25);
    s.assert_times_out(DENIED_V6, 25);
    s.assert_connects(DENIED_V4, 2525);
    let stats = s.stats();
    assert_eq!(stats["v4"]["counts"]["allowed"], 3, "{stats}");
    assert_eq!(stats["v4"]["counts"]["dropped"], 2, "{stats}");
    assert_eq!(stats["v4"]["examined"], 5, "{stats}");
    assert_eq!(stats["v6"]["counts"]["allowed"], 1, "{stats}");
    assert_eq!(stats["v6"]["counts"]["dropped"], 1, "{stats}");
    let top = stats["top_denied"].as_array().expect("a list");
    assert_eq!(top[0]["source"], DENIED_V4, "{stats}");
    assert_eq!(top[0]["count"], 2, "{stats}");
}

#[test]
fn a_second_attach_is_a_no_op() {
    let s = Setup::new("e2e-twice");
    s.attach();
    let before = s.status();
    let out = s.attach();
    assert!(out.contains("already attached to mx-mail"), "{out}");
    assert!(out.contains("(unchanged)"), "{out}");
    let after = s.status();
    assert_eq!(before["program"]["id"], after["program"]["id"]);
    assert_eq!(before["interfaces"], after["interfaces"]);
    assert_eq!(after["interfaces"].as_array().map(Vec::len), Some(1));
    s.assert_times_out(DENIED_V4, 25);
}

#[test]
fn the_filter_stays_after_the_cli_exits() {
    let s = Setup::new("e2e-stays");
    s.attach();
    // `run` adopts the filter; killing it outright must not remove it.
    let mut run = s.mx.start(&["run", "--interval", "1"]);
    let first = run.lines().next();
    assert!(
        matches!(&first, Some(Ok(line)) if line.contains("event=adopted")),
        "{first:?}"
    );
    let status = run.signal(libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    s.assert_times_out(DENIED_V4, 25);
    s.assert_connects(ALLOWED_V4, 25);
}

#[test]
fn refresh_grants_and_revokes_access_live() {
    let s = Setup::new("e2e-refresh");
    s.attach();
    s.assert_times_out(DENIED_V4, 25);
    let both = s.write(
        "both.txt",
        "192.0.2.0/24\n203.0.113.0/24\n2001:db8:5e::/48\n",
    );
    let out = s.mx.ok(&["refresh", "--ranges", &both]);
    assert!(out.contains("IPv4 +1 -0"), "{out}");
    s.assert_connects(DENIED_V4, 25);
    s.assert_connects(ALLOWED_V4, 25);
    let out = s.mx.ok(&["refresh", "--ranges", &s.ranges()]);
    assert!(out.contains("IPv4 +0 -1"), "{out}");
    s.assert_times_out(DENIED_V4, 25);
    s.assert_connects(ALLOWED_V4, 25);
}

#[test]
fn a_bad_list_changes_nothing_and_exits_2() {
    let s = Setup::new("e2e-badlist");
    s.attach();
    let bad = s.write("bad.txt", "203.0.113.0/24\n192.0.2.0/33\n");
    let err = s.mx.fails(2, &["refresh", "--ranges", &bad]);
    assert!(
        err.contains("bad.txt:2: prefix length 33 is longer than 32"),
        "{err}"
    );
    s.assert_times_out(DENIED_V4, 25);
    s.assert_connects(ALLOWED_V4, 25);
}

#[test]
fn a_shrinking_list_is_refused_with_3_unless_forced() {
    let s = Setup::new("e2e-shrink");
    s.attach();
    let other = s.write("other.txt", "203.0.113.0/24\n");
    let err = s.mx.fails(3, &["refresh", "--ranges", &other]);
    assert!(err.contains("more than --max-shrink 50%"), "{err}");
    s.assert_connects(ALLOWED_V4, 25);
    s.mx.ok(&["refresh", "--ranges", &other, "--force"]);
    s.assert_times_out(ALLOWED_V4, 25);
    s.assert_connects(DENIED_V4, 25);
}

#[test]
fn open_lets_everyone_in_and_enforce_shuts_them_out_again() {
    let s = Setup::new("e2e-open");
    s.attach();
    s.mx.ok(&["open"]);
    s.assert_connects(DENIED_V4, 25);
    s.assert_connects(DENIED_V6, 25);
    let stats = s.stats();
    assert_eq!(stats["v4"]["counts"]["passed_open"], 1, "{stats}");
    s.mx.ok(&["enforce"]);
    s.assert_times_out(DENIED_V4, 25);
}

#[test]
fn detach_removes_program_and_pins() {
    let s = Setup::new("e2e-detach");
    s.attach();
    s.assert_times_out(DENIED_V4, 25);
    let out = s.mx.ok(&["detach"]);
    assert!(out.contains("detached from mx-mail"), "{out}");
    assert!(!s.mx.pin_dir().exists(), "the pin directory is gone");
    s.assert_connects(DENIED_V4, 25);
    let err = s.mx.fails(1, &["status"]);
    assert!(err.contains("no filter is installed"), "{err}");
}

#[test]
fn run_streams_stats_lines_and_leaves_the_filter_attached() {
    let s = Setup::new("e2e-run");
    s.attach();
    let mut run =
        s.mx.start(&["run", "--interval", "1", "--log-format", "json"]);
    let mut lines = run.lines();
    s.assert_times_out(DENIED_V4, 25);
    s.assert_connects(ALLOWED_V4, 25);
    // Wait for the stats line that has counted both SYNs.
    let line = loop {
        let line = lines
            .next()
            .expect("mxgate run ended early")
            .expect("reading mxgate run");
        let value: Value = serde_json::from_str(&line).expect("a JSON log line");
        if value["event"] == "stats" && value["total_v4_examined"] == 2 {
            break value;
        }
    };
    assert_eq!(line["total_v4_dropped"], 1, "{line}");
    assert!(line["ts"].is_string() && line["level"] == "info", "{line}");
    // SIGTERM: run exits cleanly and the filter stays.
    let status = run.signal(libc::SIGTERM);
    assert!(status.success(), "mxgate run exited with {status}");
    let last: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        last.iter().any(|l| l.contains("\"event\":\"stopped\"")),
        "{last:?}"
    );
    s.assert_times_out(DENIED_V4, 25);
}

/// Refreshes back and forth between two lists while the staying senders
/// keep connecting; their covering prefix changes each time, so only
/// insert-before-delete keeps them in.
#[test]
fn staying_senders_never_meet_a_gap_while_the_list_flips() {
    let s = Setup::new("e2e-gap");
    s.attach();
    let result = flip_under_load(&s, 200);
    println!("{result:?}");
    assert!(
        result.failures.is_empty(),
        "staying senders were refused:\n{}",
        result.failures.join("\n")
    );
    assert!(
        result.connects >= 200,
        "only {} connects during the refreshes",
        result.connects
    );
    let stats = s.stats();
    let denied: Vec<&str> = stats["top_denied"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["source"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        !denied.contains(&ALLOWED_V4) && !denied.contains(&ALLOWED_V6),
        "a staying sender was denied: {denied:?}"
    );
}
