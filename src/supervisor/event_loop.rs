//! The thin shell around [`Machine`]: one `epoll` over the signalfd, the jobs' output pipes
//! (one fd, [`Pipes`], which relays them and applies backpressure), the stdout writer's
//! wake-up, the Vault mailbox, the control socket and its connections, and the sockets of
//! readiness checks. It turns readiness into [`Event`]s and [`Action`]s into syscalls; it
//! decides nothing itself.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signalfd::SignalFd;

use serde_json::{Value, json};

use crate::config::{JobSpec, Probe, validate::http_target};
use crate::control::protocol::{JobCommand, Request, refusal};
use crate::control::server::ControlServer;
use crate::environment;
use crate::logs::pipes::Pipes;
use crate::logs::{Logger, Output};
use crate::mailbox::Inbox;
use crate::signals::{self, Disposition};
use crate::spawn::{self, SpawnRequest};
use crate::vault::VaultEvent;

use super::machine::{Action, Command, Event, JobId, Machine};
use super::readiness::{Checks, Outcome, Reaped};
use super::reaper;
use super::status::LeaseStatus;

const TOKEN_SIGNALS: u64 = 0;
const TOKEN_PIPES: u64 = 1;
const TOKEN_OUTPUT: u64 = 2;
const TOKEN_VAULT: u64 = 3;
const TOKEN_CONTROL: u64 = 4;
/// Control connection `n` has token `CONTROL_BASE + n`.
pub const CONTROL_BASE: u64 = 1 << 32;
/// The readiness check socket of job `n` has token `CHECKS_BASE + n`.
const CHECKS_BASE: u64 = 2 << 32;

/// How often groups of exited leaders are checked for members when nothing else wakes us:
/// members reaped by their own parent inside the group send us no SIGCHLD.
const GROUP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Builds a job environment from new Vault values (after an `on-lease-expiry: restart`).
pub type Rebuild = Box<dyn FnMut(VaultEvent) -> Result<Option<Vec<(String, String)>>, String>>;

/// The event loop's side of Vault: its events, how to rebuild the environment from a refresh,
/// and how to give back what a refresh superseded once every job runs with the new one.
pub struct VaultLink<'a> {
    pub inbox: Inbox<VaultEvent>,
    pub rebuild: Rebuild,
    pub revoke_superseded: Box<dyn Fn() + 'a>,
    /// Each credential's reference and time left, for `status`.
    pub lifetimes: Lifetimes<'a>,
}

/// Each Vault credential's reference and time left at a moment.
pub type Lifetimes<'a> = Box<dyn Fn(Instant) -> Vec<(String, Option<Duration>)> + 'a>;

pub struct EventLoop<'a> {
    machine: Machine,
    specs: Vec<JobSpec>,
    env: Vec<(String, String)>,
    epoll: Epoll,
    pipes: Pipes<'a>,
    signals: SignalFd,
    output: &'a Output,
    logger: Logger,
    vault: Option<VaultLink<'a>>,
    status: Option<u8>,
    control: Option<ControlServer>,
    checks: Checks,
}

impl<'a> EventLoop<'a> {
    /// `specs`: init jobs then main jobs, in the order the machine numbers them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        machine: Machine,
        specs: Vec<JobSpec>,
        env: Vec<(String, String)>,
        signals: SignalFd,
        output: &'a Output,
        logger: Logger,
        vault: Option<VaultLink<'a>>,
        control: Option<ControlServer>,
    ) -> Result<EventLoop<'a>, String> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create epoll instance: {e}"))?;
        let pipes = Pipes::new(&epoll, TOKEN_PIPES, output, logger.clone())?;
        let checks = Checks::new(CHECKS_BASE, logger.clone());
        let add = |fd: std::os::fd::BorrowedFd<'_>, token: u64, what: &str| {
            epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
                .map_err(|e| format!("cannot watch {what} (epoll_ctl): {e}"))
        };
        add(signals.as_fd(), TOKEN_SIGNALS, "the signalfd")?;
        add(output.wake_fd(), TOKEN_OUTPUT, "the output writer")?;
        if let Some(link) = &vault {
            add(link.inbox.as_fd(), TOKEN_VAULT, "the Vault mailbox")?;
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
        Ok(EventLoop {
            machine,
            specs,
            env,
            epoll,
            pipes,
            signals,
            output,
            logger,
            vault,
            status: None,
            control,
            checks,
        })
    }

    /// Runs until the machine says exit; returns the exit status.
    pub fn run(mut self) -> u8 {
        let actions = self.machine.start();
        self.execute(actions);
        let mut events = [EpollEvent::empty(); 8];
        let mut startup_released = false;
        while self.status.is_none() {
            if !startup_released && self.machine.in_main_phase() {
                super::pid1::release_startup_pages();
                startup_released = true;
            }
            let timeout = self.timeout(Instant::now());
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
        self.status.unwrap_or(1)
    }

    fn timeout(&self, now: Instant) -> EpollTimeout {
        let mut deadline = self.machine.next_deadline();
        if let Some(at) = self.control.as_ref().and_then(ControlServer::next_deadline) {
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
                        (link.revoke_superseded)();
                    }
                }
                Action::Exit(status) => self.status = Some(status),
                Action::RunCheck { job } => {
                    if let Some(outcome) = self.start_check(job) {
                        queue.extend(self.check_done(outcome));
                    }
                }
                Action::CancelCheck { job } => self.checks.cancel(job, &self.epoll),
            }
        }
    }

    fn start(&mut self, job: JobId) -> Event {
        let spec = &self.specs[job];
        let env = match &spec.run_as {
            Some(identity) => environment::with_identity(&self.env, &identity.user, &identity.home),
            None => self.env.clone(),
        };
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
        let mut reap = false;
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    let signo = info.ssi_signo as i32;
                    match signals::disposition(signo) {
                        Disposition::Reap => reap = true,
                        Disposition::Shutdown => {
                            let actions = self
                                .machine
                                .handle(Event::ShutdownSignal { signal: signo }, Instant::now());
                            self.execute(actions);
                        }
                        Disposition::Forward => {
                            // Fault injection for the tests of the panic path; not compiled
                            // into release builds.
                            #[cfg(debug_assertions)]
                            if signo == libc::SIGUSR2
                                && std::env::var_os("SIMPLEVISOR_TEST_PANIC_ON_USR2").is_some()
                            {
                                panic!("injected by SIMPLEVISOR_TEST_PANIC_ON_USR2");
                            }
                            let actions = self
                                .machine
                                .handle(Event::ForwardSignal { signal: signo }, Instant::now());
                            self.execute(actions);
                        }
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    self.logger
                        .error(&format!("cannot read the signalfd: {error}"));
                    break;
                }
            }
        }
        if reap {
            self.reap();
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

    fn on_vault(&mut self) {
        let messages = match &self.vault {
            Some(link) => link.inbox.drain(),
            None => return,
        };
        for message in messages {
            let event = match message {
                VaultEvent::Expiring(what) => Event::Fatal {
                    reason: format!("{what} is about to expire (on-lease-expiry: exit); stopping"),
                },
                VaultEvent::Revoked(what) => Event::Fatal {
                    reason: format!("{what} was revoked (on-lease-expiry: exit); stopping"),
                },
                VaultEvent::Fatal(reason) => Event::Fatal { reason },
                refreshed @ VaultEvent::Refreshed { .. } => {
                    let Some(link) = self.vault.as_mut() else {
                        return;
                    };
                    match (link.rebuild)(refreshed) {
                        Ok(Some(env)) => {
                            self.env = env;
                            Event::RollingRestart
                        }
                        Ok(None) => continue,
                        Err(reason) => Event::Fatal { reason },
                    }
                }
            };
            let actions = self.machine.handle(event, Instant::now());
            self.execute(actions);
        }
    }

    /// Starts the readiness check of `job`; an outcome when it ended at once.
    fn start_check(&mut self, job: JobId) -> Option<Outcome> {
        let spec = &self.specs[job];
        let probe = spec.ready.as_ref()?.probe.clone();
        let failed = |detail: String| Outcome {
            job,
            passed: false,
            detail,
        };
        match probe {
            Probe::Tcp(addr) => match addr.parse() {
                Ok(addr) => self.checks.start_connect(job, addr, None, &self.epoll),
                Err(_) => Some(failed(format!("not an address: {addr}"))),
            },
            Probe::Http(url) => match http_target(&url) {
                Some((addr, path)) => self
                    .checks
                    .start_connect(job, addr, Some(path), &self.epoll),
                None => Some(failed(format!("not an http URL: {url}"))),
            },
            Probe::Exec(cmd) => {
                let env = match &spec.run_as {
                    Some(identity) => {
                        environment::with_identity(&self.env, &identity.user, &identity.home)
                    }
                    None => self.env.clone(),
                };
                let request = SpawnRequest {
                    cmd: &cmd,
                    env: &env,
                    identity: spec.run_as.as_ref(),
                    workdir: spec.workdir.as_deref(),
                };
                match spawn::spawn_quiet(&request) {
                    Ok(pid) => {
                        self.checks.track_exec(job, pid);
                        None
                    }
                    Err(error) => Some(failed(format!(
                        "the check could not start: {}",
                        error.reason
                    ))),
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

    /// A token of a control connection or of a readiness check's socket.
    fn on_token(&mut self, token: u64) {
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

    /// The answer to one control request; every request leaves a record.
    fn answer(&mut self, uid: u32, request: Result<Request, String>) -> Value {
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                self.logger
                    .error(&format!("control: bad request (peer uid {uid}): {error}"));
                return refusal(2, &error);
            }
        };
        self.logger
            .info(&format!("control: {} (peer uid {uid})", request.describe()));
        let now = Instant::now();
        match request {
            Request::Status => {
                let mut snapshot = self.machine.snapshot(now);
                if let Some(link) = &self.vault {
                    snapshot.vault = (link.lifetimes)(now)
                        .into_iter()
                        .map(|(reference, ttl_left)| LeaseStatus {
                            reference,
                            ttl_left,
                        })
                        .collect();
                }
                json!({"ok": true, "status": snapshot.to_json(), "table": snapshot.to_table()})
            }
            Request::Health { live: true } => json!({"ok": true}),
            Request::Health { live: false } => match self.machine.snapshot(now).not_ready {
                None => json!({"ok": true}),
                Some(reason) => refusal(1, &format!("not ready: {reason}")),
            },
            Request::Jobs { command, jobs } => {
                let command = match command {
                    JobCommand::Restart => Command::Restart,
                    JobCommand::Stop => Command::Stop,
                    JobCommand::Start => Command::Start,
                };
                self.command(command, &jobs)
            }
            Request::Signal { signal, jobs } => match signals::parse_name(&signal) {
                Some(signal) => self.command(Command::Signal(signal as i32), &jobs),
                None => refusal(2, &format!("unknown signal {signal}")),
            },
            Request::Reload => refusal(1, "reload is not available yet"),
            Request::Rotate => refusal(1, "rotate is not available yet"),
        }
    }

    fn command(&mut self, command: Command, names: &[String]) -> Value {
        let mut ids = Vec::new();
        for name in names {
            match self.machine.job_named(name) {
                Some(id) => ids.push(id),
                None => {
                    let known: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
                    return refusal(
                        2,
                        &format!("unknown job {name} (jobs: {})", known.join(", ")),
                    );
                }
            }
        }
        if let Some(&init) = ids.iter().find(|&&id| !self.machine.is_main(id)) {
            return refusal(
                2,
                &format!(
                    "{} is an init job; {} applies to main jobs only",
                    self.machine.name(init),
                    command.name()
                ),
            );
        }
        match self.machine.command(command, &ids, Instant::now()) {
            Ok(actions) => {
                self.execute(actions);
                json!({"ok": true})
            }
            Err(reason) => refusal(1, &reason),
        }
    }

    /// The loop itself failed: kill every job's group at once and wait for them, so that no
    /// job outlives us, then exit 1.
    fn emergency_stop(&mut self, reason: &str) {
        self.logger
            .error(&format!("{reason}; killing every job and exiting"));
        let mut left = self.machine.live_groups();
        for &pgid in &left {
            let _ = reaper::signal_group(pgid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !left.is_empty() && Instant::now() < deadline {
            for (pid, _) in reaper::reap_exited() {
                left.retain(|&p| p != pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.status = Some(1);
    }
}
