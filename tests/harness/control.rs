//! Talking to a running simplevisor through its control socket, as a user would: the
//! `simplevisor status|stop|reload|...` commands, and waits on what `status` says.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BIN, Supervisor, run, secs};

/// A socket path of this test's own (short enough for sun_path), removed first.
pub fn socket_path() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "sv-ops-{}-{}.sock",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// `config`'s JSON with `"control-socket"` set to `socket`.
pub fn with_socket(config: &str, socket: &Path) -> String {
    let mut value: Value = serde_json::from_str(config).unwrap();
    value["control-socket"] = Value::String(socket.display().to_string());
    value.to_string()
}

pub struct Ctl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn ctl(socket: &Path, args: &[&str]) -> Ctl {
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

pub fn status(socket: &Path) -> Value {
    let out = ctl(socket, &["status", "--json"]);
    assert_eq!(out.code, 0, "status: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

pub fn job<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {status}"))
}

/// Polls `status --json` until `pred` holds.
pub fn wait_status(socket: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + secs(15.0);
    loop {
        if socket.exists() {
            let out = ctl(socket, &["status", "--json"]);
            if out.code == 0 {
                let value: Value = serde_json::from_str(&out.stdout).unwrap();
                if pred(&value) {
                    return value;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: never; last status {value}"
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the socket never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `config` (with its control socket at `socket`) with `--no-vault`.
pub fn start(config: &str, socket: &Path) -> Supervisor {
    run(&with_socket(config, socket)).arg("--no-vault").start()
}
