//! The reference classifier: docs/DESIGN.md §2 "The verdict" (V1–V8) in
//! plain Rust over a byte slice. It is written from the design text, not
//! from the eBPF code, so that the differential test compares two
//! independent readings of it.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_common::{MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, Outcome};
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

/// The XDP return code the filter must give `frame`.
pub fn verdict(frame: &[u8], policy: &Policy) -> u32 {
    match examine(frame, policy) {
        Some((_, Outcome::Dropped)) => DROP,
        _ => PASS,
    }
}

/// The examined SYN's source and outcome, or `None` when the frame is not
/// an examined SYN (V8: it passes untouched and uncounted).
pub fn examine(frame: &[u8], policy: &Policy) -> Option<(IpAddr, Outcome)> {
    let syn = find_syn(frame)?;
    // V6: the destination port, then the destination address.
    if !policy.ports.contains(&syn.dport) {
        return None;
    }
    if !policy.protect_dst.is_empty() && !policy.protect_dst.contains(&syn.dst) {
        return None;
    }
    // V7.
    let outcome = if allowed(&policy.allow, syn.src) {
        Outcome::Allowed
    } else if policy.open {
        Outcome::PassedOpen
    } else if policy.dry_run {
        Outcome::WouldDrop
    } else {
        Outcome::Dropped
    };
    Some((syn.src, outcome))
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
/// and /24, and for IPv6 its /48.
pub fn blocks_of(src: IpAddr) -> Vec<IpNet> {
    let lens: &[u8] = if src.is_ipv4() {
        &[16, 24]
    } else {
        &[16, 24, 48]
    };
    lens.iter()
        .map(|len| IpNet::new(src, *len).expect("a length").trunc())
        .collect()
}

/// Step V7: whether the allowlist allows `src`. The first block around
/// it (its /16, /24, then for IPv6 its /48) that the list covers in full or
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

struct Syn {
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
}

/// Steps V1–V5: a TCP segment with SYN set and ACK clear
/// whose whole 20-byte header is in the frame.
fn find_syn(frame: &[u8]) -> Option<Syn> {
    // V1, V2: Ethernet, then at most MAX_VLAN_TAGS tags of either kind.
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    let mut tags = 0;
    while (ethertype == 0x8100 || ethertype == 0x88a8) && tags < MAX_VLAN_TAGS {
        // A tag is 4 bytes: TCI, then the next ethertype.
        frame.get(at + 2..at + 6)?;
        ethertype = be16(frame, at + 4)?;
        at += 4;
        tags += 1;
    }
    let l3 = at + 2;
    // V3, V4.
    let (src, dst, tcp) = match ethertype {
        0x0800 => ipv4(frame, l3)?,
        0x86dd => ipv6(frame, l3)?,
        _ => return None,
    };
    let header = frame.get(tcp..tcp + 20)?;
    let flags = header[13];
    let (syn, ack) = (flags & 0x02 != 0, flags & 0x10 != 0);
    if !syn || ack {
        return None;
    }
    Some(Syn {
        src,
        dst,
        dport: u16::from_be_bytes([header[2], header[3]]),
    })
}

fn ipv4(frame: &[u8], l3: usize) -> Option<(IpAddr, IpAddr, usize)> {
    let header = frame.get(l3..l3 + 20)?;
    if header[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(header[0] & 0xf) * 4;
    if header_len < 20 || frame.len() < l3 + header_len {
        return None;
    }
    let fragment_offset = u16::from_be_bytes([header[6], header[7]]) & 0x1fff;
    if fragment_offset != 0 || header[9] != 6 {
        return None;
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    Some((src.into(), dst.into(), l3 + header_len))
}

fn ipv6(frame: &[u8], l3: usize) -> Option<(IpAddr, IpAddr, usize)> {
    let header = frame.get(l3..l3 + 40)?;
    if header[0] >> 4 != 6 {
        return None;
    }
    let addr = |from: usize| {
        let mut octets = [0; 16];
        octets.copy_from_slice(&header[from..from + 16]);
        Ipv6Addr::from(octets)
    };
    let (src, dst) = (addr(8), addr(24));
    let mut next = header[6];
    let mut at = l3 + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            // Fragment: 8 bytes; only the first fragment has the TCP header.
            44 => {
                let ext = frame.get(at..at + 8)?;
                if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                    return None;
                }
                next = ext[0];
                at += 8;
            }
            // Hop-by-hop, routing, destination options: 8-octet units.
            0 | 43 | 60 => {
                let ext = frame.get(at..at + 2)?;
                next = ext[0];
                at += 8 * (usize::from(ext[1]) + 1);
            }
            // Authentication header: 4-octet units, minus 2.
            51 => {
                let ext = frame.get(at..at + 2)?;
                next = ext[0];
                at += 4 * (usize::from(ext[1]) + 2);
            }
            _ => break,
        }
    }
    (next == 6).then_some((src.into(), dst.into(), at))
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
            verdict(&denied.clone().vlans(&[TPID_8021Q; 3]).bytes(), &p),
            PASS
        );
        assert_eq!(verdict(&denied.clone().ipv4_frag(0x0001).bytes(), &p), PASS);
        let bytes = denied.bytes();
        assert_eq!(verdict(&bytes[..bytes.len() - 1], &p), PASS);
        let v6 = Frame::syn(
            "2001:db8:bad::1".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
            25,
        )
        .ipv6_ext(&[Ext::HopByHop(0), Ext::DestOpts(1)]);
        assert_eq!(verdict(&v6.bytes(), &p), DROP);
    }
}
