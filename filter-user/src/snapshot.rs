//! The live filter at one moment, as the reports take it: counters and
//! denied sources stamped with both clocks ([`take_reading`]), and the
//! switches and list size metrics show ([`filter_state`]). `stats` and
//! `run` read through here.

use std::time::SystemTime;

use filter_common::{FLAG_DRY_RUN, FLAG_OPEN};

use crate::{
    filter::{AllowMaps, ConfigMap, Readout},
    report::{FilterState, Reading},
};

/// Reads counters and denied sources, stamped with both clocks.
pub fn take_reading(readout: &Readout) -> anyhow::Result<Reading> {
    Ok(Reading {
        counters: readout.counters()?,
        denied: readout.denied_sources()?,
        monotonic_ns: monotonic_coarse_ns(),
        wall: SystemTime::now(),
    })
}

/// The clock the kernel stamps denied sources with
/// (`bpf_ktime_get_coarse_ns`).
fn monotonic_coarse_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The open/dry-run switches and allowlist size, for metrics.
pub fn filter_state(config: &ConfigMap, allow: &AllowMaps) -> anyhow::Result<FilterState> {
    let flags = config.read()?.flags;
    let allowlist = allow.read()?;
    Ok(FilterState {
        open: flags & FLAG_OPEN != 0,
        dry_run: flags & FLAG_DRY_RUN != 0,
        prefixes_v4: allowlist.v4.len(),
        prefixes_v6: allowlist.v6.len(),
    })
}
