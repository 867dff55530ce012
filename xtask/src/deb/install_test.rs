//! The package's test under a real systemd: the .deb installed with
//! `dpkg -i` into a clean Debian 12 root booted under systemd-nspawn
//! ([`Container`]), its files checked, then the unit driven as an
//! administrator drives it. Needs root.
//!
//! On the container's `host0` (a veth; its other end is in the test's own
//! network namespace, never the machine's) with the container's own
//! addresses: the unit refuses to start unconfigured (exit 2) and is not
//! restarted; configured, `systemctl start` attaches the filter natively;
//! a denied SYN from the veth's far side to a listener on port 25 is
//! dropped and an allowed one answered; `systemctl kill -s KILL` restarts
//! it within RestartSec and the new run adopts the same link; `systemctl
//! stop` leaves the filter attached and enforcing; the journal shows each
//! event and no warning or error; `systemd-analyze security` scores the
//! unit as systemd runs it.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use mxgate_tests::{
    scenario::{ALLOWED_V4, ALLOWED_V6, DENIED_V4, DENIED_V6, RANGES, SERVER_V4, SERVER_V6},
    tcp::{ALLOWED_TIMEOUT, BANNER, DENIED_TIMEOUT, connect},
};

use super::{SBIN, container::Container, out_dir};
use crate::timing::Timings;

/// The unit under test.
const UNIT: &str = "mxgate.service";
/// The range file the test configures.
const RANGES_FILE: &str = "/etc/mxgate/ranges.txt";
/// A listener on port 25 inside: systemd's own socket, one `printf` of
/// the tests' banner per connection.
const SMTP_SOCKET: (&str, &str) = (
    "mxgate-test-smtp.socket",
    "[Socket]\nListenStream=25\nAccept=yes\n",
);
const SMTP_SERVICE: (&str, &str) = (
    "mxgate-test-smtp@.service",
    "[Service]\nExecStart=/usr/bin/printf \"220 mail.example.com ESMTP ready\\\\r\\\\n\"\n\
     StandardInput=socket\nStandardOutput=socket\n",
);
/// How long the unit may take to attach, stop, or show a journal line.
const UNIT_LIMIT: Duration = Duration::from_secs(60);
/// How much later than RestartSec the restarted run may be up.
const RESTART_SLACK: Duration = Duration::from_secs(5);

/// Boots `root` (the .deb already copied to `deb`, a path inside it),
/// installs the package and checks it and its unit; one line of what it
/// found.
pub fn run(root: &Path, deb: &str, t: &mut Timings) -> anyhow::Result<String> {
    let name = format!("{}{}", super::container::PREFIX, std::process::id());
    let console = out_dir().join("nspawn-console.log");
    let c = t.phase("boot Debian 12 under systemd-nspawn", |_| {
        Container::boot(root, &name, &console)
    })?;
    let unit = Unit { c: &c };
    let files = t.phase("dpkg -i, the installed files", |_| installed(&c, deb))?;
    t.phase("unconfigured: exit 2, no restart", |_| unit.unconfigured())?;
    let link = t.phase("configured: start, attach, enforce", |_| {
        configure(&c, root)?;
        unit.start()
    })?;
    let restart = t.phase("SIGKILL: restarted, same link", |_| unit.killed(&link))?;
    t.phase("systemctl stop: the filter stays", |_| unit.stopped(&link))?;
    let journal = t.phase("the journal", |_| unit.journal_is_clean())?;
    let security = t.phase("systemd-analyze verify and security", |_| unit.analyzed())?;
    t.phase("power off, remove the namespace and pins", |_| {
        drop(c);
        Ok(())
    })?;
    Ok(format!(
        "{files}; unconfigured: exit 2, not restarted; started: attached natively to host0 \
         (link {}), denied SYNs dropped, allowed answered; SIGKILL: restarted after {restart:.1} \
         s, same link; stop: the filter stays and drops; journal: {journal}; systemd-analyze \
         security: {security}",
        link.id
    ))
}

/// Installs the package and checks what it installed; a summary.
fn installed(c: &Container, deb: &str) -> anyhow::Result<String> {
    let systemd = c.sh("systemctl --version | head -n 1")?;
    c.sh(&format!("dpkg -i {deb} >/dev/null"))
        .context("dpkg -i in a clean Debian 12 root")?;
    let mut problems = Vec::new();
    let listed = c.sh("dpkg -L mxgate")?;
    for path in [
        SBIN,
        "/lib/systemd/system/mxgate.service",
        "/etc/default/mxgate",
        "/etc/cron.d/mxgate",
        "/usr/share/man/man1/mxgate.1.gz",
        "/usr/share/man/man1/mxgate-refresh.1.gz",
        "/usr/share/bash-completion/completions/mxgate",
        "/usr/share/zsh/vendor-completions/_mxgate",
        "/usr/share/fish/vendor_completions.d/mxgate.fish",
        "/var/lib/mxgate",
    ] {
        if !listed.lines().any(|l| l == path) {
            problems.push(format!("dpkg -L mxgate does not list {path}"));
        }
    }
    let conffiles = c.sh("dpkg-query -W -f='${Conffiles}' mxgate")?;
    for conffile in ["/etc/default/mxgate", "/etc/cron.d/mxgate"] {
        if !conffiles.contains(conffile) {
            problems.push(format!("{conffile} is not a conffile: {conffiles}"));
        }
    }
    let mode = c.sh("stat -c '%a %U' /var/lib/mxgate")?;
    if mode.trim() != "700 root" {
        problems.push(format!("/var/lib/mxgate is {}, not 700 root", mode.trim()));
    }
    let cron = c.sh("cat /etc/cron.d/mxgate")?;
    let active: Vec<&str> = cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains('='))
        .collect();
    if !active.is_empty() {
        problems.push(format!(
            "the cron file runs something before the admin names a source: {active:?}"
        ));
    }
    let version = c.sh(&format!("{SBIN} --version"))?;
    if !version.starts_with("mxgate ") {
        problems.push(format!("mxgate --version printed {version:?}"));
    }
    // Installing enables and starts nothing.
    let state = c
        .output(&format!(
            "systemctl is-enabled {UNIT}; systemctl is-active {UNIT}"
        ))?
        .stdout;
    let state = String::from_utf8_lossy(&state);
    if state.split_whitespace().collect::<Vec<_>>() != ["disabled", "inactive"] {
        problems.push(format!(
            "installing the package enabled or started {UNIT} (is-enabled, is-active: {})",
            state.trim().replace('\n', ", ")
        ));
    }
    if !problems.is_empty() {
        bail!("the installed package:\n  {}", problems.join("\n  "));
    }
    Ok(format!(
        "{} installs under {} (enables nothing); files, conffiles, /var/lib/mxgate 0700 ok",
        version.trim(),
        systemd.trim()
    ))
}

/// Configures the unit as an administrator does (the interface and the
/// range file in /etc/default/mxgate, the packaged options kept), adds the
/// port 25 listener, and addresses both ends of the veth.
fn configure(c: &Container, root: &Path) -> anyhow::Result<()> {
    let write = |path: &str, text: &str| -> anyhow::Result<()> {
        let on_host = root.join(path.trim_start_matches('/'));
        if let Some(dir) = on_host.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&on_host, text).with_context(|| format!("writing {path} in the root"))
    };
    write(RANGES_FILE, RANGES)?;
    let defaults = c.sh("cat /etc/default/mxgate")?;
    let mut configured = String::new();
    for line in defaults.lines() {
        let line = if line.starts_with("MXGATE_IFACES=") {
            "MXGATE_IFACES=\"host0\"".to_owned()
        } else if line.starts_with("MXGATE_RANGES=") {
            format!("MXGATE_RANGES=\"{RANGES_FILE}\"")
        } else {
            line.to_owned()
        };
        configured.push_str(&line);
        configured.push('\n');
    }
    write("/etc/default/mxgate", &configured)?;
    for (unit, text) in [SMTP_SOCKET, SMTP_SERVICE] {
        write(&format!("/etc/systemd/system/{unit}"), text)?;
    }
    c.sh(&format!(
        "systemctl daemon-reload && systemctl start {}",
        SMTP_SOCKET.0
    ))?;

    // The container's side: its own addresses on host0, the clients
    // routed over it.
    c.ip(&["link", "set", "host0", "up"])?;
    c.ip(&["addr", "add", &format!("{SERVER_V4}/32"), "dev", "host0"])?;
    c.ip(&[
        "addr",
        "add",
        &format!("{SERVER_V6}/128"),
        "dev",
        "host0",
        "nodad",
    ])?;
    for client in [ALLOWED_V4, DENIED_V4, ALLOWED_V6, DENIED_V6] {
        c.ip(&["route", "add", client, "dev", "host0"])?;
    }
    // The far side, in the test's namespace: the clients.
    let host_if = c.host_if()?;
    let host = c.host();
    host.ip(&["link", "set", &host_if, "up"])?;
    for client in [ALLOWED_V4, DENIED_V4, ALLOWED_V6, DENIED_V6] {
        let cidr = if client.contains(':') {
            format!("{client}/128")
        } else {
            format!("{client}/32")
        };
        let mut args = vec!["addr", "add", cidr.as_str(), "dev", host_if.as_str()];
        if client.contains(':') {
            args.push("nodad");
        }
        host.ip(&args)?;
    }
    for server in [SERVER_V4, SERVER_V6] {
        host.ip(&["route", "add", server, "dev", &host_if])?;
    }
    Ok(())
}

/// The XDP link the unit's run attached.
struct Link {
    id: String,
    program: String,
}

/// mxgate.service in the container.
struct Unit<'a> {
    c: &'a Container,
}

impl Unit<'_> {
    /// `systemctl show` of these properties.
    fn show(&self, properties: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
        let mut script = String::from("systemctl show");
        for p in properties {
            script.push_str(&format!(" -p {p}"));
        }
        script.push_str(&format!(" {UNIT}"));
        Ok(self
            .c
            .sh(&script)?
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// Waits until the properties satisfy `done`; fails naming `what`.
    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        properties: &[&str],
        done: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let started = Instant::now();
        loop {
            let shown = self.show(properties)?;
            if done(&shown) {
                return Ok(shown);
            }
            if started.elapsed() > limit {
                bail!(
                    "{UNIT} did not {what} within {} s ({shown:?}); its journal:\n{}",
                    limit.as_secs(),
                    self.journal().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `journalctl -u mxgate`: systemd's lines about the unit and mxgate's.
    fn journal(&self) -> anyhow::Result<String> {
        self.c
            .sh(&format!("journalctl --quiet --no-pager -o cat -u {UNIT}"))
    }

    /// Waits until the journal has `count` of mxgate's lines matching
    /// `wanted`; returns the last of them.
    fn logged(
        &self,
        what: &str,
        count: usize,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            let journal = self.journal()?;
            let found: Vec<&str> = journal.lines().filter(|l| wanted(l)).collect();
            if found.len() >= count {
                return Ok(found[count - 1].to_owned());
            }
            if started.elapsed() > UNIT_LIMIT {
                bail!(
                    "the journal shows no {what} within {} s:\n{journal}",
                    UNIT_LIMIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// As installed (MXGATE_IFACES and MXGATE_RANGES empty) the unit
    /// refuses to start, exit 2, and RestartPreventExitStatus keeps systemd
    /// from restarting it.
    fn unconfigured(&self) -> anyhow::Result<()> {
        // Type=exec: `systemctl start` may return before run exits.
        let _ = self.c.output(&format!("systemctl start {UNIT}"))?;
        let shown = self.wait_for(
            "stop after an unconfigured start",
            UNIT_LIMIT,
            &["ActiveState", "SubState", "ExecMainStatus", "NRestarts"],
            |s| {
                s.get("ActiveState")
                    .is_some_and(|a| a == "failed" || a == "inactive")
            },
        )?;
        let expected = [
            ("ActiveState", "failed"),
            ("SubState", "failed"),
            ("ExecMainStatus", "2"),
            ("NRestarts", "0"),
        ];
        if expected
            .iter()
            .any(|(k, v)| shown.get(*k).map(String::as_str) != Some(v))
        {
            bail!(
                "started unconfigured, {UNIT} should fail with exit 2 and stay down \
                 ({expected:?}); systemd shows {shown:?}; its journal:\n{}",
                self.journal()?
            );
        }
        self.c.sh(&format!("systemctl reset-failed {UNIT}"))?;
        Ok(())
    }

    /// `systemctl start`: run attaches natively to host0 and enforces.
    fn start(&self) -> anyhow::Result<Link> {
        self.c.sh(&format!("systemctl start {UNIT}"))?;
        let line = self.logged("`attached iface=host0 … already=false` line", 1, |l| {
            event(l) == Some("attached") && field(l, "iface") == Some("host0")
        })?;
        if field(&line, "already") != Some("false") || field(&line, "mode") != Some("native") {
            bail!("the first start should attach host0 natively, anew: {line}");
        }
        let link = Link {
            id: field(&line, "link").unwrap_or_default().to_owned(),
            program: field(&line, "program").unwrap_or_default().to_owned(),
        };
        self.kernel_runs(&link)?;
        self.enforces(true)?;
        let stats = self.c.sh(&format!("{SBIN} stats --json"))?;
        let stats: serde_json::Value =
            serde_json::from_str(&stats).context("parsing mxgate stats --json")?;
        for family in ["v4", "v6"] {
            let counts = &stats[family]["counts"];
            if counts["dropped"] != 1 || counts["allowed"] != 1 {
                bail!(
                    "after one denied and one allowed SYN per family, mxgate stats counts \
                     {family}: {counts}"
                );
            }
        }
        Ok(link)
    }

    /// The kernel runs `link`'s program on host0 in native (driver) mode,
    /// and `mxgate status` shows that link.
    fn kernel_runs(&self, link: &Link) -> anyhow::Result<()> {
        let shown = self.c.ip(&["-d", "link", "show", "dev", "host0"])?;
        let native = shown
            .lines()
            .next()
            .is_some_and(|l| l.split_whitespace().any(|w| w == "xdp"));
        if !native || !shown.contains(&format!("prog/xdp id {} ", link.program)) {
            bail!(
                "the kernel should run program {} natively (`xdp`) on host0:\n{shown}",
                link.program
            );
        }
        let status = self.c.sh(&format!("{SBIN} status --json"))?;
        let status: serde_json::Value =
            serde_json::from_str(&status).context("parsing mxgate status --json")?;
        let ifaces = &status["interfaces"];
        if ifaces.as_array().map(Vec::len) != Some(1)
            || ifaces[0]["iface"] != "host0"
            || ifaces[0]["link_id"].as_u64().map(|id| id.to_string()) != Some(link.id.clone())
            || ifaces[0]["mode"] != "native"
        {
            bail!(
                "mxgate status should show link {} on host0, native: {ifaces}",
                link.id
            );
        }
        Ok(())
    }

    /// From the veth's far side: SYNs to port 25 from the denied sources
    /// are dropped, from the allowed ones answered (each family, or IPv4
    /// only when `both` is false).
    fn enforces(&self, both: bool) -> anyhow::Result<()> {
        let mut cases = vec![(ALLOWED_V4, DENIED_V4, SERVER_V4)];
        if both {
            cases.push((ALLOWED_V6, DENIED_V6, SERVER_V6));
        }
        for (allowed, denied, server) in cases {
            let dst = SocketAddr::new(server.parse::<IpAddr>()?, 25);
            match connect(self.c.host(), allowed.parse()?, dst, ALLOWED_TIMEOUT) {
                Ok(banner) if banner == BANNER => {}
                Ok(other) => bail!("{allowed} → {dst}: answered {other:?}, not the listener"),
                Err(e) => bail!("{allowed} (in the list) → {dst}: no answer ({e})"),
            }
            match connect(self.c.host(), denied.parse()?, dst, DENIED_TIMEOUT) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Ok(banner) => {
                    bail!("{denied} (not in the list) → {dst}: answered ({banner:?}), not dropped")
                }
                Err(e) => bail!(
                    "{denied} (not in the list) → {dst}: failed otherwise than by a timeout \
                     ({e}); a dropped SYN gets no answer"
                ),
            }
        }
        Ok(())
    }

    /// `systemctl kill -s KILL`: the filter goes on dropping meanwhile;
    /// systemd restarts the unit after RestartSec; the new run adopts the
    /// same link. The restart's delay, in seconds.
    fn killed(&self, link: &Link) -> anyhow::Result<f64> {
        let before = self.show(&["MainPID", "RestartUSec"])?;
        let old_pid = before.get("MainPID").cloned().unwrap_or_default();
        let restart_sec = before
            .get("RestartUSec")
            .and_then(|s| span(s))
            .with_context(|| format!("systemctl show: RestartUSec in {before:?}"))?;
        self.c.sh(&format!("systemctl kill -s KILL {UNIT}"))?;
        let killed = Instant::now();
        self.enforces(false)
            .context("while the unit was down after SIGKILL")?;
        let after = self.wait_for(
            "restart after SIGKILL",
            restart_sec + RESTART_SLACK,
            &["MainPID", "ActiveState", "NRestarts"],
            |s| {
                s.get("ActiveState").is_some_and(|a| a == "active")
                    && s.get("MainPID").is_some_and(|p| p != "0" && *p != old_pid)
            },
        )?;
        let delay = killed.elapsed().as_secs_f64();
        if after.get("NRestarts").map(String::as_str) != Some("1") {
            bail!("one SIGKILL should make one restart: {after:?}");
        }
        let line = self.logged("second `attached iface=host0` line", 2, |l| {
            event(l) == Some("attached") && field(l, "iface") == Some("host0")
        })?;
        if field(&line, "already") != Some("true")
            || field(&line, "link") != Some(link.id.as_str())
            || field(&line, "program") != Some(link.program.as_str())
        {
            bail!(
                "the restarted run should adopt link {} (program {}): {line}",
                link.id,
                link.program
            );
        }
        self.kernel_runs(link)?;
        self.enforces(false)?;
        Ok(delay)
    }

    /// `systemctl stop`: run stops cleanly (exit 0, no restart) and the
    /// filter stays attached and dropping.
    fn stopped(&self, link: &Link) -> anyhow::Result<()> {
        self.c.sh(&format!("systemctl stop {UNIT}"))?;
        let shown = self.show(&["ActiveState", "Result", "ExecMainStatus"])?;
        if shown.get("ActiveState").map(String::as_str) != Some("inactive")
            || shown.get("Result").map(String::as_str) != Some("success")
        {
            bail!("systemctl stop should end the unit cleanly: {shown:?}");
        }
        self.logged("`stopped signal=SIGTERM` line", 1, |l| {
            event(l) == Some("stopped") && field(l, "signal") == Some("SIGTERM")
        })?;
        self.kernel_runs(link)
            .context("after systemctl stop, the filter should stay")?;
        self.enforces(false)
    }

    /// The journal holds each event of the run, systemd's restart, and no
    /// warning or error; a summary.
    fn journal_is_clean(&self) -> anyhow::Result<String> {
        let journal = self.journal()?;
        let lines: Vec<&str> = journal.lines().filter(|l| event(l).is_some()).collect();
        let bad: Vec<&&str> = lines
            .iter()
            .filter(|l| matches!(field(l, "level"), Some("warn" | "error")))
            .collect();
        if !bad.is_empty() {
            bail!(
                "with the packaged defaults, the journal should hold no warning or error:\n{}",
                bad.iter()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        let mut missing = Vec::new();
        for (what, count) in [("attached", 2), ("metrics_unavailable", 2), ("stopped", 1)] {
            if lines.iter().filter(|l| event(l) == Some(what)).count() != count {
                missing.push(format!("{count} `{what}`"));
            }
        }
        for systemd in ["code=killed, status=9/KILL", "Scheduled restart job"] {
            if !journal.contains(systemd) {
                missing.push(format!("systemd's {systemd:?}"));
            }
        }
        if !missing.is_empty() {
            bail!("the journal should show {}:\n{journal}", missing.join(", "));
        }
        let events: Vec<&str> = lines.iter().filter_map(|l| event(l)).collect();
        Ok(format!("{} (no warning or error)", events.join(", ")))
    }

    /// `systemd-analyze verify` and `security` of the unit systemd loaded;
    /// the exposure score, which must stay OK or better.
    fn analyzed(&self) -> anyhow::Result<String> {
        self.c
            .sh("systemd-analyze verify /lib/systemd/system/mxgate.service")
            .context("systemd-analyze verify")?;
        let security = self
            .c
            .sh(&format!("systemd-analyze security --no-pager {UNIT}"))?;
        let score = security
            .lines()
            .find_map(|l| l.split_once("Overall exposure level for mxgate.service:"))
            .map(|(_, score)| score.trim().to_owned())
            .with_context(|| format!("systemd-analyze security printed no score:\n{security}"))?;
        // `3.7 OK 🙂`: the number and the word.
        let score: Vec<&str> = score.split_whitespace().take(2).collect();
        if !matches!(score.get(1), Some(&"SAFE" | &"OK")) {
            bail!(
                "systemd-analyze security rates {UNIT} {}, worse than OK:\n{security}",
                score.join(" ")
            );
        }
        Ok(score.join(" "))
    }
}

/// The `event=` of one of mxgate's logfmt lines.
fn event(line: &str) -> Option<&str> {
    line.starts_with("ts=").then(|| field(line, "event"))?
}

/// A logfmt field's unquoted value.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// A systemd time span as `systemctl show` prints it (`5s`, `100ms`,
/// `1min 30s`).
fn span(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let digits = part.find(|c: char| !c.is_ascii_digit())?;
        let (n, unit) = part.split_at(digits);
        let n: u64 = n.parse().ok()?;
        total += match unit {
            "us" => Duration::from_micros(n),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "min" => Duration::from_secs(60 * n),
            "h" => Duration::from_secs(3600 * n),
            _ => return None,
        };
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_as_systemctl_prints_them() {
        assert_eq!(span("5s"), Some(Duration::from_secs(5)));
        assert_eq!(span("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(span("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(span("5 s"), None);
        assert_eq!(span("infinity"), None);
    }

    #[test]
    fn logfmt_fields_of_mxgates_lines_only() {
        let line = "ts=2026-12-04T16:46:13.480Z level=info event=attached iface=host0 \
                    mode=native link=159 program=613 already=false";
        assert_eq!(event(line), Some("attached"));
        assert_eq!(field(line, "link"), Some("159"));
        assert_eq!(field(line, "already"), Some("false"));
        assert_eq!(
            event("Started mxgate.service - mxgate: event=attached"),
            None
        );
    }
}
