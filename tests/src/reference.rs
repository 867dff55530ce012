//! The reference classifier: docs/DESIGN.md §2 "The verdict" (V1–V8) in
//! plain Rust over a byte slice. It is written from the design text, not
//! from the eBPF code, so that the differential test compares two
//! independent readings of it.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_common::{MAX_CHAIN_OFFSET, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, Outcome};
use filter_user::allowlist::Allowlist;
use ipnet::IpNet;

/// What the filter is configured to do.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Allowed sources.
    pub allow: Allowlist,
    /// Protected destination ports.
    pub ports: BTreeSet<u16>,
    /// Protected destination addresses; empty means all.
    pub protect_dst: BTreeSet<IpAddr>,
    /// Count denied SYNs instead of dropping them.
    pub dry_run: bool,
    /// Let every SYN through, counting the denied ones.
    pub open: bool,
}

/// XDP_DROP.
pub const DROP: u32 = 1;
/// XDP_PASS.
pub const PASS: u32 = 2;

/// What the verdict made of a frame it judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judged {
    /// The frame's source; `None` for a frame whose IP header lies behind
    /// more VLAN tags than the program walks (V2), counted `no_ip_header`.
    pub source: Option<IpAddr>,
    /// What happened to it.
    pub outcome: Outcome,
}

/// The XDP return code the filter must give `frame`.
pub fn verdict(frame: &[u8], policy: &Policy) -> u32 {
    match examine(frame, policy) {
        Some(judged) if judged.outcome.drops() => DROP,
        _ => PASS,
    }
}

/// How the frame was judged, or `None` when the verdict does not judge it
/// (V8: it passes untouched and uncounted).
pub fn examine(frame: &[u8], policy: &Policy) -> Option<Judged> {
    let suspect = match find(frame) {
        Found::Pass => return None,
        Found::Hidden => {
            return Some(Judged {
                source: None,
                outcome: unlisted(policy, false),
            });
        }
        Found::Judge(suspect) => suspect,
    };
    // V5: a whole TCP header decides by its flags; a partial one is judged
    // on its port if its first 4 bytes are there.
    let (port, whole) = match suspect.tcp {
        Some(at) => match frame.get(at..at + 20) {
            Some(tcp) => {
                if tcp[13] & 0x02 == 0 || tcp[13] & 0x10 != 0 {
                    return None;
                }
                (Some(u16::from_be_bytes([tcp[2], tcp[3]])), true)
            }
            None => (
                frame
                    .get(at..at + 4)
                    .map(|p| u16::from_be_bytes([p[2], p[3]])),
                false,
            ),
        },
        None => (None, false),
    };
    // V6: a port it cannot see counts as protected; so does the
    // destination of a packet with segments left to route.
    if port.is_some_and(|p| !policy.ports.contains(&p)) {
        return None;
    }
    if !policy.protect_dst.is_empty()
        && !suspect.rerouted
        && !policy.protect_dst.contains(&suspect.dst)
    {
        return None;
    }
    // V7.
    let outcome = if !suspect.overlap && allowed(&policy.allow, suspect.src) {
        Outcome::Allowed
    } else {
        unlisted(policy, whole)
    };
    Some(Judged {
        source: Some(suspect.src),
        outcome,
    })
}

/// V7's outcome for a source not in the list (or no source at all).
fn unlisted(policy: &Policy, whole_tcp_header: bool) -> Outcome {
    if policy.open {
        Outcome::PassedOpen
    } else if policy.dry_run {
        Outcome::WouldDrop
    } else if whole_tcp_header {
        Outcome::Dropped
    } else {
        Outcome::DroppedUnparsed
    }
}

/// How the allowlist covers a block of addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Coverage {
    /// No address of the block is allowed.
    None,
    /// Some are.
    Part,
    /// All are.
    Full,
}

/// How `list` covers `net`: in full when one prefix of the merged list
/// holds all of it, not at all when no prefix overlaps it, else in part.
pub fn coverage(list: &Allowlist, net: IpNet) -> Coverage {
    match net {
        IpNet::V4(n) => covers(
            &list.v4,
            |p| {
                (
                    u128::from(u32::from(p.network())),
                    u128::from(u32::from(p.broadcast())),
                )
            },
            (
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
            ),
        ),
        IpNet::V6(n) => covers(
            &list.v6,
            |p| (u128::from(p.network()), u128::from(p.broadcast())),
            (u128::from(n.network()), u128::from(n.broadcast())),
        ),
    }
}

/// [`coverage`] over a sorted list of disjoint prefixes, given as spans:
/// only the last prefix starting at or before the range's end can hold or
/// overlap its start, and any other overlapping one starts inside it.
fn covers<N>(sorted: &[N], span: impl Fn(&N) -> (u128, u128), range: (u128, u128)) -> Coverage {
    let (first, last) = range;
    let after = sorted.partition_point(|p| span(p).0 <= last);
    let Some(candidate) = after.checked_sub(1).map(|i| span(&sorted[i])) else {
        return Coverage::None;
    };
    if candidate.0 <= first && last <= candidate.1 {
        Coverage::Full
    } else if candidate.1 >= first {
        Coverage::Part
    } else {
        Coverage::None
    }
}

/// The blocks around a source that step V7 looks at, widest first: its /16
/// and /24, and for IPv6 its /32 and /48.
pub fn blocks_of(src: IpAddr) -> Vec<IpNet> {
    let lens: &[u8] = if src.is_ipv4() {
        &[16, 24]
    } else {
        &[16, 24, 32, 48]
    };
    lens.iter()
        .map(|len| IpNet::new(src, *len).expect("a length").trunc())
        .collect()
}

/// Step V7: whether the allowlist allows `src`. The first block around
/// it (its /16, /24, then for IPv6 its /32 and /48) that the list covers in full or
/// not at all decides; when all are covered in part, the longest-prefix
/// match does. Either way the answer is whether a prefix holds `src`: the
/// blocks only let the filter answer most SYNs without the trie.
pub fn allowed(list: &Allowlist, src: IpAddr) -> bool {
    for block in blocks_of(src) {
        match coverage(list, block) {
            Coverage::None => return false,
            Coverage::Full => return true,
            Coverage::Part => {}
        }
    }
    list.lookup(src).is_some()
}

/// What steps V1–V4 found.
enum Found {
    Pass,
    Hidden,
    Judge(Suspect),
}

struct Suspect {
    src: IpAddr,
    dst: IpAddr,
    /// Where the TCP header starts, if the walk reached it.
    tcp: Option<usize>,
    /// An IPv4 fragment at offset 1.
    overlap: bool,
    /// A routing header with segments left.
    rerouted: bool,
}

/// The extension headers V3 walks: hop-by-hop, routing, fragment, AH,
/// destination options.
const WALKED: [u8; 5] = [0, 43, 44, 51, 60];
/// Extension headers V3 does not walk: Mobility, HIP, Shim6, experiments.
const NOT_WALKED: [u8; 5] = [135, 139, 140, 253, 254];

/// Steps V1–V4.
fn find(frame: &[u8]) -> Found {
    // V1, V2: Ethernet, then at most MAX_VLAN_TAGS tags of either kind.
    let is_tag = |t: u16| t == 0x8100 || t == 0x88a8;
    let Some(mut ethertype) = be16(frame, 12) else {
        return Found::Pass;
    };
    let mut at = 12;
    let mut tags = 0;
    while is_tag(ethertype) && tags < MAX_VLAN_TAGS {
        // A tag is 4 bytes: TCI, then the next ethertype.
        if frame.get(at + 2..at + 6).is_none() {
            return Found::Pass;
        }
        ethertype = be16(frame, at + 4).unwrap_or_default();
        at += 4;
        tags += 1;
    }
    let l3 = at + 2;
    match ethertype {
        0x0800 => ipv4(frame, l3),
        0x86dd => ipv6(frame, l3),
        t if is_tag(t) => Found::Hidden,
        _ => Found::Pass,
    }
}

fn ipv4(frame: &[u8], l3: usize) -> Found {
    let Some(header) = frame.get(l3..l3 + 20) else {
        return Found::Pass;
    };
    let header_len = usize::from(header[0] & 0xf) * 4;
    if header[0] >> 4 != 4 || header_len < 20 || header[9] != 6 {
        return Found::Pass;
    }
    let fragment_offset = u16::from_be_bytes([header[6], header[7]]) & 0x1fff;
    if fragment_offset > 1 {
        return Found::Pass;
    }
    Found::Judge(Suspect {
        src: Ipv4Addr::new(header[12], header[13], header[14], header[15]).into(),
        dst: Ipv4Addr::new(header[16], header[17], header[18], header[19]).into(),
        tcp: (fragment_offset == 0).then_some(l3 + header_len),
        overlap: fragment_offset == 1,
        rerouted: false,
    })
}

fn ipv6(frame: &[u8], l3: usize) -> Found {
    let Some(header) = frame.get(l3..l3 + 40) else {
        return Found::Pass;
    };
    if header[0] >> 4 != 6 {
        return Found::Pass;
    }
    let addr = |from: usize| {
        let mut octets = [0; 16];
        octets.copy_from_slice(&header[from..from + 16]);
        IpAddr::from(Ipv6Addr::from(octets))
    };
    let mut suspect = Suspect {
        src: addr(8),
        dst: addr(24),
        tcp: None,
        overlap: false,
        rerouted: false,
    };
    let mut next = header[6];
    let mut at = l3 + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !WALKED.contains(&next) {
            break;
        }
        // A chain reaching past the walk's limit, or cut off by the
        // frame's end, cannot be finished: judged.
        let needed = match next {
            44 => 8,
            43 => 4,
            _ => 2,
        };
        let Some(ext) = frame
            .get(at..at + needed)
            .filter(|_| at <= MAX_CHAIN_OFFSET)
        else {
            return Found::Judge(suspect);
        };
        match next {
            // Fragment: 8 bytes; only the first fragment has the TCP header.
            44 => {
                if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                    return Found::Pass;
                }
                at += 8;
            }
            // Authentication header: 4-octet units, minus 2.
            51 => at += 4 * (usize::from(ext[1]) + 2),
            // Routing: 8-octet units; segments left means another
            // destination follows.
            43 => {
                suspect.rerouted |= ext[3] != 0;
                at += 8 * (usize::from(ext[1]) + 1);
            }
            // Hop-by-hop, destination options: 8-octet units.
            _ => at += 8 * (usize::from(ext[1]) + 1),
        }
        next = ext[0];
    }
    if next == 6 && at <= MAX_CHAIN_OFFSET {
        suspect.tcp = Some(at);
        Found::Judge(suspect)
    } else if next == 6 || WALKED.contains(&next) || NOT_WALKED.contains(&next) {
        Found::Judge(suspect)
    } else {
        Found::Pass
    }
}

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    let b = frame.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{Ext, Frame, TPID_8021Q, flags};

    fn policy() -> Policy {
        Policy {
            allow: Allowlist::from_prefixes(
                vec!["192.0.2.0/24".parse().unwrap()],
                vec!["2001:db8:1::/48".parse().unwrap()],
            ),
            ports: [25].into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_blocks_answer_as_the_list_does() {
        let list = Allowlist::from_prefixes(
            [
                "10.0.0.0/16",
                "192.0.2.0/25",
                "192.0.2.200/32",
                "198.51.0.0/20",
            ]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect(),
            ["2001:db8::/48", "2001:db8:1::/64", "2001:db8:2:1::1/128"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
        );
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(coverage(&list, net("10.0.0.0/16")), Coverage::Full);
        assert_eq!(coverage(&list, net("192.0.0.0/16")), Coverage::Part);
        assert_eq!(coverage(&list, net("192.0.2.0/24")), Coverage::Part);
        assert_eq!(coverage(&list, net("192.0.3.0/24")), Coverage::None);
        assert_eq!(coverage(&list, net("198.51.15.0/24")), Coverage::Full);
        assert_eq!(coverage(&list, net("2001:db8::/48")), Coverage::Full);
        assert_eq!(coverage(&list, net("2001:db8:1::/48")), Coverage::Part);
        for a in [
            "10.0.9.9",
            "10.1.0.1",
            "192.0.2.1",
            "192.0.2.130",
            "192.0.2.200",
            "192.0.2.201",
            "198.51.15.255",
            "198.51.16.0",
            "2001:db8::1",
            "2001:db8:1::1",
            "2001:db8:1:1::1",
            "2001:db8:2:1::1",
            "2001:db8:2:1::2",
            "2001:db9::1",
        ] {
            let addr: IpAddr = a.parse().unwrap();
            assert_eq!(allowed(&list, addr), list.lookup(addr).is_some(), "{a}");
        }
    }

    #[test]
    fn judges_the_design_cases() {
        let p = policy();
        let dst: IpAddr = "198.51.100.25".parse().unwrap();
        let denied = Frame::syn("203.0.113.9".parse().unwrap(), dst, 25);
        assert_eq!(verdict(&denied.bytes(), &p), DROP);
        assert_eq!(
            verdict(
                &Frame::syn("192.0.2.9".parse().unwrap(), dst, 25).bytes(),
                &p
            ),
            PASS
        );
        assert_eq!(
            verdict(&denied.clone().flags(flags::SYN | flags::ACK).bytes(), &p),
            PASS
        );
        assert_eq!(
            verdict(&denied.clone().vlans(&[TPID_8021Q, TPID_8021Q]).bytes(), &p),
            DROP
        );
        assert_eq!(
            verdict(&denied.clone().vlans(&[TPID_8021Q; 8]).bytes(), &p),
            DROP
        );
        let allowed = Frame::syn("192.0.2.9".parse().unwrap(), dst, 25);
        assert_eq!(
            verdict(&allowed.clone().vlans(&[TPID_8021Q; 9]).bytes(), &p),
            DROP,
            "V2: a ninth tag hides the source"
        );
        assert_eq!(
            verdict(&allowed.clone().ipv4_frag(0x2001).bytes(), &p),
            DROP,
            "V4: offset 1 whatever the source"
        );
        assert_eq!(
            verdict(&allowed.clone().ipv4_frag(0x2002).bytes(), &p),
            PASS
        );
        assert_eq!(verdict(&allowed.bytes()[..40], &p), PASS);
        let bytes = denied.bytes();
        assert_eq!(
            verdict(&bytes[..bytes.len() - 1], &p),
            DROP,
            "V5: a cut TCP header is judged"
        );
        assert_eq!(verdict(&denied.clone().udp().bytes(), &p), PASS);
        let v6 = Frame::syn(
            "2001:db8:bad::1".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
            25,
        )
        .ipv6_ext(&[Ext::HopByHop(0), Ext::DestOpts(1)]);
        assert_eq!(verdict(&v6.bytes(), &p), DROP);
        let long = v6.clone().ipv6_ext(&[Ext::DestOpts(0); 17]);
        assert_eq!(
            verdict(&long.bytes(), &p),
            DROP,
            "V3: a chain past the walk"
        );
        let judged = examine(&long.bytes(), &p).expect("judged");
        assert_eq!(judged.outcome, Outcome::DroppedUnparsed);
        assert_eq!(
            verdict(&v6.clone().ipv6_ext(&[Ext::DestOpts(0); 16]).bytes(), &p),
            DROP
        );
        assert_eq!(
            verdict(
                &v6.clone().ipv6_ext(&[Ext::DestOpts(0); 16]).udp().bytes(),
                &p
            ),
            PASS
        );
        assert_eq!(
            verdict(
                &v6.clone().ipv6_ext(&[Ext::DestOpts(0); 17]).udp().bytes(),
                &p
            ),
            DROP,
            "unseen: judged"
        );
    }
}
