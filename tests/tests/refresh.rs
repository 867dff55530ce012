//! Refresh run unattended: serialised by the pin directory's lock, never a
//! moment's gap for a sender both lists allow (in the tries or the fast
//! path in front of them), safe to kill at any point, fine with 100,000
//! prefixes, and cheap when nothing changed. The filter is loaded by the
//! library; the refreshes are the real `mxgate` binary.

use std::{
    collections::BTreeSet,
    fmt::Display,
    fs::File,
    io::{BufRead as _, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    ops::ControlFlow,
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    process::{Child, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use aya::{
    TestRun as _, TestRunOptions,
    maps::{IterableMap as _, LpmTrie, Map, MapData, lpm_trie::Key},
};
use filter_common::fast_path::{subblock_bucket, v6_subblock};
use filter_user::{
    allowlist::Allowlist,
    fast_path,
    filter::{
        Filter,
        trie_reads::{Helped, SharedRead, TrieReader},
        trie_writes,
    },
    pins::PinDir,
    sources::{Source, SourceOptions, read_list},
    sys,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mxgate_tests::{
    cli::Mxgate,
    env_u64,
    kernel::LoadedFilter,
    mutate::Rng,
    reference::{DROP, PASS, Policy},
    scenario::syn,
    unique_name,
};

/// `count` distinct random /24s, seeded.
fn random_list(rng: &mut Rng, count: usize) -> BTreeSet<Ipv4Net> {
    let mut set = BTreeSet::new();
    while set.len() < count {
        let a = 1 + rng.below(223) as u8;
        let net = Ipv4Net::new([a, rng.byte(), rng.byte(), 0].into(), 24).expect("a /24");
        set.insert(net);
    }
    set
}

fn write_list(dir: &Path, name: &str, nets: impl IntoIterator<Item = impl Display>) -> String {
    let text: String = nets.into_iter().map(|n| format!("{n}\n")).collect();
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a list");
    path.display().to_string()
}

fn parsed(path: &str) -> Allowlist {
    read_list(&[Source::File(path.into())], &[], &SourceOptions::default())
        .expect("a valid list")
        .allowlist
}

fn policy(allow: Allowlist) -> Policy {
    Policy {
        allow,
        ports: [25].into(),
        ..Policy::default()
    }
}

/// Runs `mx ARGS` to the end, failing the test if it takes longer than
/// `limit` (a wedged lock would otherwise hang the test run).
fn finish_within(mx: &Mxgate, args: &[&str], limit: Duration) -> Output {
    let child = mx
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mxgate");
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for mxgate"),
        Err(_) => {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("mxgate {args:?} did not finish within {limit:?}");
        }
    }
}

#[test]
fn concurrent_refreshes_wait_for_each_other_and_both_succeed() {
    let name = unique_name("rf-lock");
    // Made before the filter: Mxgate clears the pin directory when made.
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(11);
    let base = random_list(&mut rng, 50);
    let base_path = write_list(dir.path(), "base.txt", base.iter().copied());
    let filter = LoadedFilter::new(&name, &policy(parsed(&base_path))).expect("loading");
    let one = write_list(
        dir.path(),
        "one.txt",
        base.iter()
            .copied()
            .chain(["203.0.113.0/24".parse().unwrap()]),
    );
    let two = write_list(
        dir.path(),
        "two.txt",
        base.iter()
            .copied()
            .chain(["198.51.100.0/24".parse().unwrap()]),
    );

    // Hold the lock as a running refresh would.
    let held = File::open(mx.pin_dir()).expect("opening the pin dir");
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut children = Vec::new();
    for list in [&one, &two] {
        let mut child = mx
            .command(&["refresh", "--ranges", list])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting mxgate refresh");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("reading stderr");
        assert!(line.contains("waiting for another mxgate"), "{line:?}");
        children.push(child);
    }
    drop(held);
    for child in children {
        let out = child.wait_with_output().expect("waiting for refresh");
        assert!(out.status.success(), "a refresh failed: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("refreshed"),
            "{out:?}"
        );
    }
    let live = filter.filter().allowlist().unwrap();
    assert!(
        live == parsed(&one) || live == parsed(&two),
        "the live list is one of the two"
    );
}

/// SYNs to port 25 from `addrs`.
fn syns(addrs: &[IpAddr]) -> Vec<Vec<u8>> {
    addrs.iter().map(|a| syn(&a.to_string()).bytes()).collect()
}

/// SYNs from some senders and the verdict each must get.
struct Probe<'a> {
    frames: &'a [Vec<u8>],
    addrs: &'a [IpAddr],
    want: u32,
    what: &'a str,
}

/// Runs every probe's frames through the program pinned under `pins`, on
/// its own handle, over and over until `stop`; returns how many ran and
/// the first that did not get its verdict. One thread for all probes: two
/// BPF_PROG_TEST_RUN callers at once hang Linux 5.10 under emulation
/// (xtask/kernels.toml).
fn probe_until(pins: &PinDir, probes: &[Probe], stop: &AtomicBool) -> (u64, Option<String>) {
    let filter = Filter::open(pins).expect("opening the filter for the prober");
    let mut runs = 0u64;
    while !stop.load(Ordering::SeqCst) {
        for probe in probes {
            for (frame, addr) in probe.frames.iter().zip(probe.addrs) {
                let result = filter
                    .program()
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        ..TestRunOptions::default()
                    })
                    .expect("BPF_PROG_TEST_RUN");
                runs += 1;
                if result.return_value != probe.want {
                    return (
                        runs,
                        Some(format!(
                            "{}: {addr} got verdict {}",
                            probe.what, result.return_value
                        )),
                    );
                }
            }
        }
    }
    (runs, None)
}

/// A /48 of the /24 `other_block` (its top 24 bits) whose bucket in the /48
/// table is `own`'s.
fn same_bucket(own: &Ipv6Net, other_block: u128) -> Ipv6Net {
    let bucket = subblock_bucket(v6_subblock(&own.network().octets()));
    (0u128..1 << 24)
        .map(|i| Ipv6Net::new(Ipv6Addr::from(other_block | i << 80), 48).expect("a /48"))
        .find(|n| subblock_bucket(v6_subblock(&n.network().octets())) == bucket)
        .expect("every bucket is reached within a /24's /48s")
}

/// The test lists cover whole IPv6 /24s and up to 100,000 IPv4 /24s, far
/// more than any real list (and than the default ceilings, a /28 and a
/// /8): a refresh to them raises the ceilings.
const CEILINGS: [&str; 4] = ["--max-allow-v6", "16", "--max-allow-v4", "4"];

/// `args` with [`CEILINGS`] after them.
fn raised<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().chain(&CEILINGS).copied().collect()
}

/// Two lists between which the fast path changes every way it can: a /16
/// covered whole and then in part, a /24 in full and in part, /24s that
/// merge, an IPv6 /48 covered in full and then in part, /48 entries of a
/// /40 that come and go, a /24 covered whole and then too big for the /48
/// table, a /48 whose /24 becomes covered whole while a /48 of another /24
/// takes its bucket; plus senders in one list only.
fn flip_lists() -> (String, String) {
    let colliding = same_bucket(
        &"2a01:4000:1::/48".parse().expect("a /48"),
        0x2a01_4100u128 << 96,
    );
    let a = "10.1.0.0/16\n10.2.3.0/24\n10.3.0.0/24\n10.3.1.0/25\n10.4.0.0/24\n\
             2001:db8:100::/40\n2001:db8:5e::/48\n2a00:1000::/24\n2a01:4000:1::/48\n\
             2001:db8:bad::/48\n"
        .to_owned();
    let b = format!(
        "10.1.0.0/17\n10.1.128.0/18\n10.1.192.0/25\n10.2.3.0/25\n10.2.3.128/26\n10.3.0.0/23\n\
         10.5.0.0/24\n2001:db8:100::/41\n2001:db8:180::/42\n2001:db8:5e::/49\n\
         2001:db8:5e:8000::/50\n2a00:1000::/25\n2a01:4000::/24\n{colliding}\n\
         2001:db8:bad:1::/64\n"
    );
    (a, b)
}

/// Addresses in and around every prefix of the lists: random ones inside,
/// the first and last, one past each end, and random ones in the blocks
/// around it (IPv4: its /16 and /24; IPv6: its /24, /32 and /48).
fn candidates(lists: &[&Allowlist], rng: &mut Rng) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for l in lists {
        for n in &l.v4 {
            let (a, b) = (u32::from(n.network()), u32::from(n.broadcast()));
            for _ in 0..8 {
                let inside = a + (rng.next_u64() as u32 % (b - a + 1));
                out.push(Ipv4Addr::from(inside).into());
            }
            for x in [a, b, a.wrapping_sub(1), b.wrapping_add(1)] {
                out.push(Ipv4Addr::from(x).into());
            }
            for keep in [16, 24] {
                let mask = u32::MAX << (32 - keep);
                let x = (a & mask) | (rng.next_u64() as u32 & !mask);
                out.push(Ipv4Addr::from(x).into());
            }
        }
        for n in &l.v6 {
            let (a, b) = (u128::from(n.network()), u128::from(n.broadcast()));
            for _ in 0..8 {
                let r = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
                let inside = a + r % (b - a).saturating_add(1).max(1);
                out.push(Ipv6Addr::from(inside).into());
            }
            for x in [a, b, a.wrapping_sub(1), b.wrapping_add(1)] {
                out.push(Ipv6Addr::from(x).into());
            }
            for keep in [24, 32, 48] {
                let mask = u128::MAX << (128 - keep);
                let r = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
                out.push(Ipv6Addr::from((a & mask) | (r & !mask)).into());
            }
        }
    }
    out
}

/// How the refreshes a test runs write the tries: as mxgate picks for this
/// kernel (batched where its LPM tries take batches), or forced to one
/// bpf(2) call per prefix ([`SINGLE_WRITES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writes {
    AsTheKernelAllows,
    Single,
}

/// The environment that forces one bpf(2) call per trie write.
const SINGLE_WRITES: (&str, &str) = (trie_writes::WRITE_MODE_ENV, "single");

/// `mx ARGS` with the trie writes `writes` says; asserts success, returns
/// stdout.
fn ok_writing(mx: &Mxgate, args: &[&str], writes: Writes) -> String {
    let mut cmd = mx.command(args);
    if writes == Writes::Single {
        cmd.env(SINGLE_WRITES.0, SINGLE_WRITES.1);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("running mxgate");
    assert!(out.status.success(), "mxgate {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The trie write mode this kernel should get: batched from Linux 5.13,
/// whose LPM tries took BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH.
fn expected_mode() -> &'static str {
    let kernel = aya::util::KernelVersion::current().expect("the kernel's version");
    if kernel >= aya::util::KernelVersion::new(5, 13, 0) {
        "batched"
    } else {
        "single"
    }
}

#[test]
fn no_refresh_refuses_a_sender_both_lists_allow_even_for_a_moment() {
    gap_under_flips("rf-gap", Writes::AsTheKernelAllows);
}

#[test]
fn no_refresh_refuses_a_sender_both_lists_allow_even_for_a_moment_with_single_writes() {
    gap_under_flips("rf-gap1", Writes::Single);
}

#[test]
fn refreshes_write_the_tries_in_batches_where_the_kernel_can_and_one_by_one_when_told() {
    let name = unique_name("rf-batch");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x6261_7463);
    // More than one batch of each family each way, so batches follow
    // batches, and a load's inserts are shared by two threads.
    let count = 3 * trie_writes::BATCH_LEN;
    let mut list = || {
        let v4 = random_list(&mut rng, count);
        let mut v6 = BTreeSet::new();
        while v6.len() < count {
            let block = u128::from(rng.byte()) << 88 | u128::from(rng.byte()) << 80;
            let addr = Ipv6Addr::from(0x2001_0db8_u128 << 96 | block);
            v6.insert(Ipv6Net::new(addr, 48).expect("a /48"));
        }
        let v4 = v4.iter().map(ToString::to_string);
        v4.chain(v6.iter().map(ToString::to_string))
            .collect::<Vec<_>>()
    };
    let (a, b) = (list(), list());
    let a_path = write_list(dir.path(), "a.txt", a);
    let b_path = write_list(dir.path(), "b.txt", b);
    assert!(
        parsed(&a_path).v6.len() > 2 * trie_writes::BATCH_LEN,
        "the IPv6 list merged below three batches"
    );
    let filter = LoadedFilter::new(&name, &policy(parsed(&a_path))).expect("loading");
    for (writes, want, path) in [
        (Writes::AsTheKernelAllows, expected_mode(), &b_path),
        (Writes::Single, "single", &a_path),
        (Writes::AsTheKernelAllows, expected_mode(), &b_path),
    ] {
        let json = ok_writing(
            &mx,
            &raised(&["refresh", "--ranges", path, "--max-shrink", "100", "--json"]),
            writes,
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["trie_writes"], want, "{writes:?}: {json}");
        let list = parsed(path);
        assert_eq!(filter.filter().allowlist().unwrap(), list, "{writes:?}");
        assert_eq!(filter.filter().allow.check_fast_path().unwrap(), None);
        assert_eq!(
            filter.filter().allow.digest().unwrap(),
            Some(fast_path::digest(&list))
        );
    }
    // --verbose names the mode too.
    let out = mx
        .command(&raised(&[
            "refresh",
            "--ranges",
            &a_path,
            "--max-shrink",
            "100",
            "--verbose",
        ]))
        .output()
        .expect("running mxgate");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("mxgate: trie writes: {}", expected_mode())),
        "{stderr}"
    );
}

fn gap_under_flips(prefix: &str, writes: Writes) {
    let name = unique_name(prefix);
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let (mut a_text, mut b_text) = flip_lists();
    // 5,000 /24s in each list only, in 172.16.0.0/12, so that every
    // refresh spends a while on inserts and deletes: an order that left a
    // gap would leave it open long enough for the probers to see.
    let movers: Vec<Ipv4Net> = random_list(&mut Rng::new(0x6d6f76), 40_000)
        .into_iter()
        .map(|n| {
            let [_, b, c, _] = n.network().octets();
            Ipv4Net::new([172, 16 | (b & 15), c, 0].into(), 24).expect("a /24")
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(10_000)
        .collect();
    for (i, net) in movers.iter().enumerate() {
        let text = if i % 2 == 0 { &mut a_text } else { &mut b_text };
        text.push_str(&format!("{net}\n"));
    }
    let a_path = dir.path().join("a.txt").display().to_string();
    let b_path = dir.path().join("b.txt").display().to_string();
    std::fs::write(&a_path, a_text).unwrap();
    std::fs::write(&b_path, b_text).unwrap();
    let (a, b) = (parsed(&a_path), parsed(&b_path));
    let filter = LoadedFilter::new(&name, &policy(a.clone())).expect("loading");
    let pins = PinDir::new(mx.pin_dir());

    let all = candidates(&[&a, &b], &mut Rng::new(0x0067_6170));
    let (both, neither): (Vec<IpAddr>, Vec<IpAddr>) = (
        all.iter()
            .filter(|x| a.lookup(**x).is_some() && b.lookup(**x).is_some())
            .copied()
            .collect(),
        all.iter()
            .filter(|x| a.lookup(**x).is_none() && b.lookup(**x).is_none())
            .copied()
            .collect(),
    );
    assert!(
        both.len() > 100 && neither.len() > 50,
        "{} senders in both lists, {} in neither",
        both.len(),
        neither.len()
    );
    let (both_frames, neither_frames) = (syns(&both), syns(&neither));

    // Under emulation (the kernel matrix) each refresh takes seconds.
    let refreshes = env_u64("MXGATE_REFRESH_FLIPS", 40);
    let stop = AtomicBool::new(false);
    let probes = [
        Probe {
            frames: &both_frames,
            addrs: &both,
            want: PASS,
            what: "a sender both lists allow was denied",
        },
        Probe {
            frames: &neither_frames,
            addrs: &neither,
            want: DROP,
            what: "a sender neither list allows got in",
        },
    ];
    let (runs, wrong) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| probe_until(&pins, &probes, &stop));
        for i in 0..refreshes {
            let list = if i % 2 == 0 { &b_path } else { &a_path };
            ok_writing(
                &mx,
                &raised(&["refresh", "--ranges", list, "--max-shrink", "100"]),
                writes,
            );
        }
        stop.store(true, Ordering::SeqCst);
        prober.join().expect("the prober")
    });
    assert_eq!(wrong, None);
    assert!(
        runs > 2 * refreshes,
        "the prober ran only {runs} SYNs over {refreshes} refreshes"
    );
    // After the last refresh (to `a`): exactly `a`, in the tries and in the
    // fast path, with its digest.
    assert_eq!(filter.filter().allowlist().unwrap(), a);
    assert_eq!(filter.filter().allow.check_fast_path().unwrap(), None);
    assert_eq!(
        filter.filter().allow.digest().unwrap(),
        Some(fast_path::digest(&a))
    );
    for x in &all {
        let want = if a.lookup(*x).is_some() { PASS } else { DROP };
        assert_eq!(
            filter.verdict(&syn(&x.to_string()).bytes()).unwrap(),
            want,
            "{x}"
        );
    }
}

#[test]
fn a_refresh_whose_list_matches_the_record_writes_nothing_unless_the_maps_drifted() {
    let name = unique_name("rf-digest");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), "list.txt", random_list(&mut Rng::new(9), 1000));
    let filter = LoadedFilter::new(&name, &policy(parsed(&list))).expect("loading");
    let record = filter.filter().allow.record().unwrap();
    assert_eq!(
        record.map(|r| r.digest),
        Some(fast_path::digest(&parsed(&list)))
    );
    // Nothing changed: the cheap check passes, nothing is written (the
    // list generation `run` watches stays).
    let generation = filter.filter().config().unwrap().list_generation;
    let out = mx.ok(&["refresh", "--ranges", &list]);
    assert!(out.starts_with("no change:"), "{out}");
    assert_eq!(filter.filter().allow.record().unwrap(), record);
    assert_eq!(
        filter.filter().config().unwrap().list_generation,
        generation
    );
    // Behind mxgate's back, a prefix the list lacks, under the list's
    // record (docs/DESIGN.md §6 once said such a refresh trusts the
    // digest and reads nothing back; it now checks the tries' counts and
    // checksums against the record): the refresh finds the drift and
    // removes the prefix.
    let extra: Ipv4Net = "203.0.113.0/24".parse().unwrap();
    let mut with_extra = parsed(&list);
    with_extra.v4.push(extra);
    with_extra.v4.sort();
    {
        let mut f = Filter::open(&PinDir::new(mx.pin_dir())).unwrap();
        f.apply(&with_extra).unwrap();
        f.allow.set_record(record).unwrap();
    }
    let out = mx.ok(&["refresh", "--ranges", &list]);
    assert!(
        out.contains(
            "repaired drift: the maps had drifted from the list applied last (the IPv4 \
             trie holds 1001 prefixes, the list applied last 1000"
        ),
        "{out}"
    );
    assert_eq!(filter.filter().allowlist().unwrap(), parsed(&list));
    assert_eq!(filter.filter().allow.check_fast_path().unwrap(), None);
    assert_eq!(filter.filter().allow.record().unwrap(), record);
    // Another list is compared with the tries, which then hold it exactly.
    let other = write_list(
        dir.path(),
        "other.txt",
        random_list(&mut Rng::new(10), 1000),
    );
    let out = mx.ok(&["refresh", "--ranges", &other, "--max-shrink", "100"]);
    assert!(out.starts_with("refreshed:"), "{out}");
    assert_eq!(filter.filter().allowlist().unwrap(), parsed(&other));
    assert_eq!(filter.filter().allow.check_fast_path().unwrap(), None);
}

#[test]
fn a_refresh_whose_sources_deliver_the_same_bytes_stops_before_parsing_unless_something_changed() {
    let name = unique_name("rf-bytes");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let nets: Vec<Ipv4Net> = random_list(&mut Rng::new(0x6279_7465), 1000)
        .into_iter()
        .collect();
    let list = write_list(dir.path(), "list.txt", nets.iter().copied());
    let filter = LoadedFilter::new(&name, &policy(parsed(&list))).expect("loading");
    let refresh = |extra: &[&str]| -> serde_json::Value {
        let args = [&["refresh", "--ranges", &list, "--json"][..], extra].concat();
        serde_json::from_str(&mx.ok(&args)).expect("JSON")
    };
    // Loaded by the library: no record of the bytes yet, so the first
    // refresh parses (and finds nothing to change), the second stops at
    // the bytes.
    let first = refresh(&[]);
    assert_eq!(first["sources_unchanged"], false, "{first}");
    assert_eq!(first["applied"], false, "{first}");
    let second = refresh(&[]);
    assert_eq!(second["sources_unchanged"], true, "{second}");
    assert_eq!(second["applied"], false, "{second}");
    // Linux 6.4+ counts a trie's entries: no key is read back (DESIGN §6).
    let counts = aya::util::KernelVersion::current().expect("the kernel's version")
        >= aya::util::KernelVersion::new(6, 4, 0);
    assert_eq!(second["counted_by_kernel"], counts, "{second}");
    assert_eq!(second["diff"]["v4"]["unchanged"], 1000, "{second}");
    let out = mx
        .command(&["refresh", "--ranges", &list, "--verbose"])
        .output()
        .expect("running mxgate");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped before parsing"),
        "{out:?}"
    );

    // One byte: the last prefix's third octet, so the list changes.
    let mut bytes = std::fs::read(&list).unwrap();
    let last_line = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let dot = last_line
        + bytes[last_line..]
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'.')
            .nth(1)
            .map(|(i, _)| i)
            .expect("a dotted quad");
    let digit = dot + 1;
    bytes[digit] = if bytes[digit] == b'1' { b'2' } else { b'1' };
    std::fs::write(&list, &bytes).unwrap();
    let changed = refresh(&["--max-shrink", "100"]);
    assert_eq!(changed["sources_unchanged"], false, "{changed}");
    assert_eq!(changed["applied"], true, "{changed}");
    assert_eq!(filter.filter().allowlist().unwrap(), parsed(&list));
    assert_eq!(refresh(&[])["sources_unchanged"], true);

    // An option that shapes the list: an --allow entry.
    let with_allow = refresh(&["--allow", "198.51.100.7"]);
    assert_eq!(with_allow["sources_unchanged"], false, "{with_allow}");
    assert_eq!(with_allow["applied"], true, "{with_allow}");
    assert!(
        filter
            .filter()
            .allowlist()
            .unwrap()
            .v4
            .contains(&"198.51.100.7/32".parse().unwrap())
    );
    assert_eq!(
        refresh(&["--allow", "198.51.100.7"])["sources_unchanged"],
        true
    );
    // Back without it: the bytes are the same, the options not.
    let without = refresh(&[]);
    assert_eq!(without["sources_unchanged"], false, "{without}");
    assert_eq!(without["applied"], true, "{without}");
    assert_eq!(filter.filter().allowlist().unwrap(), parsed(&list));
    assert_eq!(refresh(&[])["sources_unchanged"], true);

    // A key added to the trie by hand, the record (with its bytes' digest)
    // left as it was: the cheap check finds it, the refresh removes it.
    let record = filter.filter().allow.record().unwrap();
    {
        let data = aya::maps::MapData::from_pin(mx.pin_dir().join("ALLOW_V4")).unwrap();
        let mut trie: aya::maps::LpmTrie<_, [u8; 4], u8> =
            aya::maps::LpmTrie::try_from(aya::maps::Map::LpmTrie(data)).unwrap();
        trie.insert(&aya::maps::lpm_trie::Key::new(24, [203, 0, 113, 0]), &24, 0)
            .unwrap();
    }
    assert_eq!(filter.filter().allow.record().unwrap(), record);
    let repaired = refresh(&[]);
    assert_eq!(repaired["sources_unchanged"], false, "{repaired}");
    assert!(
        repaired["drift"][0].as_str().is_some_and(
            |d| d.contains("the IPv4 trie holds") && d.contains("the list applied last")
        ),
        "{repaired}"
    );
    assert_eq!(filter.filter().allowlist().unwrap(), parsed(&list));
    assert_eq!(filter.filter().allow.check_fast_path().unwrap(), None);
    assert_eq!(refresh(&[])["sources_unchanged"], true);
}

#[test]
fn a_refresh_that_changes_nothing_says_so() {
    let name = unique_name("rf-noop");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), "list.txt", random_list(&mut Rng::new(3), 1000));
    let _filter = LoadedFilter::new(&name, &policy(parsed(&list))).expect("loading");
    let out = mx.ok(&["refresh", "--ranges", &list]);
    assert!(out.starts_with("no change:"), "{out}");
    assert!(out.contains("nothing written"), "{out}");
    let json = mx.ok(&["refresh", "--ranges", &list, "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["applied"], false);
    assert_eq!(value["diff"]["v4"]["unchanged"], 1000);
}

#[test]
fn a_list_of_100000_prefixes_parses_merges_and_loads() {
    let name = unique_name("rf-scale");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let big = random_list(&mut Rng::new(5), 100_000);
    let path = write_list(dir.path(), "big.txt", big.iter().copied());
    let expected = parsed(&path);
    let filter = LoadedFilter::new(
        &name,
        &policy(parsed(&write_list(
            dir.path(),
            "small.txt",
            big.iter().copied().take(10),
        ))),
    )
    .expect("loading");
    // Ten prefixes to 100,000 /24s: ten thousand times the addresses, and
    // more than a /8 holds; no real list is that large, so both guards are
    // raised.
    let out = mx.ok(&[
        "refresh",
        "--ranges",
        &path,
        "--max-grow",
        "100000",
        "--max-allow-v4",
        "4",
    ]);
    assert!(
        out.contains(&format!("live now {} IPv4", expected.v4.len())),
        "{out}"
    );
    assert_eq!(filter.filter().allowlist().unwrap(), expected);
    let sample = big.iter().nth(77_777).expect("a sample prefix");
    let probe = sample.hosts().next().expect("a host").to_string();
    let answer = mx.ok(&["lookup", &probe]);
    assert!(answer.contains("allowed by"), "{answer}");
}

/// After a kill, the program must still let in every sender of `both`
/// (allowed before and after) and keep out every sender of `neither`.
fn assert_verdicts(filter: &LoadedFilter, both: &[IpAddr], neither: &[IpAddr], round: usize) {
    for (addrs, want) in [(both, PASS), (neither, DROP)] {
        for x in addrs {
            assert_eq!(
                filter.verdict(&syn(&x.to_string()).bytes()).unwrap(),
                want,
                "round {round}: {x}"
            );
        }
    }
}

/// Waits until the live trie's longest match for `net`'s first address is
/// `net` (`present`) or is no longer `net`; false when `child` exits first.
fn wait_for_trie(
    filter: &LoadedFilter,
    net: Ipv4Net,
    present: bool,
    child: &mut Child,
    limit: Duration,
) -> bool {
    let addr = IpAddr::V4(net.network());
    let started = Instant::now();
    loop {
        let found = filter
            .filter()
            .lookup(addr)
            .expect("looking up the live trie");
        if (found.prefix == Some(IpNet::V4(net))) == present {
            return true;
        }
        if child.try_wait().expect("polling mxgate refresh").is_some() {
            return false;
        }
        assert!(
            started.elapsed() < limit,
            "mxgate refresh neither changed {net} nor exited within {limit:?}"
        );
    }
}

#[test]
fn a_killed_refresh_leaves_the_live_set_between_old_and_new_and_the_next_converges() {
    let name = unique_name("rf-kill");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x6b696c6c);
    // Two lists sharing half their prefixes: a refresh either way inserts
    // 50,000 and deletes 50,000, which makes the window to kill in wide.
    let shared = random_list(&mut rng, 50_000);
    let only_a: Vec<Ipv4Net> = random_list(&mut rng, 60_000)
        .difference(&shared)
        .copied()
        .take(50_000)
        .collect();
    let only_b: Vec<Ipv4Net> = random_list(&mut rng, 60_000)
        .difference(&shared)
        .filter(|n| !only_a.contains(n))
        .copied()
        .take(50_000)
        .collect();
    // And the IPv6 and partly covered /24s of the gap test's lists, so the
    // kills land among fast-path writes of every kind too.
    let (flip_a, flip_b) = flip_lists();
    let a_path = write_list(dir.path(), "a.txt", shared.iter().chain(&only_a).copied());
    let b_path = write_list(dir.path(), "b.txt", shared.iter().chain(&only_b).copied());
    for (path, extra) in [(&a_path, &flip_a), (&b_path, &flip_b)] {
        let mut text = std::fs::read_to_string(path).unwrap();
        text.push_str(extra);
        std::fs::write(path, text).unwrap();
    }
    let flip = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        parsed(&path.display().to_string())
    };
    let (flip_a, flip_b) = (flip("flip-a.txt", &flip_a), flip("flip-b.txt", &flip_b));
    let (a, b) = (parsed(&a_path), parsed(&b_path));
    // Senders to check after each kill: some in both lists (a sample of
    // the shared /24s and all the flip lists' shared senders), some in
    // neither.
    let mut sample_rng = Rng::new(0x00_6b_69_6c);
    let all = candidates(&[&a, &b], &mut sample_rng);
    let step = all.len() / 3000 + 1;
    let mut all: Vec<IpAddr> = all.into_iter().step_by(step).collect();
    all.extend(candidates(&[&flip_a, &flip_b], &mut sample_rng));
    let allowed_by_both: Vec<IpAddr> = all
        .iter()
        .filter(|x| a.lookup(**x).is_some() && b.lookup(**x).is_some())
        .copied()
        .collect();
    let allowed_by_neither: Vec<IpAddr> = all
        .iter()
        .filter(|x| a.lookup(**x).is_none() && b.lookup(**x).is_none())
        .copied()
        .collect();
    assert!(
        allowed_by_both.len() > 200 && allowed_by_neither.len() > 40,
        "{} / {}",
        allowed_by_both.len(),
        allowed_by_neither.len()
    );
    let filter = LoadedFilter::new(&name, &policy(a.clone())).expect("loading");
    let limit = Duration::from_secs(60);

    let out = finish_within(
        &mx,
        &raised(&["refresh", "--ranges", &b_path, "--max-shrink", "100"]),
        limit,
    );
    assert!(out.status.success(), "{out:?}");
    let mut live_is = (&b, &b_path, &a, &a_path);

    let (mut mid_apply, mut rounds) = (0, 0);
    while mid_apply < 3 {
        rounds += 1;
        assert!(
            rounds <= 10,
            "only {mid_apply} of {rounds} kills landed mid-refresh"
        );
        let (old, _, new, new_path) = live_is;
        // The kill point is what this test varies, aimed by watching the
        // live trie rather than the clock: a seeded pick of one /24 the
        // refresh inserts or one it removes, and the kill as soon as the
        // trie holds it, or no longer does.
        let inserting = rng.below(2) == 0;
        let (from, other) = if inserting { (new, old) } else { (old, new) };
        let watched: Vec<Ipv4Net> = from
            .v4
            .iter()
            .filter(|n| other.lookup(IpAddr::V4(n.network())).is_none())
            .copied()
            .collect();
        let target = watched[rng.below(watched.len())];
        let mut child = mx
            .command(&raised(&[
                "refresh",
                "--ranges",
                new_path,
                "--max-shrink",
                "100",
            ]))
            .stdout(Stdio::null())
            .spawn()
            .expect("starting mxgate refresh");
        let reached = wait_for_trie(&filter, target, inserting, &mut child, limit);
        child.kill().expect("SIGKILL to mxgate refresh");
        child.wait().expect("reaping the killed refresh");
        if !reached {
            println!("round {rounds}: the refresh finished before {target} changed");
        }

        // Whatever the kill interrupted, no sender of both lists is refused,
        // and nobody the lists keep out gets in.
        assert_verdicts(&filter, &allowed_by_both, &allowed_by_neither, rounds);
        let live = filter.filter().allowlist().unwrap();
        let set = |l: &Allowlist| l.v4.iter().copied().collect::<BTreeSet<_>>();
        let (live_set, old_set, new_set) = (set(&live), set(old), set(new));
        let both: BTreeSet<_> = old_set.intersection(&new_set).copied().collect();
        let either: BTreeSet<_> = old_set.union(&new_set).copied().collect();
        assert!(
            both.is_subset(&live_set),
            "round {rounds}: lost an entry in both lists"
        );
        assert!(
            live_set.is_subset(&either),
            "round {rounds}: an entry in neither list"
        );
        if live_set != old_set && live_set != new_set {
            mid_apply += 1;
            // Half applied: the digest says nothing, so the next refresh
            // cannot skip the work.
            assert_eq!(
                filter.filter().allow.digest().unwrap(),
                None,
                "round {rounds}"
            );
        }
        // The next refresh is not wedged by the dead one's lock and converges.
        let out = finish_within(
            &mx,
            &raised(&["refresh", "--ranges", new_path, "--max-shrink", "100"]),
            limit,
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            &filter.filter().allowlist().unwrap(),
            new,
            "round {rounds}: did not converge"
        );
        assert_eq!(
            filter.filter().allow.check_fast_path().unwrap(),
            None,
            "round {rounds}: the fast path did not converge"
        );
        assert_eq!(
            filter.filter().allow.digest().unwrap(),
            Some(fast_path::digest(new)),
            "round {rounds}"
        );
        assert_verdicts(&filter, &allowed_by_both, &allowed_by_neither, rounds);
        live_is = (live_is.2, live_is.3, live_is.0, live_is.1);
    }
    println!("{mid_apply} of {rounds} kills landed mid-refresh");
}

/// A list of both families for
/// [`a_fast_path_planned_before_the_writes_writes_what_one_planned_during_the_inserts_does`]:
/// `count` IPv4 /24s, and IPv6 /48s and /64s under a few /32s, so every
/// table of the fast path has entries.
fn mixed_list(rng: &mut Rng, count: usize) -> Allowlist {
    let v4 = random_list(rng, count).into_iter().collect();
    let mut v6 = BTreeSet::new();
    while v6.len() < count {
        let mid = u128::from(rng.below(8) as u16) << 96;
        let rest = u128::from(rng.byte()) << 80 | u128::from(rng.byte()) << 72;
        let len = if rng.below(2) == 0 { 48 } else { 64 };
        let addr = (0x2001_0db8_u128 << 96) ^ mid ^ rest;
        v6.insert(
            Ipv6Net::new(Ipv6Addr::from(addr), len)
                .expect("a prefix")
                .trunc(),
        );
    }
    let mut list = Allowlist {
        v4,
        v6: v6.into_iter().collect(),
    };
    list.v4.sort();
    list
}

/// A refresh plans the fast path while the kernel reads the tries back
/// when that is the longer wait, else while the kernel makes the inserts
/// (DESIGN §6). A plan handed to `apply_list` writes what one it makes
/// itself does: the tries hold the new list, the fast path is the list's,
/// the record is the same. (Which of the two a `refresh` takes depends on
/// timing: a release build parses 100,000 prefixes in about half the time
/// the kernel takes to read them back, and plans first; a debug build
/// parses slower. Both ways are taken here through the library.)
#[test]
fn a_fast_path_planned_before_the_writes_writes_what_one_planned_during_the_inserts_does() {
    use filter_user::apply::{ApplyMode, Change, Verify, apply_list};
    let before = mixed_list(&mut Rng::new(0x706c_616e), 1000);
    // A tenth of each family replaced.
    let mut after = mixed_list(&mut Rng::new(0x6166_7465), 100);
    after.v4.extend(before.v4.iter().skip(100).copied());
    after.v6.extend(before.v6.iter().skip(100).copied());
    after.v4.sort();
    after.v4.dedup();
    after.v6.sort();
    after.v6.dedup();
    let mut results = Vec::new();
    for planned_early in [false, true] {
        let name = unique_name(&format!("rf-plan{}", u8::from(planned_early)));
        let mx = Mxgate::without_netns(&name);
        let filter = LoadedFilter::new(&name, &policy(before.clone())).expect("loading");
        let mut f = Filter::open(&PinDir::new(mx.pin_dir())).expect("opening");
        let live = f.maps.allow.read().expect("reading the tries back");
        // SAFETY: nothing else writes this test's maps.
        let plan = planned_early.then(|| unsafe { f.maps.allow.plan(&after) });
        let maps = &mut f.maps;
        let outcome = apply_list(
            &mut maps.allow,
            &mut maps.config,
            Change {
                live,
                new: &after,
                digest: fast_path::digest(&after),
                plan,
            },
            filter_user::guard::Guard {
                force: true,
                ..filter_user::guard::Guard::DEFAULT
            },
            ApplyMode::Apply,
            Verify::Cheap,
        )
        .expect("applying");
        assert!(outcome.applied, "{outcome:?}");
        let allow = &filter.filter().allow;
        assert_eq!(
            allow.read().unwrap(),
            after,
            "planned early: {planned_early}"
        );
        assert_eq!(
            allow.check_fast_path().unwrap(),
            None,
            "planned early: {planned_early}"
        );
        assert!(
            allow.consistency().unwrap().in_step(),
            "planned early: {planned_early}"
        );
        results.push((
            allow.record().unwrap(),
            allow.fast.snapshot() == fast_path::FastPath::from_list(&after),
        ));
    }
    assert_eq!(results[0], results[1]);
    assert!(results[0].1, "the fast path is the list's");
}

/// Reads the tries back as a refresh does: on a thread of its own, joined
/// by this one (with `new` as the list to be) as soon as it can. The list
/// read, and whether this thread joined.
fn read_with_help(tries: TrieReader<'_>, new: &Allowlist) -> (Allowlist, bool) {
    let shared = SharedRead::default();
    std::thread::scope(|scope| {
        let reading = scope.spawn(|| tries.read_shared(&shared));
        let helped = loop {
            let helped = tries.help(&shared, new).expect("helping");
            if !matches!(helped, Helped::Nothing) || reading.is_finished() {
                break helped;
            }
            std::thread::yield_now();
        };
        let joined = !matches!(helped, Helped::Nothing);
        let read = reading.join().expect("the reader").expect("reading");
        (helped.complete(read), joined)
    })
}

/// A refresh's read of the live list back is joined half-way by the thread
/// that parsed the new list (DESIGN §6). The two parts make up every
/// prefix of the tries, once: when the new list is the live one or 1 %
/// different, when it shares nothing with the tries (nothing to start
/// after, so no help), and when someone planted a prefix over others.
/// (`mixed_list` does not merge: its /64s lie inside its /48s, so the
/// kernel's walk is not in the order of addresses even before the plant.)
#[test]
fn a_read_of_the_tries_that_a_second_thread_joins_returns_every_prefix_once() {
    let name = unique_name("rf-shared");
    let mx = Mxgate::without_netns(&name);
    let mut rng = Rng::new(0x7368_6172);
    let live = mixed_list(&mut rng, 40_000);
    let filter = LoadedFilter::new(&name, &policy(live.clone())).expect("loading");
    let tries = filter.filter().allow.tries();
    let mut changed = live.clone();
    changed.v4.truncate(live.v4.len() - 400);
    changed.v4.extend(random_list(&mut rng, 400));
    changed.v4.sort();
    changed.v4.dedup();
    let elsewhere = Allowlist {
        v4: (0..20_000u32)
            .map(|i| Ipv4Net::new(Ipv4Addr::from(0xe000_0000 | i << 8), 24).expect("a /24"))
            .collect(),
        v6: Vec::new(),
    };
    // One prefix at a time (5.10), the tries are read on one thread.
    let batched = trie_writes::WriteMode::for_this_kernel() == trie_writes::WriteMode::Batched;
    // Every read must be whole. A thread descheduled long enough finds the
    // read (15 ms of kernel walk) over and cannot join: up to ten reads
    // until one is joined, where joining is expected.
    let check = |label: &str, new: &Allowlist, joins: bool, expected: &Allowlist| {
        let mut joined_once = false;
        for _ in 0..10 {
            let (read, joined) = read_with_help(tries, new);
            assert_eq!(&read, expected, "{label}");
            assert!(joins || !joined, "{label}: joined");
            joined_once |= joined;
            if joined || !joins {
                break;
            }
        }
        assert_eq!(joined_once, joins, "{label}: joined in any of ten reads");
    };
    check("the live list", &live, batched, &live);
    check("1 % changed", &changed, batched, &live);
    check("nothing in common", &elsewhere, false, &live);
    // A /8 over the list's /24s in it comes after them in the kernel's walk.
    let planted = Ipv4Net::new(Ipv4Addr::new(100, 0, 0, 0), 8).expect("a /8");
    let mut trie: LpmTrie<MapData, [u8; 4], u8> = LpmTrie::try_from(Map::LpmTrie(
        MapData::from_pin(Path::new(mx.pin_dir()).join("ALLOW_V4")).expect("opening ALLOW_V4"),
    ))
    .expect("ALLOW_V4 is a trie");
    trie.insert(&Key::new(8, planted.network().octets()), &8, 0)
        .expect("planting");
    let mut with_planted = live.clone();
    with_planted.v4.push(planted);
    with_planted.v4.sort();
    check("planted", &live, batched, &with_planted);
    if !batched {
        return;
    }
    // A walk told to start after a prefix the trie lacks, one in no path
    // of the trie, starts from the first key: never less than everything.
    let absent = Key::new(24, [224, 255, 255, 0]);
    let mut keys = 0;
    sys::map_keys_batched::<Key<[u8; 4]>, u8>(
        trie.map().fd().as_fd(),
        4096,
        Some(&absent),
        |read| {
            keys += read.len();
            Ok(ControlFlow::Continue(()))
        },
    )
    .expect("reading");
    assert_eq!(keys, with_planted.v4.len());
}

/// A refresh from 50,000 live prefixes to a list with 1 % of them changed
/// (where the fast path may be planned while the tries are read back,
/// DESIGN §6): the maps then hold the new list, its fast path and its
/// record.
#[test]
fn a_refresh_of_a_large_list_leaves_the_maps_in_step() {
    let name = unique_name("rf-large");
    let mx = Mxgate::without_netns(&name);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x6c61_7267);
    let before: Vec<Ipv4Net> = random_list(&mut rng, 50_000).into_iter().collect();
    let mut after = before.clone();
    after.truncate(before.len() - 500);
    after.extend(random_list(&mut rng, 500));
    let before_path = write_list(dir.path(), "before.txt", before.iter().copied());
    let after_path = write_list(dir.path(), "after.txt", after.iter().copied());
    let filter = LoadedFilter::new(&name, &policy(parsed(&before_path))).expect("loading");
    let out = mx.ok(&["refresh", "--ranges", &after_path, "--max-shrink", "100"]);
    assert!(out.starts_with("refreshed:"), "{out}");
    let allow = &filter.filter().allow;
    assert_eq!(allow.read().unwrap(), parsed(&after_path));
    assert_eq!(allow.check_fast_path().unwrap(), None);
    let consistency = allow.consistency().unwrap();
    assert!(consistency.in_step(), "{consistency:?}");
}
