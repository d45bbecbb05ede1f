//! The supervisor's decisions, as a state machine without processes or clocks of its own.
//!
//! The event loop feeds it [`Event`]s with the current time and carries out the [`Action`]s it
//! returns. Everything docs/behaviour.md and docs/operations.md say about jobs, signals and
//! exit statuses is decided here, one concern a module:
//!
//! - this module: the types, the job table and [`Machine::handle`];
//! - `lifecycle`: a job's runs, exits, restart policy, backoff and `max-restarts`;
//! - `order`: the init sequence, `after` and which waiting jobs may start;
//! - `shutdown`: shutdown signals, `shutdown-delay`, stopping in reverse start order,
//!   `SIGKILL` escalation and forwarded signals;
//! - `commands`: control commands and their refusals;
//! - `reload`: applying a re-read configuration to the jobs;
//! - `rolling`: restarting main jobs one by one after the environment was renewed;
//! - `readiness`: when readiness checks run and what their results mean;
//! - `views`: what `status` and `health` show.
//!
//! Jobs are keyed by a [`JobId`] handed out once and never reused, so that jobs can be added
//! and removed while others run.

mod commands;
mod lifecycle;
mod order;
mod readiness;
mod reload;
mod rolling;
mod shutdown;
mod views;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::{BackoffSettings, JobKind, JobSpec, RestartPolicy};

use super::backoff::Backoff;
use super::orphans::OrphanLog;
pub use super::termination::Termination;

pub use commands::{Command, Refusal};
pub use reload::{ReloadEntry, ReloadSettings, Reloaded};

/// A job's identity: handed out once, in file order at the start and then to each job a
/// reload adds, and never reused. Not a position: jobs come and go.
pub type JobId = usize;

/// What the machine needs to know about a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPolicy {
    pub name: String,
    pub kind: JobKind,
    pub kill_signal: i32,
    pub stop_timeout: Duration,
    pub restart: RestartPolicy,
    pub essential: bool,
    /// The readiness check's schedule; `None`: running as soon as started.
    pub check: Option<CheckPolicy>,
    /// Names of the main jobs that must be running before this one starts.
    pub after: Vec<String>,
    pub max_restarts: Option<u32>,
    /// Sent instead of a restart when the environment was renewed.
    pub reload_signal: Option<i32>,
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
            kind: spec.kind,
            kill_signal: spec.kill_signal as i32,
            stop_timeout: spec.stop_timeout,
            restart: spec.restart,
            essential: spec.essential,
            check: spec.ready.as_ref().map(|ready| CheckPolicy {
                interval: ready.interval,
                timeout: ready.timeout,
            }),
            // The spec's `after` are indices into its config: see `jobs::JobRecord::policy`.
            after: Vec::new(),
            max_restarts: spec.max_restarts,
            reload_signal: spec.reload_signal.map(|signal| signal as i32),
        }
    }
}

/// Something that happened, as the event loop saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The job asked for by [`Action::Start`] is running.
    Started { job: JobId, pid: i32 },
    /// The job asked for by [`Action::Start`] could not be started; `status` is what a shell
    /// would report (127 not found, 126 any other start failure).
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
    /// A fatal error outside the jobs (Vault expiry, a failed start-up, ...): stop
    /// everything, exit with `status`.
    Fatal { reason: String, status: u8 },
    /// The job environment was rebuilt: restart running main jobs one at a time.
    RollingRestart,
    /// A rotation could not fetch its secrets or write its files: nothing changed.
    RotationAbandoned { reason: String },
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
    /// A job removed by a reload is gone for good: drop everything kept for it.
    Forget(JobId),
    /// Stop the loop and exit with this status once output and Vault are done.
    Exit(u8),
}

/// A stop in progress: `kill-signal` sent, `SIGKILL` due at `kill_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stop {
    kill_at: Instant,
    /// The grace given (for the record when it runs out).
    timeout: Duration,
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

/// How the last run ended, and why when it could not start at all.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunEnd {
    how: Termination,
    start_error: Option<String>,
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
    /// A `restart` command or a reload that changed it: start again as soon as it is gone.
    restart_now: bool,
    /// Removed by a reload: forgotten once it is gone.
    retiring: bool,
    /// Gave up after `max-restarts`.
    failed: bool,
    /// How often it was started (restarts = starts - 1).
    starts: u32,
    last_exit: Option<RunEnd>,
    check: Option<CheckRun>,
    last_check_error: Option<String>,
}

impl Job {
    fn new(policy: JobPolicy, backoff: BackoffSettings) -> Job {
        Job {
            policy,
            run: Run::Idle,
            backoff: Backoff::new(backoff),
            in_rolling_restart: false,
            held: false,
            restart_now: false,
            retiring: false,
            failed: false,
            starts: 0,
            last_exit: None,
            check: None,
            last_check_error: None,
        }
    }

    fn is_active(&self) -> bool {
        matches!(
            self.run,
            Run::Starting | Run::Running { .. } | Run::Draining { .. }
        )
    }

    fn is_main(&self) -> bool {
        self.policy.kind == JobKind::Main
    }

    /// Running, ready, and not being stopped: what `after` and `health` wait for.
    fn is_up(&self) -> bool {
        matches!(
            self.run,
            Run::Running {
                ready: true,
                stop: None,
                ..
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Logging in to Vault and fetching secrets: nothing started yet.
    Vault,
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

/// Running totals for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub orphans_reaped: u64,
    /// One per signal received and forwarded to at least one job.
    pub signals_forwarded: u64,
    /// Rotations that reached every job.
    pub rotations: u64,
}

/// The supervisor's state.
#[derive(Debug)]
pub struct Machine {
    jobs: BTreeMap<JobId, Job>,
    /// Init jobs, in file order.
    init: Vec<JobId>,
    /// Main jobs in file order; jobs a reload removed are no longer here while they stop.
    main: Vec<JobId>,
    next_id: JobId,
    phase: Phase,
    /// Main jobs still to be restarted one by one after a Vault refresh.
    rolling_queue: VecDeque<JobId>,
    /// The job whose rolling restart is under way: the next waits until it is up.
    rolling_turn: Option<JobId>,
    /// A rotation under way (from `rotate` until its last job is done).
    rotation: Option<rolling::Rotation>,
    orphans: OrphanLog,
    backoff: BackoffSettings,
    shutdown_delay: Duration,
    /// For each job, the jobs that list it in `after` (the reverse of `after`).
    dependents: BTreeMap<JobId, Vec<JobId>>,
    /// For each job, the jobs it lists in `after`, resolved from names.
    prerequisites: BTreeMap<JobId, Vec<JobId>>,
    /// A first shutdown signal came during the main phase: stop everything at this moment.
    delayed_stop: Option<Instant>,
    counters: Counters,
}

impl Machine {
    /// `init` and `main` policies in file order; ids are handed out in that order from 0.
    pub fn new(init: Vec<JobPolicy>, main: Vec<JobPolicy>, backoff: BackoffSettings) -> Machine {
        let mut machine = Machine {
            jobs: BTreeMap::new(),
            init: Vec::new(),
            main: Vec::new(),
            next_id: 0,
            phase: Phase::Vault,
            rolling_queue: VecDeque::new(),
            rolling_turn: None,
            rotation: None,
            orphans: OrphanLog::default(),
            backoff,
            shutdown_delay: Duration::ZERO,
            delayed_stop: None,
            dependents: BTreeMap::new(),
            prerequisites: BTreeMap::new(),
            counters: Counters::default(),
        };
        for policy in init {
            let id = machine.add(policy);
            machine.init.push(id);
        }
        for policy in main {
            let id = machine.add(policy);
            machine.main.push(id);
        }
        machine.relink();
        machine
    }

    /// How long main jobs keep running after the first shutdown signal.
    pub fn with_shutdown_delay(mut self, delay: Duration) -> Machine {
        self.shutdown_delay = delay;
        self
    }

    fn add(&mut self, policy: JobPolicy) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs.insert(id, Job::new(policy, self.backoff));
        id
    }

    /// The job called `name` (not one a reload removed).
    pub fn job_named(&self, name: &str) -> Option<JobId> {
        self.init
            .iter()
            .chain(&self.main)
            .copied()
            .find(|id| self.jobs[id].policy.name == name)
    }

    pub fn name(&self, job: JobId) -> &str {
        self.jobs.get(&job).map_or("?", |j| j.policy.name.as_str())
    }

    /// Every job id, init jobs first, then main jobs in file order, then removed jobs still
    /// stopping.
    fn ids(&self) -> Vec<JobId> {
        let mut ids: Vec<JobId> = self.init.iter().chain(&self.main).copied().collect();
        ids.extend(
            self.jobs
                .iter()
                .filter(|(_, j)| j.retiring)
                .map(|(id, _)| *id),
        );
        ids
    }

    /// Begins: the first init job, or every main job.
    pub fn start(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.phase == Phase::Vault {
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
            } => self.on_start_failed(job, reason, status, now, &mut actions),
            Event::Reaped {
                pid,
                how,
                group_alive,
            } => self.on_reaped(pid, how, group_alive, now, &mut actions),
            Event::GroupGone { job } => self.on_group_gone(job, now, &mut actions),
            Event::ShutdownSignal { signal } => self.on_shutdown_signal(signal, now, &mut actions),
            Event::ForwardSignal { signal } => self.on_forward(signal, &mut actions),
            Event::Fatal { reason, status } => {
                actions.push(Action::Error(reason));
                if !matches!(self.phase, Phase::Stopping { .. } | Phase::Done) {
                    self.begin_stop(status, now, &mut actions);
                }
            }
            Event::RollingRestart => self.on_rolling_restart(now, &mut actions),
            Event::RotationAbandoned { reason } => self.on_rotation_abandoned(reason, &mut actions),
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
            .values()
            .filter_map(|job| job.check.map(|c| c.deadline.unwrap_or(c.next_at)));
        self.jobs
            .values()
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
            .filter_map(|(id, job)| match job.run {
                Run::Draining { pgid, .. } => Some((*id, pgid)),
                _ => None,
            })
            .collect()
    }

    /// The job whose running leader has pid `pid`.
    pub fn job_of_leader(&self, pid: i32) -> Option<JobId> {
        self.jobs.iter().find_map(|(id, job)| {
            matches!(job.run, Run::Running { pid: p, .. } if p == pid && pid > 0).then_some(*id)
        })
    }

    /// The process group of every job that may still have processes.
    pub fn live_groups(&self) -> Vec<i32> {
        self.jobs
            .values()
            .filter_map(|job| match job.run {
                Run::Running { pid, .. } if pid > 0 => Some(pid),
                Run::Draining { pgid, .. } => Some(pgid),
                _ => None,
            })
            .collect()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Init jobs are done and main jobs run (or wait to restart).
    pub fn in_main_phase(&self) -> bool {
        self.phase == Phase::Main
    }

    /// Still waiting for Vault start-up: nothing was started.
    pub fn in_vault_phase(&self) -> bool {
        self.phase == Phase::Vault
    }

    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
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
mod properties;
#[cfg(test)]
mod reload_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_support;
