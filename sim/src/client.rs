//! One client's loop: the workload's next op through the app node's shared `aside` instance,
//! recorded, then a think time, until the scenario's duration is over.

use std::sync::Arc;
use std::time::Duration;

use aside::Strategy;
use chaos::record::Recorder;
use chaos::workload::{listing_prefix, Workload};
use invariants::gen::SplitMix;
use madsim::time::sleep;

use crate::backends::{also_written, SimCache};

pub async fn client_loop<St: Strategy>(
    cache: Arc<SimCache<St>>,
    workload: Arc<Workload>,
    rec: Arc<Recorder>,
    client: u64,
    seed: u64,
    duration: Duration,
    listing_tx: bool,
) {
    let mut rng = SplitMix(chaos::seed::client(seed, client));
    while rec.now_ns() / 1_000_000 < duration.as_millis() as u64 {
        let op = workload.next(&mut rng);
        let invoke_ns = rec.now_ns();
        if op.write {
            let r = cache.write(&op.key, b"").await;
            // A new listing changes every sort order of its subreddit: drop them all by pattern
            // (SCAN-based; the write's own key is already invalidated).
            if let Some(sub) = listing_prefix(&op.key) {
                let _ = cache.invalidate_prefix("listings", 1, &sub).await;
            }
            rec.write(client, &op.key, invoke_ns, &r);
            // The siblings the same transaction changed (scenarios with listing transactions):
            // written at their new versions, or unknown with the write.
            match &r {
                Ok(w) => {
                    for (k, v) in also_written(op.key.as_str(), w.version) {
                        rec.write_in_tx(client, &k, invoke_ns, Some(v));
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
