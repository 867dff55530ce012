//! A SYN flood over a veth pair: a generator in the internet namespace runs
//! an XDP_TX program with BPF_PROG_RUN in live-frames mode, so crafted SYNs
//! from denied sources leave its veth as a flood would arrive: from four
//! fixed sources, from random sources in one /16 (IPv6: one /112), or from
//! random sources over the whole address space (IPv6: random /64s in
//! 2000::/3). The receiver is, in turn: nothing, nftables in the netdev
//! ingress hook, mxgate (and, with one prefix, mxgate without its
//! denied-source table), and a program that drops everything (the floor).
//! Its cost is the softirq time of the CPU the generator and the receive
//! path share, per frame received.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, TestRun as _, TestRunAttrs, TestRunOptions,
    maps::Array,
    programs::{Xdp, XdpMode, links::FdLink},
};
use filter_common::globals;
use filter_user::{
    allowlist::Allowlist,
    filter::{Filter, KernelLog},
    pins::PinDir,
};
use mxgate_tests::{
    cli::Mxgate,
    frames::{DST_MAC, Frame},
    mutate::Rng,
    netns::{CLIENT_IF, Netns, SERVER_IF, Wire},
    scenario::{ALLOWED_V4, ALLOWED_V6, SERVER_V4, SERVER_V6, ip},
    tcp::{DENIED_TIMEOUT, Server, connect},
    unique_name,
};

use crate::{
    per_packet::realistic_allowlist,
    table::{median, prefixes, table, thousands},
};

/// Frames sent per measurement to an XDP receiver, in calls of
/// [`PER_CALL`]; a receiver that passes them to the stack is slower and
/// gets [`SLOW_FRAMES`].
const FRAMES: u32 = 4_000_000;
const SLOW_FRAMES: u32 = 500_000;
const PER_CALL: u32 = 250_000;
const ROUNDS: usize = 3;
const LIST_SIZES: [usize; 3] = [1, 10_000, 100_000];

/// Where the flood's sources come from (the generator's GEN_MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sources {
    Fixed = 0,
    Narrow = 1,
    Wide = 2,
}

impl Sources {
    const ALL: [Sources; 3] = [Sources::Fixed, Sources::Narrow, Sources::Wide];

    fn name(self) -> &'static str {
        match self {
            Sources::Fixed => "4 fixed sources",
            Sources::Narrow => "random in a /16 (IPv6: a /112)",
            Sources::Wide => "random over the whole space (IPv6: random /64s)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Receiver {
    Nothing,
    Nftables,
    Mxgate,
    MxgateNoTable,
    Floor,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::Nothing => "no filter",
            Receiver::Nftables => "nftables (netdev ingress, interval set)",
            Receiver::Mxgate => "mxgate",
            Receiver::MxgateNoTable => "mxgate without its denied-source table",
            Receiver::Floor => "XDP_DROP only (the floor)",
        }
    }

    /// The receivers for a list of `size`: the table's cost does not depend
    /// on the list, so it is measured with one prefix only.
    fn for_size(size: usize) -> Vec<Receiver> {
        let mut all = vec![Receiver::Nothing, Receiver::Nftables, Receiver::Mxgate];
        if size == 1 {
            all.push(Receiver::MxgateNoTable);
        }
        all.push(Receiver::Floor);
        all
    }
}

/// Connects from an allowed source during mxgate's floods.
#[derive(Default)]
struct Probes {
    /// (succeeded, tried).
    connects: (u64, u64),
    /// Frames the server's veth dropped at its ring (never seen by XDP).
    ring_drops: u64,
    /// Floods after which mxgate's denied table held the allowed source.
    denied_allowed: u64,
    /// Floods after which `stats` said its counts were sampled.
    sampled: u64,
    /// mxgate floods.
    floods: u64,
}

#[derive(Clone, Copy)]
struct Sample {
    ns_per_frame: f64,
    frames_per_second: f64,
}

/// Medians per (family, sources, receiver).
type Results = BTreeMap<(bool, Sources, Receiver), Sample>;

struct Bench {
    wire: Wire,
    mx: Mxgate,
    dir: tempfile::TempDir,
    cpu: usize,
    floor_pin: PathBuf,
}

/// The generator's program, and the receiver's list, from which it draws
/// the sources it gives the frames: only ones the list denies.
struct Generator<'a> {
    ebpf: Ebpf,
    list: &'a Allowlist,
    rng: Rng,
}

/// Sources per pool (the generator's `POOL`).
const POOL: usize = 1 << 16;

impl<'a> Generator<'a> {
    fn load(list: &'a Allowlist) -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(filter_user::BASELINES_OBJECT)?;
        let program: &mut Xdp = ebpf.program_mut("xdp_tx").context("xdp_tx")?.try_into()?;
        program.load()?;
        Ok(Self {
            ebpf,
            list,
            rng: Rng::new(0x67656e),
        })
    }

    /// Fills the pool of `v6`'s family for `sources` and switches random
    /// sources on (or, for fixed sources, off).
    fn set_sources(&mut self, v6: bool, sources: Sources) -> anyhow::Result<()> {
        if sources != Sources::Fixed {
            let pool = self.pool(v6, sources);
            if v6 {
                let mut map: Array<_, [u8; 16]> =
                    Array::try_from(self.ebpf.map_mut("GEN_POOL_V6").context("GEN_POOL_V6")?)?;
                for (i, addr) in pool.iter().enumerate() {
                    let IpAddr::V6(a) = addr else {
                        bail!("{addr} in the IPv6 pool")
                    };
                    map.set(i as u32, &a.octets(), 0)?;
                }
            } else {
                let mut map: Array<_, [u8; 4]> =
                    Array::try_from(self.ebpf.map_mut("GEN_POOL_V4").context("GEN_POOL_V4")?)?;
                for (i, addr) in pool.iter().enumerate() {
                    let IpAddr::V4(a) = addr else {
                        bail!("{addr} in the IPv4 pool")
                    };
                    map.set(i as u32, &a.octets(), 0)?;
                }
            }
        }
        let mut mode: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("GEN_MODE").context("GEN_MODE")?)?;
        mode.set(0, &u32::from(sources != Sources::Fixed), 0)?;
        Ok(())
    }

    /// [`POOL`] sources the list denies: every one of 203.0.0.0/16 (IPv6:
    /// 2001:db8:bad::/112) in random order, or random ones over the whole
    /// IPv4 space (IPv6: random /64s in 2000::/3, random interface ids).
    fn pool(&mut self, v6: bool, sources: Sources) -> Vec<IpAddr> {
        let rng = &mut self.rng;
        let mut pool: Vec<IpAddr> = Vec::with_capacity(POOL);
        if sources == Sources::Narrow {
            let base = if v6 {
                ip("2001:db8:bad::")
            } else {
                ip("203.0.0.0")
            };
            for low in 0..=u16::MAX {
                let addr = match base {
                    IpAddr::V4(a) => IpAddr::from(Ipv4Addr::from(u32::from(a) | u32::from(low))),
                    IpAddr::V6(a) => IpAddr::from(Ipv6Addr::from(u128::from(a) | u128::from(low))),
                };
                if self.list.lookup(addr).is_none() {
                    pool.push(addr);
                }
            }
            // Shuffled (Fisher-Yates), and the gaps the list leaves refilled.
            for i in (1..pool.len()).rev() {
                pool.swap(i, rng.below(i + 1));
            }
            let denied = pool.len();
            while pool.len() < POOL {
                pool.push(pool[rng.below(denied)]);
            }
            return pool;
        }
        while pool.len() < POOL {
            let addr = if v6 {
                let top = 0x2000_0000_0000_0000 | (rng.next_u64() >> 3);
                IpAddr::from(Ipv6Addr::from(
                    u128::from(top) << 64 | u128::from(rng.next_u64()),
                ))
            } else {
                IpAddr::from(Ipv4Addr::from(rng.next_u64() as u32))
            };
            if self.list.lookup(addr).is_none() {
                pool.push(addr);
            }
        }
        pool
    }

    fn program(&self) -> anyhow::Result<&Xdp> {
        Ok(self.ebpf.program("xdp_tx").context("xdp_tx")?.try_into()?)
    }
}

/// The flood section.
pub fn run() -> anyhow::Result<String> {
    let name = unique_name("bench-flood");
    let wire = Wire::new(&name, &[ALLOWED_V4, ALLOWED_V6], &[SERVER_V4, SERVER_V6])?;
    let mac = DST_MAC.map(|b| format!("{b:02x}")).join(":");
    wire.server
        .ip(&["link", "set", SERVER_IF, "address", &mac])?;
    // GRO gives a veth without an XDP program a NAPI receive path, so the
    // no-filter and nftables cases receive the same way the XDP cases do.
    in_netns(&wire.server, &["ethtool", "-K", SERVER_IF, "gro", "on"])?;
    let _listener = Server::start(&wire.server, &[25])?;
    let bench = Bench {
        mx: Mxgate::new(&wire.server, &name),
        floor_pin: PathBuf::from(format!("/sys/fs/bpf/{name}-floor")),
        wire,
        dir: tempfile::tempdir()?,
        cpu: std::thread::available_parallelism().map_or(1, usize::from) - 1,
    };

    let mut out = String::from(
        "\n### SYN flood over a veth pair\n\n\
         The receiver's softirq time per received frame in ns (/proc/stat over the \
         flood: the receive path runs in softirq on the generator's CPU), and in brackets \
         that over the floor's in the same run. Median of each receiver's rounds, which \
         alternate in one run. \
         Denied sources flood port 25 of a listening server; every frame's source is one \
         the receiver's list denies, with valid checksums. The IPv6 lists are \"realistic\": \
         /32 20 %, /48 40 %, /56 10 %, /64 20 %, /128 10 %, random over 2000::/3, and the \
         flood's /24 (2001:d00::/24) holds a /32, a /48 and a /64 of the list.\n",
    );
    let mut all = BTreeMap::new();
    // A development run may measure one list size (MXGATE_BENCH_FLOOD_SIZE).
    let sizes: Vec<usize> = match std::env::var("MXGATE_BENCH_FLOOD_SIZE") {
        Ok(size) => vec![size.parse().context("MXGATE_BENCH_FLOOD_SIZE")?],
        Err(_) => LIST_SIZES.to_vec(),
    };
    for size in sizes.iter().copied() {
        eprintln!("bench:   {} per family", prefixes(size));
        let list = realistic_allowlist(size, 7 + size as u64);
        let mut generator = Generator::load(&list)?;
        let (results, probes) = bench.compare(&list, &mut generator, size)?;
        for v6 in [false, true] {
            let family = if v6 { "IPv6" } else { "IPv4" };
            let _ = write!(
                out,
                "\n{family}, {} per family.\n\n{}",
                prefixes(size),
                flood_table(&results, v6, size)
            );
        }
        let _ = writeln!(
            out,
            "\nWith {}: an allowed source, connecting all through mxgate's {} floods with a \
             0.4 s timeout, got in {} of {} times; meanwhile the receiving veth's ring, \
             overrun by the flood, dropped {} frames before XDP saw them. mxgate's denied \
             table held the allowed source after {} floods, and `stats` said its counts were \
             sampled after {} of them.",
            prefixes(size),
            probes.floods,
            probes.connects.0,
            probes.connects.1,
            thousands(probes.ring_drops as usize),
            probes.denied_allowed,
            probes.sampled,
        );
        for (key, sample) in results {
            all.insert((size, key), sample);
        }
    }
    if sizes == LIST_SIZES {
        out.push_str(&summary(&all));
    }
    Ok(out)
}

/// One family's table for one list size: a column per kind of sources.
fn flood_table(results: &Results, v6: bool, size: usize) -> String {
    let mut header = vec!["receiver"];
    header.extend(Sources::ALL.iter().map(|s| s.name()));
    let rows: Vec<Vec<String>> = Receiver::for_size(size)
        .into_iter()
        .map(|r| {
            let mut row = vec![r.name().to_owned()];
            for sources in Sources::ALL {
                let s = results[&(v6, sources, r)];
                let floor = results[&(v6, sources, Receiver::Floor)];
                row.push(format!(
                    "{:.0} ({:.2}×)",
                    s.ns_per_frame,
                    s.ns_per_frame / floor.ns_per_frame
                ));
            }
            row
        })
        .collect();
    table(&header, &rows)
}

/// The targets, from the results of every size.
fn summary(all: &BTreeMap<(usize, (bool, Sources, Receiver)), Sample>) -> String {
    let x = |size: usize, v6: bool, sources: Sources, r: Receiver| {
        all[&(size, (v6, sources, r))].ns_per_frame
            / all[&(size, (v6, sources, Receiver::Floor))].ns_per_frame
    };
    let ns = |size: usize, v6: bool, sources: Sources, r: Receiver| {
        all[&(size, (v6, sources, r))].ns_per_frame
    };
    let fps = |size: usize, v6: bool, sources: Sources, r: Receiver| {
        all[&(size, (v6, sources, r))].frames_per_second
    };
    let mark = |value: f64, limit: f64| if value <= limit { "met" } else { "missed" };
    let mut out = String::from(
        "\nTargets: with sources random in a /16 (IPv6: a /112), mxgate ≤ 1.3 × the floor \
         at every list size; with sources random over the whole space, ≤ 1.6 × with \
         100,000 prefixes.\n",
    );
    for v6 in [false, true] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        for size in LIST_SIZES {
            let narrow = x(size, v6, Sources::Narrow, Receiver::Mxgate);
            let wide = x(size, v6, Sources::Wide, Receiver::Mxgate);
            let _ = write!(
                out,
                "- {family}, {}: random in a /16 {narrow:.2} × ({}), over the whole space \
                 {wide:.2} ×",
                prefixes(size),
                mark(narrow, 1.3)
            );
            if size == 100_000 {
                let _ = write!(out, " ({})", mark(wide, 1.6));
            }
            let _ = writeln!(
                out,
                "; {:.2} × nftables; {:.1} M frames/s received.",
                ns(size, v6, Sources::Wide, Receiver::Mxgate)
                    / ns(size, v6, Sources::Wide, Receiver::Nftables),
                fps(size, v6, Sources::Wide, Receiver::Mxgate) / 1e6
            );
        }
    }
    out.push_str(
        "\nWhat the denied-source table costs per denied SYN (mxgate minus mxgate without \
         the table, 1 prefix):",
    );
    for v6 in [false, true] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let costs: Vec<String> = Sources::ALL
            .iter()
            .map(|s| {
                format!(
                    "{} {:+.0} ns",
                    s.name(),
                    ns(1, v6, *s, Receiver::Mxgate) - ns(1, v6, *s, Receiver::MxgateNoTable)
                )
            })
            .collect();
        let _ = write!(out, " {family}: {};", costs.join(", "));
    }
    out.pop();
    out.push_str(".\n");
    out
}

impl Bench {
    /// Every receiver, [`ROUNDS`] times, alternating, each with every
    /// family and kind of sources; medians, and how an allowed source fared
    /// during mxgate's floods.
    fn compare(
        &self,
        list: &Allowlist,
        generator: &mut Generator,
        size: usize,
    ) -> anyhow::Result<(Results, Probes)> {
        let ranges = self.dir.path().join("ranges.txt");
        let text: String = list
            .v4
            .iter()
            .map(|n| format!("{n}\n"))
            .chain(list.v6.iter().map(|n| format!("{n}\n")))
            .collect();
        std::fs::write(&ranges, text)?;
        let sets = self.dir.path().join("mxbench-sets.nft");
        std::fs::write(&sets, nft_sets(list))?;
        let chain = self.dir.path().join("mxbench-chain.nft");
        std::fs::write(&chain, nft_chain())?;
        // The sets stay for the whole list; only the hooked chain comes and goes.
        in_netns(
            &self.wire.server,
            &["nft", "-f", &sets.display().to_string()],
        )?;
        let mut raw: BTreeMap<(bool, Sources, Receiver), Vec<Sample>> = BTreeMap::new();
        let mut probes = Probes::default();
        for _ in 0..ROUNDS {
            for receiver in Receiver::for_size(size) {
                self.set_up(receiver, &ranges, &chain)?;
                for v6 in [false, true] {
                    for sources in Sources::ALL {
                        generator.set_sources(v6, sources)?;
                        let mxgate = receiver == Receiver::Mxgate;
                        let allowed = if v6 { ALLOWED_V6 } else { ALLOWED_V4 };
                        let dropped_before = ring_drops(&self.wire.server)?;
                        let frames = frames(v6, sources);
                        let count = match receiver {
                            Receiver::Nothing | Receiver::Nftables => SLOW_FRAMES,
                            _ => FRAMES,
                        };
                        let (sample, ok, tried) =
                            self.flood(generator, &frames, count, mxgate.then_some(allowed))?;
                        if mxgate {
                            probes.floods += 1;
                            probes.connects.0 += ok;
                            probes.connects.1 += tried;
                            probes.ring_drops += ring_drops(&self.wire.server)? - dropped_before;
                            let stats: serde_json::Value = serde_json::from_str(
                                &self.mx.ok(&["stats", "--json", "--top", "100000"]),
                            )?;
                            if stats.to_string().contains(&format!("\"{allowed}\"")) {
                                probes.denied_allowed += 1;
                            }
                            if stats["sampled"] == true {
                                probes.sampled += 1;
                            }
                        }
                        raw.entry((v6, sources, receiver)).or_default().push(sample);
                    }
                }
                self.tear_down(receiver)?;
            }
        }
        in_netns(
            &self.wire.server,
            &["nft", "delete", "table", "netdev", "mxbench"],
        )?;
        let results = raw
            .into_iter()
            .map(|(key, samples)| {
                let mut ns: Vec<f64> = samples.iter().map(|s| s.ns_per_frame).collect();
                let mut fps: Vec<f64> = samples.iter().map(|s| s.frames_per_second).collect();
                (
                    key,
                    Sample {
                        ns_per_frame: median(&mut ns),
                        frames_per_second: median(&mut fps),
                    },
                )
            })
            .collect();
        Ok((results, probes))
    }

    fn set_up(&self, receiver: Receiver, ranges: &Path, chain: &Path) -> anyhow::Result<()> {
        // Up to 100,000 random prefixes per family: far over the ceilings
        // a real list stays under, which the benchmark lifts.
        let attach = || {
            self.mx.ok(&[
                "attach",
                "--iface",
                SERVER_IF,
                "--ranges",
                &ranges.display().to_string(),
                "--max-allow-v4",
                "1",
                "--max-allow-v6",
                "1",
            ]);
        };
        match receiver {
            Receiver::Nothing => Ok(()),
            Receiver::Nftables => in_netns(
                &self.wire.server,
                &["nft", "-f", &chain.display().to_string()],
            ),
            Receiver::Mxgate => {
                attach();
                Ok(())
            }
            Receiver::MxgateNoTable => {
                // Installed here with the table left out; attach adopts it.
                {
                    let pins = PinDir::new(self.mx.pin_dir());
                    pins.prepare()?;
                    let _lock = pins.lock()?.context("the pin directory went away")?;
                    Filter::install_with(&pins, KernelLog::Quiet, &[(globals::DENIED_SOURCES, 0)])?;
                }
                attach();
                Ok(())
            }
            Receiver::Floor => {
                let pin = self.floor_pin.clone();
                self.wire.server.run(move || -> anyhow::Result<()> {
                    let mut ebpf = Ebpf::load(filter_user::BASELINES_OBJECT)?;
                    let program: &mut Xdp = ebpf
                        .program_mut("xdp_drop")
                        .context("xdp_drop")?
                        .try_into()?;
                    program.load()?;
                    let ifindex =
                        filter_user::interfaces::ifindex(SERVER_IF).context("the server's veth")?;
                    let id = program.attach(ifindex, XdpMode::Driver)?;
                    let link: FdLink = program.take_link(id)?.try_into()?;
                    link.pin(&pin)?;
                    Ok(())
                })?
            }
        }
    }

    fn tear_down(&self, receiver: Receiver) -> anyhow::Result<()> {
        match receiver {
            Receiver::Nothing => Ok(()),
            Receiver::Nftables => in_netns(
                &self.wire.server,
                &["nft", "delete", "chain", "netdev", "mxbench", "ingress"],
            ),
            Receiver::Mxgate | Receiver::MxgateNoTable => {
                self.mx.ok(&["detach"]);
                Ok(())
            }
            Receiver::Floor => {
                std::fs::remove_file(&self.floor_pin).context("unpinning the floor's link")
            }
        }
    }

    /// Sends `count` frames, rotating through `frames`; with `probe`,
    /// connects from that allowed source meanwhile and counts the successes.
    fn flood(
        &self,
        generator: &Generator,
        frames: &[Vec<u8>],
        count: u32,
        probe: Option<&str>,
    ) -> anyhow::Result<(Sample, u64, u64)> {
        let softirq_before = softirq_ns(self.cpu)?;
        let rx_before = rx_frames(&self.wire.server)?;
        let done = AtomicBool::new(false);
        let program = generator.program()?;
        let (wall, (ok, tried)) = std::thread::scope(|scope| -> anyhow::Result<_> {
            let prober = scope.spawn(|| {
                let (mut ok, mut tried) = (0u64, 0u64);
                let Some(src) = probe else { return (ok, tried) };
                let source = ip(src);
                let dst = ip(if source.is_ipv4() {
                    SERVER_V4
                } else {
                    SERVER_V6
                });
                while !done.load(Ordering::SeqCst) {
                    tried += 1;
                    // Well under the 1 s SYN retransmission: one lost SYN fails it.
                    if connect(&self.wire.client, source, (dst, 25).into(), DENIED_TIMEOUT).is_ok()
                    {
                        ok += 1;
                    }
                }
                (ok, tried)
            });
            let wall = generate(&self.wire.client, self.cpu, program, frames, count);
            done.store(true, Ordering::SeqCst);
            let counts = prober
                .join()
                .map_err(|_| anyhow::anyhow!("the connect prober panicked"))?;
            Ok((wall?, counts))
        })?;
        let softirq = softirq_ns(self.cpu)? - softirq_before;
        let received = rx_frames(&self.wire.server)? - rx_before;
        if received == 0 {
            bail!("no frame reached the receiver");
        }
        Ok((
            Sample {
                ns_per_frame: softirq as f64 / received as f64,
                frames_per_second: received as f64 / wall.as_secs_f64(),
            },
            ok,
            tried,
        ))
    }
}

/// Runs the generator on `cpu` inside `ns`: XDP_TX in live-frames mode on
/// the internet side's veth.
fn generate(
    ns: &Netns,
    cpu: usize,
    program: &Xdp,
    frames: &[Vec<u8>],
    count: u32,
) -> anyhow::Result<Duration> {
    ns.run(|| -> anyhow::Result<Duration> {
        // SAFETY: a zeroed cpu_set_t, then one CPU set in it, for this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                bail!(
                    "pinning the generator to CPU {cpu}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        let ifindex =
            filter_user::interfaces::ifindex(CLIENT_IF).context("the internet side's veth")?;
        let started = Instant::now();
        for call in 0..(count / PER_CALL) as usize {
            let frame = &frames[call % frames.len()];
            // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
            let mut ctx = [0u8; 24];
            ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
            program
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    ctx_in: Some(&ctx),
                    repeat: PER_CALL,
                    attrs: TestRunAttrs::new().xdp_live_frames(64),
                    ..TestRunOptions::default()
                })
                .context(
                    "sending the flood: BPF_PROG_TEST_RUN in live-frames mode \
                     (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+), which some kernels refuse \
                     even to root (EPERM); MXGATE_BENCH_ONLY=per-packet,refresh runs the \
                     other sections",
                )?;
        }
        Ok(started.elapsed())
    })?
}

/// The frames a flood starts from: SYNs to port 25 from four denied
/// (spoofed, unroutable) sources; with random sources, the generator
/// rewrites the first one's source (and checksums) in every frame it sends.
fn frames(v6: bool, sources: Sources) -> Vec<Vec<u8>> {
    let count = if sources == Sources::Fixed { 4 } else { 1 };
    (0..count)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if v6 {
                (
                    format!("2001:db8:bad::{:x}", 0x66 + i)
                        .parse()
                        .expect("an address"),
                    ip(SERVER_V6),
                )
            } else {
                (
                    format!("203.0.113.{}", 66 + i).parse().expect("an address"),
                    ip(SERVER_V4),
                )
            };
            Frame::syn(src, dst, 25).sport(40000 + i as u16).bytes()
        })
        .collect()
}

/// The allowlist as nftables interval sets, in a table of their own.
fn nft_sets(list: &Allowlist) -> String {
    let elements = |nets: Vec<String>| {
        if nets.is_empty() {
            String::new()
        } else {
            format!("elements = {{ {} }};", nets.join(", "))
        }
    };
    format!(
        "table netdev mxbench {{\n\
         \tset allow4 {{ type ipv4_addr; flags interval; {} }}\n\
         \tset allow6 {{ type ipv6_addr; flags interval; {} }}\n}}\n",
        elements(list.v4.iter().map(ToString::to_string).collect()),
        elements(list.v6.iter().map(ToString::to_string).collect()),
    )
}

/// The same job as mxgate in nftables: drop SYNs to port 25 from outside
/// the allowlist, in the netdev ingress hook (before the IP stack, like XDP).
fn nft_chain() -> String {
    format!(
        "table netdev mxbench {{\n\
         \tchain ingress {{\n\
         \t\ttype filter hook ingress device \"{SERVER_IF}\" priority 0; policy accept;\n\
         \t\tip saddr != @allow4 tcp dport 25 tcp flags & (syn | ack) == syn drop\n\
         \t\tip6 saddr != @allow6 tcp dport 25 tcp flags & (syn | ack) == syn drop\n\
         \t}}\n}}\n"
    )
}

fn in_netns(ns: &Netns, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(args)
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Softirq time of `cpu` so far, from /proc/stat.
fn softirq_ns(cpu: usize) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let prefix = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&prefix))
        .context("a cpu line")?;
    let ticks: u64 = line
        .split_whitespace()
        .nth(7)
        .context("a softirq column")?
        .parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

/// Frames the server's veth dropped because its receive ring was full.
fn ring_drops(server: &Netns) -> anyhow::Result<u64> {
    let out = Command::new("ip")
        .args([
            "-n",
            server.name(),
            "-j",
            "-s",
            "link",
            "show",
            "dev",
            SERVER_IF,
        ])
        .output()?;
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j link")?;
    links[0]["stats64"]["rx"]["dropped"]
        .as_u64()
        .context("no rx dropped count from ip -s link")
}

/// Frames the server's veth took into its NAPI receive path.
fn rx_frames(server: &Netns) -> anyhow::Result<u64> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", server.path().display()))
        .args(["ethtool", "-S", SERVER_IF])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("rx_queue_0_xdp_packets:"))
        .context("no rx_queue_0_xdp_packets from ethtool -S")?
        .trim()
        .parse()
        .context("parsing rx_queue_0_xdp_packets")
}
