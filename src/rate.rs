//! A limit on database reads per second (`CacheConfig::db_reads_per_sec_max`), as the generic
//! cell rate algorithm (GCRA): each read reserves the next free slot of a schedule that lets
//! through one read every `1 s / rate`, with a burst of a tenth of a second's reads. A read
//! whose slot is further off than it may wait is refused at once and reserves nothing, so a
//! database that slows down sees the same reads per second, and the reads past the limit end
//! within their wait instead of queueing without bound.
//!
//! One schedule per cache instance: the database's limit across `N` app nodes is `N` times it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The burst: reads that may pass at once after an idle spell, as the share of a second's.
const BURST_SHARE_OF_SECOND: u32 = 10;

#[derive(Debug)]
pub struct Rate {
    /// One read per this long.
    every: Duration,
    /// How far ahead of now the schedule may run before a read must wait (the burst).
    ahead_max: Duration,
    /// The theoretical arrival time of the next read: when the schedule is free again.
    next: Mutex<Option<Instant>>,
    per_sec: u32,
}

/// A read's place in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go now.
    Now,
    /// Go after this wait (the slot is reserved).
    After(Duration),
    /// The slot is further off than the read may wait: shed (nothing reserved).
    Refused,
}

impl Rate {
    /// `per_sec` reads per second (at least 1).
    pub fn new(per_sec: u32) -> Rate {
        let per_sec = per_sec.max(1);
        let every = Duration::from_secs(1) / per_sec;
        let burst = (per_sec / BURST_SHARE_OF_SECOND).max(1);
        Rate {
            every,
            ahead_max: every * (burst - 1),
            next: Mutex::new(None),
            per_sec,
        }
    }

    pub fn per_sec(&self) -> u32 {
        self.per_sec
    }

    /// Reserves a slot at `now` for a read that may wait at most `wait_max`.
    pub fn admit(&self, now: Instant, wait_max: Duration) -> Admit {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let tat = next.map_or(now, |t| t.max(now));
        // The read may go at `tat - ahead_max`: that far ahead of now the burst is used up.
        let wait = tat
            .saturating_duration_since(now)
            .saturating_sub(self.ahead_max);
        if wait > wait_max {
            return Admit::Refused;
        }
        *next = Some(tat + self.every);
        if wait.is_zero() {
            Admit::Now
        } else {
            Admit::After(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_reads_are_spaced_then_refused_past_the_wait() {
        // 100 per second: one per 10 ms, a burst of 10.
        let r = Rate::new(100);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        for _ in 0..10 {
            assert_eq!(r.admit(t0, ms(0)), Admit::Now);
        }
        assert_eq!(r.admit(t0, ms(0)), Admit::Refused, "the burst is used up");
        assert_eq!(r.admit(t0, ms(25)), Admit::After(ms(10)));
        assert_eq!(r.admit(t0, ms(25)), Admit::After(ms(20)));
        assert_eq!(r.admit(t0, ms(25)), Admit::Refused, "30 ms off, 25 allowed");
        // A refused read reserved nothing: the next slot is still 30 ms off.
        assert_eq!(r.admit(t0, ms(30)), Admit::After(ms(30)));
        // After an idle second the burst is back, and no more.
        let later = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            assert_eq!(r.admit(later, ms(0)), Admit::Now);
        }
        assert_eq!(r.admit(later, ms(0)), Admit::Refused);
    }

    #[test]
    fn over_any_second_no_more_than_the_rate_and_its_burst_pass() {
        let r = Rate::new(50);
        let t0 = Instant::now();
        let mut passed = Vec::new();
        // A read every millisecond for 3 s, each willing to wait 100 ms.
        for i in 0..3_000u64 {
            let now = t0 + Duration::from_millis(i);
            match r.admit(now, Duration::from_millis(100)) {
                Admit::Now => passed.push(now),
                Admit::After(w) => passed.push(now + w),
                Admit::Refused => {}
            }
        }
        for (i, &t) in passed.iter().enumerate() {
            let in_second = passed[i..]
                .iter()
                .take_while(|&&u| u < t + Duration::from_secs(1))
                .count();
            assert!(
                in_second <= 50 + 5,
                "{in_second} reads within 1 s of read {i}"
            );
        }
        assert!(passed.len() >= 3 * 50, "{} passed", passed.len());
    }
}
