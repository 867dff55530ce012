//! The change from the live allowlist to a new one: prefixes to insert and
//! to delete. What the change may do is the guards' to judge
//! ([`crate::guard`]).

use std::{borrow::Cow, cmp::Ordering};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::allowlist::Allowlist;

pub use crate::guard::Guard;

/// Prefixes to insert and to delete in one family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FamilyDiff<N> {
    /// In the new list, not live: inserted first.
    pub added: Vec<N>,
    /// Live, not in the new list: deleted after every insert.
    pub removed: Vec<N>,
    /// In both.
    pub unchanged: usize,
}

impl<N: Ord + Copy> FamilyDiff<N> {
    /// One walk over both lists in order, each added and removed prefix in
    /// order: a list is sorted, without duplicates, as an [`Allowlist`]
    /// holds it (a slice that is not is sorted first).
    fn between(live: &[N], new: &[N]) -> Self {
        let (live, new) = (ordered(live), ordered(new));
        let mut diff = Self {
            added: Vec::new(),
            removed: Vec::new(),
            unchanged: 0,
        };
        let (mut i, mut j) = (0, 0);
        while let (Some(l), Some(n)) = (live.get(i), new.get(j)) {
            match l.cmp(n) {
                Ordering::Less => {
                    diff.removed.push(*l);
                    i += 1;
                }
                Ordering::Greater => {
                    diff.added.push(*n);
                    j += 1;
                }
                Ordering::Equal => {
                    diff.unchanged += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        diff.removed
            .extend_from_slice(live.get(i..).unwrap_or_default());
        diff.added
            .extend_from_slice(new.get(j..).unwrap_or_default());
        diff
    }

    /// True when nothing is added or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// `nets` sorted and without duplicates: as it is when it already is.
fn ordered<N: Ord + Copy>(nets: &[N]) -> Cow<'_, [N]> {
    if nets.is_sorted_by(|a, b| a < b) {
        return Cow::Borrowed(nets);
    }
    let mut owned = nets.to_vec();
    owned.sort_unstable();
    owned.dedup();
    Cow::Owned(owned)
}

/// The change from the live allowlist to a new one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// IPv4 changes.
    pub v4: FamilyDiff<Ipv4Net>,
    /// IPv6 changes.
    pub v6: FamilyDiff<Ipv6Net>,
}

impl Diff {
    /// What turns `live` into `new`.
    pub fn between(live: &Allowlist, new: &Allowlist) -> Self {
        Self {
            v4: FamilyDiff::between(&live.v4, &new.v4),
            v6: FamilyDiff::between(&live.v6, &new.v6),
        }
    }

    /// True when the live list already equals the new one.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Prefixes added, both families.
    pub fn added(&self) -> usize {
        self.v4.added.len() + self.v6.added.len()
    }

    /// Prefixes removed, both families.
    pub fn removed(&self) -> usize {
        self.v4.removed.len() + self.v6.removed.len()
    }

    /// The change as `+ PREFIX` and `- PREFIX` lines: additions first, IPv4
    /// before IPv6 within each.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        fn signed<N: std::fmt::Display>(sign: char, nets: &[N]) -> impl Iterator<Item = String> {
            nets.iter().map(move |net| format!("{sign} {net}"))
        }
        signed('+', &self.v4.added)
            .chain(signed('+', &self.v6.added))
            .chain(signed('-', &self.v4.removed))
            .chain(signed('-', &self.v6.removed))
    }

    /// Prefixes kept, both families.
    pub fn unchanged(&self) -> usize {
        self.v4.unchanged + self.v6.unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::of(entries)
    }

    #[test]
    fn added_removed_unchanged() {
        let live = list(&["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"]);
        let new = list(&["192.0.2.0/24", "203.0.113.0/24", "2001:db8::/32"]);
        let d = Diff::between(&live, &new);
        assert_eq!(d.v4.added, ["203.0.113.0/24".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(
            d.v4.removed,
            ["198.51.100.0/24".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!((d.unchanged(), d.added(), d.removed()), (2, 1, 1));
        assert!(!d.is_empty());
    }

    #[test]
    fn the_walk_finds_what_set_differences_find_in_any_order() {
        use std::collections::BTreeSet;
        let mut seed = 0x9e37_79b9_u32;
        let mut next = |below: u32| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) % below
        };
        for round in 0..500 {
            let mut pick = || -> Vec<u32> { (0..next(60)).map(|_| next(80)).collect() };
            let (mut live, mut new) = (pick(), pick());
            // Half the rounds as an Allowlist holds them: sorted, unique.
            if round % 2 == 0 {
                for v in [&mut live, &mut new] {
                    v.sort_unstable();
                    v.dedup();
                }
            }
            let d = FamilyDiff::between(&live, &new);
            let (l, n): (BTreeSet<u32>, BTreeSet<u32>) = (
                live.iter().copied().collect(),
                new.iter().copied().collect(),
            );
            assert_eq!(d.added, n.difference(&l).copied().collect::<Vec<_>>());
            assert_eq!(d.removed, l.difference(&n).copied().collect::<Vec<_>>());
            assert_eq!(d.unchanged, l.intersection(&n).count());
        }
    }

    #[test]
    fn same_list_is_empty() {
        let l = list(&["192.0.2.0/24", "2001:db8::/32"]);
        let d = Diff::between(&l, &l);
        assert!(d.is_empty());
        assert_eq!(d.unchanged(), 2);
    }
}
