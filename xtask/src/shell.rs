//! Running commands: each is echoed before it runs, and a failure names it.
//! Builds run as the invoking user; what needs root (loading XDP programs,
//! namespaces, apt, debootstrap) goes through [`as_root`], which adds
//! `sudo -E` when xtask is not already root.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask's parent directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// A command run from the workspace root with `~/.cargo/bin` on PATH (where
/// setup installs bpf-linker).
pub fn command<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(root());
    if let Some(path) = path_with_cargo_bin() {
        cmd.env("PATH", path);
    }
    cmd
}

/// `cargo ARGS` from the workspace root.
pub fn cargo<S: AsRef<OsStr>>(args: &[S]) -> Command {
    command("cargo", args)
}

/// Whether xtask runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `cmd` as root: itself when xtask is root, else through `sudo -E` (the
/// environment, PATH included, is kept; so are its working directory and
/// the variables set on it).
pub fn as_root(cmd: Command) -> Command {
    if is_root() {
        return cmd;
    }
    let mut sudo = Command::new("sudo");
    // `env` sets the command's own variables: sudo resets PATH otherwise.
    sudo.args(["-E", "env"]);
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let mut pair = key.to_os_string();
            pair.push("=");
            pair.push(value);
            sudo.arg(pair);
        }
    }
    sudo.arg(cmd.get_program()).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        sudo.current_dir(dir);
    }
    sudo
}

/// Runs `cmd`, echoing it; fails if it fails.
pub fn run(mut cmd: Command) -> anyhow::Result<()> {
    eprintln!("==> {}", describe(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(&cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or `None` if it cannot run or fails.
pub fn output(mut cmd: Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, echoing it, and returns its stdout; fails if it fails.
pub fn stdout(mut cmd: Command) -> anyhow::Result<String> {
    eprintln!("==> {}", describe(&cmd));
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", describe(&cmd)))?;
    if !out.status.success() {
        bail!("{} failed ({})", describe(&cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The command as one line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// `$CARGO_HOME/bin` (default `~/.cargo/bin`).
pub fn cargo_bin() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    Some(home.join("bin"))
}

fn path_with_cargo_bin() -> Option<std::ffi::OsString> {
    let bin = cargo_bin()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return None;
    }
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path))).ok()
}

/// Builds target/release/mxgate and returns its path.
pub fn build_release() -> anyhow::Result<PathBuf> {
    run(cargo(&["build", "--release", "--package", "filter-user"]))?;
    Ok(root().join("target/release/mxgate"))
}

/// Today's date, UTC, as YYYY-MM-DD.
pub fn today() -> String {
    output(command("date", &["-u", "+%F"]))
        .map(|d| d.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
