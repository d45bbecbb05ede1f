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
