//! Operating a running simplevisor through the binary: the control socket and its commands,
//! readiness checks, start order and reverse shutdown order, shutdown-delay and max-restarts.

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use harness::control::{ctl, job, socket_path, start, status, wait_status};
use harness::{BIN, is_root, require, secs};

fn state_is(name: &'static str, state: &'static str) -> impl Fn(&Value) -> bool {
    move |s| job(s, name)["state"] == state
}

/// A job that says it is up and reports the signals it gets.
fn trapping(name: &str) -> String {
    format!(
        r#"{{"name": "{name}", "cmd": ["sh", "-c", "trap 'echo {name} got USR1' USR1; trap 'echo {name} got TERM; exit 0' TERM; echo {name} up; while :; do sleep 0.05; done"]"#
    )
}

#[test]
fn status_shows_every_state_in_a_stable_json_shape() {
    let socket = socket_path();
    let mut sv = start(
        r#"{"restart-backoff": {"initial": "30s", "max": "30s"}, "jobs": {
            "init": [{"name": "setup", "cmd": ["true"]}],
            "main": [
                {"name": "up", "cmd": ["sleep", "100"]},
                {"name": "flaky", "cmd": ["sh", "-c", "exit 3"]},
                {"name": "once", "cmd": ["true"], "restart": "never"},
                {"name": "held", "cmd": ["sleep", "100"]}
            ]}}"#,
        &socket,
    );
    wait_status(&socket, "flaky in backoff", state_is("flaky", "backoff"));
    assert_eq!(ctl(&socket, &["stop", "held"]).code, 0);
    let s = wait_status(&socket, "held stopped", state_is("held", "stopped"));
    assert_eq!(s["phase"], "main");
    assert_eq!(s["ready"], false);
    assert!(
        s["not_ready_reason"].as_str().unwrap().contains("flaky"),
        "{s}"
    );
    assert_eq!(s["vault_leases"], Value::Array(vec![]));

    let setup = job(&s, "setup");
    assert_eq!(
        (&setup["kind"], &setup["state"]),
        (&"init".into(), &"done".into())
    );
    assert_eq!(setup["last_exit"], serde_json::json!({"code": 0}));
    assert!(setup["pid"].is_null() && setup["uptime_seconds"].is_null());

    let up = job(&s, "up");
    assert_eq!(
        (&up["kind"], &up["state"]),
        (&"main".into(), &"running".into())
    );
    assert!(up["pid"].as_i64().unwrap() > 0);
    assert!(up["uptime_seconds"].is_u64());
    assert_eq!(up["restarts"], 0);
    assert!(up["last_exit"].is_null() && up["ready_check_error"].is_null());

    let flaky = job(&s, "flaky");
    assert_eq!(flaky["last_exit"], serde_json::json!({"code": 3}));
    let left = flaky["next_start_in_seconds"].as_f64().unwrap();
    assert!(left > 20.0 && left <= 30.0, "{left}");
    assert!(flaky["pid"].is_null());

    assert_eq!(job(&s, "once")["state"], "exited");
    let held = job(&s, "held");
    assert_eq!(held["last_exit"], serde_json::json!({"signal": "TERM"}));

    let table = ctl(&socket, &["status"]);
    assert_eq!(table.code, 0);
    assert!(
        table.stdout.starts_with("phase: main; not ready: "),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("NAME   KIND  STATE"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("flaky  main  backoff ("),
        "{}",
        table.stdout
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn commands_act_on_main_jobs_and_refuse_what_they_cannot_do() {
    let socket = socket_path();
    let config = format!(
        r#"{{"jobs": {{"init": [{{"name": "setup", "cmd": ["true"]}}], "main": [{}}}, {}}}]}}}}"#,
        trapping("web"),
        trapping("worker")
    );
    let mut sv = start(&config, &socket);
    sv.wait_message("web", "web up", secs(10.0));
    sv.wait_message("worker", "worker up", secs(10.0));
    let first_pid = job(&status(&socket), "web")["pid"].as_i64().unwrap();

    assert_eq!(ctl(&socket, &["signal", "USR1", "web"]).code, 0);
    sv.wait_message("web", "web got USR1", secs(10.0));

    assert_eq!(ctl(&socket, &["restart", "web"]).code, 0);
    sv.wait_message("web", "web got TERM", secs(10.0));
    let s = wait_status(&socket, "web restarted", |s| {
        job(s, "web")["state"] == "running" && job(s, "web")["pid"].as_i64() != Some(first_pid)
    });
    assert_eq!(job(&s, "web")["restarts"], 1);

    assert_eq!(ctl(&socket, &["stop", "web"]).code, 0);
    wait_status(&socket, "web stopped", state_is("web", "stopped"));
    let refused = ctl(&socket, &["signal", "HUP", "web"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not running: web"),
        "{}",
        refused.stderr
    );
    assert_eq!(ctl(&socket, &["start", "web"]).code, 0);
    let before = wait_status(&socket, "web running again", state_is("web", "running"));
    // Up to its start, so that only what the commands below cause is new.
    let web_pid = &job(&before, "web")["pid"];
    sv.wait_message(
        "internal",
        &format!("job web started (pid {web_pid})"),
        secs(10.0),
    );

    let unknown = ctl(&socket, &["restart", "web", "nope"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown
            .stderr
            .contains("unknown job nope (jobs: setup, web, worker)"),
        "{}",
        unknown.stderr
    );
    let init = ctl(&socket, &["stop", "setup"]);
    assert_eq!(init.code, 2);
    assert!(
        init.stderr.contains("setup is an init job"),
        "{}",
        init.stderr
    );
    assert_eq!(ctl(&socket, &["signal", "BOGUS", "web"]).code, 2);
    assert_eq!(ctl(&socket, &["restart"]).code, 2);
    // Each answer came once the command was decided, so an accepted one would already have
    // signalled its jobs, and they say so within their 50 ms loop: 1 s is ample for that, or
    // for a job started again.
    sv.assert_none_for(
        "of a job signalled or started by a refused command",
        secs(1.0),
        |r| {
            let message = r["message"].as_str().unwrap_or_default();
            message.contains(" got ") || message.contains("started (pid")
        },
    );
    let after = status(&socket);
    for name in ["web", "worker"] {
        for field in ["pid", "restarts"] {
            assert_eq!(
                job(&after, name)[field],
                job(&before, name)[field],
                "{name} {field}"
            );
        }
    }

    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    let internal = sv.messages("internal");
    for command in [
        "signal USR1 web",
        "restart web",
        "stop web",
        "start web",
        "restart web nope",
        "status",
    ] {
        assert!(
            internal
                .iter()
                .any(|m| m == &format!("control: {command} (peer uid 0)")),
            "no record of {command}: {internal:?}"
        );
    }
}

#[test]
fn only_our_user_and_root_are_served_and_the_socket_is_private() {
    if !require(
        "root and the svtest user",
        is_root() && harness::user_exists("svtest"),
    ) {
        return;
    }
    let socket = socket_path();
    let mut sv = start(
        r#"{"jobs": {"main": [{"cmd": ["sleep", "100"]}]}}"#,
        &socket,
    );
    wait_status(&socket, "running", state_is("sleep", "running"));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let as_svtest = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=svtest",
                "--regid=svtest",
                "--clear-groups",
                "--",
                BIN,
            ])
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap()
    };
    let out = as_svtest(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // Even with the file opened up, the server refuses the peer by its uid.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_svtest(&["stop", "sleep"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied: uid") && err.contains("may not control"),
        "{err}"
    );
    assert_eq!(
        job(&status(&socket), "sleep")["state"],
        "running",
        "nothing done"
    );
    sv.wait_message(
        "internal",
        "control socket: refused a peer with uid",
        secs(5.0),
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_left_to_its_owner() {
    let socket = socket_path();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists(), "a stale socket file, nobody listening");
    let config = r#"{"jobs": {"main": [{"cmd": ["sleep", "100"]}]}}"#;
    let mut first = start(config, &socket);
    wait_status(&socket, "first answers", state_is("sleep", "running"));
    let first_pid = job(&status(&socket), "sleep")["pid"].clone();
    let mut second = start(config, &socket);
    second.wait_message("internal", "another simplevisor answers on", secs(10.0));
    second.wait_message("internal", "job sleep started", secs(10.0));
    assert_eq!(
        job(&status(&socket), "sleep")["pid"],
        first_pid,
        "still the first one's"
    );
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(secs(10.0)), 0);
    assert!(
        socket.exists(),
        "the second one left the first one's socket alone"
    );
    assert_eq!(job(&status(&socket), "sleep")["pid"], first_pid);
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(secs(10.0)), 0);
    assert!(!socket.exists());
}

#[test]
fn readiness_checks_of_each_kind_and_ones_that_fail_or_hang() {
    let socket = socket_path();
    let port = free_port();
    let closed = free_port();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let flag = std::env::temp_dir().join(format!("sv-ops-flag-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let config = format!(
        r#"{{"jobs": {{"main": [
            {{"name": "server", "cmd": ["sh", "-c", "sleep 0.3; exec python3 -m http.server {port} --bind 127.0.0.1"],
              "ready": {{"tcp": "127.0.0.1:{port}", "interval": "100ms"}}}},
            {{"name": "web", "cmd": ["sleep", "100"], "ready": {{"http": "http://127.0.0.1:{port}/", "interval": "100ms"}}}},
            {{"name": "flagged", "cmd": ["sleep", "100"], "ready": {{"exec": ["test", "-e", "{flag}"], "interval": "100ms"}}}},
            {{"name": "never", "cmd": ["sleep", "100"], "ready": {{"tcp": "127.0.0.1:{closed}", "interval": "100ms"}}}},
            {{"name": "hanging", "cmd": ["sleep", "100"], "ready": {{"http": "http://127.0.0.1:{hung_port}/", "interval": "100ms", "timeout": "300ms"}}}}
        ]}}}}"#,
        flag = flag.display()
    );
    let mut sv = start(&config, &socket);
    let s = wait_status(&socket, "server and web ready", |s| {
        job(s, "server")["state"] == "running" && job(s, "web")["state"] == "running"
    });
    assert_eq!(job(&s, "flagged")["state"], "starting");
    let health = ctl(&socket, &["health"]);
    assert_eq!(health.code, 1);
    assert!(
        health
            .stderr
            .contains("not ready: not running yet: flagged, never, hanging"),
        "{}",
        health.stderr
    );
    assert_eq!(ctl(&socket, &["health", "--live"]).code, 0);
    let s = wait_status(&socket, "check errors known", |s| {
        !job(s, "hanging")["ready_check_error"].is_null()
            && !job(s, "never")["ready_check_error"].is_null()
    });
    assert_eq!(
        job(&s, "hanging")["ready_check_error"],
        "no answer within 300ms"
    );
    assert!(
        job(&s, "never")["ready_check_error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{s}"
    );
    // A hanging check never holds up the loop.
    let asked = Instant::now();
    status(&socket);
    assert!(asked.elapsed() < secs(1.0));
    std::fs::write(&flag, "").unwrap();
    wait_status(&socket, "flagged ready", state_is("flagged", "running"));
    let _ = std::fs::remove_file(&flag);
    sv.wait_message("internal", "job flagged is ready", secs(5.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    drop(hung);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn after_chains_start_in_order_and_stop_in_reverse() {
    let socket = socket_path();
    let config = format!(
        r#"{{"jobs": {{"main": [{c}, "after": ["b"]}}, {a}}}, {b}, "after": ["a"]}}]}}}}"#,
        a = trapping("a"),
        b = trapping("b"),
        c = trapping("c")
    );
    let mut sv = start(&config, &socket);
    sv.wait_message("c", "c up", secs(10.0));
    let started: Vec<String> = sv
        .messages("internal")
        .into_iter()
        .filter(|m| m.starts_with("job ") && m.contains(" started"))
        .map(|m| m.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(started, ["a", "b", "c"]);
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    let got_term: Vec<String> = sv
        .seen
        .iter()
        .filter_map(|r| r["message"].as_str())
        .filter(|m| m.ends_with("got TERM"))
        .map(str::to_string)
        .collect();
    assert_eq!(got_term, ["c got TERM", "b got TERM", "a got TERM"]);
}

#[test]
fn a_cycle_in_after_is_a_configuration_error() {
    let dir = harness::TempDir::new("ops");
    let config = dir.write(
        "c.json",
        r#"{"jobs": {"main": [{"name": "a", "cmd": ["true"], "after": ["b"]}, {"name": "b", "cmd": ["true"], "after": ["a"]}]}}"#,
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jobs.main[0].after: the start order has a cycle: a waits for b waits for a"),
        "{err}"
    );
}

#[test]
fn during_shutdown_delay_health_fails_at_once_and_a_second_signal_stops() {
    let socket = socket_path();
    let config = format!(
        r#"{{"shutdown-delay": "30s", "jobs": {{"main": [{}}}]}}}}"#,
        trapping("web")
    );
    let mut sv = start(&config, &socket);
    sv.wait_message("web", "web up", secs(10.0));
    assert_eq!(ctl(&socket, &["health"]).code, 0);
    sv.signal(libc::SIGTERM);
    sv.wait_message("internal", "shutdown-delay", secs(5.0));
    let health = ctl(&socket, &["health"]);
    assert_eq!(health.code, 1);
    assert!(health.stderr.contains("shutting down"), "{}", health.stderr);
    let s = status(&socket);
    assert_eq!(s["phase"], "shutdown-delay");
    assert_eq!(
        job(&s, "web")["state"],
        "running",
        "jobs keep running meanwhile"
    );
    assert!(!sv.messages("web").contains(&"web got TERM".to_string()));
    let second = Instant::now();
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    assert!(second.elapsed() < secs(5.0));
    assert!(sv.messages("web").contains(&"web got TERM".to_string()));
}

#[test]
fn max_restarts_ends_everything_with_status_1() {
    let socket = socket_path();
    let config = format!(
        r#"{{"restart-backoff": {{"initial": "10ms", "max": "10ms"}}, "jobs": {{"main": [
            {{"name": "flaky", "cmd": ["sh", "-c", "echo try; exit 1"], "max-restarts": 3}}, {}}}
        ]}}}}"#,
        trapping("web")
    );
    let mut sv = start(&config, &socket);
    assert_eq!(sv.wait_exit(secs(15.0)), 1, "{}", sv.dump());
    assert_eq!(sv.messages("flaky").len(), 4, "3 restarts, then failed");
    assert!(sv.messages("web").contains(&"web got TERM".to_string()));
    assert!(
        sv.messages("internal")
            .iter()
            .any(|m| m.contains("job flaky failed") && m.contains("max-restarts 3")),
        "{}",
        sv.dump()
    );
}

#[test]
fn restart_and_start_act_on_jobs_in_backoff_and_exited_ones() {
    let socket = socket_path();
    let mut sv = start(
        r#"{"restart-backoff": {"initial": "60s", "max": "60s"}, "jobs": {"main": [
            {"name": "flaky", "cmd": ["sh", "-c", "echo run; exit 1"]},
            {"name": "once", "cmd": ["sh", "-c", "echo once"], "restart": "never"},
            {"name": "keep", "cmd": ["sleep", "100"]}
        ]}}"#,
        &socket,
    );
    wait_status(&socket, "flaky in backoff, once exited", |s| {
        job(s, "flaky")["state"] == "backoff" && job(s, "once")["state"] == "exited"
    });
    // Backoff of 60 s: restart starts it now.
    assert_eq!(ctl(&socket, &["restart", "flaky"]).code, 0);
    sv.wait_count("flaky", 2, secs(10.0));
    // An exited job is started again by `start` (and by `restart`).
    assert_eq!(ctl(&socket, &["start", "once"]).code, 0);
    sv.wait_count("once", 2, secs(10.0));
    assert_eq!(ctl(&socket, &["restart", "once"]).code, 0);
    sv.wait_count("once", 3, secs(10.0));
    let s = wait_status(&socket, "once exited again", state_is("once", "exited"));
    assert_eq!(job(&s, "once")["restarts"], 2);
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}

#[test]
fn status_says_why_a_start_failed() {
    let socket = socket_path();
    let config = r#"{"restart-backoff": {"initial": "10s"},
        "jobs": {"main": [{"name": "typo", "cmd": ["no-such-program-x1"]}]}}"#;
    let mut sv = start(config, &socket);
    let s = wait_status(&socket, "typo in backoff", |s| {
        job(s, "typo")["state"] == "backoff"
    });
    let last = &job(&s, "typo")["last_exit"];
    assert_eq!(last["code"], 127, "{s}");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no-such-program-x1")),
        "{s}"
    );
    let table = ctl(&socket, &["status"]);
    assert!(
        table.stdout.contains("typo: could not start: "),
        "{}",
        table.stdout
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}
