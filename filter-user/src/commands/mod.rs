//! The subcommands. Each computes a result, then prints it; the kernel is
//! only touched after every input has been read and validated.

mod attach;
mod inspect;
mod refresh;
mod run;
mod switch;

pub use attach::{AttachReport, attach_filter};
pub use inspect::take_reading;
pub use refresh::{RefreshOutcome, apply_list};

use crate::{
    cli::{Cli, Command},
    error::InvalidInput,
    filter::{Filter, NotInstalled},
    pins::{Lock, PinDir},
    ranges::ParsedList,
    sources::{self, SourceOptions},
};

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let pins = PinDir::new(&cli.pin_dir);
    match cli.command {
        Command::Attach(args) => attach::command(&pins, &args),
        Command::Refresh(args) => refresh::command(&pins, &args),
        Command::Run(args) => run::command(&pins, &args),
        Command::Stats(args) => inspect::stats(&pins, &args),
        Command::Status(args) => inspect::status(&pins, &args),
        Command::Check(args) => refresh::check(&args),
        Command::Lookup(args) => inspect::lookup(&pins, &args),
        Command::Open => switch::open(&pins, true),
        Command::Enforce => switch::open(&pins, false),
        Command::Detach(args) => switch::detach(&pins, &args),
    }
}

/// Reads the lists, prints their warnings to stderr, and refuses an empty
/// result: an empty allowlist would deny everyone.
fn read_nonempty_list(
    sources: &[String],
    allow: &[String],
    options: &SourceOptions,
) -> anyhow::Result<ParsedList> {
    let list = sources::read_list(sources, allow, options)?;
    for warning in &list.warnings {
        eprintln!("mxgate: warning: {warning}");
    }
    if list.allowlist.is_empty() {
        return Err(InvalidInput(format!(
            "the list from {} has no entries; an empty allowlist would deny every sender \
             (nothing changed)",
            sources.join(", ")
        ))
        .into());
    }
    Ok(list)
}

/// Takes the pin directory's lock, then opens the filter: a command that
/// changes it never interleaves with another one.
fn open_locked(pins: &PinDir) -> anyhow::Result<(Lock, Filter)> {
    if !pins.is_installed() {
        return Err(NotInstalled(pins.root().to_path_buf()).into());
    }
    let lock = pins.lock()?;
    let filter = Filter::open(pins)?;
    Ok((lock, filter))
}
