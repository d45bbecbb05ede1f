//! simplevisor: command dispatch and exit codes (0 success, 1 failure, 2 usage or config
//! error, or an essential job's status). Everything else lives in the modules below.

mod check;
mod cli;
mod config;
mod environment;
mod identity;
mod logs;
mod mailbox;
mod signals;
mod spawn;
mod supervisor;
mod template;
mod vault;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("simplevisor: {message}\nRun 'simplevisor --help' for usage.");
            return ExitCode::from(2);
        }
    };
    let code = match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            0
        }
        Command::Version => {
            println!("simplevisor {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Schema => {
            println!("{}", config::file::schema());
            0
        }
        Command::Check(options) => check::run(&options),
        Command::Run(options) => supervisor::run(&options),
    };
    ExitCode::from(code)
}
