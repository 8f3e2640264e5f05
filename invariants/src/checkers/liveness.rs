//! Liveness: every read ends, served or failed, within `read_duration_max_ns` of its invocation,
//! and 99 % of reads within `read_latency_p99_ns_max`. A read that waits without a deadline (a
//! connection pool, a lock, a queue) shows here as the slowest read of the history; one that
//! failed fast counts as an ended read, since saying "no" in time is what a deadline is for
//! (and what shedding is for: during a database slowdown the p99 of all reads stays near the
//! shed deadline). The witness is the slowest read.

use std::io;

use super::{smallest, witness_reads, ReadChecker};
use crate::index::{Index, ReadLog, ReadRec};
use crate::quantiles::Quantiles;
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

pub struct Liveness {
    max_ns: Option<u64>,
    p99_max_ns: Option<u64>,
    durations: Quantiles,
    reads: u64,
    slowest_ns: u64,
    /// The slowest read's (invoke_ns, id): of equally slow reads, the earliest, whatever the
    /// line order.
    slowest: Option<(u64, u64)>,
}

impl Liveness {
    pub fn new(max_ns: Option<u64>, p99_max_ns: Option<u64>) -> Self {
        Liveness {
            max_ns,
            p99_max_ns,
            durations: Quantiles::default(),
            reads: 0,
            slowest_ns: 0,
            slowest: None,
        }
    }
}

impl ReadChecker for Liveness {
    fn observe(&mut self, _idx: &Index, r: &ReadRec) {
        self.reads += 1;
        let took = r.complete_ns.saturating_sub(r.invoke_ns);
        self.durations.record(took);
        let at = (r.invoke_ns, r.id);
        let slower = match self.slowest {
            None => true,
            Some(s) => took > self.slowest_ns || (took == self.slowest_ns && at < s),
        };
        if slower {
            self.slowest_ns = took;
            self.slowest = Some(at);
        }
    }

    fn finish(self: Box<Self>, idx: &Index, reads: &mut ReadLog) -> io::Result<Verdict> {
        let mut v = Verdict::new(Invariant::Liveness);
        let p99 = self.durations.quantile(0.99);
        v.figure("reads", Figure::Count(self.reads))
            .figure(
                "slowest_read_ns",
                if self.reads == 0 {
                    Figure::None
                } else {
                    Figure::Ns(self.slowest_ns)
                },
            )
            .figure("read_latency_p99_ns", p99.map_or(Figure::None, Figure::Ns));
        if self.max_ns.is_none() && self.p99_max_ns.is_none() {
            v.unknown(
                "no read duration bound: set config.read_duration_max_ns or read_latency_p99_ns_max",
            );
            return Ok(v);
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        let slowest_over = self.max_ns.filter(|&m| self.slowest_ns > m);
        let p99_over = self
            .p99_max_ns
            .zip(p99)
            .filter(|&(m, p)| p > m)
            .map(|(m, _)| m);
        if slowest_over.is_none() && p99_over.is_none() {
            let mut said = Vec::new();
            if let Some(m) = self.max_ns {
                said.push(format!("every read ended within {:.1} ms", ms(m)));
            }
            if let Some(m) = self.p99_max_ns {
                said.push(format!("99 % within {:.1} ms", ms(m)));
            }
            v.judge(
                false,
                format!(
                    "{} ({} reads; the slowest took {:.1} ms, p99 {:.1} ms)",
                    said.join(", "),
                    self.reads,
                    ms(self.slowest_ns),
                    ms(p99.unwrap_or(0))
                ),
            );
            return Ok(v);
        }
        let (_, id) = self.slowest.expect("a read over a bound was observed");
        let rs = smallest(reads, 1, |r| (r.id == id).then_some((r.invoke_ns, r.id)))?;
        witness_reads(idx, &mut v.witness, &rs);
        let said = match (slowest_over, p99_over) {
            (Some(max), _) => format!(
                "a read took {:.1} ms to end, bound {:.1} ms",
                ms(self.slowest_ns),
                ms(max)
            ),
            (None, Some(max)) => format!(
                "p99 of {} reads took {:.1} ms to end, bound {:.1} ms (the slowest: {:.1} ms)",
                self.reads,
                ms(p99.unwrap_or(0)),
                ms(max),
                ms(self.slowest_ns)
            ),
            (None, None) => unreachable!("a bound was exceeded"),
        };
        v.judge(true, said);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::history::{Outcome, Source};
    use crate::testkit::{H, MS};
    use crate::verdict::Status;
    use crate::Invariant;

    #[test]
    fn holds_at_the_bound_and_fails_one_nanosecond_past_it_with_the_slowest_read_as_witness() {
        let mut h = H::new(json!({"read_duration_max_ns": 100 * MS}));
        h.read(1, "a", (0, 100 * MS), 0, Source::Db);
        h.read(2, "b", (5 * MS, 6 * MS), 0, Source::L1);
        assert_eq!(
            h.check().verdict(Invariant::Liveness).unwrap().status,
            Status::Holds
        );
        let slow = h.read(3, "c", (10 * MS, 110 * MS + 1), 0, Source::Db);
        let v = h.check().verdict(Invariant::Liveness).unwrap().clone();
        assert_eq!((v.status, v.witness.ops), (Status::Fails, vec![slow]));
    }

    #[test]
    fn a_read_that_failed_late_is_as_slow_as_one_served_late() {
        let mut h = H::new(json!({"read_duration_max_ns": 100 * MS}));
        let late = h.read_failed(1, "a", (0, 300 * MS), Outcome::Fail);
        let v = h.check().verdict(Invariant::Liveness).unwrap().clone();
        assert_eq!((v.status, v.witness.ops), (Status::Fails, vec![late]));
    }

    #[test]
    fn the_p99_bound_holds_with_one_slow_read_in_a_hundred_and_fails_with_two() {
        let mut h = H::new(json!({"read_latency_p99_ns_max": 10 * MS}));
        for i in 0..99 {
            h.read(i, "a", (i * MS, i * MS + MS), 0, Source::L1);
        }
        h.read_failed(99, "b", (0, 500 * MS), Outcome::Fail);
        assert_eq!(
            h.check().verdict(Invariant::Liveness).unwrap().status,
            Status::Holds
        );
        let slow = h.read_failed(100, "c", (0, 600 * MS), Outcome::Fail);
        let v = h.check().verdict(Invariant::Liveness).unwrap().clone();
        assert_eq!((v.status, v.witness.ops), (Status::Fails, vec![slow]));
        assert!(
            v.summary.starts_with("p99 of 101 reads took"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn without_a_bound_it_is_reported_not_judged() {
        let mut h = H::new(json!({}));
        h.read(1, "a", (0, 300 * MS), 0, Source::Db);
        assert!(matches!(
            h.check().verdict(Invariant::Liveness).unwrap().status,
            Status::Unknown(_)
        ));
    }
}
