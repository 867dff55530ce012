//! Seeded, reproducible frames for the differential test: random bytes and
//! mutations of valid SYNs (bit flips, truncation, ethertypes, header
//! lengths, flags, extension-header chains longer than the walk, VLAN
//! stacks deeper than the program looks, fragments tiny and at offset 1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::frames::{Ext, Frame, Piece, TPID_8021AD, TPID_8021Q, flags};

/// SplitMix64: tiny, fast, and the same sequence for the same seed
/// everywhere, which is all a reproducible test needs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Addresses the generator draws from, so that allowlist hits, misses and
/// protected destinations all occur often.
pub struct Addresses {
    /// IPv4 sources (some allowed, some not).
    pub v4_sources: Vec<Ipv4Addr>,
    /// IPv6 sources (some allowed, some not).
    pub v6_sources: Vec<Ipv6Addr>,
    /// IPv4 destinations.
    pub v4_destinations: Vec<Ipv4Addr>,
    /// IPv6 destinations.
    pub v6_destinations: Vec<Ipv6Addr>,
    /// Destination ports (protected and not).
    pub ports: Vec<u16>,
}

/// Ethertypes worth substituting: IP, VLAN, and others.
const ETHERTYPES: &[u16] = &[
    0x0800, 0x86dd, 0x8100, 0x88a8, 0x0806, 0x8847, 0x9100, 0x0000,
];

/// A valid frame: a TCP segment (mostly SYN) with random addresses, ports,
/// VLAN tags, IPv4 options, fragments or IPv6 extension headers.
pub fn valid_frame(rng: &mut Rng, addrs: &Addresses) -> Frame {
    let v6 = rng.chance(50);
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        (
            rng.pick(&addrs.v6_sources).into(),
            rng.pick(&addrs.v6_destinations).into(),
        )
    } else {
        (
            rng.pick(&addrs.v4_sources).into(),
            rng.pick(&addrs.v4_destinations).into(),
        )
    };
    let mut frame = Frame::syn(src, dst, rng.pick(&addrs.ports)).sport(rng.next_u64() as u16);
    if rng.chance(30) {
        let any = rng.byte();
        let bits = rng.pick(&[
            flags::SYN | flags::ACK,
            flags::ACK,
            flags::RST,
            flags::SYN | flags::FIN,
            flags::SYN | flags::RST | flags::ACK,
            any,
        ]);
        frame = frame.flags(bits);
    }
    if rng.chance(40) {
        // Around the walk's bound of 8 too (docs/DESIGN.md V2).
        let count = rng.pick(&[0, 1, 1, 2, 2, 3, 7, 8, 9, 10]);
        let tags: Vec<u16> = (0..count)
            .map(|_| rng.pick(&[TPID_8021Q, TPID_8021AD]))
            .collect();
        frame = frame.vlans(&tags);
    }
    if v6 {
        if rng.chance(50) {
            // Around the walk's bound of 16 too (docs/DESIGN.md V3).
            let count = rng.pick(&[0, 1, 2, 3, 4, 6, 7, 15, 16, 17, 20]);
            let chain: Vec<Ext> = (0..count).map(|_| random_ext(rng)).collect();
            frame = frame.ipv6_ext(&chain);
        }
    } else {
        if rng.chance(40) {
            frame = frame.ipv4_options(4 * rng.below(11));
        }
        if rng.chance(20) {
            // DF, MF, and offsets both zero and not.
            let field = rng.pick(&[
                0x0000,
                0x2000,
                0x0001,
                0x2001,
                0x2002,
                0x1fff,
                0x4000 | 0x00b9,
            ]);
            frame = frame.ipv4_frag(field);
        }
    }
    if rng.chance(5) {
        frame = frame.udp();
    }
    frame
}

fn random_ext(rng: &mut Rng) -> Ext {
    match rng.below(6) {
        5 => Ext::Other {
            kind: rng.pick(&[135, 139, 140, 253, 254, 50, 59]),
            len: 0,
        },
        0 => Ext::HopByHop(rng.pick(&[0, 0, 1, 3])),
        1 => Ext::Routing(rng.pick(&[0, 2])),
        2 => Ext::DestOpts(rng.pick(&[0, 1])),
        3 => Ext::Fragment {
            offset: rng.pick(&[0, 0, 1, 0x1fff]),
            more: rng.chance(50),
        },
        _ => Ext::Auth(rng.pick(&[1, 4, 6])),
    }
}

/// One frame for the differential test: random bytes now and then, else a
/// valid frame, mutated most of the time.
pub fn frame(rng: &mut Rng, addrs: &Addresses) -> Vec<u8> {
    if rng.chance(5) {
        let len = 14 + rng.below(200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Random bytes rarely say IP: make them say so half the time.
        if rng.chance(50) {
            let ethertype = rng.pick(&[0x0800u16, 0x86dd]);
            bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
        }
        return bytes;
    }
    let frame = valid_frame(rng, addrs);
    let l3 = frame.l3_offset();
    let mut bytes = if rng.chance(10) {
        // One fragment of the packet: a tiny first one (ports only, or
        // not even those behind IPv4 options), one at offset 1, a later one.
        let size = rng.pick(&[8, 8, 16, 24]);
        let mut fragments = frame.fragments(&Piece::every(size, frame.fragmentable_len()));
        fragments.swap_remove(rng.below(fragments.len()))
    } else {
        frame.bytes()
    };
    let mutations = match rng.below(10) {
        0..=3 => 0,
        4..=7 => 1,
        _ => 1 + rng.below(4),
    };
    for _ in 0..mutations {
        mutate(rng, &mut bytes, l3);
    }
    // BPF_PROG_TEST_RUN needs a whole Ethernet header.
    if bytes.len() < 14 {
        bytes.resize(14, 0);
    }
    bytes
}

/// Applies one mutation, aimed at the fields the verdict reads.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, l3: usize) {
    // An earlier truncation may have left too little to mutate.
    if bytes.len() < 14 {
        bytes.resize(14, 0);
    }
    let len = bytes.len();
    match rng.below(8) {
        // A bit flip anywhere.
        0 => {
            let at = rng.below(len);
            bytes[at] ^= 1 << rng.below(8);
        }
        // A bit flip in the headers the verdict reads.
        1 => {
            let at = (l3 + rng.below(80)).min(len - 1);
            bytes[at] ^= 1 << rng.below(8);
        }
        // Truncation at any length.
        2 => bytes.truncate(rng.below(len + 1)),
        // Another ethertype, outer or after a tag.
        3 => {
            let at = rng.pick(&[12, 16, 20]).min(len - 2);
            let ethertype = rng.pick(ETHERTYPES);
            bytes[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
        }
        // Another IPv4 version/IHL byte (or IPv6 version nibble).
        4 => {
            if l3 < len {
                bytes[l3] = rng.byte();
            }
        }
        // Another next-header/protocol byte or extension length.
        5 => {
            let at = (l3 + rng.pick(&[6, 9, 40, 41, 48, 49])).min(len - 1);
            let any = rng.byte();
            bytes[at] = rng.pick(&[0, 6, 17, 43, 44, 51, 58, 59, 60, any]);
        }
        // Other TCP flags, wherever the TCP header is: search for it loosely.
        6 => {
            let at = rng.below(len);
            bytes[at] = rng.pick(&[flags::SYN, flags::SYN | flags::ACK, flags::ACK, 0xff, 0]);
        }
        // Bytes appended (padding, a longer frame).
        _ => {
            let extra = rng.below(64);
            bytes.extend((0..extra).map(|_| rng.byte()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_frames() {
        let addrs = Addresses {
            v4_sources: vec!["192.0.2.1".parse().unwrap()],
            v6_sources: vec!["2001:db8::1".parse().unwrap()],
            v4_destinations: vec!["198.51.100.1".parse().unwrap()],
            v6_destinations: vec!["2001:db8::25".parse().unwrap()],
            ports: vec![25],
        };
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(frame(&mut a, &addrs), frame(&mut b, &addrs));
        }
    }
}
