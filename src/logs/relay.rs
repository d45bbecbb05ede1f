//! One job output stream (stdout or stderr of one job): reads what the pipe holds and turns
//! complete lines into encoded records.

use std::os::fd::BorrowedFd;

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

/// The relay state of one stream.
pub struct StreamRelay {
    // filled in by the implementation
}

impl StreamRelay {
    /// `stream`: 0 for stdout, 1 for stderr.
    pub fn new(process: &str, stream: u8, format: LogFormat) -> StreamRelay {
        let _ = (process, stream, format);
        todo!()
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
        let _ = (fd, scratch, out, time);
        todo!()
    }

    /// Appends the last partial line, if any (used when the pipe is abandoned without EOF).
    pub fn finish(&mut self, out: &mut Vec<u8>, time: u64) {
        let _ = (out, time);
        todo!()
    }
}
