//! The foreign writer: a process that is not an app node and writes to PostgreSQL directly, as
//! another service, a migration or someone in `psql` would. It knows nothing of the cache: no
//! invalidation follows its transactions, so only what the database itself does for them (its
//! capture: an outbox row per key changed, in the same transaction) can keep the cache honest.
//! The loop is the same in every world; each world says how a transaction reaches its database
//! ([`ForeignDb`]).

use std::sync::Arc;
use std::time::Duration;

use invariants::gen::SplitMix;
use tokio::time::sleep;

use crate::record::Recorder;
use crate::workload::Workload;

/// The client number the foreign writer's ops carry in the history: a witness that names
/// client 999 names a write no app node made.
pub const FOREIGN_CLIENT: u64 = 999;

/// Keys per transaction, at most.
pub const TX_KEYS_MAX: u64 = 3;

/// One transaction in this many is rolled back after its writes (a migration that checks its
/// work and gives up, a `psql` session ended with ROLLBACK): the outbox ids its capture took are
/// never committed, a gap an outbox reader must not wait on for ever.
pub const ROLLBACK_ONE_IN: u64 = 8;

/// How a world's database takes one foreign transaction.
#[allow(async_fn_in_trait)]
pub trait ForeignDb {
    /// Bumps every key of `keys` in one transaction; each key with its new version, or why the
    /// transaction's outcome is unknown. With `rollback`, the transaction writes them and then
    /// rolls back: nothing is committed, whatever the answer.
    async fn write_tx(&self, keys: &[String], rollback: bool)
        -> Result<Vec<(String, u64)>, String>;
}

/// Writes transactions of one to [`TX_KEYS_MAX`] keys (drawn by the workload's popularity from
/// the foreign writer's own seed) until `duration` is over, a think time apart; each key written
/// is a write op of [`FOREIGN_CLIENT`], unknown when the transaction's outcome is. One
/// transaction in [`ROLLBACK_ONE_IN`] rolls back and leaves no op: it wrote nothing.
pub async fn foreign_writer(
    db: impl ForeignDb,
    workload: Arc<Workload>,
    rec: Arc<Recorder>,
    seed: u64,
    duration: Duration,
) {
    let mut rng = SplitMix(crate::seed::foreign(seed));
    while rec.now_ns() / 1_000_000 < duration.as_millis() as u64 {
        let n = 1 + rng.below(TX_KEYS_MAX);
        let mut keys: Vec<String> = Vec::new();
        for _ in 0..n {
            let k = workload.next(&mut rng).key.to_string();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let invoke_ns = rec.now_ns();
        let rollback = rng.below(ROLLBACK_ONE_IN) == 0;
        match db.write_tx(&keys, rollback).await {
            // Rolled back: nothing was written, whatever the answer.
            _ if rollback => {}
            Ok(written) => {
                for (k, v) in &written {
                    rec.write_in_tx(FOREIGN_CLIENT, k, invoke_ns, Some(*v));
                }
            }
            Err(_) => {
                for k in &keys {
                    rec.write_in_tx(FOREIGN_CLIENT, k, invoke_ns, None);
                }
            }
        }
        // A slower writer than the app's clients: a few transactions per second.
        sleep(workload.think(&mut rng) * 10).await;
    }
}
