//! How a process ended: a leaf type shared by the machine, the reaper, the orphan log and the
//! readiness checks, so that none of them depends on another for it.

use crate::signals;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
}

impl Termination {
    pub fn success(self) -> bool {
        self == Termination::Exited(0)
    }

    /// The status a shell would report: the code, or 128 + the signal.
    pub fn status(self) -> u8 {
        let status = match self {
            Termination::Exited(code) => code,
            Termination::Signaled(signal) => 128 + signal,
        };
        u8::try_from(status.clamp(0, 255)).unwrap_or(u8::MAX)
    }

    pub fn describe(self) -> String {
        match self {
            Termination::Exited(code) => format!("exited with status {code}"),
            Termination::Signaled(signal) => {
                format!("was killed by signal {}", signals::name_of(signal))
            }
        }
    }
}
