//! The thin shell around [`Machine`]: one `epoll` over the signals, the jobs' output pipes
//! (one fd, [`Pipes`], which relays them and applies backpressure), the stdout writer's
//! wake-up, Vault (the start-up result, then the renewer's events), the control socket and its
//! connections, and the sockets of readiness checks. It turns readiness into [`Event`]s and
//! [`Action`]s into syscalls; it decides nothing itself. Control requests are answered in
//! `requests`.

mod metrics;
mod requests;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::config::{Config, Probe};
use crate::control::server::ControlServer;
use crate::environment::VaultInjection;
use crate::logs::pipes::Pipes;
use crate::logs::{Logger, Output};
use crate::mailbox::Inbox;
use crate::metrics::MetricsServer;
use crate::signals;
use crate::spawn::{self, SpawnRequest};
use crate::vault::{self, Session, VaultEvent};

use super::jobs::{self, JobRecord};
use super::machine::{Action, Event, JobId, Machine};
use super::readiness::{Checks, Outcome, Reaped};
use super::reaper;
use super::signal_source::{SignalEvent, SignalSource};

const TOKEN_SIGNALS: u64 = 0;
const TOKEN_PIPES: u64 = 1;
const TOKEN_OUTPUT: u64 = 2;
const TOKEN_VAULT: u64 = 3;
const TOKEN_CONTROL: u64 = 4;
const TOKEN_STARTUP: u64 = 5;
/// Control connection `n` has token `CONTROL_BASE + n`.
pub const CONTROL_BASE: u64 = 1 << 32;
/// The readiness check socket of job `n` has token `CHECKS_BASE + n`.
const CHECKS_BASE: u64 = 2 << 32;
/// The metrics listener has token `METRICS_BASE`, its connections the tokens after it.
pub const METRICS_BASE: u64 = 3 << 32;

/// How often groups of exited leaders are checked for members when nothing else wakes us:
/// members reaped by their own parent inside the group send us no SIGCHLD.
const GROUP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Start-up's pages are released at the latest this long into the main phase.
const RELEASE_AFTER: Duration = Duration::from_secs(5);

/// How long the emergency stop waits for killed jobs to be reaped.
const EMERGENCY_BUDGET: Duration = Duration::from_secs(5);

/// Builds the jobs' environment from the `vault-replace` values (and the token to inject):
/// at start-up and after a rotation.
pub type EnvBuilder = Box<
    dyn Fn(
        &BTreeMap<String, String>,
        Option<&VaultInjection>,
    ) -> Result<Vec<(String, String)>, String>,
>;

/// How the jobs' environment comes about.
pub enum Startup {
    /// Without Vault: ready now.
    Ready(Vec<(String, String)>),
    /// Vault start-up runs on a thread; its result arrives in `result`, the renewer's events
    /// in `events` after it.
    Vault {
        result: Inbox<Result<Session, vault::StartError>>,
        events: Inbox<VaultEvent>,
    },
}

/// Vault once start-up succeeded: the session and the renewer's events.
struct VaultLink {
    session: Session,
    events: Inbox<VaultEvent>,
}

/// How the loop ended: the exit status, and the Vault session to stop (revoking its leases)
/// once the jobs are gone.
pub struct Finished {
    pub status: u8,
    pub session: Option<Session>,
}

pub struct EventLoop<'a> {
    machine: Machine,
    /// The running configuration: what `reload` compares with, and where it re-reads.
    config: Config,
    /// By id. Boxed: a bucket array of a thousand whole records (about 400 bytes each) took
    /// 1 MiB of RSS with 1,000 jobs, most of it slack.
    records: HashMap<JobId, Box<JobRecord>>,
    /// The environment shared by every job (before its `run-as` identity).
    env: Vec<(String, String)>,
    build_env: EnvBuilder,
    epoll: Epoll,
    pipes: Pipes<'a>,
    signals: SignalSource,
    output: &'a Output,
    logger: Logger,
    /// Vault start-up still running.
    startup: Option<Startup>,
    vault: Option<VaultLink>,
    status: Option<u8>,
    control: Option<ControlServer>,
    metrics: Option<MetricsServer>,
    checks: Checks,
}

impl<'a> EventLoop<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        startup: Startup,
        build_env: EnvBuilder,
        signals: SignalSource,
        output: &'a Output,
        logger: Logger,
        control: Option<ControlServer>,
        metrics: Option<MetricsServer>,
    ) -> Result<EventLoop<'a>, String> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create epoll instance: {e}"))?;
        let pipes = Pipes::new(&epoll, TOKEN_PIPES, output, logger.clone())?;

        let add = |fd: std::os::fd::BorrowedFd<'_>, token: u64, what: &str| {
            epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
                .map_err(|e| format!("cannot watch {what} (epoll_ctl): {e}"))
        };
        add(signals.as_fd(), TOKEN_SIGNALS, "the signalfd")?;
        add(output.wake_fd(), TOKEN_OUTPUT, "the output writer")?;
        if let Startup::Vault { result, .. } = &startup {
            add(result.as_fd(), TOKEN_STARTUP, "the Vault start-up")?;
        }
        // Never fatal: without its listener, simplevisor runs without a control socket.
        let control = control.and_then(|server| {
            match add(server.listener_fd(), TOKEN_CONTROL, "the control socket") {
                Ok(()) => Some(server),
                Err(message) => {
                    logger.error(&format!("{message}; running without a control socket"));
                    None
                }
            }
        });
        // Never fatal either: without it, simplevisor runs without metrics.
        let metrics = metrics.and_then(|server| match server.register(&epoll) {
            Ok(()) => Some(server),
            Err(message) => {
                logger.error(&format!("{message}; running without metrics"));
                None
            }
        });
        let checks = Checks::new(CHECKS_BASE, logger.clone());
        let (init, main) = jobs::records(&config);
        let machine = Machine::new(
            init.iter().map(JobRecord::policy).collect(),
            main.iter().map(JobRecord::policy).collect(),
            config.backoff,
        )
        .with_shutdown_delay(config.shutdown_delay);
        // The machine hands out ids in this same order, from 0.
        let records = init
            .into_iter()
            .chain(main)
            .map(Box::new)
            .enumerate()
            .collect();
        Ok(EventLoop {
            machine,
            config,
            records,
            env: Vec::new(),
            build_env,
            epoll,
            pipes,
            signals,
            output,
            logger,
            startup: Some(startup),
            vault: None,
            status: None,
            control,
            metrics,
            checks,
        })
    }

    /// Runs until the machine says exit.
    pub fn run(mut self) -> Finished {
        if let Some(Startup::Ready(env)) = self.startup.take_if(|s| matches!(s, Startup::Ready(_)))
        {
            self.begin(env);
        }
        let mut events = [EpollEvent::empty(); 8];
        let mut startup_released = false;
        let mut main_since: Option<Instant> = None;
        while self.status.is_none() {
            let timeout = self.timeout(Instant::now());
            // Once the main jobs run and the loop is about to sleep with nothing due (or a few
            // seconds into the main phase, for jobs that keep something due): from here on
            // only the steady state runs, so start-up's pages are only cache. Released any
            // earlier, the first iterations of the main phase fault most of them back in.
            if !startup_released && self.machine.in_main_phase() {
                let main_since = *main_since.get_or_insert_with(Instant::now);
                if timeout == EpollTimeout::NONE || main_since.elapsed() >= RELEASE_AFTER {
                    super::pid1::release_startup_pages();
                    startup_released = true;
                }
            }
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(error) => {
                    self.emergency_stop(&format!("epoll_wait failed: {error}"));
                    break;
                }
            };
            for event in &events[..ready] {
                match event.data() {
                    TOKEN_SIGNALS => self.on_signals(),
                    TOKEN_PIPES => self.read_pipes(),
                    TOKEN_OUTPUT => self.on_output_room(),
                    TOKEN_STARTUP => self.on_startup(),
                    TOKEN_VAULT => self.on_vault(),
                    TOKEN_CONTROL => self.on_control_accept(),
                    token => self.on_token(token),
                }
            }
            if let Some(control) = &mut self.control {
                for record in control.expire(Instant::now(), &self.epoll) {
                    self.logger.error(&record);
                }
            }
            self.probe_groups();
            let actions = self.machine.handle(Event::Tick, Instant::now());
            self.execute(actions);
        }
        self.checks.cancel_all(&self.epoll);
        self.pipes.close_all();
        Finished {
            status: self.status.unwrap_or(1),
            session: self.vault.map(|link| link.session),
        }
    }

    /// The environment is ready: the jobs begin.
    fn begin(&mut self, env: Vec<(String, String)>) {
        self.env = env;
        let actions = self.machine.start();
        self.execute(actions);
    }

    fn timeout(&self, now: Instant) -> EpollTimeout {
        let mut deadline = self.machine.next_deadline();
        let servers = [
            self.control.as_ref().and_then(ControlServer::next_deadline),
            self.metrics.as_ref().and_then(MetricsServer::next_deadline),
        ];
        for at in servers.into_iter().flatten() {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if !self.machine.draining_groups().is_empty() {
            let probe = now + GROUP_PROBE_INTERVAL;
            deadline = Some(deadline.map_or(probe, |d| d.min(probe)));
        }
        match deadline {
            None => EpollTimeout::NONE,
            Some(at) => {
                // Round up: waking a millisecond early would just spin once more.
                let wait = at.saturating_duration_since(now) + Duration::from_micros(999);
                EpollTimeout::try_from(wait).unwrap_or(EpollTimeout::MAX)
            }
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Start(job) => {
                    let event = self.start(job);
                    queue.extend(self.machine.handle(event, Instant::now()));
                }
                Action::SignalGroup { job, pgid, signal } => {
                    if let Err(error) = reaper::signal_group(pgid, signal) {
                        self.logger.error(&format!(
                            "cannot send {} to job {} (process group {pgid}): {error}",
                            signals::name_of(signal),
                            self.machine.name(job)
                        ));
                    }
                }
                Action::Info(message) => self.logger.info(&message),
                Action::Error(message) => self.logger.error(&message),
                Action::RollingRestartDone => {
                    if let Some(link) = &self.vault {
                        link.session.revoke_superseded();
                    }
                }
                Action::Exit(status) => self.status = Some(status),
                Action::RunCheck { job } => {
                    if let Some(outcome) = self.start_check(job) {
                        queue.extend(self.check_done(outcome));
                    }
                }
                Action::CancelCheck { job } => self.checks.cancel(job, &self.epoll),
                Action::Forget(job) => {
                    self.checks.cancel(job, &self.epoll);
                    self.pipes.forget(job);
                    self.records.remove(&job);
                }
            }
        }
    }

    fn start(&mut self, job: JobId) -> Event {
        let Some(record) = self.records.get(&job) else {
            return Event::StartFailed {
                job,
                reason: "simplevisor has no record of this job (internal error)".into(),
                status: 126,
            };
        };
        let spec = &record.spec;
        let env = record.environment(&self.env);
        let request = SpawnRequest {
            cmd: &spec.cmd,
            env: &env,
            identity: spec.run_as.as_ref(),
            workdir: spec.workdir.as_deref(),
        };
        match spawn::spawn(&request) {
            Ok(spawned) => {
                reaper::track_group(spawned.pid);
                self.pipes.register(
                    job,
                    &spec.name,
                    spec.log_format,
                    spawned.stdout,
                    spawned.stderr,
                );
                Event::Started {
                    job,
                    pid: spawned.pid,
                }
            }
            Err(error) => Event::StartFailed {
                job,
                reason: error.reason,
                status: error.status,
            },
        }
    }

    fn on_signals(&mut self) {
        let events = match self.signals.read_pending() {
            Ok(events) => events,
            Err(message) => {
                self.logger.error(&message);
                return;
            }
        };
        for event in events {
            let event = match event {
                SignalEvent::ChildExited => {
                    self.reap();
                    continue;
                }
                SignalEvent::Shutdown(signal) => Event::ShutdownSignal { signal },
                SignalEvent::Forward(signal) => {
                    // Fault injection for the tests of the panic path; not compiled into
                    // release builds.
                    #[cfg(debug_assertions)]
                    if signal == libc::SIGUSR2
                        && std::env::var_os("SIMPLEVISOR_TEST_PANIC_ON_USR2").is_some()
                    {
                        panic!("injected by SIMPLEVISOR_TEST_PANIC_ON_USR2");
                    }
                    Event::ForwardSignal { signal }
                }
            };
            let actions = self.machine.handle(event, Instant::now());
            self.execute(actions);
        }
    }

    fn reap(&mut self) {
        let reaped = reaper::reap_exited();
        for (pid, how) in reaped {
            match self.checks.on_reaped(pid, how) {
                Reaped::Check(outcome) => {
                    let actions = self.check_done(outcome);
                    self.execute(actions);
                    continue;
                }
                Reaped::Cancelled => continue,
                Reaped::NotOurs => {}
            }
            let job = self.machine.job_of_leader(pid);
            let group_alive = job.is_some() && reaper::group_alive(pid);
            if let Some(job) = job {
                // The job's last lines precede its exit record.
                self.pipes.drain(job, !group_alive);
                if !group_alive {
                    reaper::forget_group(pid);
                }
            }
            let actions = self.machine.handle(
                Event::Reaped {
                    pid,
                    how,
                    group_alive,
                },
                Instant::now(),
            );
            self.execute(actions);
        }
    }

    /// Jobs whose leader exited while group members lived on: are the members gone now?
    fn probe_groups(&mut self) {
        for (job, pgid) in self.machine.draining_groups() {
            if !reaper::group_alive(pgid) {
                reaper::forget_group(pgid);
                self.pipes.drain(job, true);
                let actions = self
                    .machine
                    .handle(Event::GroupGone { job }, Instant::now());
                self.execute(actions);
            }
        }
    }

    fn read_pipes(&mut self) {
        if let Err(error) = self.pipes.read_ready() {
            self.emergency_stop(&error);
        }
    }

    fn on_output_room(&mut self) {
        self.output.clear_wake();
        if let Err(error) = self.pipes.resume() {
            self.emergency_stop(&error);
        }
    }

    /// Vault start-up finished: on success the environment is built and the jobs begin.
    fn on_startup(&mut self) {
        let Some(Startup::Vault { result, events }) = self.startup.take() else {
            return;
        };
        let Some(outcome) = result.drain().into_iter().next() else {
            // A wake-up without a result (cannot happen with one sender): keep waiting.
            self.startup = Some(Startup::Vault { result, events });
            return;
        };
        let _ = self.epoll.delete(result.as_fd());
        let (reason, status) = match outcome {
            Ok(session) => match self.adopt(session, events) {
                Ok(env) => return self.begin(env),
                Err(reason) => (reason, 1),
            },
            Err(vault::StartError::Config(message)) => (message, 2),
            Err(vault::StartError::Vault(message)) => (message, 1),
        };
        let actions = self
            .machine
            .handle(Event::Fatal { reason, status }, Instant::now());
        self.execute(actions);
    }

    /// Takes over the logged-in session: its leases are revoked on every exit from here on
    /// (the panic path included), its events are watched, the files are written and the jobs'
    /// environment built.
    fn adopt(
        &mut self,
        session: Session,
        events: Inbox<VaultEvent>,
    ) -> Result<Vec<(String, String)>, String> {
        super::emergency::set_revoker(
            session.emergency_revoker(super::REVOKE_BUDGET, crate::logs::direct::DirectLog),
        );
        let watched = self.epoll.add(
            events.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_VAULT),
        );
        let values = session.values().clone();
        let injection = self.config.env.vault_token.then(|| session.injection());
        self.vault = Some(VaultLink { session, events });
        // Unwatched, an expiry would never be acted on: not a state to run jobs in.
        watched.map_err(|error| format!("cannot watch the Vault mailbox (epoll_ctl): {error}"))?;
        if !crate::files::write_at_start(&self.config.files, &values, &self.logger) {
            return Err("the files could not be written".into());
        }
        (self.build_env)(&values, injection.as_ref())
            .map_err(|message| format!("cannot build the job environment: {message}"))
    }

    fn on_vault(&mut self) {
        let messages = match &self.vault {
            Some(link) => link.events.drain(),
            None => return,
        };
        for message in messages {
            let event = match message {
                VaultEvent::Expiring(what) => Event::Fatal {
                    reason: format!("{what} is about to expire (on-lease-expiry: exit); stopping"),
                    status: 1,
                },
                VaultEvent::Revoked(what) => Event::Fatal {
                    reason: format!("{what} was revoked (on-lease-expiry: exit); stopping"),
                    status: 1,
                },
                VaultEvent::Fatal(reason) => Event::Fatal { reason, status: 1 },
                VaultEvent::RotationFailed(reason) => Event::RotationAbandoned { reason },
                VaultEvent::Refreshed { values, injection } => {
                    match self.renew_environment(&values, injection) {
                        Ok(()) => Event::RollingRestart,
                        Err(reason) => {
                            if let Some(link) = &self.vault {
                                link.session.abandon_rotation();
                            }
                            Event::RotationAbandoned {
                                reason: format!(
                                    "rotation abandoned: {reason}; the jobs keep the secrets, files and leases they have"
                                ),
                            }
                        }
                    }
                }
            };
            let actions = self.machine.handle(event, Instant::now());
            self.execute(actions);
        }
    }

    /// A rotation's new values: every file is written anew and the environment rebuilt, or
    /// nothing changes (a file that cannot be written replaces none).
    fn renew_environment(
        &mut self,
        values: &BTreeMap<String, String>,
        injection: VaultInjection,
    ) -> Result<(), String> {
        let injection = self.config.env.vault_token.then_some(injection);
        let env = (self.build_env)(values, injection.as_ref())
            .map_err(|message| format!("cannot rebuild the job environment: {message}"))?;
        let files = &self.config.files;
        crate::files::prepare(files, values)?.commit()?;
        self.logger.info(&format!(
            "rotation: {} secret value(s) fetched anew, {} file(s) rewritten",
            values.len(),
            files.len()
        ));
        self.env = env;
        Ok(())
    }

    /// Starts the readiness check of `job`; an outcome when it ended at once.
    fn start_check(&mut self, job: JobId) -> Option<Outcome> {
        let record = self.records.get(&job)?;
        let ready = record.spec.ready.as_ref()?;
        match &ready.probe {
            Probe::Tcp(addr) => self.checks.start_connect(job, *addr, None, &self.epoll),
            Probe::Http { addr, path, .. } => {
                self.checks
                    .start_connect(job, *addr, Some(path), &self.epoll)
            }
            Probe::Exec(cmd) => {
                let env = record.environment(&self.env);
                let request = SpawnRequest {
                    cmd,
                    env: &env,
                    identity: record.spec.run_as.as_ref(),
                    workdir: record.spec.workdir.as_deref(),
                };
                match spawn::spawn_quiet(&request) {
                    Ok(pid) => {
                        self.checks.track_exec(job, pid);
                        None
                    }
                    Err(error) => Some(Outcome {
                        job,
                        passed: false,
                        detail: format!("the check could not start: {}", error.reason),
                    }),
                }
            }
        }
    }

    fn check_done(&mut self, outcome: Outcome) -> Vec<Action> {
        self.machine.handle(
            Event::CheckDone {
                job: outcome.job,
                passed: outcome.passed,
                detail: outcome.detail,
            },
            Instant::now(),
        )
    }

    /// A token of a control connection, of the metrics listener or one of its connections,
    /// or of a readiness check's socket.
    fn on_token(&mut self, token: u64) {
        if token >= METRICS_BASE {
            self.on_metrics(token);
            return;
        }
        if let Some(job) = self.checks.job_of_token(token) {
            if let Some(outcome) = self.checks.on_ready(job, &self.epoll) {
                let actions = self.check_done(outcome);
                self.execute(actions);
            }
            return;
        }
        let Some(control) = &mut self.control else {
            return;
        };
        let Some(slot) = control.slot_of(token) else {
            return;
        };
        if let Some(incoming) = control.on_ready(slot, &self.epoll) {
            let answer = self.answer(incoming.uid, incoming.request);
            if let Some(control) = &mut self.control {
                control.answer(slot, &answer, &self.epoll);
            }
            drop(answer);
            super::pid1::release_free_heap();
        }
    }

    fn on_control_accept(&mut self) {
        let Some(control) = &mut self.control else {
            return;
        };
        for record in control.accept(&self.epoll, Instant::now()) {
            self.logger.error(&record);
        }
    }

    /// The loop itself failed: kill every job's group (and readiness checks) at once and wait
    /// for them, so that no job outlives us, then exit 1. Jobs still alive after the budget
    /// are named.
    fn emergency_stop(&mut self, reason: &str) {
        self.logger
            .error(&format!("{reason}; killing every job and exiting"));
        self.checks.cancel_all(&self.epoll);
        let mut left = self.machine.live_groups();
        for &pgid in &left {
            if let Err(error) = reaper::signal_group(pgid, libc::SIGKILL) {
                self.logger.error(&format!(
                    "cannot send KILL to process group {pgid}: {error}"
                ));
            }
        }
        let deadline = Instant::now() + EMERGENCY_BUDGET;
        while !left.is_empty() && Instant::now() < deadline {
            for (pid, _) in reaper::reap_exited() {
                left.retain(|&p| p != pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !left.is_empty() {
            let groups: Vec<String> = left.iter().map(i32::to_string).collect();
            self.logger.error(&format!(
                "{} job process group(s) still alive after {}s: {}",
                left.len(),
                EMERGENCY_BUDGET.as_secs(),
                groups.join(", ")
            ));
        }
        self.status = Some(1);
    }
}
