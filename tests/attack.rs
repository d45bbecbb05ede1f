//! What an attacker on the same machine tried against a running simplevisor, through the
//! binary: the control socket and its directory, requests, exec readiness checks, credential
//! files. Each test is the regression test of one finding (docs/reliability.md).

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use harness::{BIN, Supervisor, TempDir, run, secs};

/// Starts simplevisor (without Vault) on `config` with its control socket at `socket`.
fn start(config: &str, socket: &Path) -> Supervisor {
    let mut value: Value = serde_json::from_str(config).unwrap();
    value["control-socket"] = Value::String(socket.display().to_string());
    run(&value.to_string()).arg("--no-vault").start()
}

/// Sends `request` as it is (one line) and returns the answer.
fn raw(socket: &Path, request: &str) -> Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(secs(5.0))).unwrap();
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|_| panic!("not JSON: {answer:?}"))
}

/// Polls `status --json` until `pred` holds.
fn wait_status(socket: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + secs(15.0);
    loop {
        let out = ctl(socket, &["status", "--json"]);
        if out.code == 0 {
            let value: Value = serde_json::from_str(&out.stdout).unwrap();
            if pred(&value) {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "{what}: never ({})", out.stderr);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_of(status: &Value, name: &str) -> String {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .map(|j| j["state"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

struct Ctl {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ctl(socket: &Path, args: &[&str]) -> Ctl {
    let out = Command::new(BIN)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    Ctl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A one-shot control server: answers the first request with `answer` and hands the request
/// back.
fn answer_once(socket: PathBuf, answer: Value) -> std::thread::JoinHandle<Value> {
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        (&stream)
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        serde_json::from_str(&line).unwrap()
    })
}

#[test]
fn reload_and_rotate_print_the_lines_of_the_answer() {
    let dir = TempDir::new("attack-reload");
    for command in ["reload", "rotate"] {
        let socket = dir.path().join(format!("{command}-ok.sock"));
        let server = answer_once(
            socket.clone(),
            serde_json::json!({"ok": true, "lines": ["web: restarted", "api: started"]}),
        );
        let out = ctl(&socket, &[command]);
        assert_eq!(
            server.join().unwrap(),
            serde_json::json!({"command": command})
        );
        assert_eq!(out.code, 0, "{command}: {}", out.stderr);
        assert_eq!(out.stdout, "web: restarted\napi: started\n");

        let socket = dir.path().join(format!("{command}-refused.sock"));
        let server = answer_once(
            socket.clone(),
            serde_json::json!({"ok": false, "code": 1, "error": "line 3: bad\nline 9: worse"}),
        );
        let out = ctl(&socket, &[command]);
        server.join().unwrap();
        assert_eq!(out.code, 1);
        assert_eq!(out.stdout, "");
        assert!(
            out.stderr.contains("line 3: bad\nline 9: worse"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn duplicate_keys_and_wrong_types_are_usage_errors() {
    let dir = TempDir::new("attack-strict");
    let socket = dir.path().join("sv.sock");
    let mut sv = start(
        r#"{"jobs": {"main": [{"name": "web", "cmd": ["sleep", "100"]}]}}"#,
        &socket,
    );
    wait_status(&socket, "web running", |s| state_of(s, "web") == "running");
    for request in [
        r#"{"command":"status","command":"stop","jobs":["web"]}"#,
        r#"{"command":"stop","jobs":["nope"],"jobs":["web"]}"#,
        r#"{"command":"health","live":"yes"}"#,
        r#"{"command":"stop","jobs":["web"],"force":true}"#,
    ] {
        let answer = raw(&socket, request);
        assert_eq!(answer["ok"], false, "{request}: {answer}");
        assert_eq!(answer["code"], 2, "{request}: {answer}");
    }
    let status = wait_status(&socket, "status", |_| true);
    assert_eq!(state_of(&status, "web"), "running", "nothing was stopped");
    sv.wait_message("internal", "is given twice in the request", secs(5.0));
    sv.signal(libc::SIGTERM);
    assert_eq!(sv.wait_exit(secs(10.0)), 0);
}
