//! Pure lease and token bookkeeping (docs/vault.md): when to renew (about two thirds into the latest
//! grant), when something counts as expiring (less than a tenth of its TTL left, never less
//! than 1 s), and how long to wait after a failed renewal. No clock is read here: every
//! function takes `now`, so the rules are tested with made-up instants.

use std::time::{Duration, Instant};

use crate::time::{FAR, later};

/// Never try again sooner than this after a failure: a broken Vault sees at most one request
/// per second per lease.
pub const MIN_RETRY: Duration = Duration::from_secs(1);
/// Never wait longer than this between two attempts of a failing renewal.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// The expiry margin never goes below this.
const MIN_MARGIN: Duration = Duration::from_secs(1);

/// What is due for one tracked lease or token at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Renew,
    Expiring,
}

/// The renewal state of one lease or token with a finite TTL.
#[derive(Debug, Clone)]
pub struct Tracked {
    expires_at: Instant,
    /// The length of the latest grant; the next renewal comes a third of it before the end.
    granted: Duration,
    /// Act on expiry when less than this is left: a tenth of the longest grant, at least 1 s.
    margin: Duration,
    renewable: bool,
    next_attempt: Instant,
    failures: u32,
}

impl Tracked {
    /// A grant of `ttl` at `now`; `None` for a TTL of zero, which Vault uses for "never
    /// expires" (root tokens).
    pub fn new(now: Instant, ttl: Duration, renewable: bool) -> Option<Tracked> {
        if ttl.is_zero() {
            return None;
        }
        let mut tracked = Tracked {
            expires_at: now,
            granted: Duration::ZERO,
            margin: MIN_MARGIN,
            renewable,
            next_attempt: now,
            failures: 0,
        };
        tracked.grant(now, ttl, renewable);
        Some(tracked)
    }

    fn grant(&mut self, now: Instant, ttl: Duration, renewable: bool) {
        // A TTL is Vault's number: keep the arithmetic below (the margin) meaningful.
        let ttl = ttl.min(FAR);
        self.expires_at = later(now, ttl);
        self.granted = ttl;
        self.margin = self.margin.max(ttl / 10);
        self.renewable = renewable;
        self.next_attempt = later(now, ttl / 3 * 2);
        self.failures = 0;
    }

    /// The moment it counts as expiring.
    pub fn expiring_at(&self) -> Instant {
        self.expires_at
            .checked_sub(self.margin)
            .unwrap_or(self.expires_at)
    }

    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// What to do at `now`. Expiry wins over renewal: once inside the margin, a renewal could
    /// not be trusted to land in time.
    pub fn due(&self, now: Instant) -> Due {
        if now >= self.expiring_at() {
            Due::Expiring
        } else if self.renewable && now >= self.next_attempt {
            Due::Renew
        } else {
            Due::Nothing
        }
    }

    /// When [`due`](Self::due) next has something to say.
    pub fn wake_at(&self) -> Instant {
        if self.renewable {
            self.next_attempt.min(self.expiring_at())
        } else {
            self.expiring_at()
        }
    }

    /// Vault renewed it at `now` for `ttl` (which shrinks as a lease nears its max TTL).
    pub fn renewed(&mut self, now: Instant, ttl: Duration, renewable: bool) {
        self.grant(now, ttl, renewable);
    }

    /// A renewal attempt at `now` failed; returns the wait before the next attempt
    /// (1 s, 2 s, 4 s, ... up to 30 s, but at most half the time left before expiry, so that
    /// the last attempts come before it; never less than 1 s). Expiry comes at the same moment.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let before_expiry = self.expiring_at().saturating_duration_since(now) / 2;
        let delay =
            retry_delay(self.failures, MIN_RETRY, MAX_RETRY).min(before_expiry.max(MIN_RETRY));
        self.next_attempt = later(now, delay);
        delay
    }
}

/// The wait before the `attempt`-th retry (1-based): `initial × 2^(attempt−1)`, at most `max`.
pub fn retry_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    initial.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn zero_ttl_means_never_expires() {
        assert!(Tracked::new(Instant::now(), Duration::ZERO, true).is_none());
    }

    #[test]
    fn renewal_comes_at_two_thirds_of_the_grant() {
        let t0 = Instant::now();
        let lease = Tracked::new(t0, secs(30.0), true).unwrap();
        assert_eq!(lease.due(t0 + secs(19.9)), Due::Nothing);
        assert_eq!(lease.due(t0 + secs(20.0)), Due::Renew);
        assert_eq!(lease.wake_at(), t0 + secs(20.0));
    }

    #[test]
    fn a_renewal_moves_both_the_renewal_and_the_expiry() {
        let t0 = Instant::now();
        let mut lease = Tracked::new(t0, secs(30.0), true).unwrap();
        lease.renewed(t0 + secs(20.0), secs(30.0), true);
        assert_eq!(lease.due(t0 + secs(39.0)), Due::Nothing);
        assert_eq!(lease.due(t0 + secs(40.0)), Due::Renew);
        assert_eq!(lease.expires_at(), t0 + secs(50.0));
    }

    #[test]
    fn expiring_margin_is_a_tenth_of_the_ttl_but_at_least_one_second() {
        let t0 = Instant::now();
        let long = Tracked::new(t0, secs(100.0), false).unwrap();
        assert_eq!(long.expiring_at(), t0 + secs(90.0));
        assert_eq!(long.due(t0 + secs(89.9)), Due::Nothing);
        assert_eq!(long.due(t0 + secs(90.0)), Due::Expiring);
        let short = Tracked::new(t0, secs(5.0), false).unwrap();
        assert_eq!(short.expiring_at(), t0 + secs(4.0));
    }

    #[test]
    fn non_renewable_leases_are_never_renewed_only_expire() {
        let t0 = Instant::now();
        let lease = Tracked::new(t0, secs(30.0), false).unwrap();
        assert_eq!(lease.due(t0 + secs(25.0)), Due::Nothing);
        assert_eq!(lease.wake_at(), t0 + secs(27.0));
    }

    #[test]
    fn a_lease_capped_by_its_max_ttl_ends_as_expiring() {
        // Grants of 3 s, max TTL 8 s: Vault's grants shrink to the cap, and the margin stays
        // that of the full grant.
        let t0 = Instant::now();
        let mut lease = Tracked::new(t0, secs(3.0), true).unwrap();
        lease.renewed(t0 + secs(2.0), secs(3.0), true);
        lease.renewed(t0 + secs(4.0), secs(3.0), true);
        lease.renewed(t0 + secs(6.0), secs(2.0), true);
        assert_eq!(lease.expires_at(), t0 + secs(8.0));
        assert_eq!(lease.due(t0 + secs(6.9)), Due::Nothing);
        assert_eq!(lease.due(t0 + secs(7.0)), Due::Expiring);
        assert_eq!(lease.wake_at(), t0 + secs(7.0));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_bound() {
        let t0 = Instant::now();
        let mut lease = Tracked::new(t0, secs(3600.0), true).unwrap();
        let at = t0 + secs(2400.0);
        let delays: Vec<_> = (0..8).map(|_| lease.failed(at).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(lease.due(at + secs(29.9)), Due::Nothing);
        assert_eq!(lease.due(at + secs(30.0)), Due::Renew);
        lease.renewed(at + secs(30.0), secs(3600.0), true);
        assert_eq!(lease.failed(at + secs(31.0)), secs(1.0));
    }

    #[test]
    fn a_failing_renewal_still_expires_on_time() {
        let t0 = Instant::now();
        let mut lease = Tracked::new(t0, secs(6.0), true).unwrap();
        let mut now = t0 + secs(4.0);
        let mut attempts = 0;
        while lease.due(now) == Due::Renew {
            attempts += 1;
            lease.failed(now);
            now = lease.wake_at();
        }
        assert_eq!(lease.due(now), Due::Expiring);
        assert_eq!(now, t0 + secs(5.0));
        assert_eq!(attempts, 1, "retries at most once a second");
    }

    #[test]
    fn retries_come_closer_together_as_expiry_nears_but_stay_a_second_apart() {
        let t0 = Instant::now();
        let mut lease = Tracked::new(t0, secs(100.0), true).unwrap();
        // Expiring at 90 s.
        for _ in 0..5 {
            lease.failed(t0 + secs(67.0));
        }
        assert_eq!(lease.failed(t0 + secs(70.0)), secs(10.0));
        assert_eq!(lease.failed(t0 + secs(80.0)), secs(5.0));
        assert_eq!(lease.failed(t0 + secs(89.0)), secs(1.0));
    }

    #[test]
    fn an_absurd_ttl_from_vault_never_overflows() {
        let t0 = Instant::now();
        let mut lease = Tracked::new(t0, Duration::MAX, true).unwrap();
        assert_eq!(lease.due(t0 + secs(3600.0)), Due::Nothing);
        lease.renewed(t0, Duration::from_secs(u64::MAX), true);
        lease.failed(t0);
        assert!(lease.wake_at() > t0);
    }

    #[test]
    fn retry_delay_saturates() {
        assert_eq!(retry_delay(1, secs(0.25), secs(5.0)), secs(0.25));
        assert_eq!(retry_delay(3, secs(0.25), secs(5.0)), secs(1.0));
        assert_eq!(retry_delay(u32::MAX, secs(0.25), secs(5.0)), secs(5.0));
    }
}
