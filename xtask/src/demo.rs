//! `cargo xtask demo`: two network namespaces joined by a veth pair, "the
//! internet" and "the mail server"; mxgate attached on the mail server's
//! side with examples/demo-ranges.txt; an SMTP listener on port 25 (and 587)
//! there; connects from the service's relay and from a spammer, over IPv4
//! and IPv6. Everything it made is removed at the end, on failure and on
//! Ctrl-C.

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use mxgate_tests::{
    cli::Mxgate,
    netns::{SERVER_IF, Wire},
    scenario::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, SERVER_V4, SERVER_V6},
    tcp::{ALLOWED_TIMEOUT, DENIED_TIMEOUT, Server, connect},
};

use crate::{setup::require_root, shell};

const TAG: &str = "mxdemo";
const PIN_NAME: &str = "mxgate-demo";
const RANGES: &str = "examples/demo-ranges.txt";

/// Who connects, from where (the tests' scenario addresses), to which
/// port, and what mxgate should do.
const CONNECTS: &[(&str, &str, u16, bool)] = &[
    ("the service's relay", ALLOWED_V4, 25, true),
    ("a spammer going around it", DENIED_V4, 25, false),
    ("the service's relay", ALLOWED_V6, 25, true),
    ("a spammer going around it", DENIED_V6, 25, false),
    ("the spammer, to the submission port", DENIED_V4, 587, true),
];

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    require_root("demo")?;
    let binary = shell::build_release()?;
    ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: removing what the demo made");
        remove_leftovers();
        std::process::exit(130);
    })
    .context("catching Ctrl-C")?;
    remove_leftovers();

    let mut clients: Vec<&str> = Vec::new();
    for (_, src, _, _) in CONNECTS {
        if !clients.contains(src) {
            clients.push(src);
        }
    }
    let wire = Wire::new(TAG, &clients, &[SERVER_V4, SERVER_V6])?;
    let server = Server::start(&wire.server, &[25, 587])?;
    let mx = Mxgate::with_binary(binary, &wire.server, PIN_NAME);
    println!(
        "Two network namespaces joined by a veth pair:\n  {} (\"the internet\": {})\n  \
         {} (\"the mail server\": {SERVER_V4}, {SERVER_V6}; an SMTP listener on ports 25 and 587)\n",
        wire.client.name(),
        clients.join(", "),
        wire.server.name(),
    );
    let ranges = shell::root().join(RANGES);
    let ranges = ranges.display().to_string();
    println!("The service's published ranges ({RANGES}):");
    for line in std::fs::read_to_string(&ranges)?
        .lines()
        .filter(|l| !l.starts_with('#'))
    {
        println!("  {line}");
    }

    step(&mx, &["attach", "--iface", SERVER_IF, "--ranges", &ranges])?;

    println!("\n$ mxgate run --interval 1   (in the background: one stats line a second)");
    let mut run = mx.start(&["run", "--interval", "1"]);
    let lines = run.lines();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Connect once run has taken its first reading, so its stats lines
    // count every SYN below.
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .context("mxgate run printed nothing")?;
    println!("\nConnecting to the mail server:");
    let mut surprises = Vec::new();
    for (who, src, port, allowed) in CONNECTS {
        let source: IpAddr = src.parse()?;
        let dst: IpAddr = if source.is_ipv4() {
            SERVER_V4
        } else {
            SERVER_V6
        }
        .parse()?;
        let timeout = if *allowed {
            ALLOWED_TIMEOUT
        } else {
            DENIED_TIMEOUT
        };
        let started = Instant::now();
        let result = connect(&wire.client, source, SocketAddr::new(dst, *port), timeout);
        let what = match &result {
            Ok(banner) => format!("connected: {}", banner.trim_end()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => format!(
                "no answer after {:.1} s: mxgate dropped the SYN",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => format!("failed: {e}"),
        };
        println!("  {who:<36} {src:>17} → port {port:<4} {what}");
        if result.is_ok() != *allowed {
            surprises.push(format!("{src} → port {port}: {what}"));
        }
    }
    println!(
        "  (the listener accepted {} connections)",
        server.accepted()
    );

    // The stats line that has counted both dropped SYNs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = vec![first];
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            break;
        };
        let done = line.contains("total_v4_dropped=1") && line.contains("total_v6_dropped=1");
        seen.push(line);
        if done {
            break;
        }
    }
    run.signal(libc::SIGTERM);
    seen.extend(rx.try_iter());
    println!("\nmxgate run's log:");
    for line in &seen {
        println!("  {line}");
    }

    step(&mx, &["stats"])?;
    step(&mx, &["detach"])?;
    drop(server);
    drop(wire);
    println!("\nRemoved the namespaces {TAG}-c and {TAG}-s.");

    if !surprises.is_empty() {
        bail!(
            "the filter did not do what the demo expects:\n  {}",
            surprises.join("\n  ")
        );
    }
    if !seen.iter().any(|l| l.contains("total_v4_dropped=1")) {
        bail!("mxgate run printed no stats line counting the dropped SYNs");
    }
    println!("Demo done: the relay got in, the spammer's SYNs to port 25 were dropped.");
    Ok(())
}

fn step(mx: &Mxgate, args: &[&str]) -> anyhow::Result<()> {
    println!("\n$ mxgate {}", args.join(" "));
    let out = mx.run(args);
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("mxgate {} failed ({})", args.join(" "), out.status);
    }
    Ok(())
}

/// Removes the namespaces and pins a demo may have left (an earlier run
/// killed outright, or this one interrupted).
fn remove_leftovers() {
    for ns in [format!("{TAG}-c"), format!("{TAG}-s")] {
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    }
    let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/{PIN_NAME}"));
}
