//! Prerequisites: each is checked, and installed when missing. When this
//! cannot install something (not root, not Debian), it stops with the
//! exact command to run. With everything present it takes about a second.

use std::{path::Path, time::Instant};

use anyhow::{Context as _, bail};

use crate::shell::{self, command, output, root};

/// LLVM major shared by the pinned nightly and bpf-linker.
const LLVM_MAJOR: &str = "22";
/// bpf-linker release built against [`LLVM_MAJOR`].
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages: LLVM and what bpf-linker links against; the tools the
/// kernel tests and the demo run (ip, nsenter); the real MTA test's Postfix
/// and swaks (with IPv6 support); the benchmarks' nftables, ethtool and
/// /usr/bin/time; dnsmasq, the DNS server of the spf: source tests.
const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libclang-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "util-linux",
    "postfix",
    "swaks",
    "libio-socket-inet6-perl",
    "nftables",
    "ethtool",
    "time",
    "dnsmasq-base",
];
/// Postfix installed as a test tool only: no system instance is configured
/// or started (each test runs its own, in its own namespace).
const POSTFIX_PRESEED: &str = "postfix postfix/main_mailer_type select No configuration\n";
const BPFFS: &str = "/sys/fs/bpf";
/// The eBPF crate's pin, relative to the workspace root.
const EBPF_TOOLCHAIN: &str = "filter-ebpf/rust-toolchain.toml";

/// Checks and installs every prerequisite.
pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    for file in ["rust-toolchain.toml", EBPF_TOOLCHAIN] {
        toolchain(&root().join(file))?;
    }
    debian_packages(DEBIAN_PACKAGES)?;
    bpf_linker()?;
    bpffs()?;
    eprintln!(
        "setup: every prerequisite is present ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Fails unless running as root: loading XDP programs and making network
/// namespaces need CAP_BPF and CAP_NET_ADMIN.
pub fn require_root(task: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`cargo xtask {task}` loads XDP programs into the kernel and makes network \
             namespaces: run it as root (sudo -E cargo xtask {task})"
        );
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct ToolchainFile {
    toolchain: Toolchain,
}

#[derive(serde::Deserialize)]
struct Toolchain {
    channel: String,
    #[serde(default)]
    components: Vec<String>,
}

/// The toolchain pinned in `file`.
fn read_pin(file: &Path) -> anyhow::Result<Toolchain> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pinned: ToolchainFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    Ok(pinned.toolchain)
}

/// Installs the toolchain pinned in `file`, with its components.
fn toolchain(file: &Path) -> anyhow::Result<()> {
    let Toolchain {
        channel,
        components,
    } = read_pin(file)?;
    let Some(installed) = output(command("rustup", &["toolchain", "list"])) else {
        bail!("rustup is not installed; install it from https://rustup.rs, then run this again");
    };
    let have_toolchain = installed.lines().any(|l| {
        l.starts_with(&format!("{channel}-")) || l.split_whitespace().next() == Some(&channel)
    });
    let missing: Vec<&String> = if have_toolchain {
        let listed = output(command(
            "rustup",
            &["component", "list", "--installed", "--toolchain", &channel],
        ))
        .unwrap_or_default();
        components
            .iter()
            .filter(|c| {
                !listed
                    .lines()
                    .any(|l| l == c.as_str() || l.starts_with(&format!("{c}-")))
            })
            .collect()
    } else {
        components.iter().collect()
    };
    if have_toolchain && missing.is_empty() {
        return Ok(());
    }
    let mut args = vec!["toolchain", "install", &channel, "--profile", "minimal"];
    for c in &missing {
        args.extend(["--component", c.as_str()]);
    }
    shell::run(command("rustup", &args))
        .with_context(|| format!("installing the toolchain pinned in {}", file.display()))
}

fn debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            let status = output(command("dpkg-query", &["-W", "-f=${Status}", p]));
            status.as_deref() != Some("install ok installed")
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root || output(command("apt-get", &["--version"])).is_none() {
        bail!(
            "missing Debian packages {}; install them with: sudo {install}",
            missing.join(", ")
        );
    }
    let apt = |args: &[&str]| {
        let mut cmd = command("apt-get", args);
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    if missing.contains(&"postfix") {
        let mut preseed = command("debconf-set-selections", &[]);
        preseed.stdin(std::process::Stdio::piped());
        let mut child = preseed.spawn().context("running debconf-set-selections")?;
        if let Some(stdin) = child.stdin.as_mut() {
            std::io::Write::write_all(stdin, POSTFIX_PRESEED.as_bytes())?;
        }
        drop(child.stdin.take());
        if !child.wait()?.success() {
            bail!("debconf-set-selections failed");
        }
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&missing);
    // A fresh machine's package lists may predate the packages: refresh
    // them and try once more.
    if shell::run(apt(&args)).is_err() {
        shell::run(apt(&["update"]))?;
        shell::run(apt(&args)).with_context(|| format!("running {install}"))?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let nightly = ebpf_channel()?;
    let rustc = output(command("rustup", &["run", &nightly, "rustc", "-vV"])).unwrap_or_default();
    let llvm = rustc
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .unwrap_or("unknown");
    if llvm.split('.').next() != Some(LLVM_MAJOR) {
        bail!(
            "{nightly} uses LLVM {llvm}, but bpf-linker is built against LLVM {LLVM_MAJOR}: \
             pin a nightly with LLVM {LLVM_MAJOR} in filter-ebpf/rust-toolchain.toml"
        );
    }
    let version = output(command("bpf-linker", &["--version"])).unwrap_or_default();
    if version.trim() == format!("bpf-linker {BPF_LINKER_VERSION}") {
        return Ok(());
    }
    let mut cmd = command(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{LLVM_MAJOR}"),
            "--locked",
            "--force",
        ],
    );
    cmd.env("LLVM_PREFIX", format!("/usr/lib/llvm-{LLVM_MAJOR}"));
    shell::run(cmd).context("building bpf-linker")
}

/// The nightly pinned for the eBPF crate.
pub fn ebpf_channel() -> anyhow::Result<String> {
    Ok(read_pin(&root().join(EBPF_TOOLCHAIN))?.channel)
}

/// bpffs at /sys/fs/bpf. (mxgate mounts it too when needed; having it
/// up front keeps the first test from racing to mount it.)
fn bpffs() -> anyhow::Result<()> {
    let fs_type = output(command("stat", &["-f", "-c", "%T", BPFFS])).unwrap_or_default();
    if fs_type.trim() == "bpf_fs" {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bpffs is not mounted; mount it with: sudo mount -t bpf bpf {BPFFS}");
    }
    shell::run(command("mount", &["-t", "bpf", "bpf", BPFFS]))
}
