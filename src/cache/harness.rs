//! The in-memory cache the unit tests run: an L1 of `MemRedis`, no L2, and a store that can be
//! slow, fail, or count its calls.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;
use crate::tier::mem::MemRedis;

/// A memcached that is always empty and accepts everything: L2 plays no part here.
pub(super) struct NoL2;

impl MemcachedLike for NoL2 {
    async fn gets(&self, _: &str) -> TierResult<Option<(Vec<u8>, u64)>> {
        Ok(None)
    }
    async fn set(&self, _: &str, _: &[u8], _: u32) -> TierResult<()> {
        Ok(())
    }
    async fn add(&self, _: &str, _: &[u8], _: u32) -> TierResult<bool> {
        Ok(true)
    }
    async fn cas(&self, _: &str, _: &[u8], _: u32, _: u64) -> TierResult<bool> {
        Ok(true)
    }
    async fn delete(&self, _: &str) -> TierResult<bool> {
        Ok(true)
    }
    async fn flush_all(&self) -> TierResult<()> {
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct SlowStore {
    rows: Mutex<HashMap<String, u64>>,
    delay_ms: u64,
    pub(super) reads: AtomicU64,
    outbox: Mutex<Vec<crate::tier::OutboxRow>>,
    /// The error a write answers with, after it committed or instead of committing.
    pub(super) write_error: Mutex<Option<(bool, TierError)>>,
    /// Keys every write's transaction also changes (a listing's siblings), each a version up.
    pub(super) siblings: Mutex<Vec<String>>,
    /// Outbox ids whose transaction has not committed: the outbox shows them to no one.
    pub(super) uncommitted: Mutex<std::collections::BTreeSet<u64>>,
    /// While set, reading the outbox fails as an unreachable database's would.
    pub(super) outbox_down: std::sync::atomic::AtomicBool,
    /// While set, marking outbox rows done fails so.
    pub(super) done_down: std::sync::atomic::AtomicBool,
    /// The ids marked done.
    pub(super) done: Mutex<Vec<u64>>,
}

impl SlowStore {
    /// The outbox rows committed, by id.
    fn visible(&self) -> Vec<crate::tier::OutboxRow> {
        let hidden = self.uncommitted.lock().unwrap();
        let o = self.outbox.lock().unwrap();
        o.iter()
            .filter(|r| !hidden.contains(&r.id))
            .cloned()
            .collect()
    }
}

impl Store for SlowStore {
    async fn read(&self, key: &str, _: ReadFrom) -> TierResult<Option<Row>> {
        self.reads.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        let v = self.rows.lock().unwrap().get(key).copied().unwrap_or(0);
        Ok(Some(Row {
            version: v,
            payload: format!("v{v}").into_bytes(),
        }))
    }
    async fn write(&self, key: &str, _: &[u8]) -> TierResult<crate::tier::Committed> {
        let error = self.write_error.lock().unwrap().clone();
        if let Some((false, e)) = error {
            return Err(e);
        }
        let mut rows = self.rows.lock().unwrap();
        let mut outbox = self.outbox.lock().unwrap();
        let others = self.siblings.lock().unwrap().clone();
        let mut changed = Vec::new();
        for k in std::iter::once(key.to_string()).chain(others) {
            let v = rows.entry(k.clone()).or_insert(0);
            *v += 1;
            let id = outbox.len() as u64 + 1;
            outbox.push(crate::tier::OutboxRow {
                id,
                key: k.clone(),
                version: *v,
            });
            changed.push((k, *v));
        }
        let (_, version) = changed.remove(0);
        match error {
            Some((_, e)) => Err(e),
            None => Ok(crate::tier::Committed {
                version,
                siblings: changed,
            }),
        }
    }
    async fn outbox_after(
        &self,
        after: u64,
        limit: u32,
    ) -> TierResult<Vec<crate::tier::OutboxRow>> {
        if self.outbox_down.load(Relaxed) {
            return Err(TierError::Unavailable {
                tier: "postgres",
                detail: "the outbox is cut off (test)".into(),
            });
        }
        Ok(self
            .visible()
            .into_iter()
            .filter(|r| r.id > after)
            .take(limit as usize)
            .collect())
    }
    async fn outbox_recent(&self, _: u64, limit: u32) -> TierResult<Vec<crate::tier::OutboxRow>> {
        self.outbox_after(0, limit).await
    }
    async fn outbox_head(&self) -> TierResult<u64> {
        let o = self.visible();
        Ok(o.last().map_or(0, |r| r.id))
    }
    /// Every row here began just now.
    async fn outbox_head_before(&self, _: u64) -> TierResult<u64> {
        Ok(0)
    }
    async fn outbox_done(&self, ids: &[u64]) -> TierResult<()> {
        if self.done_down.load(Relaxed) {
            return Err(TierError::Unavailable {
                tier: "postgres",
                detail: "marking done is cut off (test)".into(),
            });
        }
        self.done.lock().unwrap().extend(ids);
        Ok(())
    }
}

pub(super) type Mem = CacheAside<MemRedis, NoL2, SlowStore, crate::Builtin>;

pub(super) fn cache(cfg: CacheConfig, delay_ms: u64) -> Mem {
    cache_with(cfg, delay_ms, crate::Builtin::Versioned)
}

pub(super) fn cache_with(cfg: CacheConfig, delay_ms: u64, strategy: crate::Builtin) -> Mem {
    let cfg = cfg.validate().unwrap();
    let pool = Pool::new(Ring::new(&["l2:1"]).unwrap(), vec![NoL2], &cfg);
    let store = SlowStore {
        delay_ms,
        ..Default::default()
    };
    CacheAside::new(MemRedis::default(), pool, store, strategy, cfg, "test")
}

pub(super) fn key(id: &str) -> Key {
    Key::new("t", 1, id).unwrap()
}
