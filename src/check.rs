//! `simplevisor check`: load and validate everything `run` would (config, users, signals,
//! environment references and templates) without starting a job or contacting Vault, then print
//! a short summary (never a secret value) or every problem. It loads through
//! [`startup`](crate::startup), as `run` does, so both report the same errors.
//!
//! A `cmd[0]` that cannot be found or run, and a `workdir` that does not exist, are only
//! warnings: an init job may create either before a main job needs it. So is the missing
//! directory of a file: the container that runs simplevisor may have it when `check` did not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::cli::Options;
use crate::config::{self, AuthSettings, Config, JobSpec, Named, duration};
use crate::environment::{self, EnvPlan};
use crate::signals;
use crate::spawn;
use crate::startup::{load_config, plan_environment};

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
    for warning in start_warnings(&config, &process_env) {
        eprintln!(
            "simplevisor: {}: warning: {warning}",
            config.source.display()
        );
    }
    match plan_environment(&config, &process_env, options.no_vault) {
        Ok(plan) => {
            let vault_problems = if plan.needs_vault {
                crate::vault::check_settings(&config.vault, &process_env)
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
            crate::stdout::print(&summary(&config, &plan, options.no_vault), 0)
        }
        Err(message) => {
            eprintln!("{message}");
            2
        }
    }
}

/// What would make a job fail to start, as far as it can be told now: its program, looked up
/// as the job will look it up, and its working directory.
fn start_warnings(config: &Config, process_env: &[(String, String)]) -> Vec<String> {
    // Secrets and templates cannot change which variables pass, so the job's PATH is known
    // without them.
    let mut warnings = Vec::new();
    for (i, file) in config.files.iter().enumerate() {
        // Files are written before the first init job: no job can create the directory.
        if let Some(dir) = file.path.parent()
            && !dir.is_dir()
        {
            warnings.push(format!(
                "files[{i}].path: {} is not an existing directory; writing {} would fail at start",
                dir.display(),
                file.path.display()
            ));
        }
    }
    let job_env = match environment::build(
        &config.env,
        process_env,
        &EnvPlan::default(),
        &BTreeMap::new(),
        None,
    ) {
        Ok(env) => env,
        Err(problem) => {
            // Never an empty environment in its place: that would report every program as
            // missing from PATH.
            warnings.push(format!(
                "cannot build the jobs' environment to look up their programs: {problem}"
            ));
            return warnings;
        }
    };
    for (kind, jobs) in [("init", &config.init), ("main", &config.main)] {
        for (i, job) in jobs.iter().enumerate() {
            let at = format!("jobs.{kind}[{i}]");
            let workdir = job.workdir.as_deref();
            if let Some(dir) = workdir
                && !dir.is_dir()
            {
                warnings.push(format!(
                    "{at}.workdir: {} is not an existing directory; job {} would fail to start unless an init job provides it",
                    dir.display(),
                    job.name
                ));
            }
            if let Some(problem) = program_problem(&job.cmd, &job_env, workdir) {
                warnings.push(format!(
                    "{at}.cmd[0]: {problem}; job {} would fail to start unless an init job provides it",
                    job.name
                ));
            }
        }
    }
    warnings
}

/// Why `cmd[0]` could not be executed, with the lookup the job itself will do.
fn program_problem(
    cmd: &[String],
    env: &[(String, String)],
    workdir: Option<&Path>,
) -> Option<String> {
    let name = cmd.first()?;
    let program = match spawn::resolve_program(name, env) {
        Ok(program) => program,
        Err(error) => return Some(error.reason),
    };
    // A path is used as given, relative to the workdir the job enters before exec.
    let program = match workdir {
        Some(dir) if program.is_relative() => dir.join(program),
        _ => program,
    };
    match std::fs::metadata(&program) {
        Err(error) => Some(format!("{}: {error}", program.display())),
        Ok(meta) if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 => {
            Some(format!("{} is not an executable file", program.display()))
        }
        Ok(_) => None,
    }
}

fn summary(config: &Config, plan: &EnvPlan, no_vault: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", config.source.display());
    for (title, jobs) in [("init jobs", &config.init), ("main jobs", &config.main)] {
        let _ = writeln!(out, "{title}: {}", jobs.len());
        for job in jobs {
            let _ = writeln!(out, "  {}", describe_job(job, config));
        }
    }
    let after: Vec<Vec<usize>> = config.main.iter().map(|job| job.after.clone()).collect();
    if after.iter().any(|a| !a.is_empty())
        && let Some(waves) = config::order::waves(&after)
    {
        let waves: Vec<String> = waves
            .iter()
            .map(|wave| {
                let names: Vec<&str> = wave.iter().map(|&j| config.main[j].name.as_str()).collect();
                names.join(" + ")
            })
            .collect();
        let _ = writeln!(
            out,
            "start order: {} (stopped in reverse)",
            waves.join(", then ")
        );
    }
    match &config.control_socket {
        Some(path) => {
            let _ = writeln!(out, "control socket: {}", path.display());
        }
        None => {
            let _ = writeln!(out, "control socket: off");
        }
    }
    if let Some(addr) = config.metrics_listen {
        let _ = writeln!(
            out,
            "metrics: http://{addr}/metrics, probes /readyz and /livez"
        );
    }
    if !config.shutdown_delay.is_zero() {
        let _ = writeln!(
            out,
            "shutdown-delay: {} (health fails at once, jobs stop after it)",
            duration::format(config.shutdown_delay)
        );
    }
    let vars: Vec<String> = plan
        .replacements
        .iter()
        .map(|(name, r)| {
            let kind = r.kind.as_str();
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
            config.vault.on_lease_expiry.as_str(),
            config.vault.revoke_on_exit
        );
        let _ = writeln!(out, "  login: {}", describe_login(&config.vault));
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
    if !config.files.is_empty() {
        let _ = writeln!(out, "files: {}", config.files.len());
    }
    for file in &config.files {
        let _ = writeln!(out, "  {}", describe_file(file));
    }
    out
}

/// Path, mode, owner and variable of a file; never its template (it may hold a literal secret).
fn describe_file(file: &config::FileSpec) -> String {
    let mut text = format!("{} | mode {:04o} | owner ", file.path.display(), file.mode);
    match &file.owner {
        Some(id) => {
            let _ = write!(text, "uid {} gid {} ({})", id.uid, id.gid, id.user);
        }
        None => text.push_str("simplevisor's own user and group"),
    }
    if let Some(name) = &file.env {
        let _ = write!(text, " | env {name}");
    }
    text
}

/// The login method and where its credentials come from (names and paths, never values).
fn describe_login(vault: &config::VaultSettings) -> String {
    let Some(auth) = &vault.auth else {
        return format!(
            "VAULT_TOKEN, else AppRole at auth/{} (VAULT_ROLE_ID, VAULT_SECRET_ID)",
            vault.approle_mount
        );
    };
    let method = auth.method();
    match auth {
        AuthSettings::Token { token_file: None } => format!("{method} (VAULT_TOKEN)"),
        AuthSettings::Token {
            token_file: Some(file),
        } => format!("{method} (token-file {})", file.display()),
        AuthSettings::AppRole {
            mount,
            secret_id_file,
        } => format!(
            "{method} at auth/{mount} (VAULT_ROLE_ID, {})",
            secret_id_file.as_ref().map_or_else(
                || "VAULT_SECRET_ID".to_string(),
                |file| format!("secret-id-file {}", file.display())
            )
        ),
        AuthSettings::Kubernetes {
            role,
            mount,
            jwt_file,
        }
        | AuthSettings::Jwt {
            role,
            mount,
            jwt_file,
        } => format!(
            "{method} at auth/{mount} (role {role}, jwt-file {})",
            jwt_file.display()
        ),
        AuthSettings::Cert { name, mount } => format!(
            "{method} at auth/{mount} ({}, VAULT_CLIENT_CERT)",
            name.as_ref().map_or_else(
                || "any certificate role".to_string(),
                |n| format!("name {n}")
            )
        ),
    }
}

fn describe_job(job: &JobSpec, config: &Config) -> String {
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
        let _ = write!(text, " | restart {}", job.restart.as_str());
        if job.essential {
            text.push_str(" | essential");
        }
        if let Some(max) = job.max_restarts {
            let _ = write!(text, " | max-restarts {max}");
        }
        if let Some(signal) = job.reload_signal {
            let _ = write!(text, " | reload-signal {}", signals::name_of(signal as i32));
        }
        if !job.after.is_empty() {
            let names: Vec<&str> = job
                .after
                .iter()
                .map(|&j| config.main[j].name.as_str())
                .collect();
            let _ = write!(text, " | after {}", names.join(", "));
        }
        if let Some(ready) = &job.ready {
            let _ = write!(
                text,
                " | ready: {} every {} (timeout {})",
                ready.probe.describe(),
                duration::format(ready.interval),
                duration::format(ready.timeout)
            );
        }
    }
    text
}
