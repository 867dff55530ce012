//! `run`: attach (or adopt the attached filter), then log a stats line per
//! interval and the kernel's log messages until SIGINT/SIGTERM. The filter
//! stays attached when it exits.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya_log::EbpfLogger;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use filter_common::{Config, FLAG_DRY_RUN, FLAG_OPEN};

use super::{
    RunRequest,
    attach::{attach_filter, describe_settings},
    inspect::{filter_state, take_reading},
    read_nonempty_list,
};
use crate::{
    filter::Filter,
    links,
    logline::{LogLine, LogSink},
    pins::PinDir,
    report::{FilterState, Reading, prometheus, stats_line},
};

/// Most kernel log lines forwarded per second; the rest are counted and
/// reported, so a flood of denials cannot flood the log.
const KERNEL_LINES_PER_SECOND: u32 = 20;

/// `mxgate run`.
pub fn command(pins: &PinDir, request: &RunRequest) -> anyhow::Result<()> {
    let sink = Arc::new(LogSink::stdout(request.log_format));
    let mut events = Vec::new();
    if let Some(attach) = &request.attach {
        let list = read_nonempty_list(&attach.list)?;
        let report = attach_filter(pins, &attach.ifaces, &list, &attach.options)?;
        let d = &report.list.diff;
        events.push(
            LogLine::info("refreshed")
                .field("added", d.added())
                .field("removed", d.removed())
                .field("unchanged", d.unchanged())
                .field("v4_prefixes", report.list.v4_after)
                .field("v6_prefixes", report.list.v6_after),
        );
        for a in &report.interfaces {
            events.push(
                LogLine::info("attached")
                    .field("iface", a.iface.clone())
                    .field("mode", a.mode)
                    .field("link", a.link_id)
                    .field("program", a.program_id)
                    .field("already", !a.new),
            );
        }
    } else {
        let ifaces: Vec<String> = links::links(pins)?.into_iter().map(|l| l.iface).collect();
        events.push(
            LogLine::info("adopted")
                .field("pin_dir", pins.root().display().to_string())
                .field("interfaces", ifaces.join(",")),
        );
    }
    // Adopting a filter that is not installed fails here, before any line.
    let filter = Filter::open(pins)?;
    // The first interval counts from here: whoever reads these lines and
    // then sends traffic sees all of it in the stats lines.
    let baseline = take_reading(&filter)?;
    for event in &events {
        sink.emit(event);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    let result = runtime.block_on(stream(pins, &filter, &sink, request, baseline));
    if let Err(e) = &result {
        sink.emit(&LogLine::new("error", "error").field("message", format!("{e:#}")));
    }
    result
}

async fn stream(
    pins: &PinDir,
    filter: &Filter,
    sink: &Arc<LogSink>,
    request: &RunRequest,
    mut previous: Reading,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("catching SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("catching SIGTERM")?;
    let forwarder = Forwarder::new(Arc::clone(sink), request.kernel_log);
    let program_id = filter.program_info()?.id();
    let logger = EbpfLogger::init_from_id_with_logger(program_id, forwarder.clone())
        .context("reading the kernel's log buffer")?;
    // SAFETY: the logger owns its ring buffer's descriptor, which stays open
    // and unchanged until the AsyncFd (and with it the logger) is dropped.
    let mut logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .context("watching the kernel's log buffer")?;

    let mut watcher = Watcher::new(filter)?;
    if let Some(path) = &request.prom_file
        && let Err(e) = write_prom_file(path, &previous, &watcher.state, request.top)
    {
        sink.emit(&LogLine::new("error", "error").field("message", format!("{e:#}")));
    }
    let period = request.interval;
    let mut stats_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // Changes made by other mxgate commands show within a second.
    let second = Duration::from_secs(1);
    let mut watch_tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stats_tick.tick() => {
                let now = take_reading(filter)?;
                // The file first: once the line is out, the file matches it.
                // A metrics file that cannot be written must not stop the
                // filter's log: say so and go on.
                if let Some(path) = &request.prom_file
                    && let Err(e) = write_prom_file(path, &now, &watcher.state, request.top)
                {
                    sink.emit(&LogLine::new("error", "error").field("message", format!("{e:#}")));
                }
                sink.emit(&stats_line(&previous, &now, request.top));
                previous = now;
                forwarder.report_suppressed();
            }
            _ = watch_tick.tick() => {
                if !pins.is_installed() {
                    sink.emit(&LogLine::info("detached")
                        .field("message", "the filter was removed (mxgate detach); stopping"));
                    return Ok(());
                }
                for event in watcher.changes(filter)? {
                    sink.emit(&event);
                }
            }
            ready = logger.readable_mut() => {
                let mut guard = ready.context("waiting for kernel log lines")?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    sink.emit(
        &LogLine::info("stopped").field("message", "mxgate run stopped; the filter stays attached"),
    );
    Ok(())
}

/// Turns changes of CONFIG made by other commands into event lines.
struct Watcher {
    config: Config,
    state: FilterState,
}

impl Watcher {
    fn new(filter: &Filter) -> anyhow::Result<Self> {
        Ok(Self {
            config: filter.config()?,
            state: filter_state(filter)?,
        })
    }

    /// Events since the last call: opened, enforced, refreshed, settings.
    fn changes(&mut self, filter: &Filter) -> anyhow::Result<Vec<LogLine>> {
        let now = filter.config()?;
        let before = std::mem::replace(&mut self.config, now);
        let mut events = Vec::new();
        if now.list_generation != before.list_generation {
            self.state = filter_state(filter)?;
            events.push(
                LogLine::info("refreshed")
                    .field("v4_prefixes", self.state.prefixes_v4)
                    .field("v6_prefixes", self.state.prefixes_v6),
            );
        }
        if now.settings_generation != before.settings_generation {
            let open = now.flags & FLAG_OPEN != 0;
            if open != (before.flags & FLAG_OPEN != 0) {
                events.push(if open {
                    LogLine::new("warn", "opened")
                        .field("message", "every SYN passes until `mxgate enforce`")
                } else {
                    LogLine::info("enforced").field(
                        "message",
                        "SYNs from outside the allowlist are dropped again",
                    )
                });
            } else {
                let settings = filter.settings()?;
                events.push(
                    LogLine::info("settings").field("message", describe_settings(&settings, open)),
                );
            }
            self.state.open = open;
            self.state.dry_run = now.flags & FLAG_DRY_RUN != 0;
        }
        Ok(events)
    }
}

/// Writes the metrics to `path` whole: a temporary file in the same
/// directory, then a rename, so a reader never sees half a file.
fn write_prom_file(
    path: &Path,
    reading: &Reading,
    state: &FilterState,
    top: usize,
) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .with_context(|| format!("--prom-file {} names no file", path.display()))?;
    let mut temporary = file_name.to_owned();
    temporary.push(".tmp");
    let temporary = path.with_file_name(temporary);
    std::fs::write(&temporary, prometheus(reading, state, top))
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
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
                &LogLine::new("warn", "kernel_log_suppressed")
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
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        self.sink
            .emit(&LogLine::new(level, "kernel").field("message", record.args().to_string()));
    }

    fn flush(&self) {}
}
