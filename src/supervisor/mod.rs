//! Supervision: the pure state machine deciding what to start, restart and kill (`machine`,
//! `backoff`), and the thin shell around it (`event_loop`, `reaper`, `pid1`).
//!
//! [`run`] is the life of `simplevisor run`, one step after another: process set-up, config,
//! environment plan, output, Vault, the job environment, the loop, revocation, exit.

pub mod backoff;
pub mod emergency;
pub mod event_loop;
pub mod jobs;
pub mod machine;
pub mod orphans;
pub mod pid1;
pub mod readiness;
pub mod reaper;
pub mod self_protection;
pub mod signal_source;
pub mod status;
pub mod termination;

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signalfd::SignalFd;

use crate::cli::Options;
use crate::config::Config;
use crate::control::server::ControlServer;
use crate::environment::{self, EnvPlan};
use crate::logs::{Logger, Output};
use crate::mailbox;
use crate::metrics::MetricsServer;
use crate::vault::Session;

use event_loop::{EnvBuilder, EventLoop, Startup};
use signal_source::SignalSource;

/// Time given to revoking leases after the jobs stopped (docs/behaviour.md).
pub(crate) const REVOKE_BUDGET: Duration = Duration::from_secs(3);

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
        config,
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
    config: Config,
    options: &Options,
    process_env: &[(String, String)],
    plan: &EnvPlan,
    signal_fd: SignalFd,
    output: &Output,
    logger: &Logger,
) -> u8 {
    if options.no_vault && config.env.vault_token {
        logger
            .error("vault-token is ignored with --no-vault: jobs get no VAULT_TOKEN or VAULT_ADDR");
    }
    // Before Vault start-up, so that `status` and `health --live` answer while it retries.
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
    let metrics = config.metrics_listen.and_then(|addr| {
        match MetricsServer::bind(addr, event_loop::METRICS_BASE) {
            Ok(server) => {
                logger.info(&format!(
                    "metrics: http://{}/metrics (also /readyz and /livez)",
                    server.local_addr()
                ));
                Some(server)
            }
            Err(warning) => {
                logger.error(&format!("metrics: {warning}"));
                None
            }
        }
    });
    let build_env = env_builder(&config, process_env, plan);
    let startup = if plan.needs_vault {
        match start_vault(&config, process_env, plan, logger) {
            Ok(startup) => startup,
            Err(status) => return status,
        }
    } else {
        let values = literal_values(&config, process_env);
        if !crate::files::write_at_start(&config.files, &values, logger) {
            return 1;
        }
        match build_env(&values, None) {
            Ok(env) => Startup::Ready(env),
            Err(message) => {
                logger.error(&format!("cannot build the job environment: {message}"));
                return 1;
            }
        }
    };
    let event_loop = EventLoop::new(
        config,
        startup,
        build_env,
        SignalSource::new(signal_fd),
        output,
        logger.clone(),
        control,
        metrics,
    );
    let finished = match event_loop {
        Ok(event_loop) => event_loop.run(),
        Err(message) => {
            logger.error(&message);
            crate::files::remove_at_exit(logger);
            return 1;
        }
    };
    crate::files::remove_at_exit(logger);
    if let Some(session) = finished.session {
        session.stop(crate::time::from_now(REVOKE_BUDGET));
        emergency::set_revoker(None);
    }
    finished.status
}

/// Logs in and fetches the secrets on a thread of its own; the event loop waits for the
/// result while it serves signals and the control socket: Vault may be retried for up to
/// `startup-timeout`, and a `SIGTERM` meanwhile must end simplevisor at once (status 0,
/// nothing was started), not after the orchestrator's grace.
fn start_vault(
    config: &Config,
    process_env: &[(String, String)],
    plan: &EnvPlan,
    logger: &Logger,
) -> Result<Startup, u8> {
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
    // Not joined: at a shutdown during start-up it ends with the process; leases it may still
    // acquire then expire at their TTL.
    std::thread::Builder::new()
        .name("vault-start".into())
        .spawn(move || {
            done.send(Session::start(&settings, &env, &plan, log, events));
        })
        .map_err(|error| {
            logger.error(&format!("cannot start the Vault start-up thread: {error}"));
            1
        })?;
    Ok(Startup::Vault {
        result: started,
        events: inbox,
    })
}

/// How the jobs' environment is built from the `vault-replace` values, at start and after a
/// rotation.
fn env_builder(config: &Config, process_env: &[(String, String)], plan: &EnvPlan) -> EnvBuilder {
    let settings = config.env.clone();
    let process_env = process_env.to_vec();
    let plan = plan.clone();
    Box::new(move |values, injection| {
        environment::build(&settings, &process_env, &plan, values, injection)
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
