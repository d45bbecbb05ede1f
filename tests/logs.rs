//! The log relay through the binary: every line of every job arrives once and in order, long
//! lines are split, JSON lines are embedded, and a stdout that goes away does not stop
//! supervision.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{BIN, TempDir, run, secs};
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
    std::thread::sleep(Duration::from_millis(500));
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
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("writing to stdout failed"))
        .collect();
    assert_eq!(reports.len(), 1, "{stderr}");
    let record: Value = serde_json::from_str(reports[0]).unwrap();
    assert_eq!(record["process"], "internal");
    assert_eq!(record["stream"], 1);
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
    // Nobody reads for a while: the job must block, simplevisor must not buffer it all.
    std::thread::sleep(Duration::from_millis(1500));
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
