//! `cargo xtask`: the project's own tasks. Every task first runs `setup`,
//! which checks each prerequisite and installs what is missing.

mod demo;
mod setup;
mod shell;
mod test;

use clap::{Parser, Subcommand};

/// mxgate's development tasks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every prerequisite that is missing (idempotent).
    Setup,
    /// Build target/release/mxgate with the XDP program embedded.
    Build,
    /// Run every check: fmt, clippy (user space and eBPF), unit and kernel tests.
    Test {
        /// Arguments passed to `cargo test` after `--` (a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Show the filter at work between two network namespaces.
    Demo,
    /// Measure per-packet, SYN-flood and refresh costs; write BENCHMARKS.md.
    Bench,
    /// Generate dist/man and dist/completions from the CLI definitions.
    Dist,
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| shell::build_release().map(drop)),
        Task::Test { args } => setup::run().and_then(|()| test::run_all(&args)),
        Task::Demo => setup::run().and_then(|()| demo::run()),
        Task::Bench => setup::run().and_then(|()| test::bench()),
        Task::Dist => setup::run().and_then(|()| test::dist(false)),
        Task::Fuzz { frames, seed } => setup::run().and_then(|()| test::fuzz(frames, &seed)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
