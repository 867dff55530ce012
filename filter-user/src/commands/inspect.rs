//! `stats`, `status` and `lookup`: read the live filter, change nothing.
//! Each opens only the maps it needs and names any damage it finds.

use std::net::IpAddr;

use filter_common::FLAG_OPEN;
use serde_json::json;

use super::{LookupRequest, StatsRequest};
use crate::{
    describe::{describe_settings, ports_text},
    fast_path,
    filter::{
        AllowMaps, ConfigMap, Installed, Lookup, Readout, SettingsMaps,
        memory::{human, map_memory},
    },
    guard::{addresses_of, count_text},
    links, metrics,
    netlink::AttachedMode,
    pins::PinDir,
    report,
    snapshot::{filter_state, metrics_snapshot, take_reading},
    text::{human_time, printable},
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

/// The filter installed under `pins`, its damage named on stderr.
fn find(pins: &PinDir) -> anyhow::Result<Installed> {
    let installed = Installed::require(pins)?;
    installed.warn_damage();
    Ok(installed)
}

/// `mxgate stats`.
pub fn stats(pins: &PinDir, request: &StatsRequest) -> anyhow::Result<()> {
    let installed = find(pins)?;
    let readout = Readout::open(&installed)?;
    if request.format == StatsFormat::Prometheus {
        let config = ConfigMap::open(&installed)?;
        let allow = AllowMaps::open(&installed)?;
        let state = filter_state(&config, &allow)?;
        let in_step = allow.consistency().ok().map(|c| c.in_step());
        // Where `refresh` and `run` keep the record unless told otherwise.
        let cache_dir = std::path::Path::new(crate::sources::DEFAULT_CACHE_DIR);
        let snapshot = metrics_snapshot(
            &installed,
            &readout,
            state,
            in_step,
            Some(cache_dir),
            request.top,
        )?;
        print!("{}", metrics::render(&snapshot));
        return Ok(());
    }
    let reading = take_reading(&readout)?;
    match request.format {
        StatsFormat::Json => {
            let c = &reading.counters;
            let value = json!({
                "v4": { "examined": c.v4.examined(), "counts": c.v4 },
                "v6": { "examined": c.v6.examined(), "counts": c.v6 },
                "no_ip_header": c.no_ip_header,
                "interfaces": reading.interfaces.iter().map(|i| json!({
                    "interface": i.interface,
                    "ifindex": i.ifindex,
                    "v4": { "examined": i.counters.v4.examined(), "counts": i.counters.v4 },
                    "v6": { "examined": i.counters.v6.examined(), "counts": i.counters.v6 },
                    "no_ip_header": i.counters.no_ip_header,
                })).collect::<Vec<_>>(),
                "top_denied": reading.top_sources(None, request.top),
                "sampled": reading.denied.iter().any(|d| d.sampled > 1),
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        // Printed above.
        StatsFormat::Prometheus => {}
        StatsFormat::Text => print!("{}", report::stats_text(&reading, request.top)),
    }
    Ok(())
}

/// `mxgate status`: what is installed and attached where, and what is
/// missing with its repair. Works on a damaged filter as far as it can.
/// Names from outside (interfaces, pins) are printed with control
/// characters escaped; times say their zone.
pub fn status(pins: &PinDir, json: bool) -> anyhow::Result<()> {
    let installed = Installed::require(pins)?;
    let damage = installed.damage();
    let info = installed.program_info()?;
    let loaded_at = installed.loaded_at();
    let config = ConfigMap::open(&installed);
    let settings = config
        .as_ref()
        .ok()
        .and_then(|c| SettingsMaps::open(&installed).ok()?.read(c).ok());
    let open = config.as_ref().ok().and_then(|c| c.flag(FLAG_OPEN).ok());
    let allow = AllowMaps::open(&installed).ok();
    let allowlist = allow.as_ref().and_then(|a| a.read().ok());
    // None when it cannot be checked (a damaged filter).
    let consistency = allow.as_ref().and_then(|a| a.consistency().ok());
    let memory = map_memory(pins);
    let total: u64 = memory.iter().map(|m| m.bytes).sum();
    let links = links::links(pins, installed.entries())?;
    let instructions = info
        .as_ref()
        .and_then(|i| i.size_translated())
        .map(|bytes| bytes / 8);
    if json {
        let value = json!({
            "pin_dir": pins.root(),
            "program": info.as_ref().map(|info| json!({
                "id": info.id(),
                "instructions": instructions,
                "verified_instructions": info.verified_instruction_count(),
                "loaded_at": loaded_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            })),
            "open": open,
            "dry_run": settings.as_ref().map(|s| s.dry_run),
            "ports": settings.as_ref().map(|s| &s.ports),
            "protect_dst": settings.as_ref().map(|s| &s.protect_dst),
            "allowlist": allowlist.as_ref().map(|a| json!({ "v4": a.v4.len(), "v6": a.v6.len() })),
            "maps": consistency.as_ref().map(|c| json!({
                "in_step": c.in_step(),
                "differences": c.differences,
                "repair": (!c.in_step()).then_some(REPAIR),
            })),
            "memory": {
                "total_bytes": total,
                "maps": memory.iter().map(|m| (m.name.to_owned(), json!(m.bytes))).collect::<serde_json::Map<_, _>>(),
            },
            "interfaces": links.iter().map(|l| json!({
                "iface": l.iface,
                "ifindex": l.ifindex,
                "current_name": l.current_name,
                "link_id": l.link_id,
                "program_id": l.program_id,
                "mode": l.mode,
                "attached_at": l.attached_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                "state": link_state(l),
            })).collect::<Vec<_>>(),
            "damage": damage,
            "foreign_pins": installed.entries().impostors.iter().map(|i| json!({
                "pin": i.name,
                "holds": i.holds,
            })).collect::<Vec<_>>(),
            "foreign_entries": installed.entries().foreign,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let dir = printable(&pins.root().display().to_string());
    match &info {
        Some(info) => println!(
            "filter installed in {dir} (program {}, {} instructions, {} processed by the \
             verifier, loaded {})",
            info.id(),
            instructions.map_or("?".into(), |n| n.to_string()),
            info.verified_instruction_count()
                .map_or("?".into(), |n| n.to_string()),
            loaded_at.map_or_else(|| "at an unknown time".to_owned(), human_time),
        ),
        None => println!("filter in {dir} has no live program: it protects nothing"),
    }
    if let (Some(settings), Some(open)) = (&settings, open) {
        println!("{}", describe_settings(settings, open));
    }
    if let Some(allowlist) = &allowlist {
        let (v4, v6) = addresses_of(allowlist);
        println!(
            "allowlist: {} IPv4 and {} IPv6 prefixes ({} IPv4 and {} IPv6 addresses)",
            allowlist.v4.len(),
            allowlist.v6.len(),
            count_text(v4),
            count_text(v6)
        );
    }
    match &consistency {
        Some(c) if c.in_step() => {
            println!("maps: in step with the list applied last (tries, fast path and their record)")
        }
        Some(c) => {
            println!("maps: OUT OF STEP with the list applied last:");
            for d in &c.differences {
                println!("  - {}", printable(d));
            }
            println!("  {REPAIR}");
        }
        None => {}
    }
    let maps: Vec<String> = memory
        .iter()
        .map(|m| format!("{} {}", m.name, human(m.bytes)))
        .collect();
    println!("map memory: {} ({})", human(total), maps.join(", "));
    if !links.iter().any(|l| l.ifindex.is_some()) {
        println!("attached to no interface: the filter protects nothing");
    }
    for link in &links {
        println!("{}", describe_link(link));
    }
    for d in &damage {
        println!("DAMAGED: {}", printable(d));
    }
    if !installed.entries().foreign.is_empty() {
        let names: Vec<String> = installed
            .entries()
            .foreign
            .iter()
            .map(|n| printable(n))
            .collect();
        println!(
            "also in {dir}: {} (not mxgate's; left alone)",
            names.join(", ")
        );
    }
    Ok(())
}

/// A link's state in one word, for JSON.
fn link_state(link: &links::LinkStatus) -> &'static str {
    match (link.ifindex, &link.current_name) {
        (Some(_), Some(now)) if *now != link.iface => "renamed",
        (Some(_), _) => "attached",
        (None, _) if link.detached_from_live_interface => "detached",
        (None, _) => "interface_gone",
    }
}

/// One line of `status` for a link.
fn describe_link(link: &links::LinkStatus) -> String {
    let pinned = printable(&link.iface);
    let since = link.attached_at.map_or_else(|| "?".to_owned(), human_time);
    match link.ifindex {
        Some(index) => {
            let name = link.current_name.as_deref().unwrap_or(&link.iface);
            let was = if name == link.iface {
                String::new()
            } else {
                format!("renamed from {pinned}, its name when attached; ")
            };
            format!(
                "attached to {} ({was}{} mode, ifindex {index}, link {}, program {}, since {since})",
                printable(name),
                link.mode.unwrap_or(AttachedMode::Unknown),
                link.link_id,
                link.program_id,
            )
        }
        None if link.detached_from_live_interface => format!(
            "DETACHED from {pinned}: its link {} was detached from outside (`bpftool link \
             detach`?) and {pinned} is unprotected; `mxgate attach --iface {pinned} …` restores it",
            link.link_id
        ),
        None => format!(
            "was attached to {pinned}, which no longer exists (link {}); `mxgate detach --iface \
             {pinned}` removes the dead link",
            link.link_id
        ),
    }
}

/// What repairs maps out of step, as `status` says it.
const REPAIR: &str = "`mxgate refresh --force` and `mxgate attach` read every map back and repair \
     this; so does the next `mxgate refresh` when the tries' entry counts or the fast path differ \
     from their record, or its sources' bytes changed (with the same bytes it compares counts and \
     checksums with the record, not every key)";

/// What the filter does with a SYN from the looked-up address.
fn verdict_text(allowed: bool, open: bool, dry_run: bool) -> &'static str {
    match (allowed, open, dry_run) {
        (true, _, _) => "pass",
        (false, true, _) => "pass_open",
        (false, false, true) => "would_drop",
        (false, false, false) => "drop",
    }
}

/// `mxgate lookup`: is an address allowed, by which prefix, and what the
/// filter does with its SYNs given the open and dry-run switches and the
/// protected ports and destinations.
pub fn lookup(pins: &PinDir, request: &LookupRequest) -> anyhow::Result<()> {
    let installed = find(pins)?;
    let found = AllowMaps::open(&installed)?.lookup(request.addr)?;
    let config = ConfigMap::open(&installed)?;
    let settings = SettingsMaps::open(&installed)?.read(&config)?;
    let open = config.flag(FLAG_OPEN)?;
    let verdict = verdict_text(found.allowed(), open, settings.dry_run);
    let how = FastPathText::of(request.addr, &found);
    if request.json {
        let value = json!({
            "address": request.addr,
            "allowed": found.allowed(),
            "prefix": found.prefix.map(|p| p.to_string()),
            "open": open,
            "dry_run": settings.dry_run,
            "verdict": verdict,
            "ports": settings.ports,
            "protect_dst": settings.protect_dst,
            "fast_path": how.json(&found),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut to = format!("to {}", ports_text(&settings.ports));
    if !settings.protect_dst.is_empty() {
        let dsts: Vec<String> = settings
            .protect_dst
            .iter()
            .map(ToString::to_string)
            .collect();
        to = format!("{to} on {}", dsts.join(", "));
    }
    let addr = request.addr;
    match (found.allowed(), found.prefix, verdict) {
        (false, _, _) if settings.ports.is_empty() => println!(
            "{addr}: not in the allowlist, but no TCP port is protected: its SYNs pass unexamined"
        ),
        (true, Some(prefix), _) => println!("{addr}: allowed by {prefix}"),
        (true, None, _) => {
            println!("{addr}: allowed by the fast path, though no prefix of the allowlist holds it")
        }
        (false, _, "pass_open") => println!(
            "{addr}: not in the allowlist; its SYNs {to} pass only because the filter is open"
        ),
        (false, _, "would_drop") => println!(
            "{addr}: not in the allowlist; dry run: its SYNs {to} are counted as would-drop \
             and pass"
        ),
        (false, _, _) => println!("{addr}: not in the allowlist; its SYNs {to} are dropped"),
    }
    println!("{}", how.text(&found));
    if !found.consistent() {
        println!(
            "warning: the fast path and the trie disagree about {addr}: a refresh is under way \
             or was interrupted; the next `mxgate refresh` puts them back in step"
        );
    }
    Ok(())
}

/// The blocks around an address the program reads, each with what it says.
struct FastPathText {
    levels: Vec<(String, &'static str)>,
}

impl FastPathText {
    fn of(addr: IpAddr, found: &Lookup) -> Self {
        let path = &found.path;
        let mut levels = vec![(
            fast_path::summary_net(0, addr).to_string(),
            path.region.label(),
        )];
        if let Some(state) = path.area {
            levels.push((fast_path::summary_net(1, addr).to_string(), state.label()));
        }
        if let Some(state) = path.block {
            levels.push((fast_path::block_of(addr).to_string(), state.label()));
        }
        if let (IpAddr::V6(a), Some(state)) = (addr, path.mid) {
            levels.push((fast_path::mid_of(a).to_string(), state.label()));
        }
        if let (IpAddr::V6(a), Some(state)) = (addr, path.subblock) {
            levels.push((fast_path::subblock_of(a).to_string(), state.label()));
        }
        Self { levels }
    }

    fn text(&self, found: &Lookup) -> String {
        let steps: Vec<String> = self
            .levels
            .iter()
            .map(|(net, state)| format!("{net} is {state}"))
            .collect();
        let end = if found.path.answer().is_some() {
            "which decides without the trie"
        } else {
            "so the trie decides"
        };
        format!("fast path: {}, {end}", steps.join("; "))
    }

    fn json(&self, found: &Lookup) -> serde_json::Value {
        json!({
            "blocks": self.levels.iter().map(|(net, state)| json!({
                "prefix": net,
                "state": state,
            })).collect::<Vec<_>>(),
            "decides": found.path.answer().is_some(),
            "in_step": found.consistent(),
        })
    }
}
