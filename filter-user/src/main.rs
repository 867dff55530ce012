//! The `mxgate` command.
use std::process::ExitCode;

use clap::Parser as _;
use filter_user::{
    cli::Cli,
    commands::{self, Invocation},
    error,
    text::printable,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let invocation = cli.invocation();
    if !matches!(invocation, Invocation::Run(_)) {
        // A reader that goes away (`mxgate status | head -1`) ends a
        // printing command quietly, as it does `cat`. `run` keeps Rust's
        // default (ignored): its log must not stop the filter's watch.
        // SAFETY: setting a signal's disposition to the default has no
        // preconditions; no other thread runs yet.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match commands::run(&cli.pins(), &invocation) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Names from outside (interfaces, pins, list lines) may hold
            // control characters: escaped, line by line.
            let text: Vec<String> = format!("{err:#}").lines().map(printable).collect();
            eprintln!("mxgate: error: {}", text.join("\n"));
            error::exit_code(&err)
        }
    }
}
