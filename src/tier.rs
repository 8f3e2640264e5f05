//! The tier boundary: the command sets a strategy may use, per kind of server.
//!
//! Low-level on purpose. A GET then a SET is not atomic, and a strategy written that way is wrong
//! the way real code is wrong; the named scripts are the atomic operations Redis offers through
//! Lua (the real backend runs them with EVALSHA, the simulator's model implements the same
//! semantics natively, and a conformance test holds the two equal).

use std::future::Future;

#[cfg(any(test, feature = "testing"))]
pub mod mem;

/// Why a tier operation did not complete. `Unavailable` and `Timeout` feed the circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("{tier} unavailable: {detail}")]
    Unavailable { tier: &'static str, detail: String },
    #[error("{tier} timed out after {ms} ms")]
    Timeout { tier: &'static str, ms: u64 },
    #[error("{tier} refused the command: {detail}")]
    Refused { tier: &'static str, detail: String },
    #[error("{tier} skipped: circuit open after repeated failures")]
    CircuitOpen { tier: &'static str },
    /// This client's connection pool had no connection free in time: the command was never
    /// sent. Not the server's health: the load on this process.
    #[error("{tier} pool exhausted: {detail}")]
    Exhausted { tier: &'static str, detail: String },
}

impl TierError {
    /// A pool with `pool_max` connections to `at` had none free within `waited_ms`: the same
    /// words in both worlds, naming the pool and the two settings that change it.
    pub fn pool_exhausted(tier: &'static str, at: &str, pool_max: u32, waited_ms: u64) -> Self {
        TierError::Exhausted {
            tier,
            detail: format!(
                "{at}: no connection of this process's pool ({pool_max} at most, \
                 postgres.pool_max) came free or could be opened within {waited_ms} ms \
                 (postgres.pool_wait_ms): if the server is up, raise postgres.pool_max (its \
                 max_connections permitting) or lower the load"
            ),
        }
    }

    /// Whether the server surely did not apply the command: it refused it, or it was never
    /// sent. A write that failed so committed nothing.
    pub fn changed_nothing(&self) -> bool {
        matches!(
            self,
            TierError::Refused { .. } | TierError::Exhausted { .. }
        )
    }

    /// Whether the failure says the server (or the way to it) is unhealthy.
    pub fn is_health(&self) -> bool {
        matches!(
            self,
            TierError::Unavailable { .. } | TierError::Timeout { .. }
        )
    }
}

pub type TierResult<T> = Result<T, TierError>;

/// Conditions of a Redis SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCond {
    Always,
    /// Only if the key does not exist (SET NX).
    Nx,
    /// Only if the key exists (SET XX).
    Xx,
}

/// Two entries read together (`get_in_generation`): a generation key's and the key's in it.
pub type EntryPair = (Option<Vec<u8>>, Option<Vec<u8>>);

/// What a lease request ([`RedisLike::get_or_lease`]) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased {
    /// Taken now: load and fill, then release it (or release it unused).
    Won,
    /// Already held with the asker's token (another reader of the same instance took it): load
    /// under it if this reader leads the load, and leave its release to whoever took it.
    Ours,
    /// Another reader holds it: it is loading, wait for its fill.
    Lost,
    /// Not asked: the key held an entry a reader can use (a value or "no such row"), or one
    /// only the decoder can judge (not an envelope).
    Unasked,
}

/// What [`RedisLike::get_or_lease`] asks for besides the key's entry: the lease, and from when
/// an entry is no longer one a reader may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAsk<'a> {
    pub lease_key: &'a str,
    pub token: &'a str,
    pub lease_ms: u64,
    /// The reader's clock, ms since the epoch.
    pub now_ms: u64,
    /// How long past its freshness a value may still be served (stale-while-revalidate).
    pub stale_ms: u64,
}

/// A lease a fill releases in its own round trip ([`RedisLike::fill_if_newer_releasing`]):
/// `lease_key` if it still holds `token`, kept `linger_ms` more (0: deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release<'a> {
    pub lease_key: &'a str,
    pub token: &'a str,
    pub linger_ms: u64,
}

/// What the first `gets` of a read saw on the node that owns the key: a fill after the database
/// read can go straight to `add` (absent) or `cas` (with this token) instead of asking again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seen {
    /// Not read, or the read failed: a fill asks again.
    #[default]
    Unknown,
    /// The node held nothing under the key.
    Absent,
    /// The node held `raw`, with CAS token `cas`.
    Entry { raw: Vec<u8>, cas: u64 },
}

/// The Redis-like command set (L1).
pub trait RedisLike: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = TierResult<Option<Vec<u8>>>> + Send;
    /// True when the value was stored (false when NX/XX prevented it).
    fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        cond: SetCond,
    ) -> impl Future<Output = TierResult<bool>> + Send;
    /// Number of keys deleted.
    fn del(&self, keys: &[String]) -> impl Future<Output = TierResult<u64>> + Send;
    /// One SCAN step: the next cursor (0 when done) and a batch of keys matching `pattern`.
    fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> impl Future<Output = TierResult<(u64, Vec<String>)>> + Send;
    /// Script `fill_if_newer`: store `value` (an envelope of `version`) unless
    /// [`crate::envelope::blocks`] says the entry the key holds wins. True when stored.
    fn fill_if_newer(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send;
    /// Script `tombstone`: replace the key by `tombstone` (an envelope marking `version`) unless
    /// [`crate::envelope::blocks`] says the entry the key holds wins. True when stored.
    fn tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send;
    /// Script `get_in_generation`, one round trip: the entry of `gen_key` (a group's generation
    /// key) and the entry of `key` in the generation it names (a value's version; 0 for "no
    /// such row"; none for a tombstone or anything else: then the second is `None`). The
    /// default sends two GETs, for a Redis-like of your own.
    fn get_in_generation(
        &self,
        gen_key: &str,
        key: &str,
    ) -> impl Future<Output = TierResult<EntryPair>> + Send {
        async move {
            let g = self.get(gen_key).await?;
            let Some(n) = g.as_deref().and_then(crate::envelope::generation_named) else {
                return Ok((g, None));
            };
            let v = self.get(&crate::key::stored_name(key, n)).await?;
            Ok((g, v))
        }
    }
    /// Script `release`: delete `key` only if it still holds `token` (a lease we own).
    fn release(&self, key: &str, token: &str) -> impl Future<Output = TierResult<bool>> + Send;
    /// Script `get_or_lease`, one round trip: the entry of `key`, and when a reader cannot
    /// serve it (nothing, a tombstone, a value past its stale window:
    /// [`crate::envelope::unusable`]), `SET lease_key token NX PX lease_ms` too: the read and
    /// the lease a miss needs, together, so no other reader's fill and release can land between
    /// the two. [`Leased::Won`] when that SET stores, [`Leased::Ours`] when the lease key
    /// already holds the token (another reader of the same instance took it, or a fill of its
    /// left it lingering): it then runs `lease_ms` again. The default sends
    /// the commands one after the other, for a Redis-like of your own.
    fn get_or_lease(
        &self,
        key: &str,
        ask: LeaseAsk<'_>,
    ) -> impl Future<Output = TierResult<(Option<Vec<u8>>, Leased)>> + Send {
        async move {
            let v = self.get(key).await?;
            let usable = |raw: &[u8]| !crate::envelope::unusable(raw, ask.now_ms, ask.stale_ms);
            if v.as_deref().is_some_and(usable) {
                return Ok((v, Leased::Unasked));
            }
            let token = ask.token.as_bytes();
            if self
                .set(ask.lease_key, token, ask.lease_ms, SetCond::Nx)
                .await?
            {
                return Ok((v, Leased::Won));
            }
            let ours = self.get(ask.lease_key).await?.as_deref() == Some(token)
                && self
                    .set(ask.lease_key, token, ask.lease_ms, SetCond::Xx)
                    .await?;
            Ok((v, if ours { Leased::Ours } else { Leased::Lost }))
        }
    }
    /// Script `fill_if_newer` and the lease's release in one round trip: the fill, then the
    /// lease, if it still holds the token, kept `linger_ms` more (see
    /// [`crate::CacheConfig::lease_linger_ms`]). True when the fill stored. The default sends
    /// the fill and the `release` script (which deletes at once) together and answers with the
    /// fill's answer.
    fn fill_if_newer_releasing(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
        lease: Release<'_>,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        async move {
            let (stored, _) = futures_util::future::join(
                self.fill_if_newer(key, value, version, ttl_ms),
                self.release(lease.lease_key, lease.token),
            )
            .await;
            stored
        }
    }
    /// How many times the server commands go to has changed to another master (a Sentinel
    /// failover followed): a rising count tells an outbox invalidator to replay recent
    /// invalidations, which the old master may have acknowledged and lost. 0 for a server that
    /// never moves.
    fn master_switches(&self) -> u64 {
        0
    }
    /// The address of the master commands go to now (the last one resolved), which the events
    /// a call reports name as the server that answered it ([`crate::events::CacheEvent`]).
    /// `None` when unknown.
    fn master_addr(&self) -> Option<String> {
        None
    }
}

/// The Memcached-like command set (one L2 node; the ring picks the node).
pub trait MemcachedLike: Send + Sync + 'static {
    /// Value and CAS token.
    fn gets(&self, key: &str) -> impl Future<Output = TierResult<Option<(Vec<u8>, u64)>>> + Send;
    fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl_s: u32,
    ) -> impl Future<Output = TierResult<()>> + Send;
    /// Store only if absent. True when stored.
    fn add(
        &self,
        key: &str,
        value: &[u8],
        ttl_s: u32,
    ) -> impl Future<Output = TierResult<bool>> + Send;
    /// Store only if unchanged since `gets` returned `cas`. True when stored.
    fn cas(
        &self,
        key: &str,
        value: &[u8],
        ttl_s: u32,
        cas: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send;
    /// True when something was deleted.
    fn delete(&self, key: &str) -> impl Future<Output = TierResult<bool>> + Send;
    fn flush_all(&self) -> impl Future<Output = TierResult<()>> + Send;
}

/// A database row: its version (assigned by the database, 0 for the initial row) and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub version: u64,
    pub payload: Vec<u8>,
}

/// Where a database read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    #[default]
    Primary,
    /// The streaming replica: cheaper, and behind by its replication lag.
    Replica,
}

/// One outbox row: the database moved `key` to `version` in the transaction that wrote `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: u64,
    pub key: String,
    pub version: u64,
}

fn no_outbox<T>() -> TierResult<T> {
    Err(TierError::Refused {
        tier: "postgres",
        detail:
            "this store keeps no outbox (implement the Store outbox methods to run an invalidator)"
                .into(),
    })
}

/// The database (source of truth).
/// What a write's transaction did: the key's new version, and the other keys the same
/// transaction changed with their new versions (a new post bumps its subreddit's listings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    pub version: u64,
    pub siblings: Vec<(String, u64)>,
}

impl Committed {
    /// A transaction that changed `version` of its own key and nothing else.
    pub fn alone(version: u64) -> Committed {
        Committed {
            version,
            siblings: Vec::new(),
        }
    }
}

pub trait Store: Send + Sync + 'static {
    /// The row, or None when there is no such key.
    fn read(
        &self,
        key: &str,
        from: ReadFrom,
    ) -> impl Future<Output = TierResult<Option<Row>>> + Send;
    /// Writes `payload` in one transaction, together with an outbox row naming the key and
    /// version for an invalidator to apply, and says what the transaction did: the row's new
    /// version (1 for a new key) and any other keys it changed.
    fn write(
        &self,
        key: &str,
        payload: &[u8],
    ) -> impl Future<Output = TierResult<Committed>> + Send;
    /// Outbox rows with an id above `after_id`, by id, at most `limit`. Ids are assigned when a
    /// transaction inserts its row, not when it commits: a row may appear below ids already
    /// read, and the reader must look again (the invalidator does).
    fn outbox_after(
        &self,
        after_id: u64,
        limit: u32,
    ) -> impl Future<Output = TierResult<Vec<OutboxRow>>> + Send {
        let _ = (after_id, limit);
        async { no_outbox() }
    }
    /// Outbox rows committed in the last `window_ms` by the database's clock, by id, at most
    /// `limit`: what a replay after a master switch applies again.
    fn outbox_recent(
        &self,
        window_ms: u64,
        limit: u32,
    ) -> impl Future<Output = TierResult<Vec<OutboxRow>>> + Send {
        let _ = (window_ms, limit);
        async { no_outbox() }
    }
    /// The highest outbox id (0 when empty).
    fn outbox_head(&self) -> impl Future<Output = TierResult<u64>> + Send {
        async { no_outbox() }
    }
    /// The highest id of the rows whose transaction began at least `age_ms` ago by the
    /// database's clock (0 when none): where a new invalidator starts reading. With `age_ms` 2 W
    /// and no transaction lasting W, every row that commits from now on lies above it.
    fn outbox_head_before(&self, age_ms: u64) -> impl Future<Output = TierResult<u64>> + Send {
        let _ = age_ms;
        async { no_outbox() }
    }
    /// Marks rows applied to both tiers (by any invalidator): what pruning may delete.
    fn outbox_done(&self, ids: &[u64]) -> impl Future<Output = TierResult<()>> + Send {
        let _ = ids;
        async { no_outbox() }
    }
    /// How many committed rows are not marked done: the invalidators' backlog, which the
    /// end-of-run probe reads (the `outbox` line of a history).
    fn outbox_undone(&self) -> impl Future<Output = TierResult<u64>> + Send {
        async { no_outbox() }
    }
    /// Deletes the rows marked done that were committed more than `keep_ms` ago; returns how
    /// many. Several invalidators may prune at once.
    fn outbox_prune(&self, keep_ms: u64) -> impl Future<Output = TierResult<u64>> + Send {
        let _ = keep_ms;
        async { no_outbox() }
    }
}

/// An `Arc` of a tier is the tier (the Sentinel-following Redis is held in an `Arc` because its
/// `+switch-master` watcher keeps a weak reference).
impl<T: RedisLike> RedisLike for std::sync::Arc<T> {
    fn get(&self, key: &str) -> impl Future<Output = TierResult<Option<Vec<u8>>>> + Send {
        (**self).get(key)
    }
    fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
        cond: SetCond,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        (**self).set(key, value, ttl_ms, cond)
    }
    fn del(&self, keys: &[String]) -> impl Future<Output = TierResult<u64>> + Send {
        (**self).del(keys)
    }
    fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> impl Future<Output = TierResult<(u64, Vec<String>)>> + Send {
        (**self).scan(cursor, pattern, count)
    }
    fn fill_if_newer(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        (**self).fill_if_newer(key, value, version, ttl_ms)
    }
    fn tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        (**self).tombstone(key, tombstone, version, ttl_ms)
    }
    fn release(&self, key: &str, token: &str) -> impl Future<Output = TierResult<bool>> + Send {
        (**self).release(key, token)
    }
    fn get_or_lease(
        &self,
        key: &str,
        ask: LeaseAsk<'_>,
    ) -> impl Future<Output = TierResult<(Option<Vec<u8>>, Leased)>> + Send {
        (**self).get_or_lease(key, ask)
    }
    fn fill_if_newer_releasing(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
        lease: Release<'_>,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        (**self).fill_if_newer_releasing(key, value, version, ttl_ms, lease)
    }
    fn get_in_generation(
        &self,
        gen_key: &str,
        key: &str,
    ) -> impl Future<Output = TierResult<EntryPair>> + Send {
        (**self).get_in_generation(gen_key, key)
    }
    fn master_switches(&self) -> u64 {
        (**self).master_switches()
    }
    fn master_addr(&self) -> Option<String> {
        (**self).master_addr()
    }
}
