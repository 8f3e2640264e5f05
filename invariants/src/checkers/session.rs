//! Invariant 4, session guarantees per client.
//!
//! Read-your-writes (gating): once a client's write of version v is acknowledged, its later reads
//! of that key (invoked after the acknowledgement) return v or newer. Monotonic reads (reported,
//! not gating: cache-aside does not promise it across tiers): once a client has seen version v of
//! a key, a read it invokes later returns v or newer. Both count violations per client.

use std::collections::BTreeMap;
use std::io;

use rustc_hash::FxHashMap;

use super::staircase::{Point, Staircase};
use super::{smallest, ReadChecker};
use crate::index::{Index, ReadLog, ReadRec};
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

/// The earliest violation by (invoke, id): the read, and the op (id, line) it contradicts.
type First = Option<(ReadRec, u64, u64, u64)>;

fn keep_first(first: &mut First, r: &ReadRec, other_id: u64, other_line: u64, other_version: u64) {
    if first
        .as_ref()
        .is_none_or(|(f, ..)| (r.invoke_ns, r.id) < (f.invoke_ns, f.id))
    {
        *first = Some((*r, other_id, other_line, other_version));
    }
}

#[derive(Default)]
pub struct ReadYourWrites {
    checked: u64,
    per_client: BTreeMap<u64, u64>,
    first: First,
}

impl ReadChecker for ReadYourWrites {
    fn observe(&mut self, idx: &Index, r: &ReadRec) {
        if !r.ok() {
            return;
        }
        let Some((own, w)) = idx.keys[r.key as usize].own_before(r.client, r.invoke_ns) else {
            return;
        };
        self.checked += 1;
        if r.version < own {
            *self.per_client.entry(r.client).or_default() += 1;
            let w = idx.write(r.key, w);
            keep_first(&mut self.first, r, w.id, w.line, own);
        }
    }

    fn finish(self: Box<Self>, idx: &Index, _reads: &mut ReadLog) -> io::Result<Verdict> {
        Ok(session_verdict(
            Invariant::ReadYourWrites,
            self.checked,
            self.per_client,
            self.first,
            idx,
            "its own write",
        ))
    }
}

#[derive(Default)]
pub struct MonotonicReads {
    checked: u64,
    per_client: BTreeMap<u64, u64>,
    first: First,
    /// The key group's ok reads, as a staircase per (client, key): memory for one group's pairs,
    /// not the history's.
    stairs: FxHashMap<(u64, u32), Staircase>,
    /// Ok reads observed with no staircase: the reads were streamed without
    /// [`ReadChecker::look_ahead`], and the verdict is unknown, not a pass.
    unseen: u64,
}

impl ReadChecker for MonotonicReads {
    fn look_ahead(&mut self, r: &ReadRec) {
        if !r.ok() {
            return;
        }
        let p = Point {
            complete_ns: r.complete_ns,
            id: r.id,
            version: r.version,
        };
        self.stairs
            .entry((r.client, r.key))
            .and_modify(|s| s.insert(p))
            .or_insert_with(|| Staircase::new(p));
    }

    fn group_done(&mut self) {
        self.stairs.clear();
    }

    fn observe(&mut self, _idx: &Index, r: &ReadRec) {
        if !r.ok() {
            return;
        }
        // An ok read is on its own staircase once looked ahead at.
        let Some(stairs) = self.stairs.get(&(r.client, r.key)) else {
            self.unseen += 1;
            return;
        };
        let Some(seen) = stairs.before(r.invoke_ns) else {
            return;
        };
        self.checked += 1;
        if r.version < seen.version {
            *self.per_client.entry(r.client).or_default() += 1;
            // The earlier read's line is looked up at the end, only if it is the witness.
            keep_first(&mut self.first, r, seen.id, 0, seen.version);
        }
    }

    fn finish(mut self: Box<Self>, idx: &Index, reads: &mut ReadLog) -> io::Result<Verdict> {
        if let Some((_, id, line, _)) = &mut self.first {
            let want = *id;
            *line = smallest(reads, 1, |r| (r.id == want).then_some(()))?
                .first()
                .map_or(0, |r| r.line);
        }
        let mut v = session_verdict(
            Invariant::MonotonicReads,
            self.checked,
            self.per_client,
            self.first,
            idx,
            "its earlier read",
        );
        if self.unseen > 0 {
            v.unknown(format!(
                "{} ok reads were observed without a look ahead at their key group: stream them with check_index",
                self.unseen
            ));
        }
        Ok(v)
    }
}

fn session_verdict(
    invariant: Invariant,
    checked: u64,
    per_client: BTreeMap<u64, u64>,
    first: First,
    idx: &Index,
    what: &str,
) -> Verdict {
    let mut v = Verdict::new(invariant);
    let total: u64 = per_client.values().sum();
    v.figure("violations", Figure::Count(total))
        .figure("reads_checked", Figure::Count(checked))
        .figure("violations_per_client", Figure::PerClient(per_client));
    match first {
        None => v.judge(
            false,
            format!("{checked} reads after an earlier op of the same client, none went back"),
        ),
        Some((r, oid, oline, ov)) => {
            v.witness.op(oid, oline);
            v.witness.op(r.id, r.line);
            v.judge(
                true,
                format!(
                    "client {} read v{} of {:?} (op {}) after {} saw v{} (op {oid}); {total} violations",
                    r.client,
                    r.version,
                    idx.key_name(r.key),
                    r.id,
                    what,
                    ov
                ),
            );
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::Invariant;
    use serde_json::json;

    use crate::history::Source;
    use crate::testkit::{H, MS};
    use crate::verdict::{Figure, Status};

    #[test]
    fn read_your_writes_holds_fails_and_its_boundary() {
        let mut h = H::new(json!({}));
        let w = h.write(1, "k", (0, 10 * MS), 1);
        h.read(1, "k", (10 * MS, 11 * MS), 0, Source::L1); // invoked at the ack: concurrent
        h.read(2, "k", (20 * MS, 21 * MS), 0, Source::L1); // another client: not RYW
        h.read(1, "k", (20 * MS, 21 * MS), 1, Source::L1);
        let v = h
            .check()
            .verdict(Invariant::ReadYourWrites)
            .unwrap()
            .clone();
        assert_eq!(v.status, Status::Holds);
        assert_eq!(v.get("reads_checked"), Some(&Figure::Count(1)));
        let r = h.read(1, "k", (30 * MS, 31 * MS), 0, Source::L1);
        let report = h.check();
        let v = report.verdict(Invariant::ReadYourWrites).unwrap();
        assert_eq!(
            (v.status.clone(), v.witness.ops.clone()),
            (Status::Fails, vec![w, r])
        );
        assert!(report.fails(), "read-your-writes gates the history");
    }

    /// Streamed without its look ahead (not through `check_index`), the checker says it could
    /// not judge, rather than holding with nothing checked.
    #[test]
    fn monotonic_reads_streamed_without_a_look_ahead_are_unknown() {
        use crate::checkers::{session::MonotonicReads, ReadChecker};
        let mut h = H::new(json!({}));
        h.write(9, "k", (0, MS), 1);
        h.read(3, "k", (5 * MS, 10 * MS), 1, Source::L1);
        h.read(3, "k", (11 * MS, 12 * MS), 0, Source::L2);
        let mut idx = h.index();
        let mut reads = std::mem::replace(&mut idx.reads, crate::index::ReadLog::new(0));
        let mut c = Box::new(MonotonicReads::default());
        reads.for_each(|r| c.observe(&idx, r)).unwrap();
        let v = c.finish(&idx, &mut reads).unwrap();
        assert!(matches!(v.status, Status::Unknown(_)), "{:?}", v.status);
        assert_eq!(
            h.check().verdict(Invariant::MonotonicReads).unwrap().status,
            Status::Fails,
            "through check_index the same reads are judged"
        );
    }

    #[test]
    fn monotonic_reads_are_reported_per_client_but_do_not_gate() {
        let mut h = H::new(json!({}));
        h.write(9, "k", (0, MS), 1);
        h.write(9, "k", (0, MS), 2);
        let r1 = h.read(3, "k", (5 * MS, 10 * MS), 2, Source::L1);
        h.read(3, "k", (10 * MS, 12 * MS), 1, Source::L2); // invoked at r1's completion: concurrent
        let mut clean = h.check();
        assert_eq!(
            clean.verdict(Invariant::MonotonicReads).unwrap().status,
            Status::Holds
        );
        let r2 = h.read(3, "k", (11 * MS, 12 * MS), 1, Source::L2);
        clean = h.check();
        let v = clean.verdict(Invariant::MonotonicReads).unwrap();
        assert_eq!(
            (v.status.clone(), v.witness.ops.clone()),
            (Status::Fails, vec![r1, r2])
        );
        let Some(Figure::PerClient(m)) = v.get("violations_per_client") else {
            panic!("per-client figure")
        };
        assert_eq!(m.get(&3), Some(&1));
        assert!(!v.gating);
    }
}
