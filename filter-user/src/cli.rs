//! The command line: clap's definitions (close to what the user typed) and
//! their translation into the library's own types ([`Cli::invocation`]).
//! This is the only module that knows clap; every default comes from the
//! library's constant for it.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use filter_common::DEFAULT_PORT;

use crate::{
    audit::{input::LogSource, report::DEFAULT_TOP, stamp::Since},
    commands::{
        AttachOptions, AttachRequest, AuditRequest, CheckRequest, DEFAULT_RUN_TOP,
        DEFAULT_STATS_INTERVAL, DEFAULT_STATS_TOP, DetachRequest, DoctorRequest, Invocation,
        LookupRequest, RefreshRequest, RunRequest, StatsFormat, StatsRequest, TopRequest,
    },
    delivery,
    diff::Guard,
    filter::{KernelLog, Settings},
    https::{self, HttpsOptions},
    links::AttachMode,
    logline,
    pins::{DEFAULT_LOCK_TIMEOUT, DEFAULT_PIN_DIR, PinDir},
    sources::{self, ListSpec, Source, SourceOptions},
    spf::{self, SpfOptions},
};

/// The longest time any option in seconds accepts: a day.
const MAX_SECONDS: u64 = 86_400;
/// The largest --max-download: 1 GiB, far beyond any range list.
const MAX_DOWNLOAD_LIMIT: u64 = 1 << 30;

/// Keeps spammers from going around your mail-security service: drops TCP
/// SYNs to port 25 from every source outside the service's IP ranges, in XDP.
#[derive(Debug, Parser)]
#[command(name = "mxgate", version, propagate_version = true)]
pub struct Cli {
    /// Where the filter's program, maps and links are pinned (on bpffs).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

    /// Seconds to wait for another mxgate command working on the same
    /// filter before giving up (exit 1, nothing changed).
    #[arg(long, global = true, value_name = "SECS",
          default_value_t = DEFAULT_LOCK_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=MAX_SECONDS))]
    pub lock_timeout: u64,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach the filter to interfaces with an allowlist; it stays after exit.
    Attach(AttachArgs),
    /// Replace the live allowlist with a new list (safe to run from cron).
    Refresh(RefreshArgs),
    /// Attach (or adopt the attached filter) and log stats until stopped.
    Run(RunArgs),
    /// Print the counters and the top denied sources.
    Stats(StatsArgs),
    /// Print what is attached where, the mode and the allowlist size.
    Status(StatusArgs),
    /// Validate and summarise a list without touching the kernel.
    Check(CheckArgs),
    /// Say whether the live allowlist allows an address, and by which prefix.
    Lookup(LookupArgs),
    /// Emergency switch: let every SYN through (still counted).
    Open,
    /// Switch back from open: drop SYNs from outside the allowlist again.
    Enforce,
    /// Detach the filter and remove its pins.
    Detach(DetachArgs),
    /// Before you enforce: which senders in the mail server's logs the list
    /// would refuse (exit 3 if one delivered accepted mail).
    Audit(AuditArgs),
    /// Before you enforce: which service a domain's MX records point at, the
    /// range sources to use for it, and what would refuse real mail.
    Doctor(DoctorArgs),
    /// Show the filter live: SYNs per second per interface and family, the
    /// busiest denied blocks, the list's age and sources (q quits).
    Top(TopArgs),
}

/// `mxgate top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between two screens.
    #[arg(long, value_name = "SECS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub interval: u64,
    /// Print one plain-text snapshot after one interval, then exit.
    #[arg(long)]
    pub once: bool,
    /// How many denied blocks (/24, /48) to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,
    /// Where refresh keeps its record of the sources' last results.
    #[arg(long, value_name = "DIR", default_value = crate::sources::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
}

/// `mxgate attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Interfaces to attach to.
    #[arg(long, required = true, num_args = 1.., value_name = "IF")]
    pub iface: Vec<String>,
    /// Range sources, all merged: file paths, `-` (standard input),
    /// `spf:DOMAIN`, `https://URL`, `m365:INSTANCE`.
    #[arg(long, required = true, num_args = 1.., value_name = "SRC", value_parser = parse_source)]
    pub ranges: Vec<Source>,
    /// Filter settings.
    #[command(flatten)]
    pub options: FilterOptions,
    /// How remote sources are fetched.
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// Settings shared by `attach` and `run`.
#[derive(Debug, Args)]
pub struct FilterOptions {
    /// Extra allowed entries (CIDR, address or range), merged with the lists.
    #[arg(long, num_args = 1.., value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Protected TCP destination ports.
    #[arg(long, num_args = 1.., value_name = "N", default_values_t = [DEFAULT_PORT],
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Vec<u16>,
    /// Filter only SYNs to these local addresses (partial domains).
    #[arg(long, num_args = 1.., value_name = "ADDR")]
    pub protect_dst: Vec<IpAddr>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,
    /// Count denied SYNs as "would drop" and let them through.
    #[arg(long)]
    pub dry_run: bool,
    /// Log one kernel line per denied SYN (read by `mxgate run`); takes
    /// effect when the program is first loaded. Floods the log under attack.
    #[arg(long)]
    pub log_denials: bool,
    /// The guards on the list (`run` keeps the live list and logs a
    /// warning where they refuse).
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// The guards a new list must pass, for `attach`, `refresh` and `run`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Refuse a list that takes access from more than this percent of the
    /// live addresses of a family.
    #[arg(long, value_name = "PCT", default_value_t = Guard::DEFAULT.max_shrink,
          value_parser = parse_percent)]
    pub max_shrink: f64,
    /// Refuse a list that allows more than this many times the live
    /// addresses of a family.
    #[arg(long, value_name = "FACTOR", default_value_t = Guard::DEFAULT.max_grow,
          value_parser = parse_factor)]
    pub max_grow: f64,
    /// Refuse a list that allows more IPv4 addresses than a prefix of this
    /// length holds (`8` or `/8`: 16,777,216), whatever is live; --force
    /// does not lift it.
    #[arg(long, value_name = "LEN", default_value_t = Guard::DEFAULT.max_allow_v4,
          value_parser = parse_v4_len)]
    pub max_allow_v4: u8,
    /// Refuse a list that allows more IPv6 addresses than a prefix of this
    /// length holds (`28` or `/28`: 2^100), whatever is live; --force does
    /// not lift it.
    #[arg(long, value_name = "LEN", default_value_t = Guard::DEFAULT.max_allow_v6,
          value_parser = parse_v6_len)]
    pub max_allow_v6: u8,
    /// Apply the list even when --max-shrink or --max-grow refuses it, and
    /// read the maps back to repair any drift from it.
    #[arg(long)]
    pub force: bool,
}

impl GuardArgs {
    /// The guard these arguments describe.
    pub fn guard(&self) -> Guard {
        Guard {
            max_shrink: self.max_shrink,
            max_grow: self.max_grow,
            max_allow_v4: self.max_allow_v4,
            max_allow_v6: self.max_allow_v6,
            force: self.force,
        }
    }
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Native (driver) mode if the driver supports it, generic otherwise.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Skb,
}

/// A range list and extra entries.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Range sources, all merged: file paths, `-` (standard input),
    /// `spf:DOMAIN`, `https://URL`, `m365:INSTANCE`.
    #[arg(long, required = true, num_args = 1.., value_name = "SRC", value_parser = parse_source)]
    pub ranges: Vec<Source>,
    /// Extra allowed entries (CIDR, address or range), merged with the lists.
    #[arg(long, num_args = 1.., value_name = "CIDR")]
    pub allow: Vec<String>,
    /// How remote sources are fetched.
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// How remote range sources (`spf:`, `https://`, `m365:`) are fetched.
#[derive(Clone, Debug, Args)]
pub struct SourceArgs {
    /// DNS servers for `spf:` sources, ADDR or ADDR:PORT [default: those
    /// of /etc/resolv.conf].
    #[arg(long, num_args = 1.., value_name = "ADDR", value_parser = parse_dns_server)]
    pub dns_server: Vec<SocketAddr>,
    /// Seconds each DNS query may take.
    #[arg(long, value_name = "SECS", default_value_t = spf::DEFAULT_QUERY_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub dns_timeout: u64,
    /// Seconds reading one source may take, from first query to last byte
    /// (standard input and FIFOs included).
    #[arg(long, value_name = "SECS", default_value_t = delivery::DEFAULT_FETCH_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub fetch_timeout: u64,
    /// Most DNS-querying terms an SPF chain may use (RFC 7208: 10).
    #[arg(long, value_name = "N", default_value_t = spf::flatten::DEFAULT_LOOKUP_LIMIT)]
    pub spf_lookup_limit: u32,
    /// Flatten an `spf:` source even when a term that names no addresses
    /// (`exists`, `ptr`, sender macros) could fail senders that a later term
    /// passes; those senders are then allowlisted. Without it such a source
    /// is refused.
    #[arg(long)]
    pub spf_allow_unenumerable: bool,
    /// Trust the CA certificates in this PEM file instead of the built-in
    /// roots, for `https://` and `m365:` sources.
    #[arg(long, value_name = "FILE")]
    pub https_ca: Option<PathBuf>,
    /// Largest source accepted, in bytes (downloads, files and standard input).
    #[arg(long, value_name = "BYTES", default_value_t = https::DEFAULT_MAX_DOWNLOAD,
          value_parser = clap::value_parser!(u64).range(1..=MAX_DOWNLOAD_LIMIT))]
    pub max_download: u64,
    /// Where the last good copy of each remote source is kept.
    #[arg(long, value_name = "DIR", default_value = sources::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// When a remote source fails, use its last good copy instead of
    /// failing (a warning says so).
    #[arg(long)]
    pub use_cache_on_failure: bool,
    /// Say on standard error what each remote source delivered and from
    /// where: the address a download ended at after redirects, its size,
    /// the SPF records evaluated; and, for `refresh`, how the tries were
    /// written (batched or one call per prefix) and whether it stopped at
    /// the sources' unchanged bytes.
    #[arg(long)]
    pub verbose: bool,
}

impl SourceArgs {
    /// The fetch options these arguments describe.
    pub fn options(&self) -> SourceOptions {
        let timeout = Duration::from_secs(self.fetch_timeout);
        SourceOptions {
            spf: SpfOptions {
                servers: self.dns_server.clone(),
                query_timeout: Duration::from_secs(self.dns_timeout),
                deadline: timeout,
                lookup_limit: self.spf_lookup_limit,
                allow_unenumerable: self.spf_allow_unenumerable,
            },
            https: HttpsOptions {
                timeout,
                max_bytes: self.max_download,
                ca_file: self.https_ca.clone(),
            },
            cache_dir: Some(self.cache_dir.clone()),
            use_cache_on_failure: self.use_cache_on_failure,
            verbose: self.verbose,
        }
    }
}

fn parse_source(text: &str) -> Result<Source, String> {
    text.parse()
}

fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => text
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, 53))
            .map_err(|_| format!("{text:?} is not an address or address:port"))?,
    };
    if addr.port() == 0 {
        return Err(format!(
            "{text}: port 0 reaches no server (give ADDR for port 53, or ADDR:PORT)"
        ));
    }
    Ok(addr)
}

/// `mxgate refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The new list.
    #[command(flatten)]
    pub list: ListArgs,
    /// The guards on the new list.
    #[command(flatten)]
    pub guard: GuardArgs,
    /// Print the change and apply nothing (exit 3 when a guard would
    /// refuse it).
    #[arg(long)]
    pub diff: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mxgate run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interfaces to attach to; without it, run adopts the attached filter.
    #[arg(long, num_args = 1.., value_name = "IF", requires = "ranges")]
    pub iface: Vec<String>,
    /// Range sources for the attach (see attach).
    #[arg(long, num_args = 1.., value_name = "SRC", requires = "iface", value_parser = parse_source)]
    pub ranges: Vec<Source>,
    /// Filter settings, as for attach.
    #[command(flatten)]
    pub options: FilterOptions,
    /// How remote sources are fetched.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Seconds between stats lines.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_STATS_INTERVAL.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub interval: u64,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How many denied sources a stats line names.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RUN_TOP)]
    pub top: usize,
    /// Kernel log lines (aya-log) at this level or above are forwarded.
    /// Per-denial lines are debug, and exist only with attach --log-denials.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Also write the metrics each interval to this file, in
    /// node_exporter's textfile format (written whole, then renamed). If
    /// its directory does not exist when run starts (no node exporter),
    /// run says so once (`metrics_unavailable`) and writes none.
    #[arg(long, value_name = "PATH")]
    pub prom_file: Option<PathBuf>,
    /// Serve the same metrics at `GET /metrics` (Prometheus text format)
    /// on this address and port, e.g. 127.0.0.1:9325. Off by default; a
    /// non-loopback address shows the counters, the list's size and age and
    /// the busiest denied sources to whoever can reach it.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Least severe kernel log level forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages and above.
    Info,
    /// Everything, one line per denied SYN included (rate-limited).
    Debug,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// logfmt: `key=value` pairs.
    Text,
    /// One JSON object per line.
    Json,
}

/// `mxgate stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON (same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CliStatsFormat::Text)]
    pub format: CliStatsFormat,
    /// How many denied sources to list.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_STATS_TOP)]
    pub top: usize,
}

/// How `stats` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CliStatsFormat {
    /// A table for people.
    Text,
    /// JSON.
    Json,
    /// Prometheus text exposition.
    Prometheus,
}

/// `mxgate status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mxgate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The list to check.
    #[command(flatten)]
    pub list: ListArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mxgate lookup`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The address to look up.
    pub addr: IpAddr,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mxgate detach`.
#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Detach from these interfaces only; the filter stays installed.
    #[arg(long, num_args = 1.., value_name = "IF")]
    pub iface: Vec<String>,
}

/// `mxgate audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The MTA's logs (Postfix or Exim), read in order: files, rotated
    /// `.gz` files, or `-` for standard input (`journalctl -u postfix -o
    /// short-iso | mxgate audit --mta-log - …`).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE", value_parser = parse_log_source)]
    pub mta_log: Vec<LogSource>,
    /// The list to check the logs' senders against.
    #[command(flatten)]
    pub list: ListArgs,
    /// Leave out what the logs say before this time (2026-11-01,
    /// "2026-11-01 08:00", 2026-11-01T08:00:00Z; local time unless an
    /// offset is given) or age (7d, 12h).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<Since>,
    /// How many refused /24 and /48 blocks that delivered no accepted mail
    /// the report lists (those that did are always listed; --json lists
    /// all).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP)]
    pub top: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mxgate doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The domains this server receives mail for.
    #[arg(long, required = true, num_args = 1.., value_name = "DOMAIN",
          value_parser = crate::doctor::check_domain)]
    pub domain: Vec<String>,
    /// Also fetch and check the proposed sources, as `mxgate check` does.
    #[arg(long)]
    pub check: bool,
    /// Also audit the MTA's logs against the proposed sources, as `mxgate
    /// audit` does (files, rotated `.gz` files, or `-`).
    #[arg(long, num_args = 1.., value_name = "FILE", value_parser = parse_log_source)]
    pub mta_log: Vec<LogSource>,
    /// For the audit: leave out what the logs say before this time or age.
    #[arg(long, value_name = "TIME", value_parser = parse_since, requires = "mta_log")]
    pub since: Option<Since>,
    /// Extra allowed entries (CIDR, address or range) merged with the
    /// proposed sources for --check and --mta-log (a backup MX).
    #[arg(long, num_args = 1.., value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// DNS servers (--dns-server, as for `spf:` sources) and how the
    /// proposed sources are fetched.
    #[command(flatten)]
    pub sources: SourceArgs,
}

fn parse_log_source(text: &str) -> Result<LogSource, String> {
    if text.is_empty() {
        return Err("an empty log; give a file path, or - for standard input".into());
    }
    Ok(LogSource::from(text))
}

fn parse_since(text: &str) -> Result<Since, String> {
    text.parse()
}

impl Cli {
    /// The pin directory the command works on.
    pub fn pins(&self) -> PinDir {
        PinDir::new(&self.pin_dir).with_lock_timeout(Duration::from_secs(self.lock_timeout))
    }

    /// What the command line asks for, in the library's terms.
    pub fn invocation(&self) -> Invocation {
        match &self.command {
            Command::Attach(a) => {
                Invocation::Attach(attach_request(&a.iface, &a.ranges, &a.options, &a.sources))
            }
            Command::Refresh(r) => Invocation::Refresh(RefreshRequest {
                list: if r.diff {
                    // --diff changes nothing: not the cache either.
                    r.list.spec_without_cache()
                } else {
                    r.list.spec()
                },
                guard: r.guard.guard(),
                preview: r.diff,
                json: r.json,
            }),
            Command::Run(r) => Invocation::Run(RunRequest {
                attach: (!r.iface.is_empty())
                    .then(|| attach_request(&r.iface, &r.ranges, &r.options, &r.sources)),
                interval: Duration::from_secs(r.interval),
                log_format: r.log_format.into(),
                top: r.top,
                kernel_log: r.log_level.into(),
                prom_file: r.prom_file.clone(),
                metrics_listen: r.metrics_listen,
            }),
            Command::Top(t) => Invocation::Top(TopRequest {
                interval: Duration::from_secs(t.interval),
                once: t.once,
                top: t.top,
                cache_dir: Some(t.cache_dir.clone()),
            }),
            Command::Stats(s) => Invocation::Stats(StatsRequest {
                format: if s.json {
                    StatsFormat::Json
                } else {
                    s.format.into()
                },
                top: s.top,
            }),
            Command::Status(s) => Invocation::Status { json: s.json },
            Command::Check(c) => Invocation::Check(CheckRequest {
                // check only reads: it keeps no copies of what it fetched.
                list: c.list.spec_without_cache(),
                json: c.json,
            }),
            Command::Lookup(l) => Invocation::Lookup(LookupRequest {
                addr: l.addr,
                json: l.json,
            }),
            Command::Open => Invocation::Open,
            Command::Enforce => Invocation::Enforce,
            Command::Detach(d) => Invocation::Detach(DetachRequest {
                ifaces: d.iface.clone(),
            }),
            Command::Audit(a) => Invocation::Audit(AuditRequest {
                logs: a.mta_log.clone(),
                // audit only reads: it keeps no copies of what it fetched.
                list: a.list.spec_without_cache(),
                since: a.since,
                top: a.top,
                json: a.json,
            }),
            Command::Doctor(d) => Invocation::Doctor(DoctorRequest {
                domains: d.domain.clone(),
                check: d.check,
                logs: d.mta_log.clone(),
                since: d.since,
                allow: d.allow.clone(),
                // doctor only reads: it keeps no copies of what it fetched.
                options: SourceOptions {
                    cache_dir: None,
                    ..d.sources.options()
                },
                json: d.json,
            }),
        }
    }
}

impl ListArgs {
    fn spec(&self) -> ListSpec {
        ListSpec {
            sources: self.ranges.clone(),
            allow: self.allow.clone(),
            options: self.sources.options(),
        }
    }

    /// For commands that only read: they keep no copies of what they fetch
    /// (and so never fall back to one either).
    fn spec_without_cache(&self) -> ListSpec {
        let mut spec = self.spec();
        spec.options.cache_dir = None;
        spec
    }
}

fn attach_request(
    ifaces: &[String],
    ranges: &[Source],
    options: &FilterOptions,
    sources: &SourceArgs,
) -> AttachRequest {
    AttachRequest {
        ifaces: ifaces.to_vec(),
        list: ListSpec {
            sources: ranges.to_vec(),
            allow: options.allow.clone(),
            options: sources.options(),
        },
        options: AttachOptions {
            settings: Settings {
                ports: options.port.iter().copied().collect(),
                protect_dst: options.protect_dst.iter().copied().collect(),
                dry_run: options.dry_run,
            },
            mode: options.mode.into(),
            log: if options.log_denials {
                KernelLog::EveryDenial
            } else {
                KernelLog::Quiet
            },
            guard: options.guard.guard(),
            keep_live_list_when_refused: false,
        },
    }
}

impl From<Mode> for AttachMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Auto => AttachMode::Auto,
            Mode::Native => AttachMode::Native,
            Mode::Skb => AttachMode::Skb,
        }
    }
}

impl From<LogFormat> for logline::LogFormat {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => logline::LogFormat::Text,
            LogFormat::Json => logline::LogFormat::Json,
        }
    }
}

impl From<LogLevel> for log::LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

impl From<CliStatsFormat> for StatsFormat {
    fn from(format: CliStatsFormat) -> Self {
        match format {
            CliStatsFormat::Text => StatsFormat::Text,
            CliStatsFormat::Json => StatsFormat::Json,
            CliStatsFormat::Prometheus => StatsFormat::Prometheus,
        }
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{value} is not between 0 and 100"));
    }
    Ok(value)
}

fn parse_factor(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(value >= 1.0 && value.is_finite()) {
        return Err(format!("{value} is not a factor of at least 1"));
    }
    Ok(value)
}

fn parse_len(text: &str, max: u8) -> Result<u8, String> {
    let digits = text.strip_prefix('/').unwrap_or(text);
    match digits.parse::<u8>() {
        Ok(len) if (1..=max).contains(&len) => Ok(len),
        _ => Err(format!("{text:?} is not a prefix length from 1 to {max}")),
    }
}

fn parse_v4_len(text: &str) -> Result<u8, String> {
    parse_len(text, 32)
}

fn parse_v6_len(text: &str) -> Result<u8, String> {
    parse_len(text, 128)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, error::ErrorKind};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mxgate").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn attach_takes_several_ifaces_ranges_and_ports() {
        let cli = parse(&[
            "attach",
            "--iface",
            "eth0",
            "eth1",
            "--ranges",
            "a.txt",
            "-",
            "--port",
            "25",
            "587",
            "--allow",
            "192.0.2.1",
            "--dry-run",
        ])
        .unwrap();
        let Command::Attach(a) = cli.command else {
            panic!("not attach")
        };
        assert_eq!(a.iface, ["eth0", "eth1"]);
        assert_eq!(a.ranges, [Source::File("a.txt".into()), Source::Stdin]);
        assert_eq!(a.options.port, [25, 587]);
        assert_eq!(a.options.allow, ["192.0.2.1"]);
        assert!(a.options.dry_run);
        assert_eq!(a.options.mode, Mode::Auto);
        assert_eq!(cli.pin_dir, PathBuf::from(DEFAULT_PIN_DIR));
    }

    #[test]
    fn port_defaults_to_smtp() {
        let cli = parse(&["attach", "--iface", "eth0", "--ranges", "a"]).unwrap();
        let Command::Attach(a) = cli.command else {
            panic!("not attach")
        };
        assert_eq!(a.options.port, [25]);
    }

    #[test]
    fn attach_needs_iface_and_ranges() {
        let e = parse(&["attach", "--ranges", "a"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        let e = parse(&["attach", "--iface", "eth0"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(e.exit_code(), 2, "usage errors exit 2 (docs/DESIGN.md §9)");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["attach", "--iface", "e", "--ranges", "a", "--port", "0"][..],
            &["attach", "--iface", "e", "--ranges", "a", "--port", "65536"],
            &["attach", "--iface", "e", "--ranges", "a", "--mode", "turbo"],
            &[
                "attach",
                "--iface",
                "e",
                "--ranges",
                "a",
                "--protect-dst",
                "mail",
            ],
            &["refresh", "--ranges", "a", "--max-shrink", "150"],
            &["refresh", "--ranges", "a", "--max-grow", "0.5"],
            &["refresh", "--ranges", "a", "--max-grow", "inf"],
            &["refresh", "--ranges", "a", "--max-allow-v4", "33"],
            &["refresh", "--ranges", "a", "--max-allow-v4", "0"],
            &[
                "attach",
                "--iface",
                "e",
                "--ranges",
                "a",
                "--max-allow-v6",
                "/129",
            ],
            &["lookup", "not-an-address"],
            &["run", "--interval", "0"],
            &["run", "--iface", "eth0"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn run_alone_adopts() {
        let cli = parse(&["run", "--interval", "5", "--log-format", "json"]).unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert!(r.iface.is_empty() && r.ranges.is_empty());
        assert_eq!(r.interval, 5);
        assert_eq!(r.log_format, LogFormat::Json);
    }

    #[test]
    fn pin_dir_is_global() {
        let cli = parse(&["stats", "--pin-dir", "/sys/fs/bpf/other"]).unwrap();
        assert_eq!(cli.pin_dir, PathBuf::from("/sys/fs/bpf/other"));
        let cli = parse(&["--pin-dir", "/sys/fs/bpf/x", "open"]).unwrap();
        assert_eq!(cli.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
    }

    #[test]
    fn source_options() {
        let cli = parse(&[
            "refresh",
            "--ranges",
            "spf:_spf.example.com",
            "--dns-server",
            "127.0.0.1:5353",
            "::1",
            "--use-cache-on-failure",
        ])
        .unwrap();
        let Command::Refresh(r) = cli.command else {
            panic!("not refresh")
        };
        let options = r.list.sources.options();
        assert_eq!(
            options.spf.servers,
            [
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(options.spf.lookup_limit, 10);
        assert!(!options.spf.allow_unenumerable);
        assert!(options.use_cache_on_failure);
        for bad in ["resolver", "127.0.0.1:0", "[::1]:0"] {
            let e = parse(&["refresh", "--ranges", "a", "--dns-server", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        let cli = parse(&[
            "check",
            "--ranges",
            "spf:x.test",
            "--spf-allow-unenumerable",
        ])
        .unwrap();
        let Command::Check(c) = cli.command else {
            panic!("not check")
        };
        assert!(c.list.sources.options().spf.allow_unenumerable);
    }

    #[test]
    fn sources_are_checked_at_the_edge() {
        for bad in [
            "htps://x",
            "http://x",
            "m365:bogus",
            "m365:HTTPS://x.test/e.json",
            "spf:",
            "spf:a..b",
            "",
        ] {
            let e = parse(&["refresh", "--ranges", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?} must be a usage error: {e}");
        }
    }

    #[test]
    fn no_flags_give_the_library_defaults() {
        let cli = parse(&["attach", "--iface", "eth0", "--ranges", "a"]).unwrap();
        let Invocation::Attach(a) = cli.invocation() else {
            panic!("not attach")
        };
        assert_eq!(a.list.options, SourceOptions::default());
        assert_eq!(a.options.guard, Guard::DEFAULT);
        assert_eq!(a.options.mode, AttachMode::default());
        assert_eq!(a.options.log, KernelLog::default());
        assert_eq!(
            a.options.settings,
            Settings {
                ports: [DEFAULT_PORT].into(),
                ..Settings::default()
            }
        );
        let cli = parse(&["refresh", "--ranges", "a"]).unwrap();
        let Invocation::Refresh(r) = cli.invocation() else {
            panic!("not refresh")
        };
        assert_eq!(r.list.options, SourceOptions::default());
        assert_eq!(r.guard, Guard::DEFAULT);
        let cli = parse(&["run"]).unwrap();
        let Invocation::Run(r) = cli.invocation() else {
            panic!("not run")
        };
        assert_eq!(r.log_format, logline::LogFormat::default());
        let cli = parse(&["check", "--ranges", "a"]).unwrap();
        let Invocation::Check(c) = cli.invocation() else {
            panic!("not check")
        };
        assert_eq!(c.list.options.cache_dir, None, "check keeps no copies");
        let cli = parse(&["stats"]).unwrap();
        let Invocation::Stats(s) = cli.invocation() else {
            panic!("not stats")
        };
        assert_eq!(s.format, StatsFormat::default());
    }

    #[test]
    fn audit_takes_logs_a_list_and_a_window() {
        let cli = parse(&[
            "audit",
            "--mta-log",
            "/var/log/mail.log.1.gz",
            "-",
            "--ranges",
            "spf:_spf.google.com",
            "--since",
            "7d",
        ])
        .unwrap();
        let Invocation::Audit(a) = cli.invocation() else {
            panic!("not audit")
        };
        assert_eq!(
            a.logs,
            [
                LogSource::File("/var/log/mail.log.1.gz".into()),
                LogSource::Stdin
            ]
        );
        assert_eq!(a.list.options.cache_dir, None, "audit keeps no copies");
        assert_eq!(a.since, Some(Since::Ago(Duration::from_secs(7 * 86_400))));
        assert_eq!((a.top, a.json), (DEFAULT_TOP, false));
        for bad in [
            &["audit", "--ranges", "a"][..],
            &["audit", "--mta-log", "m"],
            &["audit", "--mta-log", "", "--ranges", "a"],
            &[
                "audit",
                "--mta-log",
                "m",
                "--ranges",
                "a",
                "--since",
                "soon",
            ],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn doctor_takes_domains_and_the_dns_server() {
        let cli = parse(&[
            "doctor",
            "--domain",
            "Example.COM",
            "example.net.",
            "--dns-server",
            "127.0.0.1:5353",
            "--check",
        ])
        .unwrap();
        let Invocation::Doctor(d) = cli.invocation() else {
            panic!("not doctor")
        };
        assert_eq!(d.domains, ["example.com", "example.net"]);
        assert_eq!(d.options.spf.servers, ["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(d.options.cache_dir, None, "doctor keeps no copies");
        assert!(d.check && d.logs.is_empty());
        for bad in [
            &["doctor"][..],
            &["doctor", "--domain", "no_such thing"],
            &["doctor", "--domain", "a.example", "--since", "7d"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn refresh_defaults() {
        let cli = parse(&["refresh", "--ranges", "a"]).unwrap();
        let Command::Refresh(r) = cli.command else {
            panic!("not refresh")
        };
        assert_eq!(r.guard.guard(), Guard::DEFAULT);
        assert!(!r.guard.force && !r.diff);
        let cli = parse(&[
            "refresh",
            "--ranges",
            "a",
            "--max-grow",
            "2.5",
            "--max-allow-v4",
            "/12",
            "--max-allow-v6",
            "32",
        ])
        .unwrap();
        let Command::Refresh(r) = cli.command else {
            panic!("not refresh")
        };
        assert_eq!(
            (r.guard.max_grow, r.guard.max_allow_v4, r.guard.max_allow_v6),
            (2.5, 12, 32)
        );
    }
}
