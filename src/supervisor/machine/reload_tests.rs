//! `reload` applied to the machine, driven by hand with a fake clock.

use super::tests_support::*;
use super::*;

fn settings() -> ReloadSettings {
    ReloadSettings {
        backoff: BackoffSettings::default(),
        shutdown_delay: Duration::ZERO,
    }
}

fn entry(policy: JobPolicy, changed: bool) -> ReloadEntry {
    ReloadEntry { policy, changed }
}

impl Harness {
    fn reload(&mut self, entries: Vec<ReloadEntry>) -> Result<Reloaded, Refusal> {
        self.m.reload(entries, settings(), self.now)
    }
}

fn forgotten(actions: &[Action]) -> Vec<JobId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Forget(job) => Some(*job),
            _ => None,
        })
        .collect()
}

#[test]
fn unchanged_jobs_are_left_alone_changed_ones_restart_new_ones_start_removed_ones_go() {
    let mut h = Harness::new(
        vec![],
        vec![main_job("keep"), main_job("change"), main_job("drop")],
    );
    h.start(); // 100, 101, 102
    let mut changed = main_job("change");
    changed.kill_signal = INT;
    let reloaded = h
        .reload(vec![
            entry(main_job("keep"), false),
            entry(changed, true),
            entry(main_job("new"), false),
        ])
        .unwrap();
    assert_eq!(
        reloaded.ids,
        [0, 1, 3],
        "ids are kept, the new job gets a new one"
    );
    assert_eq!(
        reloaded.lines,
        [
            "change: changed; stopping it, then starting the new entry",
            "new: added; starts when its after jobs are up",
            "drop: removed; stopping it",
        ]
    );
    let (actions, started) = h.run(reloaded.actions);
    assert_eq!(
        signals(&actions),
        [(101, TERM), (102, TERM)],
        "the old kill-signal for the changed job; nothing for the unchanged one"
    );
    assert_eq!(started, [(3, 103)]);

    // The changed job starts again with its new entry once gone; its restart counts.
    let (_, started) = h.exit(101, Termination::Signaled(TERM));
    assert_eq!(started, [(1, 104)]);
    // The removed job is forgotten once gone, and not restarted.
    let (actions, started) = h.exit(102, Termination::Signaled(TERM));
    assert!(started.is_empty());
    assert_eq!(forgotten(&actions), [2]);
    let s = h.m.snapshot(h.now);
    let view: Vec<(&str, u32, Option<i32>)> = s
        .jobs
        .iter()
        .map(|j| (j.name.as_str(), j.restarts, j.pid))
        .collect();
    assert_eq!(
        view,
        [
            ("keep", 0, Some(100)),
            ("change", 1, Some(104)),
            ("new", 0, Some(103)),
        ]
    );
    // The changed job now stops with its new kill-signal.
    let actions = h.event(Event::ShutdownSignal { signal: TERM });
    assert!(signals(&actions).contains(&(104, INT)), "{actions:?}");
}

#[test]
fn a_changed_job_that_is_not_running_keeps_its_state_except_backoff() {
    let mut never = main_job("exited");
    never.restart = RestartPolicy::Never;
    let mut h = Harness::new(
        vec![],
        vec![main_job("held"), never.clone(), main_job("backoff")],
    );
    h.start(); // 100, 101, 102
    h.command(Command::Stop, &[0]).unwrap();
    h.exit(100, Termination::Signaled(TERM));
    h.exit(101, OK);
    h.exit(102, FAIL);
    let reloaded = h
        .reload(vec![
            entry(main_job("held"), true),
            entry(never, true),
            entry(main_job("backoff"), true),
        ])
        .unwrap();
    assert_eq!(
        reloaded.lines,
        [
            "held: changed; stays stopped",
            "exited: changed; stays exited until started",
            "backoff: changed; was in backoff, starting now",
        ]
    );
    let (_, started) = h.run(reloaded.actions);
    assert_eq!(started, [(2, 103)]);
    let states: Vec<JobState> = h.m.snapshot(h.now).jobs.iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        [JobState::Stopped, JobState::Exited, JobState::Running]
    );
}

#[test]
fn reload_is_refused_before_the_main_phase_during_shutdown_and_rotation() {
    let mut h = Harness::new(vec![init("migrate")], vec![main_job("web")]);
    assert!(
        h.reload(vec![]).unwrap_err().reason.contains("phase vault"),
        "before start-up"
    );
    h.start();
    assert!(h.reload(vec![]).unwrap_err().reason.contains("init jobs"));
    h.exit(100, OK);
    h.event(Event::RollingRestart);
    assert!(h.reload(vec![]).unwrap_err().reason.contains("rotation"));
    h.exit(101, Termination::Signaled(TERM));
    let mut delayed = Harness::new(vec![], vec![main_job("web")]);
    delayed.m = Machine::new(vec![], vec![main_job("web")], BackoffSettings::default())
        .with_shutdown_delay(Duration::from_secs(5));
    delayed.start();
    delayed.event(Event::ShutdownSignal { signal: TERM });
    let refused = delayed.reload(vec![]).unwrap_err();
    assert_eq!(refused.code, 1);
    assert!(refused.reason.contains("shutting down"));
}

#[test]
fn a_new_job_honours_after() {
    let mut h = Harness::new(vec![], vec![main_job("db")]);
    h.start(); // 100
    let mut web = main_job("web");
    web.after = vec!["db".into(), "cache".into()];
    let mut cache = main_job("cache");
    cache.check = Some(CheckPolicy {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    });
    let reloaded = h
        .reload(vec![
            entry(main_job("db"), false),
            entry(web, false),
            entry(cache, false),
        ])
        .unwrap();
    let (_, started) = h.run(reloaded.actions);
    assert_eq!(
        started,
        [(2, 101)],
        "cache starts, web waits for it to be ready"
    );
    let actions = h.event(Event::CheckDone {
        job: 2,
        passed: true,
        detail: String::new(),
    });
    let (_, started) = h.run(actions);
    assert_eq!(started, [(1, 102)]);
}

#[test]
fn removing_every_job_that_is_done_ends_the_run() {
    let mut never = main_job("once");
    never.restart = RestartPolicy::Never;
    let mut h = Harness::new(vec![], vec![never, main_job("web")]);
    h.start();
    h.exit(100, OK);
    h.command(Command::Stop, &[1]).unwrap();
    h.exit(101, Termination::Signaled(TERM));
    let reloaded = h.reload(vec![]).unwrap();
    assert_eq!(forgotten(&reloaded.actions), [0, 1]);
    assert_eq!(exits(&reloaded.actions), [0], "{:?}", reloaded.actions);
}

#[test]
fn a_job_removed_and_added_back_while_stopping_comes_back_as_changed() {
    let mut h = Harness::new(vec![], vec![main_job("web")]);
    h.start();
    let reloaded = h.reload(vec![]).unwrap();
    assert_eq!(signals(&reloaded.actions), [(100, TERM)]);
    let reloaded = h.reload(vec![entry(main_job("web"), false)]).unwrap();
    assert_eq!(reloaded.ids, [0]);
    let (actions, started) = h.exit(100, Termination::Signaled(TERM));
    assert!(forgotten(&actions).is_empty());
    assert_eq!(started, [(0, 101)]);
}

#[test]
fn a_new_top_level_backoff_applies_to_later_delays() {
    let mut h = Harness::new(vec![], vec![main_job("web")]);
    h.start();
    let slow = BackoffSettings {
        initial: Duration::from_secs(7),
        ..BackoffSettings::default()
    };
    let reloaded =
        h.m.reload(
            vec![entry(main_job("web"), false)],
            ReloadSettings {
                backoff: slow,
                shutdown_delay: Duration::ZERO,
            },
            h.now,
        )
        .unwrap();
    assert!(reloaded.lines.is_empty());
    assert!(signals(&reloaded.actions).is_empty());
    h.exit(100, FAIL);
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(7)));
}
