//! The `mxgate` command.
use std::process::ExitCode;

use clap::Parser as _;
use filter_user::{cli::Cli, commands, error};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mxgate: error: {err:#}");
            error::exit_code(&err)
        }
    }
}
