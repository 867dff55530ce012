//! Installing the filter (once), making its allowlist and settings match
//! what was asked, and attaching it to each interface: what `attach` and
//! `run` do before anything else.
//!
//! Everything that can refuse is checked before anything changes: the
//! interfaces (they exist, are not loopback, run no other XDP program), the
//! settings, the pin directory. A filter found damaged (a pin removed by
//! hand) is repaired from what still runs, never replaced. When a later
//! step fails, exactly what this call did is undone: links it made, pins it
//! created, and the list and settings it changed.

use std::path::PathBuf;

use filter_common::{FLAG_OPEN, MAX_PROTECTED_DST};

use crate::{
    allowlist::Allowlist,
    apply::{ApplyMode, Change, RefreshOutcome, Verify, apply_list, keep_if_live},
    diff::Guard,
    error::InvalidInput,
    fast_path,
    filter::{Filter, Installed, KernelLog, Settings},
    interfaces,
    links::{self, AttachMode, Attachment},
    pins::PinDir,
    ranges::ParsedList,
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
    /// The guards (shrink, grow, ceiling) for the list change.
    pub guard: Guard,
    /// When the guard refuses the list: keep the live list and go on (what
    /// `mxgate run` does, so a service restart never loops), instead of
    /// failing (exit 3).
    pub keep_live_list_when_refused: bool,
}

/// What an attach did.
#[derive(Clone, Debug)]
pub struct AttachReport {
    /// True when this call loaded the program (it was not installed).
    pub installed: bool,
    /// Pins this call restored from what still ran (a repair).
    pub repaired: Vec<String>,
    /// The program's id.
    pub program_id: u32,
    /// The allowlist change (`None` when the live list was kept as is).
    pub list: Option<RefreshOutcome>,
    /// True when ports, destinations or dry-run changed.
    pub settings_changed: bool,
    /// The settings now live.
    pub settings: Settings,
    /// True when the open switch is on (attach leaves it as it is).
    pub open: bool,
    /// Each interface (`new` when this call attached it).
    pub interfaces: Vec<Attachment>,
    /// Things worth a warning: a mode asked for but not used, a protected
    /// destination that is not an address of this host.
    pub notes: Vec<String>,
}

/// What this call changed, to undo it if a later step fails.
#[derive(Default)]
struct Undo {
    created_dir: bool,
    created_pins: Vec<PathBuf>,
    attached: Vec<String>,
    list_before: Option<Allowlist>,
    settings_before: Option<Settings>,
}

/// Installs the filter if needed, applies `list` (`None` keeps the live
/// list of an installed filter) and `options`, and attaches to `ifaces`.
/// Attaching where already attached changes nothing.
pub fn attach_filter(
    pins: &PinDir,
    ifaces: &[String],
    list: Option<&ParsedList>,
    options: &AttachOptions,
) -> anyhow::Result<AttachReport> {
    check_settings(&options.settings)?;
    // A first look, before any change: the interfaces must be free for us.
    pins.unlocked_look(|| {
        let ours = Installed::find(pins)?.and_then(|i| i.program_id());
        ifaces
            .iter()
            .try_for_each(|iface| links::check(pins, iface, ours))
    })?;
    let mut undo = Undo::default();
    let _lock = loop {
        undo.created_dir |= pins.prepare()?;
        // A detach that held the lock removed the directory: start over.
        if let Some(lock) = pins.lock()? {
            break lock;
        }
    };
    let result = attach_locked(pins, ifaces, list, options, &mut undo);
    if result.is_err() {
        undo.run(pins);
    }
    result
}

fn attach_locked(
    pins: &PinDir,
    ifaces: &[String],
    list: Option<&ParsedList>,
    options: &AttachOptions,
    undo: &mut Undo,
) -> anyhow::Result<AttachReport> {
    // Under the lock, the state may have changed since the first look. A
    // pin at one of the filter's names holding something else is never
    // used, replaced or removed.
    Installed::refuse_impostors(pins, &pins.entries()?)?;
    let (installed, repaired) = match Installed::find(pins)? {
        Some(mut found) if found.program_id().is_some() => {
            let repaired = found.repair()?;
            (false, repaired)
        }
        // Nothing installed, or maps left without their program: load it
        // (reusing those maps and the allowlist in them).
        _ => {
            if list.is_none() {
                anyhow::bail!(
                    "no filter is installed in {}, and without a list there is nothing to \
                     attach",
                    pins.root().display()
                );
            }
            undo.created_pins = Filter::install(pins, options.log)?;
            (true, Vec::new())
        }
    };
    let mut filter = Filter::open(pins)?;
    let ours = Some(filter.program_info()?.id());
    for iface in ifaces {
        links::check(pins, iface, ours)?;
    }
    // The allowlist is filled before the program is attached anywhere new,
    // so no allowed sender ever meets an empty list.
    let live = filter.allowlist()?;
    undo.list_before = Some(live.clone());
    let mode = if options.keep_live_list_when_refused {
        ApplyMode::ApplyUnlessRefused
    } else {
        ApplyMode::Apply
    };
    let digest = list.map(|list| fast_path::digest(&list.allowlist));
    let outcome = list
        .zip(digest)
        .map(|(list, digest)| {
            apply_list(
                &mut filter.maps.allow,
                &mut filter.maps.config,
                Change {
                    live,
                    new: &list.allowlist,
                    digest,
                    plan: None,
                },
                options.guard,
                mode,
                // attach makes the filter match the command line: whatever
                // the maps' record says, they are read back and repaired.
                Verify::Full,
            )
        })
        .transpose()?;
    undo.settings_before = Some(filter.settings()?);
    let settings_changed = filter.apply_settings(&options.settings)?;
    let mut interfaces = Vec::new();
    let mut notes = Vec::new();
    for iface in ifaces {
        let attachment = links::attach(&mut filter, iface, options.mode)?;
        if attachment.new {
            undo.attached.push(iface.clone());
        } else if let Some(asked) = options.mode.attached()
            && attachment.mode != asked
        {
            notes.push(format!(
                "{iface} is already attached in {} mode; --mode {asked} is not applied to an \
                 attached interface (`mxgate detach --iface {iface}`, then attach again)",
                attachment.mode
            ));
        }
        interfaces.push(attachment);
    }
    notes.extend(foreign_destinations(&options.settings));
    let report = AttachReport {
        installed,
        repaired,
        program_id: filter.program_info()?.id(),
        list: outcome,
        settings_changed,
        settings: options.settings.clone(),
        open: filter.config()?.flags & FLAG_OPEN != 0,
        interfaces,
        notes,
    };
    // Last, once nothing can undo the list any more.
    if let Some((list, digest)) = list.zip(digest) {
        keep_if_live(&filter.allow, list, digest);
    }
    Ok(report)
}

impl Undo {
    /// Undoes what was recorded, best effort: a failure here must not hide
    /// the error that made the attach fail.
    fn run(self, pins: &PinDir) {
        for iface in &self.attached {
            let _ = pins.remove_link(iface);
        }
        if self.created_pins.is_empty()
            && let Ok(mut filter) = Filter::open(pins)
        {
            if let Some(before) = &self.list_before {
                let _ = filter.apply(before);
            }
            if let Some(before) = &self.settings_before {
                let _ = filter.apply_settings(before);
            }
        }
        for pin in self.created_pins.iter().rev() {
            let _ = std::fs::remove_file(pin);
        }
        if self.created_dir {
            pins.remove_if_empty();
        }
    }
}

/// Refuses settings the maps cannot hold, before anything changes.
fn check_settings(settings: &Settings) -> anyhow::Result<()> {
    if settings.ports.is_empty() {
        return Err(InvalidInput("no port to protect (give --port N)".into()).into());
    }
    let v4 = settings.protect_dst.iter().filter(|a| a.is_ipv4()).count();
    let v6 = settings.protect_dst.len() - v4;
    for (family, count) in [("IPv4", v4), ("IPv6", v6)] {
        if count > MAX_PROTECTED_DST as usize {
            return Err(InvalidInput(format!(
                "{count} {family} --protect-dst addresses; the filter holds at most \
                 {MAX_PROTECTED_DST} per family (nothing changed)"
            ))
            .into());
        }
    }
    Ok(())
}

/// A note for each protected destination this host does not have: SYNs to
/// it never reach this host, so it protects nothing.
fn foreign_destinations(settings: &Settings) -> Vec<String> {
    let Ok(local) = interfaces::local_addresses() else {
        return Vec::new();
    };
    settings
        .protect_dst
        .iter()
        .filter(|a| !local.contains(a))
        .map(|a| {
            format!(
                "--protect-dst {a} is not an address of this host (in this network namespace); \
                 it protects nothing until it is"
            )
        })
        .collect()
}
