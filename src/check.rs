//! `simplevisor check`: load and validate everything `run` would (config, users, signals,
//! environment references and templates) without starting a job or contacting Vault, then print
//! a short summary (never a secret value) or every problem. [`load_config`] is also how `run`
//! loads its configuration, so both report the same errors.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cli::{self, Options};
use crate::config::{self, Config, ExpiryPolicy, JobSpec, RestartPolicy, duration};
use crate::environment::{self, EnvPlan};
use crate::identity::UserDb;
use crate::signals;

/// The configuration file `options` select (SPEC 1 precedence).
pub fn config_path(options: &Options) -> PathBuf {
    let exe = std::env::current_exe().ok();
    cli::config_path(
        options.config.as_deref(),
        std::env::var_os("SIMPLEVISOR_CONFIG"),
        exe.as_deref(),
    )
}

/// Loads the configuration exactly as `check` does; the error is the complete message.
pub fn load_config(options: &Options) -> Result<Config, String> {
    let path = config_path(options);
    let users = UserDb::system()
        .map_err(|e| format!("simplevisor: cannot read /etc/passwd or /etc/group: {e}"))?;
    config::load(&path, &users).map_err(|e| format!("simplevisor: {e}"))
}

/// Exit status 0 (valid) or 2 (problems printed on stderr).
pub fn run(options: &Options) -> u8 {
    let config = match load_config(options) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    let process_env = environment::process_environment();
    match plan_environment(&config, &process_env, options.no_vault) {
        Ok(plan) => {
            let vault_problems = if plan.needs_vault {
                crate::vault::check_settings(&process_env)
            } else {
                Vec::new()
            };
            if !vault_problems.is_empty() {
                eprintln!("simplevisor: Vault is needed, but its settings are not usable:");
                for problem in vault_problems {
                    eprintln!("  {problem}");
                }
                return 2;
            }
            cli::print_stdout(&summary(&config, &plan, options.no_vault), 0)
        }
        Err(message) => {
            eprintln!("{message}");
            2
        }
    }
}

/// The environment plan exactly as `check` makes it; the error is the complete message.
pub fn plan_environment(
    config: &Config,
    process_env: &[(String, String)],
    no_vault: bool,
) -> Result<EnvPlan, String> {
    environment::plan(&config.env, process_env, no_vault).map_err(|problems| {
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

fn summary(config: &Config, plan: &EnvPlan, no_vault: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", config.source.display());
    for (title, jobs) in [("init jobs", &config.init), ("main jobs", &config.main)] {
        let _ = writeln!(out, "{title}: {}", jobs.len());
        for job in jobs {
            let _ = writeln!(out, "  {}", describe_job(job));
        }
    }
    let vars: Vec<String> = plan
        .replacements
        .iter()
        .map(|(name, r)| {
            let kind = match r.kind {
                environment::SecretKind::Db => "db",
                environment::SecretKind::Secret => "secret",
                environment::SecretKind::AwsUser => "aws-user",
            };
            format!("{name} <- {kind}:{}:{}", r.path, r.field)
        })
        .collect();
    if no_vault {
        let _ = writeln!(
            out,
            "vault: off (--no-vault): vault-replace values are used as they are"
        );
    } else if plan.needs_vault {
        let _ = writeln!(
            out,
            "vault: needed; on-lease-expiry {}, revoke-on-exit {}",
            match config.vault.on_lease_expiry {
                ExpiryPolicy::Exit => "exit",
                ExpiryPolicy::Restart => "restart",
            },
            config.vault.revoke_on_exit
        );
        for var in vars {
            let _ = writeln!(out, "  {var}");
        }
        if config.env.vault_token {
            let _ = writeln!(out, "  VAULT_TOKEN and VAULT_ADDR injected into jobs");
        }
    } else {
        let _ = writeln!(out, "vault: not needed");
    }
    for (name, _) in &plan.templates {
        let _ = writeln!(out, "template: {name}");
    }
    out
}

fn describe_job(job: &JobSpec) -> String {
    let mut text = format!("{}: {}", job.name, job.cmd.join(" "));
    if let Some(id) = &job.run_as {
        let _ = write!(
            text,
            " | run-as uid {} gid {} ({})",
            id.uid, id.gid, id.user
        );
    }
    let _ = write!(
        text,
        " | kill-signal {} | stop-timeout {}",
        signals::name_of(job.kill_signal as i32),
        duration::format(job.stop_timeout)
    );
    if job.kind == config::JobKind::Main {
        let restart = match job.restart {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        };
        let _ = write!(text, " | restart {restart}");
        if job.essential {
            text.push_str(" | essential");
        }
    }
    text
}
