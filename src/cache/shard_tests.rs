//! L1 in two shards: one shard's failure, fence and failover leave the other served.

use super::harness::*;
use super::*;
use crate::breaker::State as BreakerState;
use crate::shards::ShardMap;
use crate::tier::mem::MemRedis;

type Sharded = CacheAside<MemRedis, NoL2, SlowStore, crate::Builtin>;

/// Class `s` on shard 1, every other class on shard 0; `durable`, its invalidator started;
/// `s` is a grouped namespace.
async fn sharded() -> Arc<Sharded> {
    let cfg = CacheConfig {
        lease_ms: 0,
        breaker_failures_max: 1,
        breaker_cooldown_ms: 20,
        grouped_namespaces: vec!["s".into()],
        ..CacheConfig::default()
    }
    .validate()
    .unwrap();
    let map = ShardMap::new(2, 0).unwrap().class("s", 1).unwrap();
    let l1 = Shards::new(vec![MemRedis::default(), MemRedis::default()], map).unwrap();
    let pool = Pool::new(Ring::new(&["l2:1"]).unwrap(), vec![NoL2], &cfg);
    let c = Arc::new(CacheAside::sharded(
        l1,
        pool,
        SlowStore::default(),
        crate::Builtin::Durable,
        cfg,
        "test",
    ));
    drop(c.invalidator().expect("durable runs an invalidator"));
    c.invalidator_pass().await;
    c
}

/// `t:v1:a` on shard 0 and `s:v1:b` on shard 1, each read twice: the second from L1.
async fn filled(c: &Sharded) -> (Key, Key) {
    let (a, b) = (key("a"), Key::new("s", 1, "b").unwrap());
    for k in [&a, &b] {
        c.get(k).await.unwrap();
        assert_eq!(c.get(k).await.unwrap().unwrap().source, Source::L1);
    }
    (a, b)
}

#[tokio::test]
async fn a_shard_that_fails_is_fenced_and_broken_alone() {
    let c = sharded().await;
    let (a, b) = filled(&c).await;
    c.l1_shards().server(1).set_down(true);
    let w = c.write(&b, b"new").await.unwrap();
    assert!(!w.invalidated, "shard 1 was down");
    assert_eq!(c.fenced_tiers(), vec!["l1-1".to_string()]);
    // Shard 1's breaker opened on its one failure; shard 0's did not.
    let states: Vec<_> = c.l1_breakers.iter().map(|b| b.state()).collect();
    assert_eq!(states, [BreakerState::Closed, BreakerState::Open]);
    let got = c.get(&a).await.unwrap().unwrap();
    assert_eq!(
        (got.row.version, got.source),
        (0, Source::L1),
        "shard 0 serves"
    );
    c.l1_shards().server(1).set_down(false);
    let got = c.get(&b).await.unwrap().unwrap();
    assert_eq!(
        (got.row.version, got.source),
        (1, Source::Db),
        "shard 1 is fenced"
    );
    // Once shard 1's breaker lets a probe through, a pass applies the row and lifts the fence.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.fenced_tiers().is_empty() {
        assert!(Instant::now() < deadline, "shard 1 still fenced after 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.invalidator_pass().await;
    }
    c.get(&b).await.unwrap();
    let got = c.get(&b).await.unwrap().unwrap();
    assert_eq!((got.row.version, got.source), (1, Source::L1));
}

#[tokio::test]
async fn a_failover_of_one_shard_replays_its_keys_alone() {
    let c = sharded().await;
    let (a, b) = filled(&c).await;
    c.write(&a, b"new").await.unwrap();
    c.write(&b, b"new").await.unwrap();
    c.invalidator_pass().await;
    // Both new masters lost their tombstone (acknowledged, never replicated); shard 1 fails
    // over.
    let (s0, s1) = (c.l1_shards().server(0), c.l1_shards().server(1));
    s0.del(&[a.as_str().to_string()]).await.unwrap();
    s1.del(&[b.as_str().to_string()]).await.unwrap();
    s1.switch_master();
    assert_eq!(c.fenced_tiers(), vec!["l1-1".to_string()]);
    let fenced = c.metrics().l1.fenced.load(Relaxed);
    c.get(&a).await.unwrap();
    assert_eq!(
        c.metrics().l1.fenced.load(Relaxed),
        fenced,
        "shard 0 is asked: only shard 1 is fenced"
    );
    c.invalidator_pass().await;
    assert!(c.fenced_tiers().is_empty());
    let tomb = s1
        .get(b.as_str())
        .await
        .unwrap()
        .expect("replayed on shard 1");
    assert!(
        matches!(
            envelope::decode(b.as_str(), &tomb),
            Ok(Entry::Tombstone { version: 1, .. })
        ),
        "shard 1 holds b's tombstone again"
    );
    assert!(
        s0.get(a.as_str())
            .await
            .unwrap()
            .is_some_and(|raw| !matches!(
                envelope::decode(a.as_str(), &raw),
                Ok(Entry::Tombstone { .. })
            )),
        "shard 0 did not switch: nothing is replayed there (the read above filled it)"
    );
}

#[tokio::test]
async fn a_group_on_the_second_shard_keeps_its_generation_there() {
    let c = sharded().await;
    let k = Key::new("s", 1, "r/x:hot").unwrap();
    c.get(&k).await.unwrap();
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
    c.invalidate_prefix("s", 1, "r/x:").await.unwrap();
    let gen = k.generation_key().unwrap();
    let (s0, s1) = (c.l1_shards().server(0), c.l1_shards().server(1));
    assert!(
        s1.get(gen.as_str()).await.unwrap().is_some(),
        "the bump is on shard 1"
    );
    assert!(
        s0.get(gen.as_str()).await.unwrap().is_none(),
        "and nowhere else"
    );
    let got = c.get(&k).await.unwrap().unwrap();
    assert_eq!(got.source, Source::Db, "the new generation starts empty");
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
    assert!(
        s1.get(&k.in_generation(1).stored())
            .await
            .unwrap()
            .is_some(),
        "the key in its new generation is on shard 1"
    );
    // The bump's outbox row, replayed after a failover of shard 1, goes to shard 1 only.
    s1.del(&[gen.as_str().to_string()]).await.unwrap();
    s1.switch_master();
    c.invalidator_pass().await;
    assert!(c.fenced_tiers().is_empty());
    assert!(
        s1.get(gen.as_str()).await.unwrap().is_some(),
        "replayed on shard 1"
    );
    assert!(s0.get(gen.as_str()).await.unwrap().is_none());
}
