//! Counters and latency histograms per tier, cheap enough for the hot path (relaxed atomics);
//! their Prometheus exposition ([`exposition`]) and an HTTP endpoint that serves it
//! ([`endpoint`]).

#[cfg(not(madsim))]
pub mod endpoint;
pub mod exposition;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latency buckets: powers of two from 1 µs to about 8.6 s, plus overflow.
pub(crate) const BUCKETS: usize = 24;

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

    /// How many calls each bucket holds: bucket `b` holds those of 2^b to 2^(b+1) µs (the
    /// first also those under 1 µs, the last everything from about 8.4 s up).
    pub fn buckets(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The sum of every recorded duration, nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.total_ns.load(Relaxed)
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
    /// Reads served from this process's hot-key L0 (`cache.l0_ttl_ms`).
    pub l0_hits: AtomicU64,
    /// Loads that waited for another load of the same key in this process.
    pub coalesced: AtomicU64,
    /// Misses that lost the distributed lease and waited for the winner's fill.
    pub lease_waits: AtomicU64,
    /// Database reads refused by the concurrency limit.
    pub shed: AtomicU64,
    /// Stale values served while a refresh ran.
    pub stale_served: AtomicU64,
    /// Fresh values reloaded shortly before they expired (XFetch, `cache.early_refresh_beta`).
    pub early_refreshes: AtomicU64,
    /// Misses that read the primary because the replica had not replayed the version the
    /// outbox named (`durable`'s replica guard).
    pub replica_guarded: AtomicU64,
    /// Reads through the cache (`get`, `get_with`, `get_as`), L1 to the database: what the
    /// production design's latency SLO is about.
    pub reads: Latency,
}

impl Metrics {
    /// Share of reads served by a cache tier: (l0 + l1 + l2 hits) / (those + database reads).
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits =
            self.l0_hits.load(Relaxed) + self.l1.hits.load(Relaxed) + self.l2.hits.load(Relaxed);
        let db = self.db.hits.load(Relaxed);
        let n = hits + db;
        (n > 0).then(|| hits as f64 / n as f64)
    }
}

/// One tier's figures at one instant ([`Metrics::snapshot`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TierSnapshot {
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses); None before the first lookup.
    pub hit_ratio: Option<f64>,
    pub fills: u64,
    pub fill_rejections: u64,
    pub invalidations: u64,
    pub errors: u64,
    pub corrupt: u64,
    pub oversized: u64,
    pub skipped: u64,
    pub fenced: u64,
    /// Call latency quantiles (upper bucket edges), microseconds.
    pub latency_p50_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
}

/// Every figure of an instance at one instant: what to print or export. `Display` is a small
/// table; serde gives JSON (or any format) to ship elsewhere.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// Reads served by a cache tier: (l0 + l1 + l2 hits) / (those + database reads).
    pub hit_ratio: Option<f64>,
    /// Reads served from the hot-key L0.
    pub l0_hits: u64,
    pub l1: TierSnapshot,
    pub l2: TierSnapshot,
    /// The database: `hits` are reads it served, `misses` absent rows.
    pub db: TierSnapshot,
    pub coalesced: u64,
    pub lease_waits: u64,
    pub shed: u64,
    pub stale_served: u64,
    pub early_refreshes: u64,
    pub replica_guarded: u64,
    /// Reads through the cache, L1 to the database.
    pub reads: ReadLatency,
}

/// The latency of reads through the cache at one instant: quantiles, and the histogram itself
/// (what the Prometheus exposition's `aside_read_latency_seconds` is made of).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReadLatency {
    pub count: u64,
    /// Upper bucket edges, microseconds; None before the first read.
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    /// Per bucket, as [`Latency::buckets`].
    pub buckets: Vec<u64>,
    pub sum_ns: u64,
}

impl Latency {
    fn read_snapshot(&self) -> ReadLatency {
        ReadLatency {
            count: self.count(),
            p50_us: self.quantile_us(0.5),
            p99_us: self.quantile_us(0.99),
            buckets: self.buckets(),
            sum_ns: self.sum_ns(),
        }
    }
}

impl TierMetrics {
    pub fn snapshot(&self) -> TierSnapshot {
        let (hits, misses) = (self.hits.load(Relaxed), self.misses.load(Relaxed));
        TierSnapshot {
            hits,
            misses,
            hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            fills: self.fills.load(Relaxed),
            fill_rejections: self.fill_rejections.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            errors: self.errors.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            fenced: self.fenced.load(Relaxed),
            latency_p50_us: self.latency.quantile_us(0.5),
            latency_p99_us: self.latency.quantile_us(0.99),
        }
    }
}

impl Metrics {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            hit_ratio: self.hit_ratio(),
            l0_hits: self.l0_hits.load(Relaxed),
            l1: self.l1.snapshot(),
            l2: self.l2.snapshot(),
            db: self.db.snapshot(),
            coalesced: self.coalesced.load(Relaxed),
            lease_waits: self.lease_waits.load(Relaxed),
            shed: self.shed.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            early_refreshes: self.early_refreshes.load(Relaxed),
            replica_guarded: self.replica_guarded.load(Relaxed),
            reads: self.reads.read_snapshot(),
        }
    }
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.3}"));
        let us = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} µs"));
        writeln!(
            f,
            "hit ratio {} (l0 hits {})",
            ratio(self.hit_ratio),
            self.l0_hits
        )?;
        writeln!(
            f,
            "tier  {:>8} {:>8} {:>6} {:>7} {:>7} {:>6} {:>10} {:>10}",
            "hits", "misses", "ratio", "fills", "invals", "errors", "p50", "p99"
        )?;
        for (name, t) in [("l1", &self.l1), ("l2", &self.l2), ("db", &self.db)] {
            writeln!(
                f,
                "{name:<4}  {:>8} {:>8} {:>6} {:>7} {:>7} {:>6} {:>10} {:>10}",
                t.hits,
                t.misses,
                ratio(t.hit_ratio),
                t.fills,
                t.invalidations,
                t.errors,
                us(t.latency_p50_us),
                us(t.latency_p99_us)
            )?;
        }
        writeln!(
            f,
            "reads {} p50 {} p99 {}",
            self.reads.count,
            us(self.reads.p50_us),
            us(self.reads.p99_us)
        )?;
        write!(
            f,
            "coalesced {}, lease waits {}, shed {}, stale served {}, early refreshes {}, replica guarded {}",
            self.coalesced,
            self.lease_waits,
            self.shed,
            self.stale_served,
            self.early_refreshes,
            self.replica_guarded
        )
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
        m.l1.misses.fetch_add(2, Relaxed);
        let snap = m.snapshot();
        assert_eq!((snap.l1.hit_ratio, snap.hit_ratio), (Some(0.8), Some(0.9)));
        let shown = snap.to_string();
        assert!(
            shown.starts_with("hit ratio 0.900 (l0 hits 0)\n"),
            "{shown}"
        );
        assert!(
            shown.contains("\nl1           8        2  0.800"),
            "{shown}"
        );
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["l1"]["hits"], 8);
        let text = snap.prometheus();
        for line in [
            "# TYPE aside_hits counter",
            "aside_hits_total{tier=\"l1\"} 8",
            "aside_misses_total{tier=\"l1\"} 2",
            "aside_tier_hit_ratio{tier=\"l1\"} 0.8",
            "aside_hit_ratio 0.9",
            "aside_coalesced_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn l0_hits_are_hits_in_the_ratio_and_in_the_exposition() {
        let m = Metrics::default();
        m.l0_hits.fetch_add(2, Relaxed);
        m.l1.hits.fetch_add(1, Relaxed);
        m.db.hits.fetch_add(1, Relaxed);
        assert_eq!(m.hit_ratio(), Some(0.75));
        let snap = m.snapshot();
        assert!(snap
            .to_string()
            .starts_with("hit ratio 0.750 (l0 hits 2)\n"));
        let text = snap.prometheus();
        assert!(
            text.lines().any(|l| l == "aside_hits_total{tier=\"l0\"} 2"),
            "{text}"
        );
    }
}
