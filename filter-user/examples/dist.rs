//! Generates the man pages and shell completions under `dist/` from the
//! clap definitions (`cargo xtask dist`); with `--check`, fails instead if
//! the files there differ from what the definitions give.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;
use clap_complete::Shell;
use filter_user::cli::Cli;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (check, dir) = match (args.next(), args.next()) {
        (Some(flag), Some(dir)) if flag == "--check" => (true, dir),
        (Some(dir), None) => (false, dir),
        _ => bail!("usage: dist [--check] DIR"),
    };
    let dir = PathBuf::from(dir);
    let generated = std::env::temp_dir().join(format!("mxgate-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&generated);
    for sub in ["man", "completions"] {
        std::fs::create_dir_all(generated.join(sub))?;
    }
    clap_mangen::generate_to(Cli::command(), generated.join("man"))
        .context("rendering man pages")?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(
            shell,
            &mut Cli::command(),
            "mxgate",
            generated.join("completions"),
        )
        .with_context(|| format!("rendering {shell} completions"))?;
    }
    let mut stale = Vec::new();
    for sub in ["man", "completions"] {
        for entry in std::fs::read_dir(generated.join(sub))? {
            let from = entry?.path();
            let to = dir.join(sub).join(from.file_name().context("a file name")?);
            let new = std::fs::read(&from)?;
            if std::fs::read(&to).ok().as_ref() == Some(&new) {
                continue;
            }
            if check {
                stale.push(to.display().to_string());
            } else {
                std::fs::create_dir_all(dir.join(sub))?;
                std::fs::write(&to, new).with_context(|| format!("writing {}", to.display()))?;
                println!("wrote {}", to.display());
            }
        }
    }
    std::fs::remove_dir_all(&generated)?;
    if !stale.is_empty() {
        bail!(
            "out of date with the clap definitions (run `cargo xtask dist`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}
