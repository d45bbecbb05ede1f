//! Internal records written straight to fd 1 with one `write`, bypassing the writer thread: for
//! the last moments of a failing process, when that thread may be the one that failed and
//! nothing queued would be flushed anyway.

use std::io::Write as _;

use super::{INTERNAL, encode};
use crate::config::LogFormat;

/// Writes one internal record (`stream` 0: information, 1: error) now.
pub fn write(stream: u8, message: &str) {
    let time = crate::time::unix_now();
    let mut line = Vec::with_capacity(message.len() + 64);
    encode::record(
        &mut line,
        INTERNAL,
        time,
        stream,
        message.as_bytes(),
        LogFormat::Text,
    );
    let _ = std::io::stdout().lock().write_all(&line);
}

/// [`write`] as a logger value, for code that takes one.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectLog;

impl DirectLog {
    pub fn info(&self, message: &str) {
        write(0, message);
    }

    pub fn error(&self, message: &str) {
        write(1, message);
    }
}
