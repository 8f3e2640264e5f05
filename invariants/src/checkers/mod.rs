//! The checkers. Each is a pure function of the index built in pass one plus a stream of reads;
//! none depends on line order, and every witness is chosen by a total order on (time, op id) so
//! that shuffling a history never changes its verdict.

pub mod availability;
pub mod convergence;
pub mod coverage;
pub mod fault_effect;
pub mod liveness;
pub mod load;
pub mod lost_writes;
pub mod phantom;
pub mod session;
pub mod slo;
pub mod staircase;
pub mod staleness;

use std::collections::BinaryHeap;
use std::io;

use crate::index::{Index, ReadLog, ReadRec};
use crate::verdict::Witness;

/// A checker that looks at reads one by one (pass two), then answers. Reads come key group by key
/// group ([`crate::index::GROUPS`]): every read of a key is in its key's group.
pub trait ReadChecker {
    /// Sees every read of a key group before any of them is observed, for a checker that judges a
    /// read by the other reads of its key.
    fn look_ahead(&mut self, _r: &ReadRec) {}
    fn observe(&mut self, idx: &Index, r: &ReadRec);
    /// The group's reads have all been observed: what was kept for them alone may go.
    fn group_done(&mut self) {}
    /// `reads` may be streamed again to collect a witness that is only known at the end.
    fn finish(self: Box<Self>, idx: &Index, reads: &mut ReadLog) -> io::Result<crate::Verdict>;
}

/// The `k` reads with the smallest `order` among those it returns `Some` for, ascending: one extra
/// streaming pass, memory O(k).
pub fn smallest<K: Ord + Copy>(
    reads: &mut ReadLog,
    k: usize,
    mut order: impl FnMut(&ReadRec) -> Option<K>,
) -> io::Result<Vec<ReadRec>> {
    let mut heap: BinaryHeap<(K, u64, u64)> = BinaryHeap::new();
    let mut keep: rustc_hash::FxHashMap<u64, ReadRec> = Default::default();
    if k == 0 {
        return Ok(Vec::new());
    }
    reads.for_each(|r| {
        let Some(o) = order(r) else { return };
        let item = (o, r.id, r.line);
        if heap.len() < k {
            heap.push(item);
            keep.insert(r.id, *r);
        } else if heap.peek().is_some_and(|top| item < *top) {
            if let Some(out) = heap.pop() {
                keep.remove(&out.1);
            }
            heap.push(item);
            keep.insert(r.id, *r);
        }
    })?;
    let mut v = heap.into_sorted_vec();
    Ok(v.drain(..)
        .filter_map(|(_, id, _)| keep.remove(&id))
        .collect())
}

/// Adds the reads to a witness, with the lines of every fault active when each was invoked.
pub fn witness_reads(idx: &Index, w: &mut Witness, reads: &[ReadRec]) {
    for r in reads {
        w.op(r.id, r.line);
        for f in idx.faults_overlapping(r.invoke_ns, r.invoke_ns) {
            w.line(f.start_line);
            w.line(f.stop_line.unwrap_or(f.start_line));
        }
    }
}

/// The smallest `k` such that `k` failures among `n` already push a ratio of successes below
/// `min`: `(n - k) / n < min`. That many failures are the proof; fewer are not.
pub fn failures_to_prove(n: u64, min: f64) -> u64 {
    let allowed = ((1.0 - min) * n as f64).floor() as u64;
    let mut k = allowed.min(n);
    while k < n && (n - k) as f64 / n as f64 >= min {
        k += 1;
    }
    while k > 0 && ((n - (k - 1)) as f64 / n as f64) < min {
        k -= 1;
    }
    k
}

/// Nanoseconds as a person reads them.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_to_prove_is_minimal() {
        for n in 1..300u64 {
            for &min in &[0.5, 0.85, 0.9, 0.99, 0.999, 1.0, 0.0] {
                let k = failures_to_prove(n, min);
                let ratio = |k: u64| (n - k) as f64 / n as f64;
                if ratio(n) < min {
                    assert!(ratio(k) < min, "n={n} min={min} k={k}");
                    assert!(
                        k == 0 || ratio(k - 1) >= min,
                        "n={n} min={min} k={k} not minimal"
                    );
                }
            }
        }
        assert_eq!(failures_to_prove(1000, 0.999), 2);
        assert_eq!(failures_to_prove(100, 0.85), 16);
    }

    #[test]
    fn ns_formatting() {
        assert_eq!(fmt_ns(500), "500 ns");
        assert_eq!(fmt_ns(2_500_000), "2.5 ms");
        assert_eq!(fmt_ns(25_000_000), "25.0 ms");
        assert_eq!(fmt_ns(3_000_000_000), "3.00 s");
    }
}
