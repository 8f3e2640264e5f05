//! Warming: a key list read through the cache at a bounded rate, so that a tier that lost its
//! entries (a restart, a flush, an eviction storm) holds the hottest keys again before, or while,
//! traffic asks for them: the production design's cache-warming job ("background jobs, popular
//! content, preload strategy").
//!
//! Each key is read as [`CacheAside::get`] reads it: a key L1 holds costs one L1 read; one only
//! L2 holds is copied into L1; one neither holds is loaded from the database and fills both,
//! under the lease, single-flight and every safeguard of a read. Warming therefore never serves
//! or stores anything a read would not. What it cannot do is read the database less than the
//! traffic would: with single-flight and leases a flushed cluster already reads each key about
//! once, so warming moves those reads earlier and spreads them at its rate; where it pays is in
//! hits (the key is in L1 when the first reader comes) and where L2 is still warm (no database
//! read at all).

use std::sync::Arc;

use super::*;

/// What one warming pass found, per key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Warmed {
    pub keys: u64,
    /// Already in L1 (or this process's L0): nothing to do.
    pub held: u64,
    /// Copied into L1 from L2.
    pub from_l2: u64,
    /// Loaded from the database (or the replica), or from another reader's load, or answered
    /// "no such row" (from wherever that answer was).
    pub loaded: u64,
    /// The read failed (the database down): the key stays cold.
    pub failed: u64,
}

impl Warmed {
    fn add(&mut self, got: &Result<Option<Got>, Error>) {
        self.keys += 1;
        match got {
            Ok(Some(g)) => match g.source {
                Source::L0 | Source::L1 => self.held += 1,
                Source::L2 => self.from_l2 += 1,
                Source::Db | Source::Replica => self.loaded += 1,
            },
            // No such row: the database answered (and the absence is cached).
            Ok(None) => self.loaded += 1,
            Err(_) => self.failed += 1,
        }
    }
}

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// Reads each of `keys` through the cache, in order (hottest first), at most
    /// `reads_per_sec_max` keys a second (0: no limit). With `l0_ttl_ms` set, a key this
    /// process serves from its L0 is counted `held` and L1 is not asked: warm from a process
    /// whose L0 does not hold the keys (a job of its own, say).
    pub async fn warm(&self, keys: &[Key], reads_per_sec_max: u32) -> Warmed {
        self.warm_observed(keys, reads_per_sec_max, |_, _, _| {})
            .await
    }

    /// [`CacheAside::warm`], telling `seen` of each read: its key, when it began, and what it
    /// came to (the test harness records them as reads of a client of their own).
    pub async fn warm_observed(
        &self,
        keys: &[Key],
        reads_per_sec_max: u32,
        mut seen: impl FnMut(&Key, Instant, &Result<Option<Got>, Error>),
    ) -> Warmed {
        let gap = match reads_per_sec_max {
            0 => Duration::ZERO,
            n => Duration::from_secs(1) / n,
        };
        let span = tracing::info_span!("aside.warm", keys = keys.len(), reads_per_sec_max);
        async {
            let mut w = Warmed::default();
            let mut next = Instant::now();
            for k in keys {
                tokio::time::sleep_until(next).await;
                let began = Instant::now();
                next = began + gap;
                let got = self.get(k).await;
                w.add(&got);
                seen(k, began, &got);
            }
            debug!(?w, "warming pass done");
            w
        }
        .instrument(span)
        .await
    }

    /// A background job that warms `keys` every `every_ms` (each pass at most
    /// `reads_per_sec_max` keys a second), until dropped: spawn it next to the instance.
    pub fn warmer(
        self: &Arc<Self>,
        keys: Vec<Key>,
        reads_per_sec_max: u32,
        every_ms: u64,
    ) -> impl Future<Output = ()> + Send + 'static {
        let me = Arc::clone(self);
        async move {
            loop {
                me.warm(&keys, reads_per_sec_max).await;
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::harness::*;
    use super::*;

    #[tokio::test]
    async fn a_pass_fills_what_l1_lacks_and_counts_where_each_key_came_from() {
        let c = cache(CacheConfig::default(), 0);
        let keys: Vec<Key> = ["a", "b", "c"].iter().map(|id| key(id)).collect();
        c.get(&keys[0]).await.unwrap();
        let w = c.warm(&keys, 0).await;
        assert_eq!(
            w,
            Warmed {
                keys: 3,
                held: 1,
                from_l2: 0,
                loaded: 2,
                failed: 0
            }
        );
        let reads = c.store().reads.load(Relaxed);
        let again = c.warm(&keys, 0).await;
        assert_eq!(again.held, 3, "all in L1 now");
        assert_eq!(c.store().reads.load(Relaxed), reads, "no database read");
    }

    #[tokio::test]
    async fn the_rate_spaces_the_reads() {
        let c = cache(CacheConfig::default(), 0);
        let keys: Vec<Key> = (0..5).map(|i| key(&i.to_string())).collect();
        let mut began = Vec::new();
        c.warm_observed(&keys, 100, |_, at, _| began.push(at)).await;
        for pair in began.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(10),
                "100 a second: 10 ms apart at least"
            );
        }
    }
}
