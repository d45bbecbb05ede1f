//! The records of reaped orphans (processes re-parented to us, not job leaders), summed up so
//! that an orphan storm cannot flood the log: the first orphan after a quiet second is recorded
//! at once; those reaped within the next second are counted and summed up in one record when
//! that second is over. Pure: the caller passes the time.

use std::time::{Duration, Instant};

use super::termination::Termination;
use crate::time::later;

/// At most one record per this long.
const WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct OrphanLog {
    /// Reaped and not yet recorded.
    pending: u64,
    /// The last one reaped: its pid and how it ended.
    last: Option<(i32, Termination)>,
    /// No record before this moment.
    quiet_until: Option<Instant>,
}

impl OrphanLog {
    /// An orphan was reaped at `now`: the record to write now, if one is due.
    pub fn reaped(&mut self, pid: i32, how: Termination, now: Instant) -> Option<String> {
        self.pending += 1;
        self.last = Some((pid, how));
        self.tick(now)
    }

    /// The summary record, once the quiet time is over and something is pending.
    pub fn tick(&mut self, now: Instant) -> Option<String> {
        if self.quiet_until.is_some_and(|until| now < until) {
            return None;
        }
        let record = self.flush()?;
        self.quiet_until = Some(later(now, WINDOW));
        Some(record)
    }

    /// When [`tick`](Self::tick) has a record to give: only while something is pending, so an
    /// idle supervisor has no timer.
    pub fn due(&self) -> Option<Instant> {
        if self.pending > 0 {
            self.quiet_until
        } else {
            None
        }
    }

    /// Whatever is pending, now (at exit).
    pub fn flush(&mut self) -> Option<String> {
        let (pid, how) = self.last?;
        let count = std::mem::take(&mut self.pending);
        match count {
            0 => None,
            1 => Some(format!(
                "reaped orphan process {pid}, which {}",
                how.describe()
            )),
            n => Some(format!(
                "reaped {n} orphan processes; the last, process {pid}, {}",
                how.describe()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_orphan_is_recorded_at_once() {
        let mut log = OrphanLog::default();
        let t0 = Instant::now();
        assert_eq!(
            log.reaped(7, Termination::Exited(0), t0).as_deref(),
            Some("reaped orphan process 7, which exited with status 0")
        );
        assert_eq!(log.due(), None, "nothing pending: no timer");
    }

    #[test]
    fn a_storm_gives_at_most_one_record_a_second() {
        let mut log = OrphanLog::default();
        let t0 = Instant::now();
        let mut records = Vec::new();
        // 2,000 orphans over 2.5 s.
        for i in 0..2000u32 {
            let now = t0 + Duration::from_micros(1250 * u64::from(i));
            records.extend(log.reaped(100 + i as i32, Termination::Signaled(9), now));
            if let Some(due) = log.due()
                && due <= now
            {
                records.extend(log.tick(now));
            }
        }
        let due = log.due().expect("the last ones are pending");
        records.extend(log.tick(due));
        assert_eq!(records.len(), 4, "{records:?}");
        assert_eq!(
            records[0],
            "reaped orphan process 100, which was killed by signal KILL"
        );
        assert!(records[1].starts_with("reaped 800 orphan processes; the last, process 900,"));
        assert!(
            records[3].contains("process 2099, was killed by signal KILL"),
            "{records:?}"
        );
        let total: u64 = records
            .iter()
            .map(|r| {
                r.strip_prefix("reaped ")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1)
            })
            .sum();
        assert_eq!(total, 2000, "every orphan counted once");
        assert_eq!(log.due(), None);
    }

    #[test]
    fn flush_gives_what_is_pending_at_exit() {
        let mut log = OrphanLog::default();
        let t0 = Instant::now();
        log.reaped(1, Termination::Exited(0), t0);
        assert_eq!(log.reaped(2, Termination::Exited(3), t0), None);
        assert_eq!(
            log.flush().as_deref(),
            Some("reaped orphan process 2, which exited with status 3")
        );
        assert_eq!(log.flush(), None);
    }
}
