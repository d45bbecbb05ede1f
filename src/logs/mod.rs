//! The log relay (docs/logging.md): every line a job prints becomes one JSON record on our stdout.
//!
//! - `framing`: pure; bytes in, lines (and 64 KiB chunks of long lines) out.
//! - `encode`: pure; one record `{"process":…,"time":…,"stream":…,"message":…}` per line.
//! - `relay`: reads one job pipe into a batch of encoded records; plain lines take a fast path
//!   that gives the same bytes.
//! - `pipes`: every job pipe behind one fd for the event loop (a nested epoll), reading the
//!   ready ones, backpressure, and draining a job's pipes when it is gone.
//! - `output`: the stdout writer thread with a bounded queue (backpressure), and [`Logger`] for
//!   simplevisor's own records, which go through the same queue so records never interleave.

pub mod direct;
pub mod encode;
pub mod framing;
pub mod output;
pub mod pipes;
pub mod relay;

pub use output::{Logger, Output};

/// The largest message of one record, in bytes (docs/logging.md).
pub const MAX_MESSAGE: usize = 65_536;

/// The `process` field of simplevisor's own records.
pub const INTERNAL: &str = crate::config::RESERVED_JOB_NAME;

/// What the tests of the relay and the pipes share.
#[cfg(test)]
pub(crate) mod test_pipes {
    use std::os::fd::{AsRawFd, OwnedFd};

    /// A pipe whose read end is non-blocking, as a job's output pipes are.
    pub fn nonblocking_pipe() -> (OwnedFd, std::io::PipeWriter) {
        let (reader, writer) = std::io::pipe().unwrap();
        let reader: OwnedFd = reader.into();
        // SAFETY: plain fcntl calls on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(reader.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        (reader, writer)
    }
}
