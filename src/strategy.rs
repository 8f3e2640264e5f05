//! Strategies: how a fill and an invalidation touch the tiers. The read path, stampede
//! protection, breakers and load shedding are the same for every strategy (see `cache.rs`); what
//! differs is whether a fill may overwrite and what an invalidation leaves behind.
//!
//! | strategy | fill | invalidation |
//! |---|---|---|
//! | `naive` | SET (memcached `set`) | DEL (memcached `delete`) |
//! | `versioned` | only if newer than what the tier holds, tombstones included (Redis script `fill_if_newer`; memcached `gets` + `cas`/`add`) | a tombstone carrying the new version (script `tombstone`; memcached `gets` + `cas`/`add`) |
//!
//! Implement [`Strategy`] to put your own under the harness.

use std::future::Future;

use crate::envelope::{self, blocks, Entry, Kind};
use crate::tier::{MemcachedLike, RedisLike, SetCond, TierResult};

/// CAS retries before a versioned memcached update gives up and deletes instead.
const CAS_ATTEMPTS_MAX: u32 = 4;

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
}

/// The strategies this library ships, chosen at construction by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Naive,
    Versioned,
}

impl Builtin {
    pub const ALL: [Builtin; 2] = [Builtin::Naive, Builtin::Versioned];

    pub fn parse(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Builtin::Naive => "naive",
            Builtin::Versioned => "versioned",
        }
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
        match self {
            Builtin::Naive => l1.set(key, entry, ttl_ms, SetCond::Always).await,
            Builtin::Versioned => l1.fill_if_newer(key, entry, version, ttl_ms).await,
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
        match self {
            Builtin::Naive => node.set(key, entry, ttl_s).await.map(|()| true),
            Builtin::Versioned => replace_if_older(node, key, entry, version, ttl_s, true).await,
        }
    }

    async fn invalidate_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_ms: u64,
    ) -> TierResult<()> {
        match (self, version) {
            (Builtin::Versioned, Some(v)) => {
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
        match (self, version) {
            (Builtin::Versioned, Some(v)) => {
                let t = envelope::encode(key, &Entry::Tombstone { version: v });
                replace_if_older(node, key, &t, v, tombstone_ttl_s, false)
                    .await
                    .map(drop)
            }
            _ => node.delete(key).await.map(drop),
        }
    }
}

/// Memcached has no scripts: read with `gets`, and `cas` (or `add` when absent) unless
/// [`blocks`] says what is there wins. A corrupt entry never wins.
async fn replace_if_older<M: MemcachedLike>(
    node: &M,
    key: &str,
    entry: &[u8],
    version: u64,
    ttl_s: u32,
    is_fill: bool,
) -> TierResult<bool> {
    for _ in 0..CAS_ATTEMPTS_MAX {
        match node.gets(key).await? {
            None => {
                if node.add(key, entry, ttl_s).await? {
                    return Ok(true);
                }
            }
            Some((raw, cas)) => {
                let incoming = if is_fill {
                    Kind::Value
                } else {
                    Kind::Tombstone
                };
                let newer =
                    envelope::decode(key, &raw).is_ok_and(|e| blocks(&e, incoming, version));
                if newer {
                    return Ok(false);
                }
                if node.cas(key, entry, ttl_s, cas).await? {
                    return Ok(true);
                }
            }
        }
    }
    if is_fill {
        Ok(false)
    } else {
        // An invalidation must not leave an older value behind: delete as the last resort.
        node.delete(key).await.map(|_| false)
    }
}
