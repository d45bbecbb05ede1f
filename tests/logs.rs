//! The log relay through the binary: every line of every job arrives once and in order, long
//! lines are split, JSON lines are embedded, and a stdout that goes away does not stop
//! supervision.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::{BIN, TempDir, children, run, secs, wait_until};
use serde_json::Value;

#[test]
fn every_line_arrives_once_in_order_with_its_stream() {
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "out", "cmd": ["sh", "-c", "seq 1 20000"], "restart": "never"},
        {"name": "err", "cmd": ["sh", "-c", "seq 1 5000 >&2; printf 'no newline at the end' >&2"], "restart": "never"}
    ]}}"#)
    .arg("--no-vault")
    .start();
    assert_eq!(sv.wait_exit(secs(30.0)), 0);
    let out: Vec<String> = (1..=20000).map(|n| n.to_string()).collect();
    assert_eq!(sv.messages("out"), out);
    let mut err: Vec<String> = (1..=5000).map(|n| n.to_string()).collect();
    err.push("no newline at the end".into());
    assert_eq!(sv.messages("err"), err);
    let streams: Vec<&Value> = sv
        .seen
        .iter()
        .filter(|r| r["process"] == "err")
        .map(|r| &r["stream"])
        .collect();
    assert!(streams.iter().all(|s| **s == 1));
    // The job's last line comes before its exit record.
    let last_line = sv
        .seen
        .iter()
        .position(|r| r["message"] == "20000")
        .unwrap();
    let exit = sv
        .seen
        .iter()
        .position(|r| {
            r["message"]
                .as_str()
                .is_some_and(|m| m == "job out exited with status 0")
        })
        .unwrap();
    assert!(last_line < exit);
}

#[test]
fn long_lines_are_split_and_json_lines_embedded() {
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "long", "cmd": ["sh", "-c", "head -c 150000 /dev/zero | tr '\\0' a; echo"], "restart": "never"},
        {"name": "structured", "cmd": ["sh", "-c", "echo '  {\"level\":\"warn\",\"n\":1}  '; echo '[1,2]'; echo 'plain'"],
         "log-format": "json", "restart": "never"}
    ]}}"#)
    .arg("--no-vault")
    .start();
    assert_eq!(sv.wait_exit(secs(30.0)), 0);
    let sizes: Vec<usize> = sv.messages("long").iter().map(String::len).collect();
    assert_eq!(sizes, [65536, 65536, 150000 - 2 * 65536]);
    let structured = sv.message_values("structured");
    assert_eq!(structured[0]["level"], "warn");
    assert_eq!(*structured[1], Value::String("[1,2]".into()));
    assert_eq!(*structured[2], Value::String("plain".into()));
}

/// A JSON line is measured by its object, without the white space around it (docs/logging.md): two spaces, an
/// object of exactly 64 KiB and two spaces are one record whose message is the object.
#[test]
fn a_64_kib_json_object_with_white_space_around_it_is_one_record() {
    // `{"a":"` + 65,528 letters + `"}` is 65,536 bytes.
    let mut sv = run(r#"{"jobs": {"main": [
        {"name": "structured", "cmd": ["sh", "-c", "printf '  {\"a\":\"'; head -c 65528 /dev/zero | tr '\\0' x; printf '\"}  \\n'; echo after"],
         "log-format": "json", "restart": "never"}
    ]}}"#)
    .arg("--no-vault")
    .start();
    assert_eq!(sv.wait_exit(secs(30.0)), 0);
    let structured = sv.message_values("structured");
    assert_eq!(
        structured.len(),
        2,
        "{:?}",
        structured
            .iter()
            .map(|m| m.to_string().len())
            .collect::<Vec<_>>()
    );
    assert_eq!(structured[0]["a"].as_str().map(str::len), Some(65_528));
    assert_eq!(*structured[1], Value::String("after".into()));
}

#[test]
fn a_closed_stdout_is_reported_once_and_jobs_stay_supervised() {
    let dir = TempDir::new("logs");
    let config = dir.write(
        "c.json",
        r#"{"jobs": {"main": [{"name": "chatty", "cmd": ["sh", "-c", "while :; do echo line; sleep 0.01; done"]}]}}"#,
    );
    let mut child = Command::new(BIN)
        .args(["--no-vault", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    drop(stdout); // the reader goes away: EPIPE from now on
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said: Vec<String> = Vec::new();
    wait_until("a report of the closed stdout", secs(10.0), || {
        said.extend(lines.try_iter());
        said.iter().any(|l| l.contains("writing to stdout failed"))
    });
    // After the report, chatty goes on writing a line every 10 ms, each one failing: 300 ms
    // of that is about 30 failed writes, enough to show a failure is neither fatal nor
    // reported again.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "simplevisor died with its stdout"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + secs(10.0);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "a clean shutdown, not a crash");
    reader.join().unwrap();
    said.extend(lines.try_iter());
    let reports: Vec<&str> = said
        .iter()
        .map(String::as_str)
        .filter(|l| l.contains("writing to stdout failed"))
        .collect();
    assert_eq!(reports.len(), 1, "{said:?}");
    let record: Value = serde_json::from_str(reports[0]).unwrap();
    assert_eq!(record["process"], "internal");
    assert_eq!(record["stream"], 1);
}

/// Whether `pid` sleeps in write(2): a writer to a full pipe.
fn blocked_writing(pid: i32) -> bool {
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    syscall.split(' ').next() == Some(&libc::SYS_write.to_string()) && state == Some("S")
}

/// The bytes `pid` has written so far.
fn written_bytes(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_blocked_stdout_blocks_the_jobs_not_the_memory() {
    let dir = TempDir::new("logs");
    // About 30 MB of output, far more than the queue and the pipes hold together.
    let config = dir.write(
        "c.json",
        r#"{"jobs": {"main": [{"name": "flood", "cmd": ["sh", "-c", "seq -f '%030g' 1 1000000; echo done > flood-finished"], "restart": "never"}]}}"#,
    );
    let mut child = Command::new(BIN)
        .args(["--no-vault", "--config", config.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads: the job must block, simplevisor must not buffer it all. Held back is seq
    // (the job's child) asleep in write(2) having written nothing more for 200 ms: its pipe
    // is full and nobody drains it, where a simplevisor buffering everything would drain it
    // at once.
    let sv = child.id() as i32;
    let mut since: Option<(u64, Instant)> = None;
    wait_until("seq held back, asleep in write(2)", secs(20.0), || {
        let writer = children(sv)
            .into_iter()
            .flat_map(children)
            .find(|&pid| blocked_writing(pid));
        let Some(written) = writer.map(written_bytes) else {
            since = None;
            return false;
        };
        match since {
            Some((before, at)) if before == written => at.elapsed() >= secs(0.2),
            _ => {
                since = Some((written, Instant::now()));
                false
            }
        }
    });
    let rss_blocked = rss_kib(child.id());
    assert!(
        !dir.path().join("flood-finished").exists(),
        "the job was not held back"
    );
    let before = rss_kib(child.id());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut expected = 1u64;
    let mut peak = before;
    for line in stdout.lines() {
        let line = line.unwrap();
        let record: Value = serde_json::from_str(&line).unwrap();
        if record["process"] == "flood" {
            let n: f64 = record["message"].as_str().unwrap().parse().unwrap();
            assert_eq!(n as u64, expected, "a line was lost or reordered");
            expected += 1;
            if expected.is_multiple_of(100_000) {
                peak = peak.max(rss_kib(child.id()));
            }
        }
    }
    assert_eq!(expected, 1_000_001);
    assert!(child.wait().unwrap().success());
    // Bounded: the 1 MiB queue and read buffers, not the 30 MB the job wrote.
    assert!(
        rss_blocked < 16 * 1024,
        "RSS while blocked: {rss_blocked} KiB"
    );
    assert!(peak < 16 * 1024, "peak RSS while flooding: {peak} KiB");
}
