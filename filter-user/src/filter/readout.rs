//! What the program counted: outcome counters per family and the table of
//! denied sources, both per CPU and summed here.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
};

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray};
use filter_common::{
    COUNTER_ROWS, COUNTERS_PER_ROW, DENIED_SLOTS, DeniedSlot, Family, NO_IP_HEADER_COUNTER,
    OTHER_ROW, Outcome, SourceKey, map_names,
};
use serde::{Serialize, Serializer, ser::SerializeMap as _};

use super::Installed;

/// Counter totals summed over CPUs, per family and outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// IPv4 outcomes.
    pub v4: OutcomeCounts,
    /// IPv6 outcomes.
    pub v6: OutcomeCounts,
    /// Frames whose IP header lay behind more VLAN tags than the program
    /// walks (docs/DESIGN.md V2); dropped unless dry run or open was on.
    pub no_ip_header: u64,
}

impl Counters {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counters) {
        for outcome in Outcome::ALL {
            self.v4
                .set(outcome, self.v4.get(outcome) + other.v4.get(outcome));
            self.v6
                .set(outcome, self.v6.get(outcome) + other.v6.get(outcome));
        }
        self.no_ip_header += other.no_ip_header;
    }

    /// Whether every count is zero.
    pub fn is_zero(&self) -> bool {
        self.v4.examined() == 0 && self.v6.examined() == 0 && self.no_ip_header == 0
    }

    /// Frames dropped, both families and the hidden ones (V2) included
    /// when they were dropped.
    pub fn dropped(&self) -> u64 {
        self.v4.get(Outcome::Dropped)
            + self.v4.get(Outcome::DroppedUnparsed)
            + self.v6.get(Outcome::Dropped)
            + self.v6.get(Outcome::DroppedUnparsed)
    }
}

/// Where a row of counters came from (see [`filter_common::COUNTER_ROWS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CounterRow {
    /// The interface with this ifindex (in the namespace that attached it).
    Interface(u32),
    /// Every interface whose ifindex is too large for a row of its own.
    Other,
}

impl CounterRow {
    fn of(row: u32) -> Self {
        if row == OTHER_ROW {
            CounterRow::Other
        } else {
            CounterRow::Interface(row)
        }
    }
}

/// The counters of one row that counted something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCounters {
    /// Whose counters these are.
    pub row: CounterRow,
    /// The counts, summed over CPUs.
    pub counters: Counters,
}

/// How many examined SYNs had each outcome, indexed like [`Outcome::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeCounts([u64; Outcome::ALL.len()]);

impl OutcomeCounts {
    /// Counts with the given outcomes set, the rest zero.
    pub fn with(counts: &[(Outcome, u64)]) -> Self {
        let mut c = Self::default();
        for (outcome, count) in counts {
            c.set(*outcome, *count);
        }
        c
    }

    /// SYNs with `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.0[outcome as usize]
    }

    /// Sets the count of `outcome`.
    pub fn set(&mut self, outcome: Outcome, value: u64) {
        self.0[outcome as usize] = value;
    }

    /// Every outcome with its count, in [`Outcome::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        Outcome::ALL.into_iter().map(|o| (o, self.get(o)))
    }

    /// Every examined SYN.
    pub fn examined(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// As an object keyed by each outcome's label.
impl Serialize for OutcomeCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Outcome::ALL.len()))?;
        for (outcome, count) in self.iter() {
            map.serialize_entry(outcome.label(), &count)?;
        }
        map.end()
    }
}

/// The sum of `rows`.
pub fn total(rows: &[RowCounters]) -> Counters {
    let mut sum = Counters::default();
    for r in rows {
        sum.add(&r.counters);
    }
    sum
}

/// Sets the counter at index `i` of a row (see [`filter_common::counter_index`]).
fn set_counter(counters: &mut Counters, i: u32, value: u64) {
    let per_family = Outcome::ALL.len() as u32;
    if i == NO_IP_HEADER_COUNTER {
        counters.no_ip_header = value;
        return;
    }
    let family = if i < per_family {
        Family::V4
    } else {
        Family::V6
    };
    let outcome = Outcome::ALL[(i % per_family) as usize];
    match family {
        Family::V4 => counters.v4.set(outcome, value),
        Family::V6 => counters.v6.set(outcome, value),
    }
}

/// A source that sent denied SYNs, summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeniedEntry {
    /// The source address.
    pub source: IpAddr,
    /// Denied SYNs counted.
    pub count: u64,
    /// `CLOCK_MONOTONIC` nanoseconds of the last one.
    pub last_seen_ns: u64,
    /// 0 when `count` is exact; else the longest sampling period (one in N
    /// recorded) it was estimated with, while denied SYNs came fast.
    pub sampled: u64,
}

/// The COUNTERS and DENIED maps.
pub struct Readout {
    counters: PerCpuArray<MapData, u64>,
    denied: PerCpuArray<MapData, DeniedSlot>,
}

impl Readout {
    /// Opens the COUNTERS and DENIED pins.
    pub fn open(installed: &Installed) -> anyhow::Result<Self> {
        Ok(Self {
            counters: installed.map(map_names::COUNTERS)?,
            denied: installed.map(map_names::DENIED)?,
        })
    }

    /// Counter totals, summed over CPUs and interfaces.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        Ok(total(&self.counters_by_row()?))
    }

    /// The counters of every row that counted something, summed over
    /// CPUs, in row order (the shared row of large ifindexes first).
    pub fn counters_by_row(&self) -> anyhow::Result<Vec<RowCounters>> {
        let mut rows = Vec::new();
        // One lookup per counter, row after row: a row that holds nothing
        // yet still costs its lookups, as the program may count in it next.
        let mut values = self.counters.iter();
        for row in 0..COUNTER_ROWS {
            let mut counters = Counters::default();
            for i in 0..COUNTERS_PER_ROW {
                let value: u64 = values
                    .next()
                    .with_context(|| {
                        format!(
                            "COUNTERS holds fewer than {} entries",
                            row * COUNTERS_PER_ROW + i + 1
                        )
                    })?
                    .context("reading COUNTERS")?
                    .iter()
                    .sum();
                set_counter(&mut counters, i, value);
            }
            if !counters.is_zero() {
                rows.push(RowCounters {
                    row: CounterRow::of(row),
                    counters,
                });
            }
        }
        Ok(rows)
    }

    /// Every source in the denied-source table, summed over CPUs.
    pub fn denied_sources(&self) -> anyhow::Result<Vec<DeniedEntry>> {
        let mut by_source: HashMap<SourceKey, (u64, u64, u64)> = HashMap::new();
        for slot in 0..DENIED_SLOTS {
            let per_cpu = self.denied.get(&slot, 0).context("reading DENIED")?;
            for entry in per_cpu.iter().filter(|e| e.count > 0) {
                let seen = by_source.entry(entry.source).or_default();
                seen.0 += entry.count;
                seen.1 = seen.1.max(entry.last_seen_ns);
                seen.2 = seen.2.max(entry.sampled);
            }
        }
        Ok(by_source
            .into_iter()
            .map(|(key, (count, last_seen_ns, sampled))| {
                let ip = Ipv6Addr::from(key);
                let source = match ip.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(ip),
                };
                DeniedEntry {
                    source,
                    count,
                    last_seen_ns,
                    sampled,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use filter_common::{COUNTERS_PER_ROW, counter_index, no_ip_header_index};

    use super::*;

    #[test]
    fn each_index_of_a_row_lands_on_its_own_counter() {
        for family in [Family::V4, Family::V6] {
            for (n, outcome) in Outcome::ALL.into_iter().enumerate() {
                let mut c = Counters::default();
                let i = counter_index(3, family, outcome) - 3 * COUNTERS_PER_ROW;
                set_counter(&mut c, i, 7 + n as u64);
                let counts = if family == Family::V4 { c.v4 } else { c.v6 };
                assert_eq!(counts.get(outcome), 7 + n as u64);
                assert_eq!(counts.examined(), 7 + n as u64);
            }
        }
        let mut c = Counters::default();
        set_counter(&mut c, no_ip_header_index(5) - 5 * COUNTERS_PER_ROW, 9);
        assert_eq!(c.no_ip_header, 9);
        assert_eq!(c.v4.examined() + c.v6.examined(), 0);
    }

    #[test]
    fn the_total_sums_every_row() {
        let row = |n: u64| RowCounters {
            row: CounterRow::Interface(2),
            counters: Counters {
                v4: OutcomeCounts::with(&[(Outcome::Dropped, n)]),
                v6: OutcomeCounts::with(&[(Outcome::Allowed, 1)]),
                no_ip_header: n,
            },
        };
        let t = total(&[row(2), row(5)]);
        assert_eq!(t.v4.get(Outcome::Dropped), 7);
        assert_eq!(t.v6.get(Outcome::Allowed), 2);
        assert_eq!(t.no_ip_header, 7);
        assert_eq!(t.dropped(), 7);
    }
}
