//! The state machine driven by hand with a fake clock: no processes, no sleeping.

use super::*;

use super::tests_support::*;

#[test]
fn init_jobs_run_one_at_a_time_then_main_jobs_in_parallel() {
    let mut h = Harness::new(
        vec![init("a"), init("b")],
        vec![main_job("x"), main_job("y")],
    );
    let (_, started) = h.start();
    assert_eq!(started, [(0, 100)]);
    let (_, started) = h.exit(100, OK);
    assert_eq!(started, [(1, 101)]);
    let (_, started) = h.exit(101, OK);
    assert_eq!(started, [(2, 102), (3, 103)]);
}

#[test]
fn a_failed_init_job_stops_everything_with_status_1() {
    for how in [FAIL, Termination::Signaled(9)] {
        let mut h = Harness::new(vec![init("a"), init("b")], vec![main_job("x")]);
        h.start();
        let (actions, started) = h.exit(100, how);
        assert!(
            started.is_empty(),
            "nothing more starts after a failed init job"
        );
        assert_eq!(exits(&actions), [1]);
        assert!(h.m.is_done());
    }
}

#[test]
fn an_init_job_that_cannot_start_is_fatal() {
    let mut h = Harness::new(vec![init("a")], vec![main_job("x")]);
    h.m.start();
    let actions = h.event(Event::StartFailed {
        job: 0,
        reason: "not found".into(),
        status: 127,
    });
    assert_eq!(exits(&actions), [1]);
    assert!(infos(&actions)[0].contains("could not be started: not found"));
}

#[test]
fn no_main_jobs_means_exit_0_after_init() {
    let mut h = Harness::new(vec![init("a")], vec![]);
    h.start();
    let (actions, _) = h.exit(100, OK);
    assert_eq!(exits(&actions), [0]);
    let mut empty = Harness::new(vec![], vec![]);
    let (actions, _) = empty.start();
    assert_eq!(exits(&actions), [0]);
}

#[test]
fn restart_always_follows_the_backoff_sequence() {
    let mut h = Harness::new(vec![], vec![main_job("x")]);
    let (_, started) = h.start();
    let mut pid = started[0].1;
    let mut delays = Vec::new();
    for _ in 0..8 {
        let (actions, started) = h.exit(pid, OK);
        assert!(started.is_empty());
        assert!(exits(&actions).is_empty());
        let due = h.m.next_deadline().unwrap();
        delays.push((due - h.now).as_secs());
        // Nothing starts just before the deadline ...
        let (_, started) = {
            let a = h.advance(due - h.now - Duration::from_millis(1));
            h.run(a)
        };
        assert!(started.is_empty());
        // ... and it starts at the deadline.
        let a = h.advance(Duration::from_millis(1));
        let (_, started) = h.run(a);
        assert_eq!(started.len(), 1);
        pid = started[0].1;
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
}

#[test]
fn a_run_longer_than_reset_after_resets_the_backoff() {
    let mut h = Harness::new(vec![], vec![main_job("x")]);
    let (_, started) = h.start();
    let mut pid = started[0].1;
    for _ in 0..3 {
        h.exit(pid, FAIL);
        let a = h.advance(Duration::from_secs(60));
        pid = h.run(a).1[0].1;
    }
    // That last run lasted 0 s; the next one lasts 60 s (= reset-after).
    h.advance(Duration::from_secs(60));
    h.exit(pid, FAIL);
    assert_eq!(h.m.next_deadline().unwrap() - h.now, Duration::from_secs(1));
}

#[test]
fn on_failure_restarts_only_failures_and_never_never_restarts() {
    let mut on_failure = main_job("x");
    on_failure.restart = RestartPolicy::OnFailure;
    let mut never = main_job("y");
    never.restart = RestartPolicy::Never;
    let mut h = Harness::new(vec![], vec![on_failure, never, main_job("z")]);
    h.start(); // pids 100, 101, 102
    h.exit(100, FAIL);
    let a = h.advance(Duration::from_secs(1));
    let (_, started) = h.run(a);
    assert_eq!(started, [(0, 103)]);
    let (actions, started) = h.exit(103, OK);
    assert!(started.is_empty() && exits(&actions).is_empty());
    let (actions, _) = h.exit(101, FAIL);
    assert!(exits(&actions).is_empty(), "z is still running");
    assert_eq!(h.m.next_deadline(), None);
}

#[test]
fn exit_status_when_every_main_job_finished() {
    for (second, want) in [(OK, 0), (FAIL, 1), (Termination::Signaled(15), 1)] {
        let mut a = main_job("a");
        a.restart = RestartPolicy::Never;
        let mut b = main_job("b");
        b.restart = RestartPolicy::OnFailure;
        b.restart = if second.success() {
            RestartPolicy::OnFailure
        } else {
            RestartPolicy::Never
        };
        let mut h = Harness::new(vec![], vec![a, b]);
        h.start();
        let (actions, _) = h.exit(100, OK);
        assert!(exits(&actions).is_empty());
        let (actions, _) = h.exit(101, second);
        assert_eq!(exits(&actions), [want], "second job {second:?}");
    }
}

#[test]
fn an_essential_job_stops_everything_with_its_status() {
    for (how, want) in [
        (Termination::Exited(0), 0),
        (Termination::Exited(42), 42),
        (Termination::Signaled(9), 137),
    ] {
        let mut e = main_job("e");
        e.essential = true;
        let mut h = Harness::new(vec![], vec![e, main_job("other")]);
        h.start(); // e = 100, other = 101
        let (actions, started) = h.exit(100, how);
        assert!(started.is_empty(), "essential jobs are not restarted");
        assert_eq!(signals(&actions), [(101, TERM)]);
        let (actions, _) = h.exit(101, Termination::Signaled(TERM));
        assert_eq!(exits(&actions), [want]);
    }
}

#[test]
fn shutdown_signals_every_group_then_kills_after_each_stop_timeout() {
    let mut slow = main_job("slow");
    slow.kill_signal = INT;
    slow.stop_timeout = Duration::from_secs(2);
    let mut h = Harness::new(vec![], vec![slow, main_job("fast"), main_job("stubborn")]);
    h.start(); // 100, 101, 102
    let actions = h.event(Event::ShutdownSignal { signal: TERM });
    assert_eq!(signals(&actions), [(100, INT), (101, TERM), (102, TERM)]);
    assert_eq!(h.m.next_deadline(), Some(h.now + Duration::from_secs(2)));
    h.exit(101, Termination::Signaled(TERM));
    let actions = h.advance(Duration::from_secs(2));
    assert_eq!(signals(&actions), [(100, KILL)]);
    let (actions, _) = h.exit(100, Termination::Signaled(KILL));
    assert!(exits(&actions).is_empty());
    let actions = h.advance(Duration::from_secs(3));
    assert_eq!(signals(&actions), [(102, KILL)]);
    assert!(infos(&actions)[0].contains("did not stop within 5s"));
    let (actions, _) = h.exit(102, Termination::Signaled(KILL));
    assert_eq!(exits(&actions), [0], "shutdown by signal exits 0");
}

#[test]
fn a_second_shutdown_signal_skips_the_grace_period() {
    let mut h = Harness::new(vec![], vec![main_job("a"), main_job("b")]);
    h.start();
    h.event(Event::ShutdownSignal { signal: TERM });
    h.exit(100, Termination::Signaled(TERM));
    let actions = h.event(Event::ShutdownSignal { signal: INT });
    assert_eq!(signals(&actions), [(101, KILL)]);
    // Nothing is killed twice.
    let actions = h.advance(Duration::from_secs(10));
    assert!(signals(&actions).is_empty());
    let (actions, _) = h.exit(101, Termination::Signaled(KILL));
    assert_eq!(exits(&actions), [0]);
}

#[test]
fn shutdown_during_init_stops_the_init_job_and_exits_0() {
    let mut h = Harness::new(vec![init("a"), init("b")], vec![main_job("x")]);
    h.start();
    let actions = h.event(Event::ShutdownSignal { signal: TERM });
    assert_eq!(signals(&actions), [(100, TERM)]);
    let (actions, started) = h.exit(100, Termination::Exited(143));
    assert!(started.is_empty());
    assert_eq!(exits(&actions), [0]);
}

#[test]
fn shutdown_cancels_pending_restarts() {
    let mut h = Harness::new(vec![], vec![main_job("x"), main_job("y")]);
    h.start();
    h.exit(100, FAIL);
    h.event(Event::ShutdownSignal { signal: TERM });
    let (actions, _) = h.exit(101, Termination::Signaled(TERM));
    assert_eq!(exits(&actions), [0]);
    let a = h.advance(Duration::from_secs(100));
    assert!(h.run(a).1.is_empty(), "no restart after shutdown");
}

#[test]
fn shutdown_with_nothing_running_exits_at_once() {
    let mut h = Harness::new(vec![], vec![main_job("x")]);
    h.start();
    h.exit(100, FAIL);
    let actions = h.event(Event::ShutdownSignal { signal: TERM });
    assert_eq!(exits(&actions), [0]);
}

#[test]
fn leftover_group_members_are_stopped_before_a_restart() {
    let mut h = Harness::new(vec![], vec![main_job("x")]);
    h.start();
    let actions = h.event(Event::Reaped {
        pid: 100,
        how: OK,
        group_alive: true,
    });
    assert_eq!(signals(&actions), [(100, TERM)]);
    assert_eq!(h.m.draining_groups(), [(0, 100)]);
    // The backoff would allow a restart after 1 s, but the group is still there.
    let a = h.advance(Duration::from_secs(5));
    assert_eq!(signals(&a), [(100, KILL)]);
    assert!(h.run(a).1.is_empty());
    let a = h.event(Event::GroupGone { job: 0 });
    assert!(h.run(a).1.is_empty());
    let a = h.advance(Duration::from_secs(1));
    assert_eq!(h.run(a).1, [(0, 101)]);
}

#[test]
fn other_signals_are_forwarded_to_every_running_job() {
    let mut h = Harness::new(vec![], vec![main_job("x"), main_job("y"), main_job("z")]);
    h.start();
    h.exit(101, FAIL);
    let actions = h.event(Event::ForwardSignal { signal: HUP });
    assert_eq!(signals(&actions), [(100, HUP), (102, HUP)]);
    assert!(infos(&actions)[0].contains("forwarded to x, z"));
}

#[test]
fn a_fatal_error_stops_jobs_and_exits_1() {
    let mut h = Harness::new(vec![], vec![main_job("x")]);
    h.start();
    let actions = h.event(Event::Fatal {
        reason: "lease expired".into(),
        status: 1,
    });
    assert_eq!(signals(&actions), [(100, TERM)]);
    let (actions, _) = h.exit(100, Termination::Signaled(TERM));
    assert_eq!(exits(&actions), [1]);
}

#[test]
fn a_main_job_that_cannot_start_backs_off_like_a_failed_run() {
    let mut h = Harness::new(vec![], vec![main_job("x")]);
    h.m.start();
    for want in [1, 2, 4] {
        let actions = h.event(Event::StartFailed {
            job: 0,
            reason: "No such file or directory".into(),
            status: 127,
        });
        assert!(exits(&actions).is_empty());
        assert_eq!(
            h.m.next_deadline().unwrap() - h.now,
            Duration::from_secs(want)
        );
        let actions = h.advance(Duration::from_secs(want));
        assert_eq!(actions, [Action::Start(0)]);
    }
}

#[test]
fn rolling_restart_stops_and_starts_main_jobs_one_by_one() {
    let mut e = main_job("essential");
    e.essential = true;
    let mut h = Harness::new(vec![], vec![e, main_job("b"), main_job("c")]);
    h.start(); // 100, 101, 102
    h.exit(102, FAIL); // c waits for its backoff: it gets the new env when it starts
    let actions = h.event(Event::RollingRestart);
    assert_eq!(
        signals(&actions),
        [(100, TERM)],
        "only the first job is stopped"
    );
    let (actions, started) = h.exit(100, Termination::Signaled(TERM));
    assert!(
        exits(&actions).is_empty(),
        "a rolling stop is not an essential exit"
    );
    assert_eq!(started, [(0, 103)]);
    assert_eq!(signals(&actions), [(101, TERM)], "then the next job");
    assert!(!actions.contains(&Action::RollingRestartDone));
    let (actions, started) = h.exit(101, Termination::Signaled(TERM));
    assert_eq!(started, [(1, 104)]);
    assert!(signals(&actions).is_empty(), "c was not running");
    assert!(actions.contains(&Action::RollingRestartDone), "{actions:?}");
}

#[test]
fn a_rolling_restart_interrupted_by_a_shutdown_is_never_done() {
    let mut h = Harness::new(vec![], vec![main_job("a"), main_job("b")]);
    h.start();
    h.event(Event::RollingRestart);
    h.event(Event::ShutdownSignal { signal: TERM });
    let (mut actions, _) = h.exit(100, Termination::Signaled(TERM));
    actions.extend(h.exit(101, Termination::Signaled(TERM)).0);
    assert!(
        !actions.contains(&Action::RollingRestartDone),
        "{actions:?}"
    );
    assert_eq!(exits(&actions), [0]);
}

#[test]
fn reaped_orphans_are_reported() {
    let mut h = Harness::new(vec![], vec![main_job("x")]);
    h.start();
    let actions = h.event(Event::Reaped {
        pid: 4242,
        how: OK,
        group_alive: false,
    });
    assert!(infos(&actions)[0].contains("orphan process 4242"));
    assert!(exits(&actions).is_empty());
}

#[test]
fn termination_status() {
    assert_eq!(Termination::Exited(0).status(), 0);
    assert_eq!(Termination::Exited(255).status(), 255);
    assert_eq!(Termination::Signaled(15).status(), 143);
}
