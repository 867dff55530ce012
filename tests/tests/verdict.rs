//! The program's verdict on crafted frames, run in the kernel with
//! BPF_PROG_TEST_RUN: docs/DESIGN.md §2 "The verdict" (V1–V8), case by case.

use filter_common::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, Outcome, globals};
use filter_user::{
    allowlist::Allowlist,
    filter::{KernelLog, OutcomeCounts},
};
use mxgate_tests::{
    frames::{Ext, Frame, Ip, Piece, TPID_8021AD, TPID_8021Q, flags},
    kernel::LoadedFilter,
    reference::{DROP, PASS, Policy},
    scenario::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, SERVER_V4, SERVER_V6, ip, syn},
    unique_name,
};

fn policy() -> Policy {
    Policy {
        allow: Allowlist::from_prefixes(
            vec!["192.0.2.0/24".parse().unwrap()],
            vec!["2001:db8:5e::/48".parse().unwrap()],
        ),
        ports: [25].into(),
        ..Policy::default()
    }
}

fn load(tag: &str, policy: &Policy) -> LoadedFilter {
    LoadedFilter::new(&unique_name(tag), policy).expect("loading the program into the kernel")
}

fn verdict(filter: &LoadedFilter, frame: &Frame) -> u32 {
    filter.verdict(&frame.bytes()).expect("BPF_PROG_TEST_RUN")
}

#[test]
fn denied_syn_is_dropped_and_allowed_syn_passes_with_0_1_2_vlan_tags() {
    let f = load("vd-vlan", &policy());
    for tags in [
        &[][..],
        &[TPID_8021Q],
        &[TPID_8021AD, TPID_8021Q],
        &[TPID_8021Q, TPID_8021Q],
    ] {
        for (src, want) in [
            (DENIED_V4, DROP),
            (ALLOWED_V4, PASS),
            (DENIED_V6, DROP),
            (ALLOWED_V6, PASS),
        ] {
            let frame = syn(src).vlans(tags);
            assert_eq!(verdict(&f, &frame), want, "{src} with tags {tags:x?}");
        }
    }
}

#[test]
fn vlan_stacks_are_walked_to_eight_tags_and_a_ninth_hides_the_source() {
    let f = load("vd-vlan8", &policy());
    for count in 3..=MAX_VLAN_TAGS {
        let tags: Vec<u16> = (0..count)
            .map(|i| if i % 2 == 0 { TPID_8021AD } else { TPID_8021Q })
            .collect();
        assert_eq!(
            verdict(&f, &syn(DENIED_V4).vlans(&tags)),
            DROP,
            "{count} tags"
        );
        assert_eq!(
            verdict(&f, &syn(ALLOWED_V6).vlans(&tags)),
            PASS,
            "{count} tags"
        );
    }
    // V2: behind a ninth tag the program cannot find the source, and the
    // kernel strips priority tags: dropped whoever sent it.
    let deep = [TPID_8021Q; MAX_VLAN_TAGS + 1];
    for src in [DENIED_V4, ALLOWED_V4, ALLOWED_V6] {
        assert_eq!(verdict(&f, &syn(src).vlans(&deep)), DROP, "{src}");
    }
    // Not IP behind the tags (ARP): passes.
    let mut arp = syn(ALLOWED_V4).vlans(&[TPID_8021Q; 3]).bytes();
    arp[14 + 3 * 4 - 2..14 + 3 * 4].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(f.verdict(&arp).unwrap(), PASS);
    let c = f.counters().unwrap();
    assert_eq!(c.no_ip_header, 3);
    assert_eq!(
        c.v4.examined() + c.v6.examined(),
        2 * (MAX_VLAN_TAGS as u64 - 2)
    );

    let mut dry = policy();
    dry.dry_run = true;
    let f = load("vd-vlan9-dry", &dry);
    assert_eq!(verdict(&f, &syn(DENIED_V4).vlans(&deep)), PASS, "dry run");
    assert_eq!(f.counters().unwrap().no_ip_header, 1);
}

#[test]
fn only_a_bare_syn_is_judged() {
    let f = load("vd-flags", &policy());
    for src in [DENIED_V4, DENIED_V6] {
        for (bits, want, name) in [
            (flags::SYN, DROP, "SYN"),
            (flags::SYN | flags::ACK, PASS, "SYN-ACK"),
            (flags::ACK, PASS, "ACK"),
            (flags::RST, PASS, "RST"),
            (flags::RST | flags::ACK, PASS, "RST-ACK"),
            (flags::FIN | flags::ACK, PASS, "FIN-ACK"),
            (flags::PSH | flags::ACK, PASS, "PSH-ACK"),
            // SYN set and ACK clear is an opening SYN whatever else is set.
            (flags::SYN | flags::FIN, DROP, "SYN-FIN"),
        ] {
            assert_eq!(
                verdict(&f, &syn(src).flags(bits)),
                want,
                "{name} from {src}"
            );
        }
    }
}

#[test]
fn syns_to_other_ports_pass_until_the_port_is_protected() {
    let mut f = load("vd-ports", &policy());
    for port in [24, 26, 587, 2525, 443] {
        let frame = Frame::syn(ip(DENIED_V4), ip(SERVER_V4), port);
        assert_eq!(verdict(&f, &frame), PASS, "port {port}");
    }
    let mut p = policy();
    p.ports = [25, 587].into();
    f.set_policy(&p).unwrap();
    assert_eq!(
        verdict(&f, &Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 587)),
        DROP
    );
    assert_eq!(
        verdict(&f, &Frame::syn(ip(DENIED_V6), ip(SERVER_V6), 587)),
        DROP
    );
    assert_eq!(
        verdict(&f, &Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 2525)),
        PASS
    );
}

#[test]
fn udp_to_port_25_passes() {
    let f = load("vd-udp", &policy());
    assert_eq!(verdict(&f, &syn(DENIED_V4).udp()), PASS);
    assert_eq!(verdict(&f, &syn(DENIED_V6).udp()), PASS);
}

#[test]
fn dry_run_passes_and_counts_would_drop() {
    let mut p = policy();
    p.dry_run = true;
    let f = load("vd-dry", &p);
    assert_eq!(verdict(&f, &syn(DENIED_V4)), PASS);
    assert_eq!(verdict(&f, &syn(DENIED_V6)), PASS);
    assert_eq!(verdict(&f, &syn(ALLOWED_V4)), PASS);
    let c = f.counters().unwrap();
    assert_eq!(
        c.v4,
        OutcomeCounts::with(&[(Outcome::Allowed, 1), (Outcome::WouldDrop, 1)])
    );
    assert_eq!(c.v6.get(Outcome::WouldDrop), 1);
    assert_eq!(c.v4.get(Outcome::Dropped) + c.v6.get(Outcome::Dropped), 0);
}

#[test]
fn open_passes_every_syn_and_counts_the_denied_ones() {
    let mut p = policy();
    p.open = true;
    // Open wins over dry run.
    p.dry_run = true;
    let f = load("vd-open", &p);
    assert_eq!(verdict(&f, &syn(DENIED_V4)), PASS);
    assert_eq!(verdict(&f, &syn(DENIED_V6)), PASS);
    assert_eq!(verdict(&f, &syn(ALLOWED_V6)), PASS);
    let c = f.counters().unwrap();
    assert_eq!(
        (
            c.v4.get(Outcome::PassedOpen),
            c.v6.get(Outcome::PassedOpen),
            c.v6.get(Outcome::Allowed)
        ),
        (1, 1, 1)
    );
    assert_eq!(
        c.v4.get(Outcome::WouldDrop)
            + c.v6.get(Outcome::WouldDrop)
            + c.v4.get(Outcome::Dropped)
            + c.v6.get(Outcome::Dropped),
        0
    );
}

#[test]
fn counters_count_each_examined_syn_once() {
    let f = load("vd-count", &policy());
    for _ in 0..3 {
        verdict(&f, &syn(DENIED_V4));
    }
    for _ in 0..2 {
        verdict(&f, &syn(ALLOWED_V4));
    }
    verdict(&f, &syn(DENIED_V6));
    // Not examined: no counter moves.
    verdict(&f, &syn(DENIED_V4).flags(flags::ACK));
    verdict(&f, &Frame::syn(ip(DENIED_V4), ip(SERVER_V4), 80));
    let c = f.counters().unwrap();
    assert_eq!(
        c.v4,
        OutcomeCounts::with(&[(Outcome::Allowed, 2), (Outcome::Dropped, 3)])
    );
    assert_eq!(c.v6, OutcomeCounts::with(&[(Outcome::Dropped, 1)]));
    let denied = f.filter().denied_sources().unwrap();
    let by_source: Vec<(String, u64)> = denied
        .iter()
        .map(|d| (d.source.to_string(), d.count))
        .collect();
    assert!(
        by_source.contains(&(DENIED_V4.to_owned(), 3)),
        "{by_source:?}"
    );
    assert!(
        by_source.contains(&(DENIED_V6.to_owned(), 1)),
        "{by_source:?}"
    );
}

#[test]
fn a_syn_cut_short_is_judged_by_its_source_once_the_source_is_known() {
    let f = load("vd-trunc", &policy());
    for (frame, fixed_ip_header) in [
        (syn(DENIED_V4), 20),
        (syn(DENIED_V6), 40),
        (syn(DENIED_V4).vlans(&[TPID_8021AD, TPID_8021Q]), 20),
        (syn(DENIED_V4).ipv4_options(40), 20),
        (
            syn(DENIED_V6).ipv6_ext(&[Ext::HopByHop(0), Ext::DestOpts(2)]),
            40,
        ),
    ] {
        let bytes = frame.bytes();
        assert_eq!(f.verdict(&bytes).unwrap(), DROP, "the whole frame");
        let source_known = frame.l3_offset() + fixed_ip_header;
        // BPF_PROG_TEST_RUN needs at least an Ethernet header.
        for len in 14..bytes.len() {
            // V3: before the source, nothing the kernel takes; after it,
            // whatever is cut (options, chain, TCP header) is judged.
            let want = if len < source_known { PASS } else { DROP };
            assert_eq!(
                f.verdict(&bytes[..len]).unwrap(),
                want,
                "{len} of {} bytes of {frame:?}",
                bytes.len()
            );
        }
    }
    // A listed sender's cut frames all pass.
    for frame in [syn(ALLOWED_V4).ipv4_options(8), syn(ALLOWED_V6)] {
        let bytes = frame.bytes();
        for len in 14..=bytes.len() {
            assert_eq!(f.verdict(&bytes[..len]).unwrap(), PASS, "{len} bytes");
        }
    }
    let c = f.counters().unwrap();
    assert!(c.v4.get(Outcome::DroppedUnparsed) > 0, "{c:?}");
    assert!(c.v6.get(Outcome::DroppedUnparsed) > 0, "{c:?}");
}

#[test]
fn ipv4_options_are_skipped() {
    let f = load("vd-ihl", &policy());
    for options in (0..=40).step_by(4) {
        assert_eq!(
            verdict(&f, &syn(DENIED_V4).ipv4_options(options)),
            DROP,
            "{options} bytes"
        );
        assert_eq!(
            verdict(&f, &syn(ALLOWED_V4).ipv4_options(options)),
            PASS,
            "{options} bytes"
        );
    }
}

#[test]
fn ipv6_extension_headers_are_walked_to_tcp() {
    let f = load("vd-ext", &policy());
    let chains: &[&[Ext]] = &[
        &[Ext::HopByHop(0)],
        &[Ext::Routing(2)],
        &[Ext::DestOpts(1)],
        &[Ext::Fragment {
            offset: 0,
            more: true,
        }],
        &[Ext::Auth(4)],
        &[
            Ext::HopByHop(0),
            Ext::DestOpts(0),
            Ext::Routing(0),
            Ext::Fragment {
                offset: 0,
                more: true,
            },
            Ext::Auth(4),
            Ext::DestOpts(3),
        ],
    ];
    for chain in chains {
        assert_eq!(
            verdict(&f, &syn(DENIED_V6).ipv6_ext(chain)),
            DROP,
            "{chain:?}"
        );
        assert_eq!(
            verdict(&f, &syn(ALLOWED_V6).ipv6_ext(chain)),
            PASS,
            "{chain:?}"
        );
    }
}

#[test]
fn an_ipv6_chain_the_walk_cannot_finish_is_judged_by_its_source() {
    let f = load("vd-extlong", &policy());
    let at_bound = vec![Ext::DestOpts(0); MAX_IPV6_EXT_HEADERS];
    assert_eq!(verdict(&f, &syn(DENIED_V6).ipv6_ext(&at_bound)), DROP);
    assert_eq!(verdict(&f, &syn(DENIED_V6).ipv6_ext(&at_bound).udp()), PASS);
    let c = f.counters().unwrap();
    assert_eq!(c.v6.get(Outcome::Dropped), 1, "seen to its end: a SYN");
    // V3: past the bound or behind a header the walk does not follow:
    // unseen, so judged (UDP behind it too). (The 4,096-byte limit is
    // for the verifier: an XDP frame ends before it.)
    let over = vec![Ext::DestOpts(0); MAX_IPV6_EXT_HEADERS + 1];
    let mut unseen = vec![
        syn(DENIED_V6).ipv6_ext(&over),
        syn(DENIED_V6).ipv6_ext(&over).udp(),
    ];
    for kind in [135, 139, 140, 253, 254] {
        unseen.push(syn(DENIED_V6).ipv6_ext(&[Ext::Other { kind, len: 0 }]));
    }
    for frame in &unseen {
        assert_eq!(verdict(&f, frame), DROP, "{frame:?}");
        let allowed = Frame {
            ip: match &frame.ip {
                Ip::V6 { ext, .. } => Ip::V6 {
                    src: ALLOWED_V6.parse().unwrap(),
                    dst: SERVER_V6.parse().unwrap(),
                    ext: ext.clone(),
                },
                other => other.clone(),
            },
            ..frame.clone()
        };
        assert_eq!(verdict(&f, &allowed), PASS, "{allowed:?}");
    }
    let c = f.counters().unwrap();
    assert_eq!(c.v6.get(Outcome::DroppedUnparsed), unseen.len() as u64);
    assert_eq!(c.v6.get(Outcome::Allowed), unseen.len() as u64);
    // What ends the chain as something else passes: ESP, no next header.
    for kind in [50, 59] {
        let frame = syn(DENIED_V6).ipv6_ext(&[Ext::DestOpts(0), Ext::Other { kind, len: 0 }]);
        assert_eq!(verdict(&f, &frame), PASS, "next header {kind}");
    }
}

#[test]
fn a_routing_header_with_segments_left_counts_as_a_protected_destination() {
    let mut p = policy();
    p.protect_dst = [ip("2001:db8:25::26")].into();
    let f = load("vd-rerouted", &p);
    // To an unprotected address: passes, unless segments are left to
    // route (the final destination is in the routing header).
    let plain = syn(DENIED_V6).ipv6_ext(&[Ext::Routing(2)]);
    assert_eq!(verdict(&f, &plain), PASS);
    let mut bytes = plain.bytes();
    let segments_left = plain.l3_offset() + 40 + 3;
    bytes[segments_left] = 1;
    assert_eq!(f.verdict(&bytes).unwrap(), DROP);
}

#[test]
fn only_first_fragments_are_judged() {
    let f = load("vd-frag", &policy());
    // IPv4: MF with offset 0 is a first fragment; any offset is not.
    assert_eq!(
        verdict(&f, &syn(DENIED_V4).ipv4_frag(0x2000)),
        DROP,
        "first fragment"
    );
    for field in [0x2002, 0x0002, 0x1fff, 0x00b9] {
        assert_eq!(
            verdict(&f, &syn(DENIED_V4).ipv4_frag(field)),
            PASS,
            "field {field:#06x}"
        );
    }
    // Offset 1 only overlaps the first fragment's flags (RFC 1858 3.2):
    // dropped whoever sends it.
    for field in [0x0001, 0x2001] {
        for src in [DENIED_V4, ALLOWED_V4] {
            assert_eq!(
                verdict(&f, &syn(src).ipv4_frag(field)),
                DROP,
                "{src}, field {field:#06x}"
            );
        }
    }
    assert_eq!(f.counters().unwrap().v4.get(Outcome::DroppedUnparsed), 4);
    // IPv6: the same through the fragment header.
    let first = [Ext::Fragment {
        offset: 0,
        more: true,
    }];
    assert_eq!(
        verdict(&f, &syn(DENIED_V6).ipv6_ext(&first)),
        DROP,
        "first fragment"
    );
    for offset in [1, 185, 0x1fff] {
        for more in [true, false] {
            let later = [Ext::HopByHop(0), Ext::Fragment { offset, more }];
            assert_eq!(
                verdict(&f, &syn(DENIED_V6).ipv6_ext(&later)),
                PASS,
                "offset {offset}"
            );
        }
    }
}

#[test]
fn a_first_fragment_without_the_whole_tcp_header_is_judged_on_what_it_shows() {
    let f = load("vd-fragshort", &policy());
    let first_fragments = |src: &str, port: u16| {
        let frame = Frame::syn(
            ip(src),
            ip(if src.contains(':') {
                SERVER_V6
            } else {
                SERVER_V4
            }),
            port,
        );
        [
            frame.clone().fragments(&Piece::every(8, 20))[0].clone(),
            frame.fragments(&Piece::every(16, 20))[0].clone(),
        ]
    };
    for src in [DENIED_V4, DENIED_V6] {
        // RFC 1858's tiny fragment: ports, no flags; port 25 is shown.
        for bytes in first_fragments(src, 25) {
            assert_eq!(f.verdict(&bytes).unwrap(), DROP, "{src}");
        }
        // An unprotected port it shows: passes.
        for bytes in first_fragments(src, 2525) {
            assert_eq!(f.verdict(&bytes).unwrap(), PASS, "{src} to 2525");
        }
    }
    for src in [ALLOWED_V4, ALLOWED_V6] {
        for bytes in first_fragments(src, 25) {
            assert_eq!(f.verdict(&bytes).unwrap(), PASS, "{src}");
        }
    }
    let c = f.counters().unwrap();
    assert_eq!(c.v4.get(Outcome::DroppedUnparsed), 2);
    assert_eq!(c.v6.get(Outcome::DroppedUnparsed), 2);
    // No port at all (2 bytes of TCP): judged as to a protected port.
    let mut bytes = syn(DENIED_V4).ipv4_frag(0x2000).bytes();
    bytes.truncate(14 + 20 + 2);
    assert_eq!(f.verdict(&bytes).unwrap(), DROP);
}

#[test]
fn ipv4_headers_the_kernel_refuses_pass_and_cut_ones_are_judged() {
    let f = load("vd-ihl-bad", &policy());
    let good = syn(DENIED_V4).bytes();
    let l3 = 14;
    // IHL below 5.
    for ihl in 0..5u8 {
        let mut bytes = good.clone();
        bytes[l3] = 0x40 | ihl;
        assert_eq!(f.verdict(&bytes).unwrap(), PASS, "IHL {ihl}");
    }
    // IHL 15 (60 bytes) in a frame that ends before the header does.
    // The source is known: what is cut is judged (V3).
    let mut bytes = good[..l3 + 40].to_vec();
    bytes[l3] = 0x4f;
    assert_eq!(
        f.verdict(&bytes).unwrap(),
        DROP,
        "header past the frame end"
    );
    // Not version 4 behind an IPv4 ethertype.
    let mut bytes = good.clone();
    bytes[l3] = 0x65;
    assert_eq!(
        f.verdict(&bytes).unwrap(),
        PASS,
        "version 6 in an IPv4 frame"
    );
}

#[test]
fn the_program_stays_well_inside_kernel_5_15_verifier_limits() {
    // Each variant the loader picks from: the kernel log level, and the
    // byte copies of addresses where misaligned frame loads are refused.
    type Load = dyn Fn(&str) -> anyhow::Result<LoadedFilter>;
    let variants: [(&str, &Load); 3] = [
        ("Quiet", &|name| {
            LoadedFilter::with_log(name, &policy(), KernelLog::Quiet)
        }),
        ("EveryDenial", &|name| {
            LoadedFilter::with_log(name, &policy(), KernelLog::EveryDenial)
        }),
        ("Quiet, byte copies", &|name| {
            LoadedFilter::with_globals(name, &policy(), &[(globals::WIDE_LOADS, 0)])
        }),
    ];
    for (variant, load) in variants {
        let f = load(&unique_name("vd-insns")).unwrap();
        let info = f.filter().program_info().unwrap();
        let instructions = info.size_translated().expect("xlated size") / 8;
        // 5.15 accepts 1,000,000 processed instructions per program, and
        // 4,096 instructions for unprivileged programs; stay well inside.
        assert!(
            instructions < 4096,
            "{variant}: {instructions} instructions"
        );
        match info.verified_instruction_count() {
            Some(verified) => {
                println!(
                    "{variant}: {instructions} instructions, {verified} processed by the verifier"
                );
                assert!(
                    verified < 100_000,
                    "{variant}: {verified} processed instructions"
                );
            }
            // The count came in 5.16; before it only the size is known.
            None => {
                let kernel = aya::util::KernelVersion::current().expect("the kernel's version");
                assert!(
                    kernel < aya::util::KernelVersion::new(5, 16, 0),
                    "kernel {kernel} reports no verified instruction count"
                );
                println!(
                    "{variant}: {instructions} instructions, ? processed by the verifier \
                     (kernel {kernel} has no count)"
                );
            }
        }
        // Logging every denial also denies.
        assert_eq!(f.verdict(&syn(DENIED_V4).bytes()).unwrap(), DROP);
    }
}

/// A list with a block of every state: an IPv4 /16 and /24 covered in
/// full, /24s covered in part; an IPv6 /24 covered in full, a /24 covered
/// in part with a /32 covered in full, a /32 whose /48s are in the /48
/// table (one covered in full, one in part), and a /32 too big for the
/// /48 table (the trie decides).
fn blocks_policy() -> Policy {
    Policy {
        allow: Allowlist::from_prefixes(
            ["10.1.0.0/16", "10.2.3.0/24", "10.2.4.0/25", "10.2.5.77/32"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
            [
                "2a00:1000::/24",
                "2001:db8:5e::/48",
                "2001:db8:5f::/64",
                "2001:dbb::/32",
                "2a01:4000::/33",
            ]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect(),
        ),
        ports: [25].into(),
        ..Policy::default()
    }
}

#[test]
fn every_way_through_the_fast_path_gives_the_lists_verdict() {
    use filter_common::fast_path::BlockState::{Full, Next, None as Not, Trie};
    let f = load("vd-blocks", &blocks_policy());
    // (source, verdict, /16, /20, /24, /32, /48): what `lookup` must report
    // the program reads on its way, and where the trie decides.
    let n = None;
    let (next, full, not, trie) = (Some(Next), Some(Full), Some(Not), Some(Trie));
    let cases = [
        ("10.1.200.1", PASS, Full, n, n, n, n),
        ("10.9.0.1", DROP, Not, n, n, n, n),
        ("10.2.3.9", PASS, Next, next, full, n, n),
        ("10.2.9.9", DROP, Next, next, not, n, n),
        ("10.2.17.9", DROP, Next, not, n, n, n),
        ("10.2.4.9", PASS, Next, next, trie, n, n),
        ("10.2.4.200", DROP, Next, next, trie, n, n),
        ("10.2.5.77", PASS, Next, next, trie, n, n),
        ("10.2.5.78", DROP, Next, next, trie, n, n),
        ("2a00:10ff::1", PASS, Next, next, full, n, n),
        ("2a00:1100::1", DROP, Next, next, not, n, n),
        ("2001:db8:5e::9", PASS, Next, next, next, next, full),
        ("2001:db8:5f::9", PASS, Next, next, next, next, trie),
        ("2001:db8:5f:1::9", DROP, Next, next, next, next, trie),
        ("2001:db8:bad::66", DROP, Next, next, next, next, not),
        ("2001:dbb:ffff::1", PASS, Next, next, next, full, n),
        // A /32 of a /24 covered in part that the list does not touch.
        ("2001:db9::1", DROP, Next, next, next, not, n),
        ("2a01:4000:7fff::1", PASS, Next, next, next, trie, n),
        ("2a01:4000:8000::1", DROP, Next, next, next, trie, n),
        ("2a01:4001::1", DROP, Next, next, next, not, n),
        ("3000::1", DROP, Not, n, n, n, n),
    ];
    for (src, want, region, area, block, mid, subblock) in cases {
        assert_eq!(verdict(&f, &syn(src)), want, "{src}");
        let found = f.filter().lookup(ip(src)).unwrap();
        assert_eq!(found.allowed(), want == PASS, "{src}: lookup");
        assert!(
            found.consistent(),
            "{src}: the fast path and the trie disagree"
        );
        let path = &found.path;
        assert_eq!(
            (path.region, path.area, path.block, path.mid, path.subblock),
            (region, area, block, mid, subblock),
            "{src}: the way through the fast path"
        );
    }
}

#[test]
fn a_flood_of_denied_syns_is_sampled_counted_about_right_and_a_lone_one_after_is_seen() {
    use aya::{TestRun as _, TestRunOptions};
    let f = load("vd-sample", &policy());
    let flood = 200_000u32;
    let bytes = syn(DENIED_V4).bytes();
    let result = f
        .filter()
        .program()
        .test_run(TestRunOptions {
            data_in: Some(&bytes),
            repeat: flood,
            ..TestRunOptions::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(result.return_value, DROP);
    // The counters are exact.
    assert_eq!(
        f.counters().unwrap().v4.get(Outcome::Dropped),
        u64::from(flood)
    );
    // The table's count is an estimate, and says so.
    let denied = f.filter().denied_sources().unwrap();
    let entry = denied
        .iter()
        .find(|d| d.source == ip(DENIED_V4))
        .expect("the flooding source is in the table");
    assert!(entry.sampled > 1, "{entry:?}: not sampled");
    let (low, high) = (u64::from(flood) * 3 / 4, u64::from(flood) * 5 / 4);
    assert!(
        (low..=high).contains(&entry.count),
        "{entry:?}: estimated {} for {flood}",
        entry.count
    );
    // Once the flood is over, the sampler looks at its window on every
    // 16th denied SYN and steps its rate back up by one per 100 ms window
    // that passed, from at most MAX_SAMPLE_SHIFT: with SYNs 50 ms apart
    // that is back to recording every SYN within 16 + 16 * 20 / 8 = 56
    // SYNs, on a fast machine or an emulated one. The bound is a count,
    // not a time: under emulation each round here takes far longer.
    let lone = "203.0.113.200";
    let mut sent = 0;
    loop {
        assert_eq!(verdict(&f, &syn(lone)), DROP);
        sent += 1;
        let seen = f
            .filter()
            .denied_sources()
            .unwrap()
            .iter()
            .any(|d| d.source == ip(lone));
        if seen {
            break;
        }
        assert!(sent < 128, "{lone} not recorded after {sent} SYNs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("the lone source was recorded after {sent} SYNs");
}
