//! Invariant 7, availability: the share of reads invoked while any fault was active that
//! succeeded (served from wherever, the database included). `fail` and `unknown` reads count as
//! not served. The witness is the minimal number of failed reads (earliest first) that already
//! pushes the ratio below the bound, with the faults active at each.

use std::io;

use super::{failures_to_prove, smallest, witness_reads, ReadChecker};
use crate::index::{Index, ReadLog, ReadRec};
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

pub struct Availability {
    min: Option<f64>,
    during: u64,
    ok: u64,
}

impl Availability {
    pub fn new(min: Option<f64>) -> Self {
        Availability {
            min,
            during: 0,
            ok: 0,
        }
    }
}

impl ReadChecker for Availability {
    fn observe(&mut self, idx: &Index, r: &ReadRec) {
        if idx.in_fault(r.invoke_ns) {
            self.during += 1;
            self.ok += u64::from(r.ok());
        }
    }

    fn finish(self: Box<Self>, idx: &Index, reads: &mut ReadLog) -> io::Result<Verdict> {
        let mut v = Verdict::new(Invariant::Availability);
        let ratio = if self.during == 0 {
            1.0
        } else {
            self.ok as f64 / self.during as f64
        };
        v.figure("reads_during_faults", Figure::Count(self.during))
            .figure("served_during_faults", Figure::Count(self.ok))
            .figure(
                "availability",
                if self.during == 0 {
                    Figure::None
                } else {
                    Figure::Ratio(ratio)
                },
            );
        let Some(min) = self.min else {
            v.unknown("no availability bound: set config.availability_min");
            return Ok(v);
        };
        if self.during == 0 {
            v.judge(false, "no read ran while a fault was active".to_string());
        } else if ratio >= min {
            v.judge(
                false,
                format!(
                    "{:.4} of {} reads during faults were served (bound {min})",
                    ratio, self.during
                ),
            );
        } else {
            let k = failures_to_prove(self.during, min);
            let rs = smallest(reads, k as usize, |r| {
                (!r.ok() && idx.in_fault(r.invoke_ns)).then_some((r.invoke_ns, r.id))
            })?;
            witness_reads(idx, &mut v.witness, &rs);
            v.judge(
                true,
                format!(
                    "only {} of {} reads during faults were served ({:.4} < {min})",
                    self.ok, self.during, ratio
                ),
            );
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use crate::Invariant;
    use serde_json::json;

    use crate::history::{Outcome, Source};
    use crate::testkit::{H, MS};
    use crate::verdict::Status;

    #[test]
    fn holds_at_the_bound_fails_below_with_the_minimal_failures() {
        let mut h = H::new(json!({"availability_min": 0.5}));
        let start = h.fault(100 * MS, true, "memcached-2");
        let stop = h.fault(200 * MS, false, "memcached-2");
        h.read(1, "k", (100 * MS, 101 * MS), 0, Source::Db); // at the start: during
        let f1 = h.read_failed(1, "k", (150 * MS, 151 * MS), Outcome::Unknown);
        h.read_failed(1, "k", (200 * MS, 201 * MS), Outcome::Fail); // at the stop: healed
        h.read_failed(1, "k", (10 * MS, 11 * MS), Outcome::Fail); // before: not during
        assert_eq!(
            h.check().verdict(Invariant::Availability).unwrap().status,
            Status::Holds
        );
        let f2 = h.read_failed(2, "k", (160 * MS, 161 * MS), Outcome::Fail);
        let v = h.check().verdict(Invariant::Availability).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert_eq!(v.witness.ops, vec![f1, f2]);
        assert_eq!(
            v.witness.lines,
            vec![start, stop, h.line_of(f1), h.line_of(f2)]
        );
    }
}
