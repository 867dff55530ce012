//! Exim for the audit tests, beside Postfix. Debian's `exim4-daemon-light`
//! and `postfix` both provide `mail-transport-agent` and conflict as
//! packages, so Exim is not installed: its package is fetched with `apt-get
//! download` and unpacked with `dpkg-deb -x` under target/exim4 (as the
//! kernel matrix does with Debian's kernels), and only what its binary
//! links against is installed. The binary looks its user up by the name
//! Debian builds it with, `Debian-exim`, which setup creates as Debian's
//! `exim4-base` does (a system user without a login). Each test runs its
//! own daemon with its own configuration and spool (tests/src/exim.rs);
//! nothing of the machine's mail setup changes.

use std::{ffi::OsStr, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::shell::{self, as_root, command, output, root};

/// The package, as Debian names it.
pub const PACKAGE: &str = "exim4-daemon-light";
/// The user Debian's Exim runs as.
pub const USER: &str = "Debian-exim";
/// Dependencies of the package that are not its binary's: the rest of a
/// Debian Exim installation (which conflicts with Postfix) and debconf.
const NOT_NEEDED: &[&str] = &["exim4-base", "debconf", "debconf-2.0", "cdebconf"];

/// Where the package is unpacked.
pub fn dir() -> PathBuf {
    root().join("target/exim4")
}

/// The Exim binary the tests run.
pub fn binary() -> PathBuf {
    dir().join("root/usr/sbin/exim4")
}

/// What is missing for Exim to run, if anything.
pub fn missing() -> Option<String> {
    if !binary().exists() {
        return Some(format!(
            "Exim ({PACKAGE}, unpacked under {}: as a package it conflicts with Postfix)",
            dir().display()
        ));
    }
    let ldd = output(command("ldd", &[binary()])).unwrap_or_default();
    if ldd.is_empty() || ldd.contains("not found") {
        return Some(format!(
            "the libraries {} links against",
            binary().display()
        ));
    }
    if output(command("getent", &["passwd", USER])).is_none_or(|l| l.trim().is_empty()) {
        return Some(format!("the system user {USER} that Debian's Exim runs as"));
    }
    None
}

/// Fetches and unpacks the package, installs what its binary links
/// against, creates its user.
pub fn install(install_packages: impl Fn(&[&str]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let debs = dir().join("deb");
    std::fs::create_dir_all(&debs)?;
    for entry in std::fs::read_dir(&debs)? {
        std::fs::remove_file(entry?.path())?;
    }
    let download = || {
        let mut cmd = command("apt-get", &["download", PACKAGE]);
        cmd.current_dir(&debs);
        shell::run(cmd)
    };
    if download().is_err() {
        shell::run(as_root(command("apt-get", &["update"])))?;
        download().with_context(|| format!("apt-get download {PACKAGE}"))?;
    }
    let deb = std::fs::read_dir(&debs)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", debs.display()))?;
    let unpacked = dir().join("root");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked)?;
    }
    shell::run(command(
        "dpkg-deb",
        &[OsStr::new("-x"), deb.as_os_str(), unpacked.as_os_str()],
    ))?;
    let depends = shell::stdout(command(
        "apt-cache",
        &[
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            PACKAGE,
        ],
    ))?;
    let libraries: Vec<&str> = depends
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Depends: "))
        .map(str::trim)
        .filter(|p| !p.starts_with('<') && !NOT_NEEDED.contains(p))
        .collect();
    if libraries.is_empty() {
        bail!("apt-cache depends {PACKAGE} named no library");
    }
    install_packages(&libraries)?;
    if output(command("getent", &["passwd", USER])).is_none_or(|l| l.trim().is_empty()) {
        shell::run(as_root(command(
            "adduser",
            &[
                "--system",
                "--group",
                "--quiet",
                "--home",
                "/var/spool/exim4",
                "--no-create-home",
                "--disabled-login",
                "--force-badname",
                USER,
            ],
        )))?;
    }
    if let Some(still) = missing() {
        bail!("after installing Exim, still missing: {still}");
    }
    Ok(())
}
