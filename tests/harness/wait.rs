//! Waiting on a condition with a deadline: how a test synchronises with what it started,
//! instead of sleeping for a time it hopes is long enough. Shared by the harness and the
//! fixtures (`tests/support`, also used by the in-crate Vault tests).

use std::time::{Duration, Instant};

/// Polls `condition` every 20 ms until it holds; panics naming `what` once `timeout` has
/// passed without it.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
