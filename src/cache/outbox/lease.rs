//! The lease's clock ([`super`], "The lease"): when the last whole pass began, read lock-free by
//! every read.

use super::*;

impl Repair {
    fn now_ms(&self) -> u64 {
        // 1 and on: 0 is "never".
        self.made_at.elapsed().as_millis() as u64 + 1
    }

    /// A pass that began at `pass_start` read the whole outbox and applied (or fenced) every row
    /// it read.
    pub(super) fn caught_up(&self, pass_start: Instant) {
        // Floored, as `now_ms` is: the span between two floored instants is less than one ms
        // short of the true one, and the lease lapses at `>= Δ` of it.
        let ms = pass_start
            .saturating_duration_since(self.made_at)
            .as_millis() as u64
            + 1;
        self.caught_up_ms.fetch_max(ms, Relaxed);
    }

    /// How many whole ms ago the last whole pass began (the true span is less than one ms
    /// longer); None: none has yet.
    pub(super) fn since_caught_up_ms(&self) -> Option<u64> {
        match self.caught_up_ms.load(Relaxed) {
            0 => None,
            at => Some(self.now_ms().saturating_sub(at)),
        }
    }
}
