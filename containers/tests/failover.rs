//! Sentinel failover: the master is stopped, the Sentinels (quorum 2 of 3) promote the replica,
//! and the library follows to the new master without being told, checked with ROLE.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aside::{Builtin, CacheConfig, Key, Source};
use containers::{Cluster, ClusterSpec};

async fn role(addr: &str) -> String {
    let mut c = redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let v: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.unwrap();
    match &v[0] {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_library_follows_a_sentinel_failover() {
    let cluster = Cluster::start(ClusterSpec {
        pg_replica: false,
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    let cfg = CacheConfig {
        breaker_cooldown_ms: 200,
        ..CacheConfig::default()
    };
    let cache = cluster
        .library(Builtin::Versioned, cfg, "app")
        .await
        .expect("library");
    let k = Key::new("posts", 1, "42").unwrap();
    cache.write(&k, b"before").await.unwrap();
    cache.get(&k).await.unwrap();
    assert_eq!(cache.get(&k).await.unwrap().unwrap().source, Source::L1);
    let old = cluster.redis_master.addr();
    let replica = cluster.redis_replica.as_ref().unwrap().addr();
    assert_eq!(cache.l1().master().await.as_deref(), Some(old.as_str()));

    // A master busy for longer than the client's deadline (CLIENT PAUSE) answers late: one
    // late reply keeps the connection (the Sentinels are not asked again), three in a row
    // re-resolve the master.
    let l1 = cache.l1();
    let resolved = l1.resolutions.load(Relaxed);
    let pause = |ms: u64| {
        let old = old.clone();
        async move {
            let mut c = redis::Client::open(format!("redis://{old}"))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let _: () = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(ms)
                .arg("ALL")
                .query_async(&mut c)
                .await
                .unwrap();
        }
    };
    pause(400).await;
    assert!(
        aside::RedisLike::get(l1.as_ref(), "probe").await.is_err(),
        "a late reply"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    aside::RedisLike::get(l1.as_ref(), "probe").await.unwrap();
    assert_eq!(
        l1.resolutions.load(Relaxed),
        resolved,
        "one late reply kept the connection"
    );
    // Under the Sentinels' 1 s down-after: a ping they send as the pause begins is answered
    // within it, so they see no failure and start no failover.
    pause(600).await;
    for _ in 0..aside::backend::redis::TIMEOUTS_TO_RESOLVE {
        assert!(aside::RedisLike::get(l1.as_ref(), "probe").await.is_err());
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    aside::RedisLike::get(l1.as_ref(), "probe").await.unwrap();
    assert_eq!(
        l1.resolutions.load(Relaxed),
        resolved + 1,
        "late replies in a row re-resolved the master"
    );

    cluster.redis_master.stop().await.unwrap();
    // Without a command from us, the switch is seen (the Sentinels' +switch-master, or their
    // answers) and the new master resolved: a `durable` invalidator with nothing to send
    // replays its window there.
    let mut seen = false;
    for _ in 0..150 {
        if aside::RedisLike::master_switches(l1.as_ref()) == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen,
        "the switch was not seen within 30 s without a command"
    );
    assert_eq!(l1.master().await.as_deref(), Some(replica.as_str()));
    // Reads never fail meanwhile (the database serves them); writes keep going to PostgreSQL.
    let mut followed = false;
    for i in 0..150 {
        let g = cache.get(&k).await.expect("reads survive a failover");
        assert!(g.is_some());
        cache
            .write(&k, format!("during {i}").as_bytes())
            .await
            .expect("writes go to the database");
        if cache.l1().master().await.as_deref() == Some(replica.as_str()) {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(followed, "the library never moved to {replica}");
    assert_eq!(
        role(&replica).await,
        "master",
        "the promoted replica says so itself"
    );
    assert!(cache.l1().resolutions.load(Relaxed) >= 2);

    // Once the breaker lets L1 back in, the new master serves and is filled.
    let w = cache.write(&k, b"after").await.unwrap();
    let mut source = Source::Db;
    for _ in 0..50 {
        let g = cache.get(&k).await.unwrap().unwrap();
        assert_eq!(
            g.row.version, w.version,
            "never an older version after the failover"
        );
        source = g.source;
        if source == Source::L1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(source, Source::L1, "L1 on the new master serves hits");
}
