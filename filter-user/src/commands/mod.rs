//! The subcommands. Each computes a result, then prints it; the kernel is
//! only touched after every input has been read and validated.

mod attach;
mod audit;
mod doctor;
mod inspect;
mod refresh;
mod run;
mod switch;
mod top;

use std::{net::IpAddr, path::PathBuf, time::Duration};

pub use crate::apply::{ApplyMode, RefreshOutcome, Verify, apply_list};
pub use crate::install::{AttachOptions, AttachReport, attach_filter};
pub use audit::AuditRequest;
pub use doctor::DoctorRequest;
pub use inspect::StatsFormat;

use crate::{
    diff::Guard,
    error::InvalidInput,
    filter::{Installed, NotInstalled},
    logline::LogFormat,
    pins::{Lock, PinDir},
    ranges::ParsedList,
    sources::ListSpec,
};

/// A command, as the command line asked for it.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// `mxgate attach`.
    Attach(AttachRequest),
    /// `mxgate refresh`.
    Refresh(RefreshRequest),
    /// `mxgate run`.
    Run(RunRequest),
    /// `mxgate stats`.
    Stats(StatsRequest),
    /// `mxgate status`.
    Status {
        /// Print JSON.
        json: bool,
    },
    /// `mxgate check`.
    Check(CheckRequest),
    /// `mxgate lookup`.
    Lookup(LookupRequest),
    /// `mxgate open`.
    Open,
    /// `mxgate enforce`.
    Enforce,
    /// `mxgate detach`.
    Detach(DetachRequest),
    /// `mxgate audit`.
    Audit(AuditRequest),
    /// `mxgate doctor`.
    Doctor(DoctorRequest),
    /// `mxgate top`.
    Top(TopRequest),
}

/// Show the filter live.
#[derive(Clone, Debug)]
pub struct TopRequest {
    /// Time between two screens (the rates' interval).
    pub interval: Duration,
    /// Print one plain snapshot after one interval, and exit.
    pub once: bool,
    /// Denied blocks to show.
    pub top: usize,
    /// Where the refresh record is.
    pub cache_dir: Option<PathBuf>,
}

/// Install the filter, apply a list and settings, attach to interfaces.
#[derive(Clone, Debug)]
pub struct AttachRequest {
    /// Interfaces to attach to.
    pub ifaces: Vec<String>,
    /// The allowlist.
    pub list: ListSpec,
    /// Settings, mode, kernel log level and the guards.
    pub options: AttachOptions,
}

/// Replace the live allowlist.
#[derive(Clone, Debug)]
pub struct RefreshRequest {
    /// The new list.
    pub list: ListSpec,
    /// The guards (shrink, grow, ceiling).
    pub guard: Guard,
    /// Print the change and apply nothing.
    pub preview: bool,
    /// Print JSON.
    pub json: bool,
}

/// Time between `run`'s stats lines unless `--interval` says.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(60);
/// Denied sources a `run` stats line names unless `--top` says.
pub const DEFAULT_RUN_TOP: usize = 5;
/// Denied sources `stats` lists unless `--top` says.
pub const DEFAULT_STATS_TOP: usize = 10;

/// Attach or adopt, then log until stopped.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The attach to do first; `None` adopts the attached filter.
    pub attach: Option<AttachRequest>,
    /// Time between stats lines.
    pub interval: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// Denied sources named per stats line.
    pub top: usize,
    /// Kernel log lines at this level or above are forwarded.
    pub kernel_log: log::LevelFilter,
    /// Also write the metrics to this file each interval.
    pub prom_file: Option<PathBuf>,
    /// Serve the metrics at `GET /metrics` on this address.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Print the counters.
#[derive(Clone, Copy, Debug)]
pub struct StatsRequest {
    /// Output format.
    pub format: StatsFormat,
    /// Denied sources to list.
    pub top: usize,
}

/// Validate a list without the kernel.
#[derive(Clone, Debug)]
pub struct CheckRequest {
    /// The list.
    pub list: ListSpec,
    /// Print JSON.
    pub json: bool,
}

/// Is an address allowed?
#[derive(Clone, Copy, Debug)]
pub struct LookupRequest {
    /// The address.
    pub addr: IpAddr,
    /// Print JSON.
    pub json: bool,
}

/// Detach from some interfaces, or remove the filter.
#[derive(Clone, Debug)]
pub struct DetachRequest {
    /// Interfaces to detach from; empty removes the whole filter.
    pub ifaces: Vec<String>,
}

/// Runs `invocation` on the filter pinned in `pins`.
pub fn run(pins: &PinDir, invocation: &Invocation) -> anyhow::Result<()> {
    match invocation {
        Invocation::Attach(request) => attach::command(pins, request),
        Invocation::Refresh(request) => refresh::command(pins, request),
        Invocation::Run(request) => run::command(pins, request),
        Invocation::Stats(request) => inspect::stats(pins, request),
        Invocation::Status { json } => inspect::status(pins, *json),
        Invocation::Check(request) => refresh::check(request),
        Invocation::Lookup(request) => inspect::lookup(pins, request),
        Invocation::Open => switch::open(pins, true),
        Invocation::Enforce => switch::open(pins, false),
        Invocation::Detach(request) => switch::detach(pins, request),
        Invocation::Audit(request) => audit::command(request),
        Invocation::Doctor(request) => doctor::command(request),
        Invocation::Top(request) => top::command(pins, request),
    }
}

/// Reads the list, prints its warnings to stderr, and refuses an empty
/// result: an empty allowlist would deny everyone.
fn read_nonempty_list(spec: &ListSpec) -> anyhow::Result<ParsedList> {
    nonempty_list(spec, spec.read()?)
}

/// `list`, read from `spec`, with its warnings printed; refused when empty.
fn nonempty_list(spec: &ListSpec, list: ParsedList) -> anyhow::Result<ParsedList> {
    for warning in &list.warnings {
        // A warning may quote a line of a remote list.
        eprintln!(
            "mxgate: warning: {}",
            crate::text::printable(&warning.to_string())
        );
    }
    if list.allowlist.is_empty() {
        return Err(InvalidInput(format!(
            "the list from {} has no entries; an empty allowlist would deny every sender \
             (nothing changed)",
            spec.describe()
        ))
        .into());
    }
    Ok(list)
}

/// Takes the pin directory's lock, then finds the filter: a command that
/// changes it never interleaves with another one. Damage (a pin removed by
/// hand) is reported as a warning; the caller opens only what it needs.
fn open_locked(pins: &PinDir) -> anyhow::Result<(Lock, Installed)> {
    let not_installed = || NotInstalled(pins.root().to_path_buf());
    pins.unlocked_look(|| Installed::find(pins))?
        .ok_or_else(not_installed)?;
    let lock = pins.lock()?.ok_or_else(not_installed)?;
    let installed = Installed::find(pins)?.ok_or_else(not_installed)?;
    installed.warn_damage();
    Ok((lock, installed))
}
