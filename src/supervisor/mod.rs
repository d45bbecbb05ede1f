//! Supervision: the pure state machine deciding what to start, restart and kill (`machine`,
//! `backoff`), and the thin shell around it (`event_loop`, `reaper`).

pub mod backoff;
pub mod machine;

use crate::cli::Options;

/// Runs the supervisor; returns the exit status.
pub fn run(options: &Options) -> u8 {
    let _ = options;
    todo!()
}
