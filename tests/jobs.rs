//! Jobs end to end through the binary: init order and failure, restarts and backoff timing,
//! essential jobs and exit statuses, spawn hygiene, start failures, the environment.

mod harness;

use harness::{processes_with, run, secs};

const NO_VAULT: &str = "--no-vault";

#[test]
fn init_jobs_run_in_order_before_main_jobs() {
    let mut sv = run(r#"{
        "env": {"pass": ["PATH"]},
        "jobs": {
            "init": [
                {"name": "first", "cmd": ["sh", "-c", "sleep 0.3; echo one > order"]},
                {"name": "second", "cmd": ["sh", "-c", "echo two >> order"]}
            ],
            "main": [
                {"name": "reader", "cmd": ["cat", "order"], "restart": "never"}
            ]
        }
    }"#)
    .arg(NO_VAULT)
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    assert_eq!(sv.messages("reader"), ["one", "two"]);
    let internal = sv.messages("internal").join("\n");
    assert!(internal.contains("job first started (pid"), "{internal}");
    assert!(
        internal.contains("job first exited with status 0"),
        "{internal}"
    );
}

#[test]
fn a_failing_init_job_stops_everything_with_status_1() {
    let mut sv = run(r#"{
        "jobs": {
            "init": [
                {"name": "migrate", "cmd": ["sh", "-c", "echo broken >&2; exit 4"]},
                {"name": "never", "cmd": ["sh", "-c", "echo must not run"]}
            ],
            "main": [{"name": "web", "cmd": ["sh", "-c", "echo must not run"]}]
        }
    }"#)
    .arg(NO_VAULT)
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 1);
    let broken = sv
        .seen
        .iter()
        .find(|r| r["process"] == "migrate")
        .expect("the init job's stderr");
    assert_eq!(broken["stream"], 1);
    assert_eq!(broken["message"], "broken");
    assert!(sv.messages("never").is_empty() && sv.messages("web").is_empty());
    assert!(
        sv.messages("internal")
            .join("\n")
            .contains("migrate exited with status 4")
    );
}

#[test]
fn an_init_job_that_cannot_start_is_fatal() {
    let mut sv = run(
        r#"{"jobs": {"init": [{"name": "x", "cmd": ["/nonexistent/tool"]}],
                                   "main": [{"cmd": ["sleep", "100"]}]}}"#,
    )
    .arg(NO_VAULT)
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 1);
    let internal = sv.messages("internal").join("\n");
    assert!(
        internal.contains("job x could not be started: cannot execute /nonexistent/tool: No such file or directory"),
        "{internal}"
    );
}

#[test]
fn no_main_jobs_exits_0_after_the_init_jobs() {
    let mut sv = run(r#"{"jobs": {"init": [{"cmd": ["true"]}]}}"#)
        .arg(NO_VAULT)
        .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}

#[test]
fn main_jobs_restart_with_exponential_backoff() {
    let mut sv = run(r#"{
        "restart-backoff": {"initial": "200ms", "multiplier": 2, "max": "10s", "reset-after": "10s"},
        "jobs": {"main": [{"name": "flappy", "cmd": ["sh", "-c", "echo run"]}]}
    }"#)
    .arg(NO_VAULT)
    .start();
    sv.wait_message("internal", "(attempt 4)", secs(10.0));
    let internal = sv.messages("internal").join("\n");
    for (n, delay) in [(1, "200ms"), (2, "400ms"), (3, "800ms"), (4, "1.6s")] {
        assert!(
            internal.contains(&format!("restarting job flappy in {delay} (attempt {n})")),
            "{internal}"
        );
    }
}

#[test]
fn restart_delays_are_respected() {
    let mut sv = run(r#"{
        "restart-backoff": {"initial": "300ms", "multiplier": 2, "max": "10s"},
        "jobs": {"main": [{"name": "quick", "cmd": ["sh", "-c", "date +%s.%N"]}]}
    }"#)
    .arg(NO_VAULT)
    .start();
    sv.wait_count("quick", 4, secs(10.0));
    let times: Vec<f64> = sv
        .messages("quick")
        .iter()
        .map(|m| m.parse::<f64>().unwrap())
        .collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Each gap is at least its delay; the upper bound is loose because a busy machine adds
    // scheduling latency (timing targets belong to benchmarks, not tests).
    for (gap, delay) in gaps.iter().zip([0.3, 0.6, 1.2]) {
        assert!(*gap >= delay - 0.01, "gap {gap} < delay {delay}: {gaps:?}");
        assert!(
            *gap < delay + 1.0,
            "gap {gap} far above delay {delay}: {gaps:?}"
        );
    }
}

#[test]
fn on_failure_and_never_policies_and_the_final_status() {
    let mut sv = run(r#"{
        "restart-backoff": {"initial": "100ms"},
        "jobs": {"main": [
            {"name": "ok", "cmd": ["true"], "restart": "on-failure"},
            {"name": "bad", "cmd": ["sh", "-c", "exit 3"], "restart": "never"}
        ]}
    }"#)
    .arg(NO_VAULT)
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 1, "one main job failed");
    let internal = sv.messages("internal").join("\n");
    assert!(
        internal.contains("all main jobs finished; exit status 1"),
        "{internal}"
    );
    assert!(!internal.contains("restarting"), "{internal}");

    let mut sv = run(r#"{"jobs": {"main": [{"cmd": ["true"], "restart": "on-failure"}]}}"#)
        .arg(NO_VAULT)
        .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}

#[test]
fn an_essential_job_ends_everything_with_its_status() {
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "app", "cmd": ["sh", "-c", "sleep 0.3; exit 42"], "essential": true},
        {"name": "sidecar", "cmd": ["sleep", "1000.5"]}
    ]}}"#)
    .arg(NO_VAULT)
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 42);
    assert!(
        processes_with("sleep 1000.5").is_empty(),
        "the sidecar was stopped"
    );

    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "app", "cmd": ["sh", "-c", "kill -KILL $$"], "essential": true}
    ]}}"#)
    .arg(NO_VAULT)
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 137, "128 + KILL");
}

#[test]
fn a_missing_main_binary_is_retried_with_backoff() {
    let mut sv = run(r#"{
        "restart-backoff": {"initial": "100ms"},
        "jobs": {"main": [{"name": "ghost", "cmd": ["no-such-command-anywhere"]}]}
    }"#)
    .arg(NO_VAULT)
    .env("PATH", "/usr/bin:/bin")
    .start();
    sv.wait_message("internal", "(attempt 2)", secs(10.0));
    let internal = sv.messages("internal").join("\n");
    assert!(
        internal.contains(
            "job ghost could not be started: no-such-command-anywhere: command not found in PATH /usr/bin:/bin"
        ),
        "{internal}"
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}

#[test]
fn jobs_start_clean_signals_fds_stdin_and_session() {
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "signals", "cmd": ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], "restart": "never"},
        {"name": "fds", "cmd": ["ls", "/proc/self/fd"], "restart": "never"},
        {"name": "stdin", "cmd": ["readlink", "/proc/self/fd/0"], "restart": "never"},
        {"name": "session", "cmd": ["sh", "-c", "echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)"], "restart": "never"}
    ]}}"#)
    .arg(NO_VAULT)
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    assert_eq!(
        sv.messages("signals"),
        ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]
    );
    // 0, 1, 2 and the directory ls itself is reading.
    assert_eq!(sv.messages("fds"), ["0", "1", "2", "3"]);
    assert_eq!(sv.messages("stdin"), ["/dev/null"]);
    let session = &sv.messages("session")[0];
    let ids: Vec<&str> = session.split(' ').collect();
    assert_eq!(ids[0], ids[1], "process group = pid: {session}");
    assert_eq!(ids[0], ids[2], "session = pid: {session}");
}

#[test]
fn inherited_descriptors_do_not_reach_jobs() {
    // simplevisor itself inherits fd 7 without close-on-exec; the job must not see it.
    let mut sv = run(r#"{"jobs": {"main": [{"name": "fds", "cmd": ["ls", "/proc/self/fd"], "restart": "never"}]}}"#)
        .arg(NO_VAULT)
        .wrapped(&["sh", "-c", "exec 7</dev/null; exec \"$@\"", "sh"])
        .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    assert_eq!(sv.messages("fds"), ["0", "1", "2", "3"]);
}

#[test]
fn the_environment_is_filtered_and_credentials_never_leak() {
    let mut sv = run(r#"{
        "env": {"pass-all": true},
        "jobs": {"main": [{"name": "env", "cmd": ["env"], "restart": "never"}]}
    }"#)
    .arg(NO_VAULT)
    .env("VAULT_TOKEN", "s.secret-token")
    .env("VAULT_SECRET_ID", "secret-id")
    .env("VAULT_ROLE_ID", "role-id")
    .env("PLAIN", "visible")
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    let env = sv.messages("env");
    assert!(env.contains(&"PLAIN=visible".to_string()), "{env:?}");
    assert!(!env.iter().any(|l| l.starts_with("VAULT_")), "{env:?}");

    let mut sv = run(r#"{
        "env": {"pass": ["PATH", "KEEP", "VAULT_TOKEN"]},
        "jobs": {"main": [{"name": "env", "cmd": ["env"], "restart": "never"}]}
    }"#)
    .arg(NO_VAULT)
    .env("KEEP", "1")
    .env("DROP", "2")
    .env("VAULT_TOKEN", "named-so-passed")
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    let mut env = sv.messages("env");
    env.sort();
    let path = format!("PATH={}", std::env::var("PATH").unwrap());
    assert_eq!(
        env,
        ["KEEP=1", path.as_str(), "VAULT_TOKEN=named-so-passed"]
    );
}

#[test]
fn no_vault_uses_literal_values_and_renders_templates() {
    let mut sv = run(r#"{
        "env": {
            "pass": ["DB_USER", "DB_URL"],
            "vault-replace": ["DB_USER", "DB_PASSWORD", "ABSENT"],
            "vault-template": ["DB_URL"],
            "vault-token": true
        },
        "jobs": {"main": [{"name": "env", "cmd": ["/usr/bin/env"], "restart": "never"}]}
    }"#)
    .arg(NO_VAULT)
    .env("DB_USER", "dev")
    .env("DB_PASSWORD", "devpass")
    .env(
        "DB_URL",
        "postgres://{{ .DB_USER }}:{{ .DB_PASSWORD }}@localhost/app",
    )
    .start();
    assert_eq!(sv.wait_exit(secs(10.0)), 0, "{}", sv.dump());
    let mut env = sv.messages("env");
    env.sort();
    assert_eq!(
        env,
        ["DB_URL=postgres://dev:devpass@localhost/app", "DB_USER=dev"]
    );
    let warning = sv
        .seen
        .iter()
        .find(|r| {
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("vault-token is ignored"))
        })
        .expect("a warning about vault-token");
    assert_eq!(warning["stream"], 1);
}

#[test]
fn a_job_s_leftover_processes_are_stopped_before_it_restarts() {
    let mut sv = run(r#"{
        "restart-backoff": {"initial": "100ms"},
        "jobs": {"main": [{"name": "forker", "cmd": ["sh", "-c", "sleep 1000.25 & echo forked"]}]}
    }"#)
    .arg(NO_VAULT)
    .start();
    sv.wait_message("internal", "(attempt 3)", secs(10.0));
    let internal = sv.messages("internal").join("\n");
    assert!(
        internal.contains("job forker left processes in its group; sending TERM"),
        "{internal}"
    );
    assert!(
        processes_with("sleep 1000.25").len() <= 1,
        "leftovers accumulate: {:?}",
        processes_with("sleep 1000.25")
    );
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
    assert!(processes_with("sleep 1000.25").is_empty());
}
