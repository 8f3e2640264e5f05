//! End-of-run probes, the same in both worlds: after every fault has healed and the run has
//! settled, read every tier for every key straight from the servers (no fill, no lease), and
//! record what each holds.

use aside::envelope::{self, Entry};
use aside::tier::{MemcachedLike, ReadFrom, RedisLike, Store};
use aside::{CacheAside, Key, Strategy};
use invariants::history::Source;

use crate::record::Recorder;

pub async fn probe_all<R, M, S, St>(
    cache: &CacheAside<R, M, S, St>,
    keys: &[String],
    rec: &Recorder,
) where
    R: RedisLike,
    M: MemcachedLike,
    S: Store,
    St: Strategy,
{
    for k in keys {
        let at = rec.now_ns();
        let version = |raw: Option<Vec<u8>>| match raw.map(|r| envelope::decode(k, &r)) {
            Some(Ok(Entry::Value { version, .. })) => Some(version),
            _ => None,
        };
        if let Ok(raw) = cache.l1().get(k).await {
            rec.probe(k, at, Source::L1, version(raw));
        }
        let mkey = Key::parse(k)
            .expect("the keyspace holds valid keys")
            .memcached();
        let n = cache.l2().node_index(mkey.as_bytes());
        if let Ok(raw) = cache.l2().nodes[n].gets(&mkey).await {
            rec.probe(k, at, Source::L2, version(raw.map(|r| r.0)));
        }
        if let Ok(row) = cache.store().read(k, ReadFrom::Primary).await {
            rec.probe(k, at, Source::Db, row.map(|r| r.version));
        }
    }
}
