//! Start order: init jobs one after another, then the main jobs, each once every job it lists
//! in `after` is up. `after` names are resolved to ids here, again whenever the set of jobs
//! changes.

use super::{Action, JobId, Machine, Phase, Run};

impl Machine {
    /// Resolves every job's `after` names to ids and rebuilds the reverse links. Names that
    /// match no main job are dropped (validation rejects them; a removed job no longer holds
    /// anyone back).
    pub(super) fn relink(&mut self) {
        let by_name: std::collections::HashMap<&str, JobId> = self
            .main
            .iter()
            .map(|&id| (self.jobs[&id].policy.name.as_str(), id))
            .collect();
        self.prerequisites.clear();
        self.dependents.clear();
        for (&id, job) in &self.jobs {
            let firsts: Vec<JobId> = job
                .policy
                .after
                .iter()
                .filter_map(|name| by_name.get(name.as_str()).copied())
                .collect();
            for &first in &firsts {
                self.dependents.entry(first).or_default().push(id);
            }
            if !firsts.is_empty() {
                self.prerequisites.insert(id, firsts);
            }
        }
    }

    /// Runs init job number `index` (in file order), or begins the main phase after the last.
    pub(super) fn start_init_or_main(&mut self, index: usize, actions: &mut Vec<Action>) {
        if let Some(&current) = self.init.get(index) {
            self.phase = Phase::Init { current };
            self.start_job(current, actions);
            return;
        }
        self.phase = Phase::Main;
        if self.main.is_empty() {
            actions.push(Action::Info(
                "no main jobs configured; init jobs done, exiting".into(),
            ));
            self.finish(0, actions);
            return;
        }
        self.start_waiting(actions);
    }

    /// Whether every job `job` lists in `after` is up.
    pub(super) fn after_satisfied(&self, job: JobId) -> bool {
        self.prerequisites.get(&job).is_none_or(|firsts| {
            firsts
                .iter()
                .all(|first| self.jobs.get(first).is_some_and(super::Job::is_up))
        })
    }

    /// Starts every main job that is waiting (for `after`) and may start now.
    pub(super) fn start_waiting(&mut self, actions: &mut Vec<Action>) {
        if self.phase != Phase::Main {
            return;
        }
        for job in self.main.clone() {
            let entry = &self.jobs[&job];
            if entry.run == Run::Idle && !entry.held && !entry.failed && self.after_satisfied(job) {
                self.start_job(job, actions);
            }
        }
    }

    /// Starts `job` now if its `after` jobs are up, else leaves it waiting for them.
    pub(super) fn start_or_wait(&mut self, job: JobId, actions: &mut Vec<Action>) {
        if self.after_satisfied(job) {
            self.start_job(job, actions);
        } else if let Some(entry) = self.jobs.get_mut(&job) {
            entry.run = Run::Idle;
        }
    }
}
