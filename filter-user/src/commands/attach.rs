//! `attach`: install the filter (once), make its allowlist and settings
//! match the command line, and attach it to each interface.

use filter_common::FLAG_OPEN;

use super::{
    AttachRequest, read_nonempty_list,
    refresh::{RefreshOutcome, apply_list},
};
use crate::{
    diff::Guard,
    error::InvalidInput,
    filter::{Filter, KernelLog, Settings},
    links::{self, AttachMode, Attachment},
    pins::PinDir,
    ranges::ParsedList,
    sys,
};

/// Everything about an attach but the interfaces and the list.
#[derive(Clone, Debug, PartialEq)]
pub struct AttachOptions {
    /// Ports, protected destinations, dry run.
    pub settings: Settings,
    /// How to attach to a new interface.
    pub mode: AttachMode,
    /// The kernel log level, fixed when the program is first loaded.
    pub log: KernelLog,
    /// The shrink guard for the list change.
    pub guard: Guard,
}

/// What an attach did.
#[derive(Clone, Debug)]
pub struct AttachReport {
    /// True when this call loaded the program (it was not installed).
    pub installed: bool,
    /// The program's id.
    pub program_id: u32,
    /// The allowlist change.
    pub list: RefreshOutcome,
    /// True when ports, destinations or dry-run changed.
    pub settings_changed: bool,
    /// The settings now live.
    pub settings: Settings,
    /// True when the open switch is on (attach leaves it as it is).
    pub open: bool,
    /// Each interface (`new` when this call attached it).
    pub interfaces: Vec<Attachment>,
}

/// Installs the filter if needed, applies `list` and `options`, and
/// attaches to `ifaces`. Attaching where already attached changes nothing.
/// On failure, what this call created is removed again.
pub fn attach_filter(
    pins: &PinDir,
    ifaces: &[String],
    list: &ParsedList,
    options: &AttachOptions,
) -> anyhow::Result<AttachReport> {
    for iface in ifaces {
        if sys::ifindex(iface).is_none() {
            return Err(InvalidInput(format!("there is no interface named {iface:?}")).into());
        }
    }
    pins.prepare()?;
    let _lock = pins.lock()?;
    let installed = !pins.is_installed();
    if installed && let Err(e) = Filter::install(pins, options.log) {
        let _ = pins.remove_all();
        return Err(e);
    }
    let mut attached_now = Vec::new();
    let result = attach_installed(pins, ifaces, list, options, &mut attached_now);
    match result {
        Ok(report) => Ok(AttachReport {
            installed,
            ..report
        }),
        Err(e) => {
            if installed {
                let _ = pins.remove_all();
            } else {
                for iface in &attached_now {
                    let _ = links::detach(pins, iface);
                }
            }
            Err(e)
        }
    }
}

/// Does the attach on an installed filter; records each interface it
/// attaches in `attached_now` so a failure can undo them.
fn attach_installed(
    pins: &PinDir,
    ifaces: &[String],
    list: &ParsedList,
    options: &AttachOptions,
    attached_now: &mut Vec<String>,
) -> anyhow::Result<AttachReport> {
    let mut filter = Filter::open(pins)?;
    // The allowlist is filled before the program is attached anywhere new,
    // so no allowed sender ever meets an empty list.
    let outcome = apply_list(&mut filter, &list.allowlist, options.guard, false)?;
    let settings_changed = filter.apply_settings(&options.settings)?;
    let mut interfaces = Vec::new();
    for iface in ifaces {
        let attachment = links::attach(&mut filter, iface, options.mode)?;
        if attachment.new {
            attached_now.push(iface.clone());
        }
        interfaces.push(attachment);
    }
    Ok(AttachReport {
        installed: false,
        program_id: filter.program_info()?.id(),
        list: outcome,
        settings_changed,
        settings: options.settings.clone(),
        open: filter.config()?.flags & FLAG_OPEN != 0,
        interfaces,
    })
}

/// `mxgate attach`.
pub fn command(pins: &PinDir, request: &AttachRequest) -> anyhow::Result<()> {
    let list = read_nonempty_list(&request.list)?;
    let report = attach_filter(pins, &request.ifaces, &list, &request.options)?;
    if report.installed {
        println!(
            "loaded the filter into the kernel (program {}), pinned in {}",
            report.program_id,
            pins.root().display()
        );
    } else if request.options.log == KernelLog::EveryDenial {
        println!(
            "note: --log-denials takes effect when the program is loaded; \
             it was already loaded (detach and attach again to change it)"
        );
    }
    let d = &report.list.diff;
    println!(
        "allowlist: {} IPv4 and {} IPv6 prefixes ({})",
        report.list.v4_after,
        report.list.v6_after,
        if d.is_empty() {
            "unchanged".to_owned()
        } else {
            format!("+{} -{}", d.added(), d.removed())
        }
    );
    println!("{}", describe_settings(&report.settings, report.open));
    for a in &report.interfaces {
        if a.new {
            println!(
                "attached to {} ({} mode, link {})",
                a.iface, a.mode, a.link_id
            );
        } else {
            println!(
                "already attached to {} ({} mode, link {}); left as it is",
                a.iface, a.mode, a.link_id
            );
        }
    }
    Ok(())
}

/// One line saying what the filter does with these settings.
pub fn describe_settings(settings: &Settings, open: bool) -> String {
    let ports: Vec<String> = settings.ports.iter().map(u16::to_string).collect();
    let ports = match ports.len() {
        1 => format!("TCP port {}", ports[0]),
        _ => format!("TCP ports {}", ports.join(", ")),
    };
    let where_ = if settings.protect_dst.is_empty() {
        "every local address".to_owned()
    } else {
        let addrs: Vec<String> = settings
            .protect_dst
            .iter()
            .map(ToString::to_string)
            .collect();
        addrs.join(", ")
    };
    let mode = if open {
        "OPEN: every SYN passes (run `mxgate enforce` to drop unlisted senders again)"
    } else if settings.dry_run {
        "dry run: SYNs from outside the allowlist are counted, not dropped"
    } else {
        "enforcing: SYNs from outside the allowlist are dropped"
    };
    format!("protecting {ports} on {where_}; {mode}")
}
