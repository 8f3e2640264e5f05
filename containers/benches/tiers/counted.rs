//! The tier wrappers the miss-path figures are counted with: [`Counted`] tallies every call that
//! reaches a tier and the sequential steps they take ([`Tally`]); [`OneByOne`] and [`Stepwise`]
//! are a Redis-like and a strategy with only their required methods, so the traits' defaults
//! send each command on its own (the miss path as it was before it was shortened).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

use aside::tier::{LeaseAsk, Leased, Release};
use aside::{
    Builtin, MemcachedLike, ReadFrom, RedisLike, Row, SetCond, Store, Strategy, TierError,
};

pub(super) type R<T> = Result<T, TierError>;

/// Every call that reaches a tier, per tier (redis, memcached, postgres), and the sequential
/// steps they took: a call that starts while none is in flight starts a step, so the fills a
/// miss sends together count once.
#[derive(Default)]
pub(super) struct Tally {
    calls: [AtomicU64; 3],
    in_flight: AtomicU64,
    steps: AtomicU64,
}

impl Tally {
    pub(super) fn calls(&self) -> [u64; 3] {
        self.calls.each_ref().map(|c| c.load(Relaxed))
    }
    pub(super) fn steps(&self) -> u64 {
        self.steps.load(Relaxed)
    }
}

/// A tier whose calls are tallied: one call, one round trip (the memcached client and the
/// scripts each take exactly one).
pub(super) struct Counted<T> {
    inner: T,
    tally: Arc<Tally>,
    tier: usize,
}

pub(super) fn counted<T>(inner: T, tally: &Arc<Tally>, tier: usize) -> Counted<T> {
    Counted {
        inner,
        tally: tally.clone(),
        tier,
    }
}

impl<T> Counted<T> {
    async fn count<F: Future>(&self, call: F) -> F::Output {
        let t = &self.tally;
        t.calls[self.tier].fetch_add(1, Relaxed);
        if t.in_flight.fetch_add(1, SeqCst) == 0 {
            t.steps.fetch_add(1, Relaxed);
        }
        let out = call.await;
        t.in_flight.fetch_sub(1, SeqCst);
        out
    }
}

impl<T: RedisLike> RedisLike for Counted<T> {
    async fn get(&self, k: &str) -> R<Option<Vec<u8>>> {
        self.count(self.inner.get(k)).await
    }
    async fn set(&self, k: &str, v: &[u8], t: u64, c: SetCond) -> R<bool> {
        self.count(self.inner.set(k, v, t, c)).await
    }
    async fn del(&self, k: &[String]) -> R<u64> {
        self.count(self.inner.del(k)).await
    }
    async fn scan(&self, c: u64, p: &str, n: u32) -> R<(u64, Vec<String>)> {
        self.count(self.inner.scan(c, p, n)).await
    }
    async fn fill_if_newer(&self, k: &str, v: &[u8], ver: u64, t: u64) -> R<bool> {
        self.count(self.inner.fill_if_newer(k, v, ver, t)).await
    }
    async fn tombstone(&self, k: &str, v: &[u8], ver: u64, t: u64) -> R<bool> {
        self.count(self.inner.tombstone(k, v, ver, t)).await
    }
    async fn release(&self, k: &str, tok: &str) -> R<bool> {
        self.count(self.inner.release(k, tok)).await
    }
    async fn get_or_lease(&self, k: &str, ask: LeaseAsk<'_>) -> R<(Option<Vec<u8>>, Leased)> {
        self.count(self.inner.get_or_lease(k, ask)).await
    }
    async fn fill_if_newer_releasing(
        &self,
        k: &str,
        v: &[u8],
        ver: u64,
        t: u64,
        lease: Release<'_>,
    ) -> R<bool> {
        self.count(self.inner.fill_if_newer_releasing(k, v, ver, t, lease))
            .await
    }
}

impl<T: MemcachedLike> MemcachedLike for Counted<T> {
    async fn gets(&self, k: &str) -> R<Option<(Vec<u8>, u64)>> {
        self.count(self.inner.gets(k)).await
    }
    async fn set(&self, k: &str, v: &[u8], t: u32) -> R<()> {
        self.count(self.inner.set(k, v, t)).await
    }
    async fn add(&self, k: &str, v: &[u8], t: u32) -> R<bool> {
        self.count(self.inner.add(k, v, t)).await
    }
    async fn cas(&self, k: &str, v: &[u8], t: u32, c: u64) -> R<bool> {
        self.count(self.inner.cas(k, v, t, c)).await
    }
    async fn delete(&self, k: &str) -> R<bool> {
        self.count(self.inner.delete(k)).await
    }
    async fn flush_all(&self) -> R<()> {
        self.count(self.inner.flush_all()).await
    }
}

impl<T: Store> Store for Counted<T> {
    async fn read(&self, k: &str, f: ReadFrom) -> R<Option<Row>> {
        self.count(self.inner.read(k, f)).await
    }
    async fn write(&self, k: &str, p: &[u8]) -> R<aside::tier::Committed> {
        self.count(self.inner.write(k, p)).await
    }
}

/// A Redis-like with only the commands a Redis-like must have: the lease and the fill's
/// release go as commands of their own, as the miss path sent them before `get_or_lease` and
/// `fill_if_newer_releasing` (the trait's defaults).
pub(super) struct OneByOne<T>(pub(super) T);

impl<T: RedisLike> RedisLike for OneByOne<T> {
    async fn get(&self, k: &str) -> R<Option<Vec<u8>>> {
        self.0.get(k).await
    }
    async fn set(&self, k: &str, v: &[u8], t: u64, c: SetCond) -> R<bool> {
        self.0.set(k, v, t, c).await
    }
    async fn del(&self, k: &[String]) -> R<u64> {
        self.0.del(k).await
    }
    async fn scan(&self, c: u64, p: &str, n: u32) -> R<(u64, Vec<String>)> {
        self.0.scan(c, p, n).await
    }
    async fn fill_if_newer(&self, k: &str, v: &[u8], ver: u64, t: u64) -> R<bool> {
        self.0.fill_if_newer(k, v, ver, t).await
    }
    async fn tombstone(&self, k: &str, v: &[u8], ver: u64, t: u64) -> R<bool> {
        self.0.tombstone(k, v, ver, t).await
    }
    async fn release(&self, k: &str, tok: &str) -> R<bool> {
        self.0.release(k, tok).await
    }
}

/// `versioned` with only the methods a strategy must have: its memcached fill asks the node
/// again instead of starting from what the read saw (the trait's default `fill_l2_after`).
pub(super) struct Stepwise;

impl Strategy for Stepwise {
    fn name(&self) -> &str {
        "versioned, one command at a time"
    }
    async fn fill_l1<L: RedisLike>(&self, l1: &L, k: &str, e: &[u8], v: u64, t: u64) -> R<bool> {
        Builtin::Versioned.fill_l1(l1, k, e, v, t).await
    }
    async fn fill_l2<M: MemcachedLike>(&self, n: &M, k: &str, e: &[u8], v: u64, t: u32) -> R<bool> {
        Builtin::Versioned.fill_l2(n, k, e, v, t).await
    }
    async fn invalidate_l1<L: RedisLike>(&self, l1: &L, k: &str, v: Option<u64>, t: u64) -> R<()> {
        Builtin::Versioned.invalidate_l1(l1, k, v, t).await
    }
    async fn invalidate_l2<M: MemcachedLike>(
        &self,
        n: &M,
        k: &str,
        v: Option<u64>,
        t: u32,
    ) -> R<()> {
        Builtin::Versioned.invalidate_l2(n, k, v, t).await
    }
}
