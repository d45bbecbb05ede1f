//! What an attacker on the same machine tried against a running simplevisor, through the
//! binary: the control socket and its directory, requests, exec readiness checks, credential
//! files. Each test is the regression test of one finding (docs/reliability.md).

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use harness::{BIN, TempDir};

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
