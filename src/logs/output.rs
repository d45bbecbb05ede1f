//! The stdout writer: a thread doing blocking `write_all` on fd 1, fed through a bounded queue.
//! The event loop never blocks on stdout; when the queue is full it stops reading job pipes
//! (so jobs block on their pipes: backpressure) until [`Output::wake_fd`] says there is room.
//!
//! Job records count against [`HIGH_WATER`]. simplevisor's own records ([`Logger`]) go through
//! the same FIFO queue, so records never interleave and keep their order, but they never wait
//! for room: the event loop must stay able to supervise while stdout is stuck. They have their
//! own bound ([`INTERNAL_LIMIT`]); past it they are counted, dropped, and the count is reported
//! once stdout moves again, so memory stays bounded even if stdout never does.
//!
//! When writing to stdout fails (EPIPE, EBADF, …) the writer reports it once on stderr, as an
//! internal record, and from then on discards what it is given: jobs keep running and being
//! supervised, and nothing panics.

use std::collections::VecDeque;
#[cfg(test)]
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::INTERNAL;
use super::encode;
use crate::config::LogFormat;

/// Job records queued or being written above which [`Output::has_room`] says no.
pub const HIGH_WATER: usize = 1 << 20;
/// After `has_room` said no, the wake-up fires once the queue is down to this.
pub const LOW_WATER: usize = 256 << 10;
/// The most bytes of internal records the queue holds at once.
pub const INTERNAL_LIMIT: usize = 1 << 20;

/// The writer only moves buffers and calls `write(2)`.
const WRITER_STACK: usize = 64 << 10;

/// Owned by the event loop.
pub struct Output {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// A cloneable, thread-safe handle for simplevisor's own records.
#[derive(Clone)]
pub struct Logger {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the queue gets a batch or the writer must stop.
    work: Condvar,
    /// An eventfd, readable once the queue drained to `LOW_WATER` after being full.
    wake: EventFd,
    stdout: Sink,
    stderr: Sink,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Batch>,
    /// Job record bytes queued or being written.
    job_bytes: usize,
    /// Internal record bytes queued or being written.
    internal_bytes: usize,
    /// Internal records dropped since the last report of them.
    dropped_internal: u64,
    /// `has_room` said no and the wake-up has not fired yet.
    want_wake: bool,
    /// `finish` was called: write what is queued, then end.
    stopping: bool,
    /// The writer has ended; internal records are written directly.
    stopped: bool,
    /// A write to stdout failed; everything is discarded from then on.
    broken: bool,
}

struct Batch {
    bytes: Vec<u8>,
    internal: bool,
}

/// Where records go: fd 1 or 2 of the process (never closed by us), or a test's pipe.
struct Sink {
    fd: RawFd,
    _owned: Option<OwnedFd>,
}

impl Sink {
    fn process(fd: RawFd) -> Sink {
        Sink { fd, _owned: None }
    }

    /// Blocking `write_all`; a slow reader is backpressure, not an error.
    fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes.
            let written = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if written < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[written.unsigned_abs()..];
        }
        Ok(())
    }
}

impl Output {
    /// Starts the writer thread on fd 1. Call after signals are blocked (the thread inherits
    /// the mask).
    pub fn start() -> std::io::Result<(Output, Logger)> {
        Output::start_on_sinks(
            Sink::process(libc::STDOUT_FILENO),
            Sink::process(libc::STDERR_FILENO),
        )
    }

    /// Starts the writer on `stdout`, reporting a failure of it on `stderr`.
    #[cfg(test)]
    pub fn start_on(stdout: OwnedFd, stderr: OwnedFd) -> std::io::Result<(Output, Logger)> {
        let sink = |fd: OwnedFd| Sink {
            fd: fd.as_raw_fd(),
            _owned: Some(fd),
        };
        Output::start_on_sinks(sink(stdout), sink(stderr))
    }

    fn start_on_sinks(stdout: Sink, stderr: Sink) -> std::io::Result<(Output, Logger)> {
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(std::io::Error::from)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            wake,
            stdout,
            stderr,
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("stdout".into())
            .stack_size(WRITER_STACK)
            .spawn(move || write_loop(&writer_shared))?;
        let logger = Logger {
            shared: Arc::clone(&shared),
        };
        Ok((
            Output {
                shared,
                writer: Some(writer),
            },
            logger,
        ))
    }

    /// True when the queue can take another batch of job records. When it says no, poll
    /// [`Output::wake_fd`] before reading job pipes again.
    pub fn has_room(&self) -> bool {
        let mut state = self.shared.lock();
        if state.job_bytes < HIGH_WATER {
            return true;
        }
        state.want_wake = true;
        false
    }

    /// Queues a batch of encoded job records; never blocks (the bound may be exceeded by this
    /// one batch, which is why callers check `has_room` before reading more).
    pub fn send(&self, batch: Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        let mut state = self.shared.lock();
        state.job_bytes += batch.len();
        state.queue.push_back(Batch {
            bytes: batch,
            internal: false,
        });
        drop(state);
        self.shared.work.notify_one();
    }

    /// Readable when the queue has drained below its low-water mark after being full.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.shared.wake.as_fd()
    }

    /// Clears the wake-up (after `wake_fd` polled readable).
    pub fn clear_wake(&self) {
        // EAGAIN (nothing to clear) is fine.
        let _ = self.shared.wake.read();
    }

    /// Writes everything queued, then stops the thread. Called once, before exit. Blocks as
    /// long as stdout does: lines are never dropped, not even at exit.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        self.shared.lock().stopping = true;
        self.shared.work.notify_one();
        // The writer cannot panic (panic = abort in release); nothing to report if it did.
        let _ = writer.join();
    }
}

#[cfg(test)]
impl Output {
    /// Job record bytes queued or being written.
    pub fn shared_job_bytes(&self) -> usize {
        self.shared.lock().job_bytes
    }
}

impl Drop for Output {
    /// Without `finish` (an early return or a panic), the writer still writes what is queued
    /// but nobody waits for it: waiting on a stuck stdout here could hang forever.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            self.shared.lock().stopping = true;
            self.shared.work.notify_one();
        }
    }
}

impl Logger {
    /// An information record (stream 0).
    pub fn info(&self, message: &str) {
        self.shared.internal(0, message);
    }

    /// A warning or error record (stream 1).
    pub fn error(&self, message: &str) {
        self.shared.internal(1, message);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn internal_record(&self, stream: u8, message: &str) -> Vec<u8> {
        let mut record = Vec::with_capacity(message.len() + 64);
        encode::record(
            &mut record,
            INTERNAL,
            crate::time::unix_now(),
            stream,
            message.as_bytes(),
            LogFormat::Text,
        );
        record
    }

    fn internal(&self, stream: u8, message: &str) {
        let record = self.internal_record(stream, message);
        let mut state = self.lock();
        if state.stopped {
            // The writer is gone (after `finish`); the lock keeps records whole.
            if !state.broken {
                let _ = self.stdout.write_all(&record);
            }
            return;
        }
        if state.internal_bytes + record.len() > INTERNAL_LIMIT {
            state.dropped_internal += 1;
            return;
        }
        if state.dropped_internal > 0 {
            let note = self.internal_record(
                1,
                &format!(
                    "{} internal records were dropped while stdout was blocked",
                    state.dropped_internal
                ),
            );
            state.dropped_internal = 0;
            state.internal_bytes += note.len();
            state.queue.push_back(Batch {
                bytes: note,
                internal: true,
            });
        }
        state.internal_bytes += record.len();
        state.queue.push_back(Batch {
            bytes: record,
            internal: true,
        });
        drop(state);
        self.work.notify_one();
    }

    /// Rings the eventfd. It is non-blocking and its counter cannot realistically overflow.
    fn wake(&self) {
        let _ = self.wake.write(1);
    }
}

fn write_loop(shared: &Shared) {
    loop {
        let (batch, broken) = {
            let mut state = shared.lock();
            loop {
                if let Some(batch) = state.queue.pop_front() {
                    break (batch, state.broken);
                }
                if state.stopping {
                    state.stopped = true;
                    return;
                }
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };

        let mut failed = false;
        if !broken && let Err(error) = shared.stdout.write_all(&batch.bytes) {
            failed = true;
            // Said once, on stderr, since stdout is what failed; stderr failing too leaves
            // nowhere to say it.
            let report = shared.internal_record(
                1,
                &format!("writing to stdout failed ({error}); output is discarded from now on"),
            );
            let _ = shared.stderr.write_all(&report);
        }

        let mut state = shared.lock();
        state.broken |= failed;
        if batch.internal {
            state.internal_bytes -= batch.bytes.len();
        } else {
            state.job_bytes -= batch.bytes.len();
            if state.want_wake && state.job_bytes <= LOW_WATER {
                state.want_wake = false;
                shared.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::thread;
    use std::time::Duration;

    use serde_json::Value;

    use super::*;

    fn pipe() -> (std::io::PipeReader, OwnedFd) {
        let (reader, writer) = std::io::pipe().unwrap();
        (reader, writer.into())
    }

    /// Reads a pipe to its end on another thread.
    fn collect(mut reader: std::io::PipeReader) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).unwrap();
            bytes
        })
    }

    fn readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, timeout_ms) == 1 }
    }

    fn job_record(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::encode::record(
            &mut out,
            "job",
            1,
            0,
            format!("line {n}").as_bytes(),
            LogFormat::Text,
        );
        out
    }

    fn records(bytes: &[u8]) -> Vec<serde_json::Value> {
        bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).unwrap())
            .collect()
    }

    #[test]
    fn job_and_internal_records_keep_their_order_and_are_flushed_at_finish() {
        let (stdout_reader, stdout) = pipe();
        let (stderr_reader, stderr) = pipe();
        let stdout_bytes = collect(stdout_reader);
        let stderr_bytes = collect(stderr_reader);
        let (output, logger) = Output::start_on(stdout, stderr).unwrap();
        output.send(job_record(1));
        logger.info("started");
        output.send(job_record(2));
        logger.error("failed \"x\"");
        output.send(Vec::new());
        output.finish();
        drop(logger);
        let written = records(&stdout_bytes.join().unwrap());
        let summary: Vec<(String, u64, String)> = written
            .iter()
            .map(|r| {
                (
                    r["process"].as_str().unwrap().to_owned(),
                    r["stream"].as_u64().unwrap(),
                    r["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = [
            ("job", 0, "line 1"),
            ("internal", 0, "started"),
            ("job", 0, "line 2"),
            ("internal", 1, "failed \"x\""),
        ];
        assert_eq!(summary.len(), expected.len());
        for (got, want) in summary.iter().zip(expected) {
            assert_eq!((got.0.as_str(), got.1, got.2.as_str()), want);
        }
        assert!(stderr_bytes.join().unwrap().is_empty());
    }

    #[test]
    fn logger_writes_directly_after_finish() {
        let (stdout_reader, stdout) = pipe();
        let (_stderr_reader, stderr) = pipe();
        let stdout_bytes = collect(stdout_reader);
        let (output, logger) = Output::start_on(stdout, stderr).unwrap();
        output.finish();
        logger.info("late");
        drop(logger);
        let written = records(&stdout_bytes.join().unwrap());
        assert_eq!(written.len(), 1);
        assert_eq!(written[0]["message"], "late");
    }

    #[test]
    fn a_full_queue_says_no_room_and_wakes_once_drained() {
        let (mut stdout_reader, stdout) = pipe();
        let (_stderr_reader, stderr) = pipe();
        let (output, logger) = Output::start_on(stdout, stderr).unwrap();
        let batch = vec![b'x'; 64 << 10];
        let mut sent = 0;
        // Until the writer is stuck too: it may take a batch off the queue after we filled it.
        loop {
            while output.has_room() {
                output.send(batch.clone());
                sent += batch.len();
                assert!(sent <= HIGH_WATER + 4 * batch.len(), "queue never filled");
            }
            thread::sleep(Duration::from_millis(100));
            if !output.has_room() {
                break;
            }
        }
        // Nobody reads stdout: no wake-up, and internal records still never block.
        assert!(!readable(output.wake_fd(), 100));
        for _ in 0..100 {
            logger.error("stdout is stuck");
        }
        assert!(!output.has_room());

        let reader = thread::spawn(move || {
            let mut total = 0;
            let mut buffer = vec![0; 1 << 16];
            loop {
                let n = stdout_reader.read(&mut buffer).unwrap();
                if n == 0 {
                    return total;
                }
                total += n;
            }
        });
        assert!(
            readable(output.wake_fd(), 10_000),
            "no wake-up after draining"
        );
        output.clear_wake();
        assert!(!readable(output.wake_fd(), 0), "wake-up not cleared");
        assert!(output.has_room());
        output.finish();
        drop(logger);
        let total = reader.join().unwrap();
        assert!(total > sent);
    }

    #[test]
    fn internal_records_are_bounded_and_dropped_ones_are_reported() {
        let (mut stdout_reader, stdout) = pipe();
        let (_stderr_reader, stderr) = pipe();
        let (output, logger) = Output::start_on(stdout, stderr).unwrap();
        let message = "m".repeat(1000);
        let count = 3 * INTERNAL_LIMIT / 1000;
        for _ in 0..count {
            logger.info(&message);
        }
        assert!(output.shared.lock().internal_bytes <= INTERNAL_LIMIT);
        let reader = thread::spawn(move || {
            let mut bytes = Vec::new();
            stdout_reader.read_to_end(&mut bytes).unwrap();
            bytes
        });
        // Wait until the queue drained, then one more record brings the report with it.
        while output.shared.lock().internal_bytes > 0 {
            thread::sleep(Duration::from_millis(5));
        }
        logger.info("after");
        output.finish();
        drop(logger);
        let written = records(&reader.join().unwrap());
        // One report per stretch of drops; a busy machine may schedule the writer in the middle
        // of the logging loop, which splits the drops over several reports.
        let is_report = |r: &&Value| {
            r["stream"] == 1
                && r["message"].as_str().is_some_and(|m| {
                    m.ends_with("internal records were dropped while stdout was blocked")
                })
        };
        let reports: Vec<&Value> = written.iter().filter(is_report).collect();
        assert!(!reports.is_empty());
        let dropped: usize = reports
            .iter()
            .map(|r| {
                r["message"]
                    .as_str()
                    .and_then(|m| m.split(' ').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap()
            })
            .sum();
        let kept = written
            .iter()
            .filter(|r| r["message"] == message.as_str())
            .count();
        assert_eq!(
            kept + dropped,
            count,
            "every record written once or counted as dropped"
        );
        assert_eq!(written.last().unwrap()["message"], "after");
    }

    #[test]
    fn a_failed_stdout_is_reported_once_on_stderr_and_output_is_discarded() {
        let (stdout_reader, stdout) = pipe();
        drop(stdout_reader);
        let (stderr_reader, stderr) = pipe();
        let stderr_bytes = collect(stderr_reader);
        let (output, logger) = Output::start_on(stdout, stderr).unwrap();
        for n in 0..1000 {
            while !output.has_room() {
                assert!(readable(output.wake_fd(), 10_000));
                output.clear_wake();
            }
            output.send(job_record(n));
            logger.info("still supervising");
        }
        output.finish();
        logger.error("after finish");
        drop(logger);
        let reported = records(&stderr_bytes.join().unwrap());
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0]["process"], "internal");
        assert_eq!(reported[0]["stream"], 1);
        let message = reported[0]["message"].as_str().unwrap();
        assert!(message.contains("stdout failed"), "{message}");
        assert!(message.contains("Broken pipe"), "{message}");
    }
}
