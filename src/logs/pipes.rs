//! The jobs' output pipes as one readiness source: a nested `epoll` over every job stream
//! (so that backpressure is one `epoll_ctl` on the caller's epoll), a slot per stream, the
//! shared read buffer and the batch of encoded records handed to [`Output`].
//!
//! The caller's epoll watches [`Pipes`] as one fd; when it is readable the caller calls
//! [`Pipes::read_ready`]. When [`Output`] has no room, `Pipes` takes itself out of the
//! caller's epoll (reading stops, jobs block on their full pipes) and puts itself back in
//! [`Pipes::resume`], called when the output's wake-up fd is readable.
//!
//! It also counts, per job and stream, the records written and the bytes the job wrote
//! ([`Pipes::log_counts`]), over all the job's runs, for the metrics.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::relay::{ReadOutcome, StreamRelay};
use super::{Logger, Output};
use crate::config::LogFormat;

/// One read of a pipe takes at most this much; also the size of the shared read buffer.
const READ_CHUNK: usize = 64 * 1024;

/// Records are handed to the writer in batches of about this size.
const BATCH_SIZE: usize = 64 * 1024;

/// The most streams one [`Pipes::read_ready`] reads; the others are reported ready again.
const READY_AT_ONCE: usize = 32;

/// What one job wrote, over all its runs: index 0 is stdout, 1 is stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Records written: one per line, and one per 64 KiB chunk of a longer line.
    pub lines: [u64; 2],
    /// Bytes the job wrote, newlines included.
    pub bytes: [u64; 2],
}

/// An output stream of a running (or just exited) job.
struct Stream {
    /// The caller's key for the job the stream belongs to.
    owner: usize,
    /// 0 for stdout, 1 for stderr.
    index: usize,
    name: Box<str>,
    fd: OwnedFd,
    relay: StreamRelay,
}

/// Every job output stream, read when ready and relayed to [`Output`] as records.
pub struct Pipes<'a> {
    /// The nested epoll over the streams; slot indexes are its tokens.
    set: Epoll,
    /// The caller's epoll (a duplicate of its fd), where `set` is watched with `token`.
    outer: Epoll,
    token: u64,
    /// `set` is out of `outer` because the output had no room.
    throttled: bool,
    streams: Vec<Option<Stream>>,
    scratch: Vec<u8>,
    batch: Vec<u8>,
    output: &'a Output,
    logger: Logger,
    /// Per job (the caller's key): added to after every read, so a lookup is all a scrape costs.
    counts: HashMap<usize, LogCounts>,
}

impl<'a> Pipes<'a> {
    /// Creates the stream set and watches it in `outer` (level-triggered `EPOLLIN`) under
    /// `token`.
    pub fn new(
        outer: &Epoll,
        token: u64,
        output: &'a Output,
        logger: Logger,
    ) -> Result<Pipes<'a>, String> {
        let set = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create epoll instance: {e}"))?;
        // A duplicate refers to the same epoll instance, so backpressure can change the
        // caller's interest list without borrowing the caller.
        let outer = outer
            .0
            .try_clone()
            .map(Epoll)
            .map_err(|e| format!("cannot duplicate the epoll descriptor: {e}"))?;
        outer
            .add(set.0.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(|e| format!("cannot watch the job pipes (epoll_ctl): {e}"))?;
        Ok(Pipes {
            set,
            outer,
            token,
            throttled: false,
            streams: Vec::new(),
            scratch: Vec::new(),
            batch: Vec::new(),
            output,
            logger,
            counts: HashMap::new(),
        })
    }

    /// Starts relaying a job's stdout and stderr (non-blocking read ends) as records of
    /// process `name`. `owner` is the caller's key for the job (see [`Pipes::drain`]).
    pub fn register(
        &mut self,
        owner: usize,
        name: &str,
        format: LogFormat,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) {
        self.add(owner, 0, name, stdout, StreamRelay::new(name, 0, format));
        self.add(owner, 1, name, stderr, StreamRelay::new(name, 1, format));
    }

    /// Lines and bytes job `owner` wrote so far, over all its runs (zero for a job never seen).
    pub fn log_counts(&self, owner: usize) -> LogCounts {
        self.counts.get(&owner).copied().unwrap_or_default()
    }

    /// Drops the counts of job `owner` (a job removed from the configuration), so that a new
    /// job given the same key starts from zero.
    pub fn forget(&mut self, owner: usize) {
        self.counts.remove(&owner);
    }

    fn add(&mut self, owner: usize, index: usize, name: &str, fd: OwnedFd, relay: StreamRelay) {
        let slot = match self.streams.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.streams.push(None);
                self.streams.len() - 1
            }
        };
        let event = EpollEvent::new(EpollFlags::EPOLLIN, slot as u64);
        if let Err(error) = self.set.add(fd.as_fd(), event) {
            // The job runs, but its output cannot be relayed: say so rather than lose it
            // silently. Dropping the read end gives the job EPIPE on its next write.
            self.logger.error(&format!(
                "cannot watch the output of job {name} (epoll_ctl): {error}"
            ));
            return;
        }
        self.streams[slot] = Some(Stream {
            owner,
            index,
            name: name.into(),
            fd,
            relay,
        });
    }

    /// One read of every ready stream (fairness: a flooding job cannot starve the others),
    /// then backpressure if the output is full. An error means the pipes can no longer be
    /// watched as they must (a failed `epoll_wait` or `epoll_ctl`): the caller has to treat it
    /// as an internal failure, since returning quietly would make its level-triggered epoll
    /// report the set again at once, forever.
    pub fn read_ready(&mut self) -> Result<(), String> {
        if self.throttled {
            return Ok(());
        }
        if !self.output.has_room() {
            // Records drained from exited jobs may have filled the queue since the last read.
            return self.throttle();
        }
        let mut ready = [EpollEvent::empty(); READY_AT_ONCE];
        let count = loop {
            match self.set.wait(&mut ready, EpollTimeout::ZERO) {
                Ok(count) => break count,
                Err(Errno::EINTR) => continue,
                Err(error) => return Err(format!("epoll_wait on the job pipes failed: {error}")),
            }
        };
        let now = crate::time::unix_now();
        for event in &ready[..count] {
            self.read_stream(event.data() as usize, now);
        }
        self.flush_batch();
        if !self.output.has_room() {
            return self.throttle();
        }
        Ok(())
    }

    /// Reading resumes if it was stopped and the output has room again; call when the
    /// output's wake-up fd is readable (after clearing it).
    pub fn resume(&mut self) -> Result<(), String> {
        if self.throttled && self.output.has_room() {
            let event = EpollEvent::new(EpollFlags::EPOLLIN, self.token);
            self.outer
                .add(self.set.0.as_fd(), event)
                .map_err(|e| format!("cannot resume reading the job pipes (epoll_ctl): {e}"))?;
            self.throttled = false;
        }
        Ok(())
    }

    /// Stops reading until [`Pipes::resume`]: jobs block on their full pipes.
    fn throttle(&mut self) -> Result<(), String> {
        self.outer.delete(self.set.0.as_fd()).map_err(|e| {
            format!("cannot stop reading the job pipes for backpressure (epoll_ctl): {e}")
        })?;
        self.throttled = true;
        Ok(())
    }

    /// Reads what the streams of job `owner` hold right now; with `close`, also closes them
    /// (the job's processes are gone, so nothing more of the job's own can come). Reads even
    /// while throttled: the job's last lines must precede its exit record.
    pub fn drain(&mut self, owner: usize, close: bool) {
        let now = crate::time::unix_now();
        for slot in 0..self.streams.len() {
            if !matches!(&self.streams[slot], Some(stream) if stream.owner == owner) {
                continue;
            }
            // Bounded: a pipe holds at most its capacity, and the writers are gone (or
            // escaped the group, and their later output is not the job's to wait for).
            for _ in 0..64 {
                if self.read_stream(slot, now) != ReadOutcome::Data {
                    break;
                }
            }
            if close && let Some(stream) = self.streams[slot].as_mut() {
                stream.relay.finish(&mut self.batch, now);
                self.tally(slot);
                self.close_stream(slot);
            }
        }
        self.flush_batch();
    }

    /// Drains and closes every stream (at exit).
    pub fn close_all(&mut self) {
        let mut owners: Vec<usize> = self.streams.iter().flatten().map(|s| s.owner).collect();
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            self.drain(owner, true);
        }
    }

    /// One read of one stream; closes it at end of file or on error.
    fn read_stream(&mut self, slot: usize, now: u64) -> ReadOutcome {
        if self.scratch.len() < READ_CHUNK {
            self.scratch.resize(READ_CHUNK, 0);
        }
        let Some(stream) = self.streams.get_mut(slot).and_then(Option::as_mut) else {
            return ReadOutcome::Eof;
        };
        let outcome =
            match stream
                .relay
                .read_from(stream.fd.as_fd(), &mut self.scratch, &mut self.batch, now)
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    self.logger.error(&format!(
                        "cannot read the output of job {}: {error}",
                        stream.name
                    ));
                    stream.relay.finish(&mut self.batch, now);
                    ReadOutcome::Eof
                }
            };
        self.tally(slot);
        if outcome == ReadOutcome::Eof {
            self.close_stream(slot);
        }
        if self.batch.len() >= BATCH_SIZE {
            self.flush_batch();
        }
        outcome
    }

    /// Moves what stream `slot` counted since the last tally into its job's counts.
    fn tally(&mut self, slot: usize) {
        let Some(stream) = self.streams.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let (lines, bytes) = stream.relay.take_counts();
        let counts = self.counts.entry(stream.owner).or_default();
        counts.lines[stream.index] += lines;
        counts.bytes[stream.index] += bytes;
    }

    fn close_stream(&mut self, slot: usize) {
        if let Some(stream) = self.streams[slot].take() {
            // Closing the fd removes it from the set anyway; the delete only keeps the set
            // tidy when a duplicate of the fd lives on elsewhere.
            let _ = self.set.delete(stream.fd.as_fd());
        }
    }

    fn flush_batch(&mut self) {
        if !self.batch.is_empty() {
            self.output.send(std::mem::take(&mut self.batch));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::thread;

    use super::*;
    use crate::logs::test_pipes::nonblocking_pipe;

    fn outer() -> Epoll {
        Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap()
    }

    /// The tokens `outer` reports within `timeout_ms`.
    fn ready(outer: &Epoll, timeout_ms: u16) -> Vec<u64> {
        let mut events = [EpollEvent::empty(); 4];
        let n = outer.wait(&mut events, timeout_ms).unwrap();
        events[..n].iter().map(EpollEvent::data).collect()
    }

    fn collect(mut reader: std::io::PipeReader) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).unwrap();
            bytes
        })
    }

    #[test]
    fn relays_ready_streams_and_drains_a_job_at_exit() {
        let (stdout_reader, stdout) = std::io::pipe().unwrap();
        let (_stderr_reader, stderr) = std::io::pipe().unwrap();
        let written = collect(stdout_reader);
        let (output, logger) = Output::start_on(stdout.into(), stderr.into()).unwrap();
        let outer = outer();
        let mut pipes = Pipes::new(&outer, 7, &output, logger.clone()).unwrap();
        let (job_out, mut out_writer) = nonblocking_pipe();
        let (job_err, mut err_writer) = nonblocking_pipe();
        pipes.register(3, "web", LogFormat::Text, job_out, job_err);
        assert!(ready(&outer, 0).is_empty());

        out_writer.write_all(b"one\ntwo\n").unwrap();
        assert_eq!(ready(&outer, 1000), [7]);
        pipes.read_ready().unwrap();
        assert!(ready(&outer, 0).is_empty());

        err_writer.write_all(b"oops\nlast without newline").unwrap();
        drop(out_writer);
        drop(err_writer);
        pipes.drain(3, true);
        assert!(pipes.streams.iter().all(Option::is_none));
        let counts = pipes.log_counts(3);
        assert_eq!(counts.lines, [2, 2]);
        assert_eq!(counts.bytes, [8, 25]);

        // A second run of the same job adds to the counts; another job has its own.
        let (job_out, mut out_writer) = nonblocking_pipe();
        let (job_err, err_writer) = nonblocking_pipe();
        pipes.register(3, "web", LogFormat::Text, job_out, job_err);
        out_writer.write_all(b"three\n").unwrap();
        drop(out_writer);
        drop(err_writer);
        pipes.drain(3, true);
        assert_eq!(pipes.log_counts(3).lines, [3, 2]);
        assert_eq!(pipes.log_counts(3).bytes, [14, 25]);
        assert_eq!(pipes.log_counts(4), LogCounts::default());
        pipes.forget(3);
        assert_eq!(pipes.log_counts(3), LogCounts::default());
        drop(pipes);
        output.finish();
        drop(logger);
        let records: Vec<serde_json::Value> = written
            .join()
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let seen: Vec<(u64, &str)> = records
            .iter()
            .map(|r| {
                (
                    r["stream"].as_u64().unwrap(),
                    r["message"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (0, "one"),
                (0, "two"),
                (1, "oops"),
                (1, "last without newline"),
                (0, "three")
            ]
        );
    }

    /// A failed `epoll_wait` must not look like "nothing ready": the caller's level-triggered
    /// epoll would report the set again at once, forever.
    #[test]
    fn a_failed_epoll_wait_is_an_error() {
        let (_stdout_reader, stdout) = std::io::pipe().unwrap();
        let (_stderr_reader, stderr) = std::io::pipe().unwrap();
        let (output, logger) = Output::start_on(stdout.into(), stderr.into()).unwrap();
        let outer = outer();
        let mut pipes = Pipes::new(&outer, 1, &output, logger).unwrap();
        // Replace the set by a descriptor that is not an epoll instance.
        let (not_epoll, _writer) = std::io::pipe().unwrap();
        // SAFETY: both descriptors are valid; dup2 replaces one we own.
        assert!(unsafe { libc::dup2(not_epoll.as_raw_fd(), pipes.set.0.as_raw_fd()) } >= 0);
        let error = pipes.read_ready().unwrap_err();
        assert!(error.contains("epoll_wait"), "{error}");
    }

    /// Failed backpressure `epoll_ctl` calls are errors: ignoring them would either never
    /// throttle (memory grows) or never resume (jobs block forever).
    #[test]
    fn failed_backpressure_epoll_ctl_calls_are_errors() {
        let (mut stdout_reader, stdout) = std::io::pipe().unwrap();
        let (_stderr_reader, stderr) = std::io::pipe().unwrap();
        let (output, logger) = Output::start_on(stdout.into(), stderr.into()).unwrap();
        let outer = outer();
        let mut pipes = Pipes::new(&outer, 1, &output, logger.clone()).unwrap();
        // Fill the output queue while nobody reads stdout.
        while output.has_room() {
            output.send(vec![b'x'; 64 << 10]);
            thread::sleep(std::time::Duration::from_millis(1));
        }
        outer.delete(pipes.set.0.as_fd()).unwrap();
        let error = pipes.read_ready().unwrap_err();
        assert!(error.contains("backpressure"), "{error}");

        // Throttled for real this time, then resuming finds the set already watched.
        outer
            .add(pipes.set.0.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 1))
            .unwrap();
        pipes.read_ready().unwrap();
        assert!(pipes.throttled);
        outer
            .add(pipes.set.0.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 1))
            .unwrap();
        let reader = thread::spawn(move || {
            let mut buffer = vec![0; 1 << 16];
            while stdout_reader.read(&mut buffer).unwrap() > 0 {}
        });
        while !output.has_room() {
            thread::sleep(std::time::Duration::from_millis(1));
        }
        let error = pipes.resume().unwrap_err();
        assert!(error.contains("resume"), "{error}");
        drop(pipes);
        output.finish();
        drop(logger);
        reader.join().unwrap();
    }
}
