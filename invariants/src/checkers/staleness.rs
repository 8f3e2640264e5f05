//! Invariant 1, bounded staleness Δ.
//!
//! A successful read of version v is stale when an acknowledged write of a newer version completed
//! strictly before the read was invoked; its staleness is the read's invoke time minus the earliest
//! such completion. A read invoked exactly when the write completed is concurrent with it, not
//! stale. `unknown` writes never make a read stale (they may not have happened), and a read may
//! return their version (see the phantom checker). Δ is the largest staleness.

use std::io;

use super::{fmt_ns, ReadChecker};
use crate::index::{Index, ReadLog, ReadRec};
use crate::quantiles::Quantiles;
use crate::verdict::{nines, Figure, Verdict};

pub struct Staleness {
    bound_ns: Option<u64>,
    ok_reads: u64,
    stale: u64,
    quantiles: Quantiles,
    /// The worst stale read: (staleness, read, newer write's index in its key).
    worst: Option<(u64, ReadRec, u32)>,
}

impl Staleness {
    pub fn new(bound_ns: Option<u64>) -> Self {
        Staleness { bound_ns, ok_reads: 0, stale: 0, quantiles: Quantiles::default(), worst: None }
    }
}

/// The staleness of one read, with the write that makes it stale.
pub fn staleness_of(idx: &Index, r: &ReadRec) -> Option<(u64, u32)> {
    let (complete, w) = idx.keys[r.key as usize].first_newer(r.version)?;
    (complete < r.invoke_ns).then(|| (r.invoke_ns - complete, w))
}

impl ReadChecker for Staleness {
    fn observe(&mut self, idx: &Index, r: &ReadRec) {
        if !r.ok() {
            return;
        }
        self.ok_reads += 1;
        let Some((s, w)) = staleness_of(idx, r) else { return };
        self.stale += 1;
        self.quantiles.record(s);
        // Largest staleness; among equals the smallest op id, so the witness is order-free.
        if self.worst.as_ref().is_none_or(|(ws, wr, _)| (s, std::cmp::Reverse(r.id)) > (*ws, std::cmp::Reverse(wr.id))) {
            self.worst = Some((s, *r, w));
        }
    }

    fn finish(self: Box<Self>, idx: &Index, _reads: &mut ReadLog) -> io::Result<Verdict> {
        let mut v = Verdict::new("staleness");
        let delta = self.worst.as_ref().map_or(0, |w| w.0);
        let q = |p: f64| self.quantiles.quantile(p).map_or(Figure::None, Figure::Ns);
        v.figure("delta_ns", Figure::Ns(delta))
            .figure("stale_reads", Figure::Count(self.stale))
            .figure("ok_reads", Figure::Count(self.ok_reads))
            .figure("fresh_nines", nines(self.stale, self.ok_reads))
            .figure("staleness_p50_ns", q(0.5))
            .figure("staleness_p99_ns", q(0.99))
            .figure("staleness_max_ns", self.quantiles.max().map_or(Figure::None, Figure::Ns));
        let Some(bound) = self.bound_ns else {
            v.unknown("no staleness bound: set config.staleness_ns_max in the header or pass --bound-ms");
            return Ok(v);
        };
        if delta <= bound {
            v.judge(false, format!("Δ {} within bound {} ({} stale of {} reads)", fmt_ns(delta), fmt_ns(bound), self.stale, self.ok_reads));
            return Ok(v);
        }
        let (s, r, w) = self.worst.expect("delta > bound >= 0 needs a stale read");
        let write = idx.write(r.key, w);
        v.judge(
            true,
            format!(
                "read {} of {:?} returned v{} {} after write {} of v{} completed (bound {})",
                r.id,
                idx.key_name(r.key),
                r.version,
                fmt_ns(s),
                write.id,
                write.version.unwrap_or_default(),
                fmt_ns(bound)
            ),
        );
        v.witness.op(write.id, write.line);
        v.witness.op(r.id, r.line);
        for f in idx.faults_overlapping(write.complete_ns, r.invoke_ns) {
            v.witness.line(f.start_line);
            if let Some(l) = f.stop_line {
                v.witness.line(l);
            }
        }
        Ok(v)
    }
}
