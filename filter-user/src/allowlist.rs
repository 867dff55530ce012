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
            v4: Ipv4Net::aggregate(&v4),
            v6: Ipv6Net::aggregate(&v6),
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

    /// The network address's bytes.
    fn octets(&self) -> Self::Octets;
    /// The prefix length.
    fn length(&self) -> u8;
    /// The prefix `octets`/`len`, or `None` if `len` is too long.
    fn from_octets(octets: Self::Octets, len: u8) -> Option<Self>;
    /// The network address as a number, for ordering.
    fn network_key(&self) -> u128;
    /// The last address as a number.
    fn last_key(&self) -> u128;
    /// True when `other` lies inside `self`.
    fn contains_net(&self, other: &Self) -> bool;
    /// Its two halves (one bit longer), or `None` for a single address.
    fn halves(&self) -> Option<(Self, Self)>;
    /// The fewest prefixes that cover exactly `nets`.
    fn aggregate(nets: &[Self]) -> Vec<Self>;
}

impl Prefix for Ipv4Net {
    type Octets = [u8; 4];
    const FAMILY: &'static str = "IPv4";

    fn octets(&self) -> [u8; 4] {
        self.network().octets()
    }
    fn length(&self) -> u8 {
        self.prefix_len()
    }
    fn from_octets(octets: [u8; 4], len: u8) -> Option<Self> {
        Ipv4Net::new(octets.into(), len).ok()
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
    fn aggregate(nets: &[Self]) -> Vec<Self> {
        Ipv4Net::aggregate(&nets.to_vec())
    }
}

impl Prefix for Ipv6Net {
    type Octets = [u8; 16];
    const FAMILY: &'static str = "IPv6";

    fn octets(&self) -> [u8; 16] {
        self.network().octets()
    }
    fn length(&self) -> u8 {
        self.prefix_len()
    }
    fn from_octets(octets: [u8; 16], len: u8) -> Option<Self> {
        Ipv6Net::new(octets.into(), len).ok()
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
    fn aggregate(nets: &[Self]) -> Vec<Self> {
        Ipv6Net::aggregate(&nets.to_vec())
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
}
