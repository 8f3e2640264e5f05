//! End-of-run probes, the same in both worlds: once every fault has healed and every client is
//! done (the quiet point), read every tier for every key straight from the servers (no fill, no
//! lease), and record what each holds. [`probe_rounds`] reads the caches [`PROBE_ROUNDS`] times,
//! the last at the settle's end: the convergence checker judges a tier by what it held from
//! `settle` after the quiet point on (T, the header's `converge_within_ns`), and the earlier
//! round shows whether it was still diverged halfway. The database is read in the last round
//! only: after the quiet point nothing writes to it, and the checker takes its last probe.
//!
//! A key of a grouped namespace is held under its group's generation (`key#gN`, on the group's
//! memcached node): both tiers are probed under the generation a reader would take, as the read
//! path takes it (L1's copy of the group's generation key, else L2's, else the database's). An
//! entry under any other generation is out of every reader's reach. A key whose generation
//! cannot be learned (the database does not answer) is not probed.

use aside::envelope::{self, Entry};
use aside::tier::{MemcachedLike, ReadFrom, RedisLike, Store};
use aside::{CacheAside, Key, Strategy};
use invariants::history::Source;

use crate::record::Recorder;

/// The version of the entry `raw` holds for the key `name`, if it holds a value.
fn version(name: &str, raw: Option<Vec<u8>>) -> Option<u64> {
    match raw.map(|r| envelope::decode(name, &r)) {
        Some(Ok(Entry::Value { version, .. })) => Some(version),
        _ => None,
    }
}

/// The generation a tier's copy of the generation key `name` gives a reader: its value's
/// version, 0 if the database had no row, nothing for a tombstone or no entry.
fn generation(name: &str, raw: Option<Vec<u8>>) -> Option<u64> {
    match raw.map(|r| envelope::decode(name, &r)) {
        Some(Ok(Entry::Value { version, .. })) => Some(version),
        Some(Ok(Entry::Absent { .. })) => Some(0),
        _ => None,
    }
}

/// How many times the probes read the caches after the quiet point: evenly spaced over the
/// settle, the last at its end. More rounds would tell how long a tier stayed diverged more
/// finely, at two reads per key each, and the verdict is the last round's either way. Measured
/// side by side (`cargo sim matrix --strategy durable --first-seed 21 --seeds 20`, 2 cores): one
/// round 47 s, two 53 s, four (the database read in each) 61 s.
pub const PROBE_ROUNDS: u32 = 2;

/// When the probes run: the quiet point (every client done, the plan's last heal) and the
/// settle after it, T.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    pub quiet: tokio::time::Instant,
    pub settle: std::time::Duration,
}

/// Reads the caches once every `settle / PROBE_ROUNDS` from the quiet point (the database too
/// in the last round, as [`probe_all`] does), the last round at
/// `quiet + settle` (or, where a round overran it, right after): the last round always reads
/// the tiers at or after T. A round that overruns the next one's time delays it; none is
/// skipped but the last is never later than needed.
pub async fn probe_rounds<R, M, S, St>(
    cache: &CacheAside<R, M, S, St>,
    keys: &[String],
    rec: &Recorder,
    rounds: Rounds,
) where
    R: RedisLike,
    M: MemcachedLike,
    S: Store,
    St: Strategy,
{
    let end = rounds.quiet + rounds.settle;
    let every = rounds.settle / PROBE_ROUNDS;
    let mut next = rounds.quiet + every;
    loop {
        tokio::time::sleep_until(next).await;
        let last = next >= end;
        probe_tiers(cache, keys, rec, last).await;
        if last {
            return;
        }
        next = (next + every).max(tokio::time::Instant::now()).min(end);
    }
}

/// Reads every tier once for each of `keys`, into `rec`.
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
    probe_tiers(cache, keys, rec, true).await
}

/// Reads L1 and L2 once for each of `keys`, into `rec`, and the database too with `with_db`.
async fn probe_tiers<R, M, S, St>(
    cache: &CacheAside<R, M, S, St>,
    keys: &[String],
    rec: &Recorder,
    with_db: bool,
) where
    R: RedisLike,
    M: MemcachedLike,
    S: Store,
    St: Strategy,
{
    for k in keys {
        let at = rec.now_ns();
        let key = Key::parse(k).expect("the keyspace holds valid keys");
        let node = &cache.l2().nodes[cache.l2_node_of(&key)];
        let held = match cache.generation_key_of(&key) {
            None => key.clone(),
            Some(g) => {
                let in_l1 = (cache.l1_of(&g.stored()).get(&g.stored()).await.ok())
                    .and_then(|raw| generation(g.as_str(), raw));
                let cached = match in_l1 {
                    Some(n) => Some(n),
                    None => (node.gets(&g.memcached()).await.ok())
                        .and_then(|raw| generation(g.as_str(), raw.map(|r| r.0))),
                };
                let gen = match cached {
                    Some(n) => n,
                    None => match cache.store().read(g.as_str(), ReadFrom::Primary).await {
                        Ok(row) => row.map_or(0, |r| r.version),
                        Err(_) => continue,
                    },
                };
                key.in_generation(gen)
            }
        };
        let stored = held.stored();
        if let Ok(raw) = cache.l1_of(&stored).get(&stored).await {
            rec.probe(k, at, Source::L1, version(k, raw));
        }
        if let Ok(raw) = node.gets(&held.memcached()).await {
            rec.probe(k, at, Source::L2, version(k, raw.map(|r| r.0)));
        }
        if !with_db {
            continue;
        }
        if let Ok(row) = cache.store().read(k, ReadFrom::Primary).await {
            rec.probe(k, at, Source::Db, row.map(|r| r.version));
        }
    }
    // With the database: the outbox's backlog, where the strategy's invalidators drain it.
    if with_db && cache.strategy().uses_outbox() {
        let at = rec.now_ns();
        if let Ok(undone) = cache.store().outbox_undone().await {
            rec.outbox(at, undone);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aside::tier::mem::{MemMemcached, MemRedis, MemStore};
    use aside::{Builtin, CacheConfig, Pool, Ring};
    use invariants::history::{Header, FORMAT};

    /// What the probe recorded for `key`, per tier, from the history's probe lines.
    fn probed(history: &[u8], key: &str) -> Vec<(String, Option<u64>)> {
        (String::from_utf8_lossy(history).lines())
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "probe" && v["key"] == key)
            .map(|v| {
                (
                    v["tier"].as_str().unwrap().to_string(),
                    v["version"].as_u64(),
                )
            })
            .collect()
    }

    type MemCache = CacheAside<MemRedis, MemMemcached, MemStore, Builtin>;

    /// A `versioned` cache over in-memory tiers, `grouped` namespaces grouped.
    fn mem_cache(grouped: &[&str]) -> MemCache {
        let cfg = CacheConfig {
            grouped_namespaces: grouped.iter().map(|s| s.to_string()).collect(),
            ..CacheConfig::default()
        }
        .validate()
        .unwrap();
        let names = ["a:1", "b:1", "c:1"];
        let nodes = names.iter().map(|_| MemMemcached::default()).collect();
        let pool = Pool::new(Ring::new(&names).unwrap(), nodes, &cfg);
        let store = MemStore::default();
        CacheAside::new(
            MemRedis::default(),
            pool,
            store,
            Builtin::Versioned,
            cfg,
            "app-1",
        )
    }

    /// The history `rec` recorded.
    fn finish(rec: &Recorder) -> Vec<u8> {
        rec.finish(&Header {
            format: FORMAT,
            world: "test".into(),
            scenario: "probe".into(),
            strategy: "versioned".into(),
            seed: 0,
            commit: "test".into(),
            config: invariants::Bounds::default().to_config(),
        })
    }

    /// Writes and reads `listings:v1:r/rust:hot` around a bump of its group, then probes it:
    /// the versions each tier holds for it, and the version written last.
    /// `l1_loses_generation`: L1 no longer holds the group's generation key when probed.
    async fn probe_listing(
        grouped: &[&str],
        l1_loses_generation: bool,
    ) -> (Vec<(String, Option<u64>)>, u64) {
        let cache = mem_cache(grouped);
        let k = Key::new("listings", 1, "r/rust:hot").unwrap();
        cache.write(&k, b"one").await.unwrap();
        cache.get(&k).await.unwrap();
        cache
            .invalidate_prefix("listings", 1, "r/rust:")
            .await
            .unwrap();
        let written = cache.write(&k, b"two").await.unwrap().version;
        cache.get(&k).await.unwrap();
        if l1_loses_generation {
            let g = k.generation_key().unwrap().stored().into_owned();
            cache.l1().del(&[g]).await.unwrap();
        }

        let rec = Recorder::start();
        probe_all(&cache, &[k.as_str().to_string()], &rec).await;
        (probed(&finish(&rec), k.as_str()), written)
    }

    /// Before the probe followed generations it read `listings:v1:r/rust:hot` itself, which no
    /// tier holds under `versioned`, and recorded nothing in L1 and L2 for every grouped key:
    /// convergence could not fail for them.
    #[tokio::test]
    async fn a_grouped_key_is_probed_under_the_generation_each_tier_gives_a_reader() {
        for l1_loses_generation in [false, true] {
            let (probed, written) = probe_listing(&["listings"], l1_loses_generation).await;
            let want = |tier: &str| (tier.to_string(), Some(written));
            assert_eq!(
                probed,
                vec![want("l1"), want("l2"), want("db")],
                "generation 1 learned from {}",
                if l1_loses_generation { "L2" } else { "L1" }
            );
        }
    }

    /// The same key where its namespace is not grouped is held, and probed, as itself (a first
    /// version of the probe named it in generation 0 and found nothing).
    #[tokio::test]
    async fn a_key_with_a_group_in_a_namespace_not_grouped_is_probed_as_itself() {
        let (probed, written) = probe_listing(&[], false).await;
        let want = |tier: &str| (tier.to_string(), Some(written));
        assert_eq!(probed, vec![want("l1"), want("l2"), want("db")]);
    }

    /// The rounds: [`PROBE_ROUNDS`] reads of both caches, none before its share of the
    /// settle, the last at or after the settle's end (T, what the checker judges from), and
    /// the database's in the last. Real time, lower bounds only: a slow machine makes rounds
    /// late, never early.
    #[tokio::test]
    async fn the_rounds_read_the_caches_each_time_the_database_last_the_last_at_or_after_t() {
        let cache = mem_cache(&[]);
        let k = Key::new("posts", 1, "7").unwrap();
        cache.write(&k, b"one").await.unwrap();
        let rec = Recorder::start();
        let settle = std::time::Duration::from_millis(80);
        let rounds = Rounds {
            quiet: rec.origin(),
            settle,
        };
        probe_rounds(&cache, &[k.as_str().to_string()], &rec, rounds).await;
        let history = finish(&rec);
        let probes: Vec<(String, u64)> = (String::from_utf8_lossy(&history).lines())
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "probe")
            .map(|v| {
                (
                    v["tier"].as_str().unwrap().to_string(),
                    v["at_ns"].as_u64().unwrap(),
                )
            })
            .collect();
        let tiers: Vec<&str> = probes.iter().map(|p| p.0.as_str()).collect();
        let mut want = ["l1", "l2"].repeat(PROBE_ROUNDS as usize);
        want.push("db");
        assert_eq!(tiers, want, "{probes:?}");
        let settle_ns = settle.as_nanos() as u64;
        for (i, p) in probes.iter().enumerate() {
            // Two cache reads a round; the database's belongs to the last.
            let round = (i as u64 / 2).min(u64::from(PROBE_ROUNDS) - 1);
            let due = settle_ns * (round + 1) / u64::from(PROBE_ROUNDS);
            assert!(p.1 >= due, "round {round}: {probes:?}");
        }
        assert!(probes.windows(2).all(|w| w[0].1 <= w[1].1), "{probes:?}");
    }
}
