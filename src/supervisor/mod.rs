//! Supervision: the pure state machine deciding what to start, restart and kill (`machine`,
//! `backoff`), and the thin shell around it (`event_loop`, `reaper`, `pid1`).
//!
//! [`run`] is the life of `simplevisor run`, one step after another: process set-up, config,
//! environment plan, output, Vault, the job environment, the loop, revocation, exit.

pub mod backoff;
pub mod emergency;
pub mod event_loop;
pub mod machine;
pub mod orphans;
pub mod pid1;
pub mod readiness;
pub mod reaper;
pub mod self_protection;
pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signalfd::SignalFd;

use crate::cli::Options;
use crate::config::Config;
use crate::control::server::ControlServer;
use crate::environment::{self, EnvPlan};
use crate::logs::{Logger, Output};
use crate::mailbox;
use crate::signals;
use crate::vault::{self, Session, VaultEvent};

use event_loop::{EventLoop, Rebuild, VaultLink};
use machine::{JobPolicy, Machine};

/// Time given to revoking leases after the jobs stopped (docs/behaviour.md).
const REVOKE_BUDGET: Duration = Duration::from_secs(3);

/// Runs the supervisor; returns the exit status.
pub fn run(options: &Options) -> u8 {
    // Before any thread exists (architecture trap 2), and before anything can fail, so that even a
    // config error exits cleanly as PID 1.
    if let Err(message) = set_up_process() {
        eprintln!("simplevisor: {message}");
        return 1;
    }
    emergency::install();
    let process_env = environment::process_environment();
    self_protection::blank_credentials_in_environ();
    let config = match crate::startup::load_config(options) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return 2;
        }
    };
    let plan = match crate::startup::plan_environment(&config, &process_env, options.no_vault) {
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
        match start_vault(config, process_env, plan, logger, &signal_fd) {
            Ok((session, inbox)) => (Some(session), Some(inbox)),
            Err(status) => return status,
        }
    } else {
        (None, None)
    };
    if let Some(session) = &session {
        emergency::set_revoker(
            session.emergency_revoker(REVOKE_BUDGET, crate::logs::direct::DirectLog),
        );
    }
    let values = match &session {
        Some(session) => session.values().clone(),
        None => literal_values(config, process_env),
    };
    let injection = match &session {
        Some(session) if config.env.vault_token => Some(session.injection()),
        _ => None,
    };
    let written = crate::files::write_at_start(&config.files, &values, logger);
    let status =
        match environment::build(&config.env, process_env, plan, &values, injection.as_ref()) {
            Ok(_) if !written => 1,
            Ok(env) => {
                let rebuild = rebuilder(config, process_env, plan);
                let vault = match (inbox, &session) {
                    (Some(inbox), Some(session)) => Some(VaultLink {
                        inbox,
                        rebuild,
                        revoke_superseded: Box::new(|| session.revoke_superseded()),
                        lifetimes: Box::new(|now| session.lifetimes(now)),
                    }),
                    _ => None,
                };
                supervise_jobs(config, env, signal_fd, output, logger, vault)
            }
            Err(message) => {
                logger.error(&format!("cannot build the job environment: {message}"));
                1
            }
        };
    crate::files::remove_at_exit(logger);
    if let Some(session) = session {
        session.stop(crate::time::from_now(REVOKE_BUDGET));
        emergency::set_revoker(None);
    }
    status
}

/// Logs in and fetches the secrets on a thread of its own while this one keeps reading signals:
/// Vault may be retried for up to `startup-timeout`, and a `SIGTERM` meanwhile must end
/// simplevisor at once (status 0, nothing was started), not after the orchestrator's grace.
fn start_vault(
    config: &Config,
    process_env: &[(String, String)],
    plan: &EnvPlan,
    logger: &Logger,
    signal_fd: &SignalFd,
) -> Result<(Session, mailbox::Inbox<VaultEvent>), u8> {
    let channels = mailbox::channel().and_then(|events| Ok((events, mailbox::channel()?)));
    let ((events, inbox), (done, started)) = channels.map_err(|error| {
        logger.error(&format!(
            "cannot create the Vault mailboxes (eventfd): {error}"
        ));
        1
    })?;
    let (settings, env, plan, log) = (
        config.vault.clone(),
        process_env.to_vec(),
        plan.clone(),
        logger.clone(),
    );
    let starter = std::thread::Builder::new()
        .name("vault-start".into())
        .spawn(move || {
            done.send(Session::start(&settings, &env, &plan, log, events));
        })
        .map_err(|error| {
            logger.error(&format!("cannot start the Vault start-up thread: {error}"));
            1
        })?;
    let result = loop {
        match wait_for_start_or_shutdown(signal_fd, &started) {
            Waited::Started(result) => break *result,
            Waited::Shutdown(signal) => {
                logger.info(&format!(
                    "received {} while logging in to Vault; exiting, nothing was started",
                    signals::name_of(signal)
                ));
                // The start-up thread ends with the process; leases it may still acquire
                // expire at their TTL.
                return Err(0);
            }
            Waited::Nothing => {}
        }
    };
    let _ = starter.join();
    match result {
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

enum Waited {
    Started(Box<Result<Session, vault::StartError>>),
    Shutdown(i32),
    Nothing,
}

/// One wait for either the start-up result or a shutdown signal. Other signals have no job to
/// go to yet and are dropped.
fn wait_for_start_or_shutdown(
    signal_fd: &SignalFd,
    started: &mailbox::Inbox<Result<Session, vault::StartError>>,
) -> Waited {
    let mut fds = [
        PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
        PollFd::new(started.as_fd(), PollFlags::POLLIN),
    ];
    // A timeout only to survive a lost wake-up; both descriptors are level-triggered.
    let _ = poll(&mut fds, PollTimeout::from(1000u16));
    while let Ok(Some(info)) = signal_fd.read_signal() {
        let signo = info.ssi_signo as i32;
        if signals::disposition(signo) == signals::Disposition::Shutdown {
            return Waited::Shutdown(signo);
        }
    }
    match started.drain().into_iter().next() {
        Some(result) => Waited::Started(Box::new(result)),
        None => Waited::Nothing,
    }
}

fn supervise_jobs(
    config: &Config,
    env: Vec<(String, String)>,
    signal_fd: nix::sys::signalfd::SignalFd,
    output: &Output,
    logger: &Logger,
    vault: Option<VaultLink<'_>>,
) -> u8 {
    let machine = Machine::new(
        config.init.iter().map(JobPolicy::from_spec).collect(),
        config.main.iter().map(JobPolicy::from_spec).collect(),
        config.backoff,
    )
    .with_shutdown_delay(config.shutdown_delay);
    let specs = config.jobs().cloned().collect();
    let control = config.control_socket.as_deref().and_then(|path| {
        match ControlServer::bind(path, event_loop::CONTROL_BASE) {
            Ok(server) => {
                logger.info(&format!("control socket: {}", path.display()));
                Some(server)
            }
            Err(warning) => {
                logger.error(&format!("control socket: {warning}"));
                None
            }
        }
    });
    match EventLoop::new(
        machine,
        specs,
        env,
        signal_fd,
        output,
        logger.clone(),
        vault,
        control,
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
    // First, before the credentials are read: a job must never read them from our memory.
    self_protection::make_non_dumpable()?;
    pid1::limit_malloc_arenas();
    pid1::block_handled_signals()?;
    pid1::ignore_signals()?;
    if !pid1::is_pid1() {
        pid1::become_subreaper()?;
    }
    Ok(())
}
