//! Counters and latency histograms per tier, cheap enough for the hot path (relaxed atomics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latency buckets: powers of two from 1 µs to about 8.6 s, plus overflow.
const BUCKETS: usize = 24;

#[derive(Default, Debug)]
pub struct Latency {
    counts: [AtomicU64; BUCKETS],
    total_ns: AtomicU64,
}

impl Latency {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().max(1) as u64;
        let b = (63 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.counts[b].fetch_add(1, Relaxed);
        self.total_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Upper edge of the bucket holding quantile `q` (nearest rank), in microseconds.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c.load(Relaxed);
            if seen >= rank {
                return Some((2u64 << b) - 1);
            }
        }
        None
    }
}

/// What happened at one tier.
#[derive(Default, Debug)]
pub struct TierMetrics {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub fills: AtomicU64,
    /// Fills refused (a newer entry or tombstone was there, or NX lost).
    pub fill_rejections: AtomicU64,
    pub invalidations: AtomicU64,
    pub errors: AtomicU64,
    /// Entries that failed to decode: treated as misses and deleted.
    pub corrupt: AtomicU64,
    /// Values too large for the tier, not stored.
    pub oversized: AtomicU64,
    /// Calls skipped because the circuit was open.
    pub skipped: AtomicU64,
    /// Reads that skipped a fenced tier (`durable`: it failed here and is not repaired yet).
    pub fenced: AtomicU64,
    pub latency: Latency,
}

/// Everything an `aside` instance counts.
#[derive(Default, Debug)]
pub struct Metrics {
    pub l1: TierMetrics,
    pub l2: TierMetrics,
    pub db: TierMetrics,
    /// Loads that waited for another load of the same key in this process.
    pub coalesced: AtomicU64,
    /// Misses that lost the distributed lease and waited for the winner's fill.
    pub lease_waits: AtomicU64,
    /// Database reads refused by the concurrency limit.
    pub shed: AtomicU64,
    /// Stale values served while a refresh ran.
    pub stale_served: AtomicU64,
    /// Misses that read the primary because the replica had not replayed the version the
    /// outbox named (`durable`'s replica guard).
    pub replica_guarded: AtomicU64,
}

impl Metrics {
    /// Share of reads served by a cache tier: (l1 hits + l2 hits) / (those + database reads).
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits = self.l1.hits.load(Relaxed) + self.l2.hits.load(Relaxed);
        let db = self.db.hits.load(Relaxed);
        let n = hits + db;
        (n > 0).then(|| hits as f64 / n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_and_hit_ratio() {
        let l = Latency::default();
        for _ in 0..99 {
            l.record(Duration::from_micros(100));
        }
        l.record(Duration::from_millis(20));
        assert_eq!(l.quantile_us(0.5), Some(127));
        assert!(l.quantile_us(1.0).unwrap() >= 20_000);
        let m = Metrics::default();
        assert_eq!(m.hit_ratio(), None);
        m.l1.hits.fetch_add(8, Relaxed);
        m.l2.hits.fetch_add(1, Relaxed);
        m.db.hits.fetch_add(1, Relaxed);
        assert_eq!(m.hit_ratio(), Some(0.9));
    }
}
