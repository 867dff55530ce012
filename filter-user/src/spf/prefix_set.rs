//! Sets of addresses held as prefix lists, with the union and difference a
//! flattener needs: an SPF term that does not pass takes its addresses out
//! of every later term, which is a set difference.
//!
//! Both families are kept sorted, without overlaps, adjacent prefixes joined
//! ([`merged`], as the allowlist is), so equal sets compare equal.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::allowlist::{Prefix, merged};

/// A set of IPv4 and IPv6 addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixSet {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl PrefixSet {
    /// The set of the given prefixes (in any order, overlapping or not).
    pub fn new(v4: Vec<Ipv4Net>, v6: Vec<Ipv6Net>) -> Self {
        Self {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    /// The set of one prefix.
    pub fn of(net: IpNet) -> Self {
        match net.trunc() {
            IpNet::V4(n) => Self::new(vec![n], Vec::new()),
            IpNet::V6(n) => Self::new(Vec::new(), vec![n]),
        }
    }

    /// Every address of both families.
    pub fn everything() -> Self {
        Self {
            v4: vec![Ipv4Net::default()],
            v6: vec![Ipv6Net::default()],
        }
    }

    /// The IPv4 prefixes, sorted and merged.
    pub fn v4(&self) -> &[Ipv4Net] {
        &self.v4
    }

    /// The IPv6 prefixes, sorted and merged.
    pub fn v6(&self) -> &[Ipv6Net] {
        &self.v6
    }

    /// True when the set has no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// True when the set holds every address of both families.
    pub fn is_everything(&self) -> bool {
        self.whole_family().len() == 2
    }

    /// The families ("IPv4", "IPv6") the set holds whole.
    pub fn whole_family(&self) -> Vec<&'static str> {
        let mut whole = Vec::new();
        if self.v4.first().is_some_and(|n| n.prefix_len() == 0) {
            whole.push("IPv4");
        }
        if self.v6.first().is_some_and(|n| n.prefix_len() == 0) {
            whole.push("IPv6");
        }
        whole
    }

    /// Addresses in `self` or `other`.
    pub fn union(&self, other: &Self) -> Self {
        Self::new(
            [&self.v4[..], &other.v4[..]].concat(),
            [&self.v6[..], &other.v6[..]].concat(),
        )
    }

    /// Addresses in `self` and not in `other`.
    pub fn difference(&self, other: &Self) -> Self {
        Self {
            v4: difference(&self.v4, &other.v4),
            v6: difference(&self.v6, &other.v6),
        }
    }

    /// True when `addr` is in the set. An IPv4-mapped IPv6 address is
    /// looked up as the IPv4 address it maps (RFC 7208 5/9/2).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(&a)),
        }
    }
}

/// `a` without `b`; both sorted and without overlaps.
fn difference<N: Prefix>(a: &[N], b: &[N]) -> Vec<N> {
    let mut out = Vec::new();
    for x in a {
        // The prefixes of `b` that overlap `x` are one run of the sorted list.
        let start = b.partition_point(|y| y.last_key() < x.network_key());
        let end = b.partition_point(|y| y.network_key() <= x.last_key());
        subtract(*x, &b[start..end.max(start)], &mut out);
    }
    merged(out)
}

/// Pushes the parts of `x` outside `overlapping` (sorted prefixes that each
/// overlap `x`), halving `x` around them.
fn subtract<N: Prefix>(x: N, overlapping: &[N], out: &mut Vec<N>) {
    if overlapping.is_empty() {
        out.push(x);
        return;
    }
    if overlapping.iter().any(|y| y.contains_net(&x)) {
        return;
    }
    // Each overlapping prefix lies strictly inside `x`, so `x` can be halved.
    let Some((low, high)) = x.halves() else {
        return;
    };
    let split = overlapping.partition_point(|y| y.network_key() < high.network_key());
    subtract(low, &overlapping[..split], out);
    subtract(high, &overlapping[split..], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(prefixes: &[&str]) -> PrefixSet {
        let (v4, v6) = crate::allowlist::by_family(prefixes.iter().map(|p| {
            p.parse::<IpNet>()
                .unwrap_or_else(|_| IpNet::from(p.parse::<IpAddr>().unwrap()))
        }));
        PrefixSet::new(v4, v6)
    }

    fn show(s: &PrefixSet) -> Vec<String> {
        s.v4()
            .iter()
            .map(ToString::to_string)
            .chain(s.v6().iter().map(ToString::to_string))
            .collect()
    }

    #[test]
    fn union_merges() {
        let u =
            set(&["192.0.2.0/25", "10.0.0.0/8"]).union(&set(&["192.0.2.128/25", "2001:db8::/32"]));
        assert_eq!(show(&u), ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"]);
    }

    #[test]
    fn difference_cuts_holes() {
        let d = set(&["192.0.2.0/24"]).difference(&set(&["192.0.2.66"]));
        assert_eq!(
            show(&d),
            [
                "192.0.2.0/26",
                "192.0.2.64/31",
                "192.0.2.67/32",
                "192.0.2.68/30",
                "192.0.2.72/29",
                "192.0.2.80/28",
                "192.0.2.96/27",
                "192.0.2.128/25",
            ]
        );
        assert!(!d.contains("192.0.2.66".parse().unwrap()));
        assert!(d.contains("192.0.2.65".parse().unwrap()));
        assert!(d.contains("192.0.2.67".parse().unwrap()));
        // Holes in two places, a prefix removed whole, one untouched.
        let d = set(&[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.0.2.0/24",
            "2001:db8::/32",
        ])
        .difference(&set(&[
            "10.0.0.0/9",
            "10.255.0.0/16",
            "172.0.0.0/8",
            "2001:db8:8000::/33",
        ]));
        assert_eq!(
            show(&d),
            [
                "10.128.0.0/10",
                "10.192.0.0/11",
                "10.224.0.0/12",
                "10.240.0.0/13",
                "10.248.0.0/14",
                "10.252.0.0/15",
                "10.254.0.0/16",
                "192.0.2.0/24",
                "2001:db8::/33",
            ]
        );
    }

    #[test]
    fn difference_edge_cases() {
        let a = set(&["192.0.2.0/24", "2001:db8::/48"]);
        assert_eq!(a.difference(&PrefixSet::default()), a);
        assert!(a.difference(&a).is_empty());
        assert!(a.difference(&PrefixSet::everything()).is_empty());
        assert!(PrefixSet::default().difference(&a).is_empty());
        let all = PrefixSet::everything().difference(&set(&["0.0.0.0/1"]));
        assert_eq!(show(&all), ["128.0.0.0/1", "::/0"]);
        assert_eq!(all.whole_family(), ["IPv6"]);
        assert!(PrefixSet::everything().is_everything());
        // A single address out of all of IPv6: 128 prefixes, one per length.
        let v6 = set(&["::/0"]).difference(&set(&["2001:db8::1"]));
        assert_eq!(v6.v6().len(), 128);
        assert!(!v6.contains("2001:db8::1".parse().unwrap()));
        assert!(v6.contains("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn difference_matches_a_brute_force_model() {
        // Every subset pair of a few prefixes inside 10.0.0.0/28, checked
        // address by address.
        let pool = [
            "10.0.0.0/28",
            "10.0.0.0/30",
            "10.0.0.4/31",
            "10.0.0.7/32",
            "10.0.0.8/29",
            "10.0.0.12/30",
            "10.0.0.9/32",
        ];
        for mask_a in 0u32..(1 << pool.len()) {
            for mask_b in (0u32..(1 << pool.len())).step_by(3) {
                let pick = |mask: u32| -> Vec<&str> {
                    (0..pool.len())
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| pool[i])
                        .collect()
                };
                let (a, b) = (set(&pick(mask_a)), set(&pick(mask_b)));
                let d = a.difference(&b);
                for host in 0..16u8 {
                    let addr: IpAddr = format!("10.0.0.{host}").parse().unwrap();
                    assert_eq!(
                        d.contains(addr),
                        a.contains(addr) && !b.contains(addr),
                        "{:?} - {:?} at {addr}",
                        pick(mask_a),
                        pick(mask_b)
                    );
                }
            }
        }
    }

    #[test]
    fn mapped_addresses_are_looked_up_as_ipv4() {
        let s = set(&["1.2.3.4"]);
        assert!(s.contains("::ffff:1.2.3.4".parse().unwrap()));
    }
}
