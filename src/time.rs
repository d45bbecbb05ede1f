//! Saturating time arithmetic. `Instant + Duration` panics on overflow; durations here come from
//! configs and from Vault's answers, so every deadline is computed with [`later`], which never
//! can. (Config durations are at most a year; a Vault TTL can be anything.)

use std::time::{Duration, Instant};

/// Far enough to mean "never" for a supervisor, near enough to be representable.
pub const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + wait`, or a moment a century away if that cannot be represented.
pub fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// The Unix time in whole seconds (the `time` of a record); 0 if the clock is before 1970.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `wait` from now.
pub fn from_now(wait: Duration) -> Instant {
    later(Instant::now(), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_overflows() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(later(now, Duration::MAX), now + FAR);
        assert!(from_now(Duration::MAX) > now);
    }
}
