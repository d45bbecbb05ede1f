//! The supervisor's decisions, as a state machine without processes or clocks of its own.
//!
//! The event loop feeds it [`Event`]s with the current time and carries out the [`Action`]s it
//! returns. Everything docs/behaviour.md and docs/operations.md say about jobs, signals and
//! exit statuses is decided here: the init sequence, start order (`after`) and readiness,
//! restart policies, backoff and `max-restarts`, essential jobs, leftover process groups,
//! `shutdown-delay` and shutdown escalation in reverse start order, control commands, rolling
//! restarts after a Vault refresh, and the exit status. [`Machine::snapshot`] is what `status`
//! shows.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{BackoffSettings, JobSpec, RestartPolicy, duration};
use crate::signals;
use crate::time::later;

use super::backoff::Backoff;
use super::orphans::OrphanLog;
use super::status::{JobState, JobStatus, LastExit, Snapshot};

/// Index of a job: init jobs first, then main jobs, in file order.
pub type JobId = usize;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
}

impl Termination {
    pub fn success(self) -> bool {
        self == Termination::Exited(0)
    }

    /// The status a shell would report: the code, or 128 + the signal.
    pub fn status(self) -> u8 {
        let status = match self {
            Termination::Exited(code) => code,
            Termination::Signaled(signal) => 128 + signal,
        };
        u8::try_from(status.clamp(0, 255)).unwrap_or(u8::MAX)
    }

    pub fn describe(self) -> String {
        match self {
            Termination::Exited(code) => format!("exited with status {code}"),
            Termination::Signaled(signal) => {
                format!("was killed by signal {}", signals::name_of(signal))
            }
        }
    }
}

/// What the machine needs to know about a job.
#[derive(Debug, Clone)]
pub struct JobPolicy {
    pub name: String,
    pub kill_signal: i32,
    pub stop_timeout: Duration,
    pub restart: RestartPolicy,
    pub essential: bool,
    /// The readiness check's schedule; `None`: running as soon as started.
    pub check: Option<CheckPolicy>,
    /// Main jobs (indices into the main jobs) that must be running before this one starts.
    pub after: Vec<usize>,
    pub max_restarts: Option<u32>,
}

/// When a readiness check runs and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPolicy {
    pub interval: Duration,
    pub timeout: Duration,
}

impl JobPolicy {
    pub fn from_spec(spec: &JobSpec) -> JobPolicy {
        JobPolicy {
            name: spec.name.clone(),
            kill_signal: spec.kill_signal as i32,
            stop_timeout: spec.stop_timeout,
            restart: spec.restart,
            essential: spec.essential,
            check: spec.ready.as_ref().map(|ready| CheckPolicy {
                interval: ready.interval,
                timeout: ready.timeout,
            }),
            after: spec.after.clone(),
            max_restarts: spec.max_restarts,
        }
    }
}

/// A control command (`simplevisor restart|stop|start|signal`), for main jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop gracefully and start again at once, backoff reset.
    Restart,
    /// Stop gracefully; stays stopped until `Start`.
    Stop,
    /// Start a stopped (or exited) job.
    Start,
    /// Send this signal to the job's process group.
    Signal(i32),
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Restart => "restart",
            Command::Stop => "stop",
            Command::Start => "start",
            Command::Signal(_) => "signal",
        }
    }
}

/// Something that happened, as the event loop saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The job asked for by [`Action::Start`] is running.
    Started { job: JobId, pid: i32 },
    /// The job asked for by [`Action::Start`] could not be started; `status` is what a shell
    /// would report (127 not found, 126 not executable).
    StartFailed {
        job: JobId,
        reason: String,
        status: i32,
    },
    /// A child was reaped. `group_alive`: other members of its process group remain.
    Reaped {
        pid: i32,
        how: Termination,
        group_alive: bool,
    },
    /// The process group of a job whose leader already exited has no members left.
    GroupGone { job: JobId },
    /// `SIGTERM` or `SIGINT`.
    ShutdownSignal { signal: i32 },
    /// Any other signal that is forwarded to the jobs.
    ForwardSignal { signal: i32 },
    /// A fatal error outside the jobs (Vault expiry, ...): stop everything, exit 1.
    Fatal { reason: String },
    /// The job environment was rebuilt: restart running main jobs one at a time.
    RollingRestart,
    /// The readiness check asked for by [`Action::RunCheck`] finished; `detail` says why it
    /// failed.
    CheckDone {
        job: JobId,
        passed: bool,
        detail: String,
    },
    /// Time passed (timers are checked on every event too).
    Tick,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start(JobId),
    /// `kill(-pgid, signal)`.
    SignalGroup {
        job: JobId,
        pgid: i32,
        signal: i32,
    },
    /// An internal information record.
    Info(String),
    /// An internal warning or error record.
    Error(String),
    /// Every running main job was restarted with the renewed environment: what the old one
    /// held (superseded Vault leases) can be given back.
    RollingRestartDone,
    /// Run the job's readiness check once; report [`Event::CheckDone`].
    RunCheck {
        job: JobId,
    },
    /// Abandon the job's check in flight (it timed out, or the job stopped): no `CheckDone`.
    CancelCheck {
        job: JobId,
    },
    /// Stop the loop and exit with this status once output and Vault are done.
    Exit(u8),
}

/// A stop in progress: `kill-signal` sent, `SIGKILL` due at `kill_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stop {
    kill_at: Instant,
    killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    /// Never started in this phase, or stopped by a shutdown before it was due to start.
    Idle,
    /// [`Action::Start`] was issued; waiting for `Started` or `StartFailed`.
    Starting,
    Running {
        pid: i32,
        since: Instant,
        stop: Option<Stop>,
        /// Its readiness check passed (or it has none).
        ready: bool,
    },
    /// The leader exited; members of its process group remain and are being stopped.
    Draining {
        pgid: i32,
        since: Instant,
        how: Termination,
        stop: Stop,
    },
    /// Waiting out the backoff before a restart.
    Waiting { until: Instant },
    /// Done for good (init job succeeded, or a main job that is not restarted).
    Finished { how: Termination },
}

/// A readiness check's schedule while the job is starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CheckRun {
    next_at: Instant,
    /// A check is in flight and counts as failed at this moment.
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Job {
    policy: JobPolicy,
    run: Run,
    backoff: Backoff,
    /// Stopped by a rolling restart: start again at once, whatever its policy says.
    in_rolling_restart: bool,
    /// Stopped by a `stop` command: not restarted until `start`.
    held: bool,
    /// A `restart` command: start again as soon as it is gone.
    restart_now: bool,
    /// Gave up after `max-restarts`.
    failed: bool,
    /// How often it was started (restarts = starts - 1).
    starts: u32,
    last_exit: Option<Termination>,
    check: Option<CheckRun>,
    last_check_error: Option<String>,
}

impl Job {
    fn is_active(&self) -> bool {
        matches!(
            self.run,
            Run::Starting | Run::Running { .. } | Run::Draining { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    Created,
    /// Running init job `current`.
    Init {
        current: JobId,
    },
    Main,
    /// Stopping everything; exit with `status` once no job is active.
    Stopping {
        status: u8,
    },
    Done,
}

/// The supervisor's state.
#[derive(Debug)]
pub struct Machine {
    jobs: Vec<Job>,
    init_count: usize,
    phase: Phase,
    /// Main jobs still to be restarted one by one after a Vault refresh.
    rolling_queue: VecDeque<JobId>,
    orphans: OrphanLog,
    shutdown_delay: Duration,
    /// For each job, the jobs that list it in `after` (the reverse of `after`).
    dependents: Vec<Vec<JobId>>,
    /// A first shutdown signal came during the main phase: stop everything at this moment.
    delayed_stop: Option<Instant>,
}

impl Machine {
    /// `init` and `main` policies in file order.
    pub fn new(init: Vec<JobPolicy>, main: Vec<JobPolicy>, backoff: BackoffSettings) -> Machine {
        let init_count = init.len();
        let jobs: Vec<Job> = init
            .into_iter()
            .chain(main)
            .map(|mut policy| {
                // `after` names main jobs; the machine numbers init jobs first.
                for first in &mut policy.after {
                    *first += init_count;
                }
                Job {
                    policy,
                    run: Run::Idle,
                    backoff: Backoff::new(backoff),
                    in_rolling_restart: false,
                    held: false,
                    restart_now: false,
                    failed: false,
                    starts: 0,
                    last_exit: None,
                    check: None,
                    last_check_error: None,
                }
            })
            .collect();
        let mut dependents = vec![Vec::new(); jobs.len()];
        for (job, entry) in jobs.iter().enumerate() {
            for &first in &entry.policy.after {
                if let Some(list) = dependents.get_mut(first) {
                    list.push(job);
                }
            }
        }
        Machine {
            jobs,
            init_count,
            phase: Phase::Created,
            rolling_queue: VecDeque::new(),
            orphans: OrphanLog::default(),
            shutdown_delay: Duration::ZERO,
            delayed_stop: None,
            dependents,
        }
    }

    /// How long main jobs keep running after the first shutdown signal.
    pub fn with_shutdown_delay(mut self, delay: Duration) -> Machine {
        self.shutdown_delay = delay;
        self
    }

    /// The job called `name`.
    pub fn job_named(&self, name: &str) -> Option<JobId> {
        self.jobs.iter().position(|job| job.policy.name == name)
    }

    pub fn is_main(&self, job: JobId) -> bool {
        job >= self.init_count && job < self.jobs.len()
    }

    pub fn name(&self, job: JobId) -> &str {
        &self.jobs[job].policy.name
    }

    /// Begins: the first init job, or every main job.
    pub fn start(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.phase == Phase::Created {
            self.start_init_or_main(0, &mut actions);
        }
        actions
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Started { job, pid } => self.on_started(job, pid, now, &mut actions),
            Event::StartFailed {
                job,
                reason,
                status,
            } => {
                actions.push(Action::Error(format!(
                    "job {} could not be started: {reason}",
                    self.name(job)
                )));
                // A failed start ends a rolling restart's turn for this job; its own restart
                // policy takes over.
                let was_rolling = std::mem::take(&mut self.jobs[job].in_rolling_restart);
                self.on_done(
                    job,
                    Termination::Exited(status),
                    Duration::ZERO,
                    now,
                    &mut actions,
                );
                if was_rolling {
                    self.continue_rolling(now, &mut actions);
                }
            }
            Event::Reaped {
                pid,
                how,
                group_alive,
            } => self.on_reaped(pid, how, group_alive, now, &mut actions),
            Event::GroupGone { job } => {
                if let Run::Draining { since, how, .. } = self.jobs[job].run {
                    let ran = now.saturating_duration_since(since);
                    self.on_done(job, how, ran, now, &mut actions);
                }
            }
            Event::ShutdownSignal { signal } => self.on_shutdown_signal(signal, now, &mut actions),
            Event::ForwardSignal { signal } => self.on_forward(signal, &mut actions),
            Event::Fatal { reason } => {
                actions.push(Action::Error(reason));
                if !matches!(self.phase, Phase::Stopping { .. } | Phase::Done) {
                    self.begin_stop(1, now, &mut actions);
                }
            }
            Event::RollingRestart => self.on_rolling_restart(now, &mut actions),
            Event::CheckDone {
                job,
                passed,
                detail,
            } => self.on_check_done(job, passed, detail, now, &mut actions),
            Event::Tick => {}
        }
        self.check_timers(now, &mut actions);
        actions
    }

    /// The earliest time at which [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let checks = self
            .jobs
            .iter()
            .filter_map(|job| job.check.map(|c| c.deadline.unwrap_or(c.next_at)));
        self.jobs
            .iter()
            .filter_map(|job| match job.run {
                Run::Waiting { until } => Some(until),
                Run::Running {
                    stop: Some(stop), ..
                }
                | Run::Draining { stop, .. }
                    if !stop.killed =>
                {
                    Some(stop.kill_at)
                }
                _ => None,
            })
            .chain(checks)
            .chain(self.orphans.due())
            .chain(self.delayed_stop)
            .min()
    }

    /// Jobs whose leader exited while their process group lives on: the loop probes these
    /// groups and reports [`Event::GroupGone`].
    pub fn draining_groups(&self) -> Vec<(JobId, i32)> {
        self.jobs
            .iter()
            .enumerate()
            .filter_map(|(id, job)| match job.run {
                Run::Draining { pgid, .. } => Some((id, pgid)),
                _ => None,
            })
            .collect()
    }

    /// The job whose running leader has pid `pid`.
    pub fn job_of_leader(&self, pid: i32) -> Option<JobId> {
        self.jobs
            .iter()
            .position(|job| matches!(job.run, Run::Running { pid: p, .. } if p == pid && pid > 0))
    }

    /// The process group of every job that may still have processes.
    pub fn live_groups(&self) -> Vec<i32> {
        self.jobs
            .iter()
            .filter_map(|job| match job.run {
                Run::Running { pid, .. } if pid > 0 => Some(pid),
                Run::Draining { pgid, .. } => Some(pgid),
                _ => None,
            })
            .collect()
    }

    /// Carries out a control command on main jobs (names resolved by the caller). Refused,
    /// with nothing done, outside the main phase, during a shutdown, or (`signal`) when a job
    /// is not running.
    pub fn command(
        &mut self,
        command: Command,
        jobs: &[JobId],
        now: Instant,
    ) -> Result<Vec<Action>, String> {
        match self.phase {
            Phase::Main if self.delayed_stop.is_none() => {}
            Phase::Created | Phase::Init { .. } => {
                return Err("the main jobs have not started yet (init jobs are running)".into());
            }
            _ => return Err("simplevisor is shutting down".into()),
        }
        if let Some(&job) = jobs.iter().find(|&&job| !self.is_main(job)) {
            return Err(format!(
                "{} is not a main job; commands apply to main jobs only",
                self.name(job)
            ));
        }
        if let Command::Signal(_) = command {
            let idle: Vec<&str> = jobs
                .iter()
                .filter(|&&job| !matches!(self.jobs[job].run, Run::Running { pid, .. } if pid > 0))
                .map(|&job| self.name(job))
                .collect();
            if !idle.is_empty() {
                return Err(format!("not running: {}", idle.join(", ")));
            }
        }
        let mut actions = Vec::new();
        for &job in jobs {
            match command {
                Command::Restart => self.restart_now(job, now, &mut actions),
                Command::Stop => {
                    let entry = &mut self.jobs[job];
                    entry.held = true;
                    entry.restart_now = false;
                    match entry.run {
                        Run::Waiting { .. } | Run::Idle => entry.run = Run::Idle,
                        Run::Running { .. } => self.stop_job(job, now, &mut actions),
                        _ => {}
                    }
                }
                Command::Start => {
                    let entry = &mut self.jobs[job];
                    entry.held = false;
                    if matches!(
                        entry.run,
                        Run::Idle | Run::Finished { .. } | Run::Waiting { .. }
                    ) {
                        entry.backoff.reset();
                        self.start_or_wait(job, &mut actions);
                    }
                }
                Command::Signal(signal) => {
                    if let Run::Running { pid, .. } = self.jobs[job].run {
                        actions.push(Action::SignalGroup {
                            job,
                            pgid: pid,
                            signal,
                        });
                    }
                }
            }
        }
        self.check_timers(now, &mut actions);
        Ok(actions)
    }

    /// `restart`: stop gracefully if it runs, and start again at once, backoff reset.
    fn restart_now(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        let entry = &mut self.jobs[job];
        entry.held = false;
        entry.backoff.reset();
        match entry.run {
            Run::Running { stop: None, .. } => {
                entry.restart_now = true;
                self.stop_job(job, now, actions);
            }
            Run::Running { .. } | Run::Draining { .. } | Run::Starting => {
                entry.restart_now = true;
            }
            Run::Idle | Run::Waiting { .. } | Run::Finished { .. } => {
                self.start_or_wait(job, actions);
            }
        }
    }

    /// What `status` shows (without Vault, which the caller adds).
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let jobs = self
            .jobs
            .iter()
            .enumerate()
            .map(|(id, job)| self.job_status(id, job, now))
            .collect();
        Snapshot {
            phase: match self.phase {
                Phase::Created | Phase::Init { .. } => "init",
                Phase::Main if self.delayed_stop.is_some() => "shutdown-delay",
                Phase::Main => "main",
                Phase::Stopping { .. } => "stopping",
                Phase::Done => "done",
            },
            not_ready: self.not_ready(),
            jobs,
            vault: Vec::new(),
        }
    }

    fn job_status(&self, id: JobId, job: &Job, now: Instant) -> JobStatus {
        let main = self.is_main(id);
        let state = match job.run {
            Run::Idle if job.held => JobState::Stopped,
            Run::Idle if main => JobState::Waiting,
            Run::Idle => JobState::Pending,
            Run::Starting => JobState::Starting,
            Run::Running { stop: Some(_), .. } | Run::Draining { .. } => JobState::Stopping,
            Run::Running { ready: false, .. } => JobState::Starting,
            Run::Running { .. } => JobState::Running,
            Run::Waiting { .. } => JobState::Backoff,
            Run::Finished { .. } if job.failed => JobState::Failed,
            Run::Finished { .. } if job.held => JobState::Stopped,
            Run::Finished { .. } if main => JobState::Exited,
            Run::Finished { how } if how.success() => JobState::Done,
            Run::Finished { .. } => JobState::Failed,
        };
        let (pid, uptime) = match job.run {
            Run::Running { pid, since, .. } => {
                (Some(pid), Some(now.saturating_duration_since(since)))
            }
            Run::Draining { pgid, since, .. } => {
                (Some(pgid), Some(now.saturating_duration_since(since)))
            }
            _ => (None, None),
        };
        JobStatus {
            name: job.policy.name.clone(),
            kind: if main { "main" } else { "init" },
            state,
            pid,
            uptime,
            restarts: job.starts.saturating_sub(1),
            last_exit: job.last_exit.map(|how| match how {
                Termination::Exited(code) => LastExit::Code(code),
                Termination::Signaled(signal) => LastExit::Signal(signals::name_of(signal)),
            }),
            next_start_in: match job.run {
                Run::Waiting { until } => Some(until.saturating_duration_since(now)),
                _ => None,
            },
            check_error: match job.run {
                Run::Running { ready: false, .. } => job.last_check_error.clone(),
                _ => None,
            },
        }
    }

    /// Why `health` fails, or `None` when ready: main phase, no shutdown begun, and every
    /// main job that is neither stopped by a command nor done under its restart policy is
    /// running (its readiness check passed).
    fn not_ready(&self) -> Option<String> {
        match self.phase {
            Phase::Created | Phase::Init { .. } => return Some("init jobs are running".into()),
            Phase::Stopping { .. } | Phase::Done => return Some("shutting down".into()),
            Phase::Main if self.delayed_stop.is_some() => {
                return Some("shutting down (shutdown-delay)".into());
            }
            Phase::Main => {}
        }
        let not_running: Vec<String> = (self.init_count..self.jobs.len())
            .filter_map(|id| {
                let job = &self.jobs[id];
                let fine = job.held
                    || matches!(job.run, Run::Finished { .. } if !job.failed)
                    || matches!(
                        job.run,
                        Run::Running {
                            ready: true,
                            stop: None,
                            ..
                        }
                    );
                (!fine).then(|| job.policy.name.clone())
            })
            .collect();
        if not_running.is_empty() {
            None
        } else {
            Some(format!("not running yet: {}", not_running.join(", ")))
        }
    }

    /// Init jobs are done and main jobs run (or wait to restart).
    pub fn in_main_phase(&self) -> bool {
        self.phase == Phase::Main
    }

    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn start_init_or_main(&mut self, first_init: JobId, actions: &mut Vec<Action>) {
        if first_init < self.init_count {
            self.phase = Phase::Init {
                current: first_init,
            };
            self.start_job(first_init, actions);
            return;
        }
        self.phase = Phase::Main;
        if self.init_count == self.jobs.len() {
            actions.push(Action::Info(
                "no main jobs configured; init jobs done, exiting".into(),
            ));
            self.finish(0, actions);
            return;
        }
        self.start_waiting(actions);
    }

    fn start_job(&mut self, job: JobId, actions: &mut Vec<Action>) {
        self.jobs[job].run = Run::Starting;
        actions.push(Action::Start(job));
    }

    /// Whether every job `job` lists in `after` is running (and ready).
    fn after_satisfied(&self, job: JobId) -> bool {
        self.jobs[job].policy.after.iter().all(|&first| {
            matches!(
                self.jobs[first].run,
                Run::Running {
                    ready: true,
                    stop: None,
                    ..
                }
            )
        })
    }

    /// Starts every main job that is waiting (for `after`) and may start now.
    fn start_waiting(&mut self, actions: &mut Vec<Action>) {
        if self.phase != Phase::Main {
            return;
        }
        for job in self.init_count..self.jobs.len() {
            let entry = &self.jobs[job];
            if entry.run == Run::Idle && !entry.held && !entry.failed && self.after_satisfied(job) {
                self.start_job(job, actions);
            }
        }
    }

    /// Starts `job` now if its `after` jobs run, else leaves it waiting for them.
    fn start_or_wait(&mut self, job: JobId, actions: &mut Vec<Action>) {
        if self.after_satisfied(job) {
            self.start_job(job, actions);
        } else {
            self.jobs[job].run = Run::Idle;
        }
    }

    fn on_started(&mut self, job: JobId, pid: i32, now: Instant, actions: &mut Vec<Action>) {
        let entry = &mut self.jobs[job];
        let ready = entry.policy.check.is_none();
        entry.run = Run::Running {
            pid,
            since: now,
            stop: None,
            ready,
        };
        entry.starts = entry.starts.saturating_add(1);
        entry.last_check_error = None;
        if !ready {
            entry.check = Some(CheckRun {
                next_at: now,
                deadline: None,
            });
        }
        actions.push(Action::Info(format!(
            "job {} started (pid {pid})",
            self.name(job)
        )));
        if ready {
            self.start_waiting(actions);
        }
        // Stopped by a command while it was being started.
        if self.jobs[job].held {
            self.stop_job(job, now, actions);
        }
        if self.jobs[job].in_rolling_restart {
            self.jobs[job].in_rolling_restart = false;
            self.continue_rolling(now, actions);
        }
        // A shutdown that began while this job was being started: stop it like the others.
        if matches!(self.phase, Phase::Stopping { .. }) {
            self.stop_job(job, now, actions);
        }
    }

    fn on_reaped(
        &mut self,
        pid: i32,
        how: Termination,
        group_alive: bool,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some(job) = self.job_of_leader(pid) else {
            actions.extend(self.orphans.reaped(pid, how, now).map(Action::Info));
            return;
        };
        let Run::Running { since, stop, .. } = self.jobs[job].run else {
            return;
        };
        self.end_check(job, actions);
        self.jobs[job].last_exit = Some(how);
        let level_error = !how.success() && stop.is_none();
        let message = format!("job {} {}", self.name(job), how.describe());
        actions.push(if level_error {
            Action::Error(message)
        } else {
            Action::Info(message)
        });
        if !group_alive {
            let ran = now.saturating_duration_since(since);
            self.on_done(job, how, ran, now, actions);
            return;
        }
        // docs/behaviour.md: what is left of the group gets kill-signal, then SIGKILL after stop-timeout.
        let stop = match stop {
            Some(stop) => stop,
            None => {
                let policy = &self.jobs[job].policy;
                actions.push(Action::Info(format!(
                    "job {} left processes in its group; sending {}",
                    policy.name,
                    signals::name_of(policy.kill_signal)
                )));
                actions.push(Action::SignalGroup {
                    job,
                    pgid: pid,
                    signal: policy.kill_signal,
                });
                Stop {
                    kill_at: later(now, policy.stop_timeout),
                    killed: false,
                }
            }
        };
        self.jobs[job].run = Run::Draining {
            pgid: pid,
            since,
            how,
            stop,
        };
    }

    /// The job is completely gone (leader reaped, group empty): decide what comes next.
    fn on_done(
        &mut self,
        job: JobId,
        how: Termination,
        ran: Duration,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.jobs[job].run = Run::Finished { how };
        match self.phase.clone() {
            Phase::Created | Phase::Done => {}
            Phase::Stopping { status } => {
                if self.jobs.iter().any(Job::is_active) {
                    self.stop_released(now, actions);
                } else {
                    self.finish(status, actions);
                }
            }
            Phase::Init { current } => {
                if current != job {
                    return;
                }
                if how.success() {
                    self.start_init_or_main(current + 1, actions);
                } else {
                    actions.push(Action::Error(format!(
                        "init job {} failed; stopping",
                        self.name(job)
                    )));
                    self.begin_stop(1, now, actions);
                }
            }
            Phase::Main => self.on_main_done(job, how, ran, now, actions),
        }
    }

    fn on_main_done(
        &mut self,
        job: JobId,
        how: Termination,
        ran: Duration,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let entry = &mut self.jobs[job];
        if entry.in_rolling_restart {
            self.start_job(job, actions);
            return;
        }
        if entry.held {
            actions.push(Action::Info(format!(
                "job {} stopped (by a stop command); it stays stopped until started",
                entry.policy.name
            )));
            return;
        }
        if std::mem::take(&mut entry.restart_now) {
            self.start_or_wait(job, actions);
            return;
        }
        if entry.policy.essential {
            let status = how.status();
            actions.push(Action::Error(format!(
                "essential job {} {}; stopping everything, exit status {status}",
                entry.policy.name,
                how.describe()
            )));
            self.begin_stop(status, now, actions);
            return;
        }
        let restart = match entry.policy.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !how.success(),
            RestartPolicy::Never => false,
        };
        if restart {
            let delay = entry.backoff.next_delay(ran);
            if let Some(max) = entry.policy.max_restarts
                && entry.backoff.attempt() > max
            {
                entry.failed = true;
                let message = format!(
                    "job {} failed: it ended quickly {} times in a row (max-restarts {max}); stopping everything",
                    entry.policy.name,
                    entry.backoff.attempt()
                );
                actions.push(Action::Error(message));
                self.begin_stop(1, now, actions);
                return;
            }
            entry.run = Run::Waiting {
                until: later(now, delay),
            };
            actions.push(Action::Info(format!(
                "restarting job {} in {} (attempt {})",
                entry.policy.name,
                duration::format(delay),
                entry.backoff.attempt()
            )));
            return;
        }
        self.exit_if_settled(actions);
    }

    /// Exits when no main job runs, waits to restart, or is held by a `stop` command: then
    /// nothing can change any more (a job waiting for `after` waits for jobs that are done).
    fn exit_if_settled(&mut self, actions: &mut Vec<Action>) {
        let main = &self.jobs[self.init_count..];
        let alive = main
            .iter()
            .any(|job| job.is_active() || job.held || matches!(job.run, Run::Waiting { .. }));
        if alive {
            return;
        }
        let never_started: Vec<&str> = main
            .iter()
            .filter(|job| job.run == Run::Idle)
            .map(|job| job.policy.name.as_str())
            .collect();
        if !never_started.is_empty() {
            actions.push(Action::Error(format!(
                "never started, the jobs they wait for (after) are not running: {}",
                never_started.join(", ")
            )));
        }
        let all_succeeded = main
            .iter()
            .all(|job| matches!(job.run, Run::Finished { how } if how.success()));
        let status = if all_succeeded { 0 } else { 1 };
        actions.push(Action::Info(format!(
            "all main jobs finished; exit status {status}"
        )));
        self.finish(status, actions);
    }

    fn on_shutdown_signal(&mut self, signal: i32, now: Instant, actions: &mut Vec<Action>) {
        let name = signals::name_of(signal);
        match self.phase {
            Phase::Done => {}
            Phase::Stopping { .. } => {
                actions.push(Action::Info(format!(
                    "received {name} again; killing every job now"
                )));
                for job in 0..self.jobs.len() {
                    self.kill_job(job, now, actions);
                }
            }
            Phase::Main if self.delayed_stop.is_some() => {
                actions.push(Action::Info(format!(
                    "received {name} again; ending the shutdown-delay, shutting down"
                )));
                self.begin_stop(0, now, actions);
            }
            Phase::Main if !self.shutdown_delay.is_zero() => {
                self.delayed_stop = Some(later(now, self.shutdown_delay));
                actions.push(Action::Info(format!(
                    "received {name}; health now fails, jobs keep running for {} (shutdown-delay), then stop",
                    duration::format(self.shutdown_delay)
                )));
            }
            _ => {
                actions.push(Action::Info(format!("received {name}; shutting down")));
                self.begin_stop(0, now, actions);
            }
        }
    }

    fn on_forward(&mut self, signal: i32, actions: &mut Vec<Action>) {
        let mut names = Vec::new();
        for (job, entry) in self.jobs.iter().enumerate() {
            if let Run::Running { pid, .. } = entry.run {
                actions.push(Action::SignalGroup {
                    job,
                    pgid: pid,
                    signal,
                });
                names.push(entry.policy.name.as_str());
            }
        }
        let name = signals::name_of(signal);
        actions.push(Action::Info(if names.is_empty() {
            format!("received {name}; no job running to forward it to")
        } else {
            format!("received {name}; forwarded to {}", names.join(", "))
        }));
    }

    fn on_rolling_restart(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Main {
            return;
        }
        self.rolling_queue = (self.init_count..self.jobs.len()).collect();
        actions.push(Action::Info(
            "environment renewed; restarting main jobs one by one".into(),
        ));
        // Only one job is in a rolling restart at a time.
        if !self.jobs.iter().any(|job| job.in_rolling_restart) {
            self.continue_rolling(now, actions);
        }
    }

    /// Stops the next running job of the rolling restart; the rest follow once it runs again.
    fn continue_rolling(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Main {
            self.rolling_queue.clear();
            return;
        }
        while let Some(job) = self.rolling_queue.pop_front() {
            if matches!(self.jobs[job].run, Run::Running { stop: None, .. }) {
                self.jobs[job].in_rolling_restart = true;
                self.stop_job(job, now, actions);
                return;
            }
            // Waiting or finished jobs pick up the new environment when they next start.
        }
        actions.push(Action::RollingRestartDone);
    }

    fn begin_stop(&mut self, status: u8, now: Instant, actions: &mut Vec<Action>) {
        self.phase = Phase::Stopping { status };
        self.delayed_stop = None;
        self.rolling_queue.clear();
        for job in 0..self.jobs.len() {
            if let Run::Waiting { .. } = self.jobs[job].run {
                self.jobs[job].run = Run::Idle;
            }
        }
        if self.jobs.iter().any(Job::is_active) {
            actions.push(Action::Info("stopping all jobs".into()));
            self.stop_released(now, actions);
        } else {
            self.finish(status, actions);
        }
    }

    /// During a shutdown: sends `kill-signal` to every running job that no active job waits
    /// for (`after`), so jobs stop in the reverse of their start order.
    fn stop_released(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for job in 0..self.jobs.len() {
            if !matches!(self.jobs[job].run, Run::Running { stop: None, .. }) {
                continue;
            }
            let waited_for = self.dependents[job]
                .iter()
                .any(|&other| self.jobs[other].is_active());
            if !waited_for {
                self.stop_job(job, now, actions);
            }
        }
    }

    /// Sends the job's `kill-signal` to its group and arms the `SIGKILL` deadline.
    fn stop_job(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        self.end_check(job, actions);
        let entry = &mut self.jobs[job];
        if let Run::Running {
            pid, ref mut stop, ..
        } = entry.run
            && stop.is_none()
            && pid > 0
        {
            *stop = Some(Stop {
                kill_at: later(now, entry.policy.stop_timeout),
                killed: false,
            });
            actions.push(Action::SignalGroup {
                job,
                pgid: pid,
                signal: entry.policy.kill_signal,
            });
        }
    }

    /// `SIGKILL` to the job's group, if it has processes and was not killed already.
    fn kill_job(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        // Not signalled yet (waiting for the jobs that depend on it): killed all the same.
        if let Run::Running {
            stop: ref mut stop @ None,
            ..
        } = self.jobs[job].run
        {
            *stop = Some(Stop {
                kill_at: now,
                killed: false,
            });
        }
        let (pgid, stop) = match &mut self.jobs[job].run {
            Run::Running {
                pid,
                stop: Some(stop),
                ..
            } => (*pid, stop),
            Run::Draining { pgid, stop, .. } => (*pgid, stop),
            _ => return,
        };
        if !stop.killed && pgid > 0 {
            stop.killed = true;
            actions.push(Action::SignalGroup {
                job,
                pgid,
                signal: libc::SIGKILL,
            });
        }
    }

    fn check_timers(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.extend(self.orphans.tick(now).map(Action::Info));
        if self.delayed_stop.is_some_and(|at| at <= now) && self.phase == Phase::Main {
            actions.push(Action::Info(
                "shutdown-delay over; stopping all jobs".into(),
            ));
            self.begin_stop(0, now, actions);
        }
        self.run_checks(now, actions);
        for job in 0..self.jobs.len() {
            match self.jobs[job].run {
                Run::Waiting { until } if until <= now && self.phase == Phase::Main => {
                    self.start_or_wait(job, actions);
                }
                Run::Running {
                    stop: Some(stop), ..
                }
                | Run::Draining { stop, .. }
                    if !stop.killed && stop.kill_at <= now =>
                {
                    let policy = &self.jobs[job].policy;
                    actions.push(Action::Error(format!(
                        "job {} did not stop within {}; sending KILL to its process group",
                        policy.name,
                        duration::format(policy.stop_timeout)
                    )));
                    self.kill_job(job, now, actions);
                }
                _ => {}
            }
        }
    }

    /// Readiness checks that are due, and those in flight for too long.
    fn run_checks(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for job in 0..self.jobs.len() {
            let entry = &mut self.jobs[job];
            let (Some(check), Some(policy)) = (&mut entry.check, entry.policy.check) else {
                continue;
            };
            match check.deadline {
                Some(deadline) if deadline <= now => {
                    check.deadline = None;
                    entry.last_check_error = Some(format!(
                        "no answer within {}",
                        duration::format(policy.timeout)
                    ));
                    actions.push(Action::CancelCheck { job });
                }
                Some(_) => {}
                None if check.next_at <= now => {
                    check.deadline = Some(later(now, policy.timeout));
                    check.next_at = later(now, policy.interval);
                    actions.push(Action::RunCheck { job });
                }
                None => {}
            }
        }
    }

    fn on_check_done(
        &mut self,
        job: JobId,
        passed: bool,
        detail: String,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some(entry) = self.jobs.get_mut(job) else {
            return;
        };
        let Some(check) = &mut entry.check else {
            return; // cancelled meanwhile
        };
        check.deadline = None;
        if !passed {
            entry.last_check_error = Some(detail);
            // A fast failure is retried on schedule, not at once.
            check.next_at = check.next_at.max(now);
            return;
        }
        entry.check = None;
        entry.last_check_error = None;
        if let Run::Running { ready, .. } = &mut entry.run {
            *ready = true;
        }
        actions.push(Action::Info(format!("job {} is ready", entry.policy.name)));
        self.start_waiting(actions);
    }

    /// The job's readiness check ends (it stops or exited): cancel one in flight.
    fn end_check(&mut self, job: JobId, actions: &mut Vec<Action>) {
        if let Some(check) = self.jobs[job].check.take()
            && check.deadline.is_some()
        {
            actions.push(Action::CancelCheck { job });
        }
    }

    fn finish(&mut self, status: u8, actions: &mut Vec<Action>) {
        actions.extend(self.orphans.flush().map(Action::Info));
        self.phase = Phase::Done;
        actions.push(Action::Exit(status));
    }
}

#[cfg(test)]
mod operations_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_support;
