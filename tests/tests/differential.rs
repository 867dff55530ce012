//! Differential test: many seeded random and mutated frames through the
//! loaded program (BPF_PROG_TEST_RUN), each verdict compared with the
//! plain-Rust reference classifier, and the counters with the reference's
//! outcomes. Every segment of frames brings a new random allowlist, applied
//! as a refresh applies it, with blocks the list covers in full, in part
//! (with /25–/32 and /49–/128 holes) and not at all, in both families, and
//! sources in and around all of them. Every frame goes through both
//! variants of the program: the one mxgate loads here (on x86-64 and arm64
//! it copies addresses a word at a time) and the byte-copying one other
//! architectures get. `MXGATE_FUZZ_FRAMES` and
//! `MXGATE_FUZZ_SEED` change the count and the seed (`cargo xtask fuzz
//! --frames N --seed S`).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use filter_common::{NO_IP_HEADER_LABEL, Outcome, globals};
use filter_user::{allowlist::Allowlist, filter::Counters};
use ipnet::{Ipv4Net, Ipv6Net};
use mxgate_tests::{
    env_u64,
    kernel::LoadedFilter,
    mutate::{Addresses, Rng, frame},
    reference::{Coverage, Judged, Policy, blocks_of, coverage, examine, verdict},
    unique_name,
};

/// Frames in CI: at least a million, well under two minutes here.
const DEFAULT_FRAMES: u64 = 1_000_000;
const DEFAULT_SEED: u64 = 0x6d78_6761_7465_0001;
/// The policy (and the allowlist) changes every this many frames, or more
/// often in a shorter run, so that it sees at least [`MIN_SEGMENTS`].
const SEGMENT: u64 = 20_000;
/// Lists a run goes through at least: one random list may lack a shape
/// (a /16 covered in full, say) that the coverage checks want.
const MIN_SEGMENTS: u64 = 10;
/// Examined SYNs each way a verdict can be reached must get at least this
/// many frames over a default run (and their share of it in a shorter one).
const MIN_PER_WAY: u64 = 1_000;

/// The prefixes that cover all of `block` but `hole`: one sibling for
/// each bit from the block's length to the hole's.
fn all_but<N: Copy>(
    block_len: u8,
    hole_len: u8,
    hole: u128,
    bits: u8,
    make: impl Fn(u128, u8) -> N,
) -> Vec<N> {
    (block_len + 1..=hole_len)
        .map(|len| {
            let flip = 1u128 << (bits - len);
            let sibling = (hole ^ flip) & !(flip - 1);
            make(sibling, len)
        })
        .collect()
}

fn v4(addr: u128, len: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(addr as u32), len)
        .expect("a length")
        .trunc()
}

fn v6(addr: u128, len: u8) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::from(addr), len)
        .expect("a length")
        .trunc()
}

/// A random allowlist for segment `n`, and sources in and around it.
///
/// IPv4 lives in four /16s: one of them covered whole now and then, /20 to
/// /24 prefixes (blocks covered in full), /24s covered but for one address
/// (a /32 hole, or a /25–/31 one), loose /25–/32 prefixes, and overlapping
/// entries that merge. IPv6 likewise in four /16s: /32 to /48 prefixes,
/// /48s covered but for a /49–/128 hole, loose /49–/128 prefixes, a /33
/// now and then (a /32 too big for the /48 table, so the trie decides), a
/// /24 covered whole now and then, and a /24 with a real list's mix of
/// lengths (/32, /48, /56, /64, /128, as BENCHMARKS.md's "IPv6 realistic")
/// over a few of its /32s, with sources in covered and uncovered /32s and
/// /48s of it.
fn random_list(rng: &mut Rng) -> (Allowlist, Addresses) {
    let mut v4_nets: Vec<Ipv4Net> = Vec::new();
    let mut v6_nets: Vec<Ipv6Net> = Vec::new();
    let mut v4_sources: Vec<Ipv4Addr> = Vec::new();
    let mut v6_sources: Vec<Ipv6Addr> = Vec::new();
    let regions4: Vec<u128> = (0..4)
        .map(|_| (u128::from(1 + rng.below(222) as u32) << 24) | (u128::from(rng.byte()) << 16))
        .collect();
    let regions6: Vec<u128> = (0..4)
        .map(|_| ((0x2000 | rng.below(0x2000)) as u128) << 112)
        .collect();
    let mut holes4 = Vec::new();
    let mut holes6 = Vec::new();
    for &region in &regions4 {
        let r = |rng: &mut Rng| region | (rng.next_u64() as u128 & 0xffff);
        if rng.chance(20) {
            v4_nets.push(v4(region, 16));
        }
        for _ in 0..3 {
            v4_nets.push(v4(r(rng), 20 + rng.below(5) as u8));
        }
        for _ in 0..3 {
            let hole_len = 25 + rng.below(8) as u8;
            let hole = r(rng);
            holes4.push(v4(hole, hole_len));
            v4_nets.extend(all_but(24, hole_len, hole, 32, v4));
        }
        for _ in 0..6 {
            v4_nets.push(v4(r(rng), 25 + rng.below(8) as u8));
        }
        // Overlapping entries: a prefix and one inside it.
        let outer = v4(r(rng), 22 + rng.below(6) as u8);
        v4_nets.push(outer);
        v4_nets.push(v4(
            u128::from(u32::from(outer.network())),
            outer.prefix_len() + 1 + rng.below(4) as u8,
        ));
        for _ in 0..8 {
            v4_sources.push(Ipv4Addr::from(r(rng) as u32));
        }
    }
    for &region in &regions6 {
        let r = |rng: &mut Rng| {
            region | (u128::from(rng.next_u64()) << 48 | u128::from(rng.next_u64())) & !(!0 << 112)
        };
        if rng.chance(10) {
            v6_nets.push(v6(r(rng), 24));
        }
        if rng.chance(20) {
            v6_nets.push(v6(r(rng), 33));
        }
        for _ in 0..3 {
            v6_nets.push(v6(r(rng), [32, 36, 40, 44, 48][rng.below(5)]));
        }
        for _ in 0..3 {
            let hole_len = 49 + rng.below(80) as u8;
            let hole = r(rng);
            holes6.push(v6(hole, hole_len));
            v6_nets.extend(all_but(48, hole_len, hole, 128, v6));
        }
        for _ in 0..6 {
            v6_nets.push(v6(r(rng), 49 + rng.below(80) as u8));
        }
        let outer = v6(r(rng), 40 + rng.below(20) as u8);
        v6_nets.push(outer);
        v6_nets.push(v6(
            u128::from(outer.network()),
            outer.prefix_len() + 1 + rng.below(8) as u8,
        ));
        for _ in 0..8 {
            v6_sources.push(Ipv6Addr::from(r(rng)));
        }
        let block = r(rng) & !(!0u128 >> 24);
        let in_block = |rng: &mut Rng| {
            block
                | (rng.below(8) as u128) << 96
                | (rng.below(8) as u128) << 80
                | (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) & !(!0 << 80)
        };
        for _ in 0..6 {
            let len = [32, 32, 48, 48, 48, 48, 56, 64, 64, 128][rng.below(10)];
            v6_nets.push(v6(in_block(rng), len));
        }
        for _ in 0..8 {
            v6_sources.push(Ipv6Addr::from(in_block(rng)));
        }
    }
    let list = Allowlist::from_prefixes(v4_nets, v6_nets);
    // Sources, a few of each kind: the edges of prefixes and one address
    // past each; the edges of holes; random ones in the regions (above)
    // and anywhere.
    let edges4 = |nets: &[Ipv4Net], rng: &mut Rng, count: usize| -> Vec<Ipv4Addr> {
        (0..count)
            .filter_map(|_| {
                let net = nets.get(rng.below(nets.len().max(1)))?;
                let (a, b) = (u32::from(net.network()), u32::from(net.broadcast()));
                let inside = a.wrapping_add(rng.next_u64() as u32 % (b - a).wrapping_add(1).max(1));
                Some(Ipv4Addr::from(rng.pick(&[
                    a,
                    b,
                    a.wrapping_sub(1),
                    b.wrapping_add(1),
                    inside,
                ])))
            })
            .collect()
    };
    let edges6 = |nets: &[Ipv6Net], rng: &mut Rng, count: usize| -> Vec<Ipv6Addr> {
        (0..count)
            .filter_map(|_| {
                let net = nets.get(rng.below(nets.len().max(1)))?;
                let (a, b) = (u128::from(net.network()), u128::from(net.broadcast()));
                let r = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
                let inside = a.wrapping_add(r % (b - a).wrapping_add(1).max(1));
                Some(Ipv6Addr::from(rng.pick(&[
                    a,
                    b,
                    a.wrapping_sub(1),
                    b.wrapping_add(1),
                    inside,
                ])))
            })
            .collect()
    };
    let wide4: Vec<Ipv4Net> = list
        .v4
        .iter()
        .filter(|n| n.prefix_len() <= 24)
        .copied()
        .collect();
    let wide6: Vec<Ipv6Net> = list
        .v6
        .iter()
        .filter(|n| n.prefix_len() <= 48)
        .copied()
        .collect();
    v4_sources.extend(edges4(&list.v4, rng, 40));
    v4_sources.extend(edges4(&wide4, rng, 16));
    v4_sources.extend(edges4(&holes4, rng, 24));
    v6_sources.extend(edges6(&list.v6, rng, 40));
    v6_sources.extend(edges6(&wide6, rng, 24));
    v6_sources.extend(edges6(&holes6, rng, 24));
    for _ in 0..12 {
        v4_sources.push(Ipv4Addr::from(rng.next_u64() as u32));
        v6_sources.push(Ipv6Addr::from(
            u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
        ));
    }
    let v4 = |s: &[&str]| s.iter().map(|a| a.parse().unwrap()).collect();
    let v6 = |s: &[&str]| s.iter().map(|a| a.parse().unwrap()).collect();
    let addrs = Addresses {
        v4_sources,
        v6_sources,
        v4_destinations: v4(&["198.51.100.25", "198.51.100.26"]),
        v6_destinations: v6(&["2001:db8:25::25", "2001:db8:25::26"]),
        ports: vec![25, 25, 25, 587, 2525, 0, 65535],
    };
    (list, addrs)
}

/// The policy for segment `n`: a new list, and dry run, open, ports and
/// protected destinations in turn, so every combination is exercised.
fn policy(n: u64, allow: Allowlist) -> Policy {
    let protect_dst = if n % 4 == 3 {
        ["198.51.100.25", "2001:db8:25::25"]
            .iter()
            .map(|a| a.parse::<IpAddr>().unwrap())
            .collect()
    } else {
        Default::default()
    };
    Policy {
        allow,
        ports: if n.is_multiple_of(2) {
            [25].into()
        } else {
            [25, 587].into()
        },
        protect_dst,
        dry_run: n % 3 == 1,
        open: n % 5 == 2,
    }
}

/// How step 5 reaches its answer for `src`: which block decides (and how
/// it is covered), or the longest match.
fn way(list: &Allowlist, src: IpAddr) -> String {
    let family = if src.is_ipv4() { "IPv4" } else { "IPv6" };
    for block in blocks_of(src) {
        match coverage(list, block) {
            Coverage::None => return format!("{family} /{} not covered", block.prefix_len()),
            Coverage::Full => return format!("{family} /{} covered in full", block.prefix_len()),
            Coverage::Part => {}
        }
    }
    let allowed = list.lookup(src).is_some();
    format!(
        "{family}, every block covered in part: {}",
        if allowed {
            "allowed"
        } else {
            "denied (a hole)"
        }
    )
}

#[test]
fn kernel_verdicts_match_the_reference_classifier() {
    let frames = env_u64("MXGATE_FUZZ_FRAMES", DEFAULT_FRAMES);
    let seed = env_u64("MXGATE_FUZZ_SEED", DEFAULT_SEED);
    let segment = (frames / MIN_SEGMENTS).clamp(1, SEGMENT);
    let mut rng = Rng::new(seed);
    let (list, mut addrs) = random_list(&mut rng);
    let mut current = policy(0, list);
    let mut filter =
        LoadedFilter::new(&unique_name("diff"), &current).expect("loading the program");
    let mut bytewise = LoadedFilter::with_globals(
        &unique_name("diff-bytes"),
        &current,
        &[(globals::WIDE_LOADS, 0)],
    )
    .expect("loading the program's byte-copying variant");
    let mut expected = Counters::default();
    let mut mismatches = Vec::new();
    let mut ways: BTreeMap<String, u64> = BTreeMap::new();
    let mut shapes: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    let mut examined = 0u64;
    for i in 0..frames {
        if i > 0 && i.is_multiple_of(segment) {
            let (list, new_addrs) = random_list(&mut rng);
            addrs = new_addrs;
            current = policy(i / segment, list);
            filter.set_policy(&current).expect("changing the policy");
            bytewise.set_policy(&current).expect("changing the policy");
        }
        let bytes = frame(&mut rng, &addrs);
        let kernel = filter.verdict(&bytes).expect("BPF_PROG_TEST_RUN");
        let kernel_bytewise = bytewise.verdict(&bytes).expect("BPF_PROG_TEST_RUN");
        let reference = verdict(&bytes, &current);
        match examine(&bytes, &current) {
            Some(Judged {
                source: Some(src),
                outcome,
            }) => {
                let c = if src.is_ipv6() {
                    &mut expected.v6
                } else {
                    &mut expected.v4
                };
                c.set(outcome, c.get(outcome) + 1);
                *ways.entry(way(&current.allow, src)).or_default() += 1;
                *shapes.entry(outcome.label().to_owned()).or_default() += 1;
                examined += 1;
            }
            Some(Judged { source: None, .. }) => {
                expected.no_ip_header += 1;
                *shapes.entry(NO_IP_HEADER_LABEL.to_owned()).or_default() += 1;
            }
            None => {}
        }
        if kernel != reference || kernel_bytewise != reference {
            mismatches.push(format!(
                "frame {i} (seed {seed:#x}, policy {current:?}): kernel {kernel} (byte copies: \
                 {kernel_bytewise}), reference {reference}\n  {}",
                hex(&bytes)
            ));
            if mismatches.len() >= 10 {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{frames} frames (seed {seed:#x}), {examined} examined SYNs, {} mismatches, in {:.1} s \
         ({:.0} frames/s)",
        mismatches.len(),
        elapsed.as_secs_f64(),
        frames as f64 / elapsed.as_secs_f64()
    );
    for (way, count) in ways.iter().chain(&shapes) {
        println!("  {count:>8}  {way}");
    }
    assert!(
        mismatches.is_empty(),
        "verdicts differ:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(
        filter.counters().expect("reading the counters"),
        expected,
        "the kernel's counters differ from the reference's outcomes (seed {seed:#x})"
    );
    assert_eq!(
        bytewise.counters().expect("reading the counters"),
        expected,
        "the byte-copying variant's counters differ from the reference's outcomes (seed {seed:#x})"
    );
    assert!(
        examined > frames / 20,
        "too few examined SYNs ({examined}) to mean much"
    );
    // Every way to a verdict, in both families, and every outcome was
    // taken often, in proportion to the frames sent (an IPv6 /24 covered
    // whole is rare in the lists, as in real ones: less often).
    let min = |per_million: u64| (per_million * frames / DEFAULT_FRAMES).max(1);
    let mut wanted = Vec::new();
    for family in ["IPv4", "IPv6"] {
        wanted.extend([
            (format!("{family} /16 not covered"), min(MIN_PER_WAY)),
            (format!("{family} /24 not covered"), min(MIN_PER_WAY)),
            (
                format!("{family}, every block covered in part: allowed"),
                min(MIN_PER_WAY),
            ),
            (
                format!("{family}, every block covered in part: denied (a hole)"),
                min(MIN_PER_WAY),
            ),
        ]);
    }
    wanted.extend([
        ("IPv4 /16 covered in full".to_owned(), min(MIN_PER_WAY)),
        ("IPv4 /24 covered in full".to_owned(), min(MIN_PER_WAY)),
        ("IPv6 /24 covered in full".to_owned(), min(MIN_PER_WAY / 10)),
        ("IPv6 /32 not covered".to_owned(), min(MIN_PER_WAY)),
        ("IPv6 /32 covered in full".to_owned(), min(MIN_PER_WAY)),
        ("IPv6 /48 not covered".to_owned(), min(MIN_PER_WAY)),
        ("IPv6 /48 covered in full".to_owned(), min(MIN_PER_WAY)),
    ]);
    for (way, min) in wanted {
        let count = ways.get(&way).copied().unwrap_or(0);
        assert!(
            count >= min,
            "only {count} examined SYNs went the way {way:?} (at least {min} wanted)"
        );
    }
    for label in Outcome::ALL
        .iter()
        .map(|o| o.label())
        .chain([NO_IP_HEADER_LABEL])
    {
        let count = shapes.get(label).copied().unwrap_or(0);
        assert!(
            count >= min(MIN_PER_WAY),
            "only {count} frames were judged {label} (at least {} wanted)",
            min(MIN_PER_WAY)
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
