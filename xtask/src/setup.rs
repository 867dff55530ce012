//! Prerequisites: each task checks what it needs ([`Needs`]). Only
//! `setup` and the first run of `demo` and `test` install what is missing,
//! and say what before they do ([`Mode::Install`]); every other task
//! (`build`, `dist`, `deb`, `bench`, `fuzz`) installs nothing and names
//! what is missing and the command that installs it ([`Mode::Check`]).
//! Toolchains install as the user; apt and mounts go through `sudo -E`
//! when xtask is not root. When this cannot install something (not
//! Debian), it stops with the exact command to run. With everything
//! present it takes about a second.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

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
    /// The host-only tests: Postfix, Exim ([`crate::exim`]) and swaks (the
    /// real MTA and audit tests), dnsmasq (the spf: source and doctor tests).
    pub host_tests: bool,
    /// The benchmarks' baselines and measurements: nftables, ethtool, time.
    pub bench: bool,
    /// The kernel matrix: QEMU, what virtme-ng needs, virtme-ng itself in a
    /// venv under target/, and the Debian kernels of xtask/kernels.toml.
    pub vms: bool,
    /// Building and checking the Debian package: lintian, debootstrap,
    /// systemd-nspawn.
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
/// the DNS server of the spf: source tests; Prometheus (its server and
/// promtool) for the metrics tests and the alert rules' unit tests; tmux,
/// the terminal `mxgate top` is tested in.
const HOST_TEST_PACKAGES: &[&str] = &[
    "postfix",
    "swaks",
    "libio-socket-inet6-perl",
    "dnsmasq-base",
    "prometheus",
    "tmux",
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
/// The package's checker, the clean Debian 12 root its test installs into,
/// and systemd-nspawn, which boots that root with systemd as its PID 1.
const DEB_PACKAGES: &[&str] = &["lintian", "debootstrap", "dpkg-dev", "systemd-container"];
const BPFFS: &str = "/sys/fs/bpf";
/// The eBPF crate's pin, relative to the workspace root.
const EBPF_TOOLCHAIN: &str = "filter-ebpf/rust-toolchain.toml";

/// Whether a task may install what it needs and the machine lacks.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `setup`, and the first run of `demo` and `test`: install it, and say
    /// so first. The argument names the task.
    Install(&'static str),
    /// Every other task (`build`, `dist`, `deb`, `bench`, `fuzz`): install
    /// nothing; name what is missing and the command that installs it.
    Check(&'static str),
}

/// One prerequisite the machine lacks.
enum Missing {
    /// Debian packages.
    Packages(Vec<&'static str>),
    /// A pinned toolchain, or components of it.
    Toolchain {
        file: PathBuf,
        channel: String,
        components: Vec<String>,
    },
    /// bpf-linker at [`BPF_LINKER_VERSION`].
    BpfLinker,
    /// bpffs at [`BPFFS`].
    Bpffs,
    /// What the kernel matrix needs (virtme-ng, the kernels).
    Vms(Vec<String>),
    /// Exim, unpacked beside Postfix (see [`crate::exim`]).
    Exim(String),
}

impl Missing {
    fn describe(&self) -> String {
        match self {
            Missing::Packages(p) => format!("Debian packages {}", p.join(" ")),
            Missing::Toolchain {
                channel,
                components,
                ..
            } if components.is_empty() => format!("the Rust toolchain {channel}"),
            Missing::Toolchain {
                channel,
                components,
                ..
            } => format!("{} of the Rust toolchain {channel}", components.join(", ")),
            Missing::BpfLinker => format!("bpf-linker {BPF_LINKER_VERSION}"),
            Missing::Bpffs => format!("bpffs mounted at {BPFFS}"),
            Missing::Vms(what) => what.join(", "),
            Missing::Exim(what) => what.clone(),
        }
    }

    fn install(&self) -> anyhow::Result<()> {
        match self {
            Missing::Packages(p) => debian_packages(p),
            Missing::Toolchain {
                file,
                channel,
                components,
            } => {
                let mut args = vec!["toolchain", "install", channel, "--profile", "minimal"];
                for c in components {
                    args.extend(["--component", c.as_str()]);
                }
                shell::run(command("rustup", &args)).with_context(|| {
                    format!("installing the toolchain pinned in {}", file.display())
                })
            }
            Missing::BpfLinker => bpf_linker(),
            Missing::Bpffs => shell::run(shell::as_root(command(
                "mount",
                &["-t", "bpf", "bpf", BPFFS],
            ))),
            Missing::Vms(_) => crate::kernels::setup(),
            Missing::Exim(_) => crate::exim::install(|packages| {
                let lacking: Vec<&str> = packages
                    .iter()
                    .copied()
                    .filter(|p| !package_installed(p))
                    .collect();
                if lacking.is_empty() {
                    return Ok(());
                }
                debian_packages(&lacking)
            }),
        }
    }
}

/// Checks what `needs` names; installs what is missing if `mode` allows,
/// else fails naming it.
pub fn run(needs: Needs, mode: Mode) -> anyhow::Result<()> {
    let started = Instant::now();
    let missing = missing(needs)?;
    if missing.is_empty() {
        eprintln!(
            "setup: every prerequisite is present ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let list = missing
        .iter()
        .map(Missing::describe)
        .collect::<Vec<_>>()
        .join("; ");
    match mode {
        Mode::Check(task) => bail!(
            "`cargo xtask {task}` installs nothing, and this machine lacks: {list}. Run `cargo \
             xtask setup{}` once (the first `cargo xtask test` does the same).",
            if needs.vms { " --kernels" } else { "" }
        ),
        Mode::Install(task) => {
            eprintln!(
                "setup: `cargo xtask {task}` needs what this machine lacks, and installs it now \
                 (only on a first run; `cargo xtask setup` does this step alone): {list}"
            );
            for m in &missing {
                m.install()?;
            }
            eprintln!(
                "setup: installed what was missing ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// What `needs` names and the machine lacks. Fails on what no install
/// fixes (a nightly on the wrong LLVM).
fn missing(needs: Needs) -> anyhow::Result<Vec<Missing>> {
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
            packages.extend(list.iter().copied().filter(|p| !package_installed(p)));
        }
    }
    let mut missing = Vec::new();
    if !packages.is_empty() {
        missing.push(Missing::Packages(packages));
    }
    if needs.build {
        for file in ["rust-toolchain.toml", EBPF_TOOLCHAIN] {
            missing.extend(toolchain_missing(&root().join(file))?);
        }
        if !missing
            .iter()
            .any(|m| matches!(m, Missing::Toolchain { file, .. } if file.ends_with(EBPF_TOOLCHAIN)))
        {
            check_nightly_llvm()?;
        }
        let version = output(command("bpf-linker", &["--version"])).unwrap_or_default();
        if version.trim() != format!("bpf-linker {BPF_LINKER_VERSION}") {
            missing.push(Missing::BpfLinker);
        }
    }
    if needs.kernel {
        let fs_type = output(command("stat", &["-f", "-c", "%T", BPFFS])).unwrap_or_default();
        if fs_type.trim() != "bpf_fs" {
            missing.push(Missing::Bpffs);
        }
    }
    if needs.host_tests
        && let Some(what) = crate::exim::missing()
    {
        missing.push(Missing::Exim(what));
    }
    if needs.vms {
        let vms = crate::kernels::missing()?;
        if !vms.is_empty() {
            missing.push(Missing::Vms(vms));
        }
    }
    Ok(missing)
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

/// The toolchain pinned in `file`, or those of its components, if missing.
fn toolchain_missing(file: &Path) -> anyhow::Result<Option<Missing>> {
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
    let lacking: Vec<String> = if have_toolchain {
        let listed = output(command(
            "rustup",
            &["component", "list", "--installed", "--toolchain", &channel],
        ))
        .unwrap_or_default();
        components
            .into_iter()
            .filter(|c| {
                !listed
                    .lines()
                    .any(|l| l == c.as_str() || l.starts_with(&format!("{c}-")))
            })
            .collect()
    } else {
        components
    };
    if have_toolchain && lacking.is_empty() {
        return Ok(None);
    }
    Ok(Some(Missing::Toolchain {
        file: file.to_owned(),
        channel,
        components: lacking,
    }))
}

/// Whether Debian package `name` is installed.
fn package_installed(name: &str) -> bool {
    output(command("dpkg-query", &["-W", "-f=${Status}", name])).as_deref()
        == Some("install ok installed")
}

fn debian_packages(missing: &[&str]) -> anyhow::Result<()> {
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
    args.extend(missing);
    // A fresh machine's package lists may predate the packages: refresh
    // them and try once more.
    if shell::run(apt(&args)).is_err() {
        shell::run(apt(&["update"]))?;
        shell::run(apt(&args)).with_context(|| format!("running {install}"))?;
    }
    if missing.contains(&"prometheus") {
        // A test tool only, like Postfix: each test runs its own server
        // in its own namespace. The package starts a system instance
        // listening on every address where systemd runs: stop it. Without
        // systemd (a container) there is none, and this fails harmlessly.
        let _ = shell::run(shell::as_root(command(
            "systemctl",
            &["disable", "--now", "prometheus.service"],
        )));
    }
    Ok(())
}

/// The eBPF nightly's LLVM must be the one bpf-linker is built against.
fn check_nightly_llvm() -> anyhow::Result<()> {
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
    Ok(())
}

/// Builds and installs bpf-linker against Debian's LLVM.
fn bpf_linker() -> anyhow::Result<()> {
    check_nightly_llvm()?;
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
