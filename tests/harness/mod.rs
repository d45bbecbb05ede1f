//! Drives the built simplevisor binary: writes a config into a fresh temp dir, runs the binary
//! with stdout captured as JSON records, and always stops what it started.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

// Shared with tests/support (one rule for missing prerequisites); a test crate may include both.
pub mod control;
#[allow(clippy::duplicate_mod)]
mod prerequisite;
#[allow(unused_imports)]
pub use prerequisite::require;
#[allow(clippy::duplicate_mod)]
mod wait;
#[allow(unused_imports)]
pub use wait::wait_until;

pub const BIN: &str = env!("CARGO_BIN_EXE_simplevisor");

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "simplevisor-test-{label}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `name` has an entry in /etc/passwd (the test users scripts/setup makes).
pub fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .is_ok_and(|p| p.lines().any(|l| l.starts_with(&format!("{name}:"))))
}

/// Starts simplevisor with the JSON `config` and only the given environment (plus PATH).
pub fn start_with_env(config: &Value, env: &[(String, String)]) -> Supervisor {
    let text = config.to_string();
    let mut runner = run(&text).clear_env();
    for (key, value) in env {
        runner = runner.env(key, value);
    }
    runner.start()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A running simplevisor with its records arriving on a channel.
pub struct Supervisor {
    pub child: Child,
    records: Receiver<Value>,
    reader: Option<JoinHandle<()>>,
    pub seen: Vec<Value>,
    pub dir: TempDir,
    status: Option<i32>,
}

pub struct Run<'a> {
    config: &'a str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    clear_env: bool,
    wrapper: Vec<String>,
}

pub fn run(config: &str) -> Run<'_> {
    Run {
        config,
        args: vec![],
        env: vec![],
        clear_env: false,
        wrapper: vec![],
    }
}

impl<'a> Run<'a> {
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Only the variables given with `env` (plus PATH).
    pub fn clear_env(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Runs simplevisor under this command (e.g. `unshare --pid --fork --mount-proc`).
    pub fn wrapped(mut self, command: &[&str]) -> Self {
        self.wrapper = command.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn start(self) -> Supervisor {
        let dir = TempDir::new("run");
        let config = dir.write("simplevisor.json", self.config);
        let mut argv: Vec<String> = self.wrapper.clone();
        argv.push(BIN.into());
        argv.push("--config".into());
        argv.push(config.display().to_string());
        argv.extend(self.args);
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if self.clear_env {
            command.env_clear();
            command.env("PATH", std::env::var("PATH").unwrap_or_default());
        }
        command.env_remove("RUST_BACKTRACE");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn simplevisor");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let record: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON record: {e}: {line}"));
                if tx.send(record).is_err() {
                    break;
                }
            }
        });
        Supervisor {
            child,
            records: rx,
            reader: Some(reader),
            seen: Vec::new(),
            dir,
            status: None,
        }
    }
}

impl Supervisor {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a record matching `pred` (seen before or new), keeping every record seen.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(found) = self.seen.iter().find(|r| pred(r)) {
            return found.clone();
        }
        self.wait_for_new(what, timeout, pred)
    }

    /// Waits for a record whose message contains `text` (and of `process`, if given).
    pub fn wait_message(&mut self, process: &str, text: &str, timeout: Duration) -> Value {
        let p = process.to_string();
        let t = text.to_string();
        self.wait_for(
            &format!("from {process} containing {text:?}"),
            timeout,
            move |r| {
                r["process"] == p.as_str() && r["message"].as_str().is_some_and(|m| m.contains(&t))
            },
        )
    }

    /// Waits until `process` has written `n` lines.
    pub fn wait_count(&mut self, process: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.messages(process).len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = process.to_string();
            self.wait_for_new(&format!("{n} lines from {process}"), left, move |r| {
                r["process"] == p.as_str()
            });
        }
    }

    /// Like `wait_for`, but only records not seen before count.
    pub fn wait_for_new(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.records.recv_timeout(left) {
                Ok(record) => {
                    self.seen.push(record.clone());
                    if pred(&record) {
                        return record;
                    }
                }
                Err(_) => panic!(
                    "no record {what} within {timeout:?}; seen:\n{}",
                    self.dump()
                ),
            }
        }
    }

    /// Checks an absence: no record matching `pred` arrives during `window` (records seen
    /// before do not count; every record is kept). An absence can only be watched for a time:
    /// the caller says why `window` is long enough for what it would otherwise have seen.
    pub fn assert_none_for(&mut self, what: &str, window: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Disconnected: simplevisor has exited, nothing more can come.
            let Ok(record) = self.records.recv_timeout(left) else {
                return;
            };
            self.seen.push(record.clone());
            assert!(
                !pred(&record),
                "a record {what} within {window:?}: {record}; seen:\n{}",
                self.dump()
            );
        }
    }

    pub fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for exit; collects every remaining record. Returns the exit code (or 128 + sig).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                while let Ok(r) = self.records.try_recv() {
                    self.seen.push(r);
                }
                use std::os::unix::process::ExitStatusExt;
                let code = status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                self.status = Some(code);
                return code;
            }
            if Instant::now() > deadline {
                // Collect what arrived for the message.
                while let Ok(r) = self.records.try_recv() {
                    self.seen.push(r);
                }
                panic!(
                    "simplevisor did not exit within {timeout:?}; seen:\n{}",
                    self.dump()
                );
            }
            while let Ok(r) = self.records.try_recv() {
                self.seen.push(r);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Message values of one process, in order, as they came (objects stay objects).
    pub fn message_values(&self, process: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|r| r["process"] == process)
            .map(|r| &r["message"])
            .collect()
    }

    /// Messages of one process, in order.
    pub fn messages(&self, process: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|r| r["process"] == process)
            .map(|r| match &r["message"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // Stop it the way an orchestrator would, so its jobs are stopped too.
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Processes whose command line contains `marker` (to check nothing is left behind).
pub fn processes_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(marker) && !text.contains("pgrep") {
            found.push(pid);
        }
    }
    found
}

/// The processes whose parent is `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|child| {
            // The parent is the second field after the command, which ends with the last ')'.
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .is_some_and(|parent| parent == pid.to_string())
            })
        })
        .collect()
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The static release binary `scripts/build-static` makes for this machine (x86_64 or arm64).
pub fn static_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "target/{}-unknown-linux-gnu/release/simplevisor",
        std::env::consts::ARCH
    ))
}

/// Whether an ELF file asks for a program interpreter (a dynamic loader): a binary that does
/// cannot start in an empty root.
pub fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}
