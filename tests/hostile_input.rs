//! Input an attacker or a slip of the keyboard could give, through the binary: every case is a
//! clear configuration error (exit 2, nothing started) with a bounded message, never a crash,
//! a hang, or a job that fails only after the init jobs ran.

mod harness;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::{BIN, TempDir, run, secs};

fn simplevisor(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SIMPLEVISOR_CONFIG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

/// `check` and `run` on a config file holding `bytes`: both exit 2 with the same message, and
/// `run` starts nothing. Returns the message.
fn refused(bytes: &[u8]) -> String {
    let dir = TempDir::new("hostile");
    let path = dir.0.join("simplevisor.json");
    std::fs::write(&path, bytes).unwrap();
    let path = path.to_str().unwrap();
    let check = simplevisor(&["check", "--no-vault", "--config", path]);
    let run = simplevisor(&["run", "--no-vault", "--config", path]);
    let message = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(check.status.code(), Some(2), "check: {message}");
    assert_eq!(run.status.code(), Some(2), "run: {message}");
    assert_eq!(String::from_utf8_lossy(&run.stderr), message);
    assert!(run.stdout.is_empty(), "run started something");
    assert!(!message.contains("panicked"), "{message}");
    message
}

fn job(extra: &str) -> String {
    format!(
        r#"{{"jobs": {{"init": [{{"cmd": ["true"]}}], "main": [{{"cmd": ["true"]{extra}}}]}}}}"#
    )
}

#[test]
fn an_endless_config_file_is_refused_at_once() {
    let started = Instant::now();
    let out = simplevisor(&["check", "--config", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/dev/zero: the config file is larger than 1 MiB"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_huge_unknown_key_gives_a_short_message() {
    let key = "k".repeat(900_000);
    let message = refused(format!(r#"{{"{key}": 1, "jobs": {{}}}}"#).as_bytes());
    assert!(message.len() < 2_000, "{} bytes", message.len());
    assert!(
        message.contains(r#"unknown key "kkkk"#) && message.contains("... (900000 bytes in all)"),
        "{message}"
    );
}

#[test]
fn thousands_of_mistakes_are_summed_up() {
    let keys: Vec<String> = (0..5000).map(|i| format!(r#""bad{i}": 1"#)).collect();
    let message = refused(format!(r#"{{{}, "jobs": {{}}}}"#, keys.join(",")).as_bytes());
    assert!(message.contains("5000 problem(s) found"), "{message}");
    assert!(message.contains("... and 4900 more"), "{message}");
    assert!(message.len() < 20_000, "{} bytes", message.len());
}

#[test]
fn syntax_errors_always_have_a_line_and_column() {
    assert!(refused(b"").contains("simplevisor.json:1:1: invalid JSON"));
    assert!(refused(b"\n").contains("simplevisor.json:2:1: invalid JSON"));
    let message = refused(b"{\n  \"jobs\xff\": {}}");
    assert!(
        message.contains("simplevisor.json:2:8: invalid JSON: invalid UTF-8"),
        "{message}"
    );
    let mut bytes = r#"{"jobs": {"main": [{"name": "é"#.as_bytes().to_vec();
    bytes.extend_from_slice(b"\xe2\"}]}}");
    let message = refused(&bytes);
    assert!(
        message.contains(":1:31: invalid JSON: invalid UTF-8"),
        "{message}"
    );
}

#[test]
fn values_that_would_fail_only_at_start_are_refused_before() {
    for (extra, path, says) in [
        (
            r#", "stop-timeout": "9223372036854775807s""#,
            "jobs.main[0].stop-timeout",
            "longer than a year",
        ),
        (
            r#", "stop-timeout": "8761h""#,
            "jobs.main[0].stop-timeout",
            "longer than a year",
        ),
        (
            r#", "kill-signal": "STOP""#,
            "jobs.main[0].kill-signal",
            "only pauses it",
        ),
        (
            r#", "kill-signal": "sigstop""#,
            "jobs.main[0].kill-signal",
            "only pauses it",
        ),
        (
            r#", "workdir": "/tmp\u0000x""#,
            "jobs.main[0].workdir",
            "NUL byte",
        ),
        (
            r#", "run-as": "root\u0000""#,
            "jobs.main[0].run-as",
            "NUL byte",
        ),
        (
            r#", "run-as": "4294967295""#,
            "jobs.main[0].run-as",
            "uid 4294967295 is not a usable id",
        ),
        (
            r#", "run-as": "0:4294967295""#,
            "jobs.main[0].run-as",
            "gid 4294967295 is not a usable id",
        ),
        (r#", "name": """#, "jobs.main[0].name", "must not be empty"),
        (
            r#", "name": "a\u001bb""#,
            "jobs.main[0].name",
            "control character",
        ),
        (r#", "name": "internal""#, "jobs.main[0].name", "reserved"),
    ] {
        let message = refused(job(extra).as_bytes());
        assert!(message.contains(&format!("{path}: ")), "{extra}: {message}");
        assert!(message.contains(says), "{extra}: {message}");
    }
    let long = "n".repeat(129);
    let message = refused(job(&format!(r#", "name": "{long}""#)).as_bytes());
    assert!(message.contains("longer than 128 bytes"), "{message}");
    let message = refused(br#"{"jobs": {"main": [{"cmd": ["sleep", "1\u0000"]}]}}"#);
    assert!(
        message.contains("jobs.main[0].cmd[1]: must not contain a NUL byte"),
        "{message}"
    );
    for (top, path) in [
        (r#""stop-timeout": "100000h""#, "stop-timeout"),
        (
            r#""restart-backoff": {"initial": "1s", "max": "9999999h"}"#,
            "restart-backoff.max",
        ),
        (
            r#""vault": {"startup-timeout": "9223372036854775807s"}"#,
            "vault.startup-timeout",
        ),
    ] {
        let message = refused(format!(r#"{{{top}, "jobs": {{}}}}"#).as_bytes());
        assert!(
            message.contains(&format!("{path}: ")) && message.contains("longer than a year"),
            "{top}: {message}"
        );
    }
}

#[test]
fn the_longest_allowed_durations_work() {
    let mut sv = run(
        r#"{"stop-timeout": "8760h", "restart-backoff": {"initial": "8760h", "max": "8760h", "reset-after": "8760h"},
            "vault": {"startup-timeout": "8760h"},
            "jobs": {"main": [{"cmd": ["sh", "-c", "echo up; exec sleep 100"], "restart": "always"}]}}"#,
    )
    .arg("--no-vault")
    .start();
    sv.wait_message("sh", "up", secs(10.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(
        sv.wait_exit(secs(10.0)),
        0,
        "a year-long stop-timeout must not crash the shutdown: {}",
        sv.dump()
    );
}

#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    for args in [&["--help"][..], &["--version"], &["schema"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And a full disk is an error, said on stderr.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(BIN)
        .arg("schema")
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write to stdout"));
    let _ = std::io::stdout().flush();
}
