//! simplevisor: command dispatch and exit codes (0 success, 1 failure, 2 usage or config
//! error, or an essential job's status). Everything else lives in the modules below.

use std::process::ExitCode;

use simplevisor::cli::{self, Command};
use simplevisor::{check, config, control, stdout, supervisor};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("simplevisor: {message}\nRun 'simplevisor --help' for usage.");
            return ExitCode::from(2);
        }
    };
    let code = match command {
        Command::Help => stdout::print(&format!("{}\n", cli::USAGE), 0),
        Command::Version => {
            stdout::print(&format!("simplevisor {}\n", env!("CARGO_PKG_VERSION")), 0)
        }
        Command::Schema => stdout::print(&format!("{}\n", config::file::schema()), 0),
        Command::Check(options) => check::run(&options),
        Command::Run(options) => supervisor::run(&options),
        Command::Control(call) => control::client::run(&call),
    };
    ExitCode::from(code)
}
