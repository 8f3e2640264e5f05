//! The cache-aside read and write paths, the same for every strategy and both worlds: the types
//! and the instance here, the read path in `read.rs`, the write and invalidation path in
//! `write.rs`, tests with in-memory tiers in `tests.rs`.
//!
//! Read: L1 → L2 → database, filling both tiers on the way back. Around that: a circuit breaker
//! per tier (per node for L2) so a dead tier is skipped fast, per-process single-flight and a
//! distributed lease (Redis `SET NX PX`) so a miss loads once, stale-while-revalidate, and a
//! database concurrency limit that sheds reads it cannot serve in time. Write: database first,
//! then invalidation through the strategy.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::breaker::Breaker;
use crate::config::CacheConfig;
use crate::envelope::{self, Entry};
use crate::events::{Action, ActionOutcome, CacheEvent, Events, Tier};
use crate::flight::{Abandoned, Flights, Role};
use crate::goal::Goal;
use crate::key::{escape_glob, Key, KeyError};
use crate::membership::Membership;
use crate::metrics::{Metrics, TierMetrics};
use crate::mutant::Mutant;
use crate::ring::Ring;
use crate::shards::Shards;
use crate::strategy::Strategy;
use crate::tier::{MemcachedLike, ReadFrom, RedisLike, Row, SetCond, Store, TierError, TierResult};
use call::timed;

mod call;
mod early;
mod fill;
mod load;
mod outbox;
mod pattern;
mod read;
use load::{Ahead, Lease};
mod typed;
mod warm;

pub use pattern::Invalidated;
pub use typed::{decode as decode_value, encode as encode_value, Typed};
pub use warm::Warmed;
#[cfg(test)]
mod harness;
#[cfg(test)]
mod ring_tests;
#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod swarm_tests;
#[cfg(test)]
mod tests;
mod write;

/// Where a read was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This process's hot-key L0 ([`crate::hot`]).
    L0,
    L1,
    L2,
    Db,
    Replica,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::L0 => "l0",
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
    /// The read's turn under `cache.db_reads_per_sec_max` was further off than it may wait.
    #[error("database read rate at its limit ({per_sec}/s, cache.db_reads_per_sec_max): the read's turn was more than {wait_ms_max} ms off (cache.db_wait_ms_max); read shed")]
    RateLimited { wait_ms_max: u64, per_sec: u32 },
    /// A pattern invalidation by SCAN failed in L1 (those found so far were invalidated).
    #[error("pattern invalidation: {0}")]
    Scan(TierError),
    #[error("the load this read waited for was cancelled")]
    Abandoned,
    /// A value [`CacheAside::write_as`] could not encode.
    #[error("{key}: cannot encode the value: {why}")]
    Encode { key: String, why: String },
    /// The database's row for `key` does not decode as `ty` ([`CacheAside::get_as`]).
    #[error("{key}: the database's row does not decode as {ty}: {why}")]
    Decode {
        key: String,
        ty: &'static str,
        why: String,
    },
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
    /// Both tiers were invalidated, for the key and for every sibling. When false the write is
    /// in the database and the cache may serve the old version until a TTL, an invalidator or a
    /// later write fixes it.
    pub invalidated: bool,
    /// The other keys the write's transaction changed, with their new versions
    /// ([`crate::tier::Committed`]); the write invalidated each at its version, as the key.
    pub siblings: Vec<(String, u64)>,
}

/// The L2 pool: one client per memcached node, the ring placing keys on some of them (all, unless
/// a [`Membership`] change says otherwise).
pub struct Pool<M> {
    pub nodes: Vec<M>,
    breakers: Vec<Breaker>,
    members: Membership,
}

impl<M> Pool<M> {
    /// Every node of `ring`, each with its client, in the ring's order.
    pub fn new(ring: Ring, nodes: Vec<M>, cfg: &CacheConfig) -> Self {
        assert_eq!(ring.nodes().len(), nodes.len(), "one client per ring node");
        let breakers = nodes.iter().map(|_| cfg.breaker()).collect();
        let names = ring.nodes().to_vec();
        let members = Membership::new(names, nodes.len(), cfg.l2_item_lifetime_max());
        Pool {
            nodes,
            breakers,
            members,
        }
    }

    /// Adds `node` (named `name`, "host:port" as the ring names nodes) outside the ring, for a
    /// later [`Membership`] change to bring in.
    pub fn with_spare(mut self, name: impl Into<String>, node: M, cfg: &CacheConfig) -> Self {
        self.members.add_spare(name.into());
        self.nodes.push(node);
        self.breakers.push(cfg.breaker());
        self
    }

    /// The handle that changes which nodes the ring is made of (see [`Membership`]).
    pub fn membership(&self) -> Membership {
        self.members.clone()
    }

    /// The index in [`Pool::nodes`] of the node reads of `route` go to now.
    pub fn node_index(&self, route: &[u8]) -> usize {
        self.members.owner(route).0
    }
}

/// A cache-aside instance over a Redis-like L1, a memcached pool and a store, with a strategy.
pub struct CacheAside<R, M, S, St> {
    /// L1: one Redis master/replica pair, or several shards ([`crate::shards`]).
    l1: Shards<R>,
    /// One breaker per L1 shard: one shard failing leaves the others served.
    l1_breakers: Vec<Breaker>,
    l2: Pool<M>,
    store: S,
    strategy: St,
    cfg: CacheConfig,
    flights: Flights<Load>,
    db_slots: Semaphore,
    /// `cache.db_reads_per_sec_max`'s schedule, when it is set.
    db_rate: Option<crate::rate::Rate>,
    metrics: Arc<Metrics>,
    /// The instance's name, for people: lease tokens carry it, but it need not be unique.
    instance: String,
    /// This instance's lease token: its name and an id that makes it its own whatever the name
    /// (two processes, or two instances in one process, may share a name): see [`holder_id`].
    /// Made once: every L1 read of a plain key carries it.
    lease_token: String,
    /// This instance's recent database read time, microseconds (an average that weighs the
    /// last read 1/8): XFetch's Δ, the time a refresh takes ([`CacheConfig::early_refresh_beta`]).
    /// 0 until the first read.
    db_read_us: AtomicU64,
    /// Draws made for early refreshes: with the instance's name, what the next draw is made
    /// from. Not `holder`: the simulator seeds std's hash keys per thread, not per run, so a
    /// draw made from it would depend on which runs the thread ran before.
    early_draws: AtomicU64,
    /// Keys this process has begun an early refresh of (won or lost the lease), until when: a
    /// key's other readers here are served the value without asking for the lease again.
    early_claims: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
    /// Where cache actions are reported, if anywhere.
    events: Option<Arc<dyn Events>>,
    /// Fences and the outbox invalidator's state (`durable`; inert without an invalidator).
    repair: outbox::Repair,
    /// The generation last seen per group, by a hash of the group: a guess that lets a read
    /// ask L2 for a grouped key while it learns the generation (`pattern`).
    generations_seen: Box<[AtomicU64]>,
    /// Hot keys and their L0, when `l0_ttl_ms` is set.
    hot: Option<crate::hot::HotKeys>,
    /// The wall clock freshness stamps are read from ([`crate::wall`]).
    wall: crate::wall::WallClock,
}

/// Slots of [`CacheAside::generations_seen`].
const GENERATIONS_SEEN_SLOTS: usize = 1024;

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

/// A deterministic per-key fraction in [0, 1), to spread TTLs without a random generator (the
/// simulator must see the same TTLs for the same seed).
fn key_fraction(key: &str) -> f64 {
    (fnv1a(key) >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a of `s`: the same on every run and platform.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// What a tier held for a key, decoded.
enum Found {
    Fresh(Row),
    /// Fresh, and drawn for an early refresh (XFetch): it expires soon.
    Expiring(Row),
    Stale(Row),
    /// Nothing (or nothing a reader can use).
    Miss,
    /// A tombstone: the key was written at this version. Nothing to serve, and a load that
    /// returns an older version began before that write.
    Tombstone(u64),
    /// The database had no row (negative caching).
    Absent,
}

impl Found {
    /// The version a tombstone names (0 for anything else).
    fn floor(&self) -> u64 {
        match self {
            Found::Tombstone(v) => *v,
            _ => 0,
        }
    }
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
        Self::sharded(Shards::one(l1), l2, store, strategy, cfg, instance)
    }

    /// As [`CacheAside::new`], with L1 spread over several Redis master/replica pairs.
    pub fn sharded(
        l1: Shards<R>,
        l2: Pool<M>,
        store: S,
        strategy: St,
        cfg: CacheConfig,
        instance: impl Into<String>,
    ) -> Self {
        let l2_nodes = l2.nodes.len();
        let instance: String = instance.into();
        CacheAside {
            l1_breakers: (0..l1.len()).map(|_| cfg.breaker()).collect(),
            repair: outbox::Repair::new(l1.len(), l2_nodes),
            l1,
            l2,
            store,
            strategy,
            flights: Flights::new(cfg.coalesce_waiters_max),
            db_slots: Semaphore::new(cfg.db_concurrency_max),
            db_rate: (cfg.db_reads_per_sec_max > 0)
                .then(|| crate::rate::Rate::new(cfg.db_reads_per_sec_max)),
            metrics: Arc::new(Metrics::default()),
            lease_token: format!("{instance}:{:016x}", holder_id()),
            instance,
            db_read_us: AtomicU64::new(0),
            early_draws: AtomicU64::new(0),
            early_claims: Default::default(),
            events: None,
            generations_seen: (0..GENERATIONS_SEEN_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            hot: (cfg.l0_ttl_ms > 0).then(|| {
                crate::hot::HotKeys::new(cfg.l0_ttl_ms, cfg.hot_reads_per_sec_min, cfg.hot_keys_max)
                    .checking_writes(cfg.mutant != Some(Mutant::NoL0Ticket))
            }),
            wall: Default::default(),
            cfg,
        }
    }

    /// The wall clock this instance stamps and judges freshness by: a harness's `clock` fault
    /// skews it ([`crate::wall::WallClock::skew`]).
    pub fn wall_clock(&self) -> &crate::wall::WallClock {
        &self.wall
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
        self.emit_on(key, action, tier, version, outcome, started, None);
    }

    /// [`Self::emit`] of an action on memcached node `l2_node` (its index in the pool), which
    /// the event names as its server.
    #[allow(clippy::too_many_arguments)]
    fn emit_on(
        &self,
        key: &str,
        action: Action,
        tier: Tier,
        version: Option<u64>,
        outcome: ActionOutcome,
        started: Option<Instant>,
        l2_node: Option<usize>,
    ) {
        if let (Some(sink), Some(started)) = (&self.events, started) {
            let server = match (tier, l2_node) {
                (Tier::L1, _) => self.l1.of(key).1.master_addr(),
                (Tier::L2, Some(n)) => self.l2.members.name(n),
                _ => None,
            };
            sink.on(&CacheEvent {
                instance: &self.instance,
                key,
                action,
                tier,
                version,
                outcome,
                started,
                server: server.as_deref(),
            });
        }
    }

    /// This instance reached coverage goal `goal` ([`crate::goal`]): told to the events sink,
    /// if any. Never awaits, reads a clock or draws.
    fn reach(&self, goal: Goal) {
        if let Some(sink) = &self.events {
            sink.goal(&self.instance, goal);
        }
    }

    /// Whether the test machinery dropped safeguard `m` ([`crate::mutant`]).
    fn mutated(&self, m: Mutant) -> bool {
        self.cfg.mutant == Some(m)
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

    /// L1's first (or only) shard: with several, [`CacheAside::l1_of`] is the server of a key.
    pub fn l1(&self) -> &R {
        self.l1.server(0)
    }

    /// The L1 server that holds `key` (a stored key, a lease key or a generation key).
    pub fn l1_of(&self, key: &str) -> &R {
        self.l1.of(key).1
    }

    pub fn l1_shards(&self) -> &Shards<R> {
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

    /// A call to L1's shard `at` (or L2's node `at`) through its breaker, under its deadline;
    /// `trips`: whether a failure counts against the breaker.
    fn tier_call<'a, T: 'a>(
        &'a self,
        l1: bool,
        at: usize,
        trips: call::Trips,
        f: impl Future<Output = TierResult<T>> + 'a,
    ) -> impl Future<Output = TierResult<T>> + 'a {
        let (tier, breaker, m, limit) = if l1 {
            let b = &self.l1_breakers[at];
            ("redis", b, &self.metrics.l1, self.cfg.l1_timeout())
        } else {
            let b = &self.l2.breakers[at];
            ("memcached", b, &self.metrics.l2, self.cfg.l2_timeout())
        };
        call::call(tier, breaker, m, limit, trips, |g| self.reach(g), f)
    }

    fn on_l1<'a, T: 'a>(
        &'a self,
        shard: usize,
        f: impl Future<Output = TierResult<T>> + 'a,
    ) -> impl Future<Output = TierResult<T>> + 'a {
        self.tier_call(true, shard, call::Trips::Always, f)
    }

    fn retry_l1<'a, T: 'a>(
        &'a self,
        shard: usize,
        f: impl Future<Output = TierResult<T>> + 'a,
    ) -> impl Future<Output = TierResult<T>> + 'a {
        self.tier_call(true, shard, call::Trips::IfNotClosed, f)
    }

    fn on_l2<'a, T: 'a>(
        &'a self,
        node: usize,
        f: impl Future<Output = TierResult<T>> + 'a,
    ) -> impl Future<Output = TierResult<T>> + 'a {
        self.tier_call(false, node, call::Trips::Always, f)
    }

    fn retry_l2<'a, T: 'a>(
        &'a self,
        node: usize,
        f: impl Future<Output = TierResult<T>> + 'a,
    ) -> impl Future<Output = TierResult<T>> + 'a {
        self.tier_call(false, node, call::Trips::IfNotClosed, f)
    }
}
