//! `cargo xtask test`: formatting, lints (user space and eBPF), unit tests
//! and the kernel tests. The kernel tests never skip: without root or a
//! prerequisite they fail and say what is missing.

use crate::{
    setup::{ebpf_channel, require_root},
    shell::{command_line, root, run},
};

/// Runs every check; `filter` is passed to `cargo test`.
pub fn run_all(filter: &[String]) -> anyhow::Result<()> {
    require_root("test")?;
    run(command_line("cargo fmt --all -- --check"))?;
    run(command_line(
        "cargo clippy --workspace --exclude filter-ebpf --all-targets -- -D warnings",
    ))?;
    // The benchmark binary needs its feature to be built, and linted.
    run(command_line(
        "cargo clippy --package mxgate-tests --features bench --all-targets -- -D warnings",
    ))?;
    // The XDP program only builds for the BPF target, with the pinned
    // nightly, in a target dir of its own (another compiler than the rest).
    let mut ebpf = command_line(&format!(
        "rustup run {} cargo clippy --package filter-ebpf --release \
         --target bpfel-unknown-none -Z build-std=core \
         --target-dir ../target/ebpf-clippy -- -D warnings",
        ebpf_channel()?
    ));
    ebpf.current_dir(root().join("filter-ebpf"));
    run(ebpf)?;
    run(command_line(
        "cargo build --package filter-user --bin mxgate",
    ))?;
    let mut tests = command_line(&format!(
        "cargo test --workspace --exclude filter-ebpf -- {}",
        filter.join(" ")
    ));
    tests.env("MXGATE_BIN", root().join("target/debug/mxgate"));
    run(tests)
}

/// The differential test with `frames` frames from `seed`, optimised.
pub fn fuzz(frames: u64, seed: &str) -> anyhow::Result<()> {
    require_root("fuzz")?;
    let mut test = command_line(
        "cargo test --release --package mxgate-tests --test differential -- --nocapture",
    );
    test.env("MXGATE_FUZZ_FRAMES", frames.to_string())
        .env("MXGATE_FUZZ_SEED", seed);
    run(test)
}

/// Writes dist/man and dist/completions, or with `check` fails if they are
/// out of date with the CLI definitions.
pub fn dist(check: bool) -> anyhow::Result<()> {
    let check = if check { "--check " } else { "" };
    run(command_line(&format!(
        "cargo run --quiet --package filter-user --example dist -- {check}dist"
    )))
}

/// The benchmarks, optimised; their tables go into BENCHMARKS.md.
pub fn bench() -> anyhow::Result<()> {
    require_root("bench")?;
    let binary = crate::shell::build_release()?;
    let mut bench = command_line(
        "cargo run --release --quiet --package mxgate-tests --features bench --bin bench -- BENCHMARKS.md",
    );
    bench.env("MXGATE_BIN", binary);
    run(bench)
}
