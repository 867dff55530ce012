//! `run`: attach (or adopt the attached filter), then log a stats line per
//! interval and the kernel's log messages until SIGINT/SIGTERM. The filter
//! stays attached when it exits.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya_log::EbpfLogger;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{Signal, SignalKind, signal},
};

use filter_common::{Config, FLAG_DRY_RUN, FLAG_OPEN};

use super::{AttachRequest, RunRequest, read_nonempty_list};
use crate::{
    describe::describe_settings,
    error::exit_code,
    files,
    filter::{AllowMaps, FilterMaps, Installed, Readout},
    install::{AttachOptions, attach_filter},
    interfaces,
    logline::{Event, Level, LogLine, LogSink},
    metrics, metrics_http,
    pins::PinDir,
    report::{FilterState, Reading, stats_line},
    snapshot::{filter_state, metrics_snapshot, take_reading},
    sys,
};

/// Most kernel log lines forwarded per second; the rest are counted and
/// reported, so a flood of denials cannot flood the log.
const KERNEL_LINES_PER_SECOND: u32 = 20;

/// `mxgate run`.
///
/// Under a service manager a restart must neither loop nor leave an
/// interface unprotected: when the shrink guard refuses the list, or a
/// source fails or delivers nothing usable while a filter is installed, run
/// keeps the live allowlist, logs a warning and goes on. With no filter
/// installed and no list there is nothing to attach: run says so and exits
/// 1, which the unit restarts until the source delivers. Only invalid input
/// (exit 2) stops it for good: that needs the administrator.
pub fn command(pins: &PinDir, request: &RunRequest) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    // Caught from the start: a signal while run attaches, or before its
    // first line, lets it finish that and stop with a `stopped` line
    // instead of killing it halfway.
    let signals = {
        let _context = runtime.enter();
        Signals::catch()?
    };
    let sink = Arc::new(LogSink::stdout(request.log_format));
    // Bound before anything changes: an address that cannot be had stops
    // run before it attaches.
    let listener = match request.metrics_listen {
        Some(addr) => Some(runtime.block_on(metrics_http::bind(addr))?),
        None => None,
    };
    let mut events = Vec::new();
    if let Some(attach) = &request.attach {
        events.extend(attach_for_run(pins, attach, &sink)?);
    } else {
        let installed = Installed::require(pins)?;
        // The interfaces its links still attach, by their names now.
        let ifaces: Vec<String> = link_states(&installed)
            .values()
            .filter_map(|l| l.ifindex)
            .map(|i| interfaces::ifname(i).unwrap_or_else(|| format!("#{i}")))
            .collect();
        let line = if ifaces.is_empty() {
            LogLine::new(Level::Warn, Event::Adopted).field(
                "message",
                "the filter is attached to no interface: it protects nothing",
            )
        } else {
            LogLine::info(Event::Adopted)
        };
        events.push(
            line.field("pin_dir", pins.root().display().to_string())
                .field("interfaces", ifaces),
        );
    }
    // Adopting a filter that is not installed fails here, before any line.
    let installed = Installed::require(pins)?;
    let maps = FilterMaps::open(&installed)?;
    for damage in installed.damage() {
        events.push(LogLine::new(Level::Warn, Event::Damaged).field("message", damage));
    }
    let start = Start {
        // The first interval counts from here: whoever reads these lines
        // and then sends traffic sees all of it in the stats lines.
        reading: take_reading(&maps.readout)?,
        // And a change made as soon as a reader sees them is one the
        // watcher reports.
        watcher: Watcher::new(&installed, &maps)?,
        listener,
    };
    for event in &events {
        sink.emit(event);
    }
    let result = runtime.block_on(stream(
        pins, &installed, &maps, &sink, request, start, signals,
    ));
    if let Err(e) = &result {
        sink.emit(&LogLine::new(Level::Error, Event::Error).field("message", format!("{e:#}")));
    }
    result
}

/// The signals that stop run cleanly.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Starts catching them; needs the runtime's context.
    fn catch() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("catching SIGINT")?,
            term: signal(SignalKind::terminate()).context("catching SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("catching SIGHUP")?,
        })
    }

    /// The name of the next one to arrive.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// The attach `run` starts with, and the lines that tell what it did. A
/// list that could not be read — a source that failed or delivered nothing
/// usable (exit 1, not the invalid input of exit 2) — leaves an installed
/// filter's live list as it is. Without an installed filter there is
/// nothing to attach: `sink` says so at once, and run fails with exit 1
/// (the unit's Restart=on-failure starts it again; exit 2 would stop the
/// service for good over a source that may deliver in a minute).
fn attach_for_run(
    pins: &PinDir,
    attach: &AttachRequest,
    sink: &LogSink,
) -> anyhow::Result<Vec<LogLine>> {
    let mut events = Vec::new();
    let started = std::time::SystemTime::now();
    let read = read_nonempty_list(&attach.list);
    if let Err(e) = &read {
        crate::refresh_record::record(&attach.list, started, Err(e));
    }
    let list = match read {
        Ok(list) => Some(list),
        Err(e) if exit_code(&e) != ExitCode::from(2) => {
            if pins.unlocked_look(|| Installed::find(pins))?.is_none() {
                sink.emit(
                    &LogLine::new(Level::Error, Event::ListFailed)
                        .field("message", format!("{e:#}"))
                        .field(
                            "action",
                            "nothing to attach: no filter is installed and no list was read; \
                             run exits 1 (its service manager starts it again)",
                        ),
                );
                return Err(e);
            }
            events.push(
                LogLine::new(Level::Warn, Event::ListFailed)
                    .field("message", format!("{e:#}"))
                    .field("action", "kept the live allowlist"),
            );
            None
        }
        Err(e) => return Err(e),
    };
    let options = AttachOptions {
        keep_live_list_when_refused: true,
        ..attach.options.clone()
    };
    let report = attach_filter(pins, &attach.ifaces, list.as_ref(), &options);
    if list.is_some() {
        // The list was read: the refresh ended as the attach did, a
        // refusal kept in the report counting as one.
        let refused = report
            .as_ref()
            .ok()
            .and_then(|r| r.list.as_ref())
            .and_then(|o| {
                (!o.applied && !o.diff.is_empty())
                    .then(|| o.refusal.clone())
                    .flatten()
            });
        let record = |outcome| crate::refresh_record::record(&attach.list, started, outcome);
        match (&report, refused) {
            (Err(e), _) => record(Err(e)),
            (Ok(_), Some(reason)) => record(Err(&crate::error::Refused(reason).into())),
            (Ok(_), None) => record(Ok(())),
        }
    }
    let report = report?;
    for pin in &report.repaired {
        events.push(LogLine::new(Level::Warn, Event::Repaired).field("pin", pin.clone()));
    }
    if let Some(outcome) = &report.list {
        let d = &outcome.diff;
        if !outcome.drift.is_empty() {
            events.push(LogLine::new(Level::Warn, Event::Repaired).field(
                "message",
                format!(
                    "the maps had drifted from the list applied last ({}); put back",
                    outcome.drift.join("; ")
                ),
            ));
        }
        let line = match &outcome.refusal {
            Some(reason) if !outcome.applied && !d.is_empty() => {
                LogLine::new(Level::Warn, Event::RefreshRefused)
                    .field("message", reason.clone())
                    .field(
                        "action",
                        "kept the live allowlist; `mxgate refresh --force` applies it",
                    )
            }
            _ => LogLine::info(Event::Refreshed)
                .field("added", d.added())
                .field("removed", d.removed())
                .field("unchanged", d.unchanged())
                .field("v4_prefixes", outcome.v4_after)
                .field("v6_prefixes", outcome.v6_after),
        };
        events.push(line);
    }
    for a in &report.interfaces {
        let mut line = LogLine::info(Event::Attached)
            .field("iface", a.iface.clone())
            .field("mode", a.mode.name())
            .field("link", a.link_id)
            .field("program", a.program_id)
            .field("already", !a.new);
        if let Some(was) = &a.renamed_from {
            line = line.field("renamed_from", was.clone());
        }
        events.push(line);
    }
    for note in &report.notes {
        events.push(LogLine::new(Level::Warn, Event::Note).field("message", note.clone()));
    }
    Ok(events)
}

/// What the first stats line and the first watch compare with, taken
/// before run's first line.
struct Start {
    reading: Reading,
    watcher: Watcher,
    /// `--metrics-listen`'s socket, bound before anything changed.
    listener: Option<tokio::net::TcpListener>,
}

async fn stream(
    pins: &PinDir,
    installed: &Installed,
    maps: &FilterMaps,
    sink: &Arc<LogSink>,
    request: &RunRequest,
    start: Start,
    mut signals: Signals,
) -> anyhow::Result<()> {
    let Start {
        reading: mut previous,
        mut watcher,
        listener,
    } = start;
    let metrics = Metrics::new(request);
    // The filter as found last: its links, for the metrics.
    let mut current = installed.clone();
    let published = metrics_http::Published::default();
    let server = listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            sink.emit(&LogLine::info(Event::MetricsListening).field("address", addr.to_string()));
        }
        // Answers from the text published last: a client never waits for
        // this loop, and this loop never waits for a client.
        tokio::spawn(metrics_http::serve(listener, published.clone()))
    });
    if server.is_some() {
        published.set(metrics.render(&current, &maps.readout, &watcher)?);
    }
    let forwarder = Forwarder::new(Arc::clone(sink), request.kernel_log);
    let logger = match installed.program_id() {
        Some(id) => match EbpfLogger::init_from_id_with_logger(id, forwarder.clone()) {
            // SAFETY: the logger owns its ring buffer's descriptor, which
            // stays open and unchanged until the AsyncFd (and with it the
            // logger) is dropped.
            Ok(logger) => Some(
                unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
                    .context("watching the kernel's log buffer")?,
            ),
            // aya-log finds the buffer through the program's id, which
            // needs CAP_SYS_ADMIN: the systemd unit does not keep it. The
            // filter, counters and stats do not depend on it, and a program
            // loaded without --log-denials writes no lines: info, not warn.
            Err(e) => {
                sink.emit(&LogLine::info(Event::KernelLogUnavailable).field(
                    "message",
                    format!(
                        "the program's own log lines (attach --log-denials) cannot be \
                             shown: finding its log buffer by program id needs CAP_SYS_ADMIN \
                             ({e}); filtering, counters and stats are not affected"
                    ),
                ));
                None
            }
        },
        None => None,
    };
    let mut logger = logger;

    let prom_file = usable_prom_file(request.prom_file.as_deref(), sink);
    if let Some(path) = prom_file
        && let Err(e) = write_prom_file(path, &metrics, &current, &maps.readout, &watcher)
    {
        sink.emit(&LogLine::new(Level::Error, Event::Error).field("message", format!("{e:#}")));
    }
    let period = request.interval;
    let mut stats_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // Changes made by other mxgate commands show within a second.
    let second = Duration::from_secs(1);
    let mut watch_tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let reason = loop {
        tokio::select! {
            _ = stats_tick.tick() => {
                let now = take_reading(&maps.readout)?;
                // Drift from outside changes no generation: checked here.
                watcher.in_step = in_step(&maps.allow);
                // The file first: once the line is out, the file matches it.
                // A metrics file that cannot be written must not stop the
                // filter's log: say so and go on.
                if let Some(path) = prom_file
                    && let Err(e) = write_prom_file(path, &metrics, &current, &maps.readout, &watcher)
                {
                    sink.emit(&LogLine::new(Level::Error, Event::Error).field("message", format!("{e:#}")));
                }
                sink.emit(&stats_line(&previous, &now, request.top));
                previous = now;
                forwarder.report_suppressed();
            }
            _ = watch_tick.tick() => {
                let Some(found) = Installed::find(pins).ok().flatten() else {
                    sink.emit(&LogLine::info(Event::Detached)
                        .field("message", "the filter was removed (mxgate detach); stopping"));
                    return Ok(());
                };
                for event in watcher.changes(&found, maps)? {
                    sink.emit(&event);
                }
                current = found;
                if server.is_some() {
                    published.set(metrics.render(&current, &maps.readout, &watcher)?);
                }
            }
            ready = async { logger.as_mut()?.readable_mut().await.ok() }, if logger.is_some() => {
                if let Some(mut guard) = ready {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            name = signals.recv() => break name,
        }
    };
    if let Some(server) = server {
        server.abort();
    }
    sink.emit(
        &LogLine::info(Event::Stopped)
            .field("signal", reason)
            .field("message", "mxgate run stopped; the filter stays attached"),
    );
    Ok(())
}

/// How often `unprotected` is repeated while the filter stays attached to
/// no interface: once when it happens, then this often, so a lasting
/// state is seen in the log without filling it.
pub const UNPROTECTED_REMINDER: Duration = Duration::from_secs(15 * 60);

/// Turns changes made by other commands, and damage, into event lines.
struct Watcher {
    config: Config,
    state: FilterState,
    /// Whether the maps are in step with their record (metrics).
    in_step: Option<bool>,
    /// Each pinned link, by its pin's interface name.
    links: BTreeMap<String, LinkState>,
    damage: Vec<String>,
    unprotected: Reminder,
}

/// What a pinned link attaches, as last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LinkState {
    link_id: u32,
    /// The interface it attaches; `None` once it attaches none.
    ifindex: Option<u32>,
}

/// When to say that the filter protects nothing: when it starts to, then
/// every `every` while it lasts.
#[derive(Clone, Copy, Debug)]
struct Reminder {
    every: Duration,
    last: Option<Instant>,
}

impl Reminder {
    fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether to log now, given whether the condition holds at `now`;
    /// `Some(true)` for the first line, `Some(false)` for a reminder.
    fn due(&mut self, holds: bool, now: Instant) -> Option<bool> {
        if !holds {
            self.last = None;
            return None;
        }
        match self.last {
            None => {
                self.last = Some(now);
                Some(true)
            }
            Some(last) if now.duration_since(last) >= self.every => {
                self.last = Some(now);
                Some(false)
            }
            Some(_) => None,
        }
    }
}

impl Watcher {
    fn new(installed: &Installed, maps: &FilterMaps) -> anyhow::Result<Self> {
        let links = link_states(installed);
        let mut unprotected = Reminder::new(UNPROTECTED_REMINDER);
        // Adopting a filter attached nowhere already said so (`adopted`
        // at warn); the reminders count from then.
        unprotected.due(!links.values().any(|l| l.ifindex.is_some()), Instant::now());
        Ok(Self {
            config: maps.config.read()?,
            state: filter_state(&maps.config, &maps.allow)?,
            in_step: in_step(&maps.allow),
            links,
            damage: installed.damage(),
            unprotected,
        })
    }

    /// Events since the last call: opened, enforced, refreshed, settings;
    /// and, as warnings, an interface losing the filter and new damage.
    fn changes(
        &mut self,
        installed: &Installed,
        maps: &FilterMaps,
    ) -> anyhow::Result<Vec<LogLine>> {
        let mut events = Vec::new();
        let links = link_states(installed);
        for (iface, before) in &self.links {
            // A pin renamed by `attach` (its interface was renamed) keeps
            // its link.
            let now = links
                .get(iface)
                .or_else(|| links.values().find(|l| l.link_id == before.link_id));
            match (before.ifindex, now) {
                (_, None) => events.push(
                    LogLine::new(Level::Warn, Event::LinkRemoved)
                        .field("iface", iface.clone())
                        .field("message", "the filter no longer protects this interface"),
                ),
                (Some(ifindex), Some(LinkState { ifindex: None, .. })) => {
                    events.push(match interfaces::ifname(ifindex) {
                        // The interface is there: its link was detached.
                        Some(name) => LogLine::new(Level::Warn, Event::LinkDetached)
                            .field("iface", name.clone())
                            .field(
                                "message",
                                format!(
                                    "the link was detached from outside (`bpftool link \
                                     detach`?): the filter no longer protects {name}; `mxgate \
                                     attach --iface {name} …` restores it"
                                ),
                            ),
                        None => LogLine::new(Level::Warn, Event::InterfaceGone)
                            .field("iface", iface.clone())
                            .field(
                                "message",
                                "the interface was deleted; its link attaches nothing",
                            ),
                    });
                }
                // Attached again (by `attach`) under the same pin.
                (
                    None,
                    Some(LinkState {
                        ifindex: Some(ifindex),
                        ..
                    }),
                ) => events.push(LogLine::info(Event::Attached).field(
                    "iface",
                    interfaces::ifname(*ifindex).unwrap_or_else(|| iface.clone()),
                )),
                _ => {}
            }
        }
        for (iface, now) in &links {
            let renamed_from = self
                .links
                .iter()
                .find(|(i, l)| *i != iface && l.link_id == now.link_id && !links.contains_key(*i))
                .map(|(i, _)| i.clone());
            if !self.links.contains_key(iface) {
                let mut line = LogLine::info(Event::Attached).field("iface", iface.clone());
                if let Some(was) = renamed_from {
                    line = line.field("renamed_from", was);
                }
                events.push(line);
            }
        }
        let nowhere = !links.values().any(|l| l.ifindex.is_some());
        if let Some(first) = self.unprotected.due(nowhere, Instant::now()) {
            let mut line = LogLine::new(Level::Warn, Event::Unprotected).field(
                "message",
                "the filter is attached to no interface: it protects nothing",
            );
            if !first {
                line = line.field("reminder", true);
            }
            events.push(line);
        }
        self.links = links;
        let damage = installed.damage();
        for d in damage.iter().filter(|d| !self.damage.contains(d)) {
            events.push(LogLine::new(Level::Warn, Event::Damaged).field("message", d.clone()));
        }
        self.damage = damage;

        let now = maps.config.read()?;
        let before = std::mem::replace(&mut self.config, now);
        if now.list_generation != before.list_generation {
            self.state = filter_state(&maps.config, &maps.allow)?;
            self.in_step = in_step(&maps.allow);
            events.push(
                LogLine::info(Event::Refreshed)
                    .field("v4_prefixes", self.state.prefixes_v4)
                    .field("v6_prefixes", self.state.prefixes_v6),
            );
        }
        if now.settings_generation != before.settings_generation {
            let open = now.flags & FLAG_OPEN != 0;
            if open != (before.flags & FLAG_OPEN != 0) {
                events.push(if open {
                    LogLine::new(Level::Warn, Event::Opened)
                        .field("message", "every SYN passes until `mxgate enforce`")
                } else {
                    LogLine::info(Event::Enforced).field(
                        "message",
                        "SYNs from outside the allowlist are dropped again",
                    )
                });
            } else {
                let settings = maps.settings.read(&maps.config)?;
                events.push(
                    LogLine::info(Event::Settings)
                        .field("message", describe_settings(&settings, open)),
                );
            }
            self.state.open = open;
            self.state.dry_run = now.flags & FLAG_DRY_RUN != 0;
        }
        Ok(events)
    }
}

/// Each link pin's interface name and what its link attaches.
fn link_states(installed: &Installed) -> BTreeMap<String, LinkState> {
    installed
        .entries()
        .links
        .iter()
        .filter_map(|iface| {
            let link = sys::pinned_xdp_link(&installed.pins().link(iface)).ok()?;
            Some((
                iface.clone(),
                LinkState {
                    link_id: link.link_id,
                    ifindex: (link.ifindex != 0).then_some(link.ifindex),
                },
            ))
        })
        .collect()
}

/// The `--prom-file` this run writes: none when its directory does not
/// exist as run starts. That directory is the node exporter's (the
/// packaged default names prometheus-node-exporter's textfile directory):
/// without it nothing would read the file, and every write would fail.
/// One info line says so and names the fix, instead of an error each
/// interval.
fn usable_prom_file<'a>(path: Option<&'a Path>, sink: &LogSink) -> Option<&'a Path> {
    let path = path?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        return Some(path);
    }
    sink.emit(
        &LogLine::info(Event::MetricsUnavailable)
            .field("path", path.display().to_string())
            .field(
                "message",
                format!(
                    "{} does not exist, so this run writes no metrics file: install \
                     prometheus-node-exporter (its textfile collector reads that directory) \
                     and restart, or drop --prom-file (MXGATE_OPTIONS in /etc/default/mxgate \
                     for the packaged unit)",
                    dir.display()
                ),
            ),
    );
    None
}

/// Whether the maps are in step with their record; `None` when that
/// cannot be checked.
fn in_step(allow: &AllowMaps) -> Option<bool> {
    allow.consistency().ok().map(|c| c.in_step())
}

/// What run's metrics are made of besides the maps.
struct Metrics {
    /// Where the refresh record is (see [`crate::refresh_record`]).
    cache_dir: Option<PathBuf>,
    top: usize,
}

impl Metrics {
    fn new(request: &RunRequest) -> Self {
        let cache_dir = match &request.attach {
            Some(attach) => attach.list.options.cache_dir.clone(),
            None => Some(PathBuf::from(crate::sources::DEFAULT_CACHE_DIR)),
        };
        Self {
            cache_dir,
            top: request.top,
        }
    }

    /// The metrics now, in the Prometheus text format; `installed` as
    /// found last (its links).
    fn render(
        &self,
        installed: &Installed,
        readout: &Readout,
        watcher: &Watcher,
    ) -> anyhow::Result<String> {
        let snapshot = metrics_snapshot(
            installed,
            readout,
            watcher.state,
            watcher.in_step,
            self.cache_dir.as_deref(),
            self.top,
        )?;
        Ok(metrics::render(&snapshot))
    }
}

/// Writes the metrics to `path` whole (see [`files::write_atomically`]).
fn write_prom_file(
    path: &Path,
    metrics: &Metrics,
    installed: &Installed,
    readout: &Readout,
    watcher: &Watcher,
) -> anyhow::Result<()> {
    files::write_atomically(
        path,
        metrics.render(installed, readout, watcher)?.as_bytes(),
        0o644,
        files::Durability::Unsynced,
    )
}

/// Forwards aya-log records from the kernel as `kernel` log lines, at most
/// [`KERNEL_LINES_PER_SECOND`].
#[derive(Clone)]
struct Forwarder {
    sink: Arc<LogSink>,
    max_level: log::LevelFilter,
    budget: Arc<Mutex<Budget>>,
}

struct Budget {
    window: Instant,
    used: u32,
    suppressed: u64,
}

impl Forwarder {
    fn new(sink: Arc<LogSink>, max_level: log::LevelFilter) -> Self {
        Self {
            sink,
            max_level,
            budget: Arc::new(Mutex::new(Budget {
                window: Instant::now(),
                used: 0,
                suppressed: 0,
            })),
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        match self.budget.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn report_suppressed(&self) {
        let suppressed = std::mem::take(&mut self.budget().suppressed);
        if suppressed > 0 {
            self.sink.emit(
                &LogLine::new(Level::Warn, Event::KernelLogSuppressed)
                    .field("count", suppressed)
                    .field("limit_per_s", KERNEL_LINES_PER_SECOND),
            );
        }
    }
}

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.max_level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        {
            let mut budget = self.budget();
            if budget.window.elapsed() >= Duration::from_secs(1) {
                budget.window = Instant::now();
                budget.used = 0;
            }
            if budget.used >= KERNEL_LINES_PER_SECOND {
                budget.suppressed += 1;
                return;
            }
            budget.used += 1;
        }
        self.sink.emit(
            &LogLine::new(record.level().into(), Event::Kernel)
                .field("message", record.args().to_string()),
        );
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprotected_is_said_once_then_at_the_reminder_interval() {
        let every = Duration::from_secs(900);
        let mut r = Reminder::new(every);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.due(false, at(0)), None);
        assert_eq!(r.due(true, at(1)), Some(true));
        for s in 2..900 {
            assert_eq!(r.due(true, at(s)), None, "second {s}");
        }
        assert_eq!(r.due(true, at(901)), Some(false));
        assert_eq!(r.due(true, at(902)), None);
        // Protected again, then not: said at once.
        assert_eq!(r.due(false, at(903)), None);
        assert_eq!(r.due(true, at(904)), Some(true));
    }
}
