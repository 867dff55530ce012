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

/// `n` prefixes per family: the allowed senders' own, and `n - 1` random
/// ones that neither overlap it nor cover a denied sender.
pub fn allowlist(n: usize, seed: u64) -> Allowlist {
    let mut rng = Rng::new(seed);
    let own4: Ipv4Net = "192.0.2.0/24".parse().expect("a prefix");
    let own6: Ipv6Net = "2001:db8:5e::/48".parse().expect("a prefix");
    let denied4: Ipv4Addr = DENIED_V4.parse().expect("an address");
    let denied6: Ipv6Addr = DENIED_V6.parse().expect("an address");
    let mut v4 = Vec::new();
    // Random prefixes overlap now and then; merge, and draw more if short.
    while v4.len() < n - 1 {
        for _ in v4.len()..n - 1 {
            let addr = Ipv4Addr::from(rng.next_u64() as u32);
            let net = Ipv4Net::new(addr, 16 + rng.below(13) as u8)
                .expect("a length")
                .trunc();
            if !net.contains(&denied4) && !net.contains(&own4) && !own4.contains(&net) {
                v4.push(net);
            }
        }
        v4 = Ipv4Net::aggregate(&v4);
    }
    let mut v6 = Vec::new();
    while v6.len() < n - 1 {
        for _ in v6.len()..n - 1 {
            let addr =
                Ipv6Addr::from((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
            let net = Ipv6Net::new(addr, 32 + rng.below(33) as u8)
                .expect("a length")
                .trunc();
            if !net.contains(&denied6) && !net.contains(&own6) && !own6.contains(&net) {
                v6.push(net);
            }
        }
        v6 = Ipv6Net::aggregate(&v6);
    }
    v4.truncate(n - 1);
    v6.truncate(n - 1);
    v4.push(own4);
    v6.push(own6);
    Allowlist::from_prefixes(v4, v6)
}

fn classes() -> Vec<(&'static str, Vec<u8>)> {
    let mut arp = vec![0xff; 6];
    arp.extend([0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06]);
    arp.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(42, 0);
    vec![
        ("non-IP (ARP)", arp),
        (
            "UDP to port 25",
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 25).udp().bytes(),
        ),
        (
            "TCP ACK to port 25",
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 25)
                .flags(flags::ACK)
                .bytes(),
        ),
        (
            "SYN to port 80",
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 80).bytes(),
        ),
        (
            "allowed SYN, IPv4",
            Frame::syn(ip(ALLOWED_V4), ip(SERVER_V4), 25).bytes(),
        ),
        (
            "denied SYN, IPv4",
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 25).bytes(),
        ),
        (
            "allowed SYN, IPv6",
            Frame::syn(ip(ALLOWED_V6), ip(SERVER_V6), 25).bytes(),
        ),
        (
            "denied SYN, IPv6",
            Frame::syn(ip(DENIED_V6), ip(SERVER_V6), 25).bytes(),
        ),
        (
            "denied SYN, IPv4, 802.1Q tag",
            Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 25)
                .vlans(&[TPID_8021Q])
                .bytes(),
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
    let denied = &frames[5].1;
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
        for (_, frame) in &frames {
            column.push(cost(filter.filter().program(), frame)?);
        }
        columns.push(column);
    }
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
    for (i, (name, _)) in frames.iter().enumerate() {
        let mut row = vec![(*name).to_owned()];
        row.extend(columns.iter().map(|c| cell(c[i], floor)));
        rows.push(row);
    }
    let denied_100 = columns[1][5] - floor;
    let worst_non_smtp = columns
        .iter()
        .flat_map(|c| c[..4].iter())
        .fold(0f64, |a, b| a.max(*b))
        - floor;
    Ok(format!(
        "\n### Per-packet cost (BPF_PROG_TEST_RUN)\n\n\
         ns per frame, median of {RUNS} runs of {} repeats each; in brackets, ns above \
         the floor (a program that only returns XDP_PASS, measured in the same run). \
         Prefixes are per family (IPv4 and IPv6 tries each hold that many).\n\n{}\n\
         Targets: a non-SMTP frame at most floor + 5 ns (worst measured: +{worst_non_smtp:.0} ns); \
         a denied SYN with 100 prefixes at most floor + 30 ns (measured: +{denied_100:.0} ns).\n",
        thousands(REPEAT as usize),
        table(&header, &rows)
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
