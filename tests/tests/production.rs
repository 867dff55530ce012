//! What running mxgate for years needs: several interfaces and modes,
//! partial domains, event and kernel log lines, metrics.

use std::{
    io::{BufReader, Lines},
    process::ChildStdout,
};

use mxgate_tests::{
    cli::{Mxgate, Running},
    events::next_event,
    frames::{DST_MAC, Frame},
    netns::{CLIENT_IF, SERVER_IF},
    packet::RawSocket,
    scenario::{ALLOWED_V4, DENIED_V4, DENIED_V6, SERVER_V4, Setup},
    tcp::{ALLOWED_TIMEOUT, BANNER, connect},
    unique_name,
};
use serde_json::Value;

fn run_json(mx: &Mxgate, extra: &[&str]) -> (Running, Lines<BufReader<ChildStdout>>) {
    let mut args = vec!["run", "--log-format", "json"];
    args.extend_from_slice(extra);
    let mut run = mx.start(&args);
    let mut lines = run.lines();
    next_event(&mut lines, |v| v["event"] == "adopted");
    (run, lines)
}

#[test]
fn one_attach_covers_several_interfaces_and_status_shows_each() {
    let s = Setup::new("pr-multi");
    s.wire.server.add_veth("mx-b").unwrap();
    let out = s.mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "mx-b",
        "--ranges",
        &s.ranges(),
    ]);
    assert!(out.contains("attached to mx-mail (native mode"), "{out}");
    assert!(out.contains("attached to mx-b (native mode"), "{out}");
    let status = s.status();
    let ifaces = status["interfaces"].as_array().expect("a list");
    assert_eq!(ifaces.len(), 2, "{status}");
    for iface in ifaces {
        assert_eq!(iface["mode"], "native", "{status}");
        assert_eq!(iface["program_id"], status["program"]["id"], "{status}");
        assert!(
            iface["attached_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{status}"
        );
    }
    s.assert_times_out(DENIED_V4, 25);
    // Detaching one leaves the other.
    s.mx.ok(&["detach", "--iface", "mx-b"]);
    let status = s.status();
    assert_eq!(
        status["interfaces"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    s.assert_times_out(DENIED_V4, 25);
}

#[test]
fn skb_mode_filters_too_and_status_says_so() {
    let s = Setup::new("pr-skb");
    let out = s.mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &s.ranges(),
        "--mode",
        "skb",
    ]);
    assert!(out.contains("(skb mode"), "{out}");
    assert_eq!(s.status()["interfaces"][0]["mode"], "skb");
    s.assert_times_out(DENIED_V4, 25);
    s.assert_connects(ALLOWED_V4, 25);
}

#[test]
fn another_xdp_program_is_never_replaced() {
    let s = Setup::new("pr-other");
    // Another filter, with its own pins, already on the interface.
    let other = Mxgate::with_binary(
        mxgate_tests::cli::binary(),
        &s.wire.server,
        &unique_name("pr-other-2"),
    );
    other.ok(&["attach", "--iface", SERVER_IF, "--ranges", &s.ranges()]);
    let other_id =
        serde_json::from_str::<Value>(&other.ok(&["status", "--json"])).unwrap()["program"]["id"]
            .clone();
    let err = s.mx.fails(
        3,
        &["attach", "--iface", SERVER_IF, "--ranges", &s.ranges()],
    );
    assert!(
        err.contains(&format!(
            "mx-mail already runs XDP program {other_id} \"mxgate\""
        )),
        "{err}"
    );
    assert!(
        !s.mx.pin_dir().exists(),
        "the refused attach left nothing behind"
    );
    // The other program still filters.
    s.assert_times_out(DENIED_V4, 25);
}

#[test]
fn with_protect_dst_only_syns_to_those_addresses_are_filtered() {
    let s = Setup::new("pr-partial");
    // A second address for the domains that do not route through the service.
    s.wire
        .server
        .ip(&["addr", "add", "198.51.100.26/32", "dev", SERVER_IF])
        .unwrap();
    s.wire
        .client
        .ip(&["route", "add", "198.51.100.26", "dev", CLIENT_IF])
        .unwrap();
    s.mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &s.ranges(),
        "--protect-dst",
        SERVER_V4,
        "2001:db8:25::25",
    ]);
    s.assert_times_out(DENIED_V4, 25);
    s.assert_times_out(DENIED_V6, 25);
    let other_mx = "198.51.100.26:25".parse().unwrap();
    let banner = connect(
        &s.wire.client,
        DENIED_V4.parse().unwrap(),
        other_mx,
        ALLOWED_TIMEOUT,
    )
    .expect("the unprotected address takes mail from anyone");
    assert_eq!(banner, BANNER);
    let status = s.status();
    assert_eq!(
        status["protect_dst"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
}

#[test]
fn run_logs_an_event_for_each_change_made_by_other_commands() {
    let s = Setup::new("pr-events");
    s.attach();
    let (run, mut lines) = run_json(&s.mx, &["--interval", "60"]);
    s.mx.ok(&["open"]);
    let event = next_event(&mut lines, |v| v["event"] != "stats");
    assert_eq!(event["event"], "opened", "{event}");
    assert_eq!(event["level"], "warn", "{event}");
    s.mx.ok(&["enforce"]);
    assert_eq!(
        next_event(&mut lines, |v| v["event"] != "stats")["event"],
        "enforced"
    );
    let more = s.write(
        "more.txt",
        "192.0.2.0/24\n198.51.100.0/24\n2001:db8:5e::/48\n",
    );
    s.mx.ok(&["refresh", "--ranges", &more]);
    let event = next_event(&mut lines, |v| v["event"] != "stats");
    assert_eq!(
        (event["event"].as_str(), event["v4_prefixes"].as_u64()),
        (Some("refreshed"), Some(2)),
        "{event}"
    );
    s.mx.ok(&["detach"]);
    assert_eq!(
        next_event(&mut lines, |v| v["event"] != "stats")["event"],
        "detached"
    );
    let status = run.signal(libc::SIGTERM);
    assert!(
        status.success(),
        "run exits cleanly after a detach: {status}"
    );
}

#[test]
fn kernel_lines_are_forwarded_at_the_chosen_level_and_rate_limited() {
    let s = Setup::new("pr-klog");
    s.mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &s.ranges(),
        "--log-denials",
    ]);
    let (run, mut lines) = run_json(&s.mx, &["--interval", "1", "--log-level", "debug"]);
    // A burst of 100 denied SYNs, far more than the 20 lines a second run forwards.
    let mac = DST_MAC.map(|b| format!("{b:02x}")).join(":");
    s.wire
        .server
        .ip(&["link", "set", SERVER_IF, "address", &mac])
        .unwrap();
    let sender = RawSocket::open(&s.wire.client, CLIENT_IF).unwrap();
    let syn = Frame::syn(DENIED_V4.parse().unwrap(), SERVER_V4.parse().unwrap(), 25).bytes();
    for _ in 0..100 {
        sender.send(&syn).unwrap();
    }
    let kernel = next_event(&mut lines, |v| v["event"] == "kernel");
    assert_eq!(kernel["level"], "debug", "{kernel}");
    assert!(
        kernel["message"]
            .as_str()
            .is_some_and(|m| m == "denied SYN from 203.0.113.66 to port 25"),
        "{kernel}"
    );
    let suppressed = next_event(&mut lines, |v| v["event"] == "kernel_log_suppressed");
    assert!(
        suppressed["count"].as_u64().is_some_and(|n| n >= 80),
        "{suppressed}"
    );
    next_event(&mut lines, |v| {
        v["event"] == "stats" && v["total_v4_dropped"] == 100
    });
    let stats = s.stats();
    assert_eq!(stats["top_denied"][0]["count"], 100, "{stats}");
    run.signal(libc::SIGTERM);
}

#[test]
fn by_default_no_kernel_line_is_logged_per_denied_syn() {
    let s = Setup::new("pr-quiet");
    // Even a program loaded with --log-denials stays quiet at run's default level.
    s.mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "--ranges",
        &s.ranges(),
        "--log-denials",
    ]);
    let (run, mut lines) = run_json(&s.mx, &["--interval", "1"]);
    s.assert_times_out(DENIED_V4, 25);
    let stats = next_event(&mut lines, |v| {
        v["event"] == "kernel" || v["total_v4_dropped"] == 1
    });
    assert_eq!(
        stats["event"], "stats",
        "a kernel line came before the stats: {stats}"
    );
    run.signal(libc::SIGTERM);
}

#[test]
fn metrics_in_prometheus_format_from_stats_and_the_prom_file() {
    let s = Setup::new("pr-prom");
    s.attach();
    s.assert_times_out(DENIED_V4, 25);
    s.assert_connects(ALLOWED_V4, 25);
    let text = s.mx.ok(&["stats", "--format", "prometheus"]);
    for line in [
        "mxgate_syns_total{interface=\"mx-mail\",family=\"ipv4\",outcome=\"dropped\"} 1",
        "mxgate_syns_total{interface=\"mx-mail\",family=\"ipv4\",outcome=\"allowed\"} 1",
        "mxgate_open 0",
        "mxgate_allowlist_prefixes{family=\"ipv4\"} 1",
        "mxgate_denied_source_syns{source=\"203.0.113.66\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let prom = s.write("placeholder", "");
    let prom = std::path::Path::new(&prom).with_file_name("mxgate.prom");
    let (run, mut lines) = run_json(
        &s.mx,
        &[
            "--interval",
            "1",
            "--prom-file",
            &prom.display().to_string(),
        ],
    );
    s.assert_times_out(DENIED_V4, 25);
    next_event(&mut lines, |v| {
        v["event"] == "stats" && v["total_v4_dropped"] == 2
    });
    let written = std::fs::read_to_string(&prom).expect("the prom file");
    assert!(
        written.contains(
            "mxgate_syns_total{interface=\"mx-mail\",family=\"ipv4\",outcome=\"dropped\"} 2"
        ),
        "{written}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(prom.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "a temporary file was left: {leftovers:?}"
    );
    run.signal(libc::SIGTERM);
}

/// The words of the unit's ExecStart, `$VAR`s expanded from `env` and split
/// into words as systemd does for unbraced variables.
fn exec_start(unit: &str, env: &std::collections::HashMap<String, String>) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    line.split_whitespace()
        .flat_map(|word| match word.strip_prefix('$') {
            Some(var) => env
                .get(var)
                .unwrap_or_else(|| panic!("${var} is not in the defaults file"))
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            None => vec![word.to_owned()],
        })
        .collect()
}

#[test]
fn the_systemd_unit_runs_mxgate_and_the_filter_survives_a_crash_and_a_restart() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let unit = std::fs::read_to_string(dist.join("mxgate.service")).unwrap();
    let defaults = std::fs::read_to_string(dist.join("mxgate.default")).unwrap();
    let mut env: std::collections::HashMap<String, String> = defaults
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    assert!(unit.contains("Restart=on-failure"), "{unit}");
    let s = Setup::new("pr-unit");
    // This machine's values, as an administrator would set them.
    env.insert("MXGATE_IFACES".into(), SERVER_IF.into());
    env.insert("MXGATE_RANGES".into(), s.ranges());
    let prom = std::path::Path::new(&s.ranges()).with_file_name("mxgate.prom");
    let options = env["MXGATE_OPTIONS"]
        .replace("--interval 60", "--interval 1 --log-format json")
        .replace(
            "--use-cache-on-failure",
            "--use-cache-on-failure --cache-dir /nonexistent/mxgate-test",
        )
        .replace(
            "/var/lib/prometheus/node-exporter/mxgate.prom",
            &prom.display().to_string(),
        );
    env.insert("MXGATE_OPTIONS".into(), options);
    let words = exec_start(&unit, &env);
    assert_eq!(words[0], "/usr/local/sbin/mxgate");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();

    let mut first = s.mx.start(&args);
    let mut lines = first.lines();
    let attached = next_event(&mut lines, |v| v["event"] == "attached");
    assert_eq!(attached["already"], false, "{attached}");
    next_event(&mut lines, |v| v["event"] == "stats");
    assert!(prom.exists(), "the unit's --prom-file is written");
    // A crash: the filter stays, and the restarted service adopts it.
    first.signal(libc::SIGKILL);
    s.assert_times_out(DENIED_V4, 25);
    let mut second = s.mx.start(&args);
    let mut lines = second.lines();
    let attached = next_event(&mut lines, |v| v["event"] == "attached");
    assert_eq!(attached["already"], true, "{attached}");
    s.assert_connects(ALLOWED_V4, 25);
    s.assert_times_out(DENIED_V4, 25);
    // systemctl stop: SIGTERM, exit 0 (no restart), filter still there.
    let status = second.signal(libc::SIGTERM);
    assert!(status.success(), "{status}");
    s.assert_times_out(DENIED_V4, 25);
}
