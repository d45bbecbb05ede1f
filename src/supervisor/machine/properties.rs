//! Property tests: random sequences of reloads, exits, commands, signals, readiness results
//! and time, played against a model of the processes. Whatever happens: no job is started
//! while it still runs, a job a reload removed never comes back, every stop ends in an exit or
//! a `SIGKILL`, and a shutdown always ends.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::tests_support::*;
use super::*;

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

#[derive(Debug, Clone)]
enum Op {
    /// The jobs named by these bits, each changed or not; `after` on the previous one when
    /// the flag says so.
    Reload(Vec<(usize, bool, bool)>),
    /// The `n`-th live process exits (successfully or not).
    Exit(usize, bool),
    Command(u8, usize),
    Forward,
    Shutdown,
    Rotate,
    CheckResult(usize, bool),
    /// The next start fails (program not found).
    FailNextStart,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => prop::collection::vec((0..NAMES.len(), any::<bool>(), any::<bool>()), 0..5)
            .prop_map(Op::Reload),
        4 => (0..8usize, any::<bool>()).prop_map(|(n, ok)| Op::Exit(n, ok)),
        2 => (0..4u8, 0..NAMES.len()).prop_map(|(c, n)| Op::Command(c, n)),
        1 => Just(Op::Forward),
        1 => Just(Op::Shutdown),
        1 => Just(Op::Rotate),
        1 => (0..NAMES.len(), any::<bool>()).prop_map(|(n, ok)| Op::CheckResult(n, ok)),
        1 => Just(Op::FailNextStart),
        3 => (0..20_000u64).prop_map(Op::Wait),
    ]
}

fn job(name: &str, checked: bool, after: Option<&str>) -> JobPolicy {
    let mut p = main_job(name);
    if checked {
        p.check = Some(CheckPolicy {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
        });
    }
    p.after = after.map(|a| vec![a.to_string()]).unwrap_or_default();
    p
}

/// The processes as the world sees them, and what the machine did to them.
#[derive(Default)]
struct World {
    /// Live process groups, by pid: which job, and whether it got SIGKILL.
    live: BTreeMap<i32, (JobId, bool)>,
    forgotten: BTreeSet<JobId>,
    next_pid: i32,
    exit: Option<u8>,
    fail_next_start: bool,
}

impl World {
    /// Carries out actions (starts succeed), checking the invariants on each.
    fn apply(&mut self, h: &mut Harness, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            if let Some(job) = mentioned(&action) {
                assert!(
                    !self.forgotten.contains(&job),
                    "a forgotten job came back: {action:?}"
                );
            }
            match action {
                Action::Start(job) => {
                    assert!(
                        !self.live.values().any(|(j, _)| *j == job),
                        "job {job} started while it still runs"
                    );
                    if std::mem::take(&mut self.fail_next_start) {
                        queue.extend(h.event(Event::StartFailed {
                            job,
                            reason: "not found".into(),
                            status: 127,
                        }));
                        continue;
                    }
                    self.next_pid += 1;
                    let pid = 1000 + self.next_pid;
                    self.live.insert(pid, (job, false));
                    queue.extend(h.event(Event::Started { job, pid }));
                }
                Action::SignalGroup { pgid, signal, .. } if signal == KILL => {
                    if let Some(entry) = self.live.get_mut(&pgid) {
                        entry.1 = true;
                    }
                }
                Action::Forget(job) => {
                    self.forgotten.insert(job);
                }
                Action::Exit(status) => self.exit = Some(status),
                _ => {}
            }
        }
    }

    fn exit(&mut self, h: &mut Harness, pid: i32, ok: bool) {
        self.live.remove(&pid);
        let how = if ok { OK } else { FAIL };
        let actions = h.event(Event::Reaped {
            pid,
            how,
            group_alive: false,
        });
        self.apply(h, actions);
    }
}

fn mentioned(action: &Action) -> Option<JobId> {
    match action {
        Action::Start(job)
        | Action::SignalGroup { job, .. }
        | Action::RunCheck { job }
        | Action::CancelCheck { job } => Some(*job),
        _ => None,
    }
}

fn play(ops: Vec<Op>) {
    let mut h = Harness::new(
        vec![],
        vec![job("a", false, None), job("b", true, Some("a"))],
    );
    let mut world = World::default();
    let actions = h.m.start();
    world.apply(&mut h, actions);
    for op in ops {
        if world.exit.is_some() {
            break;
        }
        match op {
            Op::Reload(list) => {
                let mut seen = BTreeSet::new();
                let mut entries = Vec::new();
                let mut previous: Option<&str> = None;
                for (n, changed, after) in list {
                    if !seen.insert(n) {
                        continue;
                    }
                    let policy = job(NAMES[n], n % 2 == 1, previous.filter(|_| after));
                    entries.push(ReloadEntry { policy, changed });
                    previous = Some(NAMES[n]);
                }
                let settings = ReloadSettings {
                    backoff: BackoffSettings::default(),
                    shutdown_delay: Duration::ZERO,
                };
                if let Ok(reloaded) = h.m.reload(entries, settings, h.now) {
                    world.apply(&mut h, reloaded.actions);
                }
            }
            Op::Exit(n, ok) => {
                if let Some(&pid) = world.live.keys().nth(n) {
                    world.exit(&mut h, pid, ok);
                }
            }
            Op::Command(c, n) => {
                let command = match c {
                    0 => Command::Restart,
                    1 => Command::Stop,
                    2 => Command::Start,
                    _ => Command::Signal(HUP),
                };
                if let Ok(actions) = h.m.command(command, &[NAMES[n].to_string()], h.now) {
                    world.apply(&mut h, actions);
                }
            }
            Op::Forward => {
                let actions = h.event(Event::ForwardSignal { signal: HUP });
                world.apply(&mut h, actions);
            }
            Op::Shutdown => {
                let actions = h.event(Event::ShutdownSignal { signal: TERM });
                world.apply(&mut h, actions);
            }
            Op::Rotate => {
                let actions = h.event(Event::RollingRestart);
                world.apply(&mut h, actions);
            }
            Op::CheckResult(n, passed) => {
                if let Some(job) = h.m.job_named(NAMES[n]) {
                    let actions = h.event(Event::CheckDone {
                        job,
                        passed,
                        detail: "no".into(),
                    });
                    world.apply(&mut h, actions);
                }
            }
            Op::FailNextStart => world.fail_next_start = true,
            Op::Wait(ms) => {
                let actions = h.advance(Duration::from_millis(ms));
                world.apply(&mut h, actions);
            }
        }
    }
    // Whatever state it is in, a shutdown ends: processes ignore their kill-signal, and only
    // SIGKILL (due after stop-timeout) makes them exit.
    let actions = h.event(Event::ShutdownSignal { signal: TERM });
    world.apply(&mut h, actions);
    for _ in 0..20 {
        if world.exit.is_some() {
            break;
        }
        let actions = h.advance(Duration::from_secs(6));
        world.apply(&mut h, actions);
        let killed: Vec<i32> = world
            .live
            .iter()
            .filter(|(_, (_, killed))| *killed)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in killed {
            world.exit(&mut h, pid, false);
        }
    }
    assert!(world.exit.is_some(), "the shutdown never ended");
    assert!(world.live.is_empty(), "processes left: {:?}", world.live);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_histories_keep_the_invariants(ops in prop::collection::vec(op(), 0..60)) {
        play(ops);
    }
}
