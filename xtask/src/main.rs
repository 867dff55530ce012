//! `cargo xtask`: the project's own tasks. Every task first checks the
//! prerequisites it needs; only `setup` and the first run of `demo` and
//! `test` install what is missing (and say so), the others name it and
//! stop.

mod apt;
mod deb;
mod demo;
mod exim;
mod kernels;
mod readme;
mod setup;
mod shell;
mod test;
mod timing;

use clap::{Parser, Subcommand};
use setup::{Mode, Needs};

/// mxgate's development tasks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every prerequisite that is missing (idempotent): what
    /// building, testing on this machine's kernel, the package test and the
    /// benchmarks need; with `--kernels`, also QEMU, virtme-ng and the
    /// kernels of xtask/kernels.toml. (`demo` and `test` do this on their
    /// first run; the other tasks install nothing.)
    Setup {
        /// Also what the kernel matrix needs.
        #[arg(long)]
        kernels: bool,
    },
    /// Build target/release/mxgate with the XDP program embedded. Installs
    /// nothing.
    Build,
    /// Run every check: fmt, clippy (user space and eBPF), generated
    /// files, unit tests, the Debian package, the kernel tests on this
    /// machine's kernel, then in a VM per kernel of xtask/kernels.toml;
    /// then a table of where the time went. Writes no tracked file unless
    /// told (`--write-readme`).
    Test {
        /// Only boot this kernel (a name from xtask/kernels.toml, e.g.
        /// 6.1) and run the suites inside; no other check. Repeatable.
        #[arg(long = "kernel", value_name = "NAME", conflicts_with = "kernels")]
        kernel: Vec<String>,
        /// `all` (the default): every check, then every kernel's VM;
        /// `none`: every check, no VM; `only`: every kernel's VM and no
        /// other check.
        #[arg(long, value_name = "all|none|only")]
        kernels: Option<KernelSet>,
        /// Write README's kernel table (the rows of the kernels run) from
        /// this run's results.
        #[arg(long)]
        write_readme: bool,
        /// Arguments passed to the unit and kernel test binaries (a test
        /// name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Show the filter at work between two network namespaces.
    Demo,
    /// Measure per-packet, SYN-flood and refresh costs and print them.
    Bench {
        /// Write the results into BENCHMARKS.md.
        #[arg(long)]
        write: bool,
        /// Also run the common path through the program of this commit (a
        /// git revision), beside this build's, in the same run. Its program
        /// must have this build's maps (the same map layout version).
        #[arg(long, value_name = "REV")]
        before: Option<String>,
    },
    /// Generate dist/man and dist/completions from the CLI definitions.
    Dist {
        /// Fail if they are out of date instead of writing them.
        #[arg(long)]
        check: bool,
    },
    /// Build target/debian/mxgate_VERSION_amd64.deb and check it with lintian.
    Deb {
        /// Also install it into a clean Debian 12 root booted under
        /// systemd-nspawn and test it and its unit there under systemd (as
        /// `cargo xtask test` does).
        #[arg(long)]
        test: bool,
    },
    /// The part of `deb --test` that needs root (run through `sudo -E` when
    /// xtask is not root): boot ROOT, install DEB (a path inside) and test.
    #[command(hide = true)]
    PackageBootTest {
        /// The unpacked Debian root.
        root: std::path::PathBuf,
        /// The package, as a path inside the root.
        deb: String,
    },
    /// Run the differential test (kernel vs reference classifier) longer.
    Fuzz {
        /// How many frames.
        #[arg(long, default_value_t = 10_000_000)]
        frames: u64,
        /// Seed of the frame generator (decimal or 0x hex).
        #[arg(long, default_value = "0x6d78676174650001")]
        seed: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KernelSet {
    All,
    None,
    Only,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let build = Needs {
        build: true,
        ..Needs::default()
    };
    let kernel = Needs {
        kernel: true,
        ..build
    };
    let result = match cli.task {
        Task::Setup { kernels } => setup::run(
            Needs {
                host_tests: true,
                bench: true,
                vms: kernels,
                deb: true,
                ..kernel
            },
            Mode::Install("setup"),
        ),
        Task::Build => {
            setup::run(build, Mode::Check("build")).and_then(|()| shell::build_release().map(drop))
        }
        Task::Test {
            kernel: names,
            kernels,
            write_readme,
            args,
        } => {
            let matrix = match (names.is_empty(), kernels) {
                (false, _) => test::Matrix::Only(names),
                (true, Some(KernelSet::None)) => test::Matrix::HostOnly,
                (true, Some(KernelSet::Only)) => test::Matrix::Only(
                    kernels::list()
                        .map(|l| l.kernel.into_iter().map(|k| k.name).collect())
                        .unwrap_or_default(),
                ),
                (true, Some(KernelSet::All) | None) => test::Matrix::Full,
            };
            let needs = match &matrix {
                test::Matrix::Full => Needs {
                    bench: false,
                    ..Needs::all()
                },
                test::Matrix::HostOnly => Needs {
                    vms: false,
                    bench: false,
                    ..Needs::all()
                },
                test::Matrix::Only(_) => Needs {
                    vms: true,
                    ..kernel
                },
            };
            setup::run(needs, Mode::Install("test"))
                .and_then(|()| test::run_all(&matrix, &args, write_readme))
        }
        Task::Demo => setup::run(kernel, Mode::Install("demo")).and_then(|()| demo::run()),
        Task::Bench { write, before } => setup::run(
            Needs {
                bench: true,
                ..kernel
            },
            Mode::Check("bench"),
        )
        .and_then(|()| test::bench(write, before.as_deref())),
        Task::Dist { check } => {
            setup::run(build, Mode::Check("dist")).and_then(|()| test::dist(check))
        }
        Task::Deb { test } => setup::run(
            Needs {
                deb: true,
                kernel: test,
                ..build
            },
            Mode::Check("deb"),
        )
        .and_then(|()| {
            if test {
                let started = std::time::Instant::now();
                let mut timings = timing::Timings::default();
                let result = deb::test(&mut timings);
                eprint!(
                    "{}",
                    timings.table(
                        "deb --test: where the time went",
                        started.elapsed().as_secs_f64()
                    )
                );
                result.map(drop)
            } else {
                deb::build().map(drop)
            }
        }),
        Task::PackageBootTest { root, deb } => deb::boot_test(&root, &deb),
        Task::Fuzz { frames, seed } => {
            setup::run(kernel, Mode::Check("fuzz")).and_then(|()| test::fuzz(frames, &seed))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
