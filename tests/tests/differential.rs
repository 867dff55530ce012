//! Differential test: many seeded random and mutated frames through the
//! loaded program (BPF_PROG_TEST_RUN), each verdict compared with the
//! plain-Rust reference classifier, and the counters with the reference's
//! outcomes. `MXGATE_FUZZ_FRAMES` and `MXGATE_FUZZ_SEED` change the count
//! and the seed (`cargo xtask fuzz --frames N --seed S`).

use std::{net::IpAddr, time::Instant};

use filter_common::Outcome;
use filter_user::{allowlist::Allowlist, filter::Counters};
use mxgate_tests::{
    kernel::LoadedFilter,
    mutate::{Addresses, Rng, frame},
    reference::{Policy, examine, verdict},
    unique_name,
};

/// Frames in CI: at least a million, well under two minutes here.
const DEFAULT_FRAMES: u64 = 1_000_000;
const DEFAULT_SEED: u64 = 0x6d78_6761_7465_0001;
/// The policy changes every this many frames.
const SEGMENT: u64 = 20_000;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
        }
        Err(_) => default,
    }
}

fn addresses() -> Addresses {
    let v4 = |s: &[&str]| s.iter().map(|a| a.parse().unwrap()).collect();
    let v6 = |s: &[&str]| s.iter().map(|a| a.parse().unwrap()).collect();
    Addresses {
        v4_sources: v4(&[
            "192.0.2.1",
            "192.0.2.255",
            "198.51.100.7",
            "198.51.100.8",
            "203.0.113.66",
            "10.1.2.3",
        ]),
        v6_sources: v6(&[
            "2001:db8:5e::1",
            "2001:db8:5e:ffff::9",
            "2001:db8:bad::66",
            "2001:db8:5f::1",
            "fe80::1",
        ]),
        v4_destinations: v4(&["198.51.100.25", "198.51.100.26"]),
        v6_destinations: v6(&["2001:db8:25::25", "2001:db8:25::26"]),
        ports: vec![25, 25, 25, 587, 2525, 0, 65535],
    }
}

/// The policy for segment `n`: dry run, open, ports and protected
/// destinations in turn, so every combination is exercised.
fn policy(n: u64) -> Policy {
    let allow = Allowlist::from_prefixes(
        vec![
            "192.0.2.0/24".parse().unwrap(),
            "198.51.100.7/32".parse().unwrap(),
        ],
        vec!["2001:db8:5e::/48".parse().unwrap()],
    );
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

fn count(expected: &mut Counters, family_v6: bool, outcome: Outcome) {
    let c = if family_v6 {
        &mut expected.v6
    } else {
        &mut expected.v4
    };
    c.set(outcome, c.get(outcome) + 1);
}

#[test]
fn kernel_verdicts_match_the_reference_classifier() {
    let frames = env_u64("MXGATE_FUZZ_FRAMES", DEFAULT_FRAMES);
    let seed = env_u64("MXGATE_FUZZ_SEED", DEFAULT_SEED);
    let addrs = addresses();
    let mut rng = Rng::new(seed);
    let mut current = policy(0);
    let mut filter =
        LoadedFilter::new(&unique_name("diff"), &current).expect("loading the program");
    let mut expected = Counters::default();
    let mut mismatches = Vec::new();
    let started = Instant::now();
    let mut examined = 0u64;
    for i in 0..frames {
        if i > 0 && i.is_multiple_of(SEGMENT) {
            current = policy(i / SEGMENT);
            filter.set_policy(&current).expect("changing the policy");
        }
        let bytes = frame(&mut rng, &addrs);
        let kernel = filter.verdict(&bytes).expect("BPF_PROG_TEST_RUN");
        let reference = verdict(&bytes, &current);
        if let Some((src, outcome)) = examine(&bytes, &current) {
            count(&mut expected, src.is_ipv6(), outcome);
            examined += 1;
        }
        if kernel != reference {
            mismatches.push(format!(
                "frame {i} (seed {seed:#x}, policy {current:?}): kernel {kernel}, reference {reference}\n  {}",
                hex(&bytes)
            ));
            if mismatches.len() >= 10 {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{frames} frames (seed {seed:#x}), {examined} examined SYNs, in {:.1} s ({:.0} frames/s)",
        elapsed.as_secs_f64(),
        frames as f64 / elapsed.as_secs_f64()
    );
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
    assert!(
        examined > frames / 20,
        "too few examined SYNs ({examined}) to mean much"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
