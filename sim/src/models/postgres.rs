//! A PostgreSQL model at the store boundary: rows with versions the database assigns, one write
//! per transaction with an outbox row, a write-ahead log, and a streaming replica that applies
//! the log after a lag. Payloads are derived from (key, version) as every writer in the harness
//! derives them, so the checkers can tell a corrupt or mixed-up value from the real one.

use std::collections::BTreeMap;

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

#[derive(Debug, Clone, Default)]
pub struct PgModel {
    rows: BTreeMap<String, u64>,
    pub wal: Vec<Wal>,
    /// (id, key, version): what an invalidator reads.
    pub outbox: Vec<(u64, String, u64)>,
    /// Outbox ids an invalidator marked applied to both tiers.
    pub done: std::collections::BTreeSet<u64>,
    /// On a replica: the last log position applied.
    pub applied_lsn: u64,
    /// On a replica: when the oldest entry it has received but not applied was committed.
    oldest_pending_ms: Option<u64>,
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

    pub fn read(&self, key: &str) -> Option<Row> {
        self.rows.get(key).map(|&version| Row {
            version,
            payload: payload(key, version),
        })
    }

    /// One transaction that writes `key` and, with `siblings`, every sibling listing of a
    /// listing key (the seed's listings: a new post in a subreddit changes every sort order of
    /// it, `listings:v1:r/rust:hot` and `...:new` and `...:top`). Returns each key written with
    /// its new version, `key` first.
    pub fn write_tx(&mut self, key: &str, now_ms: u64, siblings: bool) -> Vec<(String, u64)> {
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
        keys.into_iter()
            .map(|k| {
                let v = self.write(&k, now_ms);
                (k, v)
            })
            .collect()
    }

    /// One transaction: bump the version, append the outbox row and the log entry.
    pub fn write(&mut self, key: &str, now_ms: u64) -> u64 {
        let v = self
            .rows
            .entry(key.to_string())
            .and_modify(|v| *v += 1)
            .or_insert(1);
        let version = *v;
        let lsn = self.wal.len() as u64 + 1;
        self.wal.push(Wal {
            lsn,
            committed_at_ms: now_ms,
            key: key.to_string(),
            version,
        });
        self.outbox.push((lsn, key.to_string(), version));
        version
    }

    /// Outbox rows above `after`, by id, at most `limit` (ids are log positions: in commit
    /// order, without gaps).
    pub fn outbox_after(&self, after: u64, limit: u32) -> Vec<OutboxRow> {
        self.outbox
            .iter()
            .skip(after.min(self.outbox.len() as u64) as usize)
            .take(limit as usize)
            .map(|(id, key, version)| OutboxRow {
                id: *id,
                key: key.clone(),
                version: *version,
            })
            .collect()
    }

    /// Outbox rows committed in the last `window_ms`, by id, at most `limit`.
    pub fn outbox_recent(&self, now_ms: u64, window_ms: u64, limit: u32) -> Vec<OutboxRow> {
        let since = now_ms.saturating_sub(window_ms);
        let first = self.wal.partition_point(|w| w.committed_at_ms <= since);
        self.outbox_after(first as u64, limit)
    }

    pub fn outbox_head(&self) -> u64 {
        self.outbox.len() as u64
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
        assert_eq!(p.outbox.len(), 3);
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
}
