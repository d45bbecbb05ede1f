//! Signal names and what simplevisor does with each signal (docs/behaviour.md): shut down, forward to the
//! jobs, or leave alone. Raw numbers are classified here once, at the edge.

use nix::sys::signal::Signal;

/// Parses a `kill-signal` value: `"TERM"`, `"SIGTERM"` or `"term"`.
pub fn parse_name(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Signal::iterator().find(|s| s.as_str().strip_prefix("SIG") == Some(bare))
}

/// The names accepted for `kill-signal`, for error messages: every signal but `STOP`, which
/// only pauses a job (the configuration check rejects it).
pub fn valid_names() -> Vec<&'static str> {
    Signal::iterator()
        .filter(|s| *s != Signal::SIGSTOP)
        .map(|s| s.as_str().strip_prefix("SIG").unwrap_or(s.as_str()))
        .collect()
}

/// The name of a signal number without `SIG`, real-time signals as `RTMIN+n`.
pub fn name_of(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(s) => s.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => {
            let rtmin = libc::SIGRTMIN();
            if signo >= rtmin {
                format!("RTMIN+{}", signo - rtmin)
            } else {
                format!("signal {signo}")
            }
        }
    }
}

/// What simplevisor does with a signal it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// `TERM`, `INT`: shut down.
    Shutdown,
    /// `CHLD`: reap.
    Reap,
    /// Everything else that can be caught: forward to every job's process group.
    Forward,
}

/// Signals simplevisor never blocks or reads: the synchronous faults (left to their default
/// action, so a bug crashes loudly), `KILL` and `STOP` (cannot be caught), and `PIPE`, `TTIN`,
/// `TTOU`, which are ignored by simplevisor (and reset to the default for jobs).
const UNHANDLED: [i32; 12] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGSYS,
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGPIPE,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// Signals simplevisor ignores outright.
pub const IGNORED: [i32; 3] = [libc::SIGPIPE, libc::SIGTTIN, libc::SIGTTOU];

pub fn disposition(signo: i32) -> Disposition {
    match signo {
        libc::SIGTERM | libc::SIGINT => Disposition::Shutdown,
        libc::SIGCHLD => Disposition::Reap,
        _ => Disposition::Forward,
    }
}

/// Every signal number simplevisor blocks and reads through its signalfd: 1..=SIGRTMAX minus
/// [`UNHANDLED`] (glibc silently keeps its two internal real-time signals unblockable).
pub fn handled() -> Vec<i32> {
    (1..=libc::SIGRTMAX())
        .filter(|s| !UNHANDLED.contains(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_every_accepted_spelling() {
        for name in ["INT", "SIGINT", "int", "sigint", " Int "] {
            assert_eq!(parse_name(name), Some(Signal::SIGINT), "{name}");
        }
        assert_eq!(parse_name("TERMINATE"), None);
        assert_eq!(parse_name(""), None);
        assert!(valid_names().contains(&"HUP"));
        assert!(valid_names().contains(&"KILL"));
        // Rejected by the configuration check, so not offered as valid either.
        assert!(!valid_names().contains(&"STOP"));
    }

    #[test]
    fn names_of_numbers() {
        assert_eq!(name_of(libc::SIGTERM), "TERM");
        assert_eq!(name_of(libc::SIGRTMIN() + 2), "RTMIN+2");
    }

    #[test]
    fn dispositions_follow_spec_section_6() {
        assert_eq!(disposition(libc::SIGTERM), Disposition::Shutdown);
        assert_eq!(disposition(libc::SIGINT), Disposition::Shutdown);
        assert_eq!(disposition(libc::SIGCHLD), Disposition::Reap);
        for s in [
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGWINCH,
            libc::SIGRTMIN(),
        ] {
            assert_eq!(disposition(s), Disposition::Forward);
        }
        let handled = handled();
        for s in [
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGCONT,
            libc::SIGTSTP,
            libc::SIGRTMAX(),
        ] {
            assert!(handled.contains(&s), "{s}");
        }
        for s in UNHANDLED {
            assert!(!handled.contains(&s), "{s}");
        }
    }
}
