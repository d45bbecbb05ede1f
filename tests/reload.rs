//! `simplevisor reload` through the binary: the file re-read and applied to the running jobs,
//! what it refuses, and the control socket while Vault start-up still retries.

mod harness;

use serde_json::{Value, json};

use harness::control::{ctl, job, socket_path, start, status, wait_status};
use harness::{Supervisor, run, secs};

/// A job that says it is up (with a version) and reports the signals it gets.
fn trapping(name: &str, version: u32) -> Value {
    json!({
        "name": name,
        "cmd": ["sh", "-c", format!(
            "trap 'echo {name} got INT; exit 0' INT; trap 'echo {name} got TERM; exit 0' TERM; trap 'echo {name} got HUP' HUP; echo {name} up v{version}; while :; do sleep 0.05; done"
        )],
    })
}

fn config(main: Vec<Value>) -> Value {
    json!({"env": {"pass": ["PATH"]}, "jobs": {"main": main}})
}

/// Replaces the running simplevisor's config file (the path it was started with).
fn rewrite(sv: &Supervisor, config: &Value, socket: &std::path::Path) {
    let mut config = config.clone();
    config["control-socket"] = json!(socket.display().to_string());
    std::fs::write(sv.dir.path().join("simplevisor.json"), config.to_string()).unwrap();
}

fn pid_of(socket: &std::path::Path, name: &str) -> i64 {
    job(&status(socket), name)["pid"].as_i64().unwrap()
}

#[test]
fn reload_keeps_unchanged_jobs_restarts_changed_ones_starts_new_ones_and_stops_removed_ones() {
    let socket = socket_path();
    let before = config(vec![
        trapping("keep", 1),
        trapping("change", 1),
        trapping("drop", 1),
    ]);
    let mut sv = start(&before.to_string(), &socket);
    for name in ["keep", "change", "drop"] {
        sv.wait_message(name, "up v1", secs(10.0));
    }
    wait_status(&socket, "all running", |s| {
        ["keep", "change", "drop"]
            .iter()
            .all(|n| job(s, n)["state"] == "running")
    });
    let keep_pid = pid_of(&socket, "keep");

    let mut changed = trapping("change", 2);
    changed["kill-signal"] = json!("INT");
    let after = config(vec![trapping("keep", 1), changed, trapping("new", 1)]);
    rewrite(&sv, &after, &socket);
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, 0, "reload: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "change: changed; stopping it, then starting the new entry",
            "new: added; starts when its after jobs are up",
            "drop: removed; stopping it",
        ]
    );

    // The changed job got its old kill-signal, then runs its new entry.
    sv.wait_message("change", "change got TERM", secs(10.0));
    sv.wait_message("change", "up v2", secs(10.0));
    sv.wait_message("new", "up v1", secs(10.0));
    sv.wait_message("drop", "drop got TERM", secs(10.0));
    let s = wait_status(&socket, "drop forgotten, change running again", |s| {
        s["jobs"].as_array().unwrap().len() == 3 && job(s, "change")["state"] == "running"
    });
    let names: Vec<&str> = s["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep", "change", "new"]);
    assert_eq!(job(&s, "keep")["pid"], keep_pid, "unchanged: same process");
    assert_eq!(job(&s, "keep")["restarts"], 0);
    assert_eq!(job(&s, "change")["restarts"], 1, "its new start counts");
    assert_eq!(job(&s, "new")["restarts"], 0);
    for text in [
        "reload: change: changed",
        "reload: new: added",
        "reload: drop: removed",
    ] {
        sv.wait_message("internal", text, secs(1.0));
    }

    // The changed job now stops with its new kill-signal.
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
    assert!(
        sv.messages("change").iter().any(|m| m == "change got INT"),
        "{}",
        sv.dump()
    );
}

#[test]
fn an_invalid_file_or_a_setting_that_needs_a_restart_changes_nothing() {
    let socket = socket_path();
    let before = config(vec![trapping("web", 1)]);
    let mut sv = start(&before.to_string(), &socket);
    sv.wait_message("web", "up v1", secs(10.0));
    let pid = pid_of(&socket, "web");

    // Every problem of an invalid file, on stderr.
    std::fs::write(
        sv.dir.path().join("simplevisor.json"),
        r#"{"jobs": {"main": [{"cmd": []}, {"cmd": ["x"], "kill-signal": "NOPE"}]}}"#,
    )
    .unwrap();
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("jobs.main[0].cmd"), "{}", out.stderr);
    assert!(
        out.stderr.contains("jobs.main[1].kill-signal"),
        "{}",
        out.stderr
    );

    // env and control-socket differ: both named, nothing done.
    let mut other = config(vec![trapping("web", 2), trapping("more", 1)]);
    other["env"] = json!({"pass": ["PATH", "HOME"]});
    std::fs::write(sv.dir.path().join("simplevisor.json"), other.to_string()).unwrap();
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("env, control-socket") && out.stderr.contains("nothing changed"),
        "{}",
        out.stderr
    );
    let s = status(&socket);
    assert_eq!(s["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(job(&s, "web")["pid"], pid);
    assert_eq!(job(&s, "web")["restarts"], 0);
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
}

#[test]
fn a_stopped_job_stays_stopped_and_sighup_is_still_for_the_jobs() {
    let socket = socket_path();
    let before = config(vec![trapping("web", 1), trapping("worker", 1)]);
    let mut sv = start(&before.to_string(), &socket);
    sv.wait_message("web", "up v1", secs(10.0));
    sv.wait_message("worker", "up v1", secs(10.0));
    assert_eq!(ctl(&socket, &["stop", "worker"]).code, 0);
    wait_status(&socket, "worker stopped", |s| {
        job(s, "worker")["state"] == "stopped"
    });

    rewrite(
        &sv,
        &config(vec![trapping("web", 1), trapping("worker", 2)]),
        &socket,
    );
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "worker: changed; stays stopped");
    assert_eq!(job(&status(&socket), "worker")["state"], "stopped");
    // Started later, it runs its new entry.
    assert_eq!(ctl(&socket, &["start", "worker"]).code, 0);
    sv.wait_message("worker", "up v2", secs(10.0));

    // SIGHUP is not a reload: it goes to the jobs.
    sv.signal(libc::SIGHUP);
    sv.wait_message("web", "web got HUP", secs(10.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
}

#[test]
fn reload_is_refused_while_init_jobs_run() {
    let socket = socket_path();
    let config = json!({
        "jobs": {
            "init": [{"name": "migrate", "cmd": ["sh", "-c", "echo migrating; sleep 30"]}],
            "main": [trapping("web", 1)],
        }
    });
    let mut sv = start(&config.to_string(), &socket);
    sv.wait_message("migrate", "migrating", secs(10.0));
    wait_status(&socket, "phase init", |s| s["phase"] == "init");
    let out = ctl(&socket, &["reload"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("init jobs are running"),
        "{}",
        out.stderr
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(15.0)), 0);
}

#[test]
fn the_socket_answers_while_vault_start_up_retries() {
    // A port nobody listens on: every attempt fails and is retried until the deadline.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let socket = socket_path();
    let config = json!({
        "control-socket": socket.display().to_string(),
        "env": {"pass": ["PATH"], "vault-replace": ["DB_PASSWORD"]},
        "vault": {"startup-timeout": "60s"},
        "jobs": {"main": [trapping("web", 1)]},
    });
    let mut sv = run(&config.to_string())
        .env("VAULT_ADDR", &format!("http://127.0.0.1:{closed}"))
        .env("VAULT_TOKEN", "root")
        .env("DB_PASSWORD", "secret:app/db:password")
        .start();
    sv.wait_message("internal", "attempt 1", secs(10.0));
    let s = status(&socket);
    assert_eq!(s["phase"], "vault");
    assert_eq!(job(&s, "web")["state"], "waiting");
    assert_eq!(ctl(&socket, &["health", "--live"]).code, 0);
    let health = ctl(&socket, &["health"]);
    assert_eq!(health.code, 1);
    assert!(
        health.stderr.contains("not ready: phase vault"),
        "{}",
        health.stderr
    );
    let stop = ctl(&socket, &["stop", "web"]);
    assert_eq!(stop.code, 1);
    assert!(stop.stderr.contains("phase vault"), "{}", stop.stderr);
    assert_eq!(ctl(&socket, &["reload"]).code, 1);
    // A shutdown meanwhile ends at once, nothing was started.
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    assert!(sv.messages("web").is_empty());
    assert!(!socket.exists(), "the socket is removed on exit");
}
