//! The guards a new list must pass before it replaces the live one,
//! measured in addresses per family (docs/DESIGN.md §6):
//!
//! - **shrink**: a list that takes access from more than `--max-shrink`
//!   percent of the live addresses of a family;
//! - **grow**: a list that allows more than `--max-grow` times the live
//!   addresses of a family (a family with no live address has nothing to
//!   multiply: only the ceiling applies to it);
//! - **ceiling**: a list that allows more addresses of a family than a
//!   prefix of `--max-allow-v4` / `--max-allow-v6` holds, whatever is live.
//!
//! `--force` lifts the shrink and grow guards, never the ceiling: no
//! provider publishes a list anywhere near it, so only an explicit larger
//! ceiling lets such a list through. [`Guard::judge`] is the one decision;
//! whoever keeps a copy of a list (the last-good cache) keeps it only when
//! the judgement accepts it.

use std::fmt;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::allowlist::{Allowlist, Prefix};

/// What a change may do to the live allowlist before it is refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guard {
    /// Largest percent of a family's live addresses a change may take
    /// access from.
    pub max_shrink: f64,
    /// Largest factor by which a change may multiply a family's live
    /// addresses.
    pub max_grow: f64,
    /// Most IPv4 addresses any list may allow: as many as a prefix of this
    /// length holds.
    pub max_allow_v4: u8,
    /// Most IPv6 addresses any list may allow: as many as a prefix of this
    /// length holds.
    pub max_allow_v6: u8,
    /// Apply even when the shrink or grow guard refuses (not the ceiling).
    pub force: bool,
}

/// The default `--max-shrink`: half the live addresses of a family.
pub const DEFAULT_MAX_SHRINK: f64 = 50.0;
/// The default `--max-grow`: ten times the live addresses of a family.
/// Providers' lists change by tens of percent at a time (a new data
/// centre, a merged include); tenfold is a new provider, a test list
/// replaced by a real one, or a source that was tampered with.
pub const DEFAULT_MAX_GROW: f64 = 10.0;
/// The default `--max-allow-v4`: a /8, 16,777,216 addresses, about 32
/// times the largest provider list known (Microsoft 365's and Google's
/// allow about 2^19 IPv4 addresses each). A /1, or 32 prefixes that
/// cover all but one address, are far over it.
pub const DEFAULT_MAX_ALLOW_V4: u8 = 8;
/// The default `--max-allow-v6`: a /28, 2^100 addresses, by the same
/// rule as IPv4's: about 32 times the largest provider list known
/// (Google's six /36s, 2^94.6 addresses; Microsoft 365's two /48s).
pub const DEFAULT_MAX_ALLOW_V6: u8 = 28;

impl Guard {
    /// The defaults, not forced.
    pub const DEFAULT: Guard = Guard {
        max_shrink: DEFAULT_MAX_SHRINK,
        max_grow: DEFAULT_MAX_GROW,
        max_allow_v4: DEFAULT_MAX_ALLOW_V4,
        max_allow_v6: DEFAULT_MAX_ALLOW_V6,
        force: false,
    };

    /// The guards' decision on replacing `live` with `new`: what each
    /// family loses and gains, in addresses, and every guard that refuses
    /// the change. An empty `live` (a first list) meets only the ceiling.
    pub fn judge(&self, live: &Allowlist, new: &Allowlist) -> Judgement {
        let v4 = FamilyChange::between(&live.v4, &new.v4);
        let v6 = FamilyChange::between(&live.v6, &new.v6);
        let mut refusals = Vec::new();
        for (family, change, max_allow) in [
            (Family::V4, v4, self.max_allow_v4),
            (Family::V6, v6, self.max_allow_v6),
        ] {
            let limit = family.addresses_in(max_allow);
            if change.new > limit {
                refusals.push(Refusal::Ceiling {
                    family,
                    new: change.new,
                    max_allow,
                });
            }
            if self.force {
                continue;
            }
            let percent = change.lost_percent();
            if percent > self.max_shrink {
                refusals.push(Refusal::Shrink {
                    family,
                    lost: change.lost,
                    live: change.live,
                    percent,
                    max_shrink: self.max_shrink,
                });
            }
            if change.live > 0 && change.growth() > self.max_grow {
                refusals.push(Refusal::Grow {
                    family,
                    live: change.live,
                    new: change.new,
                    factor: change.growth(),
                    max_grow: self.max_grow,
                });
            }
        }
        Judgement { v4, v6, refusals }
    }
}

pub use filter_common::Family;

/// What the guards say and reckon of an address family (the one
/// [`Family`], filter-common's).
pub trait FamilyMeasure {
    /// "IPv4" or "IPv6", for messages.
    fn name(self) -> &'static str;
    /// Addresses a prefix of length `len` holds (saturating at the
    /// largest count a `u128` holds: the whole IPv6 space).
    fn addresses_in(self, len: u8) -> u128;
}

impl FamilyMeasure for Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn addresses_in(self, len: u8) -> u128 {
        let bits = match self {
            Family::V4 => 32,
            Family::V6 => 128,
        };
        block_size(u32::saturating_sub(bits, u32::from(len)))
    }
}

/// The option that sets the ceiling of `family`.
fn ceiling_option(family: Family) -> &'static str {
    match family {
        Family::V4 => "--max-allow-v4",
        Family::V6 => "--max-allow-v6",
    }
}

/// A family in JSON: `v4` or `v6`.
fn family_key<S: serde::Serializer>(family: &Family, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    })
}

/// One family's change, in addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FamilyChange {
    /// Addresses the live list allows.
    #[serde(serialize_with = "count_json")]
    pub live: u128,
    /// Addresses the new list allows.
    #[serde(serialize_with = "count_json")]
    pub new: u128,
    /// Live addresses the new list no longer allows.
    #[serde(serialize_with = "count_json")]
    pub lost: u128,
}

impl FamilyChange {
    fn between<N: Prefix>(live: &[N], new: &[N]) -> Self {
        let live_count = addresses(live);
        Self {
            live: live_count,
            new: addresses(new),
            lost: live_count.saturating_sub(common(live, new)),
        }
    }

    /// Percent of the live addresses lost (0 when none were live).
    pub fn lost_percent(&self) -> f64 {
        if self.live == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / self.live as f64
        }
    }

    /// How many times the live addresses the new list allows (0 when none
    /// were live).
    pub fn growth(&self) -> f64 {
        if self.live == 0 {
            0.0
        } else {
            self.new as f64 / self.live as f64
        }
    }
}

/// A guard that refuses a change.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "guard", rename_all = "snake_case")]
pub enum Refusal {
    /// The change takes access from too many live addresses.
    Shrink {
        /// The family.
        #[serde(serialize_with = "family_key")]
        family: Family,
        /// Live addresses lost.
        #[serde(serialize_with = "count_json")]
        lost: u128,
        /// Live addresses.
        #[serde(serialize_with = "count_json")]
        live: u128,
        /// `lost` in percent of `live`.
        percent: f64,
        /// The limit, in percent.
        max_shrink: f64,
    },
    /// The change multiplies the live addresses by too much.
    Grow {
        /// The family.
        #[serde(serialize_with = "family_key")]
        family: Family,
        /// Live addresses.
        #[serde(serialize_with = "count_json")]
        live: u128,
        /// Addresses the new list allows.
        #[serde(serialize_with = "count_json")]
        new: u128,
        /// `new` / `live`.
        factor: f64,
        /// The limit.
        max_grow: f64,
    },
    /// The list allows more addresses than any list may.
    Ceiling {
        /// The family.
        #[serde(serialize_with = "family_key")]
        family: Family,
        /// Addresses the new list allows.
        #[serde(serialize_with = "count_json")]
        new: u128,
        /// The limit, as the length of a prefix holding that many.
        max_allow: u8,
    },
}

impl Refusal {
    /// The option that lets such a change through.
    pub fn overridden_by(&self) -> String {
        match self {
            Refusal::Shrink { .. } => "--force (or a larger --max-shrink)".to_owned(),
            Refusal::Grow { .. } => "--force (or a larger --max-grow)".to_owned(),
            Refusal::Ceiling { family, .. } => {
                format!(
                    "a larger {} (--force does not lift it)",
                    ceiling_option(*family)
                )
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Shrink {
                family,
                lost,
                live,
                percent,
                max_shrink,
            } => write!(
                f,
                "the new list takes access from {} of the {} live {family} addresses \
                 ({percent:.1}%), more than --max-shrink {max_shrink}%",
                count_text(*lost),
                count_text(*live),
                family = family.name(),
            ),
            Refusal::Grow {
                family,
                live,
                new,
                factor,
                max_grow,
            } => write!(
                f,
                "the new list allows {} {family} addresses, {} times the {} live ones, more \
                 than --max-grow {max_grow}",
                count_text(*new),
                factor_text(*factor),
                count_text(*live),
                family = family.name(),
            ),
            Refusal::Ceiling {
                family,
                new,
                max_allow,
            } => write!(
                f,
                "the new list allows {} {family} addresses, more than any list may ({} \
                 {max_allow}: as many as a /{max_allow} holds, {}); no provider publishes a \
                 list that large",
                count_text(*new),
                ceiling_option(*family),
                count_text(family.addresses_in(*max_allow)),
                family = family.name(),
            ),
        }
    }
}

/// The guards' decision on one change.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Judgement {
    /// IPv4, in addresses.
    pub v4: FamilyChange,
    /// IPv6, in addresses.
    pub v6: FamilyChange,
    /// Every guard that refuses the change; empty when it is accepted.
    pub refusals: Vec<Refusal>,
}

impl Judgement {
    /// True when no guard refuses the change.
    pub fn accepted(&self) -> bool {
        self.refusals.is_empty()
    }

    /// The larger percent of live addresses either family loses.
    pub fn shrink_percent(&self) -> f64 {
        self.v4.lost_percent().max(self.v6.lost_percent())
    }

    /// Why the change is refused, one sentence per guard; `None` when it
    /// is accepted.
    pub fn reason(&self) -> Option<String> {
        let reasons: Vec<String> = self.refusals.iter().map(ToString::to_string).collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The whole refusal as the user reads it: every reason, that nothing
    /// changed, and the options that let the change through.
    pub fn refusal_message(&self) -> Option<String> {
        let reason = self.reason()?;
        let mut options: Vec<String> = Vec::new();
        for refusal in &self.refusals {
            let option = refusal.overridden_by();
            if !options.contains(&option) {
                options.push(option);
            }
        }
        Some(format!(
            "{reason}; nothing changed. Check the list, or run again with {}",
            options.join(", or ")
        ))
    }
}

/// An address count in JSON: an integer where it fits 64 bits, else a
/// float (an IPv6 count; JSON readers take numbers as floats anyway).
fn count_json<S: serde::Serializer>(count: &u128, s: S) -> Result<S::Ok, S::Error> {
    match u64::try_from(*count) {
        Ok(n) => s.serialize_u64(n),
        Err(_) => s.serialize_f64(*count as f64),
    }
}

/// Addresses in a block of `2^bits`, saturating at `u128::MAX`.
fn block_size(bits: u32) -> u128 {
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

/// Addresses a prefix holds.
fn size<N: Prefix>(net: &N) -> u128 {
    block_size(u32::from(N::BITS.saturating_sub(net.length())))
}

/// Addresses a merged list allows.
fn addresses<N: Prefix>(list: &[N]) -> u128 {
    list.iter()
        .fold(0u128, |sum, n| sum.saturating_add(size(n)))
}

/// Addresses two merged, sorted lists both allow: one sweep over both.
fn common<N: Prefix>(a: &[N], b: &[N]) -> u128 {
    // Each prefix's first and last address, computed once.
    let bounds = |n: &N| (n.network_key(), n.last_key());
    let (mut a, mut b) = (a.iter().map(bounds), b.iter().map(bounds));
    let (mut x, mut y, mut sum) = (a.next(), b.next(), 0u128);
    while let (Some((x_first, x_last)), Some((y_first, y_last))) = (x, y) {
        let start = x_first.max(y_first);
        let end = x_last.min(y_last);
        if start <= end {
            sum = sum.saturating_add((end - start).saturating_add(1));
        }
        if x_last < y_last {
            x = a.next();
        } else {
            y = b.next();
        }
    }
    sum
}

/// An address count for people: exact up to 2^32, then as a power of two
/// (an IPv6 count has 30 digits).
pub fn count_text(count: u128) -> String {
    if count <= u128::from(u32::MAX) + 1 {
        grouped(count)
    } else {
        let log = (count as f64).log2();
        if (log - log.round()).abs() < 0.05 {
            format!("2^{}", log.round())
        } else {
            format!("2^{log:.1}")
        }
    }
}

/// A number with thousands separated by commas.
fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn factor_text(factor: f64) -> String {
    if factor >= 1000.0 {
        format!("{factor:.0}")
    } else {
        format!("{factor:.1}")
    }
}

/// Addresses `list` allows in each family, for summaries.
pub fn addresses_of(list: &Allowlist) -> (u128, u128) {
    (
        addresses::<Ipv4Net>(&list.v4),
        addresses::<Ipv6Net>(&list.v6),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::of(entries)
    }

    const M365: [&str; 8] = [
        "40.92.0.0/15",
        "40.107.0.0/16",
        "52.100.0.0/15",
        "52.102.0.0/16",
        "52.103.0.0/17",
        "104.47.0.0/17",
        "2a01:111:f400::/48",
        "2a01:111:f403::/48",
    ];

    #[test]
    fn the_shrink_guard_counts_addresses_not_entries() {
        // One entry for another: a shrink of 16 million addresses.
        let j = Guard::DEFAULT.judge(&list(&["10.0.0.0/8"]), &list(&["10.0.0.0/32"]));
        assert_eq!(j.v4.lost, (1 << 24) - 1);
        assert!(matches!(j.refusals[..], [Refusal::Shrink { .. }]), "{j:?}");
        let text = j.refusal_message().unwrap();
        assert_eq!(
            text,
            "the new list takes access from 16,777,215 of the 16,777,216 live IPv4 addresses \
             (100.0%), more than --max-shrink 50%; nothing changed. Check the list, or run \
             again with --force (or a larger --max-shrink)"
        );
        // Re-merged into a wider prefix: nothing lost.
        let live = list(&["10.0.0.0/24", "10.0.2.0/24", "10.0.4.0/24", "10.0.6.0/24"]);
        let wider = list(&["10.0.0.0/22", "10.0.4.0/24", "10.0.6.0/24"]);
        assert_eq!(Guard::DEFAULT.judge(&live, &wider).v4.lost, 0);
        // Three of four /24s gone, one split: 75% of the addresses.
        let j = Guard::DEFAULT.judge(&live, &list(&["10.0.0.0/25", "10.0.0.128/25"]));
        assert_eq!(j.v4.lost_percent(), 75.0);
        // Many small entries lost, one big one kept: a small shrink.
        let live = list(&[
            "10.0.0.0/16",
            "192.0.2.1/32",
            "192.0.2.3/32",
            "192.0.2.5/32",
        ]);
        let j = Guard::DEFAULT.judge(&live, &list(&["10.0.0.0/16"]));
        assert!(j.accepted(), "{j:?}");
    }

    #[test]
    fn the_grow_guard_measures_each_family_in_addresses() {
        let live = list(&M365);
        // Microsoft adds a /15: passes.
        let mut more: Vec<&str> = M365.to_vec();
        more.push("52.96.0.0/15");
        assert!(Guard::DEFAULT.judge(&live, &list(&more)).accepted());
        // A /1 beside it: 4,000 times as many, and over the ceiling.
        more.push("0.0.0.0/1");
        let j = Guard::DEFAULT.judge(&live, &list(&more));
        assert!(
            matches!(
                j.refusals[..],
                [
                    Refusal::Ceiling {
                        family: Family::V4,
                        ..
                    },
                    Refusal::Grow {
                        family: Family::V4,
                        ..
                    }
                ]
            ),
            "{j:?}"
        );
        let text = j.refusal_message().unwrap();
        assert!(text.contains("more than --max-grow 10"), "{text}");
        assert!(text.contains(" IPv4 addresses"), "{text}");
        let json = serde_json::to_value(&j.refusals).unwrap();
        assert_eq!(
            (&json[0]["guard"], &json[0]["family"]),
            (&"ceiling".into(), &"v4".into()),
            "{json}"
        );
        assert!(
            text.ends_with(
                "run again with a larger --max-allow-v4 (--force does not lift it), or --force \
                 (or a larger --max-grow)"
            ),
            "{text}"
        );
        // --force lifts the grow guard, not the ceiling.
        let forced = Guard {
            force: true,
            ..Guard::DEFAULT
        };
        let j = forced.judge(&live, &list(&more));
        assert!(matches!(j.refusals[..], [Refusal::Ceiling { .. }]), "{j:?}");
        // An IPv6 /20 where two /48s were: refused by both.
        let j = Guard::DEFAULT.judge(&live, &list(&["40.92.0.0/15", "2a01:100::/20"]));
        assert!(
            j.refusals.iter().any(|r| matches!(
                r,
                Refusal::Grow {
                    family: Family::V6,
                    ..
                }
            )),
            "{j:?}"
        );
    }

    #[test]
    fn every_address_but_one_is_refused_however_it_is_split() {
        // 32 prefixes: 0.0.0.0/1, 128.0.0.0/2, … 255.255.255.254/32.
        let entries: Vec<String> = (1..=32u32)
            .map(|len| {
                let start = if len == 1 {
                    0
                } else {
                    !(u32::MAX >> (len - 1))
                };
                format!("{}/{len}", std::net::Ipv4Addr::from(start))
            })
            .collect();
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        let all_but_one = list(&refs);
        assert_eq!(addresses_of(&all_but_one).0, (1u128 << 32) - 1);
        // Even on an empty filter, where only the ceiling applies.
        let j = Guard::DEFAULT.judge(&Allowlist::default(), &all_but_one);
        assert!(matches!(j.refusals[..], [Refusal::Ceiling { .. }]), "{j:?}");
    }

    #[test]
    fn a_first_list_meets_only_the_ceiling_and_real_lists_pass_it() {
        let empty = Allowlist::default();
        assert!(Guard::DEFAULT.judge(&empty, &list(&M365)).accepted());
        let google = list(&[
            "74.125.0.0/16",
            "173.194.0.0/16",
            "35.191.0.0/16",
            "209.85.128.0/17",
            "72.14.192.0/18",
            "2001:4860:4000::/36",
            "2404:6800:4000::/36",
            "2607:f8b0:4000::/36",
            "2800:3f0:4000::/36",
            "2a00:1450:4000::/36",
            "2c0f:fb50:4000::/36",
        ]);
        assert!(Guard::DEFAULT.judge(&empty, &google).accepted());
        // A family gaining its first addresses: only the ceiling.
        assert!(
            Guard::DEFAULT
                .judge(&list(&M365[..6]), &list(&M365))
                .accepted()
        );
        // An IPv6 /27 on an empty filter: over a /28.
        let j = Guard::DEFAULT.judge(&empty, &list(&["2001:db8::/27"]));
        let json = serde_json::to_value(&j).expect("IPv6 counts fit JSON");
        assert_eq!(json["v6"]["new"], 2f64.powi(101));
        assert_eq!(json["refusals"][0]["guard"], "ceiling");
        assert_eq!(
            j.reason().unwrap(),
            "the new list allows 2^101 IPv6 addresses, more than any list may (--max-allow-v6 \
             28: as many as a /28 holds, 2^100); no provider publishes a list that large"
        );
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(count_text(0), "0");
        assert_eq!(count_text(16_777_216), "16,777,216");
        assert_eq!(count_text(1 << 32), "4,294,967,296");
        assert_eq!(count_text(1 << 80), "2^80");
        assert_eq!(count_text(6 << 92), "2^94.6");
        assert_eq!(count_text(u128::MAX), "2^128");
        assert_eq!(Family::V6.addresses_in(0), u128::MAX);
        assert_eq!(Family::V4.addresses_in(8), 1 << 24);
    }

    #[test]
    fn the_sweep_counts_what_every_pair_of_prefixes_shares() {
        // Random merged lists of /20 to /28 in one /16, seeded (xorshift).
        let mut state = 0x636f_6d6d_6f6eu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut random_list = |count: usize| -> Vec<Ipv4Net> {
            let nets = (0..count)
                .map(|_| {
                    let len = 20 + (next() % 9) as u8;
                    let addr = 0xc633_0000 | (next() as u32 & 0xffff);
                    Ipv4Net::new(addr.into(), len).expect("a prefix").trunc()
                })
                .collect();
            crate::allowlist::merged(nets)
        };
        for _ in 0..300 {
            let (a, b) = (random_list(12), random_list(12));
            let pairwise: u128 = a
                .iter()
                .flat_map(|x| b.iter().map(move |y| (x, y)))
                .map(|(x, y)| {
                    let start = x.network_key().max(y.network_key());
                    let end = x.last_key().min(y.last_key());
                    if start <= end { end - start + 1 } else { 0 }
                })
                .sum();
            assert_eq!(common(&a, &b), pairwise, "{a:?} {b:?}");
        }
        for len in 0..=128u8 {
            let net = Ipv6Net::new(std::net::Ipv6Addr::UNSPECIFIED, len).expect("a prefix");
            let counted = (net.last_key() - net.network_key()).saturating_add(1);
            assert_eq!(size(&net), counted, "/{len}");
        }
        for len in 0..=32u8 {
            let net = Ipv4Net::new(std::net::Ipv4Addr::UNSPECIFIED, len).expect("a prefix");
            assert_eq!(size(&net), 1u128 << (32 - len), "/{len}");
        }
    }
}
