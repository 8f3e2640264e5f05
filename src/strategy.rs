//! Strategies: how a fill and an invalidation touch the tiers. The read path, stampede
//! protection, breakers and load shedding are the same for every strategy (see `cache/`); what
//! differs is whether a fill may overwrite and what an invalidation leaves behind.
//!
//! | strategy | fill | invalidation |
//! |---|---|---|
//! | `naive` | SET (memcached `set`) | DEL (memcached `delete`) |
//! | `versioned` | only if newer than what the tier holds, tombstones included (Redis script `fill_if_newer`; memcached `gets` + `cas`/`add`) | a tombstone carrying the new version (script `tombstone`; memcached `gets` + `cas`/`add`) |
//! | `durable` | as `versioned` | as `versioned`, and an outbox invalidator applies every committed write again, retries until both tiers acknowledge, replays a window after a master switch and fences a tier it could not reach (see `cache/outbox.rs`) |
//!
//! Implement [`Strategy`] to put your own under the harness.

use std::future::Future;

use crate::config::{CacheConfig, ConfigError};
use crate::envelope::{self, header, held_blocks, Entry, Kind};
use crate::tier::{MemcachedLike, RedisLike, Release, Seen, SetCond, TierResult};

/// CAS rounds before a versioned memcached fill gives up (a fill given up costs a miss).
const FILL_CAS_ATTEMPTS: u32 = 4;
/// CAS rounds before a tombstone is set without one ([`tombstone_l2`]): an invalidation must land.
const TOMBSTONE_CAS_ATTEMPTS: u32 = 16;

pub trait Strategy: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Puts `entry` (an encoded value of `version`) into L1. True when stored.
    fn fill_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send;

    /// Puts `entry` into the L2 node that owns the key (`key` is already memcached-safe).
    fn fill_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
    ) -> impl Future<Output = TierResult<bool>> + Send;

    /// [`Strategy::fill_l1`], then `lease` released if it still holds its token: a miss's last
    /// L1 step. The default sends the two one after the other;
    /// `versioned` and `durable` send one script ([`RedisLike::fill_if_newer_releasing`]).
    fn fill_l1_releasing<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
        lease: Release<'_>,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        fill_then_release(self, l1, key, entry, version, ttl_ms, lease)
    }

    /// [`Strategy::fill_l2`] after the read's own `gets` saw `seen` on the node: a strategy that
    /// reads before it writes may start from it instead of asking again. The default asks again.
    fn fill_l2_after<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
        seen: Seen,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        let _ = seen;
        self.fill_l2(node, key, entry, version, ttl_s)
    }

    /// Invalidates `key` in L1 after the database moved it to `version` (None: no version known,
    /// e.g. a manual invalidation).
    fn invalidate_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_ms: u64,
    ) -> impl Future<Output = TierResult<()>> + Send;

    fn invalidate_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_s: u32,
    ) -> impl Future<Output = TierResult<()>> + Send;

    /// Applies an outbox row again (the invalidator's retry or replay): afterwards L1 holds
    /// nothing older than `version`. Unlike an invalidation it leaves an entry of `version`
    /// itself alone: the row is old news to a reader that filled it.
    fn repair_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        version: u64,
        tombstone_ttl_ms: u64,
    ) -> impl Future<Output = TierResult<()>> + Send {
        self.invalidate_l1(l1, key, Some(version), tombstone_ttl_ms)
    }

    /// [`Strategy::repair_l1`] on the memcached node that owns the key.
    fn repair_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        version: u64,
        tombstone_ttl_s: u32,
    ) -> impl Future<Output = TierResult<()>> + Send {
        self.invalidate_l2(node, key, Some(version), tombstone_ttl_s)
    }

    /// Whether this strategy runs the outbox invalidator ([`crate::CacheAside::invalidator`]):
    /// the instance then also fences tiers it could not reach until the invalidator has
    /// repaired them.
    fn uses_outbox(&self) -> bool {
        false
    }

    /// Pattern invalidation in a grouped namespace (`cache.grouped_namespaces`) bumps the
    /// group's generation instead of SCANning Redis. Sound only with tombstones that refuse
    /// older fills: the generation is itself a cached versioned value, and a fill of the old
    /// generation racing the bump must lose.
    fn generations(&self) -> bool {
        false
    }

    /// The staleness this strategy promises under every fault of the catalog, if it promises
    /// one: the harness judges its runs by exactly this bound.
    fn staleness_bound_ms(&self, cfg: &CacheConfig) -> Option<u64> {
        let _ = cfg;
        None
    }
}

/// The strategies this library ships, chosen at construction by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Naive,
    Versioned,
    Durable,
}

impl Builtin {
    pub const ALL: [Builtin; 3] = [Builtin::Naive, Builtin::Versioned, Builtin::Durable];

    pub fn parse(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The built-in `cfg.strategy` names, or the one-line error listing them.
    pub fn from_config(cfg: &CacheConfig) -> Result<Builtin, ConfigError> {
        Builtin::parse(&cfg.strategy).ok_or_else(|| ConfigError::UnknownStrategy {
            given: cfg.strategy.clone(),
            known: Builtin::ALL.iter().map(|b| b.name().to_string()).collect(),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Builtin::Naive => "naive",
            Builtin::Versioned => "versioned",
            Builtin::Durable => "durable",
        }
    }

    /// Fills and tombstones carry versions.
    fn versioned(&self) -> bool {
        matches!(self, Builtin::Versioned | Builtin::Durable)
    }
}

impl Strategy for Builtin {
    fn name(&self) -> &str {
        Builtin::name(self)
    }

    async fn fill_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        if self.versioned() {
            l1.fill_if_newer(key, entry, version, ttl_ms).await
        } else {
            l1.set(key, entry, ttl_ms, SetCond::Always).await
        }
    }

    async fn fill_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
    ) -> TierResult<bool> {
        if self.versioned() {
            replace_if_older(node, key, entry, version, ttl_s, true).await
        } else {
            node.set(key, entry, ttl_s).await.map(|()| true)
        }
    }

    async fn fill_l1_releasing<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
        lease: Release<'_>,
    ) -> TierResult<bool> {
        if !self.versioned() {
            return fill_then_release(self, l1, key, entry, version, ttl_ms, lease).await;
        }
        l1.fill_if_newer_releasing(key, entry, version, ttl_ms, lease)
            .await
    }

    async fn fill_l2_after<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
        seen: Seen,
    ) -> TierResult<bool> {
        if !self.versioned() {
            return node.set(key, entry, ttl_s).await.map(|()| true);
        }
        // The read's `gets` stands in for the first round of the CAS loop: `add` where it saw
        // nothing, `cas` with its token, and the loop (asking again) only when either loses.
        match seen {
            Seen::Absent if node.add(key, entry, ttl_s).await? => return Ok(true),
            Seen::Entry { raw, cas } => {
                if held_blocks(&raw, Kind::Value, version) {
                    return Ok(false);
                }
                if node.cas(key, entry, ttl_s, cas).await? {
                    return Ok(true);
                }
            }
            _ => {}
        }
        replace_if_older(node, key, entry, version, ttl_s, true).await
    }

    async fn invalidate_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_ms: u64,
    ) -> TierResult<()> {
        match (self.versioned(), version) {
            (true, Some(v)) => {
                let t = envelope::encode(key, &Entry::Tombstone { version: v });
                l1.tombstone(key, &t, v, tombstone_ttl_ms).await.map(drop)
            }
            _ => l1.del(&[key.to_string()]).await.map(drop),
        }
    }

    async fn invalidate_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_s: u32,
    ) -> TierResult<()> {
        match (self.versioned(), version) {
            (true, Some(v)) => {
                let t = envelope::encode(key, &Entry::Tombstone { version: v });
                replace_if_older(node, key, &t, v, tombstone_ttl_s, false)
                    .await
                    .map(drop)
            }
            _ => node.delete(key).await.map(drop),
        }
    }

    async fn repair_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        version: u64,
        tombstone_ttl_ms: u64,
    ) -> TierResult<()> {
        if !self.versioned() {
            return l1.del(&[key.to_string()]).await.map(drop);
        }
        // Not atomic, and need not be: a fill of `version` landing between the GET and the
        // script costs one miss, and the script refuses to replace anything newer.
        if let Some(raw) = l1.get(key).await? {
            if header(&raw).is_some_and(|(_, held)| held >= version) {
                return Ok(());
            }
        }
        let t = envelope::encode(key, &Entry::Tombstone { version });
        l1.tombstone(key, &t, version, tombstone_ttl_ms)
            .await
            .map(drop)
    }

    async fn repair_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        version: u64,
        tombstone_ttl_s: u32,
    ) -> TierResult<()> {
        if !self.versioned() {
            return node.delete(key).await.map(drop);
        }
        let t = envelope::encode(key, &Entry::Tombstone { version });
        let keep = |raw: &[u8]| header(raw).is_some_and(|(_, held)| held >= version);
        tombstone_l2(node, key, &t, tombstone_ttl_s, keep).await
    }

    fn uses_outbox(&self) -> bool {
        *self == Builtin::Durable
    }

    fn generations(&self) -> bool {
        self.versioned()
    }

    fn staleness_bound_ms(&self, cfg: &CacheConfig) -> Option<u64> {
        self.uses_outbox().then(|| cfg.outbox_staleness_bound_ms())
    }
}

/// [`Strategy::fill_l1_releasing`] in two round trips sent together: the fill and the release
/// (a release that lands first lets another reader load too, which costs a database read, not
/// a stale one). The answer is the fill's; a release that failed leaves the lease to its TTL.
async fn fill_then_release<S: Strategy + ?Sized, R: RedisLike>(
    s: &S,
    l1: &R,
    key: &str,
    entry: &[u8],
    version: u64,
    ttl_ms: u64,
    lease: Release<'_>,
) -> TierResult<bool> {
    let (stored, _) = futures_util::future::join(
        s.fill_l1(l1, key, entry, version, ttl_ms),
        l1.release(lease.lease_key, lease.token),
    )
    .await;
    stored
}

/// Memcached has no scripts: read with `gets`, and `cas` (or `add` when absent) unless
/// [`envelope::blocks`] says what is there wins, judged on its header as the Redis scripts judge
/// theirs ([`envelope::header`]). An entry without a readable header never wins; one whose
/// header is intact but payload corrupt is judged by its version, and the read that finds it
/// deletes it ([`crate::envelope::decode`] fails there).
async fn replace_if_older<M: MemcachedLike>(
    node: &M,
    key: &str,
    entry: &[u8],
    version: u64,
    ttl_s: u32,
    is_fill: bool,
) -> TierResult<bool> {
    let incoming = if is_fill {
        Kind::Value
    } else {
        Kind::Tombstone
    };
    let keep = |raw: &[u8]| held_blocks(raw, incoming, version);
    if is_fill {
        let stored = replace_if(node, key, entry, ttl_s, FILL_CAS_ATTEMPTS, keep);
        return Ok(stored.await?.unwrap_or(false));
    }
    tombstone_l2(node, key, entry, ttl_s, keep)
        .await
        .map(|()| false)
}

/// Puts `tombstone` on `key` unless `keep` says the entry there stays. When every CAS round is
/// lost, it looks once more and sets the tombstone without a CAS unless what is there now stays:
/// an invalidation must not leave an older value behind. A plain delete, the last resort before,
/// left a hole that a load begun before the write could `add` its older value into, and an
/// unconditional set could replace a newer tombstone with this older one, which lets that load's
/// fill in too (`split-brain`, seed 151 of 200, read its own write stale both ways: under a
/// storm of fills and tombstones on one hot key four CAS rounds were not enough). The last look
/// leaves one round trip for a newer tombstone to land in between.
async fn tombstone_l2<M: MemcachedLike>(
    node: &M,
    key: &str,
    tombstone: &[u8],
    ttl_s: u32,
    keep: impl Fn(&[u8]) -> bool,
) -> TierResult<()> {
    let placed = replace_if(node, key, tombstone, ttl_s, TOMBSTONE_CAS_ATTEMPTS, &keep).await?;
    if placed.is_some() {
        return Ok(());
    }
    let stays = node.gets(key).await?.is_some_and(|(raw, _)| keep(&raw));
    if !stays {
        node.set(key, tombstone, ttl_s).await?;
    }
    Ok(())
}

/// `gets`, then `cas` (or `add` when absent) unless `keep` says the entry there stays. Some(true)
/// stored, Some(false) kept, None: lost the CAS race every time.
async fn replace_if<M: MemcachedLike>(
    node: &M,
    key: &str,
    entry: &[u8],
    ttl_s: u32,
    attempts: u32,
    keep: impl Fn(&[u8]) -> bool,
) -> TierResult<Option<bool>> {
    for _ in 0..attempts {
        match node.gets(key).await? {
            None => {
                if node.add(key, entry, ttl_s).await? {
                    return Ok(Some(true));
                }
            }
            Some((raw, cas)) => {
                if keep(&raw) {
                    return Ok(Some(false));
                }
                if node.cas(key, entry, ttl_s, cas).await? {
                    return Ok(Some(true));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
