//! Stopping: shutdown signals and `shutdown-delay`, stopping jobs in the reverse of their
//! start order, the `SIGKILL` escalation after `stop-timeout`, and signals forwarded to the
//! jobs.

use std::time::Instant;

use crate::config::duration;
use crate::signals;
use crate::time::later;

use super::{Action, Job, JobId, Machine, Phase, Run, Stop};

impl Machine {
    pub(super) fn on_shutdown_signal(
        &mut self,
        signal: i32,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let name = signals::name_of(signal);
        match self.phase {
            Phase::Done => {}
            Phase::Vault => {
                actions.push(Action::Info(format!(
                    "received {name} while logging in to Vault; exiting, nothing was started"
                )));
                self.finish(0, actions);
            }
            Phase::Stopping { .. } => {
                actions.push(Action::Info(format!(
                    "received {name} again; killing every job now"
                )));
                for job in self.ids() {
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

    pub(super) fn on_forward(&mut self, signal: i32, actions: &mut Vec<Action>) {
        let mut names = Vec::new();
        for job in self.ids() {
            let entry = &self.jobs[&job];
            if let Run::Running { pid, .. } = entry.run {
                actions.push(Action::SignalGroup {
                    job,
                    pgid: pid,
                    signal,
                });
                names.push(entry.policy.name.as_str());
            }
        }
        if !names.is_empty() {
            self.counters.signals_forwarded += 1;
        }
        let name = signals::name_of(signal);
        actions.push(Action::Info(if names.is_empty() {
            format!("received {name}; no job running to forward it to")
        } else {
            format!("received {name}; forwarded to {}", names.join(", "))
        }));
    }

    pub(super) fn begin_stop(&mut self, status: u8, now: Instant, actions: &mut Vec<Action>) {
        self.phase = Phase::Stopping { status };
        self.delayed_stop = None;
        self.end_rolling();
        for job in self.jobs.values_mut() {
            if let Run::Waiting { .. } = job.run {
                job.run = Run::Idle;
            }
        }
        if self.jobs.values().any(Job::is_active) {
            actions.push(Action::Info("stopping all jobs".into()));
            self.stop_released(now, actions);
        } else {
            self.finish(status, actions);
        }
    }

    /// During a shutdown: sends `kill-signal` to every running job that no active job waits
    /// for (`after`), so jobs stop in the reverse of their start order.
    pub(super) fn stop_released(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for job in self.ids() {
            if !matches!(self.jobs[&job].run, Run::Running { stop: None, .. }) {
                continue;
            }
            let waited_for = self.dependents.get(&job).is_some_and(|others| {
                others
                    .iter()
                    .any(|other| self.jobs.get(other).is_some_and(Job::is_active))
            });
            if !waited_for {
                self.stop_job(job, now, actions);
            }
        }
    }

    /// Sends the job's `kill-signal` to its group and arms the `SIGKILL` deadline.
    pub(super) fn stop_job(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        self.end_check(job, actions);
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        if let Run::Running {
            pid, ref mut stop, ..
        } = entry.run
            && stop.is_none()
            && pid > 0
        {
            *stop = Some(Stop {
                kill_at: later(now, entry.policy.stop_timeout),
                timeout: entry.policy.stop_timeout,
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
    pub(super) fn kill_job(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        // Not signalled yet (waiting for the jobs that depend on it): killed all the same.
        if let Run::Running {
            stop: ref mut stop @ None,
            ..
        } = entry.run
        {
            *stop = Some(Stop {
                kill_at: now,
                timeout: entry.policy.stop_timeout,
                killed: false,
            });
        }
        let (pgid, stop) = match &mut entry.run {
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

    /// Everything due by `now`: the orphan summary, the end of `shutdown-delay`, readiness
    /// checks, restarts after backoff and `SIGKILL` after `stop-timeout`.
    pub(super) fn check_timers(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.extend(self.orphans.tick(now).map(Action::Info));
        if self.delayed_stop.is_some_and(|at| at <= now) && self.phase == Phase::Main {
            actions.push(Action::Info(
                "shutdown-delay over; stopping all jobs".into(),
            ));
            self.begin_stop(0, now, actions);
        }
        self.run_checks(now, actions);
        let due: Vec<(JobId, Run)> = self
            .jobs
            .iter()
            .filter(|(_, job)| match job.run {
                Run::Waiting { until } => until <= now,
                Run::Running {
                    stop: Some(stop), ..
                }
                | Run::Draining { stop, .. } => !stop.killed && stop.kill_at <= now,
                _ => false,
            })
            .map(|(id, job)| (*id, job.run.clone()))
            .collect();
        for (job, run) in due {
            match run {
                Run::Waiting { .. } if self.phase == Phase::Main => {
                    self.start_or_wait(job, actions);
                }
                Run::Running {
                    stop: Some(stop), ..
                }
                | Run::Draining { stop, .. } => {
                    actions.push(Action::Error(format!(
                        "job {} did not stop within {}; sending KILL to its process group",
                        self.name(job),
                        duration::format(stop.timeout)
                    )));
                    self.kill_job(job, now, actions);
                }
                _ => {}
            }
        }
    }
}
