//! The `mxgate` command.
use std::process::ExitCode;

use clap::Parser as _;
use filter_user::{cli::Cli, commands, error, pins::PinDir};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let pins = PinDir::new(&cli.pin_dir);
    match commands::run(&pins, &cli.invocation()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mxgate: error: {err:#}");
            error::exit_code(&err)
        }
    }
}
