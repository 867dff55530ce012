//! The kernel matrix: Debian's own kernels (xtask/kernels.toml) booted
//! under virtme-ng, with the kernel test suites run inside.
//!
//! The kernels come from the Debian mirror of the machine's own apt sources
//! (the same host, with each kernel's suites: [`apt`]) through an apt state
//! of xtask's own under target/kernels/apt (the machine's apt sources are
//! never changed; its apt.conf.d, with any proxy, applies as usual),
//! fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
//! target/kernels/root/VERSION (never into /boot). virtme-ng lives in a venv
//! under target/. Each VM shares the host's filesystem read-only and
//! target/kernels/results/NAME read-write; the guest writes each suite's
//! output and exit status there, so the host reads the results and enforces
//! the time bound. This machine's /dev/kvm cannot run these kernels, so the
//! VMs run under TCG (`--disable-kvm`).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Read as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::{
    apt,
    shell::{self, command, root},
};

/// The kernel list.
const LIST: &str = "xtask/kernels.toml";
/// virtme-ng from PyPI, pinned.
const VIRTME_NG: &str = "virtme-ng==1.42";
/// The keyring of Debian's archives, for a mirror whose entry names none.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Memory and CPUs of each VM.
const VM_MEMORY: &str = "2G";
const VM_CPUS: &str = "2";

/// xtask/kernels.toml.
#[derive(Deserialize)]
pub struct List {
    /// The kernels.
    pub kernel: Vec<Kernel>,
    /// What runs inside each.
    pub suite: Vec<Suite>,
}

/// One kernel of the matrix.
#[derive(Deserialize)]
pub struct Kernel {
    /// Short name (`6.1`), as `--kernel` takes it.
    pub name: String,
    /// Where mail servers get it.
    pub distribution: String,
    /// Debian suites searched for `linux-image-amd64`.
    pub suites: Vec<String>,
    /// The upstream series its version starts with.
    pub series: String,
    /// The whole VM run (boot and suites) must finish within this.
    pub timeout_secs: u64,
    /// Arguments added to every suite's on this kernel.
    #[serde(default)]
    pub test_args: Vec<String>,
}

/// One test binary run inside the VMs.
#[derive(Deserialize)]
pub struct Suite {
    /// The test target's name (tests/tests/NAME.rs).
    pub binary: String,
    /// Arguments to the test binary (filters, `--skip`, `--nocapture`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment for it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Only on these kernels (by name); every kernel when absent.
    #[serde(default)]
    pub only: Option<Vec<String>>,
}

/// Reads xtask/kernels.toml.
pub fn list() -> anyhow::Result<List> {
    let path = root().join(LIST);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn dir() -> PathBuf {
    root().join("target/kernels")
}

fn venv() -> PathBuf {
    root().join("target/vng-venv")
}

/// apt options that keep every file of this apt state under
/// target/kernels/apt, with its own sources.list.
fn apt_options() -> Vec<String> {
    let apt = dir().join("apt");
    let d = |p: &str| apt.join(p).display().to_string();
    [
        format!("Dir::Etc::SourceList={}", d("sources.list")),
        "Dir::Etc::SourceParts=/nonexistent".to_owned(),
        format!("Dir::State={}", d("state")),
        format!("Dir::State::Lists={}", d("lists")),
        "Dir::State::status=/dev/null".to_owned(),
        format!("Dir::Cache={}", d("cache")),
        "APT::Architecture=amd64".to_owned(),
        "Acquire::Languages=none".to_owned(),
        "Debug::NoLocking=true".to_owned(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_owned(), o])
    .collect()
}

fn apt(program: &str, args: &[&str]) -> std::process::Command {
    let mut all = apt_options();
    all.extend(args.iter().map(|a| (*a).to_owned()));
    command(program, &all)
}

/// What the kernel matrix needs and this machine lacks: virtme-ng, kernels
/// not fetched yet.
pub fn missing() -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    if !venv().join("bin/vng").exists() {
        missing.push(format!("{VIRTME_NG} (in {})", venv().display()));
    }
    for kernel in list()?.kernel {
        if current(&kernel).is_err() {
            missing.push(format!(
                "Debian's kernel {} ({})",
                kernel.name, kernel.distribution
            ));
        }
    }
    Ok(missing)
}

/// `cargo xtask setup --kernels`: virtme-ng, the apt state and each kernel.
pub fn setup() -> anyhow::Result<()> {
    if !venv().join("bin/vng").exists() {
        let venv = venv().display().to_string();
        shell::run(command("python3", &["-m", "venv", &venv]))?;
        shell::run(command(
            &format!("{venv}/bin/pip"),
            &["install", "--quiet", VIRTME_NG],
        ))
        .context("installing virtme-ng from PyPI")?;
    }
    let list = list()?;
    let state = dir().join("apt");
    for sub in ["lists/partial", "cache/archives/partial", "state"] {
        std::fs::create_dir_all(state.join(sub))?;
    }
    let mirrors = apt::machine()?;
    let mut sources = String::from(
        "# Written by cargo xtask setup --kernels from xtask/kernels.toml: the\n\
         # suites the kernel matrix takes Debian's kernels from, on the mirrors\n\
         # the machine's own apt sources name. Read only by xtask's own apt\n\
         # state (target/kernels/apt), never by the system's apt.\n",
    );
    for kernel in &list.kernel {
        for suite in &kernel.suites {
            let entry = mirrors.for_suite(suite)?;
            let keyring = entry.signed_by.as_deref().unwrap_or(DEBIAN_KEYRING);
            writeln!(
                sources,
                "deb [signed-by={keyring}] {} {suite} main",
                entry.uri
            )?;
        }
    }
    let sources_file = state.join("sources.list");
    let fresh = std::fs::read_to_string(&sources_file).ok().as_deref() == Some(sources.as_str())
        && std::fs::read_dir(state.join("lists"))?.count() > 2;
    let mut updated = false;
    if !fresh {
        std::fs::write(&sources_file, &sources)?;
        shell::run(apt("apt-get", &["update", "--quiet"]))?;
        updated = true;
    }
    for kernel in &list.kernel {
        if current(kernel).is_ok() {
            continue;
        }
        if !updated {
            shell::run(apt("apt-get", &["update", "--quiet"]))?;
            updated = true;
        }
        fetch(kernel)?;
    }
    Ok(())
}

/// The kernel package setup fetched for `kernel`: (unpacked root, vmlinuz,
/// package version).
fn current(kernel: &Kernel) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let record = dir().join(format!("{}.current", kernel.name));
    let text = std::fs::read_to_string(&record).with_context(|| {
        format!(
            "kernel {} is not fetched ({} is missing): run cargo xtask setup --kernels",
            kernel.name,
            record.display()
        )
    })?;
    let (abi, version) = text
        .trim()
        .split_once(' ')
        .with_context(|| format!("{}: expected `ABI VERSION`", record.display()))?;
    let root = dir().join("root").join(abi);
    let vmlinuz = root.join(format!("boot/vmlinuz-{abi}"));
    if !vmlinuz.exists() {
        bail!(
            "{} is missing: run cargo xtask setup --kernels",
            vmlinuz.display()
        );
    }
    Ok((root, vmlinuz, version.to_owned()))
}

/// Downloads and unpacks the newest `linux-image-amd64` of `kernel`'s series.
fn fetch(kernel: &Kernel) -> anyhow::Result<()> {
    let shown = shell::stdout(apt("apt-cache", &["show", "linux-image-amd64"]))?;
    // Stanzas come newest first; each names the real package in Depends.
    let mut found = None;
    for stanza in shown.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let (Some(version), Some(depends)) = (field("Version:"), field("Depends:")) else {
            continue;
        };
        if version.starts_with(&format!("{}.", kernel.series)) {
            let package = depends.split_whitespace().next().unwrap_or_default();
            found = Some((package.to_owned(), version.to_owned()));
            break;
        }
    }
    let Some((package, version)) = found else {
        bail!(
            "no linux-image-amd64 of series {} in the suites {:?} of kernel {}",
            kernel.series,
            kernel.suites,
            kernel.name
        );
    };
    let abi = package
        .strip_prefix("linux-image-")
        .with_context(|| format!("unexpected package name {package}"))?
        .to_owned();
    let debs = dir().join("debs");
    std::fs::create_dir_all(&debs)?;
    let mut download = apt("apt-get", &["download", "--quiet", &package]);
    download.current_dir(&debs);
    shell::run(download)?;
    let deb = std::fs::read_dir(&debs)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    let unpacked = dir().join("root").join(&abi);
    std::fs::create_dir_all(&unpacked)?;
    shell::run(command(
        "dpkg-deb",
        &[
            std::ffi::OsStr::new("-x"),
            deb.as_os_str(),
            unpacked.as_os_str(),
        ],
    ))?;
    std::fs::remove_file(&deb)?;
    std::fs::write(
        dir().join(format!("{}.current", kernel.name)),
        format!("{abi} {version}\n"),
    )?;
    Ok(())
}

/// A test binary built on the host: its path and its package's directory
/// (cargo runs integration tests from there).
pub struct TestBinary {
    /// The executable.
    pub path: PathBuf,
    /// Its package's directory.
    pub cwd: PathBuf,
}

/// What one suite did.
pub struct SuiteResult {
    /// The test binary's name.
    pub binary: String,
    /// Tests passed, tests failed (from libtest's closing line).
    pub passed: u32,
    /// Tests failed.
    pub failed: u32,
    /// Exited 0.
    pub ok: bool,
    /// Wall time, seconds.
    pub secs: u64,
}

/// What one kernel's run did.
pub struct KernelResult {
    /// `uname -r` in the guest (or of the host).
    pub release: String,
    /// Each suite.
    pub suites: Vec<SuiteResult>,
    /// The verdict test's instruction-count lines.
    pub instructions: Vec<String>,
    /// Whole run, seconds.
    pub secs: u64,
}

impl KernelResult {
    /// Every suite exited 0.
    pub fn ok(&self) -> bool {
        self.suites.iter().all(|s| s.ok)
    }
}

/// Single-quotes `word` for sh.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Boots `kernel` and runs `suites` inside; fails if it does not boot or
/// does not finish in time. A failing suite is reported in the result.
pub fn run_one(
    kernel: &Kernel,
    suites: &[Suite],
    binaries: &BTreeMap<String, TestBinary>,
    mxgate: &Path,
) -> anyhow::Result<KernelResult> {
    let (_, vmlinuz, package_version) = current(kernel)?;
    let results = dir().join("results").join(&kernel.name);
    if results.exists() {
        std::fs::remove_dir_all(&results)?;
    }
    std::fs::create_dir_all(&results)?;
    let r = results.display().to_string();
    let mut script = format!(
        "#!/bin/sh\n\
         # Written by cargo xtask test: runs inside the VM of kernel {name}.\n\
         R={r}\n\
         exec >\"$R/guest.log\" 2>&1\n\
         uname -r >\"$R/uname\"\n\
         mount -t bpf bpf /sys/fs/bpf || {{ echo 'mounting bpffs failed'; exit 1; }}\n\
         mkdir -p /run/netns\n\
         export MXGATE_BIN={bin} RUST_BACKTRACE=1\n\
         suite() {{\n  \
           name=$1; dir=$2; shift 2\n  \
           start=$(date +%s)\n  \
           (cd \"$dir\" && \"$@\") >\"$R/$name.log\" 2>&1\n  \
           rc=$?\n  \
           echo \"$name $rc $(( $(date +%s) - start ))\" >>\"$R/progress\"\n\
         }}\n",
        name = kernel.name,
        r = quote(&r),
        bin = quote(&mxgate.display().to_string()),
    );
    for suite in suites {
        if suite
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&kernel.name))
        {
            continue;
        }
        let binary = binaries.get(&suite.binary).with_context(|| {
            format!(
                "{LIST} names test binary {}, which was not built",
                suite.binary
            )
        })?;
        let mut line = format!(
            "suite {} {} env",
            quote(&suite.binary),
            quote(&binary.cwd.display().to_string())
        );
        for (k, v) in &suite.env {
            line.push_str(&format!(" {}", quote(&format!("{k}={v}"))));
        }
        line.push_str(&format!(" {}", quote(&binary.path.display().to_string())));
        for a in suite.args.iter().chain(&kernel.test_args) {
            line.push_str(&format!(" {}", quote(a)));
        }
        script.push_str(&line);
        script.push('\n');
    }
    script.push_str(&format!(
        "suite caps {} sh {} \"$MXGATE_BIN\" {}\n",
        quote(&root().display().to_string()),
        quote(&root().join(UNIT_CAPS).display().to_string()),
        quote(&unit_capabilities()?)
    ));
    script.push_str("echo done >\"$R/finished\"\n");
    let script_path = results.join("run.sh");
    std::fs::write(&script_path, script)?;

    eprintln!(
        "==> kernel {} ({}, {package_version}): booting {} under virtme-ng (TCG), at most {} s",
        kernel.name,
        kernel.distribution,
        vmlinuz.display(),
        kernel.timeout_secs
    );
    let started = Instant::now();
    let mut shown = 0;
    let status = boot(
        &vmlinuz,
        &results,
        &script_path,
        Duration::from_secs(kernel.timeout_secs),
        || shown = show_progress(&results, &kernel.name, shown),
    )
    .with_context(|| format!("kernel {}", kernel.name))?;
    let release = std::fs::read_to_string(results.join("uname")).unwrap_or_default();
    if release.trim().is_empty() {
        bail!(
            "kernel {} did not boot ({status}): the guest ran nothing; see {r}/console.log",
            kernel.name
        );
    }
    if !results.join("finished").exists() {
        let mut log = String::new();
        if let Ok(mut f) = std::fs::File::open(results.join("guest.log")) {
            f.read_to_string(&mut log)?;
        }
        bail!(
            "kernel {}: the guest stopped before running every suite ({status}):\n{log}",
            kernel.name
        );
    }
    let result = collect(&results, release.trim(), started.elapsed().as_secs())?;
    Ok(result)
}

/// Boots `vmlinuz` under virtme-ng (TCG) with the host's files read-only
/// and `results` read-write, runs `script` inside, calls `tick` every half
/// second; kills the VM and fails after `limit`.
fn boot(
    vmlinuz: &Path,
    results: &Path,
    script: &Path,
    limit: Duration,
    mut tick: impl FnMut(),
) -> anyhow::Result<std::process::ExitStatus> {
    let vng = venv().join("bin/vng");
    let console = std::fs::File::create(results.join("console.log"))?;
    let mut cmd = std::process::Command::new(&vng);
    cmd.args([
        "--disable-kvm",
        "--verbose",
        "--memory",
        VM_MEMORY,
        "--cpus",
        VM_CPUS,
    ]);
    cmd.arg("--run")
        .arg(vmlinuz)
        .arg(format!("--rwdir={}", results.display()))
        .arg("--exec")
        .arg(format!("sh {}", quote(&script.display().to_string())))
        .current_dir(root())
        .env(
            "PATH",
            format!(
                "{}:{}",
                venv().join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let mut cmd = shell::as_root(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(console.try_clone()?)
        .stderr(console)
        // Its own process group, so a timeout ends QEMU too.
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", shell::describe(&cmd)))?;
    loop {
        tick();
        if let Some(status) = child.try_wait()? {
            tick();
            return Ok(status);
        }
        if started.elapsed() > limit {
            let pgid = i32::try_from(child.id()).context("a process id")?;
            // SAFETY: kill has no memory preconditions; the group is the VM's own.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            bail!(
                "the VM did not finish within {} s (guest output in {}, console in {}/console.log)",
                limit.as_secs(),
                results.display(),
                results.display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Prints the suites finished since line `shown` of the progress file.
fn show_progress(results: &Path, kernel: &str, shown: usize) -> usize {
    let text = std::fs::read_to_string(results.join("progress")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for line in lines.iter().skip(shown) {
        let mut words = line.split_whitespace();
        let (name, rc, secs) = (words.next(), words.next(), words.next());
        if let (Some(name), Some(rc), Some(secs)) = (name, rc, secs) {
            let summary = closing_line(&results.join(format!("{name}.log")));
            let verdict = if rc == "0" { "ok" } else { "FAILED" };
            eprintln!("    kernel {kernel}: {name}: {verdict} in {secs} s: {summary}");
        }
    }
    lines.len()
}

/// The check that the unit's capability set is enough (`suite caps`).
const UNIT_CAPS: &str = "xtask/unit-caps.sh";

/// The unit's CapabilityBoundingSet, as setpriv takes it (`+bpf,+net_admin`).
pub fn unit_capabilities() -> anyhow::Result<String> {
    let unit = std::fs::read_to_string(root().join("dist/mxgate.service"))
        .context("reading dist/mxgate.service")?;
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .context("dist/mxgate.service has no CapabilityBoundingSet=")?;
    Ok(caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(","))
}

/// The unit-capabilities check on this machine's kernel, as root.
pub fn host_unit_caps(mxgate: &Path) -> anyhow::Result<SuiteResult> {
    let started = Instant::now();
    let caps = unit_capabilities()?;
    let script = root().join(UNIT_CAPS);
    let cmd = shell::as_root(command(
        "sh",
        &[
            script.as_os_str(),
            mxgate.as_os_str(),
            std::ffi::OsStr::new(&caps),
        ],
    ));
    eprintln!("==> {}", shell::describe(&cmd));
    let mut cmd = cmd;
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let (passed, failed) = counts(text.lines().last().unwrap_or_default());
    Ok(SuiteResult {
        binary: "caps".to_owned(),
        passed,
        failed,
        ok: out.status.success(),
        secs: started.elapsed().as_secs(),
    })
}

/// The closing line in `log`: libtest's last `test result:` line, or a
/// plain `…: N passed, M failed`.
fn closing_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| l.starts_with("test result:") || l.ends_with(" failed"))
        .unwrap_or("no test result line")
        .to_owned()
}

/// (passed, failed) from a closing line.
pub fn counts(line: &str) -> (u32, u32) {
    let number_before = |word: &str| {
        let mut last = None;
        for part in line.split([';', ',', '.', ':']) {
            if let Some(n) = part.trim().strip_suffix(word) {
                last = n.trim().parse().ok();
            }
        }
        last.unwrap_or(0)
    };
    (number_before("passed"), number_before("failed"))
}

/// Reads the guest's results.
fn collect(results: &Path, release: &str, secs: u64) -> anyhow::Result<KernelResult> {
    let progress = std::fs::read_to_string(results.join("progress")).unwrap_or_default();
    let mut suites = Vec::new();
    for line in progress.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, rc, secs] = words[..] else {
            bail!("{}: unexpected line {line:?}", results.display());
        };
        let log = results.join(format!("{name}.log"));
        let (passed, failed) = counts(&closing_line(&log));
        suites.push(SuiteResult {
            binary: name.to_owned(),
            passed,
            failed,
            ok: rc == "0",
            secs: secs.parse().unwrap_or(0),
        });
    }
    let verdict = std::fs::read_to_string(results.join("verdict.log")).unwrap_or_default();
    Ok(KernelResult {
        release: release.to_owned(),
        suites,
        instructions: instruction_lines(&verdict),
        secs,
    })
}

/// The verdict test's `…: N instructions, M processed by the verifier` lines.
pub fn instruction_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.contains(" instructions, ") && l.contains("verifier"))
        // One test at a time, libtest prints `test NAME ... ` and then the
        // test's own output on the same line.
        .filter_map(|l| l.rsplit(" ... ").next())
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Prints a suite's log (for a failure).
pub fn failure_log(kernel: &Kernel, suite: &str) -> String {
    let log = dir()
        .join("results")
        .join(&kernel.name)
        .join(format!("{suite}.log"));
    std::fs::read_to_string(&log)
        .map(|t| {
            let lines: Vec<&str> = t.lines().collect();
            let from = lines.len().saturating_sub(60);
            format!(
                "{} (last lines):\n{}",
                log.display(),
                lines[from..].join("\n")
            )
        })
        .unwrap_or_else(|_| format!("{} is missing", log.display()))
}

/// The package version setup fetched for `kernel`.
pub fn package_version(kernel: &Kernel) -> String {
    current(kernel).map(|c| c.2).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_lines_are_found_behind_libtests_test_name() {
        let output = "running 18 tests\n\
            test the_program_stays ... Quiet: 1395 instructions, ? processed by the verifier (kernel 5.10.262 has no count)\n\
            EveryDenial: 2180 instructions, 18486 processed by the verifier\n\
            ok\n";
        assert_eq!(
            instruction_lines(output),
            [
                "Quiet: 1395 instructions, ? processed by the verifier (kernel 5.10.262 has no count)",
                "EveryDenial: 2180 instructions, 18486 processed by the verifier",
            ]
        );
    }

    #[test]
    fn counts_read_libtests_closing_line() {
        assert_eq!(
            counts(
                "test result: ok. 16 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 5.01s"
            ),
            (16, 0)
        );
        assert_eq!(
            counts(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 1 filtered out"
            ),
            (3, 2)
        );
        assert_eq!(counts("no test result line"), (0, 0));
        assert_eq!(counts("unit capabilities: 4 passed, 0 failed"), (4, 0));
    }

    #[test]
    fn the_kernel_list_parses_and_names_each_kernel_once() {
        let list = list().unwrap();
        let mut names: Vec<&str> = list.kernel.iter().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), list.kernel.len());
        for wanted in ["5.10", "6.1", "6.12"] {
            assert!(names.contains(&wanted), "{wanted} is not in {LIST}");
        }
    }

    #[test]
    fn quote_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
