//! Rolling restarts: after the jobs' environment was renewed (a rotation), each running main
//! job in turn is restarted with it, or sent its `reload-signal`; the next one's turn comes
//! once the restarted job is up (running and ready) or has exited again, so that two jobs are
//! never down at once because of a rotation.

use std::time::Instant;

use super::{Action, JobId, Machine, Phase, Refusal, Run};

/// What a rotation did so far, for the record at its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    restarted: u32,
    signalled: u32,
}

impl Machine {
    /// A rotation is under way: its secrets are being fetched, or its jobs are not all
    /// restarted yet.
    pub fn rotating(&self) -> bool {
        self.rotation.is_some() || self.rolling_turn.is_some() || !self.rolling_queue.is_empty()
    }

    /// `simplevisor rotate`: refused before the main phase, during a shutdown or another
    /// rotation; else the rotation has begun (its secrets are fetched elsewhere).
    pub fn begin_rotation(&mut self) -> Result<(), Refusal> {
        self.refuse_unless_main_phase()?;
        if self.rotating() {
            return Err(Refusal::refused("a rotation is already under way"));
        }
        self.rotation = Some(Rotation::default());
        Ok(())
    }

    pub(super) fn on_rotation_abandoned(&mut self, reason: String, actions: &mut Vec<Action>) {
        self.rotation = None;
        actions.push(Action::Error(reason));
    }

    pub(super) fn on_rolling_restart(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.phase != Phase::Main {
            self.rotation = None;
            return;
        }
        self.rolling_queue = self.main.iter().copied().collect();
        self.rotation = Some(Rotation::default());
        actions.push(Action::Info(
            "rotation: new environment and files; restarting main jobs one by one (or sending their reload-signal)".into(),
        ));
        if self.rolling_turn.is_none() {
            self.continue_rolling(now, actions);
        }
    }

    /// Gives the next running job its turn; the rest follow once it is up again.
    pub(super) fn continue_rolling(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.rolling_turn = None;
        if self.phase != Phase::Main {
            self.rolling_queue.clear();
            return;
        }
        while let Some(job) = self.rolling_queue.pop_front() {
            let Some(entry) = self.jobs.get_mut(&job) else {
                continue; // removed by a reload meanwhile
            };
            // Waiting, stopped or finished jobs pick up the new environment when they next
            // start.
            let Run::Running {
                pid, stop: None, ..
            } = entry.run
            else {
                continue;
            };
            if let Some(signal) = entry.policy.reload_signal {
                actions.push(Action::SignalGroup {
                    job,
                    pgid: pid,
                    signal,
                });
                if let Some(rotation) = &mut self.rotation {
                    rotation.signalled += 1;
                }
                continue;
            }
            if let Some(rotation) = &mut self.rotation {
                rotation.restarted += 1;
            }
            entry.in_rolling_restart = true;
            self.rolling_turn = Some(job);
            self.stop_job(job, now, actions);
            return;
        }
        let done = self.rotation.take().unwrap_or_default();
        self.counters.rotations += 1;
        actions.push(Action::Info(format!(
            "rotation done: {} job(s) restarted, {} sent their reload-signal",
            done.restarted, done.signalled
        )));
        actions.push(Action::RollingRestartDone);
    }

    /// `job` is up: if it was its turn, the next job's turn comes.
    pub(super) fn rolling_job_up(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        if self.rolling_turn == Some(job) {
            self.continue_rolling(now, actions);
        }
    }

    /// `job` is gone again (exited, failed to start, removed) after its rolling restart:
    /// its own policy takes over, and the next job's turn comes.
    pub(super) fn rolling_job_down(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        let restarting = self.jobs.get(&job).is_some_and(|j| j.in_rolling_restart);
        if self.rolling_turn == Some(job) && !restarting {
            self.continue_rolling(now, actions);
        }
    }

    /// A shutdown ends any rotation in progress.
    pub(super) fn end_rolling(&mut self) {
        self.rotation = None;
        self.rolling_queue.clear();
        self.rolling_turn = None;
        for job in self.jobs.values_mut() {
            job.in_rolling_restart = false;
        }
    }
}
