//! The wall clock a cache instance reads: the system's, moved by a `clock` fault.
//!
//! The cache reads wall time for one thing: the freshness stamp of an entry
//! (stale-while-revalidate and early refresh put `fresh_until_ms` into the envelope, and a reader
//! compares it with its own clock). Real clocks disagree: an NTP step moves a node's clock by
//! seconds, a VM resumed from a snapshot jumps, a bad oscillator runs fast. A harness makes its
//! app nodes' clocks do the same through [`WallClock::skew`]; the library never calls it.
//!
//! A skew is a jump (`jump_ms`, negative: back) taken at once and a rate (`rate_permille`, 1000:
//! true time; 2000: two seconds per second) from that instant on. [`WallClock::true_time`] steps
//! the clock back, as an NTP step would.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A clock's offset from true time, and since when it drifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Skew {
    /// True time, in ms since the epoch, when the skew was set.
    since_ms: u64,
    jump_ms: i64,
    rate_permille: u32,
}

impl Skew {
    /// What a clock under this skew reads when true time is `true_ms`.
    fn read(&self, true_ms: u64) -> u64 {
        let elapsed_ms = true_ms.saturating_sub(self.since_ms) as i128;
        let drift_ms = elapsed_ms * (i128::from(self.rate_permille) - 1000) / 1000;
        let t = i128::from(true_ms) + i128::from(self.jump_ms) + drift_ms;
        t.clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// A wall clock, shared by clones: the system's until [`WallClock::skew`] moves it.
#[derive(Debug, Clone, Default)]
pub struct WallClock {
    skew: Arc<Mutex<Option<Skew>>>,
}

impl WallClock {
    /// Milliseconds since the Unix epoch, as this clock reads them.
    pub fn now_ms(&self) -> u64 {
        let true_ms = true_now_ms();
        match *self.skew.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(s) => s.read(true_ms),
            None => true_ms,
        }
    }

    /// From now on this clock reads `jump_ms` off true time, and runs at `rate_permille` / 1000
    /// of its speed. A second skew replaces the first (from true time, not from the first's).
    pub fn skew(&self, jump_ms: i64, rate_permille: u32) {
        let s = Skew {
            since_ms: true_now_ms(),
            jump_ms,
            rate_permille,
        };
        *self.skew.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    }

    /// Back to true time (an NTP step).
    pub fn true_time(&self) {
        *self.skew.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// How far this clock reads from true time now, in ms (positive: ahead).
    pub fn offset_ms(&self) -> i64 {
        let true_ms = true_now_ms();
        let read = match *self.skew.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(s) => s.read(true_ms),
            None => true_ms,
        };
        (i128::from(read) - i128::from(true_ms)) as i64
    }
}

/// The system's wall time in ms since the epoch (the simulator's, under madsim): what an
/// unskewed clock reads, for a harness comparing a node's clock with true time.
pub fn true_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a clock reads at true time `true_ms` when it was set `jump_ms` off at `since_ms` and has
/// run at `rate_permille` since: the rule [`WallClock`] applies, for servers a harness models.
pub fn skewed_ms(true_ms: u64, since_ms: u64, jump_ms: i64, rate_permille: u32) -> u64 {
    Skew {
        since_ms,
        jump_ms,
        rate_permille,
    }
    .read(true_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_moves_the_reading_at_once_and_a_rate_from_then_on() {
        assert_eq!(skewed_ms(10_000, 10_000, 5_000, 1000), 15_000);
        assert_eq!(skewed_ms(12_000, 10_000, 5_000, 1000), 17_000);
        assert_eq!(skewed_ms(10_000, 10_000, -3_000, 1000), 7_000);
        // Twice as fast: two seconds read per second of true time.
        assert_eq!(skewed_ms(12_000, 10_000, 0, 2000), 14_000);
        // A jump back past the epoch reads the epoch, not a wrapped number.
        assert_eq!(skewed_ms(1_000, 1_000, -5_000, 1000), 0);
    }

    #[test]
    fn a_skewed_clock_reads_off_true_time_until_stepped_back() {
        let c = WallClock::default();
        assert_eq!(c.offset_ms(), 0);
        c.skew(60_000, 1000);
        let shared = c.clone();
        assert!((59_990..=60_010).contains(&shared.offset_ms()));
        assert!(shared.now_ms() >= true_now_ms() + 59_990);
        c.skew(-60_000, 1000);
        assert!((-60_010..=-59_990).contains(&shared.offset_ms()));
        c.true_time();
        assert_eq!(shared.offset_ms(), 0);
    }
}
