//! Invariant 6, load safety: what the database had to serve.
//!
//! Counts successful reads served by the database (`source` db or replica; not `wait`) in fixed windows
//! aligned to time 0: per key per fill window (stampede protection should keep this near one fill
//! per invalidation or expiry), and in total per QPS window (peak database QPS during cold start
//! and node loss). Per key, reads invoked before `warmup_ns` are not counted: the boot's empty
//! cache is every key's first miss at once, a cold start the QPS bound judges (a `durable`
//! instance reads around the lease until its invalidator first reads the outbox). A failure's
//! witness is the bound plus one database reads of the offending window.
//!
//! And what the cache servers had to serve for one key: of the successful reads from
//! `warmup_ns` on that reached a cache server (served by L1, L2 or the database; not L0, whose
//! reads stay in the app's process, nor `wait`), the largest share one key took. The node that
//! holds that key carries at least that share of its tier's reads for it alone (the production
//! design's hot-key incident); a failure's witness is that key's first server reads.

use std::io;

use rustc_hash::FxHashMap;

use super::{smallest, witness_reads, ReadChecker};
use crate::bounds::Bounds;
use crate::index::{Index, ReadLog, ReadRec};
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

pub struct Load {
    fill_window_ns: u64,
    per_key_max: Option<u64>,
    per_key_from_ns: u64,
    qps_window_ns: u64,
    qps_max: Option<u64>,
    db_reads: u64,
    per_window: FxHashMap<u64, u64>,
    per_key_window: FxHashMap<(u32, u64), u64>,
    share_max: Option<f64>,
    server_reads: u64,
    server_reads_per_key: FxHashMap<u32, u64>,
}

/// Reads a witness of a key's share of server reads shows.
const SHARE_WITNESS_READS: usize = 5;

fn is_db(r: &ReadRec) -> bool {
    r.ok() && r.source.is_some_and(|s| s.is_db())
}

/// A read that reached a cache server: served by L1, L2 or the database.
fn is_server(r: &ReadRec) -> bool {
    use crate::history::Source;
    r.ok()
        && matches!(
            r.source,
            Some(Source::L1 | Source::L2 | Source::Db | Source::Replica)
        )
}

impl Load {
    pub fn new(b: &Bounds) -> Self {
        Load {
            fill_window_ns: b.fill_window_ns,
            per_key_max: b.db_reads_per_key_per_window_max,
            per_key_from_ns: b.warmup_ns,
            qps_window_ns: b.db_qps_window_ns,
            qps_max: b.db_qps_max,
            db_reads: 0,
            per_window: FxHashMap::default(),
            per_key_window: FxHashMap::default(),
            share_max: b.server_key_share_max,
            server_reads: 0,
            server_reads_per_key: FxHashMap::default(),
        }
    }

    /// Reads allowed in one QPS window by a per-second bound.
    fn allowed_per_window(&self, qps_max: u64) -> u64 {
        u64::try_from(qps_max as u128 * self.qps_window_ns as u128 / 1_000_000_000)
            .unwrap_or(u64::MAX)
    }
}

impl ReadChecker for Load {
    fn observe(&mut self, _idx: &Index, r: &ReadRec) {
        if is_server(r) && r.invoke_ns >= self.per_key_from_ns {
            self.server_reads += 1;
            *self.server_reads_per_key.entry(r.key).or_default() += 1;
        }
        if !is_db(r) {
            return;
        }
        self.db_reads += 1;
        *self
            .per_window
            .entry(r.invoke_ns / self.qps_window_ns)
            .or_default() += 1;
        if r.invoke_ns >= self.per_key_from_ns {
            *self
                .per_key_window
                .entry((r.key, r.invoke_ns / self.fill_window_ns))
                .or_default() += 1;
        }
    }

    fn finish(self: Box<Self>, idx: &Index, reads: &mut ReadLog) -> io::Result<Verdict> {
        let mut v = Verdict::new(Invariant::Load);
        // Highest count, earliest window on ties: independent of hash-map order.
        let peak = self
            .per_window
            .iter()
            .map(|(&w, &c)| (c, std::cmp::Reverse(w)))
            .max();
        let (peak_count, peak_window) = peak.map_or((0, 0), |(c, w)| (c, w.0));
        let peak_qps =
            u64::try_from(peak_count as u128 * 1_000_000_000 / self.qps_window_ns as u128)
                .unwrap_or(u64::MAX);
        let hot = self
            .per_key_window
            .iter()
            .map(|(&(k, w), &c)| {
                (
                    c,
                    std::cmp::Reverse(w),
                    std::cmp::Reverse(idx.key_name(k)),
                    k,
                )
            })
            .max();
        let (hot_count, hot_window, hot_key) =
            hot.map_or((0, 0, None), |(c, w, _, k)| (c, w.0, Some(k)));
        v.figure("db_reads", Figure::Count(self.db_reads))
            .figure("peak_db_qps", Figure::Count(peak_qps))
            .figure(
                "peak_window_start_ns",
                Figure::Ns(peak_window * self.qps_window_ns),
            )
            .figure("db_reads_per_key_window_max", Figure::Count(hot_count));
        // The key with the most server reads; the smallest name on ties.
        let busiest = self
            .server_reads_per_key
            .iter()
            .map(|(&k, &c)| (c, std::cmp::Reverse(idx.key_name(k)), k))
            .max();
        let share = busiest.map_or(0.0, |(c, ..)| c as f64 / self.server_reads as f64);
        v.figure("server_reads", Figure::Count(self.server_reads))
            .figure("server_key_share", Figure::Ratio(share));
        let share_over = self.share_max.filter(|&m| share > m);

        let qps_over = self
            .qps_max
            .filter(|&m| peak_count > self.allowed_per_window(m));
        let key_over = self.per_key_max.filter(|&m| hot_count > m);
        if let Some(m) = qps_over {
            let allowed = self.allowed_per_window(m);
            let (w, width) = (peak_window, self.qps_window_ns);
            let rs = smallest(reads, (allowed + 1) as usize, |r| {
                (is_db(r) && r.invoke_ns / width == w).then_some((r.invoke_ns, r.id))
            })?;
            witness_reads(idx, &mut v.witness, &rs);
            v.judge(
                true,
                format!(
                    "peak database load {peak_qps} reads/s exceeds {m} (window at {} ns)",
                    w * width
                ),
            );
        } else if let Some(m) = key_over {
            let k = hot_key.expect("a count above a bound has a key");
            let (w, width) = (hot_window, self.fill_window_ns);
            let from = self.per_key_from_ns;
            let rs = smallest(reads, (m + 1) as usize, |r| {
                (is_db(r) && r.key == k && r.invoke_ns >= from && r.invoke_ns / width == w)
                    .then_some((r.invoke_ns, r.id))
            })?;
            witness_reads(idx, &mut v.witness, &rs);
            v.judge(
                true,
                format!(
                    "{hot_count} database reads of {:?} in one fill window, bound {m}",
                    idx.key_name(k)
                ),
            );
        } else if let Some(m) = share_over {
            let k = busiest.expect("a share above a bound has a key").2;
            let from = self.per_key_from_ns;
            let rs = smallest(reads, SHARE_WITNESS_READS, |r| {
                (is_server(r) && r.key == k && r.invoke_ns >= from).then_some((r.invoke_ns, r.id))
            })?;
            witness_reads(idx, &mut v.witness, &rs);
            v.judge(
                true,
                format!(
                    "{:?} took {:.3} of the reads that reached a cache server, bound {m}",
                    idx.key_name(k),
                    share
                ),
            );
        } else if self.qps_max.is_none() && self.per_key_max.is_none() && self.share_max.is_none() {
            v.unknown(
                "no load bound: set config.db_qps_max, db_reads_per_key_per_window_max or server_key_share_max",
            );
        } else {
            v.judge(false, format!("peak database load {peak_qps} reads/s, at most {hot_count} reads of one key per fill window, one key at most {share:.3} of the reads that reached a cache server"));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use crate::Invariant;
    use serde_json::json;

    use crate::history::Source;
    use crate::testkit::{H, MS};
    use crate::verdict::{Figure, Status};

    const S: u64 = 1000 * MS;

    #[test]
    fn peak_qps_holds_at_the_bound_and_fails_past_it_with_bound_plus_one_reads() {
        let mut h = H::new(json!({"db_qps_max": 2}));
        h.read(1, "a", (S - 1, S), 0, Source::Db); // window 0
        h.read(1, "b", (S, S + 1), 0, Source::Db); // boundary: window 1
        h.read(1, "c", (S + 5, S + 6), 0, Source::Db);
        h.read(1, "c", (S + 5, S + 6), 0, Source::L1); // a hit is not load
        h.read(1, "c", (S + 5, S + 6), 0, Source::Wait); // nor is a read served by another's load
        assert_eq!(
            h.check().verdict(Invariant::Load).unwrap().status,
            Status::Holds
        );
        let extra = h.read(2, "d", (S + 9, S + 10), 0, Source::Replica);
        let v = h.check().verdict(Invariant::Load).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert_eq!(v.witness.ops, vec![2, 3, extra]);
        assert_eq!(v.get("db_reads"), Some(&Figure::Count(4)));
        assert_eq!(v.get("peak_db_qps"), Some(&Figure::Count(3)));
        assert_eq!(v.get("peak_window_start_ns"), Some(&Figure::Ns(S)));
    }

    #[test]
    fn one_keys_share_of_server_reads_counts_neither_l0_nor_waits_nor_the_warmup() {
        let bounds = json!({"server_key_share_max": 0.5, "db_qps_max": null, "warmup_ns": 10 * MS});
        let mut h = H::new(bounds.clone());
        h.read(1, "hot", (0, MS), 0, Source::Db); // the warmup: not counted
        let first = h.read(1, "hot", (10 * MS, 11 * MS), 0, Source::L1);
        h.read(1, "a", (12 * MS, 13 * MS), 0, Source::L2);
        for _ in 0..5 {
            h.read(2, "hot", (14 * MS, 15 * MS), 0, Source::L0); // stayed in the process
            h.read(2, "hot", (14 * MS, 15 * MS), 0, Source::Wait); // another read's load
        }
        let v = h.check().verdict(Invariant::Load).unwrap().clone();
        assert_eq!(v.status, Status::Holds, "{v:?}");
        assert_eq!(v.get("server_key_share"), Some(&Figure::Ratio(0.5)));
        assert_eq!(v.get("server_reads"), Some(&Figure::Count(2)));
        let second = h.read(3, "hot", (16 * MS, 17 * MS), 0, Source::Db);
        let v = h.check().verdict(Invariant::Load).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert_eq!(v.witness.ops, vec![first, second]);
        assert!(v.summary.contains("\"hot\" took 0.667"), "{}", v.summary);
    }

    #[test]
    fn reads_per_key_per_fill_window() {
        let mut h =
            H::new(json!({"db_reads_per_key_per_window_max": 1, "fill_window_ns": 100 * MS}));
        h.read(1, "a", (0, MS), 0, Source::Db);
        h.read(2, "a", (100 * MS, 101 * MS), 0, Source::Db);
        h.read(2, "b", (100 * MS, 101 * MS), 0, Source::Db);
        assert_eq!(
            h.check().verdict(Invariant::Load).unwrap().status,
            Status::Holds
        );
        let r = h.read(3, "a", (150 * MS, 151 * MS), 0, Source::Db);
        let v = h.check().verdict(Invariant::Load).unwrap().clone();
        assert_eq!((v.status, v.witness.ops), (Status::Fails, vec![2, r]));
    }

    #[test]
    fn reads_per_key_are_counted_from_the_warmup_on_and_fail_one_read_past_it() {
        let bounds = json!({"db_reads_per_key_per_window_max": 1, "fill_window_ns": 100 * MS,
            "warmup_ns": 150 * MS});
        let mut h = H::new(bounds.clone());
        // The boot's misses, before the warmup ends: a cold start, not a stampede.
        h.read(1, "a", (100 * MS, 101 * MS), 0, Source::Db);
        h.read(2, "a", (149 * MS, 150 * MS), 0, Source::Db);
        let first = h.read(3, "a", (150 * MS, 151 * MS), 0, Source::Db);
        assert_eq!(
            h.check().verdict(Invariant::Load).unwrap().status,
            Status::Holds
        );
        let second = h.read(4, "a", (199 * MS, 200 * MS), 0, Source::Db);
        let v = h.check().verdict(Invariant::Load).unwrap().clone();
        assert_eq!(
            (v.status, v.witness.ops),
            (Status::Fails, vec![first, second])
        );
    }
}
