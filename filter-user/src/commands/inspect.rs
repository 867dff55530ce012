//! `stats`, `status` and `lookup`: read the live filter, change nothing.

use std::time::SystemTime;

use filter_common::{FLAG_DRY_RUN, FLAG_OPEN};
use serde_json::json;

use super::{LookupRequest, StatsRequest, attach::describe_settings};
use crate::{
    filter::Filter,
    links,
    pins::PinDir,
    report::{self, FilterState, Reading},
    sys,
};

/// How `stats` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatsFormat {
    /// A table for people.
    #[default]
    Text,
    /// JSON.
    Json,
    /// Prometheus text exposition.
    Prometheus,
}

/// Reads counters and denied sources, stamped with both clocks.
pub fn take_reading(filter: &Filter) -> anyhow::Result<Reading> {
    Ok(Reading {
        counters: filter.counters()?,
        denied: filter.denied_sources()?,
        monotonic_ns: monotonic_coarse_ns(),
        wall: SystemTime::now(),
    })
}

/// The clock the kernel stamps denied sources with
/// (`bpf_ktime_get_coarse_ns`).
fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The open/dry-run switches and allowlist size, for metrics.
pub fn filter_state(filter: &Filter) -> anyhow::Result<FilterState> {
    let flags = filter.config()?.flags;
    let allowlist = filter.allowlist()?;
    Ok(FilterState {
        open: flags & FLAG_OPEN != 0,
        dry_run: flags & FLAG_DRY_RUN != 0,
        prefixes_v4: allowlist.v4.len(),
        prefixes_v6: allowlist.v6.len(),
    })
}

/// `mxgate stats`.
pub fn stats(pins: &PinDir, request: &StatsRequest) -> anyhow::Result<()> {
    let filter = Filter::open(pins)?;
    let reading = take_reading(&filter)?;
    match request.format {
        StatsFormat::Json => {
            let c = &reading.counters;
            let value = json!({
                "v4": { "examined": c.v4.examined(), "counts": c.v4 },
                "v6": { "examined": c.v6.examined(), "counts": c.v6 },
                "top_denied": reading.top_sources(None, request.top),
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        StatsFormat::Prometheus => {
            let state = filter_state(&filter)?;
            print!("{}", report::prometheus(&reading, &state, request.top));
        }
        StatsFormat::Text => print!("{}", report::stats_text(&reading, request.top)),
    }
    Ok(())
}

/// `mxgate status`.
pub fn status(pins: &PinDir, json: bool) -> anyhow::Result<()> {
    let filter = Filter::open(pins)?;
    let info = filter.program_info()?;
    let settings = filter.settings()?;
    let open = filter.config()?.flags & FLAG_OPEN != 0;
    let allowlist = filter.allowlist()?;
    let links = links::links(pins)?;
    let instructions = info.size_translated().map(|bytes| bytes / 8);
    if json {
        let value = json!({
            "pin_dir": pins.root(),
            "program": {
                "id": info.id(),
                "instructions": instructions,
                "verified_instructions": info.verified_instruction_count(),
                "loaded_at": info.loaded_at().map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            },
            "open": open,
            "dry_run": settings.dry_run,
            "ports": settings.ports,
            "protect_dst": settings.protect_dst,
            "allowlist": { "v4": allowlist.v4.len(), "v6": allowlist.v6.len() },
            "interfaces": links.iter().map(|l| json!({
                "iface": l.iface,
                "ifindex": l.ifindex,
                "current_name": l.ifindex.and_then(sys::ifname),
                "link_id": l.link_id,
                "program_id": l.program_id,
                "mode": l.mode,
                "attached_at": l.attached_at,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "filter installed in {} (program {}, {} instructions, {} processed by the verifier)",
        pins.root().display(),
        info.id(),
        instructions.map_or("?".into(), |n| n.to_string()),
        info.verified_instruction_count()
            .map_or("?".into(), |n| n.to_string()),
    );
    println!("{}", describe_settings(&settings, open));
    println!(
        "allowlist: {} IPv4 and {} IPv6 prefixes",
        allowlist.v4.len(),
        allowlist.v6.len()
    );
    if links.is_empty() {
        println!("attached to no interface");
    }
    for link in &links {
        match link.ifindex {
            Some(index) => println!(
                "attached to {} ({} mode, ifindex {index}, link {}, program {}, since {})",
                link.iface,
                link.mode.unwrap_or("unknown"),
                link.link_id,
                link.program_id,
                link.attached_at.as_deref().unwrap_or("?")
            ),
            None => println!(
                "was attached to {}, which no longer exists (link {}); `mxgate detach --iface {}` removes it",
                link.iface, link.link_id, link.iface
            ),
        }
    }
    Ok(())
}

/// `mxgate lookup`.
pub fn lookup(pins: &PinDir, request: &LookupRequest) -> anyhow::Result<()> {
    let filter = Filter::open(pins)?;
    let found = filter.lookup(request.addr)?;
    let open = filter.config()?.flags & FLAG_OPEN != 0;
    if request.json {
        let value = json!({
            "address": request.addr,
            "allowed": found.is_some(),
            "prefix": found.map(|p| p.to_string()),
            "open": open,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    match found {
        Some(prefix) => println!("{}: allowed by {prefix}", request.addr),
        None if open => println!(
            "{}: not in the allowlist (its SYNs pass only because the filter is open)",
            request.addr
        ),
        None => println!(
            "{}: not in the allowlist; its SYNs to protected ports are dropped",
            request.addr
        ),
    }
    Ok(())
}
