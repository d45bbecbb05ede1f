//! `simplevisor check`: load and validate everything `run` would (config, users, signals,
//! environment references and templates) without starting a job or contacting Vault, then print
//! a short summary (never a secret value) or every problem.

use crate::cli::Options;

/// Exit status 0 (valid) or 2 (problems printed on stderr).
pub fn run(options: &Options) -> u8 {
    let _ = options;
    todo!()
}

/// Loads the configuration exactly as `check` does; the error is the complete message.
pub fn load_config(options: &Options) -> Result<crate::config::Config, String> {
    let _ = options;
    todo!()
}
