//! Prerequisites: each is checked, and installed when missing, only what
//! the task at hand needs ([`Needs`]). Toolchains install as the user;
//! apt and mounts go through `sudo -E` when xtask is not root. When this
//! cannot install something (not Debian), it stops with the exact command
//! to run. With everything present it takes about a second.

use std::{path::Path, time::Instant};

use anyhow::{Context as _, bail};

use crate::shell::{self, command, output, root};

/// LLVM major shared by the pinned nightly and bpf-linker.
const LLVM_MAJOR: &str = "22";
/// bpf-linker release built against [`LLVM_MAJOR`].
const BPF_LINKER_VERSION: &str = "0.13.0";
/// What a task needs installed; `setup` checks and installs each part.
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    /// Building mxgate: the pinned toolchains, LLVM and what bpf-linker
    /// links against, bpf-linker.
    pub build: bool,
    /// Loading the program and making namespaces: ip, nsenter, bpffs.
    pub kernel: bool,
    /// The host-only tests: Postfix and swaks (the real MTA test), dnsmasq
    /// (the spf: source tests).
    pub host_tests: bool,
    /// The benchmarks' baselines and measurements: nftables, ethtool, time.
    pub bench: bool,
    /// The kernel matrix: QEMU, what virtme-ng needs, virtme-ng itself in a
    /// venv under target/, and the Debian kernels of xtask/kernels.toml.
    pub vms: bool,
    /// Building and checking the Debian package: lintian, debootstrap.
    pub deb: bool,
}

impl Needs {
    /// Everything: what `cargo xtask test` uses, and the benchmarks.
    pub fn all() -> Self {
        Self {
            build: true,
            kernel: true,
            host_tests: true,
            bench: true,
            vms: true,
            deb: true,
        }
    }
}

/// LLVM and what bpf-linker links against.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libclang-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
];
/// ip and nsenter, for the demo and the kernel tests.
const KERNEL_PACKAGES: &[&str] = &["iproute2", "util-linux"];
/// Postfix and swaks (with IPv6 support) for the real MTA test; dnsmasq,
/// the DNS server of the spf: source tests.
const HOST_TEST_PACKAGES: &[&str] = &[
    "postfix",
    "swaks",
    "libio-socket-inet6-perl",
    "dnsmasq-base",
];
/// The benchmarks' nftables baseline, ethtool and /usr/bin/time.
const BENCH_PACKAGES: &[&str] = &["nftables", "ethtool", "time"];
/// QEMU; python3-venv for virtme-ng; what virtme-ng runs on the host
/// (busybox for its initramfs, depmod, file to read a kernel's version).
const VM_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "python3-venv",
    "busybox-static",
    "kmod",
    "file",
];
/// Postfix installed as a test tool only: no system instance is configured
/// or started (each test runs its own, in its own namespace).
const POSTFIX_PRESEED: &str = "postfix postfix/main_mailer_type select No configuration\n";
/// The package's checker and the clean Debian 12 root its test installs into.
const DEB_PACKAGES: &[&str] = &["lintian", "debootstrap", "dpkg-dev"];
const BPFFS: &str = "/sys/fs/bpf";
/// The eBPF crate's pin, relative to the workspace root.
const EBPF_TOOLCHAIN: &str = "filter-ebpf/rust-toolchain.toml";

/// Checks and installs what `needs` names.
pub fn run(needs: Needs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut packages = Vec::new();
    for (wanted, list) in [
        (needs.build, BUILD_PACKAGES),
        (needs.kernel, KERNEL_PACKAGES),
        (needs.host_tests, HOST_TEST_PACKAGES),
        (needs.bench, BENCH_PACKAGES),
        (needs.vms, VM_PACKAGES),
        (needs.deb, DEB_PACKAGES),
    ] {
        if wanted {
            packages.extend_from_slice(list);
        }
    }
    debian_packages(&packages)?;
    if needs.build {
        for file in ["rust-toolchain.toml", EBPF_TOOLCHAIN] {
            toolchain(&root().join(file))?;
        }
        bpf_linker()?;
    }
    if needs.kernel {
        bpffs()?;
    }
    if needs.vms {
        crate::kernels::setup()?;
    }
    eprintln!(
        "setup: every prerequisite is present ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Fails unless running as root: loading XDP programs and making network
/// namespaces need CAP_BPF and CAP_NET_ADMIN.
pub fn require_root(task: &str) -> anyhow::Result<()> {
    if !shell::is_root() {
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
    if output(command("apt-get", &["--version"])).is_none() {
        bail!(
            "missing Debian packages {}; install them with: sudo {install}",
            missing.join(", ")
        );
    }
    let apt = |args: &[&str]| {
        let mut cmd = command("apt-get", args);
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        shell::as_root(cmd)
    };
    if missing.contains(&"postfix") {
        let mut preseed = shell::as_root(command::<&str>("debconf-set-selections", &[]));
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
    shell::run(shell::as_root(command(
        "mount",
        &["-t", "bpf", "bpf", BPFFS],
    )))
}
