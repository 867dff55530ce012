//! The live filter at one moment, as the reports take it: counters and
//! denied sources stamped with both clocks ([`take_reading`]), the
//! switches and list size ([`filter_state`]), each interface's link
//! ([`interface_states`]), and all the metrics show together
//! ([`metrics_snapshot`]). `stats`, `top` and `run` read through here.

use std::time::SystemTime;

use filter_common::{FLAG_DRY_RUN, FLAG_OPEN};

use crate::{
    filter::{AllowMaps, ConfigMap, Installed, Readout},
    guard::addresses_of,
    links,
    metrics::{InterfaceState, Snapshot},
    netlink::AttachedMode,
    refresh_record,
    report::{self, FilterState, Reading},
};

/// Reads counters and denied sources, stamped with both clocks.
pub fn take_reading(readout: &Readout) -> anyhow::Result<Reading> {
    let rows = readout.counters_by_row()?;
    Ok(Reading {
        counters: crate::filter::total_counters(&rows),
        interfaces: report::InterfaceCounters::named(&rows),
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
    let (addresses_v4, addresses_v6) = addresses_of(&allowlist);
    Ok(FilterState {
        open: flags & FLAG_OPEN != 0,
        dry_run: flags & FLAG_DRY_RUN != 0,
        prefixes_v4: allowlist.v4.len(),
        prefixes_v6: allowlist.v6.len(),
        addresses_v4,
        addresses_v6,
    })
}

/// Each pinned link's interface: its name now, whether the link attaches
/// it and in which mode.
pub fn interface_states(installed: &Installed) -> Vec<InterfaceState> {
    // A link that cannot be read is left out: `status` names it.
    links::links(installed.pins(), installed.entries())
        .unwrap_or_default()
        .into_iter()
        .map(|l| InterfaceState {
            interface: l.current_name.clone().unwrap_or_else(|| l.iface.clone()),
            attached: l.ifindex.is_some(),
            mode: l.mode.map(AttachedMode::name),
            native_supported: l.ifindex.and_then(crate::xdp_features::native_supported),
        })
        .collect()
}

/// Everything the metrics show, read now. `state` and `in_step` are read
/// by the caller, which may keep them between changes of the list: they
/// cost a walk of the tries. Attached interfaces with nothing counted yet
/// get zero counters, so a rate over them starts at once.
pub fn metrics_snapshot(
    installed: &Installed,
    readout: &Readout,
    state: FilterState,
    in_step: Option<bool>,
    cache_dir: Option<&std::path::Path>,
    top: usize,
) -> anyhow::Result<Snapshot> {
    let mut reading = take_reading(readout)?;
    let interfaces = interface_states(installed);
    for i in interfaces.iter().filter(|i| i.attached) {
        let ifindex = crate::interfaces::ifindex(&i.interface);
        // An interface past the counters' rows is counted in the shared
        // row, never under its own name.
        let (interface, ifindex) = match ifindex {
            Some(index) if index >= filter_common::COUNTER_ROWS => {
                (report::OTHER_INTERFACES.to_owned(), None)
            }
            _ => (i.interface.clone(), ifindex),
        };
        if !reading.interfaces.iter().any(|c| c.interface == interface) {
            reading.interfaces.push(report::InterfaceCounters {
                interface,
                ifindex,
                counters: Default::default(),
            });
        }
    }
    Ok(Snapshot {
        reading,
        state,
        interfaces,
        in_step,
        record: cache_dir.and_then(refresh_record::load),
        top,
    })
}
