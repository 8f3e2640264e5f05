//! Liveness: every read ends, served or failed, within `read_duration_max_ns` of its invocation.
//! A read that waits without a deadline (a connection pool, a lock, a queue) shows here as the
//! slowest read of the history; one that failed fast counts as an ended read, since saying "no"
//! in time is what a deadline is for. The witness is the slowest read.

use std::io;

use super::{smallest, witness_reads, ReadChecker};
use crate::index::{Index, ReadLog, ReadRec};
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

pub struct Liveness {
    max_ns: Option<u64>,
    reads: u64,
    slowest_ns: u64,
    /// The slowest read's (invoke_ns, id): of equally slow reads, the earliest, whatever the
    /// line order.
    slowest: Option<(u64, u64)>,
}

impl Liveness {
    pub fn new(max_ns: Option<u64>) -> Self {
        Liveness {
            max_ns,
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
        v.figure("reads", Figure::Count(self.reads)).figure(
            "slowest_read_ns",
            if self.reads == 0 {
                Figure::None
            } else {
                Figure::Ns(self.slowest_ns)
            },
        );
        let Some(max) = self.max_ns else {
            v.unknown("no read duration bound: set config.read_duration_max_ns");
            return Ok(v);
        };
        if self.slowest_ns <= max {
            v.judge(
                false,
                format!(
                    "every read of {} ended within {:.1} ms (the slowest took {:.1} ms)",
                    self.reads,
                    max as f64 / 1e6,
                    self.slowest_ns as f64 / 1e6
                ),
            );
            return Ok(v);
        }
        let (_, id) = self.slowest.expect("a read over the bound was observed");
        let rs = smallest(reads, 1, |r| (r.id == id).then_some((r.invoke_ns, r.id)))?;
        witness_reads(idx, &mut v.witness, &rs);
        v.judge(
            true,
            format!(
                "a read took {:.1} ms to end, bound {:.1} ms",
                self.slowest_ns as f64 / 1e6,
                max as f64 / 1e6
            ),
        );
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
    fn without_a_bound_it_is_reported_not_judged() {
        let mut h = H::new(json!({}));
        h.read(1, "a", (0, 300 * MS), 0, Source::Db);
        assert!(matches!(
            h.check().verdict(Invariant::Liveness).unwrap().status,
            Status::Unknown(_)
        ));
    }
}
