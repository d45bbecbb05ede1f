//! One job output stream (stdout or stderr of one job): reads what the pipe holds and turns
//! complete lines into encoded records.

use std::os::fd::{AsRawFd, BorrowedFd};

use memchr::memchr;

use super::MAX_MESSAGE;
use super::encode::{RecordHead, find_special};
use super::framing::Framer;
use crate::config::LogFormat;

/// What one read of a pipe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Some bytes were read (records for complete lines were appended).
    Data,
    /// Nothing to read now.
    WouldBlock,
    /// The writer side is closed; the last partial line, if any, was appended.
    Eof,
}

/// The relay state of one stream. Holds no line buffer while no partial line is pending.
pub struct StreamRelay {
    head: RecordHead,
    format: LogFormat,
    framer: Framer,
    /// Records written and bytes taken since the last [`StreamRelay::take_counts`]: plain
    /// integers, one addition per record and per read, so counting costs nothing measurable.
    records: u64,
    bytes: u64,
}

impl StreamRelay {
    /// `stream`: 0 for stdout, 1 for stderr.
    pub fn new(process: &str, stream: u8, format: LogFormat) -> StreamRelay {
        StreamRelay {
            head: RecordHead::new(process, stream),
            format,
            framer: if format == LogFormat::Json {
                Framer::json()
            } else {
                Framer::new()
            },
            records: 0,
            bytes: 0,
        }
    }

    /// The records written and the bytes of the stream taken (newlines included) since the
    /// last call, and starts counting again from zero.
    pub fn take_counts(&mut self) -> (u64, u64) {
        let counts = (self.records, self.bytes);
        self.records = 0;
        self.bytes = 0;
        counts
    }

    /// One `read(2)` of `fd` (non-blocking) into `scratch`; records of the complete lines are
    /// appended to `out` with `time` (Unix seconds).
    pub fn read_from(
        &mut self,
        fd: BorrowedFd<'_>,
        scratch: &mut [u8],
        out: &mut Vec<u8>,
        time: u64,
    ) -> std::io::Result<ReadOutcome> {
        let count = loop {
            // SAFETY: `scratch` is a valid, writable buffer of `scratch.len()` bytes.
            let count =
                unsafe { libc::read(fd.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len()) };
            if count >= 0 {
                break count.unsigned_abs();
            }
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
                _ => return Err(error),
            }
        };
        if count == 0 {
            self.finish(out, time);
            return Ok(ReadOutcome::Eof);
        }
        self.push(&scratch[..count], out, time);
        Ok(ReadOutcome::Data)
    }

    /// Frames and encodes bytes already read from the stream.
    ///
    /// Most lines of most jobs are short printable ASCII. For those, one scan finds both the
    /// line end and that nothing needs escaping (`\n` is one of the bytes the scan stops at),
    /// and the line is copied into its record as it is. Every other line (a byte to escape, a
    /// `\r`, non-ASCII, a long or partial line, a `json` job's line) goes through the framer
    /// and the general encoder, which give the same bytes for the lines the fast path takes.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>, time: u64) {
        self.bytes += data.len() as u64;
        if self.format != LogFormat::Text {
            return self.push_framed(data, out, time);
        }
        while !data.is_empty() {
            if !self.framer.is_idle() {
                // Complete the pending line first.
                let Some(newline) = memchr(b'\n', data) else {
                    return self.push_framed(data, out, time);
                };
                self.push_framed(&data[..=newline], out, time);
                data = &data[newline + 1..];
                continue;
            }
            let plain = find_special(data);
            match data.get(plain) {
                Some(b'\n') if plain <= MAX_MESSAGE => {
                    self.head.record_plain(out, time, &data[..plain]);
                    self.records += 1;
                    data = &data[plain + 1..];
                }
                Some(_) => {
                    let end = memchr(b'\n', &data[plain..]).map_or(data.len(), |n| plain + n + 1);
                    self.push_framed(&data[..end], out, time);
                    data = &data[end..];
                }
                None => return self.push_framed(data, out, time),
            }
        }
    }

    fn push_framed(&mut self, data: &[u8], out: &mut Vec<u8>, time: u64) {
        let StreamRelay {
            head,
            format,
            framer,
            records,
            ..
        } = self;
        framer.push(data, |message, whole_line| {
            // A chunk of a cut line is never a whole JSON object.
            let format = if whole_line { *format } else { LogFormat::Text };
            head.record(out, time, message, format);
            *records += 1;
        });
    }

    /// Appends the last partial line, if any (used when the pipe is abandoned without EOF).
    pub fn finish(&mut self, out: &mut Vec<u8>, time: u64) {
        let StreamRelay {
            head,
            format,
            framer,
            records,
            ..
        } = self;
        framer.finish(|message, whole_line| {
            let format = if whole_line { *format } else { LogFormat::Text };
            head.record(out, time, message, format);
            *records += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, AsRawFd};
    use std::thread;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::logs::Output;
    use crate::logs::test_pipes::nonblocking_pipe;

    fn messages(out: &[u8]) -> Vec<String> {
        out.split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let record: serde_json::Value = serde_json::from_slice(line).unwrap();
                record["message"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn reads_complete_lines_then_would_block_then_ends_with_the_partial_line() {
        let (reader, mut writer) = nonblocking_pipe();
        let mut relay = StreamRelay::new("web", 1, LogFormat::Text);
        let mut scratch = vec![0; 1024];
        let mut out = Vec::new();
        writer.write_all(b"one\r\ntwo\nthr").unwrap();
        let outcome = relay.read_from(reader.as_fd(), &mut scratch, &mut out, 42);
        assert_eq!(outcome.unwrap(), ReadOutcome::Data);
        assert_eq!(
            out,
            b"{\"process\":\"web\",\"time\":42,\"stream\":1,\"message\":\"one\"}\n\
              {\"process\":\"web\",\"time\":42,\"stream\":1,\"message\":\"two\"}\n"
        );
        out.clear();
        let outcome = relay.read_from(reader.as_fd(), &mut scratch, &mut out, 43);
        assert_eq!(outcome.unwrap(), ReadOutcome::WouldBlock);
        assert!(out.is_empty());
        writer.write_all(b"ee").unwrap();
        drop(writer);
        let outcome = relay.read_from(reader.as_fd(), &mut scratch, &mut out, 44);
        assert_eq!(outcome.unwrap(), ReadOutcome::Data);
        assert!(out.is_empty());
        let outcome = relay.read_from(reader.as_fd(), &mut scratch, &mut out, 45);
        assert_eq!(outcome.unwrap(), ReadOutcome::Eof);
        assert_eq!(messages(&out), ["three"]);
    }

    #[test]
    fn finish_emits_the_partial_line_once() {
        let mut relay = StreamRelay::new("web", 0, LogFormat::Json);
        let mut out = Vec::new();
        relay.push(b"{\"a\": 1}\n{\"b\":", &mut out, 1);
        relay.finish(&mut out, 2);
        relay.finish(&mut out, 3);
        assert_eq!(
            out,
            b"{\"process\":\"web\",\"time\":1,\"stream\":0,\"message\":{\"a\":1}}\n\
              {\"process\":\"web\",\"time\":2,\"stream\":0,\"message\":\"{\\\"b\\\":\"}\n"
        );
    }

    /// The object is measured without the white space around the line (docs/logging.md).
    #[test]
    fn a_64_kib_object_between_spaces_is_one_record_with_the_object() {
        let mut relay = StreamRelay::new("web", 0, LogFormat::Json);
        let mut line = b"  {\"a\":\"".to_vec();
        line.extend(std::iter::repeat_n(b'x', crate::logs::MAX_MESSAGE - 8));
        line.extend_from_slice(b"\"}  \n");
        assert_eq!(line.len(), crate::logs::MAX_MESSAGE + 5);
        let mut out = Vec::new();
        for piece in line.chunks(4096) {
            relay.push(piece, &mut out, 1);
        }
        let record: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(
            record["message"]["a"].as_str().map(str::len),
            Some(crate::logs::MAX_MESSAGE - 8)
        );
    }

    #[test]
    fn the_tail_of_a_cut_json_line_stays_a_string() {
        let mut relay = StreamRelay::new("web", 0, LogFormat::Json);
        let mut out = Vec::new();
        // Not an object as a whole (it starts with `x`), so it is cut, and its tail is `{}`.
        let mut line = vec![b' '; crate::logs::MAX_MESSAGE];
        line[0] = b'x';
        line.extend_from_slice(b"{}\n");
        relay.push(&line, &mut out, 1);
        let records: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["message"], "{}");
    }

    /// The whole stream framed at once and encoded by the general encoder.
    fn reference(stream: &[u8], format: LogFormat) -> Vec<u8> {
        let mut framer = if format == LogFormat::Json {
            Framer::json()
        } else {
            Framer::new()
        };
        let mut out = Vec::new();
        let mut emit = |message: &[u8], whole: bool| {
            let format = if whole { format } else { LogFormat::Text };
            crate::logs::encode::record(&mut out, "job", 7, 0, message, format);
        };
        framer.push(stream, &mut emit);
        framer.finish(&mut emit);
        out
    }

    /// Relays `stream` read in pieces cut at `cuts`, then ended.
    fn relay_in_pieces(stream: &[u8], cuts: &[usize], format: LogFormat) -> Vec<u8> {
        relay_and_count(stream, cuts, format).0
    }

    /// [`relay_in_pieces`], with what the relay counted: records and bytes.
    fn relay_and_count(stream: &[u8], cuts: &[usize], format: LogFormat) -> (Vec<u8>, (u64, u64)) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut relay = StreamRelay::new("job", 0, format);
        let mut out = Vec::new();
        let mut start = 0;
        for cut in cuts {
            relay.push(&stream[start..cut], &mut out, 7);
            start = cut;
        }
        relay.push(&stream[start..], &mut out, 7);
        relay.finish(&mut out, 7);
        (out, relay.take_counts())
    }

    #[test]
    fn plain_lines_around_64_kib_are_cut_as_the_framer_cuts_them() {
        let max = crate::logs::MAX_MESSAGE;
        for len in [max - 1, max, max + 1, 2 * max + 1] {
            let mut stream = b"x\n".to_vec();
            stream.extend(std::iter::repeat_n(b'a', len));
            stream.extend_from_slice(b"\ny\n");
            for cuts in [vec![], vec![1], vec![2], vec![len + 2], vec![len + 3]] {
                let out = relay_in_pieces(&stream, &cuts, LogFormat::Text);
                assert_eq!(out, reference(&stream, LogFormat::Text), "{len} {cuts:?}");
            }
        }
    }

    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"{\"a\": 1}".to_vec()),
            Just("é😀".as_bytes().to_vec()),
            Just(vec![0xF0, 0x9F]),
            Just(vec![0x01]),
            (1usize..70_000).prop_map(|n| vec![b'a'; n]),
            (1usize..200).prop_map(|n| vec![b'b'; n]),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The fast path for plain lines gives the same bytes as framing and encoding each
        /// line, however reads cut the stream.
        #[test]
        fn records_do_not_depend_on_reads_or_the_fast_path(
            stream in stream_strategy(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            json in any::<bool>(),
        ) {
            let format = if json { LogFormat::Json } else { LogFormat::Text };
            prop_assert_eq!(relay_in_pieces(&stream, &cuts, format), reference(&stream, format));
        }

        /// Every record written counts one line, and the bytes are the stream's own,
        /// whichever path (fast or framed) each line took.
        #[test]
        fn the_counts_are_the_records_written_and_the_bytes_taken(
            stream in stream_strategy(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            json in any::<bool>(),
        ) {
            let format = if json { LogFormat::Json } else { LogFormat::Text };
            let (out, (records, bytes)) = relay_and_count(&stream, &cuts, format);
            let newlines = out.iter().filter(|&&b| b == b'\n').count() as u64;
            prop_assert_eq!(records, newlines);
            prop_assert_eq!(bytes, stream.len() as u64);
        }
    }

    /// The lead's event loop in miniature: a job writes many lines into its pipe while our
    /// stdout is read slowly. Every line must arrive once, in order, and the queue must stay
    /// bounded while the job is held back.
    #[test]
    fn a_slow_stdout_holds_the_job_back_and_loses_nothing() {
        const LINES: usize = 200_000;
        let (job_output, mut job_writer) = nonblocking_pipe();
        let (mut stdout_reader, stdout) = std::io::pipe().unwrap();
        let (_stderr_reader, stderr) = std::io::pipe().unwrap();
        let (output, logger) = Output::start_on(stdout.into(), stderr.into()).unwrap();

        let job = thread::spawn(move || {
            for n in 0..LINES {
                writeln!(job_writer, "line {n} {}", "x".repeat(n % 300)).unwrap();
            }
        });
        let slow_reader = thread::spawn(move || {
            let mut bytes = Vec::new();
            let mut buffer = vec![0; 4096];
            loop {
                let n = stdout_reader.read(&mut buffer).unwrap();
                if n == 0 {
                    return bytes;
                }
                bytes.extend_from_slice(&buffer[..n]);
                if bytes.len() < 4 << 20 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        });

        let mut relay = StreamRelay::new("job", 0, LogFormat::Text);
        let mut scratch = vec![0; 64 << 10];
        let mut batch = Vec::new();
        let mut most_queued = 0;
        let mut held_back = false;
        loop {
            if !output.has_room() {
                held_back = true;
                let mut poll = libc::pollfd {
                    fd: output.wake_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                assert_eq!(unsafe { libc::poll(&mut poll, 1, 10_000) }, 1);
                output.clear_wake();
                continue;
            }
            let outcome = relay.read_from(job_output.as_fd(), &mut scratch, &mut batch, 0);
            most_queued = most_queued.max(output.shared_job_bytes());
            output.send(std::mem::take(&mut batch));
            match outcome.unwrap() {
                ReadOutcome::Eof => break,
                ReadOutcome::WouldBlock => thread::sleep(Duration::from_micros(100)),
                ReadOutcome::Data => {}
            }
        }
        job.join().unwrap();
        output.finish();
        drop(logger);
        let written = messages(&slow_reader.join().unwrap());
        assert_eq!(written.len(), LINES);
        for (n, message) in written.iter().enumerate() {
            assert_eq!(*message, format!("line {n} {}", "x".repeat(n % 300)));
        }
        assert!(
            held_back,
            "stdout was never slow enough to test backpressure"
        );
        assert!(
            most_queued <= 2 * crate::logs::output::HIGH_WATER,
            "{most_queued}"
        );
    }
}
