//! Builds the XDP program (filter-ebpf) with the nightly pinned in
//! filter-ebpf/rust-toolchain.toml and leaves it in OUT_DIR for
//! `include_bytes_aligned!`.
//!
//! aya-build relays every line of the inner cargo build as a
//! `cargo::warning`, so a clean build would print dozens of `warning:` lines.
//! This script therefore runs the eBPF build in a second copy of itself and
//! reads what it prints: cargo's `rerun-if` instructions are passed on; the
//! build's own output is shown only when the build fails.
use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use aya_build::{Package, Toolchain};

/// Set in the second copy: it builds the program instead of watching.
const INNER: &str = "MXGATE_EBPF_BUILD_INNER";

fn main() -> anyhow::Result<()> {
    if std::env::var_os(INNER).is_some() {
        return build_ebpf();
    }
    let me = std::env::current_exe().context("finding the build script's own path")?;
    let out = Command::new(&me)
        .env(INNER, "1")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", me.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        if line.starts_with("cargo::rerun-if") || line.starts_with("cargo:rerun-if") {
            println!("{line}");
        }
    }
    if !out.status.success() {
        // Shown by cargo when a build script fails.
        let mut stderr = std::io::stderr().lock();
        for line in stdout.lines() {
            let line = line
                .strip_prefix("cargo::warning=")
                .or_else(|| line.strip_prefix("cargo:warning="))
                .unwrap_or(line);
            writeln!(stderr, "{line}")?;
        }
        stderr.write_all(&out.stderr)?;
        bail!(
            "building the XDP program (filter-ebpf) failed ({})",
            out.status
        );
    }
    Ok(())
}

/// The eBPF build itself, through aya-build.
fn build_ebpf() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("running cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "filter-ebpf")
        .ok_or_else(|| anyhow!("filter-ebpf is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no directory above {}", ebpf.manifest_path))?;
    let toolchain_file = root_dir.join("rust-toolchain.toml");
    println!("cargo::rerun-if-changed={toolchain_file}");
    let toolchain = pinned_channel(toolchain_file.as_std_path())?;
    aya_build::build_ebpf(
        [Package {
            name: "filter-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
}

/// The `channel` of a rust-toolchain.toml file.
fn pinned_channel(path: &Path) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct File {
        toolchain: Section,
    }
    #[derive(serde::Deserialize)]
    struct Section {
        channel: String,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.toolchain.channel)
}
