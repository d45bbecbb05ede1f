//! Signals and PID 1 through the binary: shutdown with per-job kill signals to the whole
//! process group, SIGKILL after stop-timeout, the second signal, forwarding, and reaping of
//! orphans as PID 1 of a fresh PID namespace.

mod harness;

use std::time::Instant;

use harness::{is_root, processes_with, require, run, secs};

const NO_VAULT: &str = "--no-vault";

/// A job whose grandchild (not the leader) reports the signals it gets. Both trap HUP and USR1
/// (whose default action would end them); the leader keeps waiting for the grandchild.
const TREE: &str = r#"trap 'echo leader got HUP' HUP; trap 'echo leader got USR1' USR1; sh -c 'trap "echo grandchild got HUP" HUP; trap "echo grandchild got USR1" USR1; trap "echo grandchild got TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done' & while kill -0 $! 2>/dev/null; do wait; done"#;

fn tree_config() -> String {
    format!(
        r#"{{"jobs": {{"main": [{{"name": "tree", "cmd": ["sh", "-c", {}]}}]}}}}"#,
        serde_json::to_string(TREE).unwrap()
    )
}

#[test]
fn shutdown_sends_the_kill_signal_to_the_whole_group_and_exits_0() {
    let mut sv = run(&tree_config()).arg(NO_VAULT).start();
    sv.wait_message("tree", "ready", secs(10.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    assert!(
        sv.messages("tree")
            .contains(&"grandchild got TERM".to_string()),
        "{}",
        sv.dump()
    );
    let internal = sv.messages("internal").join("\n");
    assert!(
        internal.contains("received TERM; shutting down"),
        "{internal}"
    );
}

#[test]
fn the_kill_signal_is_per_job() {
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "int", "cmd": ["sh", "-c", "trap 'echo got INT; exit 0' INT; trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done"], "kill-signal": "SIGINT"}
    ]}}"#)
    .arg(NO_VAULT)
    .start();
    sv.wait_message("int", "ready", secs(10.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    assert_eq!(sv.messages("int"), ["ready", "got INT"]);
}

#[test]
fn other_signals_are_forwarded_to_every_group() {
    let mut sv = run(&tree_config()).arg(NO_VAULT).start();
    sv.wait_message("tree", "ready", secs(10.0));
    sv.signal(libc::SIGHUP);
    sv.wait_message("tree", "grandchild got HUP", secs(10.0));
    sv.wait_message("tree", "leader got HUP", secs(10.0));
    sv.wait_message("internal", "received HUP; forwarded to tree", secs(10.0));
    // simplevisor itself survived HUP and USR1, whose default action would have ended it.
    sv.signal(libc::SIGUSR1);
    sv.wait_message("tree", "grandchild got USR1", secs(10.0));
    sv.wait_message("internal", "received USR1; forwarded to tree", secs(10.0));
    sv.signal(libc::SIGINT);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}

#[test]
fn a_job_ignoring_its_kill_signal_is_killed_after_stop_timeout() {
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "stubborn", "cmd": ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done # 4242.1"],
         "stop-timeout": "700ms"}
    ]}}"#)
    .arg(NO_VAULT)
    .start();
    sv.wait_message("stubborn", "ready", secs(10.0));
    let sent = Instant::now();
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    let took = sent.elapsed();
    assert!(
        took >= secs(0.7),
        "killed before its stop-timeout: {took:?}"
    );
    let internal = sv.messages("internal").join("\n");
    assert!(
        internal
            .contains("job stubborn did not stop within 700ms; sending KILL to its process group"),
        "{internal}"
    );
    assert!(
        internal.contains("job stubborn was killed by signal KILL"),
        "{internal}"
    );
    assert!(processes_with("# 4242.1").is_empty());
}

#[test]
fn a_second_signal_skips_the_grace_period() {
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "stubborn", "cmd": ["sh", "-c", "trap '' TERM INT; echo ready; while :; do sleep 0.05; done"],
         "stop-timeout": "60s"}
    ]}}"#)
    .arg(NO_VAULT)
    .start();
    sv.wait_message("stubborn", "ready", secs(10.0));
    sv.signal(libc::SIGTERM);
    sv.wait_message("internal", "shutting down", secs(10.0));
    sv.signal(libc::SIGINT);
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "well before the 60 s grace");
    assert!(
        sv.messages("internal")
            .join("\n")
            .contains("received INT again; killing every job now")
    );
}

#[test]
fn shutdown_during_init_exits_0_and_starts_nothing_else() {
    let mut sv = run(r#"{"jobs": {
        "init": [{"name": "slow", "cmd": ["sh", "-c", "echo ready; exec sleep 1000.75"]}],
        "main": [{"name": "web", "cmd": ["sh", "-c", "echo must not run"]}]
    }}"#)
    .arg(NO_VAULT)
    .start();
    sv.wait_message("slow", "ready", secs(10.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    assert!(sv.messages("web").is_empty());
    assert!(processes_with("sleep 1000.75").is_empty());
}

#[test]
fn as_pid_1_orphans_are_reaped_and_sigterm_is_handled() {
    if !require(
        "root and unshare, for a PID namespace",
        is_root() && unshare_available(),
    ) {
        return;
    }
    // The init job leaves 50 orphans that exit soon after: zombies unless PID 1 reaps them.
    let mut sv = run(r#"{"jobs": {
        "init": [{"name": "orphans", "cmd": ["sh", "-c", "for i in $(seq 50); do sh -c 'sleep 0.2 &'; done"]}],
        "main": [{"name": "count", "cmd": ["sh", "-c",
            "sleep 1; echo pid=$$ ppid=$PPID; echo zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l); echo ready; exec sleep 1000"]}]
    }}"#)
    .arg(NO_VAULT)
    .wrapped(&["unshare", "--pid", "--fork", "--mount-proc"])
    .start();
    sv.wait_message("count", "ready", secs(20.0));
    let out = sv.messages("count");
    assert!(
        out[0].ends_with(" ppid=1"),
        "simplevisor is PID 1 here: {out:?}"
    );
    assert_eq!(out[1], "zombies=0", "{}", sv.dump());
    // One record for the first, then at most one summary a second ("reaped 49 orphan
    // processes; ...").
    let records: Vec<String> = sv
        .messages("internal")
        .into_iter()
        .filter(|m| m.starts_with("reaped "))
        .collect();
    let reaped: usize = records
        .iter()
        .map(|m| {
            m.strip_prefix("reaped ")
                .and_then(|m| m.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
        })
        .sum();
    assert!(reaped >= 50, "only {reaped} orphans reaped:\n{}", sv.dump());
    assert!(records.len() <= 3, "one record per orphan: {records:?}");

    // SIGTERM from outside the namespace, to simplevisor itself (unshare's child).
    let pid1 = child_of(sv.pid()).expect("simplevisor under unshare");
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid1, libc::SIGTERM) };
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    assert!(
        sv.messages("internal")
            .join("\n")
            .contains("received TERM; shutting down")
    );
}

fn unshare_available() -> bool {
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

fn child_of(pid: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[test]
fn sigterm_while_vault_is_retried_at_start_exits_at_once() {
    // A port nobody listens on: simplevisor retries until startup-timeout (60 s here).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sv = run(r#"{"env": {"vault-replace": ["DB_PASSWORD"]},
                         "vault": {"startup-timeout": "60s"},
                         "jobs": {"main": [{"name": "app", "cmd": ["sh", "-c", "echo must not run"]}]}}"#)
    .env("VAULT_ADDR", &format!("http://127.0.0.1:{port}"))
    .env("VAULT_TOKEN", "unused")
    .env("DB_PASSWORD", "db:app:Password")
    .start();
    // Vault is being retried: the first failed attempt has been recorded.
    sv.wait_message("internal", "attempt 1 failed", secs(10.0));
    let sent = Instant::now();
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    assert!(
        sent.elapsed() < secs(5.0),
        "waited for the start-up timeout"
    );
    assert!(sv.messages("app").is_empty());
    assert!(
        sv.messages("internal")
            .join("\n")
            .contains("received TERM while logging in to Vault; exiting, nothing was started"),
        "{}",
        sv.dump()
    );
}

#[test]
fn killed_with_sigkill_when_not_pid_1_its_jobs_die_too() {
    let marker = "31.4159";
    let mut sv = run(&format!(
        r#"{{"jobs": {{"main": [
            {{"name": "a", "cmd": ["sleep", "{marker}1"]}},
            {{"name": "b", "cmd": ["sleep", "{marker}2"]}}
        ]}}}}"#
    ))
    .arg(NO_VAULT)
    .start();
    sv.wait_message("internal", "job b started", secs(10.0));
    sv.wait_message("internal", "job a started", secs(10.0));
    assert_eq!(processes_with(marker).len(), 2);
    sv.signal(libc::SIGKILL);
    assert_eq!(sv.wait_exit(secs(10.0)), 128 + libc::SIGKILL);
    let deadline = Instant::now() + secs(5.0);
    while !processes_with(marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(secs(0.02));
    }
    assert_eq!(
        processes_with(marker),
        Vec::<i32>::new(),
        "jobs left running"
    );
}
