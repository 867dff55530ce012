//! Refresh cost: the real `mxgate refresh` loading 1,000 / 10,000 / 100,000
//! prefixes of each family, doing nothing, and applying a 1 % change,
//! beside `mxgate check` of the same list; wall time and the process's
//! peak memory, and whether the tries were written in batches. Then 1,000 refreshes under connect load, and the
//! kernel memory each map takes.

use std::{
    fmt::Write as _,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use filter_user::filter::memory::{human, map_memory};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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

fn write(dir: &std::path::Path, name: &str, nets: &[IpNet]) -> String {
    let text: String = nets.iter().map(|n| format!("{n}\n")).collect();
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a list");
    path.display().to_string()
}

/// The lists a row of the table is measured with: `count` prefixes of one
/// family that do not merge, and the same list with 1 % replaced.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// `count` distinct prefixes that do not merge: every other /24 (IPv4),
    /// every other /48 of 2000::/3 (IPv6).
    fn list(self, rng: &mut Rng, count: usize) -> Vec<IpNet> {
        let mut set = std::collections::BTreeSet::new();
        while set.len() < count {
            let net = match self {
                Family::V4 => {
                    let block = (rng.next_u64() as u32) & 0xffff_fe00;
                    IpNet::V4(Ipv4Net::new(block.into(), 24).expect("a /24"))
                }
                Family::V6 => {
                    let block = ((rng.next_u64() as u128) << 80) & (0x1fff_ffff_fffe << 80);
                    let addr = (0x2000u128 << 112) | block;
                    IpNet::V6(Ipv6Net::new(addr.into(), 48).expect("a /48"))
                }
            };
            set.insert(net);
        }
        set.into_iter().collect()
    }

    /// Prefix `i` of a block the random lists never hold.
    fn replacement(self, i: usize) -> IpNet {
        match self {
            Family::V4 => {
                IpNet::V4(Ipv4Net::new([10, (i >> 8) as u8, i as u8, 0].into(), 24).expect("a /24"))
            }
            Family::V6 => IpNet::V6(
                Ipv6Net::new(((0xfd00u128 << 112) | ((i as u128) << 80)).into(), 48)
                    .expect("a /48"),
            ),
        }
    }
}

/// One row's medians, in ms.
struct Row {
    family: Family,
    size: usize,
    check: f64,
    load: f64,
    noop: f64,
    delta: f64,
    peak_mib: f64,
}

/// The refresh section.
pub fn run() -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let mut rng = Rng::new(0x7265_6672);
    let mut rows = Vec::new();
    let mut modes = std::collections::BTreeSet::new();
    for family in [Family::V4, Family::V6] {
        for size in SIZES {
            let (row, mode) = measure_row(dir.path(), &mut rng, family, size)?;
            rows.push(row);
            modes.insert(mode);
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{} {}", thousands(r.size), r.family.label()),
                format!("{:.0}", r.check),
                format!("{:.0} ({:.1} ×)", r.load, r.load / r.check),
                format!("{:.0} ({:.2} ×)", r.noop, r.noop / r.check),
                format!("{:.0}", r.delta),
                format!("{:.1}", r.peak_mib),
            ]
        })
        .collect();
    let modes: Vec<String> = modes.into_iter().collect();
    let mut out = format!(
        "\n### Refresh\n\n\
         `mxgate refresh` as cron runs it (a new process: read the sources' bytes; when \
         they and the options are those of the live list and the maps match their record, \
         stop; otherwise parse, merge, read the live list back, diff, apply to the tries \
         and the fast path), median of {RUNS} runs, beside `mxgate check` of the same list \
         in the same run (read, parse, merge: the floor of any refresh that parses); peak \
         resident memory of the process. The tries were written {} on this kernel \
         (`refresh --json`'s `trie_writes`).\n\n{}",
        modes.join(" and "),
        table(
            &[
                "prefixes",
                "check (ms)",
                "load from 1 (ms, × check)",
                "no-op (ms, × check)",
                "1 % changed (ms)",
                "peak RSS (MiB)"
            ],
            &cells
        )
    );
    let mark = |ok: bool| if ok { "met" } else { "missed" };
    for r in rows.iter().filter(|r| r.size == 100_000) {
        let _ = writeln!(
            out,
            "\nTargets, 100,000 {} prefixes: load ≤ 100 ms and ≤ 4 × check ({:.0} ms, {:.1} ×, \
             {}); no-op ≤ 10 ms and ≤ 0.5 × check ({:.0} ms, {:.2} ×, {}); 1 % changed ≤ 60 ms \
             ({:.0} ms, {}).",
            r.family.label(),
            r.load,
            r.load / r.check,
            mark(r.load <= 100.0 && r.load <= 4.0 * r.check),
            r.noop,
            r.noop / r.check,
            mark(r.noop <= 10.0 && r.noop <= 0.5 * r.check),
            r.delta,
            mark(r.delta <= 60.0)
        );
    }

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

/// One row: `size` prefixes of `family` checked, loaded from one prefix,
/// refreshed unchanged and with 1 % changed; and how the tries were
/// written.
fn measure_row(
    dir: &std::path::Path,
    rng: &mut Rng,
    family: Family,
    size: usize,
) -> anyhow::Result<(Row, String)> {
    eprintln!(
        "bench:   refresh with {} {} prefixes",
        thousands(size),
        family.label()
    );
    let name = unique_name(&format!("bench-rf-{size}"));
    // Made before the filter: Mxgate clears the pin directory when made.
    let mx = Mxgate::without_netns(&name);
    let full = family.list(rng, size);
    let mut changed = full.clone();
    for (i, net) in changed.iter_mut().enumerate().filter(|(i, _)| i % 100 == 0) {
        *net = family.replacement(i);
    }
    let tag = format!("{}-{size}", family.label());
    let one = write(dir, &format!("one-{tag}.txt"), &full[..1]);
    let full_path = write(dir, &format!("full-{tag}.txt"), &full);
    let changed_path = write(dir, &format!("changed-{tag}.txt"), &changed);
    let _filter = LoadedFilter::new(
        &name,
        &Policy {
            ports: [25].into(),
            ..Policy::default()
        },
    )?;
    // One prefix to 100,000: far past the grow guard and the ceilings,
    // which no real list comes near.
    let grow = [
        "--max-grow",
        "1000000",
        "--max-allow-v4",
        "1",
        "--max-allow-v6",
        "1",
    ];
    mx.ok(&[&["refresh", "--ranges", &one, "--force"][..], &grow].concat());
    let (mut check, mut load, mut noop, mut delta, mut peak) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..RUNS {
        let c = measure(&mx, &["check", "--ranges", &full_path])?;
        check.push(c.wall.as_secs_f64() * 1000.0);
        let c = measure(
            &mx,
            &[&["refresh", "--ranges", &full_path][..], &grow].concat(),
        )?;
        load.push(c.wall.as_secs_f64() * 1000.0);
        peak = peak.max(c.peak_kib);
        // The first refresh after a load parses (its bytes are recorded
        // once the list is live); the ones after stop at the bytes.
        measure(&mx, &["refresh", "--ranges", &full_path])?;
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
        measure(
            &mx,
            &[&["refresh", "--ranges", &one, "--force"][..], &grow].concat(),
        )?;
    }
    // How this kernel has the tries written, as the refresh reports it.
    let json = mx.ok(&[&["refresh", "--ranges", &full_path, "--json"][..], &grow].concat());
    let value: serde_json::Value = serde_json::from_str(&json).context("refresh --json")?;
    let mode = value["trie_writes"]
        .as_str()
        .context("refresh --json names no trie_writes")?
        .to_owned();
    Ok((
        Row {
            family,
            size,
            check: median(&mut check),
            load: median(&mut load),
            noop: median(&mut noop),
            delta: median(&mut delta),
            peak_mib: peak as f64 / 1024.0,
        },
        mode,
    ))
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
