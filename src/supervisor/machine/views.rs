//! What `status` and `health` show: the machine's state as a [`Snapshot`], and why it is not
//! ready.

use std::time::Instant;

use crate::config::JobKind;
use crate::signals;

use super::super::status::{JobState, JobStatus, LastExit, Snapshot};
use super::{Job, JobId, Machine, Phase, Run, Termination};

impl Machine {
    /// What `status` shows (without Vault and files, which the caller adds).
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        Snapshot {
            phase: self.phase_name(),
            not_ready: self.not_ready(),
            jobs: self
                .ids()
                .into_iter()
                .map(|id| job_status(id, &self.jobs[&id], now))
                .collect(),
            vault: Vec::new(),
            files: Vec::new(),
        }
    }

    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Vault => "vault",
            Phase::Init { .. } => "init",
            Phase::Main if self.delayed_stop.is_some() => "shutdown-delay",
            Phase::Main => "main",
            Phase::Stopping { .. } => "stopping",
            Phase::Done => "done",
        }
    }

    /// Why `health` fails, or `None` when ready: main phase, no shutdown begun, and every
    /// main job that is neither stopped by a command nor done under its restart policy is
    /// up (its readiness check passed).
    pub fn not_ready(&self) -> Option<String> {
        match self.phase {
            Phase::Vault => return Some("phase vault".into()),
            Phase::Init { .. } => return Some("init jobs are running".into()),
            Phase::Stopping { .. } | Phase::Done => return Some("shutting down".into()),
            Phase::Main if self.delayed_stop.is_some() => {
                return Some("shutting down (shutdown-delay)".into());
            }
            Phase::Main => {}
        }
        let not_running: Vec<&str> = self
            .main
            .iter()
            .map(|id| &self.jobs[id])
            .filter(|job| {
                let fine = job.held
                    || matches!(job.run, Run::Finished { .. } if !job.failed)
                    || job.is_up();
                !fine
            })
            .map(|job| job.policy.name.as_str())
            .collect();
        if not_running.is_empty() {
            None
        } else {
            Some(format!("not running yet: {}", not_running.join(", ")))
        }
    }
}

fn job_status(id: JobId, job: &Job, now: Instant) -> JobStatus {
    let main = job.policy.kind == JobKind::Main;
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
        Run::Running { pid, since, .. } => (Some(pid), Some(now.saturating_duration_since(since))),
        Run::Draining { pgid, since, .. } => {
            (Some(pgid), Some(now.saturating_duration_since(since)))
        }
        _ => (None, None),
    };
    JobStatus {
        id,
        name: job.policy.name.clone(),
        kind: if main { "main" } else { "init" },
        state,
        pid,
        uptime,
        restarts: job.starts.saturating_sub(1),
        last_exit: job.last_exit.as_ref().map(|last| match last.how {
            Termination::Exited(code) => LastExit::Code(code),
            Termination::Signaled(signal) => LastExit::Signal(signals::name_of(signal)),
        }),
        start_error: job
            .last_exit
            .as_ref()
            .and_then(|last| last.start_error.clone()),
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
