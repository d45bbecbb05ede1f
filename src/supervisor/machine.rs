//! The supervisor's decisions, as a state machine without processes or clocks of its own.
//!
//! The event loop feeds it [`Event`]s with the current time and carries out the [`Action`]s it
//! returns. Everything docs/behaviour.md says about jobs, signals and exit statuses is decided here: the init sequence, restart policies
//! and backoff, essential jobs, leftover process groups, shutdown escalation, rolling restarts
//! after a Vault refresh, and the exit status.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{BackoffSettings, JobSpec, RestartPolicy, duration};
use crate::signals;
use crate::time::later;

use super::backoff::Backoff;
use super::orphans::OrphanLog;

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
}

impl JobPolicy {
    pub fn from_spec(spec: &JobSpec) -> JobPolicy {
        JobPolicy {
            name: spec.name.clone(),
            kill_signal: spec.kill_signal as i32,
            stop_timeout: spec.stop_timeout,
            restart: spec.restart,
            essential: spec.essential,
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

#[derive(Debug)]
struct Job {
    policy: JobPolicy,
    run: Run,
    backoff: Backoff,
    /// Stopped by a rolling restart: start again at once, whatever its policy says.
    rolling: bool,
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
    rolling: VecDeque<JobId>,
    orphans: OrphanLog,
}

impl Machine {
    /// `init` and `main` policies in file order.
    pub fn new(init: Vec<JobPolicy>, main: Vec<JobPolicy>, backoff: BackoffSettings) -> Machine {
        let init_count = init.len();
        let jobs = init
            .into_iter()
            .chain(main)
            .map(|policy| Job {
                policy,
                run: Run::Idle,
                backoff: Backoff::new(backoff),
                rolling: false,
            })
            .collect();
        Machine {
            jobs,
            init_count,
            phase: Phase::Created,
            rolling: VecDeque::new(),
            orphans: OrphanLog::default(),
        }
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
                let was_rolling = std::mem::take(&mut self.jobs[job].rolling);
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
            Event::Tick => {}
        }
        self.check_timers(now, &mut actions);
        actions
    }

    /// The earliest time at which [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
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
            .chain(self.orphans.due())
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
        for job in self.init_count..self.jobs.len() {
            self.start_job(job, actions);
        }
    }

    fn start_job(&mut self, job: JobId, actions: &mut Vec<Action>) {
        self.jobs[job].run = Run::Starting;
        actions.push(Action::Start(job));
    }

    fn on_started(&mut self, job: JobId, pid: i32, now: Instant, actions: &mut Vec<Action>) {
        self.jobs[job].run = Run::Running {
            pid,
            since: now,
            stop: None,
        };
        actions.push(Action::Info(format!(
            "job {} started (pid {pid})",
            self.name(job)
        )));
        if self.jobs[job].rolling {
            self.jobs[job].rolling = false;
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
        let found = self
            .jobs
            .iter()
            .position(|job| matches!(job.run, Run::Running { pid: p, .. } if p == pid && pid > 0));
        let Some(job) = found else {
            actions.extend(self.orphans.reaped(pid, how, now).map(Action::Info));
            return;
        };
        let Run::Running { since, stop, .. } = self.jobs[job].run else {
            return;
        };
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
                if !self.jobs.iter().any(Job::is_active) {
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
        if entry.rolling {
            self.start_job(job, actions);
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
        let waiting_or_active = self.jobs[self.init_count..]
            .iter()
            .any(|job| !matches!(job.run, Run::Finished { .. }));
        if waiting_or_active {
            return;
        }
        let all_succeeded = self.jobs[self.init_count..]
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
                    self.kill_job(job, actions);
                }
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
        self.rolling = (self.init_count..self.jobs.len()).collect();
        actions.push(Action::Info(
            "environment renewed; restarting main jobs one by one".into(),
        ));
        // Only one job is in a rolling restart at a time.
        if !self.jobs.iter().any(|job| job.rolling) {
            self.continue_rolling(now, actions);
        }
    }

    /// Stops the next running job of the rolling restart; the rest follow once it runs again.
    fn continue_rolling(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Main {
            self.rolling.clear();
            return;
        }
        while let Some(job) = self.rolling.pop_front() {
            if matches!(self.jobs[job].run, Run::Running { stop: None, .. }) {
                self.jobs[job].rolling = true;
                self.stop_job(job, now, actions);
                return;
            }
            // Waiting or finished jobs pick up the new environment when they next start.
        }
        actions.push(Action::RollingRestartDone);
    }

    fn begin_stop(&mut self, status: u8, now: Instant, actions: &mut Vec<Action>) {
        self.phase = Phase::Stopping { status };
        self.rolling.clear();
        for job in 0..self.jobs.len() {
            match self.jobs[job].run {
                Run::Waiting { .. } => self.jobs[job].run = Run::Idle,
                Run::Running { .. } => self.stop_job(job, now, actions),
                _ => {}
            }
        }
        if self.jobs.iter().any(Job::is_active) {
            actions.push(Action::Info("stopping all jobs".into()));
        } else {
            self.finish(status, actions);
        }
    }

    /// Sends the job's `kill-signal` to its group and arms the `SIGKILL` deadline.
    fn stop_job(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
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
    fn kill_job(&mut self, job: JobId, actions: &mut Vec<Action>) {
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
        for job in 0..self.jobs.len() {
            match self.jobs[job].run {
                Run::Waiting { until } if until <= now && self.phase == Phase::Main => {
                    self.start_job(job, actions);
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
                    self.kill_job(job, actions);
                }
                _ => {}
            }
        }
    }

    fn finish(&mut self, status: u8, actions: &mut Vec<Action>) {
        actions.extend(self.orphans.flush().map(Action::Info));
        self.phase = Phase::Done;
        actions.push(Action::Exit(status));
    }
}

#[cfg(test)]
mod tests;
