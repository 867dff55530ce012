//! Refresh cost: the real `mxgate refresh` loading 1,000 / 10,000 / 100,000
//! prefixes, doing nothing, and applying a 1 % change; wall time and the
//! process's peak memory. Then 1,000 refreshes under connect load, and the
//! kernel memory each map takes.

use std::{
    fmt::Write as _,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use filter_user::filter::memory::{human, map_memory};
use ipnet::Ipv4Net;
use mxgate_tests::{
    cli::Mxgate,
    kernel::LoadedFilter,
    mutate::Rng,
    reference::Policy,
    scenario::{Setup, flip_under_load},
    unique_name,
};

use crate::{
    per_packet::realistic_allowlist,
    table::{median, table, thousands},
};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const RUNS: usize = 5;

/// Wall time and peak resident memory of one mxgate run.
struct Cost {
    wall: Duration,
    peak_kib: i64,
}

/// Runs mxgate under /usr/bin/time: its %M is the peak of mxgate alone
/// (wait4's would include the forking parent's, which exec carries over).
fn measure(mx: &Mxgate, args: &[&str]) -> anyhow::Result<Cost> {
    let inner = mx.command(args);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M"])
        .arg(inner.get_program())
        .args(inner.get_args());
    let started = Instant::now();
    let out = cmd.output().context("running mxgate under /usr/bin/time")?;
    let wall = started.elapsed();
    if !out.status.success() {
        bail!(
            "mxgate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_kib = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("no peak RSS from /usr/bin/time")?;
    Ok(Cost { wall, peak_kib })
}

fn write(dir: &std::path::Path, name: &str, nets: &[Ipv4Net]) -> String {
    let text: String = nets.iter().map(|n| format!("{n}\n")).collect();
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a list");
    path.display().to_string()
}

/// `count` distinct /24s that do not merge (every other /24).
fn list(rng: &mut Rng, count: usize) -> Vec<Ipv4Net> {
    let mut set = std::collections::BTreeSet::new();
    while set.len() < count {
        let block = (rng.next_u64() as u32) & 0xffff_fe00;
        set.insert(Ipv4Net::new(block.into(), 24).expect("a /24"));
    }
    set.into_iter().collect()
}

/// The refresh section.
pub fn run() -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let mut rng = Rng::new(0x7265_6672);
    let mut rows = Vec::new();
    let mut at_100k = (0.0, 0.0);
    for size in SIZES {
        eprintln!("bench:   refresh with {} prefixes", thousands(size));
        let name = unique_name(&format!("bench-rf-{size}"));
        // Made before the filter: Mxgate clears the pin directory when made.
        let mx = Mxgate::without_netns(&name);
        let full = list(&mut rng, size);
        let mut changed = full.clone();
        let step = 100;
        for (i, net) in changed
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % step == 0)
        {
            *net = Ipv4Net::new([10, (i >> 8) as u8, i as u8, 0].into(), 24).expect("a /24");
        }
        let one = write(dir.path(), "one.txt", &full[..1]);
        let full_path = write(dir.path(), &format!("full-{size}.txt"), &full);
        let changed_path = write(dir.path(), &format!("changed-{size}.txt"), &changed);
        let _filter = LoadedFilter::new(
            &name,
            &Policy {
                ports: [25].into(),
                ..Policy::default()
            },
        )?;
        mx.ok(&["refresh", "--ranges", &one]);
        let (mut load, mut noop, mut delta, mut peak) = (Vec::new(), Vec::new(), Vec::new(), 0);
        // One prefix to 100,000 /24s: far past the grow guard and the
        // IPv4 ceiling (a /8), which no real list comes near.
        let grow = ["--max-grow", "1000000", "--max-allow-v4", "1"];
        // A no-op stops at the record: it checks the tries' counts and
        // checksums and the fast path's checksum, and writes nothing.
        for _ in 0..RUNS {
            let c = measure(
                &mx,
                &[&["refresh", "--ranges", &full_path][..], &grow].concat(),
            )?;
            load.push(c.wall.as_secs_f64() * 1000.0);
            peak = peak.max(c.peak_kib);
            let c = measure(&mx, &["refresh", "--ranges", &full_path])?;
            noop.push(c.wall.as_secs_f64() * 1000.0);
            let c = measure(
                &mx,
                &[
                    &["refresh", "--ranges", &changed_path, "--max-shrink", "100"][..],
                    &grow,
                ]
                .concat(),
            )?;
            delta.push(c.wall.as_secs_f64() * 1000.0);
            measure(&mx, &["refresh", "--ranges", &one, "--force"])?;
        }
        let (load_ms, noop_ms) = (median(&mut load), median(&mut noop));
        if size == 100_000 {
            at_100k = (load_ms, noop_ms);
        }
        rows.push(vec![
            thousands(size),
            format!("{load_ms:.0}"),
            format!("{noop_ms:.0}"),
            format!("{:.0}", median(&mut delta)),
            format!("{:.1}", peak as f64 / 1024.0),
        ]);
    }
    let mut out = format!(
        "\n### Refresh\n\n\
         `mxgate refresh` as cron runs it (a new process: read, parse, merge, compare the \
         list's digest with the maps'; unless equal, read the live list back, diff, apply \
         to the tries and the fast path), median of {RUNS} runs; peak resident memory of \
         the process.\n\n{}",
        table(
            &[
                "IPv4 prefixes",
                "load from 1 (ms)",
                "no-op (ms)",
                "1 % changed (ms)",
                "peak RSS (MiB)"
            ],
            &rows
        )
    );
    let mark = |ms: f64, limit: f64| if ms < limit { "met" } else { "missed" };
    let _ = writeln!(
        out,
        "\nTargets: 100,000 prefixes loaded in < 200 ms ({:.0} ms, {}); a no-op refresh of \
         100,000 < 20 ms ({:.0} ms, {}).",
        at_100k.0,
        mark(at_100k.0, 200.0),
        at_100k.1,
        mark(at_100k.1, 20.0)
    );

    eprintln!("bench:   1,000 refreshes under connect load");
    let s = Setup::new(&unique_name("bench-flip"));
    s.attach();
    let result = flip_under_load(&s, 1000);
    let _ = write!(
        out,
        "\nRefresh under load: {} refreshes flipping between two lists (the staying senders' \
         covering prefix changes each time) while the staying senders connected {} times: \
         {} failed.\n",
        thousands(result.refreshes),
        thousands(result.connects as usize),
        result.failures.len()
    );
    out.push_str(&memory()?);
    Ok(out)
}

/// The memory each map takes with 1 and with 100,000 prefixes per family
/// (the flood benchmark's lists), as `mxgate status` reports it.
fn memory() -> anyhow::Result<String> {
    eprintln!("bench:   map memory");
    let mut columns = Vec::new();
    for size in [1, 100_000] {
        let name = unique_name(&format!("bench-mem-{size}"));
        let filter = LoadedFilter::new(
            &name,
            &Policy {
                allow: realistic_allowlist(size, 7 + size as u64),
                ports: [25].into(),
                ..Policy::default()
            },
        )?;
        columns.push(map_memory(filter.filter().pins()));
    }
    let mut rows = Vec::new();
    for (i, map) in columns[0].iter().enumerate() {
        rows.push(vec![
            map.name.to_owned(),
            human(map.bytes),
            human(columns[1][i].bytes),
        ]);
    }
    let total = |c: &[filter_user::filter::memory::MapMemory]| c.iter().map(|m| m.bytes).sum();
    rows.push(vec![
        "total".to_owned(),
        human(total(&columns[0])),
        human(total(&columns[1])),
    ]);
    Ok(format!(
        "\n### Kernel memory\n\n\
         What the kernel charges for each map (fdinfo `memlock`), with the flood \
         benchmark's lists: 1 and 100,000 prefixes per family. The tries' entries grow \
         with the list; the bitmaps, the IPv6 /32 and /48 tables and the rest are \
         allocated whole when the filter is installed.\n\n{}",
        table(&["map", "1 prefix", "100,000 prefixes per family"], &rows)
    ))
}
