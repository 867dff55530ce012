//! Running commands: each is echoed before it runs, and a failure names it.

use std::{
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
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(root());
    if let Some(path) = path_with_cargo_bin() {
        cmd.env("PATH", path);
    }
    cmd
}

/// [`command`] from one line of space-separated words (no quoting).
pub fn command_line(line: &str) -> Command {
    let mut words = line.split_whitespace();
    let program = words.next().unwrap_or_default();
    command(program, &words.collect::<Vec<_>>())
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

fn describe(cmd: &Command) -> String {
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
    run(command_line("cargo build --release --package filter-user"))?;
    Ok(root().join("target/release/mxgate"))
}
