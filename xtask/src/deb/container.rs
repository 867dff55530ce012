//! A Debian root booted under systemd-nspawn, systemd its PID 1: the
//! packaged unit under a real service manager. Needs root.
//!
//! Nothing of the machine is touched. nspawn runs inside a network
//! namespace of the test's own (its host-side veth is there, not in the
//! machine's namespace) and a mount namespace of its own, where a tmpfs on
//! /run/systemd/nspawn gives it the state directory that a machine whose
//! PID 1 is not systemd lacks. The container's /sys/fs/bpf is a directory
//! of the test's own on the machine's bpffs (`/sys/fs/bpf/NAME`), so the
//! packaged unit's default pin directory is not the machine's. Commands run
//! inside through nsenter (`--register=no`: there is no machined to ask).
//! [`Drop`] powers the container off (or kills it), and removes the
//! namespace, veths and pins, also when a check failed; nspawn gets SIGTERM
//! if xtask itself dies.

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use mxgate_tests::netns::Netns;

/// nspawn's state directory.
const NSPAWN_RUN: &str = "/run/systemd/nspawn";
/// Where the containers' pin directories go on the machine's bpffs.
const BPFFS: &str = "/sys/fs/bpf";
/// The prefix of every name the package test gives (namespace, pins,
/// machine), followed by xtask's pid.
pub const PREFIX: &str = "mxdeb-";
/// How long booting to `running` may take.
const BOOT_LIMIT: Duration = Duration::from_secs(120);
/// How long a clean power-off may take before the container is killed.
const POWEROFF_LIMIT: Duration = Duration::from_secs(30);
/// PATH inside.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A booted container.
pub struct Container {
    name: String,
    nspawn: Child,
    /// The container's PID 1, as the machine sees it.
    leader: u32,
    pins: PathBuf,
    console: PathBuf,
    made_nspawn_run: bool,
    /// The network namespace nspawn runs in: the host side of the veth.
    host: Netns,
}

impl Container {
    /// Boots `root` as machine `name` and waits until systemd says the
    /// system is running. nspawn's console goes to `console`.
    pub fn boot(root: &Path, name: &str, console: &Path) -> anyhow::Result<Self> {
        sweep_leftovers();
        let host = Netns::new(name)?;
        let pins = Path::new(BPFFS).join(name);
        if pins.exists() {
            std::fs::remove_dir_all(&pins)?;
        }
        std::fs::create_dir(&pins).with_context(|| format!("making {}", pins.display()))?;
        std::fs::set_permissions(&pins, std::fs::Permissions::from_mode(0o700))?;
        let made_nspawn_run = !Path::new(NSPAWN_RUN).exists();
        // The flags of issue 18: boot systemd; no machined and no host
        // systemd to register with or take a scope from; a veth pair
        // (host0 inside); every capability and the bpf(2) and
        // perf_event_open(2) calls (nspawn's seccomp filter lacks them),
        // as the unit's own sandbox then narrows them.
        let script = format!(
            "mkdir -p {NSPAWN_RUN} && mount -t tmpfs -o mode=0755 mxgate-package-test {NSPAWN_RUN} && \
             exec nsenter --net={netns} systemd-nspawn --directory={root} --machine={name} \
             --boot --register=no --keep-unit --network-veth --capability=all \
             '--system-call-filter=bpf perf_event_open' --bind={pins}:{BPFFS}",
            netns = host.path().display(),
            root = root.display(),
            pins = pins.display(),
        );
        let log = std::fs::File::create(console)
            .with_context(|| format!("creating {}", console.display()))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
        // no memory; it survives the execs down to nspawn, which powers
        // the container off on SIGTERM.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        eprintln!(
            "==> unshare --mount --propagation private sh -c '{script}' (console in {})",
            console.display()
        );
        let nspawn = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&pins);
                return Err(e).context("starting unshare and systemd-nspawn");
            }
        };
        let mut container = Self {
            name: name.to_owned(),
            nspawn,
            leader: 0,
            pins,
            console: console.to_owned(),
            made_nspawn_run,
            host,
        };
        container.leader = container.wait_for_leader()?;
        container.wait_until_running()?;
        Ok(container)
    }

    /// The network namespace holding the host side of the veth.
    pub fn host(&self) -> &Netns {
        &self.host
    }

    /// The host side's interface (nspawn names it `ve-` and the machine).
    pub fn host_if(&self) -> anyhow::Result<String> {
        let out = checked(
            Command::new("ip").args(["-n", self.host.name(), "-o", "link", "show"]),
            "listing the host side's links",
        )?;
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .find(|name| name != "lo")
            .with_context(|| format!("no veth in namespace {}: {out}", self.host.name()))
    }

    /// `ip ARGS` (the machine's iproute2) in the container's network
    /// namespace.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.leader))
            .args(["--net", "--", "ip"])
            .args(args);
        checked(&mut cmd, &format!("ip {} in the container", args.join(" ")))
    }

    /// Runs `script` with the container's sh, as its root, in all its
    /// namespaces; its stdout, or an error with its exit status and output.
    pub fn sh(&self, script: &str) -> anyhow::Result<String> {
        checked(
            &mut self.command(script),
            &format!("`{script}` in the container"),
        )
    }

    /// Runs `script` inside and returns what it did, whatever its status.
    pub fn output(&self, script: &str) -> anyhow::Result<Output> {
        self.command(script)
            .output()
            .with_context(|| format!("running `{script}` in the container"))
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.leader))
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--"])
            .args(["/usr/bin/env", "-i"])
            .arg(format!("PATH={PATH}"))
            .args(["LC_ALL=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"])
            .args(["/bin/sh", "-c", script])
            .stdin(Stdio::null());
        cmd
    }

    /// The container's PID 1: nspawn's child once it runs systemd.
    fn wait_for_leader(&mut self) -> anyhow::Result<u32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.nspawn.try_wait()? {
                bail!(
                    "systemd-nspawn exited ({status}) before the container booted:\n{}",
                    self.console_tail()
                );
            }
            if let Some(pid) = child_running(self.nspawn.id(), "systemd") {
                return Ok(pid);
            }
            if started.elapsed() > BOOT_LIMIT {
                bail!(
                    "systemd-nspawn started no systemd within {} s:\n{}",
                    BOOT_LIMIT.as_secs(),
                    self.console_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `systemctl is-system-running` to say `running` (or
    /// `degraded`: the failed units are printed, they are not mxgate's).
    fn wait_until_running(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut state = String::new();
        while started.elapsed() < BOOT_LIMIT {
            if let Some(status) = self.nspawn.try_wait()? {
                bail!(
                    "the container stopped while booting ({status}):\n{}",
                    self.console_tail()
                );
            }
            let out = self.output("systemctl is-system-running")?;
            state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            match state.as_str() {
                "running" => return Ok(()),
                "degraded" => {
                    let failed = self.sh("systemctl --failed --no-legend")?;
                    eprintln!("deb: the container booted degraded; failed units:\n{failed}");
                    return Ok(());
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        bail!(
            "the container did not finish booting within {} s (systemctl is-system-running: \
             {state:?}):\n{}",
            BOOT_LIMIT.as_secs(),
            self.console_tail()
        )
    }

    /// The last lines nspawn printed.
    fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "{} (last lines):\n{}",
            self.console.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes nspawn power the container off.
        signal(self.nspawn.id(), libc::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < POWEROFF_LIMIT {
            if matches!(self.nspawn.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(self.nspawn.try_wait(), Ok(None)) {
            eprintln!(
                "deb: container {} did not power off within {} s: killing it",
                self.name,
                POWEROFF_LIMIT.as_secs()
            );
            // Killing its PID 1 ends every process of its PID namespace.
            if self.leader != 0 {
                signal(self.leader, libc::SIGKILL);
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.pins) {
            eprintln!("deb: removing {}: {e}", self.pins.display());
        }
        if self.made_nspawn_run {
            let _ = std::fs::remove_dir(NSPAWN_RUN);
        }
        // The network namespace (and the veth's host side) goes with
        // `self.host`, dropped after this.
    }
}

/// Removes the namespaces and pin directories of earlier package tests
/// whose xtask is gone (killed before it could clean up).
fn sweep_leftovers() {
    let dead = |name: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if dead(&name) {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
    for entry in std::fs::read_dir(BPFFS).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if dead(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The child of `parent` whose command is `comm`, if there is one.
fn child_running(parent: u32, comm: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if ppid == Some(parent.to_string().as_str()) && &stat[open + 1..close] == comm {
            return Some(pid);
        }
    }
    None
}

/// Sends `sig` to process `pid`.
fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory preconditions; the pid is a child of
        // ours (nspawn) or the container's PID 1 that we started.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs `cmd`; its stdout, or an error naming `what` with its output.
fn checked(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}
