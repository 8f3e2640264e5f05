//! Invariant 1, bounded staleness Δ.
//!
//! A successful read of version v is stale when an acknowledged write of a newer version completed
//! strictly before the read was invoked; its staleness is the read's invoke time minus the earliest
//! such completion. A read invoked exactly when the write completed is concurrent with it, not
//! stale. `unknown` writes never make a read stale (they may not have happened), and a read may
//! return their version (see the phantom checker). Δ is the largest staleness.
//!
//! A write that completed while every app node was cut from the PostgreSQL primary (a
//! `partition` between `apps` and `postgres` or `pg-primary`, a `reset` of the primary's
//! replies, a `stall` of its requests or a `half-open` of its connections) counts from that
//! fault's end: no app node could see it before (only a writer that is not an app node completes
//! one then).
//!
//! With `staleness_excludes_outbox_blind` (set for a strategy whose invalidations go through
//! the outbox), every such span between the write's completion and the read is left out, not
//! only one the write completed in: no invalidation could be made from the outbox then.
//!
//! A read served from an app's hot-key L0 is judged by the bound plus `l0_ttl_ns`: a row there
//! outlives another node's write until it expires, as the library states. The witness is the read
//! furthest past what it is allowed; with no L0 reads, the stalest.

use std::io;

use super::{fmt_ns, ReadChecker};
use crate::chain;
use crate::index::{Index, ReadLog, ReadRec};
use crate::quantiles::Quantiles;
use crate::verdict::{nines, Figure, Verdict};
use crate::Invariant;

pub struct Staleness {
    bound_ns: Option<u64>,
    l0_ttl_ns: u64,
    ok_reads: u64,
    stale: u64,
    quantiles: Quantiles,
    /// The worst stale read: (staleness less its L0 allowance, staleness, read, newer write's
    /// index in its key).
    worst: Option<(u64, u64, ReadRec, u32)>,
}

impl Staleness {
    pub fn new(bound_ns: Option<u64>, l0_ttl_ns: u64) -> Self {
        Staleness {
            bound_ns,
            l0_ttl_ns,
            ok_reads: 0,
            stale: 0,
            quantiles: Quantiles::default(),
            worst: None,
        }
    }
}

/// The staleness of one read, with the write that makes it stale.
pub fn staleness_of(idx: &Index, r: &ReadRec) -> Option<(u64, u32)> {
    let (complete, w) = idx.keys[r.key as usize].first_newer(r.version)?;
    if idx.staleness_excludes_outbox_blind {
        let blind = idx.outbox_blind_within(complete, r.invoke_ns);
        let s = r.invoke_ns.saturating_sub(complete).saturating_sub(blind);
        return (s > 0).then_some((s, w));
    }
    let seen = idx.outbox_seen_from(complete);
    (seen < r.invoke_ns).then(|| (r.invoke_ns - seen, w))
}

impl ReadChecker for Staleness {
    fn observe(&mut self, idx: &Index, r: &ReadRec) {
        if !r.ok() {
            return;
        }
        self.ok_reads += 1;
        let Some((s, w)) = staleness_of(idx, r) else {
            return;
        };
        self.stale += 1;
        self.quantiles.record(s);
        let allowed = if r.source == Some(crate::history::Source::L0) {
            self.l0_ttl_ns
        } else {
            0
        };
        let over = s.saturating_sub(allowed);
        // Furthest past its allowance; among equals the smallest op id, so the witness is
        // order-free.
        if self.worst.as_ref().is_none_or(|(wo, _, wr, _)| {
            (over, std::cmp::Reverse(r.id)) > (*wo, std::cmp::Reverse(wr.id))
        }) {
            self.worst = Some((over, s, *r, w));
        }
    }

    fn finish(self: Box<Self>, idx: &Index, _reads: &mut ReadLog) -> io::Result<Verdict> {
        let mut v = Verdict::new(Invariant::Staleness);
        let delta = self.quantiles.max().unwrap_or(0);
        let q = |p: f64| self.quantiles.quantile(p).map_or(Figure::None, Figure::Ns);
        v.figure("delta_ns", Figure::Ns(delta))
            .figure("stale_reads", Figure::Count(self.stale))
            .figure("ok_reads", Figure::Count(self.ok_reads))
            .figure("fresh_nines", nines(self.stale, self.ok_reads))
            .figure("staleness_p50_ns", q(0.5))
            .figure("staleness_p99_ns", q(0.99))
            .figure(
                "staleness_max_ns",
                self.quantiles.max().map_or(Figure::None, Figure::Ns),
            );
        let Some(bound) = self.bound_ns else {
            v.unknown(
                "no staleness bound: set config.staleness_ns_max in the header or pass --bound-ms",
            );
            return Ok(v);
        };
        let l0 = if self.l0_ttl_ns > 0 {
            format!(", L0 reads {} more", fmt_ns(self.l0_ttl_ns))
        } else {
            String::new()
        };
        if self.worst.as_ref().is_none_or(|w| w.0 <= bound) {
            v.judge(
                false,
                format!(
                    "Δ {} within bound {}{l0} ({} stale of {} reads)",
                    fmt_ns(delta),
                    fmt_ns(bound),
                    self.stale,
                    self.ok_reads
                ),
            );
            return Ok(v);
        }
        let (_, s, r, w) = self.worst.expect("a read past the bound");
        let write = idx.write(r.key, w);
        let found_in = r.source.filter(|s| s.is_cache());
        let chain = chain::explain(idx, r.key, r.version, found_in, r.complete_ns, write);
        let seen = idx.outbox_seen_from(write.complete_ns);
        let blind_ns = idx.outbox_blind_within(write.complete_ns, r.invoke_ns);
        let blind = if idx.staleness_excludes_outbox_blind && blind_ns > 0 {
            format!(
                ", not counting the {} in which no app node could read PostgreSQL's outbox",
                fmt_ns(blind_ns)
            )
        } else if seen > write.complete_ns {
            format!(
                ", counted from {} when every app node could read PostgreSQL's outbox again",
                fmt_ns(seen)
            )
        } else {
            String::new()
        };
        let why = if chain.is_empty() {
            blind
        } else {
            format!("{blind}; causal chain: {}", chain.describe(idx, write))
        };
        v.judge(
            true,
            format!(
                "read {} of {:?} returned v{} {} after write {} of v{} completed (bound {}{l0}){why}",
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
        for l in chain.lines() {
            v.witness.line(l);
        }
        for f in idx.faults_overlapping(write.complete_ns, r.invoke_ns) {
            v.witness.line(f.start_line);
            if let Some(l) = f.stop_line {
                v.witness.line(l);
            }
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
    use crate::verdict::{Figure, Status};

    #[test]
    fn a_read_from_l0_may_be_staler_by_its_ttl_and_no_other_read_may() {
        let bounds = json!({"staleness_ns_max": 100 * MS, "l0_ttl_ns": 100 * MS});
        let mut h = H::new(bounds);
        h.write(1, "post:1", (0, 10 * MS), 1);
        // 150 ms stale from L0: within 100 ms + the L0's 100 ms.
        h.read(2, "post:1", (160 * MS, 161 * MS), 0, Source::L0);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(v.status, Status::Holds, "{}", v.summary);
        assert!(
            v.summary.contains("L0 reads 100.0 ms more"),
            "{}",
            v.summary
        );
        assert_eq!(v.get("delta_ns"), Some(&Figure::Ns(150 * MS)));
        // 120 ms stale from L1, less stale than the L0 read but past its own bound: the witness.
        let r = h.read(3, "post:1", (130 * MS, 131 * MS), 0, Source::L1);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert!(v.witness.ops.contains(&r), "{:?}", v.witness);
        // Past its own allowance, an L0 read fails too.
        let mut h = H::new(json!({"staleness_ns_max": 100 * MS, "l0_ttl_ns": 100 * MS}));
        h.write(1, "post:1", (0, 10 * MS), 1);
        h.read(2, "post:1", (211 * MS, 212 * MS), 0, Source::L0);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(v.status, Status::Fails, "{}", v.summary);
    }

    /// A write no app node can see (every app cut from PostgreSQL, the primary's replies reset,
    /// its requests stalled or its connections half-open, when it completes, as only the foreign
    /// writer's can) counts from that fault's end; any other fault changes nothing.
    #[test]
    fn a_write_completed_while_the_apps_are_cut_from_the_database_counts_from_the_heal() {
        use crate::history::FaultAction::{Start, Stop};
        let cut = |target: &str, peers: &str| json!({"kind": "partition", "target": target, "peers": peers, "direction": "replies-lost"});
        for (fault, holds) in [
            (cut("apps", "postgres"), true),
            (cut("pg-primary", "apps"), true),
            (json!({"kind": "reset", "target": "pg-primary"}), true),
            (json!({"kind": "reset", "target": "postgres"}), true),
            (json!({"kind": "stall", "target": "pg-primary"}), true),
            (json!({"kind": "half-open", "target": "postgres"}), true),
            (json!({"kind": "half-open", "target": "memcached"}), false),
            (json!({"kind": "stall", "target": "redis-master"}), false),
            (json!({"kind": "reset", "target": "redis-master"}), false),
            (json!({"kind": "reset", "target": "pg-replica"}), false),
            (cut("apps", "redis"), false),
            (cut("app-1", "postgres"), false),
        ] {
            let mut h = H::new(json!({"staleness_ns_max": 100 * MS}));
            h.fault_json(0, Start, fault.clone());
            h.write(999, "post:1", (10 * MS, 20 * MS), 1);
            h.fault_json(500 * MS, Stop, fault.clone());
            // 480 ms after the write completed, 50 ms after the cut ended.
            h.read(2, "post:1", (550 * MS, 551 * MS), 0, Source::L1);
            let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
            assert_eq!(v.status == Status::Holds, holds, "{fault}: {}", v.summary);
            // 150 ms after the cut ended: stale past the bound either way, and said so.
            h.read(3, "post:1", (650 * MS, 651 * MS), 0, Source::L1);
            let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
            assert_eq!(v.status, Status::Fails, "{fault}");
            assert_eq!(
                v.summary
                    .contains("when every app node could read PostgreSQL's outbox again"),
                holds,
                "{}",
                v.summary
            );
        }
    }

    /// Seeds 333 and 504 of `durable`'s swarm: a write completed 8 ms before a cut of every
    /// app node from the primary. With the outbox rule its 600 ms out of sight are not counted;
    /// without it (a strategy that invalidates in the writer) they are, as before.
    #[test]
    fn an_outbox_strategy_is_not_counted_the_time_no_app_node_could_read_the_outbox() {
        use crate::history::FaultAction::{Start, Stop};
        let cut = json!({"kind": "partition", "target": "apps", "peers": "postgres"});
        for (excluded, read_at, holds) in [
            (true, 690 * MS, true),
            (false, 690 * MS, false),
            // 80 ms counted before the cut and 61 ms after it: past the bound.
            (true, 761 * MS, false),
        ] {
            let mut h = H::new(json!({
                "staleness_ns_max": 100 * MS,
                "staleness_excludes_outbox_blind": excluded,
            }));
            h.write(999, "post:1", (10 * MS, 20 * MS), 1);
            h.fault_json(100 * MS, Start, cut.clone());
            h.fault_json(700 * MS, Stop, cut.clone());
            h.read(2, "post:1", (read_at, read_at + MS), 0, Source::L1);
            let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
            assert_eq!(
                v.status == Status::Holds,
                holds,
                "excluded {excluded}, read at {read_at}: {}",
                v.summary
            );
            if !holds && excluded {
                assert!(
                    v.summary
                        .contains("not counting the 600.0 ms in which no app node"),
                    "{}",
                    v.summary
                );
            }
        }
        // The rule's own name is refused any value but a boolean.
        let mut h = H::new(json!({"staleness_excludes_outbox_blind": 1}));
        h.write(1, "post:1", (0, MS), 1);
        let e = h.try_check().unwrap_err().to_string();
        assert!(e.contains("must be true or false"), "{e}");
    }

    fn history(read_at: u64) -> (H, u64, u64) {
        let mut h = H::new(json!({"staleness_ns_max": 100 * MS}));
        let w = h.write(1, "post:1", (0, 10 * MS), 1);
        let r = h.read(2, "post:1", (read_at, read_at + MS), 0, Source::L1);
        (h, w, r)
    }

    #[test]
    fn holds_at_exactly_the_bound() {
        let (h, _, _) = history(110 * MS);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(v.status, Status::Holds);
        assert_eq!(v.get("delta_ns"), Some(&Figure::Ns(100 * MS)));
        assert_eq!(v.get("stale_reads"), Some(&Figure::Count(1)));
    }

    #[test]
    fn fails_one_nanosecond_past_the_bound_with_the_read_and_write_as_witness() {
        let (h, w, r) = history(110 * MS + 1);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert_eq!(v.witness.ops, vec![w, r]);
        assert_eq!(v.witness.lines, vec![h.line_of(w), h.line_of(r)]);
        assert_eq!(v.get("delta_ns"), Some(&Figure::Ns(100 * MS + 1)));
    }

    #[test]
    fn a_read_invoked_exactly_at_the_write_completion_is_concurrent_not_stale() {
        let (h, _, _) = history(10 * MS);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(v.get("stale_reads"), Some(&Figure::Count(0)));
        assert_eq!(v.get("fresh_nines"), Some(&Figure::Nines(None)));
    }

    #[test]
    fn staleness_counts_from_the_earliest_newer_write() {
        let mut h = H::new(json!({"staleness_ns_max": 50 * MS}));
        let w2 = h.write(1, "k", (15 * MS, 20 * MS), 2);
        let w1 = h.write(1, "k", (0, 10 * MS), 1);
        let r = h.read(2, "k", (200 * MS, 201 * MS), 0, Source::L2);
        h.read(2, "k", (200 * MS, 201 * MS), 1, Source::L2);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(
            v.get("delta_ns"),
            Some(&Figure::Ns(190 * MS)),
            "from v1's completion, not v2's"
        );
        assert_eq!(v.get("stale_reads"), Some(&Figure::Count(2)));
        assert_eq!(v.witness.ops, vec![w1, r]);
        let _ = w2;
    }

    #[test]
    fn unknown_and_failed_writes_never_make_a_read_stale() {
        let mut h = H::new(json!({"staleness_ns_max": MS}));
        h.write_outcome(1, "k", (0, 10 * MS), Some(1), Outcome::Unknown);
        h.write_outcome(1, "k", (0, 10 * MS), Some(2), Outcome::Fail);
        h.read(2, "k", (500 * MS, 501 * MS), 0, Source::L1);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(
            (v.status.clone(), v.get("stale_reads").cloned()),
            (Status::Holds, Some(Figure::Count(0)))
        );
    }

    #[test]
    fn without_a_bound_the_verdict_is_unknown_not_holds() {
        let (h, _, _) = history(500 * MS);
        let r = h.check_with(&[("staleness_ns_max", json!(null))]);
        assert!(matches!(
            r.verdict(Invariant::Staleness).unwrap().status,
            Status::Unknown(_)
        ));
    }

    #[test]
    fn the_witness_names_faults_active_in_the_stale_window() {
        let mut h = H::new(json!({"staleness_ns_max": MS}));
        let w = h.write(1, "k", (0, 10 * MS), 1);
        let start = h.fault(20 * MS, true, "redis-master");
        let stop = h.fault(30 * MS, false, "redis-master");
        h.fault(900 * MS, true, "memcached-1");
        let r = h.read(2, "k", (40 * MS, 41 * MS), 0, Source::L1);
        let v = h.check().verdict(Invariant::Staleness).unwrap().clone();
        assert_eq!(
            v.witness.lines,
            vec![h.line_of(w), start, stop, h.line_of(r)]
        );
    }
}
