//! A SYN flood over a veth pair: a generator in the internet namespace runs
//! an XDP_TX program with BPF_PROG_RUN in live-frames mode, so crafted SYNs
//! from denied sources leave its veth as a flood would arrive. The receiver
//! is, in turn: nothing, nftables in the netdev ingress hook, mxgate, and a
//! program that drops everything (the floor). Its cost is the softirq time
//! of the CPU the generator and the receive path share, per frame received.

use std::{
    fmt::Write as _,
    net::IpAddr,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, TestRun as _, TestRunAttrs, TestRunOptions,
    programs::{Xdp, XdpMode, links::FdLink},
};
use filter_user::allowlist::Allowlist;
use mxgate_tests::{
    cli::Mxgate,
    frames::{DST_MAC, Frame},
    netns::{CLIENT_IF, Netns, SERVER_IF, Wire},
    scenario::{ALLOWED_V4, ALLOWED_V6, SERVER_V4, SERVER_V6},
    tcp::{DENIED_TIMEOUT, Server, connect},
    unique_name,
};

use crate::{
    per_packet::allowlist,
    table::{median, prefixes, table, thousands},
};

/// Frames sent per measurement, in calls of [`PER_CALL`] from rotating sources.
const FRAMES: u32 = 3_000_000;
const PER_CALL: u32 = 250_000;
const ROUNDS: usize = 3;
const LIST_SIZES: [usize; 2] = [1, 10_000];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Receiver {
    Nothing,
    Nftables,
    Mxgate,
    Floor,
}

impl Receiver {
    const ALL: [Receiver; 4] = [
        Receiver::Nothing,
        Receiver::Nftables,
        Receiver::Mxgate,
        Receiver::Floor,
    ];

    fn name(self) -> &'static str {
        match self {
            Receiver::Nothing => "no filter",
            Receiver::Nftables => "nftables (netdev ingress, interval set)",
            Receiver::Mxgate => "mxgate",
            Receiver::Floor => "XDP_DROP only (the floor)",
        }
    }
}

/// Connects from an allowed source during mxgate's floods.
#[derive(Default)]
struct Probes {
    /// (succeeded, tried).
    mxgate: (u64, u64),
    /// Frames the server's veth dropped at its ring (never seen by XDP).
    ring_drops: u64,
    /// Floods after which mxgate's denied table held the allowed source.
    denied_allowed: u64,
}

struct Sample {
    ns_per_frame: f64,
    frames_per_second: f64,
}

struct Bench {
    wire: Wire,
    mx: Mxgate,
    dir: tempfile::TempDir,
    cpu: usize,
    floor_pin: PathBuf,
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
         Receiver's softirq time per received frame (ns; /proc/stat over the flood) and \
         frames received per second. Median of each receiver's rounds, which alternate \
         in one run. Denied sources flood port 25 of a listening server; generator and \
         receive path share one CPU.\n",
    );
    let mut summary = Vec::new();
    for v6 in [false, true] {
        for size in LIST_SIZES {
            let family = if v6 { "IPv6" } else { "IPv4" };
            eprintln!("bench:   {family}, {}", prefixes(size));
            let list = allowlist(size, 7 + size as u64);
            let frames = spoofed_frames(v6);
            let (samples, probes) = bench.compare(&list, &frames, v6)?;
            let [nothing, nft, mx, floor] = samples;
            let rows: Vec<Vec<String>> = Receiver::ALL
                .iter()
                .zip([&nothing, &nft, &mx, &floor])
                .map(|(r, s)| {
                    vec![
                        r.name().to_owned(),
                        format!("{:.0}", s.ns_per_frame),
                        format!("{:.0}", s.frames_per_second),
                        format!("{:.2}", s.ns_per_frame / nft.ns_per_frame),
                        format!("{:.2}", s.ns_per_frame / floor.ns_per_frame),
                    ]
                })
                .collect();
            let _ = write!(
                out,
                "\n{family}, {} per family. An allowed source, connecting all through \
                 mxgate's floods with a 0.4 s timeout, got in {} of {} times; meanwhile the \
                 receiving veth's ring, overrun by the flood, dropped {} frames before XDP saw \
                 them, and mxgate's denied table held the allowed source after {} floods.\n\n{}",
                prefixes(size),
                probes.mxgate.0,
                probes.mxgate.1,
                thousands(probes.ring_drops as usize),
                probes.denied_allowed,
                table(
                    &["receiver", "ns/frame", "frames/s", "× nftables", "× floor"],
                    &rows
                )
            );
            summary.push((
                family,
                size,
                mx.ns_per_frame / floor.ns_per_frame,
                mx.ns_per_frame / nft.ns_per_frame,
            ));
        }
    }
    out.push_str(
        "\nTargets: mxgate ≤ 1.25 × the floor with 1 prefix, ≤ 0.15 × nftables with 10,000.\n",
    );
    for (family, size, x_floor, x_nft) in summary {
        let _ = writeln!(
            out,
            "- {family}, {}: {x_floor:.2} × the floor, {x_nft:.2} × nftables.",
            prefixes(size)
        );
    }
    Ok(out)
}

impl Bench {
    /// Every receiver, [`ROUNDS`] times, alternating; medians, and how an
    /// allowed source fared during mxgate's and the floor's floods.
    fn compare(
        &self,
        list: &Allowlist,
        frames: &[Vec<u8>],
        v6: bool,
    ) -> anyhow::Result<([Sample; 4], Probes)> {
        let ranges = self.dir.path().join("ranges.txt");
        let text: String = list
            .v4
            .iter()
            .map(|n| format!("{n}\n"))
            .chain(list.v6.iter().map(|n| format!("{n}\n")))
            .collect();
        std::fs::write(&ranges, text)?;
        let nft = self.dir.path().join("mxbench.nft");
        std::fs::write(&nft, nft_ruleset(list))?;
        let mut per_receiver: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 4];
        let mut probes = Probes::default();
        let allowed = if v6 { ALLOWED_V6 } else { ALLOWED_V4 };
        for _ in 0..ROUNDS {
            for (i, receiver) in Receiver::ALL.iter().enumerate() {
                self.set_up(*receiver, &ranges, &nft)?;
                let probe = (*receiver == Receiver::Mxgate).then_some(allowed);
                let dropped_before = ring_drops(&self.wire.server)?;
                let (sample, ok, tried) = self.flood(frames, probe)?;
                if *receiver == Receiver::Mxgate {
                    probes.mxgate.0 += ok;
                    probes.mxgate.1 += tried;
                    probes.ring_drops += ring_drops(&self.wire.server)? - dropped_before;
                    let stats = self.mx.ok(&["stats", "--json", "--top", "100000"]);
                    if stats.contains(&format!("\"{allowed}\"")) {
                        probes.denied_allowed += 1;
                    }
                }
                self.tear_down(*receiver)?;
                per_receiver[i].0.push(sample.ns_per_frame);
                per_receiver[i].1.push(sample.frames_per_second);
            }
        }
        let mut medians = per_receiver.into_iter().map(|(mut ns, mut fps)| Sample {
            ns_per_frame: median(&mut ns),
            frames_per_second: median(&mut fps),
        });
        let mut next = || medians.next().context("four receivers");
        Ok(([next()?, next()?, next()?, next()?], probes))
    }

    fn set_up(
        &self,
        receiver: Receiver,
        ranges: &std::path::Path,
        nft: &std::path::Path,
    ) -> anyhow::Result<()> {
        match receiver {
            Receiver::Nothing => Ok(()),
            Receiver::Nftables => in_netns(
                &self.wire.server,
                &["nft", "-f", &nft.display().to_string()],
            ),
            Receiver::Mxgate => {
                self.mx.ok(&[
                    "attach",
                    "--iface",
                    SERVER_IF,
                    "--ranges",
                    &ranges.display().to_string(),
                ]);
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
                        filter_user::sys::ifindex(SERVER_IF).context("the server's veth")?;
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
                &["nft", "delete", "table", "netdev", "mxbench"],
            ),
            Receiver::Mxgate => {
                self.mx.ok(&["detach"]);
                Ok(())
            }
            Receiver::Floor => {
                std::fs::remove_file(&self.floor_pin).context("unpinning the floor's link")
            }
        }
    }

    /// Sends [`FRAMES`] frames, rotating through `frames`; with `probe`,
    /// connects from that allowed source meanwhile and counts the successes.
    fn flood(&self, frames: &[Vec<u8>], probe: Option<&str>) -> anyhow::Result<(Sample, u64, u64)> {
        let softirq_before = softirq_ns(self.cpu)?;
        let rx_before = rx_frames(&self.wire.server)?;
        let done = AtomicBool::new(false);
        let (wall, (ok, tried)) = std::thread::scope(|scope| -> anyhow::Result<_> {
            let prober = scope.spawn(|| {
                let (mut ok, mut tried) = (0u64, 0u64);
                let Some(src) = probe else { return (ok, tried) };
                let source: IpAddr = src.parse().expect("an address");
                let dst: IpAddr = if source.is_ipv4() {
                    SERVER_V4
                } else {
                    SERVER_V6
                }
                .parse()
                .expect("an address");
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
            let wall = generate(&self.wire.client, self.cpu, frames);
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
fn generate(ns: &Netns, cpu: usize, frames: &[Vec<u8>]) -> anyhow::Result<Duration> {
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
        let mut ebpf = Ebpf::load(filter_user::BASELINES_OBJECT)?;
        let program: &mut Xdp = ebpf.program_mut("xdp_tx").context("xdp_tx")?.try_into()?;
        program.load()?;
        let ifindex = filter_user::sys::ifindex(CLIENT_IF).context("the internet side's veth")?;
        let started = Instant::now();
        for call in 0..(FRAMES / PER_CALL) as usize {
            let frame = &frames[call % frames.len()];
            // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
            let mut ctx = [0u8; 24];
            ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
            program.test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat: PER_CALL,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..TestRunOptions::default()
            })?;
        }
        Ok(started.elapsed())
    })?
}

/// SYNs to port 25 from four denied (spoofed, unroutable) sources.
fn spoofed_frames(v6: bool) -> Vec<Vec<u8>> {
    (0..4)
        .map(|i| {
            let (src, dst): (IpAddr, IpAddr) = if v6 {
                (
                    format!("2001:db8:bad::{:x}", 0x66 + i)
                        .parse()
                        .expect("an address"),
                    SERVER_V6.parse().expect("an address"),
                )
            } else {
                (
                    format!("203.0.113.{}", 66 + i).parse().expect("an address"),
                    SERVER_V4.parse().expect("an address"),
                )
            };
            Frame::syn(src, dst, 25).sport(40000 + i as u16).bytes()
        })
        .collect()
}

/// The same job in nftables: drop SYNs to port 25 from outside the
/// allowlist, in the netdev ingress hook (before the IP stack, like XDP).
fn nft_ruleset(list: &Allowlist) -> String {
    let set = |nets: Vec<String>| nets.join(", ");
    format!(
        "table netdev mxbench {{\n\
         \tset allow4 {{ type ipv4_addr; flags interval; elements = {{ {} }} }}\n\
         \tset allow6 {{ type ipv6_addr; flags interval; elements = {{ {} }} }}\n\
         \tchain ingress {{\n\
         \t\ttype filter hook ingress device \"{SERVER_IF}\" priority 0; policy accept;\n\
         \t\tip saddr != @allow4 tcp dport 25 tcp flags & (syn | ack) == syn drop\n\
         \t\tip6 saddr != @allow6 tcp dport 25 tcp flags & (syn | ack) == syn drop\n\
         \t}}\n}}\n",
        set(list.v4.iter().map(ToString::to_string).collect()),
        set(list.v6.iter().map(ToString::to_string).collect()),
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
