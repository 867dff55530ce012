//! The allowlist as a set of prefixes: merged, sorted, one family per
//! vector. This is what range lists parse into, what refresh diffs, and
//! exactly what the kernel's tries hold.

use std::{fmt, net::IpAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// `nets` split by family, each in the order given, neither merged nor
/// sorted.
pub fn by_family(nets: impl IntoIterator<Item = IpNet>) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for net in nets {
        match net {
            IpNet::V4(n) => v4.push(n),
            IpNet::V6(n) => v6.push(n),
        }
    }
    (v4, v6)
}

/// The merged allowlist: sorted, without overlaps or duplicates, adjacent
/// prefixes joined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    /// IPv4 prefixes.
    pub v4: Vec<Ipv4Net>,
    /// IPv6 prefixes.
    pub v6: Vec<Ipv6Net>,
}

impl Allowlist {
    /// Builds a merged allowlist from any prefixes.
    pub fn from_prefixes(v4: Vec<Ipv4Net>, v6: Vec<Ipv6Net>) -> Self {
        Self {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    /// The merged allowlist of `entries` (CIDRs), for tests.
    #[cfg(test)]
    pub(crate) fn of(entries: &[&str]) -> Self {
        let (v4, v6) = by_family(entries.iter().map(|e| e.parse().expect("a CIDR")));
        Self::from_prefixes(v4, v6)
    }

    /// Number of prefixes in both families.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when neither family has a prefix.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prefix that allows `addr`, if any. The merged list has no
    /// overlaps, so at most one prefix contains an address.
    pub fn lookup(&self, addr: IpAddr) -> Option<IpNet> {
        match addr {
            IpAddr::V4(a) => covering(&self.v4, &Ipv4Net::from(a)).map(IpNet::V4),
            IpAddr::V6(a) => covering(&self.v6, &Ipv6Net::from(a)).map(IpNet::V6),
        }
    }

    /// True when every address of `net` is allowed.
    pub fn covers(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => covering(&self.v4, n).is_some(),
            IpNet::V6(n) => covering(&self.v6, n).is_some(),
        }
    }
}

/// The prefix of a merged, sorted list that contains `net`. In a merged list
/// any block covered by the union is inside a single prefix, so one binary
/// search suffices.
fn covering<N: Prefix>(sorted: &[N], net: &N) -> Option<N> {
    let after = sorted.partition_point(|p| p.network_key() <= net.network_key());
    let candidate = *sorted.get(after.checked_sub(1)?)?;
    candidate.contains_net(net).then_some(candidate)
}

/// True when some prefix of the sorted, non-overlapping `sorted` shares an
/// address with `net`.
pub fn overlaps<N: Prefix>(sorted: &[N], net: &N) -> bool {
    // The last prefix starting at or before `net` may contain it; any
    // prefix starting inside `net` overlaps it.
    let after = sorted.partition_point(|p| p.network_key() <= net.network_key());
    let before = after.checked_sub(1).and_then(|i| sorted.get(i));
    before.is_some_and(|p| p.last_key() >= net.network_key())
        || sorted
            .get(after)
            .is_some_and(|p| p.network_key() <= net.last_key())
}

/// What the allowlist's code needs of [`Ipv4Net`] and [`Ipv6Net`], so one
/// generic function serves both families.
pub trait Prefix: Copy + Ord + fmt::Display + fmt::Debug {
    /// The network address in network byte order, as the tries key it.
    type Octets: Copy + fmt::Debug;
    /// "IPv4" or "IPv6", for messages.
    const FAMILY: &'static str;
    /// Bits in an address: the longest prefix's length.
    const BITS: u8;

    /// The network address's bytes.
    fn octets(&self) -> Self::Octets;
    /// The prefix length.
    fn length(&self) -> u8;
    /// The prefix `octets`/`len`, or `None` if `len` is too long.
    fn from_octets(octets: Self::Octets, len: u8) -> Option<Self>;
    /// The prefix whose network address is `key` (as [`Self::network_key`]
    /// numbers it) and length `len`; `len` at most [`Self::BITS`].
    fn from_key(key: u128, len: u8) -> Self;
    /// The network address as a number, for ordering.
    fn network_key(&self) -> u128;
    /// The last address as a number.
    fn last_key(&self) -> u128;
    /// True when `other` lies inside `self`.
    fn contains_net(&self, other: &Self) -> bool;
    /// Its two halves (one bit longer), or `None` for a single address.
    fn halves(&self) -> Option<(Self, Self)>;
}

impl Prefix for Ipv4Net {
    type Octets = [u8; 4];
    const FAMILY: &'static str = "IPv4";
    const BITS: u8 = 32;

    fn octets(&self) -> [u8; 4] {
        self.network().octets()
    }
    fn length(&self) -> u8 {
        self.prefix_len()
    }
    fn from_octets(octets: [u8; 4], len: u8) -> Option<Self> {
        Ipv4Net::new(octets.into(), len).ok()
    }
    fn from_key(key: u128, len: u8) -> Self {
        // `merged` makes keys between two IPv4 prefixes' network keys, which
        // fit in 32 bits, and lengths of at most BITS: a panic here is a
        // bug there.
        debug_assert!(key <= u128::from(u32::MAX), "an IPv4 key of {key:#x}");
        Ipv4Net::new_assert((key as u32).into(), len)
    }
    fn network_key(&self) -> u128 {
        u128::from(u32::from(self.network()))
    }
    fn last_key(&self) -> u128 {
        u128::from(u32::from(self.broadcast()))
    }
    fn contains_net(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn halves(&self) -> Option<(Self, Self)> {
        let mut halves = self.subnets(self.prefix_len().checked_add(1)?).ok()?;
        Some((halves.next()?, halves.next()?))
    }
}

impl Prefix for Ipv6Net {
    type Octets = [u8; 16];
    const FAMILY: &'static str = "IPv6";
    const BITS: u8 = 128;

    fn octets(&self) -> [u8; 16] {
        self.network().octets()
    }
    fn length(&self) -> u8 {
        self.prefix_len()
    }
    fn from_octets(octets: [u8; 16], len: u8) -> Option<Self> {
        Ipv6Net::new(octets.into(), len).ok()
    }
    fn from_key(key: u128, len: u8) -> Self {
        // `merged` makes lengths of at most BITS: a panic here is a bug there.
        Ipv6Net::new_assert(key.into(), len)
    }
    fn network_key(&self) -> u128 {
        u128::from(self.network())
    }
    fn last_key(&self) -> u128 {
        u128::from(self.broadcast())
    }
    fn contains_net(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn halves(&self) -> Option<(Self, Self)> {
        let mut halves = self.subnets(self.prefix_len().checked_add(1)?).ok()?;
        Some((halves.next()?, halves.next()?))
    }
}

/// The fewest prefixes that cover exactly the addresses of `nets`,
/// sorted: what ipnet's `aggregate` returns, made in `nets`' own buffer.
/// (ipnet's builds three more vectors the size of the list; on a machine
/// whose fresh pages cost a few µs each to fault in, that was a fifth of
/// parsing 100,000 IPv6 prefixes.)
///
/// The sorted prefixes are joined into runs of overlapping or adjacent
/// ones, and each run's addresses are written back as the largest aligned
/// prefixes that fit, from its first address on. A run of k prefixes
/// never needs more than k (its outermost prefixes, at most k, are such a
/// cover, and this one is the smallest), so the writes never overtake the
/// reads.
pub fn merged<N: Prefix>(mut nets: Vec<N>) -> Vec<N> {
    nets.sort_unstable_by_key(Prefix::network_key);
    let (mut read, mut write) = (0, 0);
    while let Some(first) = nets.get(read) {
        let start = first.network_key();
        let mut end = first.last_key();
        read += 1;
        while let Some(next) = nets.get(read) {
            if next.network_key() > end.saturating_add(1) {
                break;
            }
            end = end.max(next.last_key());
            read += 1;
        }
        write = cover(&mut nets, write, start, end);
    }
    nets.truncate(write);
    nets
}

/// Writes the fewest prefixes that cover exactly the addresses `start` to
/// `end` (numbered as [`Prefix::network_key`] numbers them) into `nets`
/// from `at` on; returns where the writes ended.
fn cover<N: Prefix>(nets: &mut [N], mut at: usize, mut start: u128, end: u128) -> usize {
    let bits = u32::from(N::BITS);
    loop {
        let span = end - start;
        // The largest block aligned at `start` (2^aligned addresses) that
        // does not pass `end` (2^fits addresses at most).
        let aligned = start.trailing_zeros().min(bits);
        let fits = span.checked_add(1).map_or(128, |n| 127 - n.leading_zeros());
        let size_bits = aligned.min(fits);
        // At most BITS, so a length of 0 to BITS.
        let len = (bits - size_bits) as u8;
        nets[at] = N::from_key(start, len);
        at += 1;
        let last = match 1u128.checked_shl(size_bits) {
            Some(size) => start + (size - 1),
            None => u128::MAX,
        };
        if last >= end {
            return at;
        }
        start = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::of(entries)
    }

    #[test]
    fn lookup_and_covers_use_the_merged_list() {
        let list = list(&["192.0.2.0/24", "2001:db8::/32"]);
        assert_eq!(
            list.lookup("192.0.2.9".parse().unwrap()),
            Some("192.0.2.0/24".parse().unwrap())
        );
        assert_eq!(list.lookup("192.0.3.9".parse().unwrap()), None);
        assert_eq!(
            list.lookup("2001:db8:1::1".parse().unwrap()),
            Some("2001:db8::/32".parse().unwrap())
        );
        assert!(list.covers(&"192.0.2.128/25".parse().unwrap()));
        assert!(!list.covers(&"192.0.2.0/23".parse().unwrap()));
    }

    #[test]
    fn overlaps_finds_containing_and_contained_prefixes() {
        let l = list(&["10.0.0.0/24", "10.0.2.0/25", "10.1.0.0/16"]);
        let yes = |n: &str| overlaps(&l.v4, &n.parse::<Ipv4Net>().unwrap());
        assert!(yes("10.0.0.128/25"), "inside a prefix");
        assert!(yes("10.0.2.0/23"), "holds a prefix");
        assert!(yes("10.0.0.0/8"), "holds several");
        assert!(!yes("10.0.1.0/24"), "between prefixes");
        assert!(!yes("10.0.2.128/25"), "beside a prefix");
        assert!(!yes("9.0.0.0/8"));
    }

    #[test]
    fn octets_round_trip() {
        let v4: Ipv4Net = "192.0.2.0/24".parse().unwrap();
        assert_eq!(Ipv4Net::from_octets(v4.octets(), v4.length()), Some(v4));
        let v6: Ipv6Net = "2001:db8::/32".parse().unwrap();
        assert_eq!(Ipv6Net::from_octets(v6.octets(), v6.length()), Some(v6));
        assert_eq!(Ipv4Net::from_octets([0; 4], 33), None);
    }

    /// xorshift64*, seeded: random prefixes for the comparisons below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Random prefixes crowded into a few blocks, so that they overlap,
    /// repeat and touch: `wide` bits of freedom below `top`, lengths from
    /// `shortest` to BITS.
    fn crowded<N: Prefix>(
        rng: &mut Rng,
        count: usize,
        top: u128,
        wide: u32,
        shortest: u8,
    ) -> Vec<N> {
        (0..count)
            .map(|_| {
                let low =
                    (u128::from(rng.next()) << 64 | u128::from(rng.next())) & ((1u128 << wide) - 1);
                let span = u64::from(N::BITS - shortest) + 1;
                let len = shortest + (rng.next() % span) as u8;
                let key = top | low;
                // The network of `key`/`len`.
                let host = u32::from(N::BITS - len);
                let network = key
                    .checked_shr(host)
                    .map_or(0, |k| k.checked_shl(host).unwrap_or(0));
                N::from_key(network, len)
            })
            .collect()
    }

    #[test]
    fn merging_in_place_gives_what_ipnet_gives() {
        let mut rng = Rng(0x6d65_7267_6564);
        let edges_v4: Vec<Ipv4Net> = [
            "0.0.0.0/0",
            "255.255.255.255/32",
            "0.0.0.0/32",
            "128.0.0.0/1",
        ]
        .iter()
        .map(|n| n.parse().expect("a prefix"))
        .collect();
        let edges_v6: Vec<Ipv6Net> = [
            "::/0",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
            "::/128",
            "8000::/1",
        ]
        .iter()
        .map(|n| n.parse().expect("a prefix"))
        .collect();
        for round in 0..2_000 {
            let count = 1 + (rng.next() % 64) as usize;
            let wide = 4 + (rng.next() % 12) as u32;
            let mut v4: Vec<Ipv4Net> = crowded(&mut rng, count, 0xc000_0200, wide, 18);
            let mut v6: Vec<Ipv6Net> = crowded(&mut rng, count, 0x2001_0db8_u128 << 96, wide, 112);
            if round % 50 == 0 {
                v4.push(edges_v4[round / 50 % 4]);
                v6.push(edges_v6[round / 50 % 4]);
            }
            if round % 7 == 0 {
                // The top of the address space, where a run ends at the last address.
                v4.extend(crowded::<Ipv4Net>(&mut rng, 8, 0xffff_ff00, 8, 26));
                v6.extend(crowded::<Ipv6Net>(&mut rng, 8, u128::MAX << 8, 8, 122));
            }
            assert_eq!(merged(v4.clone()), Ipv4Net::aggregate(&v4), "{v4:?}");
            assert_eq!(merged(v6.clone()), Ipv6Net::aggregate(&v6), "{v6:?}");
        }
        assert_eq!(merged::<Ipv4Net>(Vec::new()), Vec::new());
    }
}
