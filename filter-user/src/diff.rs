//! The change from the live allowlist to a new one: prefixes to insert and
//! to delete. What the change may do is the guards' to judge
//! ([`crate::guard`]).

use std::collections::BTreeSet;

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
    fn between(live: &[N], new: &[N]) -> Self {
        let live: BTreeSet<N> = live.iter().copied().collect();
        let new: BTreeSet<N> = new.iter().copied().collect();
        Self {
            added: new.difference(&live).copied().collect(),
            removed: live.difference(&new).copied().collect(),
            unchanged: live.intersection(&new).count(),
        }
    }

    /// True when nothing is added or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
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
    fn same_list_is_empty() {
        let l = list(&["192.0.2.0/24", "2001:db8::/32"]);
        let d = Diff::between(&l, &l);
        assert!(d.is_empty());
        assert_eq!(d.unchanged(), 2);
    }
}
