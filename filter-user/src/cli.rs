//! The command line, as DESIGN.md "Command line" fixes it.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{https::HttpsOptions, pins::DEFAULT_PIN_DIR, sources::SourceOptions, spf::SpfOptions};

/// Keeps spammers from going around your mail-security service: drops TCP
/// SYNs to port 25 from every source outside the service's IP ranges, in XDP.
#[derive(Debug, Parser)]
#[command(name = "mxgate", version, propagate_version = true)]
pub struct Cli {
    /// Where the filter's program, maps and links are pinned (on bpffs).
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,

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
}

/// `mxgate attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Interfaces to attach to.
    #[arg(long, required = true, num_args = 1.., value_name = "IF")]
    pub iface: Vec<String>,
    /// Range sources, all merged: file paths, `-` (standard input),
    /// `spf:DOMAIN`, `https://URL`, `m365:INSTANCE`.
    #[arg(long, required = true, num_args = 1.., value_name = "SRC")]
    pub ranges: Vec<String>,
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
    #[arg(long, num_args = 1.., value_name = "N", default_value = "25",
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
    #[arg(long, required = true, num_args = 1.., value_name = "SRC")]
    pub ranges: Vec<String>,
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
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub dns_timeout: u64,
    /// Seconds fetching one source may take, from first query to last byte.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub fetch_timeout: u64,
    /// Most DNS-querying terms an SPF chain may use (RFC 7208: 10).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub spf_lookup_limit: u32,
    /// Trust the CA certificates in this PEM file instead of the built-in
    /// roots, for `https://` and `m365:` sources.
    #[arg(long, value_name = "FILE")]
    pub https_ca: Option<PathBuf>,
    /// Largest download accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20)]
    pub max_download: u64,
    /// Where the last good copy of each remote source is kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/mxgate/cache")]
    pub cache_dir: PathBuf,
    /// When a remote source fails, use its last good copy instead of
    /// failing (a warning says so).
    #[arg(long)]
    pub use_cache_on_failure: bool,
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
            },
            https: HttpsOptions {
                timeout,
                max_bytes: self.max_download,
                ca_file: self.https_ca.clone(),
            },
            cache_dir: Some(self.cache_dir.clone()),
            use_cache_on_failure: self.use_cache_on_failure,
        }
    }
}

fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not an address or address:port"))
}

/// `mxgate refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The new list.
    #[command(flatten)]
    pub list: ListArgs,
    /// Refuse a list that takes access from more than this percent of the
    /// live entries.
    #[arg(long, value_name = "PCT", default_value_t = 50.0, value_parser = parse_percent)]
    pub max_shrink: f64,
    /// Apply even when --max-shrink refuses.
    #[arg(long)]
    pub force: bool,
    /// Print the change and apply nothing.
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
    #[arg(long, num_args = 1.., value_name = "SRC", requires = "iface")]
    pub ranges: Vec<String>,
    /// Filter settings, as for attach.
    #[command(flatten)]
    pub options: FilterOptions,
    /// How remote sources are fetched.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Seconds between stats lines.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How many denied sources a stats line names.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,
    /// Kernel log lines (aya-log) at this level or above are forwarded.
    /// Per-denial lines are debug, and exist only with attach --log-denials.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// Also write the metrics each interval to this file, in
    /// node_exporter's textfile format (written whole, then renamed).
    #[arg(long, value_name = "PATH")]
    pub prom_file: Option<PathBuf>,
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
    #[arg(long, value_enum, default_value_t = StatsFormat::Text)]
    pub format: StatsFormat,
    /// How many denied sources to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
}

/// How `stats` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
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

fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{value} is not between 0 and 100"));
    }
    Ok(value)
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
        assert_eq!(a.ranges, ["a.txt", "-"]);
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
        assert_eq!(e.exit_code(), 2, "usage errors exit 2 as DESIGN says");
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
        assert!(options.use_cache_on_failure);
        assert!(parse(&["refresh", "--ranges", "a", "--dns-server", "resolver"]).is_err());
    }

    #[test]
    fn refresh_defaults() {
        let cli = parse(&["refresh", "--ranges", "a"]).unwrap();
        let Command::Refresh(r) = cli.command else {
            panic!("not refresh")
        };
        assert_eq!(r.max_shrink, 50.0);
        assert!(!r.force && !r.diff);
    }
}
