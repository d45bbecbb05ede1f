//! Control commands on main jobs (`restart`, `stop`, `start`, `signal`): each refusal is
//! decided here, once, before anything is done.

use std::time::Instant;

use super::{Action, JobId, Machine, Phase, Run};

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

/// Why a request was not carried out; nothing was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 2: a usage error (unknown or init job); 1: refused in this state.
    pub code: u8,
    pub reason: String,
}

impl Refusal {
    pub fn usage(reason: String) -> Refusal {
        Refusal { code: 2, reason }
    }

    pub fn refused(reason: impl Into<String>) -> Refusal {
        Refusal {
            code: 1,
            reason: reason.into(),
        }
    }
}

impl Machine {
    /// Carries out a control command on the main jobs called `names`. Refused, with nothing
    /// done: an unknown name or an init job (usage), outside the main phase or during a
    /// shutdown, or (`signal`) when a job is not running.
    pub fn command(
        &mut self,
        command: Command,
        names: &[String],
        now: Instant,
    ) -> Result<Vec<Action>, Refusal> {
        let jobs = self.resolve_main(command, names)?;
        self.refuse_unless_main_phase()?;
        if let Command::Signal(_) = command {
            let idle: Vec<&str> = jobs
                .iter()
                .filter(|job| !matches!(self.jobs[job].run, Run::Running { pid, .. } if pid > 0))
                .map(|&job| self.name(job))
                .collect();
            if !idle.is_empty() {
                return Err(Refusal::refused(format!(
                    "not running: {}",
                    idle.join(", ")
                )));
            }
        }
        let mut actions = Vec::new();
        for job in jobs {
            match command {
                Command::Restart => self.restart_now(job, now, &mut actions),
                Command::Stop => self.hold(job, now, &mut actions),
                Command::Start => self.release(job, &mut actions),
                Command::Signal(signal) => {
                    if let Run::Running { pid, .. } = self.jobs[&job].run {
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

    /// The ids of the main jobs called `names`; an unknown name or an init job is a usage
    /// error.
    fn resolve_main(&self, command: Command, names: &[String]) -> Result<Vec<JobId>, Refusal> {
        let mut jobs = Vec::with_capacity(names.len());
        for name in names {
            let Some(job) = self.job_named(name) else {
                let known: Vec<&str> = self.ids().into_iter().map(|id| self.name(id)).collect();
                return Err(Refusal::usage(format!(
                    "unknown job {name} (jobs: {})",
                    known.join(", ")
                )));
            };
            if !self.jobs[&job].is_main() {
                return Err(Refusal::usage(format!(
                    "{name} is an init job; {} applies to main jobs only",
                    command.name()
                )));
            }
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// Commands on jobs, `reload` and rotations need the main phase without a shutdown.
    pub(super) fn refuse_unless_main_phase(&self) -> Result<(), Refusal> {
        match self.phase {
            Phase::Main if self.delayed_stop.is_none() => Ok(()),
            Phase::Vault => Err(Refusal::refused(
                "the jobs have not started yet (phase vault: logging in to Vault)",
            )),
            Phase::Init { .. } => Err(Refusal::refused(
                "the main jobs have not started yet (init jobs are running)",
            )),
            _ => Err(Refusal::refused("simplevisor is shutting down")),
        }
    }

    /// `restart`: stop gracefully if it runs, and start again at once, backoff reset.
    pub(super) fn restart_now(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
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
                entry.failed = false;
                self.start_or_wait(job, actions);
            }
        }
    }

    /// `stop`: stop gracefully; not started again until `start`.
    fn hold(&mut self, job: JobId, now: Instant, actions: &mut Vec<Action>) {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        entry.held = true;
        entry.restart_now = false;
        match entry.run {
            Run::Waiting { .. } | Run::Idle => entry.run = Run::Idle,
            Run::Running { .. } => self.stop_job(job, now, actions),
            _ => {}
        }
    }

    /// `start`: start a stopped or exited job, backoff reset.
    fn release(&mut self, job: JobId, actions: &mut Vec<Action>) {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return;
        };
        entry.held = false;
        if matches!(
            entry.run,
            Run::Idle | Run::Finished { .. } | Run::Waiting { .. }
        ) {
            entry.backoff.reset();
            self.start_or_wait(job, actions);
        }
    }
}
