//! `mxgate run --metrics-listen`: the endpoint against `promtool check
//! metrics`, per-interface counters through it, its defences against slow
//! and oversized clients; and the whole chain against Debian's real
//! Prometheus server (alert rules and the dashboard's queries included).
//! Host only: Prometheus and promtool run on the host, in the test's
//! namespace.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use mxgate_tests::{
    cli::Running,
    http::{self, sample},
    netns::{CLIENT_IF, SERVER_IF},
    packet::RawSocket,
    scenario::{DENIED_V4, DENIED_V6, Setup, syn},
};

/// Where `run` listens in the mail server's namespace.
const LISTEN: &str = "127.0.0.1:9325";

fn listen() -> SocketAddr {
    LISTEN.parse().expect("a test address")
}

/// `run` adopting the filter, serving metrics, its lines sent to the
/// returned channel as they come.
fn run_with_metrics(s: &Setup, extra: &[&str]) -> (Running, mpsc::Receiver<String>) {
    let mut args = vec!["run", "--interval", "1", "--metrics-listen", LISTEN];
    args.extend_from_slice(extra);
    let mut run = s.mx.start(&args);
    let lines = run.lines();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_line(&rx, "event=metrics_listening", Duration::from_secs(20));
    (run, rx)
}

/// Waits for a line of `run` containing `needle`; panics with the lines
/// seen after `within`.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "no line with {needle:?} within {within:?}; saw:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// Sends `count` SYNs from `src` to port 25 of the mail server, from the
/// internet side's interface.
fn flood(s: &Setup, src: &str, count: usize) {
    let socket = RawSocket::open(&s.wire.client, CLIENT_IF).expect("a packet socket");
    let frame = syn(src).bytes();
    for _ in 0..count {
        socket.send(&frame).expect("sending a SYN");
    }
}

/// The series of one SYN counter of the mail server's interface.
fn syns(family: &str, outcome: &str) -> String {
    format!(
        "mxgate_syns_total{{interface=\"{SERVER_IF}\",family=\"{family}\",outcome=\"{outcome}\"}}"
    )
}

/// `promtool check metrics` on `text`: its complaints, empty when clean.
fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by `cargo xtask setup`)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        complaints
    } else {
        format!("promtool exited {}: {complaints}", out.status)
    }
}

#[test]
fn the_endpoint_counts_each_denied_syn_per_interface_and_passes_promtool() {
    let s = Setup::new("metrics-count");
    s.attach();
    let (_run, _lines) = run_with_metrics(&s, &[]);
    let first = http::get(&s.wire.server, listen(), "/metrics").expect("GET /metrics");
    assert_eq!(first.status, 200, "{}", first.body);
    // The attached interface is there from the start, at zero.
    assert_eq!(
        sample(&first.body, &syns("ipv4", "dropped")),
        Some(0.0),
        "{}",
        first.body
    );
    assert_eq!(
        sample(&first.body, "mxgate_enforcing"),
        Some(1.0),
        "{}",
        first.body
    );
    assert_eq!(
        sample(
            &first.body,
            &format!("mxgate_interface_attached{{interface=\"{SERVER_IF}\"}}")
        ),
        Some(1.0)
    );

    flood(&s, DENIED_V4, 500);
    flood(&s, DENIED_V6, 300);
    let body = http::poll(
        &s.wire.server,
        listen(),
        "/metrics",
        Duration::from_secs(20),
        |a| {
            let v4 = sample(&a.body, &syns("ipv4", "dropped"))?;
            let v6 = sample(&a.body, &syns("ipv6", "dropped"))?;
            (v4 == 500.0 && v6 == 300.0).then(|| a.body.clone())
        },
    )
    .expect("the drops counted");
    assert_eq!(sample(&body, &syns("ipv4", "allowed")), Some(0.0), "{body}");
    // The list's size, its record and the fast path.
    assert_eq!(
        sample(&body, "mxgate_allowlist_prefixes{family=\"ipv4\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "mxgate_allowlist_addresses{family=\"ipv4\"}"),
        Some(256.0),
        "{body}"
    );
    assert_eq!(sample(&body, "mxgate_maps_in_step"), Some(1.0), "{body}");
    assert!(
        body.contains(&format!(
            "mxgate_interface_mode_info{{interface=\"{SERVER_IF}\",mode=\""
        )),
        "{body}"
    );
    // veth has native XDP; kernels before 6.3 cannot say so.
    let native = format!("mxgate_interface_native_xdp_supported{{interface=\"{SERVER_IF}\"}}");
    assert_ne!(sample(&body, &native), Some(0.0), "{body}");
    assert_eq!(
        promtool_check(&body),
        "",
        "promtool check metrics on\n{body}"
    );
    // The same renderer prints `stats --format prometheus`.
    let stats = s.mx.ok(&["stats", "--format", "prometheus"]);
    assert_eq!(
        sample(&stats, &syns("ipv4", "dropped")),
        Some(500.0),
        "{stats}"
    );
    assert_eq!(
        promtool_check(&stats),
        "",
        "promtool check metrics on\n{stats}"
    );
}

#[test]
fn the_endpoint_answers_only_get_metrics() {
    let s = Setup::new("metrics-404");
    s.attach();
    let (_run, _lines) = run_with_metrics(&s, &[]);
    for path in ["/", "/metrics/", "/debug/pprof", "/../metrics"] {
        let a = http::get(&s.wire.server, listen(), path).expect("an answer");
        assert_eq!(a.status, 404, "GET {path}: {}", a.body);
    }
    let post = http::exchange(
        &s.wire.server,
        listen(),
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .expect("an answer");
    assert_eq!(post.status, 404);
    let ok = http::get(&s.wire.server, listen(), "/metrics").expect("an answer");
    assert_eq!(ok.status, 200);
}

#[test]
fn slow_and_oversized_clients_stop_neither_run_nor_the_endpoint() {
    let s = Setup::new("metrics-slow");
    s.attach();
    let (_run, lines) = run_with_metrics(&s, &[]);
    // More slow clients than the endpoint serves at once, each holding a
    // connection with half a request head; and one sending a head larger
    // than it reads.
    let slow: Vec<TcpStream> = s
        .wire
        .server
        .run(|| {
            (0..12)
                .map(|_| {
                    let mut c = TcpStream::connect(listen()).expect("connecting");
                    c.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                        .expect("a first part");
                    c
                })
                .collect()
        })
        .expect("in the namespace");
    let oversized = http::exchange(
        &s.wire.server,
        listen(),
        format!(
            "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        )
        .as_bytes(),
    );
    assert!(
        oversized.as_ref().map_or(true, |a| a.status != 200),
        "an oversized head was answered: {oversized:?}"
    );
    // run's loop goes on: stats lines keep coming, and changes made by
    // other commands (open, a refresh) show.
    wait_line(&lines, "event=stats", Duration::from_secs(5));
    s.mx.ok(&["open"]);
    wait_line(&lines, "event=opened", Duration::from_secs(5));
    let wider = s.write(
        "wider.txt",
        "192.0.2.0/24\n198.18.0.0/24\n2001:db8:5e::/48\n",
    );
    s.mx.ok(&["refresh", "--ranges", &wider]);
    wait_line(&lines, "event=refreshed", Duration::from_secs(5));
    // Once the slow clients have had their read timeout, the endpoint
    // answers again, showing the change.
    let body = http::poll(
        &s.wire.server,
        listen(),
        "/metrics",
        Duration::from_secs(20),
        |a| (a.status == 200).then(|| a.body.clone()),
    )
    .expect("the endpoint answers after the slow clients time out");
    assert_eq!(sample(&body, "mxgate_open"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "mxgate_enforcing"), Some(0.0), "{body}");
    assert_eq!(
        sample(&body, "mxgate_allowlist_prefixes{family=\"ipv4\"}"),
        Some(2.0),
        "{body}"
    );
    drop(slow);
}

#[test]
fn a_port_already_taken_stops_run_before_it_attaches() {
    let s = Setup::new("metrics-taken");
    let _taken = s
        .wire
        .server
        .run(|| std::net::TcpListener::bind(listen()).expect("taking the port"))
        .expect("in the namespace");
    let err = s.mx.fails(
        1,
        &[
            "run",
            "--iface",
            SERVER_IF,
            "--ranges",
            &s.ranges(),
            "--metrics-listen",
            LISTEN,
        ],
    );
    assert!(err.contains("--metrics-listen"), "{err}");
    let status = s.mx.run(&["status"]);
    assert!(
        !status.status.success(),
        "run attached although it could not listen"
    );
}

/// The repository's dist/ directory.
fn dist() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

/// Runs `promtool ARGS` in dist/prometheus and fails the test with its
/// output unless it succeeds.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dist().join("prometheus"))
        .output()
        .expect("promtool (Debian package prometheus, installed by `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    promtool(&["check", "rules", "mxgate-alerts.yml"]);
    promtool(&["test", "rules", "mxgate-alerts.test.yml"]);
}

/// Where Prometheus listens in the mail server's namespace.
const PROMETHEUS: &str = "127.0.0.1:9090";

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Debian's Prometheus server in a namespace, killed on drop; its log is
/// shown when a test fails.
struct Prometheus {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Starts it in `ns` with `rules` and a 1 s scrape of `run`'s endpoint
    /// (job "mxgate", as the rules expect) and 1 s rule evaluation.
    fn start(ns: &mxgate_tests::netns::Netns, dir: &std::path::Path, rules: &str) -> Self {
        std::fs::write(dir.join("rules.yml"), rules).expect("writing the rules");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [rules.yml]\n\
                 scrape_configs:\n  - job_name: mxgate\n    static_configs:\n      \
                 - targets: ['{LISTEN}']\n"
            ),
        )
        .expect("writing the configuration");
        let log = dir.join("prometheus.log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("the log file"))
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .expect("prometheus (Debian package prometheus, installed by `cargo xtask setup`)");
        Prometheus { child, log }
    }

    /// Polls the instant query `query` until `check` accepts its result
    /// (the `data.result` array), for at most `within`.
    fn wait<T>(
        &self,
        ns: &mxgate_tests::netns::Netns,
        query: &str,
        within: Duration,
        mut check: impl FnMut(&[serde_json::Value]) -> Option<T>,
    ) -> T {
        let path = format!("/api/v1/query?query={}", encode(query));
        let addr: SocketAddr = PROMETHEUS.parse().expect("an address");
        http::poll(ns, addr, &path, within, |a| {
            let v: serde_json::Value = serde_json::from_str(&a.body).ok()?;
            check(v["data"]["result"].as_array()?)
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\nprometheus' log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the first sample of an instant query's result.
fn first_value(result: &[serde_json::Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// The alert rules with short thresholds: every `for:` 0s, the list stale
/// after 15 s instead of 6 hours. Panics if the rules no longer have what
/// is replaced, so the test cannot quietly check other rules.
fn rules_for_the_test() -> String {
    let rules = std::fs::read_to_string(dist().join("prometheus/mxgate-alerts.yml"))
        .expect("dist/prometheus/mxgate-alerts.yml");
    assert!(
        rules.contains("> 6 * 3600"),
        "the stale-list threshold moved"
    );
    let short = rules.replace("> 6 * 3600", "> 15");
    let mut out = String::new();
    for line in short.lines() {
        match line.find("for: ") {
            Some(at) => out.push_str(&format!("{}for: 0s", &line[..at])),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(out.matches("for: 0s").count() >= 7, "{out}");
    out
}

#[test]
fn prometheus_sees_the_drops_the_dashboard_has_data_and_the_alerts_fire() {
    let s = Setup::new("metrics-prom");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let cache = cache.to_str().expect("a UTF-8 path");
    let ranges = s.ranges();
    let list = [
        "--iface",
        SERVER_IF,
        "--ranges",
        &ranges,
        "--cache-dir",
        cache,
    ];
    s.mx.ok(&[&["attach"][..], &list].concat());
    let (_run, _lines) = run_with_metrics(&s, &list);
    let prometheus = Prometheus::start(&s.wire.server, dir.path(), &rules_for_the_test());
    let ns = &s.wire.server;
    let long = Duration::from_secs(60);
    prometheus.wait(ns, "up{job=\"mxgate\"}", long, |r| {
        (first_value(r) == Some(1.0)).then_some(())
    });
    // Attached and fresh: neither alert fires yet.
    prometheus.wait(ns, "mxgate_enforcing", long, |r| {
        (first_value(r) == Some(1.0)).then_some(())
    });
    let firing = |name: &str| format!("ALERTS{{alertname=\"{name}\",alertstate=\"firing\"}}");
    prometheus.wait(
        ns,
        &format!("count({}) or vector(0)", firing("MxgateNotAttached")),
        long,
        |r| (first_value(r) == Some(0.0)).then_some(()),
    );

    // The drop counter rises by what is sent.
    let dropped =
        format!("sum(mxgate_syns_total{{outcome=\"dropped\",interface=\"{SERVER_IF}\"}})");
    let before = prometheus.wait(ns, &dropped, long, first_value);
    flood(&s, DENIED_V4, 1500);
    flood(&s, DENIED_V6, 500);
    prometheus.wait(ns, &dropped, long, |r| {
        (first_value(r)? == before + 2000.0).then_some(())
    });

    // Every query of the dashboard returns data (Grafana's variables set
    // as a user would: every instance, a one-minute rate).
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dist().join("grafana/mxgate.json"))
            .expect("dist/grafana/mxgate.json"),
    )
    .expect("the dashboard is JSON");
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            let query = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            assert!(!query.contains('$'), "a variable left in {query}");
            prometheus.wait(ns, &query, long, |r| (!r.is_empty()).then_some(()));
            queries += 1;
        }
    }
    assert!(queries >= 10, "only {queries} queries in the dashboard");

    // The list was refreshed at attach: stale after the test's 15 s.
    prometheus.wait(ns, &firing("MxgateListStale"), long, |r| {
        (!r.is_empty()).then_some(())
    });

    // Detached: run stops, the scrape fails, "not attached" fires.
    s.mx.ok(&["detach"]);
    prometheus.wait(ns, &firing("MxgateNotAttached"), long, |r| {
        (!r.is_empty()).then_some(())
    });
}

#[test]
fn interfaces_past_the_row_bound_are_counted_together_as_other() {
    let s = Setup::new("metrics-other");
    let ns = &s.wire.server;
    // ifindex 2000: past the 1024 rows of the counters.
    ns.ip(&[
        "link",
        "add",
        "name",
        "mx-hi",
        "index",
        "2000",
        "type",
        "veth",
        "peer",
        "name",
        "mx-hi-peer",
    ])
    .expect("a veth pair with a large ifindex");
    ns.ip(&["link", "set", "mx-hi", "up"]).expect("up");
    ns.ip(&["link", "set", "mx-hi-peer", "up"]).expect("up");
    s.mx.ok(&[
        "attach",
        "--iface",
        SERVER_IF,
        "mx-hi",
        "--ranges",
        &s.ranges(),
    ]);
    let socket = RawSocket::open(ns, "mx-hi-peer").expect("a packet socket");
    let frame = syn(DENIED_V4).bytes();
    for _ in 0..100 {
        socket.send(&frame).expect("sending a SYN");
    }
    flood(&s, DENIED_V4, 7);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let stats: serde_json::Value =
            serde_json::from_str(&s.mx.ok(&["stats", "--json"])).expect("stats --json is JSON");
        let dropped = |name: &str| {
            stats["interfaces"]
                .as_array()?
                .iter()
                .find(|i| i["interface"] == name)?["v4"]["counts"]["dropped"]
                .as_u64()
        };
        if dropped("other") == Some(100) && dropped(SERVER_IF) == Some(7) {
            break stats;
        }
        assert!(Instant::now() < deadline, "{stats}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The shared row has no ifindex of its own; the totals hold both.
    let other = stats["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["interface"] == "other"))
        .expect("the other row");
    assert!(other["ifindex"].is_null(), "{stats}");
    assert_eq!(stats["v4"]["counts"]["dropped"], 107, "{stats}");
    let text = s.mx.ok(&["stats"]);
    assert!(
        text.contains("other (every interface with ifindex 1024 or more)"),
        "{text}"
    );
    let prom = s.mx.ok(&["stats", "--format", "prometheus"]);
    assert_eq!(
        sample(
            &prom,
            "mxgate_syns_total{interface=\"other\",family=\"ipv4\",outcome=\"dropped\"}"
        ),
        Some(100.0),
        "{prom}"
    );
    assert!(
        !prom.contains("mxgate_syns_total{interface=\"mx-hi\""),
        "{prom}"
    );
}
