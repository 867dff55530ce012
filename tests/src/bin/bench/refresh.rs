//! Refresh cost: the real `mxgate refresh` loading 1,000 / 10,000 / 100,000
//! prefixes of each family, doing nothing, and applying a 1 % change,
//! beside two baselines from the same run: `mxgate check` of the same list,
//! and the kernel's own work on the tries (inserting the list into an empty
//! trie, reading it back); wall time and the process's peak memory, with
//! the tries written in batches where the kernel takes them and, at
//! 100,000, one call per prefix as on 5.10. Then 1,000 refreshes under
//! connect load, and the kernel memory each map takes.

use std::{
    fmt::Write as _,
    ops::ControlFlow,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    Pod,
    maps::{IterableMap as _, LpmTrie, MapData, lpm_trie::Key},
};
use filter_user::{
    allowlist::{Prefix, by_family},
    filter::{
        Installed,
        memory::{human, map_memory},
        trie_writes::{BATCH_LEN, WRITE_MODE_ENV, WriteMode, insert_all, remove_all},
    },
    sys,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mxgate_tests::{
    cli::Mxgate,
    kernel::LoadedFilter,
    mutate::Rng,
    reference::Policy,
    scenario::{Setup, flip_under_load},
    unique_name,
};
use std::os::fd::AsFd as _;

use crate::{
    per_packet::realistic_allowlist,
    table::{median, table, thousands},
};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const RUNS: usize = 5;

/// The wall time of one mxgate run, started by this process as cron
/// starts it, writing the tries as `writes` says.
fn measure(mx: &Mxgate, args: &[&str], writes: WriteMode) -> anyhow::Result<Duration> {
    let mut cmd = mx.command(args);
    written(&mut cmd, writes);
    let started = Instant::now();
    succeeded(&mut cmd, args)?;
    Ok(started.elapsed())
}

/// The peak resident memory of one mxgate run, in KiB, run under
/// /usr/bin/time: its %M is the peak of mxgate alone (wait4's would
/// include the forking parent's, which exec carries over). Not timed: the
/// wall time would include /usr/bin/time's own start, about 2 ms.
fn peak_kib(mx: &Mxgate, args: &[&str], writes: WriteMode) -> anyhow::Result<i64> {
    let inner = mx.command(args);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M"])
        .arg(inner.get_program())
        .args(inner.get_args());
    written(&mut cmd, writes);
    let out = succeeded(&mut cmd, args)?;
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .context("no peak RSS from /usr/bin/time")
}

/// Runs `cmd`, mxgate with `args` (directly or under /usr/bin/time), to
/// its exit; an error with its stderr when it fails.
fn succeeded(cmd: &mut Command, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = cmd.output().context("running mxgate")?;
    if !out.status.success() {
        bail!(
            "mxgate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Makes `cmd` write the tries as `writes` says, whatever the bench's own
/// environment holds.
fn written(cmd: &mut Command, writes: WriteMode) {
    match writes {
        WriteMode::Single => cmd.env(WRITE_MODE_ENV, "single"),
        WriteMode::Batched => cmd.env_remove(WRITE_MODE_ENV),
    };
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
    writes: WriteMode,
    check: f64,
    trie_insert: f64,
    trie_read: f64,
    load: f64,
    noop: f64,
    /// The no-op checked the tries by the kernel's entry counts, reading
    /// no key back (`refresh --json`'s `counted_by_kernel`).
    noop_counted: bool,
    delta: f64,
    peak_mib: f64,
}

/// The refresh section.
pub fn run() -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let mut rng = Rng::new(0x7265_6672);
    // The kernel's way, whatever the bench's own environment says.
    let kernel = if sys::lpm_batch_supported() {
        WriteMode::Batched
    } else {
        WriteMode::Single
    };
    let mut rows = Vec::new();
    for family in [Family::V4, Family::V6] {
        for size in SIZES {
            rows.push(measure_row(dir.path(), &mut rng, family, size, kernel)?);
        }
        // As on 5.10, which has no batches: the same list a call per prefix.
        if kernel == WriteMode::Batched {
            rows.push(measure_row(
                dir.path(),
                &mut rng,
                family,
                SIZES[SIZES.len() - 1],
                WriteMode::Single,
            )?);
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{} {}", thousands(r.size), r.family.label()),
                r.writes.as_str().to_owned(),
                format!("{:.0}", r.check),
                format!("{:.0}", r.trie_insert),
                format!("{:.0}", r.trie_read),
                format!("{:.0} ({:.1} ×)", r.load, r.load / r.check),
                format!("{:.0} ({:.2} ×)", r.noop, r.noop / r.check),
                format!("{:.0}", r.delta),
                format!("{:.1}", r.peak_mib),
            ]
        })
        .collect();
    let mut out = format!(
        "\n### Refresh\n\n\
         `mxgate refresh` as cron runs it (a new process: read the sources' bytes; when \
         they and the options are those of the live list and the maps match their record, \
         stop; otherwise parse, merge, read the live list back, diff, apply to the tries \
         and the fast path), median of {RUNS} runs, beside two baselines from the same run: \
         `mxgate check` of the same list (read, parse, merge: the floor of any refresh that \
         parses), and the kernel's own work on a trie, timed around the bpf(2) calls alone: \
         inserting the list into an empty trie (the floor of a load) and reading it back \
         (what every diff pays, and the drift check of unchanged sources where the kernel \
         keeps no entry count). Times are from this process's start of mxgate to its \
         exit; peak resident memory from one more load under /usr/bin/time (whose own \
         start, about 2 ms, was in the times before 2026-12-07). \
         `writes`: how the tries were written and read (`refresh --json`'s \
         `trie_writes`): `batched` (BPF_MAP_UPDATE_BATCH, BPF_MAP_LOOKUP_BATCH) as this \
         kernel takes them, and `single`, one call per prefix, as on 5.10 \
         (`{WRITE_MODE_ENV}=single`).\n\n{}",
        table(
            &[
                "prefixes",
                "writes",
                "check (ms)",
                "kernel: trie insert (ms)",
                "kernel: trie read-back (ms)",
                "load from 1 (ms, × check)",
                "no-op (ms, × check)",
                "1 % changed (ms)",
                "peak RSS (MiB)"
            ],
            &cells
        )
    );
    let mark = |ok: bool| if ok { "met" } else { "missed" };
    for r in rows.iter().filter(|r| r.size == SIZES[SIZES.len() - 1]) {
        let _ = writeln!(
            out,
            "\nTargets, 100,000 {} prefixes, {}: load ≤ 100 ms and ≤ 4 × check ({:.0} ms, \
             {:.1} ×, {}; the kernel's insert alone {:.0} ms, {:.1} × check); no-op ≤ 10 ms \
             and ≤ 0.5 × check ({:.0} ms, {:.2} ×, {}; {}); 1 % changed ≤ 60 ms ({:.0} ms, \
             {}).",
            r.family.label(),
            r.writes.as_str(),
            r.load,
            r.load / r.check,
            mark(r.load <= 100.0 && r.load <= 4.0 * r.check),
            r.trie_insert,
            r.trie_insert / r.check,
            r.noop,
            r.noop / r.check,
            mark(r.noop <= 10.0 && r.noop <= 0.5 * r.check),
            if r.noop_counted {
                "the tries' entry counts from the kernel, no key read back".to_owned()
            } else {
                format!("the kernel's read-back alone {:.0} ms", r.trie_read)
            },
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
/// refreshed unchanged and with 1 % changed, the tries written as
/// `writes` says; and the kernel's own insert and read-back of the list.
fn measure_row(
    dir: &std::path::Path,
    rng: &mut Rng,
    family: Family,
    size: usize,
    writes: WriteMode,
) -> anyhow::Result<Row> {
    eprintln!(
        "bench:   refresh with {} {} prefixes, tries written {}",
        thousands(size),
        family.label(),
        writes.as_str()
    );
    let name = unique_name(&format!("bench-rf-{size}"));
    // Made before the filter: Mxgate clears the pin directory when made.
    let mx = Mxgate::without_netns(&name);
    let full = family.list(rng, size);
    let mut changed = full.clone();
    for (i, net) in changed.iter_mut().enumerate().filter(|(i, _)| i % 100 == 0) {
        *net = family.replacement(i);
    }
    let (trie_insert, trie_read) = kernel_baseline(&full, writes)?;
    let tag = format!("{}-{size}-{}", family.label(), writes.as_str());
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
    let run = |args: &[&str]| measure(&mx, args, writes);
    let reset = [&["refresh", "--ranges", &one, "--force"][..], &grow].concat();
    let load_full = [&["refresh", "--ranges", &full_path][..], &grow].concat();
    run(&reset)?;
    let ms = |wall: Duration| wall.as_secs_f64() * 1000.0;
    let (mut check, mut load, mut noop, mut delta) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        check.push(ms(run(&["check", "--ranges", &full_path])?));
        load.push(ms(run(&load_full)?));
        // The first refresh after a load parses (its bytes are recorded
        // once the list is live); the ones after stop at the bytes.
        run(&["refresh", "--ranges", &full_path])?;
        noop.push(ms(run(&["refresh", "--ranges", &full_path])?));
        delta.push(ms(run(&[
            &["refresh", "--ranges", &changed_path, "--max-shrink", "100"][..],
            &grow,
        ]
        .concat())?));
        run(&reset)?;
    }
    // The load's peak memory, from one more load.
    let peak = peak_kib(&mx, &load_full, writes)?;
    run(&reset)?;
    let json = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let mut cmd = mx.command(&[args, &["--json"]].concat());
        written(&mut cmd, writes);
        let out = cmd.output().context("refresh --json")?;
        serde_json::from_slice(&out.stdout).context("refresh --json")
    };
    // The refresh wrote the tries the way the row says.
    let value = json(&load_full)?;
    let reported = value["trie_writes"].as_str().unwrap_or("nothing");
    if reported != writes.as_str() {
        bail!(
            "refresh --json says the tries were written {reported}, the row is for {}",
            writes.as_str()
        );
    }
    // How the no-op checked the tries (the first refresh after a load
    // parses, as in the runs above).
    json(&["refresh", "--ranges", &full_path])?;
    let noop_value = json(&["refresh", "--ranges", &full_path])?;
    if noop_value["sources_unchanged"] != true {
        bail!("a refresh of the same bytes parsed them: {noop_value}");
    }
    let noop_counted = noop_value["counted_by_kernel"] == true;
    Ok(Row {
        family,
        size,
        writes,
        check: median(&mut check),
        trie_insert,
        trie_read,
        load: median(&mut load),
        noop: median(&mut noop),
        noop_counted,
        delta: median(&mut delta),
        peak_mib: peak as f64 / 1024.0,
    })
}

/// The kernel's own cost of the tries, in ms (medians of [`RUNS`]): `nets`
/// inserted into the empty trie of a filter of their own, and read back,
/// as `writes` says, timed around the bpf(2) calls alone.
fn kernel_baseline(nets: &[IpNet], writes: WriteMode) -> anyhow::Result<(f64, f64)> {
    let name = unique_name("bench-trie");
    let filter = LoadedFilter::new(&name, &Policy::default())?;
    let installed = Installed::find(filter.filter().pins())?.context("the bench's filter")?;
    let (v4, v6) = by_family(nets.iter().copied());
    let (mut insert, mut read) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let mut v4_trie = installed.map(filter_common::map_names::ALLOW_V4)?;
        let mut v6_trie = installed.map(filter_common::map_names::ALLOW_V6)?;
        let (i4, r4) = trie_round(&mut v4_trie, &v4, writes)?;
        let (i6, r6) = trie_round(&mut v6_trie, &v6, writes)?;
        insert.push((i4 + i6).as_secs_f64() * 1000.0);
        read.push((r4 + r6).as_secs_f64() * 1000.0);
    }
    Ok((median(&mut insert), median(&mut read)))
}

/// Inserts `nets` into the empty `trie`, reads every key back, then
/// empties it again (untimed): how long the insert and the read took.
fn trie_round<N>(
    trie: &mut LpmTrie<MapData, N::Octets, u8>,
    nets: &[N],
    writes: WriteMode,
) -> anyhow::Result<(Duration, Duration)>
where
    N: Prefix,
    N::Octets: Pod,
{
    let mut mode = writes;
    let started = Instant::now();
    insert_all(trie, nets, &mut mode)?;
    let inserted = started.elapsed();
    let started = Instant::now();
    let mut keys = 0usize;
    match writes {
        WriteMode::Batched => {
            let fd = trie.map().fd().as_fd();
            sys::map_keys_batched::<Key<N::Octets>, u8>(fd, BATCH_LEN, None, |read| {
                keys += read.len();
                Ok(ControlFlow::Continue(()))
            })?
        }
        WriteMode::Single => {
            for key in trie.keys() {
                key?;
                keys += 1;
            }
        }
    }
    let read = started.elapsed();
    if keys != nets.len() || mode != writes {
        bail!(
            "the bench's trie held {keys} of {} prefixes, written {}",
            nets.len(),
            mode.as_str()
        );
    }
    remove_all(trie, nets, &mut mode)?;
    Ok((inserted, read))
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
