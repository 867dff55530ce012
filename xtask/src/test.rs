//! `cargo xtask test`: formatting, lints (user space and eBPF), generated
//! files, unit tests, the Debian package, the kernel tests on this machine's
//! kernel and in a VM per kernel of xtask/kernels.toml. Builds and checks
//! run as the invoking user; the kernel tests, the package's install test
//! and the VMs run as root (through `sudo -E` when xtask is not root). The
//! kernel tests never skip: without a prerequisite they fail and say what
//! is missing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{
    kernels::{self, KernelResult, SuiteResult, TestBinary},
    readme,
    setup::ebpf_channel,
    shell::{self, as_root, cargo, root, run},
    timing::Timings,
};

/// Which VMs `cargo xtask test` boots.
#[derive(Clone, Debug)]
pub enum Matrix {
    /// Every kernel of the list, after every other check (the default).
    Full,
    /// Every other check, no VM.
    HostOnly,
    /// Only the VMs of these kernels (no other check).
    Only(Vec<String>),
}

/// Runs the checks and tests `matrix` selects; `filter` is passed to the
/// unit and host kernel test binaries. With `write_readme`, README's kernel
/// table gets the rows of the kernels run; otherwise no tracked file is
/// written. Ends with the table of where the time went, also on failure.
pub fn run_all(matrix: &Matrix, filter: &[String], write_readme: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let checkout = checkout_status();
    let mut timings = Timings::default();
    let result = run_phases(&mut timings, matrix, filter, write_readme);
    let total = started.elapsed().as_secs_f64();
    let now = checkout_status();
    if now != checkout {
        // .ci/run fails on this; here the developer may have edited files
        // meanwhile, so it is only said.
        eprintln!(
            "xtask test: warning: the checkout changed during the run (`git status --porcelain` \
             was {checkout:?}, is {now:?}): a test must write only under target/"
        );
    }
    eprint!(
        "{}",
        timings.table("xtask test: where the time went (wall time)", total)
    );
    eprintln!(
        "xtask test: {} in {total:.0} s",
        if result.is_ok() {
            "everything passed"
        } else {
            "FAILED"
        },
    );
    result
}

fn run_phases(
    t: &mut Timings,
    matrix: &Matrix,
    filter: &[String],
    write_readme: bool,
) -> anyhow::Result<()> {
    let list = kernels::list()?;
    let selected: Vec<&kernels::Kernel> = match matrix {
        Matrix::Full => list.kernel.iter().collect(),
        Matrix::HostOnly => Vec::new(),
        Matrix::Only(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let kernel = list
                    .kernel
                    .iter()
                    .find(|k| &k.name == name)
                    .with_context(|| {
                        format!(
                            "no kernel {name} in xtask/kernels.toml (it has {})",
                            list.kernel
                                .iter()
                                .map(|k| k.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                chosen.push(kernel);
            }
            chosen
        }
    };
    let host = !matches!(matrix, Matrix::Only(_));
    if host {
        t.phase("checks", checks)?;
    }
    let binaries = t.phase("build mxgate and the kernel test binaries", |_| {
        run(cargo(&[
            "build",
            "--package",
            "filter-user",
            "--bin",
            "mxgate",
        ]))?;
        test_binaries()
    })?;
    let mxgate = root().join("target/debug/mxgate");
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    if host {
        t.phase("unit tests", |_| {
            let mut unit = cargo(&["test", "--workspace", "--exclude", "filter-ebpf", "--lib"]);
            unit.arg("--bins").arg("--").args(filter);
            run(unit)
        })?;
        t.phase("doc tests", |_| {
            let mut doc = cargo(&["test", "--workspace", "--exclude", "filter-ebpf", "--doc"]);
            doc.arg("--").args(filter);
            run(doc)
        })?;
        let result = t.phase("host kernel suites", |t| {
            let mut result = host_kernel_tests(&binaries, &mxgate, filter)?;
            result.suites.push(kernels::host_unit_caps(&mxgate)?);
            for s in &result.suites {
                t.record(&s.binary, s.secs as f64, !s.ok);
            }
            Ok(result)
        })?;
        summary("host", &result);
        if !result.ok() {
            failures.push(format!(
                "host kernel {}: {}",
                result.release,
                failed(&result)
            ));
        }
        if filter.is_empty() {
            rows.push(readme::Row::host(&result));
        }
        if let Err(e) = t.phase("the Debian package", crate::deb::test) {
            failures.push(format!("the Debian package: {e:#}"));
        }
    }
    for kernel in &selected {
        let phase = format!("kernel {} (VM)", kernel.name);
        let outcome = t.phase(&phase, |t| {
            let result = kernels::run_one(kernel, &list.suite, &binaries, &mxgate)?;
            let in_suites: u64 = result.suites.iter().map(|s| s.secs).sum();
            t.record(
                "boot, shutdown, between suites",
                result.secs.saturating_sub(in_suites) as f64,
                false,
            );
            for s in &result.suites {
                t.record(&s.binary, s.secs as f64, !s.ok);
            }
            // A failed suite is marked in its row, and reported below.
            Ok(result)
        });
        match outcome {
            Ok(result) => {
                summary(&kernel.name, &result);
                for suite in result.suites.iter().filter(|s| !s.ok) {
                    eprintln!("{}", kernels::failure_log(kernel, &suite.binary));
                }
                if !result.ok() {
                    failures.push(format!("kernel {}: {}", kernel.name, failed(&result)));
                }
                eprintln!(
                    "==> kernel {} ({}): {} in {} s",
                    kernel.name,
                    result.release,
                    if result.ok() { "passed" } else { "FAILED" },
                    result.secs
                );
                rows.push(readme::Row::vm(kernel, &result));
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if write_readme && !rows.is_empty() {
        readme::update(&rows)?;
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}

/// `git status --porcelain` of the checkout (empty outside git).
fn checkout_status() -> String {
    shell::output(shell::command("git", &["status", "--porcelain"])).unwrap_or_default()
}

/// One line per suite: what passed, how long it took.
fn summary(kernel: &str, result: &KernelResult) {
    for s in &result.suites {
        eprintln!(
            "    {kernel} ({}): {:<13} {} {} passed, {} failed, {} s",
            result.release,
            s.binary,
            if s.ok { "ok    " } else { "FAILED" },
            s.passed,
            s.failed,
            s.secs
        );
    }
    for line in &result.instructions {
        eprintln!("    {kernel} ({}): program: {line}", result.release);
    }
}

/// The names of the suites that failed.
fn failed(result: &KernelResult) -> String {
    result
        .suites
        .iter()
        .filter(|s| !s.ok)
        .map(|s| format!("{} ({} failed)", s.binary, s.failed))
        .collect::<Vec<_>>()
        .join(", ")
}

/// fmt, clippy for user space, the bench binary and the eBPF program, and
/// the generated man pages and completions; all as the user.
fn checks(t: &mut Timings) -> anyhow::Result<()> {
    t.phase("cargo fmt --check", |_| {
        run(cargo(&["fmt", "--all", "--", "--check"]))
    })?;
    t.phase("clippy (user space, tests, xtask)", |_| {
        run(cargo(&[
            "clippy",
            "--workspace",
            "--exclude",
            "filter-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // The benchmark binary needs its feature to be built, and linted.
    t.phase("clippy (benchmarks)", |_| {
        run(cargo(&[
            "clippy",
            "--package",
            "mxgate-tests",
            "--features",
            "bench",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // The XDP program only builds for the BPF target, with the pinned
    // nightly, in a target dir of its own (another compiler than the rest).
    let mut ebpf = shell::command(
        "rustup",
        &[
            "run",
            &ebpf_channel()?,
            "cargo",
            "clippy",
            "--package",
            "filter-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
            "../target/ebpf-clippy",
            "--",
            "-D",
            "warnings",
        ],
    );
    ebpf.current_dir(root().join("filter-ebpf"));
    t.phase("clippy (the XDP program)", |_| run(ebpf))?;
    t.phase("dist/ up to date", |_| dist(true))
}

/// Builds the kernel test binaries (tests/tests/*.rs) without running
/// them; by name.
fn test_binaries() -> anyhow::Result<BTreeMap<String, TestBinary>> {
    let json = shell::stdout(cargo(&[
        "test",
        "--package",
        "mxgate-tests",
        "--tests",
        "--no-run",
        "--message-format=json",
    ]))?;
    let mut binaries = BTreeMap::new();
    for line in json.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test_target = message["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if message["reason"] != "compiler-artifact" || !is_test_target {
            continue;
        }
        let (Some(name), Some(path), Some(manifest)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        let cwd = Path::new(manifest)
            .parent()
            .context("a manifest path has a directory")?
            .to_path_buf();
        binaries.insert(
            name.to_owned(),
            TestBinary {
                path: PathBuf::from(path),
                cwd,
            },
        );
    }
    if binaries.is_empty() {
        bail!("cargo test --no-run built no kernel test binary");
    }
    Ok(binaries)
}

/// Every kernel test binary on this machine's kernel, as root.
fn host_kernel_tests(
    binaries: &BTreeMap<String, TestBinary>,
    mxgate: &Path,
    filter: &[String],
) -> anyhow::Result<KernelResult> {
    let started = Instant::now();
    let release = shell::output(shell::command("uname", &["-r"]))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut suites = Vec::new();
    let mut instructions = Vec::new();
    for (name, binary) in binaries {
        let mut cmd = std::process::Command::new(&binary.path);
        cmd.args(filter)
            .current_dir(&binary.cwd)
            .env("MXGATE_BIN", mxgate);
        if name == "verdict" {
            cmd.arg("--nocapture");
        }
        let mut cmd = as_root(cmd);
        eprintln!("==> {} (host kernel {release})", shell::describe(&cmd));
        let suite_started = Instant::now();
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("starting {}", binary.path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        let closing = text
            .lines()
            .rev()
            .find(|l| l.starts_with("test result:"))
            .unwrap_or_default();
        let (passed, failed) = kernels::counts(closing);
        if name == "verdict" {
            instructions = kernels::instruction_lines(&text);
        }
        suites.push(SuiteResult {
            binary: name.clone(),
            passed,
            failed,
            ok: out.status.success(),
            secs: suite_started.elapsed().as_secs(),
        });
    }
    Ok(KernelResult {
        release,
        suites,
        instructions,
        secs: started.elapsed().as_secs(),
    })
}

/// The differential test with `frames` frames from `seed`, optimised.
pub fn fuzz(frames: u64, seed: &str) -> anyhow::Result<()> {
    let build = cargo(&[
        "test",
        "--release",
        "--package",
        "mxgate-tests",
        "--test",
        "differential",
        "--no-run",
    ]);
    run(build)?;
    let mut test = cargo(&[
        "test",
        "--release",
        "--package",
        "mxgate-tests",
        "--test",
        "differential",
        "--",
        "--nocapture",
    ]);
    test.env("MXGATE_FUZZ_FRAMES", frames.to_string())
        .env("MXGATE_FUZZ_SEED", seed);
    run(as_root(test))
}

/// Writes dist/man and dist/completions, or with `check` fails if they are
/// out of date with the CLI definitions.
pub fn dist(check: bool) -> anyhow::Result<()> {
    let mut args = vec![
        "run",
        "--quiet",
        "--package",
        "filter-user",
        "--example",
        "dist",
        "--",
    ];
    if check {
        args.push("--check");
    }
    args.push("dist");
    run(cargo(&args))
}

/// The benchmarks, optimised; their tables are printed, and with `write`
/// also written into BENCHMARKS.md. With `before`, the program of that git
/// revision runs beside this build's.
pub fn bench(write: bool, before: Option<&str>) -> anyhow::Result<()> {
    let before = before
        .map(|rev| build_program_of(rev).map(|obj| (rev, obj)))
        .transpose()?;
    let binary = shell::build_release()?;
    run(cargo(&[
        "build",
        "--release",
        "--package",
        "mxgate-tests",
        "--features",
        "bench",
        "--bin",
        "bench",
    ]))?;
    let mut bench = std::process::Command::new(root().join("target/release/bench"));
    if write {
        bench.arg("BENCHMARKS.md");
    }
    bench.current_dir(root()).env("MXGATE_BIN", binary);
    if let Some((rev, object)) = before {
        bench
            .env("MXGATE_BENCH_BEFORE", object)
            .env("MXGATE_BENCH_BEFORE_NAME", rev);
    }
    run(as_root(bench))
}

/// The XDP program as git revision `rev` builds it: its tree exported
/// under target/bench-before/, built there with the pinned nightly.
fn build_program_of(rev: &str) -> anyhow::Result<PathBuf> {
    let commit = shell::stdout(shell::command(
        "git",
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    ))
    .with_context(|| format!("{rev} is not a commit of this repository"))?;
    let commit = commit.trim();
    let dir = root().join("target/bench-before").join(commit);
    let object = dir.join("target/bpfel-unknown-none/release/mxgate");
    if !object.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tar = dir.join("tree.tar");
        run(shell::command(
            "git",
            &[
                "archive".as_ref(),
                "--output".as_ref(),
                tar.as_os_str(),
                commit.as_ref(),
            ],
        ))?;
        run(shell::command(
            "tar",
            &[
                "-xf".as_ref(),
                tar.as_os_str(),
                "-C".as_ref(),
                dir.as_os_str(),
            ],
        ))?;
        let target = dir.join("target");
        let mut build = shell::command(
            "rustup",
            &[
                "run".as_ref(),
                ebpf_channel()?.as_ref(),
                "cargo".as_ref(),
                "build".as_ref(),
                "--quiet".as_ref(),
                "--release".as_ref(),
                "--target".as_ref(),
                "bpfel-unknown-none".as_ref(),
                "-Z".as_ref(),
                "build-std=core".as_ref(),
                "--bin".as_ref(),
                "mxgate".as_ref(),
                "--target-dir".as_ref(),
                target.as_os_str(),
            ] as &[&std::ffi::OsStr],
        );
        build.current_dir(dir.join("filter-ebpf"));
        run(build)?;
    }
    Ok(object)
}
