//! In-memory tiers: Redis and memcached in process, for tests of your own code and strategies
//! without servers.
//!
//! [`MemRedis`] and [`MemMemcached`] run the models of [`crate::model`]: the state machines the
//! simulator runs inside its nodes and `sim/tests/conformance.rs` holds to the real servers'
//! answers (TTLs, `SET NX/XX`, the versioned scripts, CAS tokens, LRU within a memory limit, the
//! item size limit, keys the text protocol cannot carry). [`MemStore`] is a database with
//! versions and an outbox, so a `durable` invalidator runs against it too.
//!
//! ```
//! use aside::tier::mem::{MemMemcached, MemRedis, MemStore};
//! use aside::{Builtin, CacheAside, CacheConfig, Key, Pool, Ring, Source};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let cfg = CacheConfig::default();
//! let pool = Pool::new(Ring::new(&["mc-1"]).unwrap(), vec![MemMemcached::default()], &cfg);
//! let store = MemStore::default();
//! let cache = CacheAside::new(MemRedis::default(), pool, store, Builtin::Versioned, cfg, "app-1");
//! let key = Key::new("posts", 1, "42").unwrap();
//! cache.write(&key, b"hello").await.unwrap();
//! let first = cache.get(&key).await.unwrap().unwrap();
//! assert_eq!((first.row.payload.as_slice(), first.source), (&b"hello"[..], Source::Db));
//! assert_eq!(cache.get(&key).await.unwrap().unwrap().source, Source::L1);
//! # });
//! ```
//!
//! The same command mapping serves the simulator: [`RedisClient`] and [`MemcachedClient`] turn
//! the tier traits into model commands for any [`RedisExec`] / [`MemcachedExec`], here one that
//! locks a model, there one that sends the command to a simulated server.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::{
    Committed, MemcachedLike, OutboxRow, ReadFrom, RedisLike, Row, SetCond, Store, TierError,
    TierResult,
};
use crate::envelope::Kind;
use crate::model::memcached::{self as mc, MemcachedModel};
use crate::model::redis::{self as rd, RedisModel};

/// Runs Redis model commands somewhere: in process ([`InProcess`]) or on a simulated server.
pub trait RedisExec: Send + Sync + 'static {
    /// The server's reply; `Err` when it could not be reached or asked.
    fn exec(&self, cmd: rd::Cmd) -> impl Future<Output = TierResult<rd::Reply>> + Send;
    /// See [`RedisLike::master_switches`].
    fn master_switches(&self) -> u64 {
        0
    }
    /// See [`RedisLike::master_addr`].
    fn master_addr(&self) -> Option<String> {
        None
    }
}

/// Runs memcached model commands somewhere: in process ([`InProcess`]) or on a simulated server.
pub trait MemcachedExec: Send + Sync + 'static {
    fn exec(&self, cmd: mc::Cmd) -> impl Future<Output = TierResult<mc::Reply>> + Send;
}

/// [`RedisLike`] over any [`RedisExec`].
#[derive(Debug, Default)]
pub struct RedisClient<E>(pub E);

/// [`MemcachedLike`] over any [`MemcachedExec`].
#[derive(Debug, Default)]
pub struct MemcachedClient<E>(pub E);

impl<E> std::ops::Deref for RedisClient<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E> std::ops::Deref for MemcachedClient<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.0
    }
}

fn unexpected<T>(tier: &'static str) -> TierResult<T> {
    Err(TierError::Refused {
        tier,
        detail: "unexpected reply".into(),
    })
}

impl<E: RedisExec> RedisClient<E> {
    async fn exec(&self, c: rd::Cmd) -> TierResult<rd::Reply> {
        match self.0.exec(c).await? {
            rd::Reply::Err(detail) => Err(TierError::Refused {
                tier: "redis",
                detail,
            }),
            r => Ok(r),
        }
    }

    async fn exec_bool(&self, c: rd::Cmd) -> TierResult<bool> {
        match self.exec(c).await? {
            rd::Reply::Bool(b) => Ok(b),
            _ => unexpected("redis"),
        }
    }

    /// The `fill_if_newer` and `tombstone` scripts: one script, the incoming kind an argument.
    async fn versioned(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        px_ms: u64,
        kind: Kind,
        release: Option<crate::tier::Release<'_>>,
    ) -> TierResult<bool> {
        self.exec_bool(rd::Cmd::Versioned {
            key: key.into(),
            value: value.to_vec(),
            version,
            px_ms,
            kind,
            release: release.map(|r| (r.lease_key.into(), r.token.into(), r.linger_ms)),
        })
        .await
    }
}

impl<E: RedisExec> RedisLike for RedisClient<E> {
    async fn get(&self, key: &str) -> TierResult<Option<Vec<u8>>> {
        match self.exec(rd::Cmd::Get(key.into())).await? {
            rd::Reply::Bulk(v) => Ok(v),
            _ => unexpected("redis"),
        }
    }
    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64, cond: SetCond) -> TierResult<bool> {
        let cond = match cond {
            SetCond::Always => rd::Cond::Always,
            SetCond::Nx => rd::Cond::Nx,
            SetCond::Xx => rd::Cond::Xx,
        };
        self.exec_bool(rd::Cmd::Set {
            key: key.into(),
            value: value.to_vec(),
            px_ms: ttl_ms,
            cond,
        })
        .await
    }
    async fn del(&self, keys: &[String]) -> TierResult<u64> {
        let r = self.exec(rd::Cmd::Del(keys.to_vec())).await?;
        match r {
            rd::Reply::Int(n) => Ok(n),
            _ => unexpected("redis"),
        }
    }
    async fn scan(&self, cursor: u64, pattern: &str, count: u32) -> TierResult<(u64, Vec<String>)> {
        let scan = rd::Cmd::Scan {
            cursor,
            pattern: pattern.into(),
            count,
        };
        match self.exec(scan).await? {
            rd::Reply::Scan(c, k) => Ok((c, k)),
            _ => unexpected("redis"),
        }
    }
    async fn fill_if_newer(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        self.versioned(key, value, version, ttl_ms, Kind::Value, None)
            .await
    }
    async fn tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        self.versioned(key, tombstone, version, ttl_ms, Kind::Tombstone, None)
            .await
    }
    async fn get_in_generation(
        &self,
        gen_key: &str,
        key: &str,
    ) -> TierResult<crate::tier::EntryPair> {
        let cmd = rd::Cmd::GetInGeneration {
            gen_key: gen_key.into(),
            key: key.into(),
        };
        match self.exec(cmd).await? {
            rd::Reply::Pair(g, v) => Ok((g, v)),
            _ => unexpected("redis"),
        }
    }
    async fn get_or_lease(
        &self,
        key: &str,
        ask: crate::tier::LeaseAsk<'_>,
    ) -> TierResult<(Option<Vec<u8>>, crate::tier::Leased)> {
        let cmd = rd::Cmd::GetOrLease {
            key: key.into(),
            lease_key: ask.lease_key.into(),
            token: ask.token.into(),
            px_ms: ask.lease_ms,
            reader_now_ms: ask.now_ms,
            stale_ms: ask.stale_ms,
        };
        match self.exec(cmd).await? {
            rd::Reply::Leased(v, leased) => Ok((v, leased)),
            _ => unexpected("redis"),
        }
    }
    async fn fill_if_newer_releasing(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
        lease: crate::tier::Release<'_>,
    ) -> TierResult<bool> {
        self.versioned(key, value, version, ttl_ms, Kind::Value, Some(lease))
            .await
    }
    async fn release(&self, key: &str, token: &str) -> TierResult<bool> {
        self.exec_bool(rd::Cmd::Release {
            key: key.into(),
            token: token.into(),
        })
        .await
    }
    fn master_switches(&self) -> u64 {
        self.0.master_switches()
    }
    fn master_addr(&self) -> Option<String> {
        self.0.master_addr()
    }
}

impl<E: MemcachedExec> MemcachedClient<E> {
    async fn exec(&self, c: mc::Cmd) -> TierResult<mc::Reply> {
        match self.0.exec(c).await? {
            mc::Reply::Err(detail) => Err(TierError::Refused {
                tier: "memcached",
                detail,
            }),
            r => Ok(r),
        }
    }

    async fn exec_stored(&self, c: mc::Cmd) -> TierResult<bool> {
        match self.exec(c).await? {
            mc::Reply::Stored(b) => Ok(b),
            _ => unexpected("memcached"),
        }
    }
}

impl<E: MemcachedExec> MemcachedLike for MemcachedClient<E> {
    async fn gets(&self, key: &str) -> TierResult<Option<(Vec<u8>, u64)>> {
        match self.exec(mc::Cmd::Gets(key.into())).await? {
            mc::Reply::Value(v) => Ok(v),
            _ => unexpected("memcached"),
        }
    }
    async fn set(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<()> {
        let set = mc::Cmd::Set {
            key: key.into(),
            value: value.to_vec(),
            ttl_s,
        };
        self.exec(set).await.map(drop)
    }
    async fn add(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<bool> {
        self.exec_stored(mc::Cmd::Add {
            key: key.into(),
            value: value.to_vec(),
            ttl_s,
        })
        .await
    }
    async fn cas(&self, key: &str, value: &[u8], ttl_s: u32, cas: u64) -> TierResult<bool> {
        self.exec_stored(mc::Cmd::Cas {
            key: key.into(),
            value: value.to_vec(),
            ttl_s,
            cas,
        })
        .await
    }
    async fn delete(&self, key: &str) -> TierResult<bool> {
        match self.exec(mc::Cmd::Delete(key.into())).await? {
            mc::Reply::Deleted(b) => Ok(b),
            _ => unexpected("memcached"),
        }
    }
    async fn flush_all(&self) -> TierResult<()> {
        self.exec(mc::Cmd::FlushAll).await.map(drop)
    }
}

/// A model in this process, on this process's clock (plus what [`InProcess::advance`] added), with
/// a switch that makes it unreachable.
#[derive(Debug)]
pub struct InProcess<M> {
    model: Mutex<M>,
    zero: Instant,
    skew_ms: AtomicU64,
    down: std::sync::atomic::AtomicBool,
    /// Failovers the client "followed" ([`InProcess::switch_master`]).
    switches: AtomicU64,
}

impl<M> InProcess<M> {
    pub fn new(model: M) -> Self {
        InProcess {
            model: Mutex::new(model),
            zero: Instant::now(),
            skew_ms: AtomicU64::new(0),
            down: Default::default(),
            switches: AtomicU64::new(0),
        }
    }

    /// As if a failover happened and the client followed it: the master-switch count rises.
    /// The data stays; change it with [`InProcess::with`] first to play a master that lost
    /// what it had not replicated.
    pub fn switch_master(&self) {
        self.switches.fetch_add(1, Ordering::SeqCst);
    }

    /// Milliseconds on the model's clock.
    pub fn now_ms(&self) -> u64 {
        self.zero.elapsed().as_millis() as u64 + self.skew_ms.load(Ordering::SeqCst)
    }

    /// Moves the model's clock forward (TTLs expire without waiting).
    pub fn advance(&self, ms: u64) {
        self.skew_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// While down, every command fails as an unreachable server's would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Looks at (or changes) the model directly.
    pub fn with<T>(&self, f: impl FnOnce(&mut M) -> T) -> T {
        f(&mut self.model.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn run<C, R>(
        &self,
        tier: &'static str,
        cmd: C,
        exec: fn(&mut M, u64, C) -> R,
    ) -> TierResult<R> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TierError::Unavailable {
                tier,
                detail: "in-memory server set down".into(),
            });
        }
        let now = self.now_ms();
        Ok(self.with(|m| exec(m, now, cmd)))
    }
}

impl<M: Default> Default for InProcess<M> {
    fn default() -> Self {
        InProcess::new(M::default())
    }
}

impl RedisExec for InProcess<RedisModel> {
    async fn exec(&self, cmd: rd::Cmd) -> TierResult<rd::Reply> {
        self.run("redis", cmd, RedisModel::exec)
    }
    fn master_switches(&self) -> u64 {
        self.switches.load(Ordering::SeqCst)
    }
}

impl MemcachedExec for InProcess<MemcachedModel> {
    async fn exec(&self, cmd: mc::Cmd) -> TierResult<mc::Reply> {
        self.run("memcached", cmd, MemcachedModel::exec)
    }
}

/// Redis in process: the model of [`crate::model::redis`] (no memory limit by default).
pub type MemRedis = RedisClient<InProcess<RedisModel>>;
/// One memcached node in process: the model of [`crate::model::memcached`].
pub type MemMemcached = MemcachedClient<InProcess<MemcachedModel>>;

/// A database in process: rows with versions (1 for a new key, +1 per write), one outbox row per
/// write, and a replica that is never behind. Outbox ids are commit order, without gaps.
#[derive(Debug)]
pub struct MemStore {
    inner: Mutex<StoreState>,
    zero: Instant,
    down: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct StoreState {
    rows: BTreeMap<String, Row>,
    /// (committed at ms, key, version); the id is the position plus one.
    outbox: Vec<(u64, String, u64)>,
    done: std::collections::BTreeSet<u64>,
    /// Ids deleted by pruning: never listed again.
    pruned: std::collections::BTreeSet<u64>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            inner: Mutex::default(),
            zero: Instant::now(),
            down: Default::default(),
        }
    }
}

impl MemStore {
    /// While down, every call fails as an unreachable database's would.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Outbox rows not pruned.
    pub fn outbox_len(&self) -> usize {
        self.state()
            .map(|s| s.outbox.len() - s.pruned.len())
            .unwrap_or_default()
    }

    /// Outbox ids marked done by an invalidator (and not pruned since).
    pub fn outbox_done_ids(&self) -> Vec<u64> {
        self.state()
            .map(|s| s.done.iter().copied().collect())
            .unwrap_or_default()
    }

    fn state(&self) -> TierResult<std::sync::MutexGuard<'_, StoreState>> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TierError::Unavailable {
                tier: "postgres",
                detail: "in-memory database set down".into(),
            });
        }
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn rows_after(s: &StoreState, first: usize, limit: u32) -> Vec<OutboxRow> {
        s.outbox
            .iter()
            .enumerate()
            .skip(first)
            .filter(|(i, _)| !s.pruned.contains(&(*i as u64 + 1)))
            .take(limit as usize)
            .map(|(i, (_, key, version))| OutboxRow {
                id: i as u64 + 1,
                key: key.clone(),
                version: *version,
            })
            .collect()
    }
}

impl Store for MemStore {
    async fn read(&self, key: &str, _from: ReadFrom) -> TierResult<Option<Row>> {
        Ok(self.state()?.rows.get(key).cloned())
    }
    async fn write(&self, key: &str, payload: &[u8]) -> TierResult<Committed> {
        let now = self.zero.elapsed().as_millis() as u64;
        let mut s = self.state()?;
        let version = s.rows.get(key).map_or(1, |r| r.version + 1);
        let row = Row {
            version,
            payload: payload.to_vec(),
        };
        s.rows.insert(key.to_string(), row);
        s.outbox.push((now, key.to_string(), version));
        Ok(Committed::alone(version))
    }
    async fn outbox_after(&self, after_id: u64, limit: u32) -> TierResult<Vec<OutboxRow>> {
        let s = self.state()?;
        Ok(MemStore::rows_after(&s, after_id as usize, limit))
    }
    async fn outbox_recent(&self, window_ms: u64, limit: u32) -> TierResult<Vec<OutboxRow>> {
        let since = (self.zero.elapsed().as_millis() as u64).saturating_sub(window_ms);
        let s = self.state()?;
        let first = s.outbox.partition_point(|(at, _, _)| *at < since);
        Ok(MemStore::rows_after(&s, first, limit))
    }
    async fn outbox_head(&self) -> TierResult<u64> {
        Ok(self.state()?.outbox.len() as u64)
    }
    async fn outbox_head_before(&self, age_ms: u64) -> TierResult<u64> {
        let Some(before) = (self.zero.elapsed().as_millis() as u64).checked_sub(age_ms) else {
            return Ok(0);
        };
        let s = self.state()?;
        Ok(s.outbox.partition_point(|(at, _, _)| *at <= before) as u64)
    }
    async fn outbox_done(&self, ids: &[u64]) -> TierResult<()> {
        self.state()?.done.extend(ids.iter().copied());
        Ok(())
    }
    async fn outbox_undone(&self) -> TierResult<u64> {
        let s = self.state()?;
        let ids = 1..=s.outbox.len() as u64;
        Ok(ids
            .filter(|id| !s.done.contains(id) && !s.pruned.contains(id))
            .count() as u64)
    }
    async fn outbox_prune(&self, keep_ms: u64) -> TierResult<u64> {
        let before = (self.zero.elapsed().as_millis() as u64).saturating_sub(keep_ms);
        let mut s = self.state()?;
        let s = &mut *s;
        let old = s.outbox.partition_point(|(at, _, _)| *at < before) as u64;
        let gone: Vec<u64> = s.done.range(..=old).copied().collect();
        for id in &gone {
            s.done.remove(id);
            s.pruned.insert(*id);
        }
        Ok(gone.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ttls_run_on_the_models_clock_and_a_server_set_down_is_unavailable() {
        let r = MemRedis::default();
        assert!(r.set("k", b"v", 60_000, SetCond::Always).await.unwrap());
        r.advance(30_000);
        assert_eq!(r.get("k").await.unwrap(), Some(b"v".to_vec()));
        r.advance(31_000);
        assert_eq!(r.get("k").await.unwrap(), None);
        r.set_down(true);
        assert!(matches!(
            r.get("k").await,
            Err(TierError::Unavailable { tier: "redis", .. })
        ));

        let m = MemMemcached::default();
        assert!(
            matches!(
                m.set("a key", b"v", 0).await,
                Err(TierError::Refused {
                    tier: "memcached",
                    ..
                })
            ),
            "memcached's text protocol cannot carry a key with a space"
        );
        m.set("k", b"v", 2).await.unwrap();
        m.advance(3_000);
        assert_eq!(m.gets("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_store_versions_rows_and_keeps_an_outbox_in_commit_order() {
        let s = MemStore::default();
        assert_eq!(s.write("a", b"1").await.unwrap().version, 1);
        assert_eq!(s.write("b", b"1").await.unwrap().version, 1);
        assert_eq!(s.write("a", b"2").await.unwrap().version, 2);
        let row = s.read("a", ReadFrom::Replica).await.unwrap().unwrap();
        assert_eq!((row.version, row.payload), (2, b"2".to_vec()));
        let rows = s.outbox_after(1, 10).await.unwrap();
        let ids: Vec<_> = rows
            .iter()
            .map(|r| (r.id, r.key.as_str(), r.version))
            .collect();
        assert_eq!(ids, [(2, "b", 1), (3, "a", 2)]);
        assert_eq!(s.outbox_head().await.unwrap(), 3);
        assert_eq!(s.outbox_recent(60_000, 10).await.unwrap().len(), 3);
        s.outbox_done(&[1, 3]).await.unwrap();
        assert_eq!(s.outbox_done_ids(), [1, 3]);
        s.set_down(true);
        assert!(s.read("a", ReadFrom::Primary).await.is_err());
    }
}
