//! Supervision: the pure state machine deciding what to start, restart and kill (`machine`,
//! `backoff`), and the thin shell around it (`event_loop`, `reaper`, `pid1`).
//!
//! [`run`] is the life of `simplevisor run`, one step after another: process set-up, config,
//! environment plan, output, Vault, the job environment, the loop, revocation, exit.

pub mod backoff;
pub mod event_loop;
pub mod machine;
pub mod pid1;
pub mod reaper;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cli::Options;
use crate::config::Config;
use crate::environment::{self, EnvPlan};
use crate::logs::{Logger, Output};
use crate::mailbox;
use crate::vault::{self, Session, VaultEvent};

use event_loop::{EventLoop, Rebuild};
use machine::{JobPolicy, Machine};

/// Time given to revoking leases after the jobs stopped (SPEC 4 `revoke-on-exit`).
const REVOKE_BUDGET: Duration = Duration::from_secs(3);

/// Runs the supervisor; returns the exit status.
pub fn run(options: &Options) -> u8 {
    // Before any thread exists (DESIGN trap 2), and before anything can fail, so that even a
    // config error exits cleanly as PID 1.
    if let Err(message) = set_up_process() {
        eprintln!("simplevisor: {message}");
        return 1;
    }
    std::panic::set_hook(Box::new(|info| {
        eprintln!("simplevisor: internal error: {info}; killing every job");
        reaper::kill_tracked_groups();
    }));
    let process_env = environment::process_environment();
    let config = match crate::check::load_config(options) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    let plan = match crate::check::plan_environment(&config, &process_env, options.no_vault) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    let signal_fd = match pid1::signal_fd() {
        Ok(fd) => fd,
        Err(message) => {
            eprintln!("simplevisor: {message}");
            return 1;
        }
    };
    let (output, logger) = match Output::start() {
        Ok(pair) => pair,
        Err(error) => {
            eprintln!("simplevisor: cannot start the output writer thread: {error}");
            return 1;
        }
    };
    let status = supervise(
        &config,
        options,
        &process_env,
        &plan,
        signal_fd,
        &output,
        &logger,
    );
    logger.info(&format!("simplevisor exits with status {status}"));
    output.finish();
    status
}

/// Everything between "output works" and "flush output": from here on, every problem is a
/// record on stdout.
fn supervise(
    config: &Config,
    options: &Options,
    process_env: &[(String, String)],
    plan: &EnvPlan,
    signal_fd: nix::sys::signalfd::SignalFd,
    output: &Output,
    logger: &Logger,
) -> u8 {
    if options.no_vault && config.env.vault_token {
        logger
            .error("vault-token is ignored with --no-vault: jobs get no VAULT_TOKEN or VAULT_ADDR");
    }
    let (session, inbox) = if plan.needs_vault {
        match start_vault(config, process_env, plan, logger) {
            Ok((session, inbox)) => (Some(session), Some(inbox)),
            Err(status) => return status,
        }
    } else {
        (None, None)
    };
    let values = match &session {
        Some(session) => session.values().clone(),
        None => literal_values(config, process_env),
    };
    let injection = match &session {
        Some(session) if config.env.vault_token => Some(session.injection()),
        _ => None,
    };
    let status =
        match environment::build(&config.env, process_env, plan, &values, injection.as_ref()) {
            Ok(env) => {
                let rebuild = rebuilder(config, process_env, plan);
                let vault = inbox.map(|inbox| (inbox, rebuild));
                supervise_jobs(config, env, signal_fd, output, logger, vault)
            }
            Err(message) => {
                logger.error(&format!("cannot build the job environment: {message}"));
                1
            }
        };
    if let Some(session) = session {
        session.stop(Instant::now() + REVOKE_BUDGET);
    }
    status
}

fn start_vault(
    config: &Config,
    process_env: &[(String, String)],
    plan: &EnvPlan,
    logger: &Logger,
) -> Result<(Session, mailbox::Inbox<VaultEvent>), u8> {
    let (mailbox, inbox) = mailbox::channel().map_err(|error| {
        logger.error(&format!(
            "cannot create the Vault mailbox (eventfd): {error}"
        ));
        1
    })?;
    match Session::start(&config.vault, process_env, plan, logger.clone(), mailbox) {
        Ok(session) => Ok((session, inbox)),
        Err(vault::StartError::Config(message)) => {
            logger.error(&message);
            Err(2)
        }
        Err(vault::StartError::Vault(message)) => {
            logger.error(&message);
            Err(1)
        }
    }
}

fn supervise_jobs(
    config: &Config,
    env: Vec<(String, String)>,
    signal_fd: nix::sys::signalfd::SignalFd,
    output: &Output,
    logger: &Logger,
    vault: Option<(mailbox::Inbox<VaultEvent>, Rebuild)>,
) -> u8 {
    let machine = Machine::new(
        config.init.iter().map(JobPolicy::from_spec).collect(),
        config.main.iter().map(JobPolicy::from_spec).collect(),
        config.backoff,
    );
    let specs = config.jobs().cloned().collect();
    match EventLoop::new(
        machine,
        specs,
        env,
        signal_fd,
        output,
        logger.clone(),
        vault,
    ) {
        Ok(event_loop) => event_loop.run(),
        Err(message) => {
            logger.error(&message);
            1
        }
    }
}

/// How the environment is rebuilt when the renewer fetched everything anew.
fn rebuilder(config: &Config, process_env: &[(String, String)], plan: &EnvPlan) -> Rebuild {
    let settings = config.env.clone();
    let process_env = process_env.to_vec();
    let plan = plan.clone();
    Box::new(move |event| match event {
        VaultEvent::Refreshed { values, injection } => {
            let injection = settings.vault_token.then_some(injection);
            environment::build(&settings, &process_env, &plan, &values, injection.as_ref())
                .map(Some)
                .map_err(|message| format!("cannot rebuild the job environment: {message}"))
        }
        _ => Ok(None),
    })
}

/// With `--no-vault`, `vault-replace` variables stand for themselves.
fn literal_values(config: &Config, process_env: &[(String, String)]) -> BTreeMap<String, String> {
    process_env
        .iter()
        .filter(|(name, _)| config.env.vault_replace.contains(name))
        .cloned()
        .collect()
}

fn set_up_process() -> Result<(), String> {
    pid1::block_handled_signals()?;
    pid1::ignore_signals()?;
    if !pid1::is_pid1() {
        pid1::become_subreaper()?;
    }
    Ok(())
}
