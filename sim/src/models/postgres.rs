//! A PostgreSQL model at the store boundary: rows with versions the database assigns, interleaved
//! transactions that each write rows with an outbox row, a write-ahead log, and a streaming
//! replica that applies the log after a lag. Payloads are derived from (key, version) as every
//! writer in the harness derives them, so the checkers can tell a corrupt or mixed-up value from
//! the real one.
//!
//! Transactions interleave as PostgreSQL's do, which is what an outbox reader must survive:
//!
//! * An outbox id is taken from the sequence when the row is inserted, not when it commits, and
//!   a sequence value is never given back: a transaction that commits after a later one leaves
//!   its id below ids already visible, and one that rolls back (or dies with the server) leaves
//!   a gap for ever.
//! * Nothing a transaction wrote is visible (rows, outbox rows, the log) until it commits; the
//!   log is in commit order.
//! * A written row stays locked by its transaction until it ends: another transaction that
//!   writes it waits. (This model takes a transaction's locks at once; PostgreSQL takes them row
//!   by row and may deadlock, aborting one transaction after `deadlock_timeout`.)
//! * An outbox row's `created_at` is its transaction's start (`now()`).
//!
//! `sim/tests/conformance/postgres.rs` holds these to a real server's answers.

use std::collections::{BTreeMap, BTreeSet};

use aside::tier::OutboxRow;
use aside::Row;

/// One committed write, as the replica receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wal {
    pub lsn: u64,
    pub committed_at_ms: u64,
    pub key: String,
    pub version: u64,
}

/// A committed outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outboxed {
    pub key: String,
    pub version: u64,
    /// Its transaction's start (`created_at DEFAULT now()`).
    pub created_ms: u64,
}

/// An open transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TxId(u64);

/// A write refused because another open transaction holds the row (PostgreSQL waits for it, or
/// with `lock_timeout` fails the statement, which aborts the transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub key: String,
}

#[derive(Debug, Clone, Default)]
struct Tx {
    began_ms: u64,
    /// (key, version, outbox id), in the order written.
    writes: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone, Default)]
pub struct PgModel {
    rows: BTreeMap<String, u64>,
    pub wal: Vec<Wal>,
    /// Committed outbox rows by id: what an invalidator reads.
    outbox: BTreeMap<u64, Outboxed>,
    /// The outbox id sequence's last value.
    id_last: u64,
    open: BTreeMap<TxId, Tx>,
    tx_last: u64,
    /// Outbox ids an invalidator marked applied to both tiers.
    pub done: BTreeSet<u64>,
    /// On a replica: the last log position applied.
    pub applied_lsn: u64,
    /// On a replica: when the oldest entry it has received but not applied was committed.
    oldest_pending_ms: Option<u64>,
}

fn row((&id, o): (&u64, &Outboxed)) -> OutboxRow {
    OutboxRow {
        id,
        key: o.key.clone(),
        version: o.version,
    }
}

pub fn payload(key: &str, version: u64) -> Vec<u8> {
    invariants::payload::expected(key, version).into_bytes()
}

impl PgModel {
    /// Every key starts with its initial row, version 0.
    pub fn seeded<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        PgModel {
            rows: keys.into_iter().map(|k| (k.to_string(), 0)).collect(),
            ..Default::default()
        }
    }

    /// The committed row.
    pub fn read(&self, key: &str) -> Option<Row> {
        self.rows.get(key).map(|&version| Row {
            version,
            payload: payload(key, version),
        })
    }

    /// The keys one app write's transaction changes: `key` and, with `siblings`, every sibling
    /// listing of a listing key (the production design's listings: a new post in a subreddit
    /// changes every sort order of it, `listings:v1:r/rust:hot` and `...:new` and `...:top`).
    pub fn tx_keys(&self, key: &str, siblings: bool) -> Vec<String> {
        let mut keys = vec![key.to_string()];
        if let (true, true, Some(end)) = (siblings, key.starts_with("listings:"), key.rfind(':')) {
            let prefix = &key[..=end];
            keys.extend(
                self.rows
                    .keys()
                    .filter(|k| k.starts_with(prefix) && k.as_str() != key)
                    .cloned(),
            );
        }
        keys
    }

    pub fn begin(&mut self, now_ms: u64) -> TxId {
        self.tx_last += 1;
        let id = TxId(self.tx_last);
        self.open.insert(
            id,
            Tx {
                began_ms: now_ms,
                writes: Vec::new(),
            },
        );
        id
    }

    /// Whether an open transaction other than `tx` holds a row of `keys`.
    pub fn locked(&self, tx: Option<TxId>, keys: &[String]) -> Option<&str> {
        self.open
            .iter()
            .filter(|(id, _)| Some(**id) != tx)
            .flat_map(|(_, t)| t.writes.iter())
            .map(|(k, _, _)| k.as_str())
            .find(|k| keys.iter().any(|w| w == k))
    }

    /// Writes `key` in `tx` (an upsert: a row nobody holds gets version 1): its new version and
    /// the outbox id its row took. Refused while another open transaction holds the row.
    pub fn tx_write(&mut self, tx: TxId, key: &str) -> Result<(u64, u64), Locked> {
        if self.locked(Some(tx), &[key.to_string()]).is_some() {
            return Err(Locked { key: key.into() });
        }
        let t = self.open.get(&tx).expect("an open transaction");
        let current = t
            .writes
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| *v)
            .or_else(|| self.rows.get(key).copied())
            .unwrap_or(0);
        self.id_last += 1;
        let (version, id) = (current + 1, self.id_last);
        self.open
            .get_mut(&tx)
            .expect("an open transaction")
            .writes
            .push((key.to_string(), version, id));
        Ok((version, id))
    }

    /// The lowest outbox id `tx` took, if any.
    pub fn first_id(&self, tx: TxId) -> Option<u64> {
        self.open.get(&tx)?.writes.iter().map(|w| w.2).min()
    }

    /// Commits `tx`: its rows, log entries and outbox rows become visible at once. Returns each
    /// key written with its version, in the order written.
    pub fn commit(&mut self, tx: TxId, now_ms: u64) -> Vec<(String, u64)> {
        let t = self.open.remove(&tx).expect("an open transaction");
        t.writes
            .into_iter()
            .map(|(key, version, id)| {
                self.rows.insert(key.clone(), version);
                let lsn = self.wal.len() as u64 + 1;
                self.wal.push(Wal {
                    lsn,
                    committed_at_ms: now_ms,
                    key: key.clone(),
                    version,
                });
                self.outbox.insert(
                    id,
                    Outboxed {
                        key: key.clone(),
                        version,
                        created_ms: t.began_ms,
                    },
                );
                (key, version)
            })
            .collect()
    }

    /// Rolls `tx` back: nothing it wrote becomes visible; the outbox ids it took stay taken.
    pub fn rollback(&mut self, tx: TxId) {
        self.open.remove(&tx);
    }

    /// Crash recovery: every transaction open when the server died is aborted. Returns how
    /// many were.
    pub fn recover(&mut self) -> usize {
        std::mem::take(&mut self.open).len()
    }

    /// One transaction that writes `keys` and commits at once.
    pub fn write_keys(&mut self, keys: &[String], now_ms: u64) -> Vec<(String, u64)> {
        let tx = self.begin(now_ms);
        for k in keys {
            self.tx_write(tx, k)
                .expect("a transaction alone holds no lock another one waits on");
        }
        self.commit(tx, now_ms)
    }

    /// One app write's transaction ([`PgModel::tx_keys`]), committed at once: each key written
    /// with its new version, `key` first.
    pub fn write_tx(&mut self, key: &str, now_ms: u64, siblings: bool) -> Vec<(String, u64)> {
        let keys = self.tx_keys(key, siblings);
        self.write_keys(&keys, now_ms)
    }

    /// One transaction that writes `key` alone, committed at once: its new version.
    pub fn write(&mut self, key: &str, now_ms: u64) -> u64 {
        self.write_keys(&[key.to_string()], now_ms)[0].1
    }

    /// Committed outbox rows above `after`, by id, at most `limit` (an id not committed yet, or
    /// never, is simply absent).
    pub fn outbox_after(&self, after: u64, limit: u32) -> Vec<OutboxRow> {
        self.outbox
            .range(after.saturating_add(1)..)
            .take(limit as usize)
            .map(row)
            .collect()
    }

    /// Committed outbox rows whose transaction began in the last `window_ms`, by id, at most
    /// `limit`.
    pub fn outbox_recent(&self, now_ms: u64, window_ms: u64, limit: u32) -> Vec<OutboxRow> {
        let since = now_ms.saturating_sub(window_ms);
        self.outbox
            .iter()
            .filter(|(_, o)| o.created_ms > since)
            .take(limit as usize)
            .map(row)
            .collect()
    }

    /// Committed outbox rows not marked done.
    pub fn outbox_undone(&self) -> u64 {
        self.outbox
            .keys()
            .filter(|id| !self.done.contains(id))
            .count() as u64
    }

    /// The highest committed outbox id (0: none).
    pub fn outbox_head(&self) -> u64 {
        self.outbox.keys().next_back().copied().unwrap_or(0)
    }

    /// The highest committed outbox id whose transaction began at least `age_ms` before
    /// `now_ms` (0: none).
    pub fn outbox_head_before(&self, now_ms: u64, age_ms: u64) -> u64 {
        let Some(before) = now_ms.checked_sub(age_ms) else {
            return 0;
        };
        self.outbox
            .iter()
            .filter(|(_, o)| o.created_ms <= before)
            .map(|(&id, _)| id)
            .max()
            .unwrap_or(0)
    }

    /// Every committed outbox row's id and `created_at` (its transaction's start), by id.
    pub fn outbox_created(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.outbox.iter().map(|(&id, o)| (id, o.created_ms))
    }

    /// Every committed outbox row: (id, key, version), by id.
    pub fn outbox_rows(&self) -> impl Iterator<Item = (u64, &str, u64)> {
        self.outbox
            .iter()
            .map(|(&id, o)| (id, o.key.as_str(), o.version))
    }

    /// Log entries after `lsn`.
    pub fn wal_after(&self, lsn: u64) -> &[Wal] {
        &self.wal[(lsn as usize).min(self.wal.len())..]
    }

    /// On a replica: applies what was committed at least `lag_ms` ago.
    pub fn apply(&mut self, entries: &[Wal], now_ms: u64, lag_ms: u64) {
        self.oldest_pending_ms = None;
        for e in entries {
            if e.lsn <= self.applied_lsn {
                continue;
            }
            if e.committed_at_ms + lag_ms > now_ms {
                self.oldest_pending_ms = Some(e.committed_at_ms);
                break;
            }
            self.rows.insert(e.key.clone(), e.version);
            self.applied_lsn = e.lsn;
        }
    }

    /// On a replica: whether it received an entry it has not applied yet.
    pub fn behind(&self) -> bool {
        self.oldest_pending_ms.is_some()
    }

    /// On a replica: how long ago the oldest entry it received but has not applied was
    /// committed (PostgreSQL's `now() - pg_last_xact_replay_timestamp()` while behind); 0 when
    /// it has applied everything it received.
    pub fn replay_lag_ms(&self, now_ms: u64) -> u64 {
        self.oldest_pending_ms
            .map_or(0, |t| now_ms.saturating_sub(t))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.rows.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_outbox_and_a_lagging_replica() {
        let mut p = PgModel::seeded(["a"]);
        assert_eq!(p.read("a").unwrap().version, 0);
        assert_eq!(p.write("a", 10), 1);
        assert_eq!(p.write("b", 20), 1);
        assert_eq!(p.write("a", 30), 2);
        assert_eq!(p.outbox_rows().count(), 3);
        let mut r = PgModel::seeded(["a"]);
        r.apply(p.wal_after(0), 35, 10);
        assert_eq!(r.replay_lag_ms(36), 6, "the write committed at 30 waits");
        assert_eq!(
            (r.read("a").unwrap().version, r.read("b").map(|x| x.version)),
            (1, Some(1)),
            "the write at 30 is not 10 ms old"
        );
        r.apply(p.wal_after(r.applied_lsn), 40, 10);
        assert_eq!(r.read("a").unwrap().version, 2);
        assert_eq!(r.replay_lag_ms(41), 0);
        let mut l = PgModel::seeded([
            "listings:v1:r/rust:hot",
            "listings:v1:r/rust:new",
            "listings:v1:r/go:hot",
        ]);
        assert_eq!(
            l.write_tx("listings:v1:r/rust:new", 50, true),
            vec![
                ("listings:v1:r/rust:new".to_string(), 1),
                ("listings:v1:r/rust:hot".to_string(), 1)
            ]
        );
        assert_eq!(l.write_tx("listings:v1:r/rust:hot", 60, false).len(), 1);
        assert_eq!(p.read("a").unwrap().payload, payload("a", 2));
    }

    #[test]
    fn ids_are_taken_at_insert_and_seen_at_commit_and_a_rollback_leaves_a_gap() {
        let mut p = PgModel::seeded(["a", "b", "c"]);
        let t1 = p.begin(10);
        assert_eq!(p.tx_write(t1, "a"), Ok((1, 1)));
        let t2 = p.begin(11);
        assert_eq!(
            p.tx_write(t2, "a"),
            Err(Locked { key: "a".into() }),
            "the row is t1's until it ends"
        );
        assert_eq!(p.tx_write(t2, "b"), Ok((1, 2)));
        assert_eq!(p.outbox_head(), 0, "nothing is visible before a commit");
        assert_eq!(p.read("b").unwrap().version, 0);
        assert_eq!(p.commit(t2, 12), vec![("b".to_string(), 1)]);
        let ids = |p: &PgModel, after| -> Vec<u64> {
            p.outbox_after(after, 10).iter().map(|r| r.id).collect()
        };
        assert_eq!(ids(&p, 0), vec![2], "id 1 is a gap while t1 is open");
        assert_eq!(p.outbox_head(), 2);
        assert_eq!(p.first_id(t1), Some(1));
        p.commit(t1, 13);
        assert_eq!(ids(&p, 0), vec![1, 2], "t1's row appears below the head");
        assert_eq!(
            p.wal.iter().map(|w| w.key.as_str()).collect::<Vec<_>>(),
            ["b", "a"],
            "the log is in commit order"
        );
        let t3 = p.begin(14);
        assert_eq!(p.tx_write(t3, "c"), Ok((1, 3)));
        assert_eq!(
            p.tx_write(t3, "c"),
            Ok((2, 4)),
            "a row written twice in one transaction"
        );
        p.rollback(t3);
        assert_eq!(p.read("c").unwrap().version, 0);
        assert_eq!(p.write("c", 15), 1, "a rolled-back version is taken again");
        assert_eq!(ids(&p, 2), vec![5], "ids 3 and 4 are gaps for ever");
        let t4 = p.begin(16);
        p.tx_write(t4, "a").unwrap();
        assert_eq!(p.recover(), 1, "a crash aborts the open transaction");
        assert_eq!(p.locked(None, &["a".to_string()]), None);
        assert_eq!(p.write("a", 17), 2);
        assert_eq!(
            p.outbox_recent(20, 9, 10)
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            vec![5, 7],
            "the window is by transaction start: t1 committed at 13 but began at 10"
        );
        assert_eq!(
            p.outbox_head_before(20, 9),
            2,
            "ids 1 and 2 began by 11; t1's id is the lower, committed later"
        );
        assert_eq!(p.outbox_head_before(20, 21), 0);
    }
}
