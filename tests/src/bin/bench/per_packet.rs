//! Per-packet cost in the kernel, by BPF_PROG_TEST_RUN: each frame class
//! through mxgate with allowlists of several sizes, next to a program that
//! only passes (the floor) and one that only drops.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;
use aya::{Ebpf, TestRun as _, TestRunOptions, programs::Xdp};
use filter_user::allowlist::Allowlist;
use ipnet::{Ipv4Net, Ipv6Net};
use mxgate_tests::{
    frames::{Frame, TPID_8021Q, flags},
    kernel::LoadedFilter,
    mutate::Rng,
    reference::Policy,
    scenario::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, SERVER_V4, SERVER_V6, ip},
    unique_name,
};

use crate::table::{median, table, thousands};

const REPEAT: u32 = 1_000_000;
const RUNS: usize = 5;
pub const SIZES: [usize; 5] = [10, 100, 1_000, 10_000, 100_000];

/// Blocks the benchmark's own senders live in; random prefixes stay out of
/// them, so each keeps the state its frames are meant to measure.
const KEEP_OUT_V4: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];
const KEEP_OUT_V6: [&str; 2] = ["2001:d00::/24", "2a00:b00::/24"];

/// `n` prefixes per family: the allowed senders' own (a /24 covered in
/// full, a /48 covered in full), a /25 and a /64 that leave their /24 and
/// /48 covered in part, and random ones (IPv4 /16–/28, IPv6 /32–/64) that
/// stay out of [`KEEP_OUT_V4`] and [`KEEP_OUT_V6`], where the denied
/// senders are.
pub fn allowlist(n: usize, seed: u64) -> Allowlist {
    let mut rng = Rng::new(seed);
    let own4: [Ipv4Net; 2] =
        ["192.0.2.0/24", "198.51.100.128/25"].map(|p| p.parse().expect("a prefix"));
    let own6: [Ipv6Net; 2] =
        ["2001:db8:5e::/48", "2001:db8:5f::/64"].map(|p| p.parse().expect("a prefix"));
    let out4: Vec<Ipv4Net> = KEEP_OUT_V4
        .iter()
        .map(|p| p.parse().expect("a prefix"))
        .collect();
    let out6: Vec<Ipv6Net> = KEEP_OUT_V6
        .iter()
        .map(|p| p.parse().expect("a prefix"))
        .collect();
    let random = n.saturating_sub(own4.len());
    let mut v4 = Vec::new();
    // Random prefixes overlap now and then; merge, and draw more if short.
    while v4.len() < random {
        for _ in v4.len()..random {
            let addr = Ipv4Addr::from(rng.next_u64() as u32);
            let net = Ipv4Net::new(addr, 16 + rng.below(13) as u8)
                .expect("a length")
                .trunc();
            if !out4.iter().any(|o| o.contains(&net) || net.contains(o)) {
                v4.push(net);
            }
        }
        v4 = Ipv4Net::aggregate(&v4);
    }
    let mut v6 = Vec::new();
    while v6.len() < random {
        for _ in v6.len()..random {
            let addr =
                Ipv6Addr::from((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
            let net = Ipv6Net::new(addr, 32 + rng.below(33) as u8)
                .expect("a length")
                .trunc();
            if !out6.iter().any(|o| o.contains(&net) || net.contains(o)) {
                v6.push(net);
            }
        }
        v6 = Ipv6Net::aggregate(&v6);
    }
    v4.truncate(random);
    v6.truncate(random);
    // One prefix: the allowed senders' own only.
    let take = n.min(own4.len());
    v4.extend(&own4[..take]);
    v6.extend(&own6[..take]);
    Allowlist::from_prefixes(v4, v6)
}

/// The share in per cent of each length in an "IPv6 realistic" list, as a
/// mail-security service's ranges run: many /48s, /32s for whole
/// providers, /64s and single hosts.
const REALISTIC_V6: [(u8, usize); 5] = [(32, 20), (48, 40), (56, 10), (64, 20), (128, 10)];

/// The flood's lists, `n` prefixes per family: IPv4 as [`allowlist`]; IPv6
/// "realistic": its lengths mixed as [`REALISTIC_V6`], random over
/// 2000::/3 (out of [`KEEP_OUT_V6`]), with the allowed senders' own, and
/// from 10 prefixes on a /32 in the denied flood's /24 (2001:dba::/32
/// beside 2001:db8:bad::/112), so that /24 is covered in part by a prefix
/// shorter than its /48s.
pub fn realistic_allowlist(n: usize, seed: u64) -> Allowlist {
    let base = allowlist(n, seed);
    let mut rng = Rng::new(seed ^ 0x7265_616c);
    let out6: Vec<Ipv6Net> = KEEP_OUT_V6
        .iter()
        .map(|p| p.parse().expect("a prefix"))
        .collect();
    let own6: Vec<Ipv6Net> = ["2001:db8:5e::/48", "2001:db8:5f::/64", "2001:dba::/32"]
        .iter()
        .map(|p| p.parse().expect("a prefix"))
        .take(if n >= 10 { 3 } else { n.min(2) })
        .collect();
    let random = n.saturating_sub(own6.len());
    let mut v6: Vec<Ipv6Net> = Vec::new();
    while v6.len() < random {
        for _ in v6.len()..random {
            let mut pick = rng.below(100);
            let len = REALISTIC_V6
                .iter()
                .find(|(_, share)| {
                    let here = pick < *share;
                    pick = pick.saturating_sub(*share);
                    here
                })
                .map_or(48, |(len, _)| *len);
            let top = 0x2000_0000_0000_0000 | (rng.next_u64() >> 3);
            let addr = Ipv6Addr::from(u128::from(top) << 64 | u128::from(rng.next_u64()));
            let net = Ipv6Net::new(addr, len).expect("a length").trunc();
            if !out6.iter().any(|o| o.contains(&net) || net.contains(o)) {
                v6.push(net);
            }
        }
        v6 = Ipv6Net::aggregate(&v6);
    }
    v6.truncate(random);
    v6.extend(own6);
    Allowlist::from_prefixes(base.v4, v6)
}

/// A sender whose /24 (IPv4) or /48 (IPv6) is covered in part.
const PARTLY_ALLOWED_V4: &str = "198.51.100.200";
const PARTLY_DENIED_V4: &str = "198.51.100.7";
const PARTLY_ALLOWED_V6: &str = "2001:db8:5f::10";
const PARTLY_DENIED_V6: &str = "2001:db8:5f:1::66";
/// A denied sender in a /24 no prefix touches.
const FAR_DENIED_V6: &str = "2a00:bad::66";

/// What a frame class is, for the targets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not an SMTP SYN: passes before any allowlist lookup.
    NotSmtp,
    /// An SMTP SYN the fast path decides.
    Fast,
    /// An SMTP SYN whose block is covered in part: the trie decides.
    Trie,
}

/// The frame classes, and where each one's verdict is reached.
fn classes() -> Vec<(&'static str, Kind, Vec<u8>)> {
    let mut arp = vec![0xff; 6];
    arp.extend([0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06]);
    arp.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(42, 0);
    let syn = |src: &str| {
        let dst = if src.contains(':') {
            SERVER_V6
        } else {
            SERVER_V4
        };
        Frame::syn(ip(src), ip(dst), 25).bytes()
    };
    use Kind::{Fast, NotSmtp, Trie};
    vec![
        ("non-IP (ARP)", NotSmtp, arp),
        (
            "UDP to port 25",
            NotSmtp,
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 25).udp().bytes(),
        ),
        (
            "TCP ACK to port 25",
            NotSmtp,
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 25)
                .flags(flags::ACK)
                .bytes(),
        ),
        (
            "SYN to port 80",
            NotSmtp,
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 80).bytes(),
        ),
        (
            "allowed SYN, IPv4, /24 covered in full",
            Fast,
            syn(ALLOWED_V4),
        ),
        ("denied SYN, IPv4, /24 not covered", Fast, syn(DENIED_V4)),
        (
            "denied SYN, IPv4, /24 not covered, 802.1Q tag",
            Fast,
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 25)
                .vlans(&[TPID_8021Q])
                .bytes(),
        ),
        (
            "allowed SYN, IPv6, /48 covered in full",
            Fast,
            syn(ALLOWED_V6),
        ),
        ("denied SYN, IPv6, /48 not covered", Fast, syn(DENIED_V6)),
        (
            "denied SYN, IPv6, /24 not covered",
            Fast,
            syn(FAR_DENIED_V6),
        ),
        (
            "allowed SYN, IPv4, /24 covered in part (trie)",
            Trie,
            syn(PARTLY_ALLOWED_V4),
        ),
        (
            "denied SYN, IPv4, /24 covered in part (trie)",
            Trie,
            syn(PARTLY_DENIED_V4),
        ),
        (
            "allowed SYN, IPv6, /48 covered in part (trie)",
            Trie,
            syn(PARTLY_ALLOWED_V6),
        ),
        (
            "denied SYN, IPv6, /48 covered in part (trie)",
            Trie,
            syn(PARTLY_DENIED_V6),
        ),
    ]
}

/// Median ns per run of `program` on `frame`, over [`RUNS`] runs.
fn cost(program: &Xdp, frame: &[u8]) -> anyhow::Result<f64> {
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: REPEAT,
            ..TestRunOptions::default()
        })?;
        runs.push(result.duration.as_nanos() as f64);
    }
    Ok(median(&mut runs))
}

/// The per-packet section.
pub fn run() -> anyhow::Result<String> {
    let mut baselines =
        Ebpf::load(filter_user::BASELINES_OBJECT).context("loading the baselines")?;
    for name in ["xdp_pass", "xdp_drop"] {
        let program: &mut Xdp = baselines
            .program_mut(name)
            .with_context(|| format!("no {name}"))?
            .try_into()?;
        program.load()?;
    }
    let frames = classes();
    let denied = &frames[5].2;
    let program = |name| -> anyhow::Result<&Xdp> {
        Ok(baselines.program(name).context("a baseline")?.try_into()?)
    };
    let floor = cost(program("xdp_pass")?, denied)?;
    let drop_all = cost(program("xdp_drop")?, denied)?;

    let mut columns = Vec::new();
    for size in SIZES {
        eprintln!(
            "bench:   allowlist of {} prefixes per family",
            thousands(size)
        );
        let policy = Policy {
            allow: allowlist(size, size as u64),
            ports: [25].into(),
            ..Policy::default()
        };
        let filter = LoadedFilter::new(&unique_name(&format!("bench-pp-{size}")), &policy)?;
        let mut column = Vec::new();
        for (_, _, frame) in &frames {
            column.push(cost(filter.filter().program(), frame)?);
        }
        columns.push(column);
    }
    let before = match std::env::var_os("MXGATE_BENCH_BEFORE") {
        Some(path) => Some(before_and_after(&frames, &columns, &path, floor)?),
        None => None,
    };
    let mut header = vec!["frame"];
    let labels: Vec<String> = SIZES
        .iter()
        .map(|s| format!("{} prefixes", thousands(*s)))
        .collect();
    header.extend(labels.iter().map(String::as_str));
    let mut rows = vec![
        row_same("baseline: XDP_PASS only (the floor)", floor, floor),
        row_same("baseline: XDP_DROP only", drop_all, floor),
    ];
    for (i, (name, _, _)) in frames.iter().enumerate() {
        let mut row = vec![(*name).to_owned()];
        row.extend(columns.iter().map(|c| cell(c[i], floor)));
        rows.push(row);
    }
    // The worst of a kind over every size, above the floor, and its frame.
    let worst = |wanted: &dyn Fn(&str, Kind) -> bool| -> (f64, String) {
        let mut worst = (f64::MIN, String::new());
        for column in &columns {
            for (ns, (name, kind, _)) in column.iter().zip(&frames) {
                if wanted(name, *kind) && ns - floor > worst.0 {
                    worst = (ns - floor, (*name).to_owned());
                }
            }
        }
        worst
    };
    let not_smtp = worst(&|_, k| k == Kind::NotSmtp);
    let fast_denied = worst(&|n, k| k == Kind::Fast && n.starts_with("denied"));
    let fast_allowed = worst(&|n, k| k == Kind::Fast && n.starts_with("allowed"));
    let trie = worst(&|_, k| k == Kind::Trie);
    let verdict = |value: f64, limit: f64| {
        if value <= limit { "met" } else { "missed" }
    };
    Ok(format!(
        "\n### Per-packet cost (BPF_PROG_TEST_RUN)\n\n\
         ns per frame, median of {RUNS} runs of {} repeats each; in brackets, ns above \
         the floor (a program that only returns XDP_PASS, measured in the same run). \
         Prefixes are per family (IPv4 and IPv6 tries each hold that many). Repeating one \
         denied frame a million times is a flood: the denied-source table samples it.\n\n{}\n\
         Targets, worst over every list size:\n\
         - a non-SMTP frame at most floor + 5 ns: +{:.0} ns ({}), {};\n\
         - a denied SYN at most floor + 15 ns, where the fast path decides: +{:.0} ns ({}), {};\n\
         - an allowed SYN from a block covered in full at most floor + 15 ns: +{:.0} ns ({}), {};\n\
         - the same for a SYN from a block covered in part, which the trie decides: \
         +{:.0} ns ({}), {}.\n",
        thousands(REPEAT as usize),
        table(&header, &rows),
        not_smtp.0,
        not_smtp.1,
        verdict(not_smtp.0, 5.0),
        fast_denied.0,
        fast_denied.1,
        verdict(fast_denied.0, 15.0),
        fast_allowed.0,
        fast_allowed.1,
        verdict(fast_allowed.0, 15.0),
        trie.0,
        trie.1,
        verdict(trie.0, 15.0),
    ) + &before.unwrap_or_default())
}

/// The common path (frames that are not SMTP SYNs, and unfragmented SYNs
/// the fast path decides) through this build and through `object`, an
/// earlier build of the program (`cargo xtask bench --before REV`), in the
/// same run.
fn before_and_after(
    frames: &[(&'static str, Kind, Vec<u8>)],
    now: &[Vec<f64>],
    object: &std::ffi::OsStr,
    floor: f64,
) -> anyhow::Result<String> {
    let label = std::env::var("MXGATE_BENCH_BEFORE_NAME").unwrap_or_else(|_| "before".into());
    let bytes =
        std::fs::read(object).with_context(|| format!("reading {}", object.to_string_lossy()))?;
    let common: Vec<usize> = (0..frames.len())
        .filter(|i| frames[*i].1 != Kind::Trie)
        .collect();
    let mut rows = Vec::new();
    let mut worst = (f64::MIN, String::new());
    let mut then = Vec::new();
    for size in SIZES {
        eprintln!(
            "bench:   {label}: allowlist of {} prefixes per family",
            thousands(size)
        );
        let policy = Policy {
            allow: allowlist(size, size as u64),
            ports: [25].into(),
            ..Policy::default()
        };
        let name = unique_name(&format!("bench-pp-before-{size}"));
        // Its maps are filled by this build's user space: an earlier
        // program with other maps (another map layout) cannot be measured.
        let filter = LoadedFilter::from_object(&name, &policy, &bytes).with_context(|| {
            format!(
                "loading {label}'s program ({}): --before takes a commit whose program has \
                 this build's maps (the same filter_common::LAYOUT_VERSION)",
                object.to_string_lossy()
            )
        })?;
        let mut column = Vec::new();
        for i in &common {
            column.push(cost(filter.filter().program(), &frames[*i].2)?);
        }
        then.push(column);
    }
    for (row, i) in common.iter().enumerate() {
        let mut cells = vec![frames[*i].0.to_owned()];
        for (size, column) in then.iter().enumerate() {
            let (after, before) = (now[size][*i], column[row]);
            let delta = after - before;
            if delta > worst.0 {
                worst = (delta, frames[*i].0.to_owned());
            }
            cells.push(format!(
                "{:.0} / {:.0} ({delta:+.0})",
                after - floor,
                before - floor
            ));
        }
        rows.push(cells);
    }
    let mut header = vec!["frame"];
    let labels: Vec<String> = SIZES
        .iter()
        .map(|s| format!("{} prefixes", thousands(*s)))
        .collect();
    header.extend(labels.iter().map(String::as_str));
    Ok(format!(
        "\n### The common path, this build against {label}\n\n\
         ns above the floor, this build / {label} (difference), same run, same frames, same \
         lists. Target: no more than before — within this machine's run-to-run noise of about \
         2 ns: worst {:+.0} ns ({}), {}.\n\n{}",
        worst.0,
        worst.1,
        if worst.0 <= 2.0 { "met" } else { "missed" },
        table(&header, &rows),
    ))
}

fn cell(ns: f64, floor: f64) -> String {
    format!("{ns:.0} (+{:.0})", ns - floor)
}

fn row_same(name: &str, ns: f64, floor: f64) -> Vec<String> {
    let mut row = vec![name.to_owned()];
    row.extend(SIZES.iter().map(|_| cell(ns, floor)));
    row
}
