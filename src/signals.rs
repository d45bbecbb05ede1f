//! Signal names and what simplevisor does with each signal (SPEC 6): shut down, forward to the
//! jobs, or leave alone. Raw numbers are classified here once, at the edge.

use nix::sys::signal::Signal;

/// Parses a `kill-signal` value: `"TERM"`, `"SIGTERM"` or `"term"`.
pub fn parse_name(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    Signal::iterator().find(|s| s.as_str().strip_prefix("SIG") == Some(bare))
}

/// The names accepted for `kill-signal`, for error messages.
pub fn valid_names() -> Vec<&'static str> {
    Signal::iterator()
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
