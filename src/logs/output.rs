//! The stdout writer: a thread doing blocking `write_all` on fd 1, fed through a bounded queue.
//! The event loop never blocks on stdout; when the queue is full it stops reading job pipes
//! (so jobs block on their pipes: backpressure) until [`Output::wake_fd`] says there is room.

use std::os::fd::BorrowedFd;

/// Owned by the event loop.
pub struct Output {
    // filled in by the implementation
}

/// A cloneable, thread-safe handle for simplevisor's own records.
#[derive(Clone)]
pub struct Logger {
    // filled in by the implementation
}

impl Output {
    /// Starts the writer thread on fd 1. Call after signals are blocked (the thread inherits
    /// the mask).
    pub fn start() -> std::io::Result<(Output, Logger)> {
        todo!()
    }

    /// True when the queue can take another batch of job records.
    pub fn has_room(&self) -> bool {
        todo!()
    }

    /// Queues a batch of encoded job records; never blocks (the bound may be exceeded by this
    /// one batch, which is why callers check `has_room` before reading more).
    pub fn send(&self, batch: Vec<u8>) {
        let _ = batch;
        todo!()
    }

    /// Readable when the queue has drained below its low-water mark after being full.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        todo!()
    }

    /// Clears the wake-up (after `wake_fd` polled readable).
    pub fn clear_wake(&self) {
        todo!()
    }

    /// Writes everything queued, then stops the thread. Called once, before exit.
    pub fn finish(self) {
        todo!()
    }
}

impl Logger {
    /// An information record (stream 0).
    pub fn info(&self, message: &str) {
        let _ = message;
        todo!()
    }

    /// A warning or error record (stream 1).
    pub fn error(&self, message: &str) {
        let _ = message;
        todo!()
    }
}
