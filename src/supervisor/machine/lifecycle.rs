//! A job's runs: started, failed to start, exited (with what is left of its process group),
//! and what comes next under its restart policy, backoff, `max-restarts` and `essential`.

use std::time::{Duration, Instant};

use crate::config::{RestartPolicy, duration};
use crate::signals;
use crate::time::later;

use super::{Action, CheckRun, JobId, Machine, Phase, Run, RunEnd, Stop, Termination};

impl Machine {
    pub(super) fn start_job(&mut self, job: JobId, actions: &mut Vec<Action>) {
        if let Some(entry) = self.jobs.get_mut(&job) {
            entry.run = Run::Starting;
            actions.push(Action::Start(job));
        }
    }

    pub(super) fn on_started(
        &mut self,
        job: JobId,
        pid: i32,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        let ready = entry.policy.check.is_none();
        entry.run = Run::Running {
            pid,
            since: now,
            stop: None,
            ready,
        };
        entry.starts = entry.starts.saturating_add(1);
        entry.last_check_error = None;
        entry.in_rolling_restart = false;
        if !ready {
            entry.check = Some(CheckRun {
                next_at: now,
                deadline: None,
            });
        }
        actions.push(Action::Info(format!(
            "job {} started (pid {pid})",
            entry.policy.name
        )));
        if ready {
            self.start_waiting(actions);
        }
        let entry = &self.jobs[&job];
        // Stopped by a command, removed by a reload or caught by a shutdown while it was
        // being started: stop it like the others.
        if entry.held || entry.retiring || matches!(self.phase, Phase::Stopping { .. }) {
            self.stop_job(job, now, actions);
        }
        if ready {
            self.rolling_job_up(job, now, actions);
        }
    }

    pub(super) fn on_start_failed(
        &mut self,
        job: JobId,
        reason: String,
        status: i32,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        actions.push(Action::Error(format!(
            "job {} could not be started: {reason}",
            entry.policy.name
        )));
        let how = Termination::Exited(status);
        entry.last_exit = Some(RunEnd {
            how,
            start_error: Some(reason),
        });
        // A failed start ends a rolling restart's turn for this job; its own restart policy
        // takes over.
        entry.in_rolling_restart = false;
        self.on_done(job, how, Duration::ZERO, now, actions);
    }

    pub(super) fn on_reaped(
        &mut self,
        pid: i32,
        how: Termination,
        group_alive: bool,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some(job) = self.job_of_leader(pid) else {
            self.counters.orphans_reaped += 1;
            actions.extend(self.orphans.reaped(pid, how, now).map(Action::Info));
            return;
        };
        self.end_check(job, actions);
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        let Run::Running { since, stop, .. } = entry.run else {
            return;
        };
        entry.last_exit = Some(RunEnd {
            how,
            start_error: None,
        });
        let message = format!("job {} {}", entry.policy.name, how.describe());
        actions.push(if !how.success() && stop.is_none() {
            Action::Error(message)
        } else {
            Action::Info(message)
        });
        if !group_alive {
            let ran = now.saturating_duration_since(since);
            self.on_done(job, how, ran, now, actions);
            return;
        }
        // What is left of the group gets kill-signal, then SIGKILL after stop-timeout.
        let stop = match stop {
            Some(stop) => stop,
            None => {
                let policy = &entry.policy;
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
                    timeout: policy.stop_timeout,
                    killed: false,
                }
            }
        };
        entry.run = Run::Draining {
            pgid: pid,
            since,
            how,
            stop,
        };
    }

    pub(super) fn on_group_gone(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        if let Some(Run::Draining { since, how, .. }) = self.jobs.get(&job).map(|j| &j.run) {
            let (ran, how) = (now.saturating_duration_since(*since), *how);
            self.on_done(job, how, ran, now, actions);
        }
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
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        entry.run = Run::Finished { how };
        if entry.retiring {
            actions.push(Action::Info(format!(
                "job {} (removed by a reload) is gone",
                entry.policy.name
            )));
            self.jobs.remove(&job);
            self.relink();
            actions.push(Action::Forget(job));
        }
        match self.phase.clone() {
            Phase::Vault | Phase::Done => {}
            Phase::Stopping { status } => {
                if self.jobs.values().any(super::Job::is_active) {
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
                    let next = self
                        .init
                        .iter()
                        .position(|&id| id == job)
                        .map_or(0, |i| i + 1);
                    self.start_init_or_main(next, actions);
                } else {
                    actions.push(Action::Error(format!(
                        "init job {} failed; stopping",
                        self.name(job)
                    )));
                    self.begin_stop(1, now, actions);
                }
            }
            Phase::Main if !self.jobs.contains_key(&job) => {
                // A removed job: jobs may have been waiting for nothing but it.
                self.start_waiting(actions);
                self.rolling_job_down(job, now, actions);
                self.exit_if_settled(actions);
            }
            Phase::Main => {
                self.on_main_done(job, how, ran, now, actions);
                self.rolling_job_down(job, now, actions);
            }
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
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
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
        if !restart {
            self.exit_if_settled(actions);
            return;
        }
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
    }

    /// Exits when no main job runs, waits to restart, or is held by a `stop` command: then
    /// nothing can change any more (a job waiting for `after` waits for jobs that are done).
    pub(super) fn exit_if_settled(&mut self, actions: &mut Vec<Action>) {
        if self.phase != Phase::Main {
            return;
        }
        let main: Vec<&super::Job> = self.jobs.values().filter(|j| j.is_main()).collect();
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
}
