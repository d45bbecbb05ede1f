//! The first steps of both `run` and `check`: finding and loading the configuration, and
//! planning the job environment, with every problem in one message. `check` stops after them;
//! `run` goes on to supervise. Both report the same errors because both come through here.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cli::{self, Options};
use crate::config::{self, Config};
use crate::environment::{self, EnvPlan};
use crate::identity::UserDb;

/// The configuration file `options` select (`--config`, then `$SIMPLEVISOR_CONFIG`, then next to the binary).
pub fn config_path(options: &Options) -> PathBuf {
    let exe = std::env::current_exe().ok();
    cli::config_path(
        options.config.as_deref(),
        std::env::var_os("SIMPLEVISOR_CONFIG"),
        exe.as_deref(),
    )
}

/// Loads and validates the configuration; the error is the complete message.
pub fn load_config(options: &Options) -> Result<Config, String> {
    let path = config_path(options);
    let users = UserDb::system()
        .map_err(|e| format!("simplevisor: cannot read /etc/passwd or /etc/group: {e}"))?;
    config::load(&path, &users).map_err(|e| format!("simplevisor: {e}"))
}

/// The environment plan (references parsed, templates of variables and files tried); the
/// error is the complete message.
pub fn plan_environment(
    config: &Config,
    process_env: &[(String, String)],
    no_vault: bool,
) -> Result<EnvPlan, String> {
    let files = environment::check_file_templates(&config.files, &config.env, process_env);
    let planned = match environment::plan(&config.env, process_env, no_vault) {
        Ok(plan) if files.is_empty() => Ok(plan),
        Ok(_) => Err(files),
        Err(mut problems) => {
            problems.extend(files);
            Err(problems)
        }
    };
    planned.map_err(|problems| {
        let mut message = format!(
            "simplevisor: {}: {} problem(s) found in the environment:",
            config.source.display(),
            problems.len()
        );
        for problem in problems {
            let _ = write!(message, "\n  {problem}");
        }
        message
    })
}
