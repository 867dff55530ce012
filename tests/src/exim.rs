//! A private Exim daemon (Debian's exim4-daemon-light, unpacked under
//! target/exim4 by `cargo xtask setup`: as a package it conflicts with
//! Postfix) in a test's namespace: its own configuration, spool and logs
//! in a temporary directory, never /etc/exim4 or a running daemon. It
//! accepts mail for example.test on port 25 and keeps it queued (the
//! logs, not the delivery, are what the tests read); it refuses senders
//! at spam.example, relaying, and messages whose subject says
//! `reject-me`. Stopped on drop.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{netns::Netns, postfix::DOMAIN};

/// The user Debian's Exim runs as (created by `cargo xtask setup`).
const USER: &str = "Debian-exim";

/// The Exim binary: `$MXGATE_EXIM`, else where `cargo xtask setup`
/// unpacks it.
pub fn binary() -> PathBuf {
    std::env::var_os("MXGATE_EXIM").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/exim4/root/usr/sbin/exim4"
            ))
        },
        PathBuf::from,
    )
}

/// A running Exim daemon.
pub struct Exim {
    dir: tempfile::TempDir,
}

impl Exim {
    /// Configures and starts a daemon listening on port 25 in `ns`, and
    /// waits until it listens.
    pub fn start(ns: &Netns) -> anyhow::Result<Self> {
        let exim = binary();
        if !exim.exists() {
            bail!(
                "{} is missing: run `cargo xtask setup` (it unpacks Debian's exim4-daemon-light \
                 there)",
                exim.display()
            );
        }
        let dir = tempfile::tempdir().context("a directory for Exim")?;
        let root = dir.path();
        // Exim's processes drop to its user, which must reach the spool.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
        for sub in ["spool", "log"] {
            std::fs::create_dir(root.join(sub))?;
            let status = Command::new("chown")
                .arg(format!("{USER}:"))
                .arg(root.join(sub))
                .status()?;
            if !status.success() {
                bail!(
                    "chown {USER} {} failed (does `cargo xtask setup` need to run?)",
                    sub
                );
            }
        }
        let r = root.display();
        let config = format!(
            "exim_path = {exim}\n\
             primary_hostname = mail.{DOMAIN}\n\
             domainlist local_domains = {DOMAIN}\n\
             spool_directory = {r}/spool\n\
             log_file_path = {r}/log/%slog\n\
             pid_file_path = {r}/exim.pid\n\
             daemon_smtp_ports = 25\n\
             local_interfaces = <; 0.0.0.0 ; ::0\n\
             host_lookup =\n\
             rfc1413_hosts =\n\
             keep_environment =\n\
             tls_advertise_hosts =\n\
             queue_only = true\n\
             log_selector = +smtp_connection +incoming_interface +incoming_port\n\
             acl_smtp_rcpt = acl_check_rcpt\n\
             acl_smtp_data = acl_check_data\n\
             \n\
             begin acl\n\
             acl_check_rcpt:\n\
             \x20 deny    senders = *@spam.example\n\
             \x20         message = sender refused\n\
             \x20 accept  domains = +local_domains\n\
             \x20 deny    message = relay not permitted\n\
             acl_check_data:\n\
             \x20 deny    condition = ${{if match{{$h_subject:}}{{reject-me}}}}\n\
             \x20         message = message refused\n\
             \x20 accept\n\
             \n\
             begin routers\n\
             blackhole:\n\
             \x20 driver = redirect\n\
             \x20 domains = +local_domains\n\
             \x20 data = :blackhole:\n",
            exim = exim.display()
        );
        std::fs::write(root.join("exim.conf"), config)?;
        let me = Self { dir };
        let out = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(&exim)
            .arg("-C")
            .arg(me.dir.path().join("exim.conf"))
            .arg("-bd")
            .output()
            .context("starting Exim")?;
        if !out.status.success() {
            bail!(
                "exim -bd failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                me.log()
            );
        }
        // It forks into the background; it listens once it says so.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !me.log().contains("listening for SMTP on") {
            if Instant::now() > deadline {
                bail!("Exim did not start listening within 10 s:\n{}", me.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(me)
    }

    /// Exim's main log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log/mainlog")
    }

    /// Its main log's text.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until `count` SMTP sessions have ended (their connection's
    /// closing line is in the log), or fails after 10 s.
    pub fn wait_sessions(&self, count: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ended = self
                .log()
                .lines()
                .filter(|l| {
                    l.contains("SMTP connection from")
                        && (l.contains(" closed by ") || l.contains(" lost"))
                })
                .count();
            if ended >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{ended} of {count} SMTP sessions ended after 10 s:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.path().join("exim.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| *p > 1) {
            // SAFETY: kill(2) on the daemon this helper started, by its pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}
