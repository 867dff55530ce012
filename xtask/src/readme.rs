//! README's table of tested kernels, written by `cargo xtask test
//! --write-readme` (never by a plain `cargo xtask test`) from what it just
//! ran: one row per kernel (the host's and each VM's), the rows of kernels
//! not run this time kept as they were.

use anyhow::{Context as _, bail};

use crate::{
    kernels::{self, Kernel, KernelResult},
    shell::{self, root},
};

const BEGIN: &str =
    "<!-- kernel-table: written by `cargo xtask test --write-readme`, do not edit -->";
const END: &str = "<!-- kernel-table end -->";
const HEADER: &str = "| kernel | version tested | distribution | suites passed | program size (instructions / processed by the verifier) | date |\n\
                      | --- | --- | --- | --- | --- | --- |";

/// One row of the table.
pub struct Row {
    key: String,
    text: String,
}

impl Row {
    /// This machine's kernel, tested directly.
    pub fn host(result: &KernelResult) -> Self {
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self::new(
            "host",
            &result.release,
            &format!("the test machine ({os}), no VM; every suite"),
            result,
        )
    }

    /// A kernel of the matrix, tested in a VM.
    pub fn vm(kernel: &Kernel, result: &KernelResult) -> Self {
        let version = format!("{} ({})", result.release, kernels::package_version(kernel));
        Self::new(&kernel.name, &version, &kernel.distribution, result)
    }

    fn new(key: &str, version: &str, distribution: &str, result: &KernelResult) -> Self {
        let suites = result
            .suites
            .iter()
            .map(|s| {
                let total = s.passed + s.failed;
                if s.ok {
                    format!("{} {}/{total}", s.binary, s.passed)
                } else {
                    format!("**{} FAILED {}/{total}**", s.binary, s.passed)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let size = if result.instructions.is_empty() {
            "not loaded".to_owned()
        } else {
            result
                .instructions
                .iter()
                .map(|l| l.replace(" processed by the verifier", " verified"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        Self {
            key: key.to_owned(),
            text: format!(
                "| {key} | {version} | {distribution} | {suites} | {size} | {} |",
                shell::today()
            ),
        }
    }
}

/// Replaces the rows of `rows`' kernels in README.md's table.
pub fn update(rows: &[Row]) -> anyhow::Result<()> {
    let path = root().join("README.md");
    let text = std::fs::read_to_string(&path).context("reading README.md")?;
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        bail!("README.md has no kernel table markers ({BEGIN} … {END})");
    };
    let body = &text[start + BEGIN.len()..end];
    let mut table: Vec<(String, String)> = body
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| kernel ") && !l.starts_with("| ---"))
        .map(|l| {
            let key = l.split('|').nth(1).unwrap_or_default().trim().to_owned();
            (key, l.to_owned())
        })
        .collect();
    for row in rows {
        match table.iter_mut().find(|(k, _)| *k == row.key) {
            Some(existing) => existing.1.clone_from(&row.text),
            None => table.push((row.key.clone(), row.text.clone())),
        }
    }
    // Host first, then by version.
    table.sort_by_key(|(k, _)| {
        let mut parts = k.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (k != "host", parts.next(), parts.next())
    });
    let mut new = String::new();
    new.push_str(&text[..start + BEGIN.len()]);
    new.push('\n');
    new.push_str(HEADER);
    new.push('\n');
    for (_, line) in &table {
        new.push_str(line);
        new.push('\n');
    }
    new.push_str(&text[end..]);
    if new != text {
        std::fs::write(&path, new).context("writing README.md")?;
        eprintln!("==> README.md: kernel table updated");
    }
    Ok(())
}
