//! `reload`: a re-read configuration applied to the main jobs, matched by name. Unchanged jobs
//! are left alone; a changed one is stopped with its old entry and started with its new one;
//! new jobs start; removed ones are stopped and forgotten. Which entries changed is the
//! caller's finding (it holds the whole entries); what that means for each job is decided
//! here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::BackoffSettings;

use super::{Action, JobId, JobPolicy, Machine, Refusal, Run};

/// A main job of the re-read configuration, in file order.
#[derive(Debug, Clone)]
pub struct ReloadEntry {
    pub policy: JobPolicy,
    /// Its entry differs from the running one of the same name (false for new jobs).
    pub changed: bool,
}

/// The top-level settings a reload applies from then on.
#[derive(Debug, Clone, Copy)]
pub struct ReloadSettings {
    pub backoff: BackoffSettings,
    pub shutdown_delay: Duration,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub actions: Vec<Action>,
    /// One line per job acted on, for the `reload` command's answer.
    pub lines: Vec<String>,
    /// The id of each entry, in the order given: the running job's, or a new one.
    pub ids: Vec<JobId>,
}

impl Machine {
    /// Applies a re-read configuration's main jobs and settings. Refused before the main
    /// phase, during a shutdown and during a rotation.
    pub fn reload(
        &mut self,
        entries: Vec<ReloadEntry>,
        settings: ReloadSettings,
        now: Instant,
    ) -> Result<Reloaded, Refusal> {
        self.reload_refusal()?;
        let mut actions = Vec::new();
        let mut lines = Vec::new();
        // Jobs removed by an earlier reload and still stopping count too: one of the same name
        // comes back as a changed job.
        let current: HashMap<String, JobId> = self
            .main
            .iter()
            .copied()
            .chain(
                self.jobs
                    .iter()
                    .filter(|(_, job)| job.retiring)
                    .map(|(id, _)| *id),
            )
            .map(|id| (self.jobs[&id].policy.name.clone(), id))
            .collect();
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.policy.name.clone();
            let line = match current.get(&name) {
                None => {
                    ids.push(self.add(entry.policy));
                    "added; starts when its after jobs are up".to_string()
                }
                Some(&id) => {
                    ids.push(id);
                    let retiring = self
                        .jobs
                        .get_mut(&id)
                        .is_some_and(|job| std::mem::take(&mut job.retiring));
                    if entry.changed || retiring {
                        self.change(id, entry.policy, now, &mut actions)
                    } else {
                        // Only inherited settings (the top-level stop-timeout) may differ.
                        if let Some(job) = self.jobs.get_mut(&id) {
                            job.policy = entry.policy;
                        }
                        continue;
                    }
                }
            };
            lines.push(format!("{name}: {line}"));
        }
        let kept: std::collections::HashSet<JobId> = ids.iter().copied().collect();
        for id in self.main.clone() {
            if !kept.contains(&id) {
                let name = self.name(id).to_string();
                let line = self.remove(id, now, &mut actions);
                lines.push(format!("{name}: {line}"));
            }
        }
        self.main = ids.clone();
        self.backoff = settings.backoff;
        self.shutdown_delay = settings.shutdown_delay;
        for job in self.jobs.values_mut() {
            job.backoff.set_settings(settings.backoff);
        }
        self.relink();
        self.start_waiting(&mut actions);
        actions.extend(
            lines
                .iter()
                .map(|line| Action::Info(format!("reload: {line}"))),
        );
        if lines.is_empty() {
            actions.push(Action::Info("reload: no job changed".into()));
        }
        self.exit_if_settled(&mut actions);
        self.check_timers(now, &mut actions);
        Ok(Reloaded {
            actions,
            lines,
            ids,
        })
    }

    /// Why a reload would be refused now: before the main phase, during a shutdown or a
    /// rotation.
    pub fn reload_refusal(&self) -> Result<(), Refusal> {
        self.refuse_unless_main_phase()?;
        if self.rotating() {
            return Err(Refusal::refused(
                "a rotation is under way; reload once it is done",
            ));
        }
        Ok(())
    }

    /// A changed job: stopped with its old entry if it runs, then started with the new one;
    /// otherwise it keeps its state (a job in backoff starts at once).
    fn change(
        &mut self,
        id: JobId,
        policy: JobPolicy,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> String {
        let Some(job) = self.jobs.get(&id) else {
            return "changed".into();
        };
        let held = job.held;
        let line = match job.run {
            Run::Running { stop: None, .. } => {
                // The old kill-signal and stop-timeout: the running process is the old entry's.
                self.stop_job(id, now, actions);
                "changed; stopping it, then starting the new entry"
            }
            Run::Starting | Run::Running { .. } | Run::Draining { .. } if held => {
                "changed; stopping (by a stop command), stays stopped"
            }
            Run::Starting | Run::Running { .. } | Run::Draining { .. } => {
                "changed; starts with the new entry once stopped"
            }
            Run::Waiting { .. } => "changed; was in backoff, starting now",
            Run::Idle | Run::Finished { .. } if held => "changed; stays stopped",
            Run::Idle => "changed; still waiting for its after jobs",
            Run::Finished { .. } => "changed; stays exited until started",
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return line.into();
        };
        job.policy = policy;
        job.backoff.reset();
        job.failed = false;
        match job.run {
            Run::Waiting { .. } => self.start_or_wait(id, actions),
            Run::Starting | Run::Running { .. } | Run::Draining { .. } if !held => {
                job.restart_now = true;
            }
            _ => {}
        }
        line.into()
    }

    /// A removed job: stopped and forgotten once gone, or forgotten at once.
    fn remove(&mut self, id: JobId, now: Instant, actions: &mut Vec<Action>) -> &'static str {
        let Some(job) = self.jobs.get_mut(&id) else {
            return "removed";
        };
        if job.is_active() {
            job.retiring = true;
            job.restart_now = false;
            self.stop_job(id, now, actions);
            "removed; stopping it"
        } else {
            self.jobs.remove(&id);
            actions.push(Action::Forget(id));
            "removed"
        }
    }
}
