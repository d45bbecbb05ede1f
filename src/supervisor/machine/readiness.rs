//! When a job's readiness check runs, when it has taken too long, and what its result means:
//! the job is `starting` until a check passes once.

use std::time::Instant;

use crate::config::duration;
use crate::time::later;

use super::{Action, JobId, Machine, Run};

impl Machine {
    /// Readiness checks that are due, and those in flight for too long.
    pub(super) fn run_checks(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for (&job, entry) in &mut self.jobs {
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

    pub(super) fn on_check_done(
        &mut self,
        job: JobId,
        passed: bool,
        detail: String,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some(entry) = self.jobs.get_mut(&job) else {
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
        self.rolling_job_up(job, now, actions);
    }

    /// The job's readiness check ends (it stops or exited): cancel one in flight.
    pub(super) fn end_check(&mut self, job: JobId, actions: &mut Vec<Action>) {
        if let Some(check) = self.jobs.get_mut(&job).and_then(|j| j.check.take())
            && check.deadline.is_some()
        {
            actions.push(Action::CancelCheck { job });
        }
    }
}
