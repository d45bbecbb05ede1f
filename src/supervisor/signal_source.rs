//! The signalfd as a source of typed events: raw signal numbers are read and interpreted here,
//! at the edge, once; the loop and the machine only see what a signal means.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signalfd::SignalFd;

use crate::signals::{self, Disposition};

/// What a received signal means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// `SIGTERM` or `SIGINT`.
    Shutdown(i32),
    /// Any other handled signal: for the jobs.
    Forward(i32),
    /// `SIGCHLD`: children (ours or orphans) may be waiting to be reaped.
    ChildExited,
}

pub struct SignalSource {
    fd: SignalFd,
}

impl SignalSource {
    pub fn new(fd: SignalFd) -> SignalSource {
        SignalSource { fd }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Every signal pending now, in order; `SIGCHLD`s (which coalesce anyway) once at the end.
    /// The error names what failed.
    pub fn read_pending(&mut self) -> Result<Vec<SignalEvent>, String> {
        let mut events = Vec::new();
        let mut child_exited = false;
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    let signo = info.ssi_signo as i32;
                    match signals::disposition(signo) {
                        Disposition::Reap => child_exited = true,
                        Disposition::Shutdown => events.push(SignalEvent::Shutdown(signo)),
                        Disposition::Forward => events.push(SignalEvent::Forward(signo)),
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    if child_exited {
                        events.push(SignalEvent::ChildExited);
                    }
                    return if events.is_empty() {
                        Err(format!("cannot read the signalfd: {error}"))
                    } else {
                        Ok(events)
                    };
                }
            }
        }
        if child_exited {
            events.push(SignalEvent::ChildExited);
        }
        Ok(events)
    }
}
