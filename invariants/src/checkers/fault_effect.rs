//! The harness's own invariant: every fault took effect. A nemesis that believes it cut a link
//! but did not would let a strategy "survive" a fault that never happened, so a fault with no
//! `observed` line between its start and its stop (or the end of the history, if it never stops)
//! fails here, gating, with the fault's own lines as the witness. An `observed` line at the
//! instant of the stop still counts: the effect was seen while the fault was on.

use crate::index::Index;
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

pub fn check(idx: &Index) -> Verdict {
    let mut v = Verdict::new(Invariant::FaultEffect);
    let unobserved: Vec<_> = idx.faults.iter().filter(|f| f.observed.is_none()).collect();
    v.figure("faults", Figure::Count(idx.faults.len() as u64))
        .figure("unobserved", Figure::Count(unobserved.len() as u64));
    match unobserved.first() {
        Some(f) => {
            v.witness.line(f.start_line);
            if let Some(l) = f.stop_line {
                v.witness.line(l);
            }
            v.judge(
                true,
                format!(
                    "harness error: fault {} was never observed taking effect ({} of {} faults): the nemesis must record an `observed` line, or the fault did nothing",
                    f.fault,
                    unobserved.len(),
                    idx.faults.len()
                ),
            );
        }
        None => v.judge(
            false,
            format!(
                "every fault of {} was observed taking effect",
                idx.faults.len()
            ),
        ),
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::Invariant;
    use serde_json::json;

    use crate::history::Source;
    use crate::testkit::{H, MS};

    #[test]
    fn holds_when_every_fault_is_observed_before_its_stop() {
        let mut h = H::new(json!({}));
        h.read(1, "k", (MS, 2 * MS), 0, Source::L1);
        h.fault(10 * MS, true, "redis-master");
        h.observed(12 * MS, "redis-master");
        h.fault(20 * MS, false, "redis-master");
        let r = h.check();
        let v = r.verdict(Invariant::FaultEffect).unwrap();
        assert!(!v.fails(), "{}", v.summary);
    }

    #[test]
    fn fails_on_a_fault_never_observed_with_its_start_and_stop_as_witness() {
        let mut h = H::new(json!({}));
        h.read(1, "k", (MS, 2 * MS), 0, Source::L1);
        let start = h.fault(10 * MS, true, "memcached-1");
        let stop = h.fault(20 * MS, false, "memcached-1");
        let r = h.check();
        let v = r.verdict(Invariant::FaultEffect).unwrap();
        assert!(v.fails() && v.gating);
        assert_eq!(v.witness.lines, vec![start, stop]);
        assert!(v.summary.contains("harness error"), "{}", v.summary);
    }

    #[test]
    fn an_observation_outside_the_span_or_of_another_fault_does_not_count() {
        let mut h = H::new(json!({}));
        h.read(1, "k", (MS, 2 * MS), 0, Source::L1);
        h.observed(5 * MS, "redis-master"); // before the start
        h.fault(10 * MS, true, "redis-master");
        h.observed(15 * MS, "memcached-1"); // another fault
        h.fault(20 * MS, false, "redis-master");
        h.observed(25 * MS, "redis-master"); // after the stop
        let r = h.check();
        assert!(r.verdict(Invariant::FaultEffect).unwrap().fails());
    }

    #[test]
    fn an_observation_at_the_instant_of_the_stop_counts() {
        let mut h = H::new(json!({}));
        h.read(1, "k", (MS, 2 * MS), 0, Source::L1);
        h.fault(10 * MS, true, "redis-master");
        h.observed(20 * MS, "redis-master");
        h.fault(20 * MS, false, "redis-master");
        assert!(!h.check().verdict(Invariant::FaultEffect).unwrap().fails());
    }
}
