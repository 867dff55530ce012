//! Builds the XDP program (filter-ebpf) with the nightly pinned in
//! filter-ebpf/rust-toolchain.toml and leaves it in OUT_DIR for
//! `include_bytes_aligned!`.
use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
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
