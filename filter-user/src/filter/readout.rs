//! What the program counted: outcome counters per family and the table of
//! denied sources, both per CPU and summed here.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
};

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray};
use filter_common::{
    DENIED_SLOTS, DeniedSlot, Family, NO_IP_HEADER_COUNTER, Outcome, SourceKey, counter_index,
    map_names,
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

    /// Counter totals, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let mut totals = Counters::default();
        for (family, counts) in [(Family::V4, &mut totals.v4), (Family::V6, &mut totals.v6)] {
            for outcome in Outcome::ALL {
                let per_cpu = self
                    .counters
                    .get(&counter_index(family, outcome), 0)
                    .context("reading COUNTERS")?;
                counts.set(outcome, per_cpu.iter().sum());
            }
        }
        totals.no_ip_header = self
            .counters
            .get(&NO_IP_HEADER_COUNTER, 0)
            .context("reading COUNTERS")?
            .iter()
            .sum();
        Ok(totals)
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
