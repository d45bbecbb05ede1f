//! What the machine's tests share: policies, a harness with a fake clock and fake pids, and
//! filters over actions.
#![allow(dead_code)]

pub use super::*;
pub use crate::config::JobKind;
pub use crate::supervisor::status::JobState;

pub const TERM: i32 = libc::SIGTERM;
pub const INT: i32 = libc::SIGINT;
pub const KILL: i32 = libc::SIGKILL;
pub const HUP: i32 = libc::SIGHUP;

pub fn policy(name: &str) -> JobPolicy {
    JobPolicy {
        name: name.into(),
        kind: JobKind::Main,
        kill_signal: TERM,
        stop_timeout: Duration::from_secs(5),
        restart: RestartPolicy::Always,
        essential: false,
        check: None,
        after: Vec::new(),
        max_restarts: None,
        reload_signal: None,
    }
}

pub fn init(name: &str) -> JobPolicy {
    let mut p = policy(name);
    p.kind = JobKind::Init;
    p.restart = RestartPolicy::Never;
    p
}

pub fn main_job(name: &str) -> JobPolicy {
    policy(name)
}

/// A machine with a fake clock and a fake pid allocator.
pub struct Harness {
    pub m: Machine,
    pub now: Instant,
    pub next_pid: i32,
}

impl Harness {
    pub fn new(init: Vec<JobPolicy>, main: Vec<JobPolicy>) -> Harness {
        let now = Instant::now();
        Harness {
            m: Machine::new(init, main, BackoffSettings::default()),
            now,
            next_pid: 100,
        }
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        self.m.handle(Event::Tick, self.now)
    }

    /// A control command on jobs given by id.
    pub fn command(&mut self, command: Command, jobs: &[JobId]) -> Result<Vec<Action>, Refusal> {
        let names: Vec<String> = jobs.iter().map(|&j| self.m.name(j).to_string()).collect();
        self.m.command(command, &names, self.now)
    }

    pub fn event(&mut self, e: Event) -> Vec<Action> {
        self.m.handle(e, self.now)
    }

    /// Carries out every `Start` as a successful spawn, returning the other actions and the
    /// pids given out.
    pub fn run(&mut self, actions: Vec<Action>) -> (Vec<Action>, Vec<(JobId, i32)>) {
        let mut rest = Vec::new();
        let mut started = Vec::new();
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(a) = queue.pop_front() {
            if let Action::Start(job) = a {
                let pid = self.next_pid;
                self.next_pid += 1;
                started.push((job, pid));
                queue.extend(self.event(Event::Started { job, pid }));
            } else {
                rest.push(a);
            }
        }
        (rest, started)
    }

    pub fn start(&mut self) -> (Vec<Action>, Vec<(JobId, i32)>) {
        let a = self.m.start();
        self.run(a)
    }

    pub fn exit(&mut self, pid: i32, how: Termination) -> (Vec<Action>, Vec<(JobId, i32)>) {
        let a = self.event(Event::Reaped {
            pid,
            how,
            group_alive: false,
        });
        self.run(a)
    }
}

pub fn exits(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Exit(s) => Some(*s),
            _ => None,
        })
        .collect()
}

pub fn signals(actions: &[Action]) -> Vec<(i32, i32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalGroup { pgid, signal, .. } => Some((*pgid, *signal)),
            _ => None,
        })
        .collect()
}

pub fn infos(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Info(s) | Action::Error(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

pub const OK: Termination = Termination::Exited(0);
pub const FAIL: Termination = Termination::Exited(3);
