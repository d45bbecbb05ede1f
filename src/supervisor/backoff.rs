//! Restart backoff (docs/behaviour.md): the n-th consecutive quick exit waits
//! `min(initial × multiplier^(n−1), max)`; a run that lasted at least `reset-after` makes the
//! next exit count as n = 1 again.

use std::time::Duration;

use crate::config::BackoffSettings;

/// The backoff state of one main job.
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: BackoffSettings,
    /// How many quick exits in a row, including the last one.
    consecutive: u32,
}

impl Backoff {
    pub fn new(settings: BackoffSettings) -> Backoff {
        Backoff {
            settings,
            consecutive: 0,
        }
    }

    /// Records an exit after a run of `ran` and returns how long to wait before the next start.
    pub fn next_delay(&mut self, ran: Duration) -> Duration {
        if ran >= self.settings.reset_after {
            self.consecutive = 1;
        } else {
            self.consecutive = self.consecutive.saturating_add(1);
        }
        let exponent = i32::try_from(self.consecutive - 1).unwrap_or(i32::MAX);
        let secs = self.settings.initial.as_secs_f64() * self.settings.multiplier.powi(exponent);
        // powi overflows to infinity long before u32 runs out; try_from rejects it.
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.settings.max)
            .min(self.settings.max)
    }

    /// New settings (a reload) for the delays computed from now on; the count is kept.
    pub fn set_settings(&mut self, settings: BackoffSettings) {
        self.settings = settings;
    }

    /// Starts the sequence over (a `restart` or `start` command).
    pub fn reset(&mut self) {
        self.consecutive = 0;
    }

    /// How many quick exits in a row so far (1 for the first exit after a long run).
    pub fn attempt(&self) -> u32 {
        self.consecutive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BackoffSettings {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            reset_after: Duration::from_secs(60),
        }
    }

    const QUICK: Duration = Duration::from_millis(10);

    #[test]
    fn quick_exits_double_up_to_max() {
        let mut b = Backoff::new(settings());
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay(QUICK).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.attempt(), 9);
    }

    #[test]
    fn a_long_run_resets_the_sequence() {
        let mut b = Backoff::new(settings());
        for _ in 0..5 {
            b.next_delay(QUICK);
        }
        assert_eq!(
            b.next_delay(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(b.next_delay(QUICK), Duration::from_secs(2));
        // Just below reset-after still counts as quick.
        assert_eq!(
            b.next_delay(Duration::from_millis(59_999)),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn fractional_multiplier_and_sub_second_initial() {
        let mut b = Backoff::new(BackoffSettings {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            multiplier: 1.5,
            reset_after: Duration::from_secs(1),
        });
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay(QUICK).as_millis()).collect();
        assert_eq!(delays, [100, 150, 225, 300, 300]);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(settings());
        for _ in 0..10_000 {
            assert!(b.next_delay(QUICK) <= Duration::from_secs(60));
        }
        assert_eq!(b.next_delay(QUICK), Duration::from_secs(60));
    }
}
