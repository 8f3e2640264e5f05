//! The cache-aside read and write paths, the same for every strategy and both worlds.
//!
//! Read: L1 → L2 → database, filling both tiers on the way back. Around that: a circuit breaker
//! per tier (per node for L2) so a dead tier is skipped fast, per-process single-flight and a
//! distributed lease (Redis `SET NX PX`) so a miss loads once, stale-while-revalidate, and a
//! database concurrency limit that sheds reads it cannot serve in time. Write: database first,
//! then invalidation through the strategy.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

use crate::breaker::Breaker;
use crate::config::CacheConfig;
use crate::envelope::{self, Entry};
use crate::events::{Action, ActionOutcome, CacheEvent, Events, Tier};
use crate::flight::{Abandoned, Flights, Role};
use crate::key::{escape_glob, Key, KeyError};
use crate::metrics::{Metrics, TierMetrics};
use crate::ring::Ring;
use crate::strategy::Strategy;
use crate::tier::{MemcachedLike, ReadFrom, RedisLike, Row, SetCond, Store, TierError, TierResult};

/// Where a read was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    L1,
    L2,
    Db,
    Replica,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::L1 => "l1",
            Source::L2 => "l2",
            Source::Db => "db",
            Source::Replica => "replica",
        }
    }
}

/// A successful read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub row: Row,
    pub source: Source,
    /// Served past its freshness while another reader refreshes it (stale-while-revalidate).
    pub stale: bool,
    /// Served by another call's load instead of its own: a single-flight follower in this
    /// process, or a lease loser that found the winner's fill in L1.
    pub waited: bool,
}

/// Why a read or write failed. Cache tiers never fail a read: only the database can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("database: {0}")]
    Db(TierError),
    #[error(
        "database overloaded: no connection free within {waited_ms} ms (limit {limit}); read shed"
    )]
    Shed { waited_ms: u64, limit: usize },
    #[error("the load this read waited for was cancelled")]
    Abandoned,
}

type Load = Result<Option<Got>, Error>;

impl Abandoned for Load {
    fn abandoned() -> Self {
        Err(Error::Abandoned)
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub version: u64,
    /// Both tiers were invalidated. When false the write is in the database and the cache may
    /// serve the old version until a TTL, an invalidator or a later write fixes it.
    pub invalidated: bool,
}

/// The L2 pool: one client per memcached node, placed on a Ketama ring.
pub struct Pool<M> {
    pub ring: Ring,
    pub nodes: Vec<M>,
    breakers: Vec<Breaker>,
}

impl<M> Pool<M> {
    pub fn new(ring: Ring, nodes: Vec<M>, cfg: &CacheConfig) -> Self {
        assert_eq!(ring.nodes().len(), nodes.len(), "one client per ring node");
        let breakers = nodes.iter().map(|_| cfg.breaker()).collect();
        Pool {
            ring,
            nodes,
            breakers,
        }
    }
}

/// A cache-aside instance over a Redis-like L1, a memcached pool and a store, with a strategy.
pub struct CacheAside<R, M, S, St> {
    l1: R,
    l1_breaker: Breaker,
    l2: Pool<M>,
    store: S,
    strategy: St,
    cfg: CacheConfig,
    flights: Flights<Load>,
    db_slots: Semaphore,
    metrics: Arc<Metrics>,
    /// The instance's name, for people: lease tokens carry it, but it need not be unique.
    instance: String,
    /// What makes this instance's lease tokens its own whatever its name (two processes, or two
    /// instances in one process, may share a name): see [`holder_id`].
    holder: u64,
    lease_seq: AtomicU64,
    /// Where cache actions are reported, if anywhere.
    events: Option<Arc<dyn Events>>,
}

/// An id for one `CacheAside`, distinct from every other instance's in this and other processes
/// with overwhelming probability. std's `RandomState` draws fresh random keys per thread and
/// steps them on every call, so two calls never hash alike; madsim seeds those keys from the
/// run's seed, so the simulator stays deterministic. The process id separates forks that
/// inherited a thread's keys.
fn holder_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A deterministic per-key fraction in [0, 1), to spread TTLs without a random generator (the
/// simulator must see the same TTLs for the same seed).
fn key_fraction(key: &str) -> f64 {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h >> 11) as f64 / (1u64 << 53) as f64
}

async fn timed<T>(
    tier: &'static str,
    limit: Duration,
    f: impl Future<Output = TierResult<T>>,
) -> TierResult<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(TierError::Timeout {
            tier,
            ms: limit.as_millis() as u64,
        }),
    }
}

/// One call through a breaker, with its latency and errors counted.
async fn guarded<T>(
    tier: &'static str,
    breaker: &Breaker,
    m: &TierMetrics,
    limit: Duration,
    f: impl Future<Output = TierResult<T>>,
) -> TierResult<T> {
    if !breaker.allow() {
        m.skipped.fetch_add(1, Relaxed);
        return Err(TierError::CircuitOpen { tier });
    }
    let start = Instant::now();
    let r = timed(tier, limit, f).await;
    m.latency.record(start.elapsed());
    match &r {
        Ok(_) => breaker.success(),
        Err(e) => {
            m.errors.fetch_add(1, Relaxed);
            if e.is_health() {
                breaker.failure();
            } else {
                breaker.success();
            }
        }
    }
    r
}

/// What a tier held for a key, decoded.
enum Found {
    Fresh(Row),
    Stale(Row),
    /// A tombstone or nothing.
    Miss,
}

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    pub fn new(
        l1: R,
        l2: Pool<M>,
        store: S,
        strategy: St,
        cfg: CacheConfig,
        instance: impl Into<String>,
    ) -> Self {
        CacheAside {
            l1,
            l1_breaker: cfg.breaker(),
            l2,
            store,
            strategy,
            flights: Flights::new(cfg.coalesce_waiters_max),
            db_slots: Semaphore::new(cfg.db_concurrency_max),
            metrics: Arc::new(Metrics::default()),
            instance: instance.into(),
            holder: holder_id(),
            lease_seq: AtomicU64::new(0),
            events: None,
            cfg,
        }
    }

    /// Reports every load, fill, invalidation and lease to `events` (see [`crate::events`]).
    pub fn with_events(mut self, events: Arc<dyn Events>) -> Self {
        self.events = Some(events);
        self
    }

    /// When an action begins, if anyone listens: without an events sink the cache's paths read
    /// no extra clock.
    fn clock(&self) -> Option<Instant> {
        self.events.as_ref().map(|_| Instant::now())
    }

    fn emit(
        &self,
        key: &str,
        action: Action,
        tier: Tier,
        version: Option<u64>,
        outcome: ActionOutcome,
        started: Option<Instant>,
    ) {
        if let (Some(sink), Some(started)) = (&self.events, started) {
            sink.on(&CacheEvent {
                instance: &self.instance,
                key,
                action,
                tier,
                version,
                outcome,
                started,
            });
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    pub fn strategy(&self) -> &St {
        &self.strategy
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn l1(&self) -> &R {
        &self.l1
    }

    pub fn l2(&self) -> &Pool<M> {
        &self.l2
    }

    fn l1_ttl_ms(&self, key: &Key) -> u64 {
        let j = 1.0 - self.cfg.ttl_jitter * key_fraction(key.as_str());
        ((self.cfg.l1_ttl_ms as f64) * j) as u64
    }

    fn l2_ttl_ms(&self, key: &Key) -> u64 {
        let j = 1.0 - self.cfg.ttl_jitter * key_fraction(key.as_str());
        ((self.cfg.l2_ttl_ms as f64) * j) as u64
    }

    fn secs(ms: u64) -> u32 {
        // Memcached treats TTLs over 30 days as absolute times; keep them relative.
        ms.div_ceil(1000).min(30 * 24 * 3600) as u32
    }

    async fn on_l1<T>(&self, f: impl Future<Output = TierResult<T>>) -> TierResult<T> {
        guarded(
            "redis",
            &self.l1_breaker,
            &self.metrics.l1,
            self.cfg.l1_timeout(),
            f,
        )
        .await
    }

    async fn on_l2<T>(&self, node: usize, f: impl Future<Output = TierResult<T>>) -> TierResult<T> {
        guarded(
            "memcached",
            &self.l2.breakers[node],
            &self.metrics.l2,
            self.cfg.l2_timeout(),
            f,
        )
        .await
    }

    fn decode(&self, key: &Key, raw: &[u8], m: &TierMetrics) -> Result<Found, ()> {
        match envelope::decode(key.as_str(), raw) {
            Ok(Entry::Value {
                version,
                fresh_until_ms,
                payload,
            }) => {
                let row = Row { version, payload };
                Ok(if fresh_until_ms != 0 && now_ms() > fresh_until_ms {
                    Found::Stale(row)
                } else {
                    Found::Fresh(row)
                })
            }
            Ok(Entry::Tombstone { .. }) => Ok(Found::Miss),
            Err(e) => {
                m.corrupt.fetch_add(1, Relaxed);
                warn!(key = %key, error = %e, "corrupt cache entry: deleting it and reading on");
                Err(())
            }
        }
    }

    async fn read_l1(&self, key: &Key) -> Found {
        match self.on_l1(self.l1.get(key.as_str())).await {
            Ok(Some(raw)) => match self.decode(key, &raw, &self.metrics.l1) {
                Ok(f) => f,
                Err(()) => {
                    let _ = self.on_l1(self.l1.del(&[key.to_string()])).await;
                    Found::Miss
                }
            },
            Ok(None) => Found::Miss,
            Err(e) => {
                debug!(key = %key, error = %e, "L1 read failed; reading on");
                Found::Miss
            }
        }
    }

    async fn read_l2(&self, key: &Key) -> Found {
        let mk = key.memcached();
        let n = self.l2.ring.node_index(mk.as_bytes());
        match self.on_l2(n, self.l2.nodes[n].gets(&mk)).await {
            Ok(Some((raw, _))) => match self.decode(key, &raw, &self.metrics.l2) {
                Ok(f) => f,
                Err(()) => {
                    let _ = self.on_l2(n, self.l2.nodes[n].delete(&mk)).await;
                    Found::Miss
                }
            },
            Ok(None) => Found::Miss,
            Err(e) => {
                debug!(key = %key, error = %e, "L2 read failed; reading on");
                Found::Miss
            }
        }
    }

    fn entry(&self, key: &Key, row: &Row, ttl_ms: u64) -> Vec<u8> {
        let fresh_until_ms = if self.cfg.stale_while_revalidate_ms > 0 {
            now_ms() + ttl_ms
        } else {
            0
        };
        envelope::encode(
            key.as_str(),
            &Entry::Value {
                version: row.version,
                fresh_until_ms,
                payload: row.payload.clone(),
            },
        )
    }

    fn emit_fill(
        &self,
        key: &str,
        tier: Tier,
        version: u64,
        r: &TierResult<bool>,
        started: Option<Instant>,
    ) {
        let outcome = match r {
            Ok(true) => ActionOutcome::Ok,
            Ok(false) => ActionOutcome::Refused,
            Err(_) => ActionOutcome::Failed,
        };
        self.emit(key, Action::Fill, tier, Some(version), outcome, started);
    }

    async fn fill_l1(&self, key: &Key, row: &Row) {
        let ttl = self.l1_ttl_ms(key);
        let e = self.entry(key, row, ttl);
        if e.len() > self.cfg.l1_item_bytes_max {
            self.metrics.l1.oversized.fetch_add(1, Relaxed);
            return;
        }
        let hard_ttl = ttl + self.cfg.stale_while_revalidate_ms;
        let started = self.clock();
        let r = self
            .on_l1(
                self.strategy
                    .fill_l1(&self.l1, key.as_str(), &e, row.version, hard_ttl),
            )
            .await;
        self.emit_fill(key.as_str(), Tier::L1, row.version, &r, started);
        match r {
            Ok(true) => drop(self.metrics.l1.fills.fetch_add(1, Relaxed)),
            Ok(false) => drop(self.metrics.l1.fill_rejections.fetch_add(1, Relaxed)),
            Err(e) => debug!(key = %key, error = %e, "L1 fill failed"),
        }
    }

    async fn fill_l2(&self, key: &Key, row: &Row) {
        let ttl = self.l2_ttl_ms(key);
        let e = self.entry(key, row, ttl);
        if e.len() > self.cfg.l2_item_bytes_max {
            // Over memcached's item limit: skip L2, never an error to the caller.
            self.metrics.l2.oversized.fetch_add(1, Relaxed);
            return;
        }
        let mk = key.memcached();
        let n = self.l2.ring.node_index(mk.as_bytes());
        let ttl_s = Self::secs(ttl + self.cfg.stale_while_revalidate_ms);
        let started = self.clock();
        let r = self
            .on_l2(
                n,
                self.strategy
                    .fill_l2(&self.l2.nodes[n], &mk, &e, row.version, ttl_s),
            )
            .await;
        self.emit_fill(key.as_str(), Tier::L2, row.version, &r, started);
        match r {
            Ok(true) => drop(self.metrics.l2.fills.fetch_add(1, Relaxed)),
            Ok(false) => drop(self.metrics.l2.fill_rejections.fetch_add(1, Relaxed)),
            Err(e) => debug!(key = %key, error = %e, "L2 fill failed"),
        }
    }

    /// Reads `key` through the tiers: L1, then L2, then the database (filling both on the way
    /// back). `Ok(None)`: the database has no such row.
    pub async fn get(&self, key: &Key) -> Result<Option<Got>, Error> {
        let from = self.cfg.read_from;
        self.get_with(key, || self.store.read(key.as_str(), from))
            .await
    }

    /// As [`CacheAside::get`], with `loader` in place of the store's read on a miss: it returns
    /// the row and the version the database gave it. Everything else is the same: one load per
    /// key per process, the lease, the limit on database reads, the fills.
    pub async fn get_with<L, F>(&self, key: &Key, loader: L) -> Result<Option<Got>, Error>
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let span = tracing::info_span!("aside.get", key = %key, source = tracing::field::Empty);
        async {
            let got = self.get_inner(key, &loader).await;
            if let Ok(Some(g)) = &got {
                tracing::Span::current().record("source", g.source.as_str());
            }
            got
        }
        .instrument(span)
        .await
    }

    async fn get_inner<L, F>(&self, key: &Key, loader: &L) -> Result<Option<Got>, Error>
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let hit = |row, source, stale| {
            Ok(Some(Got {
                row,
                source,
                stale,
                waited: false,
            }))
        };
        match self.read_l1(key).await {
            Found::Fresh(row) => {
                self.metrics.l1.hits.fetch_add(1, Relaxed);
                return hit(row, Source::L1, false);
            }
            Found::Stale(row) => return self.revalidate(key, row, Source::L1, loader).await,
            Found::Miss => drop(self.metrics.l1.misses.fetch_add(1, Relaxed)),
        }
        let started = self.clock();
        match self.read_l2(key).await {
            Found::Fresh(row) => {
                self.metrics.l2.hits.fetch_add(1, Relaxed);
                // What the backfill below puts into L1 was loaded from L2.
                let v = Some(row.version);
                self.emit(
                    key.as_str(),
                    Action::Load,
                    Tier::L2,
                    v,
                    ActionOutcome::Ok,
                    started,
                );
                self.fill_l1(key, &row).await;
                return hit(row, Source::L2, false);
            }
            Found::Stale(row) => return self.revalidate(key, row, Source::L2, loader).await,
            Found::Miss => drop(self.metrics.l2.misses.fetch_add(1, Relaxed)),
        }
        let (got, role) = self
            .flights
            .run(key.as_str(), || self.load(key, loader))
            .await;
        if role == Role::Follower {
            self.metrics.coalesced.fetch_add(1, Relaxed);
            return got.map(|g| g.map(|g| Got { waited: true, ..g }));
        }
        got
    }

    /// A value past its freshness: one reader (the lease winner) refreshes it from the database,
    /// everyone else is served the stale value meanwhile.
    async fn revalidate<L, F>(&self, key: &Key, row: Row, source: Source, loader: &L) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        match self.lease(key).await {
            Some(token) => {
                let got = self.load_locked(key, loader).await;
                self.release(key, &token).await;
                got
            }
            None => {
                self.metrics.stale_served.fetch_add(1, Relaxed);
                match source {
                    Source::L1 => self.metrics.l1.hits.fetch_add(1, Relaxed),
                    _ => self.metrics.l2.hits.fetch_add(1, Relaxed),
                };
                Ok(Some(Got {
                    row,
                    source,
                    stale: true,
                    waited: false,
                }))
            }
        }
    }

    fn lease_key(key: &Key) -> String {
        format!("aside:lease:{key}")
    }

    /// Takes the distributed lease for loading `key`: Some(token) when won. When L1 cannot be
    /// asked (down, circuit open), the lease is taken as won: availability over stampede safety.
    async fn lease(&self, key: &Key) -> Option<String> {
        if self.cfg.lease_ms == 0 {
            return Some(String::new());
        }
        let token = format!(
            "{}:{:016x}:{}",
            self.instance,
            self.holder,
            self.lease_seq.fetch_add(1, Relaxed)
        );
        let started = self.clock();
        let r = self
            .on_l1(self.l1.set(
                &Self::lease_key(key),
                token.as_bytes(),
                self.cfg.lease_ms,
                SetCond::Nx,
            ))
            .await;
        let (action, outcome) = match r {
            Ok(true) => (Action::LeaseWon, ActionOutcome::Ok),
            Err(_) => (Action::LeaseWon, ActionOutcome::Failed),
            Ok(false) => (Action::LeaseLost, ActionOutcome::Ok),
        };
        self.emit(key.as_str(), action, Tier::L1, None, outcome, started);
        (action == Action::LeaseWon).then_some(token)
    }

    async fn release(&self, key: &Key, token: &str) {
        if !token.is_empty() {
            let _ = self
                .on_l1(self.l1.release(&Self::lease_key(key), token))
                .await;
        }
    }

    /// A miss, once per process: take the lease or wait for its holder's fill, then load.
    async fn load<L, F>(&self, key: &Key, loader: &L) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let span = tracing::debug_span!("aside.load", key = %key);
        async {
            if let Some(token) = self.lease(key).await {
                let got = self.load_locked(key, loader).await;
                self.release(key, &token).await;
                return got;
            }
            // Someone else is loading: poll L1 for their fill, then load ourselves (without
            // filling: our read may be older than theirs).
            self.metrics.lease_waits.fetch_add(1, Relaxed);
            let deadline = Instant::now() + Duration::from_millis(self.cfg.lease_wait_ms);
            let mut pause = Duration::from_millis(2);
            while Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                if let Found::Fresh(row) = self.read_l1(key).await {
                    self.metrics.l1.hits.fetch_add(1, Relaxed);
                    return Ok(Some(Got {
                        row,
                        source: Source::L1,
                        stale: false,
                        waited: true,
                    }));
                }
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            self.load_db(key, loader).await
        }
        .instrument(span)
        .await
    }

    async fn load_locked<L, F>(&self, key: &Key, loader: &L) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let got = self.load_db(key, loader).await?;
        if let Some(g) = &got {
            self.fill_l1(key, &g.row).await;
            self.fill_l2(key, &g.row).await;
        }
        Ok(got)
    }

    /// One database read under the concurrency limit.
    async fn load_db<L, F>(&self, key: &Key, loader: &L) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let wait = Duration::from_millis(self.cfg.db_wait_ms_max);
        let _slot = match tokio::time::timeout(wait, self.db_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                self.metrics.shed.fetch_add(1, Relaxed);
                return Err(Error::Shed {
                    waited_ms: self.cfg.db_wait_ms_max,
                    limit: self.cfg.db_concurrency_max,
                });
            }
        };
        let from = self.cfg.read_from;
        let start = Instant::now();
        let r = timed("postgres", self.cfg.db_timeout(), loader()).await;
        self.metrics.db.latency.record(start.elapsed());
        let (tier, version, outcome) = match &r {
            Ok(row) => (
                if from == ReadFrom::Replica {
                    Tier::Replica
                } else {
                    Tier::Db
                },
                row.as_ref().map(|r| r.version),
                ActionOutcome::Ok,
            ),
            Err(_) => (Tier::Db, None, ActionOutcome::Failed),
        };
        self.emit(
            key.as_str(),
            Action::Load,
            tier,
            version,
            outcome,
            Some(start),
        );
        match r {
            Ok(row) => {
                self.metrics.db.hits.fetch_add(1, Relaxed);
                let source = if from == ReadFrom::Replica {
                    Source::Replica
                } else {
                    Source::Db
                };
                Ok(row.map(|row| Got {
                    row,
                    source,
                    stale: false,
                    waited: false,
                }))
            }
            Err(e) => {
                self.metrics.db.errors.fetch_add(1, Relaxed);
                Err(Error::Db(e))
            }
        }
    }

    /// Writes to the database, then invalidates both tiers through the strategy.
    pub async fn write(&self, key: &Key, payload: &[u8]) -> Result<Written, Error> {
        let span = tracing::info_span!("aside.write", key = %key, version = tracing::field::Empty);
        async {
            let written = timed(
                "postgres",
                self.cfg.db_timeout(),
                self.store.write(key.as_str(), payload),
            )
            .await;
            let version = match written {
                Ok(v) => v,
                Err(e @ TierError::Timeout { .. }) => {
                    // The commit may have happened: invalidate at whatever version the primary
                    // holds now, so a write we cannot confirm does not leave the old value
                    // cached for a TTL.
                    let now = timed(
                        "postgres",
                        self.cfg.db_timeout(),
                        self.store.read(key.as_str(), ReadFrom::Primary),
                    )
                    .await;
                    self.invalidate_version(key, now.ok().flatten().map(|r| r.version))
                        .await;
                    return Err(Error::Db(e));
                }
                Err(e) => return Err(Error::Db(e)),
            };
            tracing::Span::current().record("version", version);
            let invalidated = self.invalidate_version(key, Some(version)).await;
            Ok(Written {
                version,
                invalidated,
            })
        }
        .instrument(span)
        .await
    }

    /// Drops `key` from both tiers (no version known). True when both tiers confirmed.
    pub async fn invalidate(&self, key: &Key) -> bool {
        self.invalidate_version(key, None)
            .instrument(tracing::info_span!("aside.invalidate", key = %key))
            .await
    }

    async fn invalidate_version(&self, key: &Key, version: Option<u64>) -> bool {
        // Reads from now on load afresh rather than join a load begun before this write.
        self.flights.close(key.as_str());
        let tomb_ms = self.cfg.tombstone_ttl_ms;
        let started = self.clock();
        let l1 = self
            .on_l1(
                self.strategy
                    .invalidate_l1(&self.l1, key.as_str(), version, tomb_ms),
            )
            .await;
        self.emit_invalidation(key.as_str(), Tier::L1, version, &l1, started);
        let mk = key.memcached();
        let n = self.l2.ring.node_index(mk.as_bytes());
        let started = self.clock();
        let l2 = self
            .on_l2(
                n,
                self.strategy
                    .invalidate_l2(&self.l2.nodes[n], &mk, version, Self::secs(tomb_ms)),
            )
            .await;
        self.emit_invalidation(key.as_str(), Tier::L2, version, &l2, started);
        for (r, m) in [(&l1, &self.metrics.l1), (&l2, &self.metrics.l2)] {
            if r.is_ok() {
                m.invalidations.fetch_add(1, Relaxed);
            }
        }
        if let Err(e) = l1.as_ref().and(l2.as_ref()) {
            warn!(key = %key, error = %e, "invalidation incomplete: the cache may serve the old version until its TTL");
        }
        l1.is_ok() && l2.is_ok()
    }

    fn emit_invalidation(
        &self,
        key: &str,
        tier: Tier,
        version: Option<u64>,
        r: &TierResult<()>,
        started: Option<Instant>,
    ) {
        let outcome = if r.is_ok() {
            ActionOutcome::Ok
        } else {
            ActionOutcome::Failed
        };
        self.emit(key, Action::Invalidate, tier, version, outcome, started);
    }

    /// Invalidates one key that a SCAN found, through the strategy, at the version it holds: a
    /// plain DEL would also delete a tombstone, and with it the protection against an older
    /// fill still in flight (the simulator found exactly that). Tombstones are left alone.
    /// True when a value was invalidated.
    async fn invalidate_found(&self, k: &str) -> Result<bool, TierError> {
        let Ok(key) = Key::parse(k) else {
            return Ok(self.on_l1(self.l1.del(&[k.to_string()])).await? > 0);
        };
        let version = match self.on_l1(self.l1.get(k)).await? {
            None => return Ok(false),
            Some(raw) => match envelope::decode(k, &raw) {
                Ok(Entry::Tombstone { .. }) => return Ok(false),
                Ok(Entry::Value { version, .. }) => Some(version),
                Err(_) => None,
            },
        };
        // As for a write's own key: later reads load afresh.
        self.flights.close(k);
        let tomb_ms = self.cfg.tombstone_ttl_ms;
        let started = self.clock();
        let l1 = self
            .on_l1(self.strategy.invalidate_l1(&self.l1, k, version, tomb_ms))
            .await;
        self.emit_invalidation(k, Tier::L1, version, &l1, started);
        l1?;
        let mk = key.memcached();
        let n = self.l2.ring.node_index(mk.as_bytes());
        let started = self.clock();
        let l2 = self
            .strategy
            .invalidate_l2(&self.l2.nodes[n], &mk, version, Self::secs(tomb_ms));
        let l2 = self.on_l2(n, l2).await;
        self.emit_invalidation(k, Tier::L2, version, &l2, started);
        Ok(true)
    }

    /// Invalidates every key of `namespace:vN:` whose id starts with `id_prefix` (user input:
    /// glob characters in it are escaped). SCAN returns every key that exists for the whole scan
    /// but may miss keys created during it, so a second full pass follows the first; values found
    /// are invalidated in both tiers through the strategy (versioned: a tombstone at the version
    /// found). Returns how many values were invalidated.
    pub async fn invalidate_prefix(
        &self,
        namespace: &str,
        schema_version: u32,
        id_prefix: &str,
    ) -> Result<u64, TierError> {
        let probe =
            Key::new(namespace, schema_version, id_prefix).map_err(|e| TierError::Refused {
                tier: "redis",
                detail: e.to_string(),
            })?;
        let pattern = format!("{}*", escape_glob(probe.as_str()));
        let span = tracing::info_span!("aside.invalidate_prefix", pattern = %pattern);
        async {
            let mut deleted = 0;
            for _pass in 0..2 {
                let mut cursor = 0;
                loop {
                    let (next, keys) = self
                        .on_l1(self.l1.scan(cursor, &pattern, self.cfg.scan_count))
                        .await?;
                    let keys: Vec<String> = keys
                        .into_iter()
                        .filter(|k| !k.starts_with("aside:lease:"))
                        .collect();
                    for k in &keys {
                        deleted += u64::from(self.invalidate_found(k).await?);
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            self.metrics.l1.invalidations.fetch_add(deleted, Relaxed);
            Ok(deleted)
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    //! The shared paths with in-memory tiers: what the container tests cannot make happen on
    //! demand (a slow database, a value past its freshness, a tier that always fails).

    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use super::*;
    use crate::envelope::{blocks, Kind};

    #[derive(Default)]
    struct MemRedis {
        data: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
        down: AtomicBool,
    }

    impl MemRedis {
        fn check(&self) -> TierResult<()> {
            if self.down.load(Relaxed) {
                return Err(TierError::Unavailable {
                    tier: "redis",
                    detail: "down".into(),
                });
            }
            Ok(())
        }

        fn live(&self, key: &str) -> Option<Vec<u8>> {
            let d = self.data.lock().unwrap();
            d.get(key)
                .filter(|(_, exp)| Instant::now() < *exp)
                .map(|(v, _)| v.clone())
        }

        fn put(&self, key: &str, value: &[u8], ttl_ms: u64) {
            let exp = Instant::now() + Duration::from_millis(ttl_ms);
            self.data
                .lock()
                .unwrap()
                .insert(key.to_string(), (value.to_vec(), exp));
        }

        fn versioned(
            &self,
            key: &str,
            value: &[u8],
            version: u64,
            ttl_ms: u64,
            kind: Kind,
        ) -> TierResult<bool> {
            self.check()?;
            let blocked = self
                .live(key)
                .and_then(|raw| envelope::decode(key, &raw).ok())
                .is_some_and(|e| blocks(&e, kind, version));
            if !blocked {
                self.put(key, value, ttl_ms);
            }
            Ok(!blocked)
        }
    }

    impl RedisLike for MemRedis {
        async fn get(&self, key: &str) -> TierResult<Option<Vec<u8>>> {
            self.check()?;
            Ok(self.live(key))
        }
        async fn set(
            &self,
            key: &str,
            value: &[u8],
            ttl_ms: u64,
            cond: SetCond,
        ) -> TierResult<bool> {
            self.check()?;
            let exists = self.live(key).is_some();
            if (cond == SetCond::Nx && exists) || (cond == SetCond::Xx && !exists) {
                return Ok(false);
            }
            self.put(key, value, ttl_ms);
            Ok(true)
        }
        async fn del(&self, keys: &[String]) -> TierResult<u64> {
            self.check()?;
            let mut d = self.data.lock().unwrap();
            Ok(keys.iter().filter(|k| d.remove(*k).is_some()).count() as u64)
        }
        async fn scan(
            &self,
            _cursor: u64,
            _pattern: &str,
            _count: u32,
        ) -> TierResult<(u64, Vec<String>)> {
            self.check()?;
            Ok((0, Vec::new()))
        }
        async fn fill_if_newer(
            &self,
            key: &str,
            value: &[u8],
            version: u64,
            ttl_ms: u64,
        ) -> TierResult<bool> {
            self.versioned(key, value, version, ttl_ms, Kind::Value)
        }
        async fn tombstone(
            &self,
            key: &str,
            t: &[u8],
            version: u64,
            ttl_ms: u64,
        ) -> TierResult<bool> {
            self.versioned(key, t, version, ttl_ms, Kind::Tombstone)
        }
        async fn release(&self, key: &str, token: &str) -> TierResult<bool> {
            self.check()?;
            let ours = self.live(key).is_some_and(|v| v == token.as_bytes());
            if ours {
                self.data.lock().unwrap().remove(key);
            }
            Ok(ours)
        }
    }

    /// A memcached that is always empty and accepts everything: L2 plays no part here.
    struct NoL2;

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
    struct SlowStore {
        rows: Mutex<HashMap<String, u64>>,
        delay_ms: u64,
        reads: AtomicU64,
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
        async fn write(&self, key: &str, _: &[u8]) -> TierResult<u64> {
            let mut rows = self.rows.lock().unwrap();
            let v = rows.entry(key.to_string()).or_insert(0);
            *v += 1;
            Ok(*v)
        }
    }

    type Mem = CacheAside<MemRedis, NoL2, SlowStore, crate::Builtin>;

    fn cache(cfg: CacheConfig, delay_ms: u64) -> Mem {
        let cfg = cfg.validate().unwrap();
        let pool = Pool::new(Ring::new(&["l2:1"]).unwrap(), vec![NoL2], &cfg);
        let store = SlowStore {
            delay_ms,
            ..Default::default()
        };
        CacheAside::new(
            MemRedis::default(),
            pool,
            store,
            crate::Builtin::Versioned,
            cfg,
            "test",
        )
    }

    fn key(id: &str) -> Key {
        Key::new("t", 1, id).unwrap()
    }

    #[tokio::test]
    async fn reads_over_the_database_limit_are_shed_not_queued_forever() {
        let cfg = CacheConfig {
            db_concurrency_max: 1,
            db_wait_ms_max: 20,
            lease_ms: 0,
            ..CacheConfig::default()
        };
        let c = Arc::new(cache(cfg, 200));
        let (a, b) = (c.clone(), c.clone());
        let first = tokio::spawn(async move { a.get(&key("a")).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = b.get(&key("b")).await;
        assert_eq!(
            second,
            Err(Error::Shed {
                waited_ms: 20,
                limit: 1
            })
        );
        assert_eq!(first.await.unwrap().unwrap().unwrap().source, Source::Db);
        assert_eq!(c.metrics().shed.load(Relaxed), 1);
    }

    #[derive(Default)]
    struct Sink(Mutex<Vec<String>>);

    impl Events for Sink {
        fn on(&self, e: &CacheEvent<'_>) {
            self.0.lock().unwrap().push(format!(
                "{} {} {} {:?} {}",
                e.instance,
                e.action.as_str(),
                e.tier.as_str(),
                e.version,
                e.outcome.as_str()
            ));
        }
    }

    #[tokio::test]
    async fn events_report_each_load_fill_invalidation_and_lease_in_order() {
        let sink = Arc::new(Sink::default());
        let c = cache(CacheConfig::default(), 0).with_events(sink.clone());
        let k = key("ev");
        c.get(&k).await.unwrap();
        c.write(&k, b"x").await.unwrap();
        // A fill older than the tombstone the write left is refused, and says so.
        c.fill_l1(
            &k,
            &Row {
                version: 0,
                payload: b"v0".to_vec(),
            },
        )
        .await;
        assert_eq!(
            *sink.0.lock().unwrap(),
            vec![
                "test lease-won l1 None ok",
                "test load db Some(0) ok",
                "test fill l1 Some(0) ok",
                "test fill l2 Some(0) ok",
                "test invalidate l1 Some(1) ok",
                "test invalidate l2 Some(1) ok",
                "test fill l1 Some(0) refused",
            ]
        );
    }

    #[tokio::test]
    async fn lease_tokens_are_unique_per_holder_even_when_instances_share_a_name() {
        // Two instances named alike ("test"), as six clients of one app node once were.
        let (a, b) = (
            cache(CacheConfig::default(), 0),
            cache(CacheConfig::default(), 0),
        );
        let k = key("lease");
        let (ta, tb) = (a.lease(&k).await.unwrap(), b.lease(&k).await.unwrap());
        assert_ne!(
            ta, tb,
            "same name, same sequence number: the tokens must still differ"
        );
        // a's lease in the Redis both share: b's release must leave it alone.
        let lease = format!("aside:lease:{k}");
        b.l1().put(&lease, ta.as_bytes(), 10_000);
        b.release(&k, &tb).await;
        assert_eq!(b.l1().live(&lease), Some(ta.into_bytes()));
    }

    #[tokio::test]
    async fn stale_while_revalidate_serves_stale_while_the_lease_holder_refreshes() {
        let cfg = CacheConfig {
            l1_ttl_ms: 30,
            ttl_jitter: 0.0,
            stale_while_revalidate_ms: 5_000,
            ..CacheConfig::default()
        };
        let c = cache(cfg, 0);
        let k = key("swr");
        assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
        assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Someone else holds the lease: we are served the stale value.
        c.l1().put(&format!("aside:lease:{k}"), b"other", 10_000);
        let g = c.get(&k).await.unwrap().unwrap();
        assert_eq!((g.source, g.stale), (Source::L1, true));
        assert_eq!(c.metrics().stale_served.load(Relaxed), 1);
        // The lease is free: this reader refreshes from the database.
        c.l1()
            .data
            .lock()
            .unwrap()
            .remove(&format!("aside:lease:{k}"));
        let g = c.get(&k).await.unwrap().unwrap();
        assert_eq!((g.source, g.stale), (Source::Db, false));
        assert_eq!(
            c.get(&k).await.unwrap().unwrap().source,
            Source::L1,
            "and filled a fresh value"
        );
    }

    #[tokio::test]
    async fn a_lease_loser_waits_for_the_winners_fill_instead_of_reading_the_database() {
        let cfg = CacheConfig::default();
        let c = cache(cfg, 30);
        let k = key("contended");
        c.l1()
            .put(&format!("aside:lease:{k}"), b"other-process", 10_000);
        let winner_fill = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let e = envelope::encode(
                k.as_str(),
                &Entry::Value {
                    version: 0,
                    fresh_until_ms: 0,
                    payload: b"v0".to_vec(),
                },
            );
            c.l1().put(k.as_str(), &e, 60_000);
        };
        let (got, ()) = tokio::join!(c.get(&k), winner_fill);
        let g = got.unwrap().unwrap();
        assert_eq!((g.source, g.waited), (Source::L1, true));
        assert_eq!(
            c.store().reads.load(Relaxed),
            0,
            "no database read of its own"
        );
        assert_eq!(c.metrics().lease_waits.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_dead_l1_is_skipped_after_the_breaker_opens_and_reads_still_succeed() {
        let cfg = CacheConfig {
            breaker_failures_max: 3,
            breaker_cooldown_ms: 60_000,
            ..CacheConfig::default()
        };
        let c = cache(cfg, 0);
        c.l1().down.store(true, Relaxed);
        for i in 0..10 {
            assert_eq!(
                c.get(&key(&format!("k{i}"))).await.unwrap().unwrap().source,
                Source::Db
            );
        }
        assert_eq!(
            c.metrics().l1.errors.load(Relaxed),
            3,
            "three failures open the circuit"
        );
        assert!(
            c.metrics().l1.skipped.load(Relaxed) >= 10,
            "then every call skips L1"
        );
    }

    #[tokio::test]
    async fn a_write_leaves_a_tombstone_that_refuses_the_older_fill() {
        let c = cache(CacheConfig::default(), 0);
        let k = key("race");
        let w = c.write(&k, b"").await.unwrap();
        assert_eq!((w.version, w.invalidated), (1, true));
        let old = envelope::encode(
            k.as_str(),
            &Entry::Value {
                version: 0,
                fresh_until_ms: 0,
                payload: b"v0".to_vec(),
            },
        );
        assert!(!c
            .l1()
            .fill_if_newer(k.as_str(), &old, 0, 60_000)
            .await
            .unwrap());
        assert_eq!(c.get(&k).await.unwrap().unwrap().row.version, 1);
    }

    #[tokio::test]
    async fn a_custom_loader_takes_the_stores_place_on_a_miss() {
        let c = cache(CacheConfig::default(), 0);
        let k = key("custom");
        let calls = AtomicU64::new(0);
        let loader = || async {
            calls.fetch_add(1, Relaxed);
            Ok(Some(Row {
                version: 7,
                payload: b"from my query".to_vec(),
            }))
        };
        let g = c.get_with(&k, loader).await.unwrap().unwrap();
        assert_eq!((g.row.version, g.source), (7, Source::Db));
        let g = c.get_with(&k, loader).await.unwrap().unwrap();
        assert_eq!(
            (g.row.payload.as_slice(), g.source),
            (&b"from my query"[..], Source::L1)
        );
        assert_eq!((calls.load(Relaxed), c.store().reads.load(Relaxed)), (1, 0));
    }
}
