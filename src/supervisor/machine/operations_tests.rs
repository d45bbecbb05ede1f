//! Start order, readiness, shutdown order and delay, the restart limit, control commands and
//! the status snapshot, driven by hand with a fake clock.

use super::tests_support::*;
use super::*;
use crate::supervisor::status::LastExit;

fn checked(name: &str) -> JobPolicy {
    let mut p = main_job(name);
    p.check = Some(CheckPolicy {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
    });
    p
}

fn after(mut p: JobPolicy, first: &[&str]) -> JobPolicy {
    p.after = first.iter().map(|name| name.to_string()).collect();
    p
}

fn checks(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::RunCheck { .. } | Action::CancelCheck { .. }))
        .cloned()
        .collect()
}

fn state(h: &Harness, job: JobId) -> JobState {
    h.m.snapshot(h.now).jobs[job].state
}

#[test]
fn after_waits_for_the_readiness_of_the_jobs_listed() {
    let mut h = Harness::new(vec![], vec![checked("db"), after(main_job("web"), &["db"])]);
    let (actions, started) = h.start();
    assert_eq!(started, [(0, 100)], "web waits for db");
    assert_eq!(checks(&actions), [Action::RunCheck { job: 0 }]);
    assert_eq!(state(&h, 0), JobState::Starting);
    assert_eq!(state(&h, 1), JobState::Waiting);
    let a = h.event(Event::CheckDone {
        job: 0,
        passed: false,
        detail: "connection refused".into(),
    });
    assert!(a.is_empty());
    assert_eq!(
        h.m.snapshot(h.now).jobs[0].check_error.as_deref(),
        Some("connection refused")
    );
    // Next check one interval after the first was sent.
    assert!(checks(&h.advance(Duration::from_millis(900))).is_empty());
    assert_eq!(
        checks(&h.advance(Duration::from_millis(100))),
        [Action::RunCheck { job: 0 }]
    );
    let a = h.event(Event::CheckDone {
        job: 0,
        passed: true,
        detail: String::new(),
    });
    let (rest, started) = h.run(a);
    assert!(infos(&rest).contains(&"job db is ready".to_string()));
    assert_eq!(started, [(1, 101)]);
    assert_eq!(state(&h, 0), JobState::Running);
    assert_eq!(h.m.snapshot(h.now).not_ready, None);
    // No check is pending any more: no timer.
    assert_eq!(h.m.next_deadline(), None);
}

#[test]
fn a_check_that_hangs_is_cancelled_at_its_timeout_and_tried_again() {
    let mut h = Harness::new(vec![], vec![checked("db")]);
    h.start();
    assert_eq!(
        checks(&h.advance(Duration::from_millis(500))),
        [Action::CancelCheck { job: 0 }]
    );
    let status = h.m.snapshot(h.now);
    assert_eq!(
        status.jobs[0].check_error.as_deref(),
        Some("no answer within 500ms")
    );
    assert_eq!(status.not_ready.as_deref(), Some("not running yet: db"));
    assert_eq!(
        checks(&h.advance(Duration::from_millis(500))),
        [Action::RunCheck { job: 0 }]
    );
    // The job exits while a check is in flight: the check is cancelled.
    let (a, _) = h.exit(100, FAIL);
    assert!(checks(&a).contains(&Action::CancelCheck { job: 0 }));
}

#[test]
fn jobs_stop_in_reverse_start_order() {
    let mut h = Harness::new(
        vec![],
        vec![
            main_job("db"),
            after(main_job("web"), &["db"]),
            after(main_job("cron"), &["web"]),
        ],
    );
    let (_, started) = h.start();
    assert_eq!(started, [(0, 100), (1, 101), (2, 102)]);
    let a = h.event(Event::ShutdownSignal { signal: TERM });
    assert_eq!(
        signals(&a),
        [(102, TERM)],
        "only cron, which nothing waits for"
    );
    let (a, _) = h.exit(102, OK);
    assert_eq!(signals(&a), [(101, TERM)]);
    let (a, _) = h.exit(101, OK);
    assert_eq!(signals(&a), [(100, TERM)]);
    let (a, _) = h.exit(100, OK);
    assert_eq!(exits(&a), [0]);
}

#[test]
fn a_second_signal_kills_jobs_still_waiting_for_their_dependents() {
    let mut h = Harness::new(
        vec![],
        vec![main_job("db"), after(main_job("web"), &["db"])],
    );
    h.start();
    h.event(Event::ShutdownSignal { signal: TERM });
    let a = h.event(Event::ShutdownSignal { signal: TERM });
    let mut sent = signals(&a);
    sent.sort();
    assert_eq!(sent, [(100, KILL), (101, KILL)]);
}

#[test]
fn shutdown_delay_keeps_jobs_running_and_health_failing() {
    let mut h = Harness::new(vec![], vec![main_job("web")]);
    h.m = Machine::new(vec![], vec![main_job("web")], BackoffSettings::default())
        .with_shutdown_delay(Duration::from_secs(5));
    h.start();
    assert_eq!(h.m.snapshot(h.now).not_ready, None);
    let a = h.event(Event::ShutdownSignal { signal: TERM });
    assert!(signals(&a).is_empty());
    let status = h.m.snapshot(h.now);
    assert_eq!(status.phase, "shutdown-delay");
    assert_eq!(
        status.not_ready.as_deref(),
        Some("shutting down (shutdown-delay)")
    );
    assert!(h.command(Command::Restart, &[0]).is_err());
    assert!(signals(&h.advance(Duration::from_millis(4999))).is_empty());
    assert_eq!(signals(&h.advance(Duration::from_millis(1))), [(100, TERM)]);
}

#[test]
fn during_shutdown_delay_the_second_signal_stops_and_the_third_kills() {
    let mut h = Harness::new(vec![], vec![]);
    h.m = Machine::new(vec![], vec![main_job("web")], BackoffSettings::default())
        .with_shutdown_delay(Duration::from_secs(30));
    h.start();
    h.event(Event::ShutdownSignal { signal: TERM });
    assert_eq!(
        signals(&h.event(Event::ShutdownSignal { signal: INT })),
        [(100, TERM)]
    );
    assert_eq!(
        signals(&h.event(Event::ShutdownSignal { signal: TERM })),
        [(100, KILL)]
    );
}

#[test]
fn max_restarts_gives_up_after_that_many_quick_restarts_and_stops_everything() {
    let mut limited = main_job("flaky");
    limited.max_restarts = Some(3);
    let mut h = Harness::new(vec![], vec![limited, main_job("web")]);
    let (_, started) = h.start();
    let web = started[1].1;
    let mut pid = started[0].1;
    let mut runs = 1;
    loop {
        let (a, _) = h.exit(pid, FAIL);
        if infos(&a).iter().any(|m| m.contains("max-restarts 3")) {
            assert_eq!(signals(&a), [(web, TERM)]);
            break;
        }
        let until = h.m.next_deadline().unwrap();
        h.now = until;
        let a = h.m.handle(Event::Tick, until);
        let (_, started) = h.run(a);
        pid = started[0].1;
        runs += 1;
    }
    assert_eq!(runs, 4, "3 restarts, then failed");
    assert_eq!(state(&h, 0), JobState::Failed);
    let (a, _) = h.exit(web, Termination::Signaled(TERM));
    assert_eq!(exits(&a), [1]);
}

#[test]
fn stop_holds_a_job_until_start_and_keeps_simplevisor_running() {
    let mut h = Harness::new(vec![], vec![main_job("web")]);
    h.start();
    let a = h.command(Command::Stop, &[0]).unwrap();
    assert_eq!(signals(&a), [(100, TERM)]);
    assert_eq!(state(&h, 0), JobState::Stopping);
    let (a, started) = h.exit(100, Termination::Signaled(TERM));
    assert!(
        started.is_empty() && exits(&a).is_empty(),
        "not restarted, no exit: {a:?}"
    );
    assert_eq!(state(&h, 0), JobState::Stopped);
    assert_eq!(
        h.m.snapshot(h.now).not_ready,
        None,
        "a stopped job does not make it unready"
    );
    assert_eq!(h.m.next_deadline(), None);
    let a = h.command(Command::Start, &[0]).unwrap();
    let (_, started) = h.run(a);
    assert_eq!(started, [(0, 101)]);
    assert_eq!(h.m.snapshot(h.now).jobs[0].restarts, 1);
}

#[test]
fn restart_stops_and_starts_at_once_with_the_backoff_reset() {
    let mut h = Harness::new(vec![], vec![main_job("web")]);
    h.start();
    h.exit(100, FAIL);
    let a = h.advance(Duration::from_secs(1));
    let (_, started) = h.run(a);
    assert_eq!(started, [(0, 101)]);
    h.exit(101, FAIL);
    assert_eq!(
        h.m.snapshot(h.now).jobs[0].next_start_in,
        Some(Duration::from_secs(2))
    );
    // In backoff: started now.
    let a = h.command(Command::Restart, &[0]).unwrap();
    let (_, started) = h.run(a);
    assert_eq!(started, [(0, 102)]);
    // Running: stopped gracefully, then started at once.
    let a = h.command(Command::Restart, &[0]).unwrap();
    assert_eq!(signals(&a), [(102, TERM)]);
    let (_, started) = h.exit(102, Termination::Signaled(TERM));
    assert_eq!(started, [(0, 103)]);
    // The backoff starts over.
    h.exit(103, FAIL);
    assert_eq!(
        h.m.snapshot(h.now).jobs[0].next_start_in,
        Some(Duration::from_secs(1))
    );
}

#[test]
fn commands_are_refused_with_nothing_done_when_they_cannot_apply() {
    let mut h = Harness::new(
        vec![init("migrate")],
        vec![main_job("web"), main_job("worker")],
    );
    h.start();
    assert!(
        h.command(Command::Restart, &[1])
            .unwrap_err()
            .reason
            .contains("init jobs are running")
    );
    h.exit(100, OK);
    let refused = h.command(Command::Stop, &[0]).unwrap_err();
    assert!(refused.reason.contains("is an init job"), "{refused:?}");
    assert_eq!(refused.code, 2, "an init job is a usage error");
    h.command(Command::Stop, &[2]).unwrap();
    h.exit(102, Termination::Signaled(TERM));
    let err = h.command(Command::Signal(HUP), &[1, 2]).unwrap_err();
    assert_eq!(err, Refusal::refused("not running: worker"));
    let a = h.command(Command::Signal(HUP), &[1]).unwrap();
    assert_eq!(signals(&a), [(101, HUP)]);
    assert_eq!(h.m.job_named("worker"), Some(2));
    let unknown =
        h.m.command(Command::Stop, &["nope".into()], h.now)
            .unwrap_err();
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .reason
            .contains("unknown job nope (jobs: migrate, web, worker)"),
        "{unknown:?}"
    );
    assert_eq!(h.m.job_named("nope"), None);
}

#[test]
fn a_job_whose_after_jobs_are_done_for_good_ends_the_run_with_status_1() {
    let mut once = main_job("setup");
    once.restart = RestartPolicy::Never;
    once.check = Some(CheckPolicy {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    });
    let mut h = Harness::new(vec![], vec![once, after(main_job("web"), &["setup"])]);
    h.start();
    let (a, _) = h.exit(100, OK);
    assert!(
        infos(&a)
            .iter()
            .any(|m| m.contains("never started") && m.contains("web")),
        "{a:?}"
    );
    assert_eq!(exits(&a), [1]);
}

#[test]
fn the_snapshot_names_states_pids_and_last_exits() {
    let mut h = Harness::new(vec![init("migrate")], vec![main_job("web")]);
    h.start();
    let s = h.m.snapshot(h.now);
    assert_eq!(s.phase, "init");
    assert_eq!(
        (s.jobs[0].state, s.jobs[0].pid),
        (JobState::Running, Some(100))
    );
    assert_eq!(s.jobs[1].state, JobState::Waiting);
    h.exit(100, OK);
    h.now += Duration::from_secs(7);
    let s = h.m.snapshot(h.now);
    assert_eq!(
        (s.jobs[0].state, s.jobs[0].last_exit.clone()),
        (JobState::Done, Some(LastExit::Code(0)))
    );
    assert_eq!(s.jobs[1].uptime, Some(Duration::from_secs(7)));
    h.exit(101, Termination::Signaled(KILL));
    let s = h.m.snapshot(h.now);
    assert_eq!(s.jobs[1].state, JobState::Backoff);
    assert_eq!(s.jobs[1].last_exit, Some(LastExit::Signal("KILL".into())));
    assert_eq!(s.jobs[1].next_start_in, Some(Duration::from_secs(1)));
}
