//! A pristine Debian 12 root for the package test: made once with
//! debootstrap from the machine's own Debian mirror and apt proxy
//! ([`crate::apt`]), kept as a tarball under target/debian, and unpacked
//! fresh for each run.

use std::{ffi::OsStr, path::Path};

use anyhow::{Context as _, bail};

use super::out_dir;
use crate::{
    apt,
    shell::{self, as_root, command, run},
};

/// The Debian release the package test installs into.
pub const SUITE: &str = "bookworm";
/// What the root has besides debootstrap's minimal base: systemd (booted
/// as its PID 1), dbus (`systemd-analyze security` asks systemd over it),
/// man-db (the unit's `Documentation=` pages).
const INCLUDE: &[&str] = &["systemd", "dbus", "man-db"];

/// Unpacks a pristine root into `dir` (replacing what is there), making
/// the tarball first if this is the first run or [`INCLUDE`] changed.
pub fn clean(dir: &Path) -> anyhow::Result<()> {
    // The tarball's name says what it holds: a changed list makes a new one.
    let tarball = out_dir().join(format!("{SUITE}-minbase+{}.tar", INCLUDE.join("+")));
    if !tarball.exists() {
        debootstrap(&tarball)?;
    }
    remove(dir)?;
    std::fs::create_dir_all(dir)?;
    run(as_root(command(
        "tar",
        &[
            OsStr::new("-C"),
            dir.as_os_str(),
            OsStr::new("-xf"),
            tarball.as_os_str(),
        ],
    )))
}

/// `rm -rf dir` as root (the root's files are root's).
pub fn remove(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        run(as_root(command(
            "rm",
            &[OsStr::new("-rf"), dir.as_os_str()],
        )))?;
    }
    Ok(())
}

/// debootstrap into a scratch directory, then tar it as `tarball`.
fn debootstrap(tarball: &Path) -> anyhow::Result<()> {
    let mirrors = apt::machine()?;
    let mirror = &mirrors.for_suite(SUITE)?.uri;
    let build = out_dir().join(format!("{SUITE}-debootstrap"));
    remove(&build)?;
    let include = format!("--include={}", INCLUDE.join(","));
    let cmd = apt::with_proxy(command(
        "debootstrap",
        &[
            OsStr::new("--variant=minbase"),
            OsStr::new(&include),
            OsStr::new(SUITE),
            build.as_os_str(),
            OsStr::new(mirror),
        ],
    ));
    quiet(as_root(cmd)).with_context(|| {
        format!(
            "making a Debian 12 root with debootstrap from {mirror} (the machine's apt sources)"
        )
    })?;
    let partial = tarball.with_extension("tar.partial");
    run(as_root(command(
        "tar",
        &[
            OsStr::new("-C"),
            build.as_os_str(),
            OsStr::new("-cf"),
            partial.as_os_str(),
            OsStr::new("."),
        ],
    )))?;
    std::fs::rename(&partial, tarball)?;
    remove(&build)
}

/// Runs `cmd` with its output in target/debian/debootstrap.log, shown only
/// if it fails.
fn quiet(mut cmd: std::process::Command) -> anyhow::Result<()> {
    eprintln!(
        "==> {} (output in target/debian/debootstrap.log)",
        shell::describe(&cmd)
    );
    let log = out_dir().join("debootstrap.log");
    let file = std::fs::File::create(&log)?;
    let status = cmd
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("starting {}", shell::describe(&cmd)))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        bail!(
            "{} failed ({status}); last lines of {}:\n{}",
            shell::describe(&cmd),
            log.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    Ok(())
}
