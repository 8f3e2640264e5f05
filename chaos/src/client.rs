//! One client's loop, the same in both worlds: the workload's next op through its app node's
//! shared `aside` instance, recorded, then a think time, until the scenario's duration is over.

use std::sync::Arc;
use std::time::Duration;

use aside::tier::{MemcachedLike, RedisLike, Store};
use aside::{CacheAside, Strategy};
use invariants::gen::SplitMix;
use tokio::time::sleep;

use crate::record::Recorder;
use crate::workload::{listing_prefix, Workload};

/// What every client of a run shares: the workload, the recorder, the run's seed and span.
#[derive(Clone)]
pub struct Clients {
    pub workload: Arc<Workload>,
    pub rec: Arc<Recorder>,
    pub seed: u64,
    pub duration: Duration,
    /// A listing write also changes its siblings: the write's result names them with their
    /// versions (`aside::Written::siblings`), and a failed one records them as unknown.
    pub listing_tx: bool,
}

impl Clients {
    /// Client number `client` of the run, on the app node whose instance is `cache`: `seed`
    /// and `client` fix its ops.
    pub fn client<R, M, S, St>(
        &self,
        cache: Arc<CacheAside<R, M, S, St>>,
        client: u64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        R: RedisLike + 'static,
        M: MemcachedLike + 'static,
        S: Store + 'static,
        St: Strategy + 'static,
    {
        client_loop(cache, self.clone(), client)
    }
}

/// The workload's warming job on the instance `cache`, until the workload ends: a pass over the
/// hottest keys, then a pause, again; every read recorded as client
/// [`crate::workload::WARMER_CLIENT`]'s.
pub async fn warmer<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy>(
    run: Clients,
    cache: Arc<CacheAside<R, M, S, St>>,
) {
    let Some((w, keys)) = run.workload.warming() else {
        return;
    };
    let end_ms = run.duration.as_millis() as u64;
    while run.rec.now_ns() / 1_000_000 < end_ms {
        let rec = &run.rec;
        cache
            .warm_observed(&keys, w.reads_per_sec, |k, began, got| {
                let invoke_ns = rec
                    .now_ns()
                    .saturating_sub(began.elapsed().as_nanos() as u64);
                rec.read(crate::workload::WARMER_CLIENT, k, invoke_ns, got);
            })
            .await;
        sleep(Duration::from_millis(w.every_ms)).await;
    }
}

async fn client_loop<R, M, S, St>(cache: Arc<CacheAside<R, M, S, St>>, run: Clients, client: u64)
where
    R: RedisLike,
    M: MemcachedLike,
    S: Store,
    St: Strategy,
{
    let Clients {
        workload,
        rec,
        seed,
        duration,
        listing_tx,
    } = run;
    let mut rng = SplitMix(crate::seed::client(seed, client));
    while rec.now_ns() / 1_000_000 < duration.as_millis() as u64 {
        let op = workload.next(&mut rng);
        let invoke_ns = rec.now_ns();
        if op.write {
            let r = cache.write(&op.key, b"").await;
            // A new listing changes every sort order of its subreddit: drop them all by pattern
            // (a generation bump with a versioned strategy, SCAN without; the write's own key is
            // already invalidated).
            if let Some(sub) = listing_prefix(&op.key) {
                let _ = cache
                    .invalidate_prefix(crate::workload::LISTINGS, 1, &sub)
                    .await;
            }
            rec.write(client, &op.key, invoke_ns, &r);
            // The siblings the same transaction changed (scenarios with listing transactions):
            // written at their new versions, or unknown with the write.
            match &r {
                Ok(w) => {
                    for (k, v) in &w.siblings {
                        rec.write_in_tx(client, k, invoke_ns, Some(*v));
                    }
                }
                Err(aside::Error::Db(aside::TierError::Refused { .. })) => {}
                Err(_) if listing_tx => {
                    for k in workload.siblings(&op.key) {
                        rec.write_in_tx(client, &k, invoke_ns, None);
                    }
                }
                Err(_) => {}
            }
        } else {
            let r = cache.get(&op.key).await;
            rec.read(client, &op.key, invoke_ns, &r);
        }
        sleep(workload.think(&mut rng)).await;
    }
}
