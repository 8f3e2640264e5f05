//! Every path of the library against real Redis (through Sentinel), memcached and PostgreSQL.
//! One cluster, the steps in order; the step that stops a memcached node runs last.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use aside::envelope::{self, Entry};
use aside::{Builtin, CacheConfig, Key, MemcachedLike, RedisLike, Source};
use containers::{Cluster, ClusterSpec};
use sqlx::Connection;

fn key(id: &str) -> Key {
    Key::new("posts", 3, id).unwrap()
}

async fn redis_conn(c: &Cluster) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{}", c.redis_master.addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every step in one future: a debug build's poll frame for it is several MiB, past the 2 MiB of
/// a test thread, so it runs on a thread (and runtime) with room to spare.
#[test]
fn library_paths_against_real_servers() {
    const STACK: usize = 64 << 20;
    std::thread::Builder::new()
        .name("library".into())
        .stack_size(STACK)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .thread_stack_size(STACK)
                .enable_all()
                .build()
                .unwrap()
                .block_on(library_paths())
        })
        .unwrap()
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

async fn library_paths() {
    let cluster = Cluster::start(ClusterSpec::default())
        .await
        .expect("cluster");
    let cfg = CacheConfig {
        breaker_failures_max: 3,
        breaker_cooldown_ms: 60_000,
        ..CacheConfig::default()
    };
    let cache = cluster
        .library(Builtin::Versioned, cfg.clone(), "app-1")
        .await
        .expect("library");
    let mut r = redis_conn(&cluster).await;

    // Errors name the server and the cause: a Sentinel asked for a master it does not monitor
    // says so in those words; a Redis that refuses connections is named by its address.
    let wrong = aside::backend::Redis::sentinel(
        &cluster.sentinel_addrs(),
        "no-such-master",
        Duration::from_secs(1),
    )
    .await
    .err()
    .expect("no master by that name")
    .to_string();
    assert!(
        wrong.contains("unknown master \"no-such-master\"")
            && wrong.contains(&cluster.sentinels[0].addr()),
        "{wrong}"
    );
    let closed = format!("redis://{}:1", cluster.redis_master.ip);
    let refused = aside::backend::Redis::direct(&closed, Duration::from_secs(1))
        .await
        .err()
        .expect("nothing listens on port 1")
        .to_string();
    assert!(refused.contains(&closed), "{refused}");

    // Negative caching, on an instance of its own (a task, so its future is not one more
    // part of this one's frame).
    let addrs = cluster.addrs();
    let step_cfg = cfg.clone();
    tokio::spawn(async move {
        let cache = addrs
            .library(Builtin::Versioned, step_cfg, "app-neg")
            .await
            .expect("library");
        let mut r = redis::Client::open(format!("redis://{}", addrs.redis_master))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        negative_caching(&cache, &mut r).await;
    })
    .await
    .expect("the negative caching step");

    // Hit, miss and fill through both tiers.
    let k = key("r/programming:hot");
    let w = cache.write(&k, b"v1 payload").await.unwrap();
    assert_eq!((w.version, w.invalidated), (1, true));
    let g = cache.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (g.row.version, g.row.payload.as_slice(), g.source),
        (1, &b"v1 payload"[..], Source::Db)
    );
    assert_eq!(cache.get(&k).await.unwrap().unwrap().source, Source::L1);
    let _: () = redis::cmd("DEL")
        .arg(k.as_str())
        .query_async(&mut r)
        .await
        .unwrap();
    let g = cache.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (g.source, g.row.version),
        (Source::L2, 1),
        "L2 serves when L1 lost the key"
    );
    assert_eq!(
        cache.get(&k).await.unwrap().unwrap().source,
        Source::L1,
        "and L2 refilled L1"
    );

    // The outbox on PostgreSQL: pruning deletes the rows marked done and older than `keep`,
    // never one not applied yet (a task of its own, as above).
    let pg_url = cluster.pg_url();
    tokio::spawn(async move {
        let pg = aside::backend::Postgres::connect(&pg_url, None, 2)
            .await
            .unwrap();
        outbox_pruning(&pg).await;
    })
    .await
    .expect("the pruning step");

    // Invalidation: a write is never followed by the old version.
    let w = cache.write(&k, b"v2 payload").await.unwrap();
    assert_eq!(w.version, 2);
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(k.as_str())
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(
        envelope::decode(k.as_str(), &raw).unwrap(),
        Entry::Tombstone { version: 2 },
        "versioned leaves a tombstone"
    );
    let g = cache.get(&k).await.unwrap().unwrap();
    assert_eq!((g.row.version, g.source), (2, Source::Db));
    assert_eq!(cache.get(&k).await.unwrap().unwrap().row.version, 2);
    assert!(cache.invalidate(&k).await);
    assert_eq!(cache.get(&k).await.unwrap().unwrap().source, Source::Db);

    // A stale fill after a newer tombstone is refused by the script (the race versioned closes).
    let old = envelope::encode(
        k.as_str(),
        &Entry::Value {
            version: 1,
            fresh_until_ms: 0,
            payload: b"v1 payload".to_vec(),
        },
    );
    cache.write(&k, b"v3").await.unwrap();
    assert!(
        !cache
            .l1()
            .fill_if_newer(k.as_str(), &old, 1, 60_000)
            .await
            .unwrap(),
        "v1 over a v3 tombstone"
    );

    // Pattern invalidation: glob characters in user input are literal.
    for id in ["r/rust:hot", "r/rust:new", "r/go:hot", "r/*evil", "r/[x]"] {
        cache.write(&key(id), id.as_bytes()).await.unwrap();
        cache.get(&key(id)).await.unwrap();
        assert_eq!(
            cache.get(&key(id)).await.unwrap().unwrap().source,
            Source::L1
        );
    }
    assert_eq!(
        scanned(cache.invalidate_prefix("posts", 3, "r/rust:").await),
        2
    );
    assert_eq!(
        cache.get(&key("r/rust:hot")).await.unwrap().unwrap().source,
        Source::Db
    );
    assert_eq!(
        cache.get(&key("r/go:hot")).await.unwrap().unwrap().source,
        Source::L1,
        "r/go untouched"
    );
    assert_eq!(
        scanned(cache.invalidate_prefix("posts", 3, "r/*").await),
        1,
        "`*` from the user is not a glob"
    );
    assert_eq!(
        cache.get(&key("r/go:hot")).await.unwrap().unwrap().source,
        Source::L1
    );
    assert_eq!(scanned(cache.invalidate_prefix("posts", 3, "r/[").await), 1);

    // Lease contention between two clients: a cold key, 2 x 16 concurrent readers.
    let other = Arc::new(
        cluster
            .library(Builtin::Versioned, cfg.clone(), "app-2")
            .await
            .unwrap(),
    );
    let cache = Arc::new(cache);
    let hot = key("viral");
    cache.write(&hot, b"hot").await.unwrap();
    let db_before = cache.metrics().db.hits.load(Relaxed) + other.metrics().db.hits.load(Relaxed);
    let mut tasks = Vec::new();
    // Contention made certain, not left to timing (once in CI one process finished its whole
    // miss before the other's first reader looked): the database is held for 200 ms by a table
    // lock while every reader starts at once, so the lease winner is still reading when the
    // other process's readers arrive.
    let mut blocker = sqlx::PgConnection::connect(&cluster.pg_url())
        .await
        .unwrap();
    let mut hold = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE aside_rows IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(32));
    for i in 0..32 {
        let c = if i % 2 == 0 {
            cache.clone()
        } else {
            other.clone()
        };
        let (k, start) = (hot.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            c.get(&k).await.unwrap().unwrap().row.version
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    hold.commit().await.unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1);
    }
    let db_reads =
        cache.metrics().db.hits.load(Relaxed) + other.metrics().db.hits.load(Relaxed) - db_before;
    let waited =
        cache.metrics().lease_waits.load(Relaxed) + other.metrics().lease_waits.load(Relaxed);
    let coalesced =
        cache.metrics().coalesced.load(Relaxed) + other.metrics().coalesced.load(Relaxed);
    assert!(
        db_reads <= 2,
        "32 readers of one cold key in two processes read the database {db_reads} times"
    );
    assert!(
        waited >= 1,
        "the second process waited on the first one's lease"
    );
    assert!(
        coalesced >= 14,
        "readers in one process share one load ({coalesced})"
    );

    // Key injection: `a\r\nflush_all` is a key like any other, and runs nothing on any server.
    let canary =
        memcache::Client::connect(format!("memcache://{}", cluster.memcached[0].addr())).unwrap();
    for n in &cluster.memcached {
        let c = memcache::Client::connect(format!("memcache://{}", n.addr())).unwrap();
        c.set("canary", "alive", 600).unwrap();
    }
    let evil = key("a\r\nflush_all");
    let w = cache.write(&evil, b"evil").await.unwrap();
    assert_eq!(
        cache.get(&evil).await.unwrap().unwrap().row.version,
        w.version
    );
    cache.get(&evil).await.unwrap();
    for n in &cluster.memcached {
        let c = memcache::Client::connect(format!("memcache://{}", n.addr())).unwrap();
        assert_eq!(
            c.get::<String>("canary").unwrap().as_deref(),
            Some("alive"),
            "flush_all ran on {}",
            n.addr()
        );
    }
    assert!(
        cache.l2().nodes[0].gets("a\r\nflush_all").await.is_err(),
        "the raw client refuses the key"
    );
    drop(canary);

    // Corrupt entries: a miss, deleted, counted.
    let ck = key("corrupt");
    cache.write(&ck, b"good").await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(ck.as_str())
        .arg("garbage")
        .query_async(&mut r)
        .await
        .unwrap();
    let n = cache.l2().node_index(ck.memcached().as_bytes());
    cache.l2().nodes[n]
        .set(&ck.memcached(), b"AS1|v|1|0|deadbeef|forged", 600)
        .await
        .unwrap();
    let corrupt_before =
        cache.metrics().l1.corrupt.load(Relaxed) + cache.metrics().l2.corrupt.load(Relaxed);
    let g = cache.get(&ck).await.unwrap().unwrap();
    assert_eq!(
        (g.row.payload.as_slice(), g.source),
        (&b"good"[..], Source::Db)
    );
    let corrupt = cache.metrics().l1.corrupt.load(Relaxed)
        + cache.metrics().l2.corrupt.load(Relaxed)
        - corrupt_before;
    assert_eq!(corrupt, 2, "both tiers' corrupt entries counted");
    assert_eq!(
        cache.get(&ck).await.unwrap().unwrap().source,
        Source::L1,
        "and replaced by a good fill"
    );

    // Oversized values skip L2, never an error.
    let big = key("big");
    let payload = vec![7u8; 2 << 20];
    cache.write(&big, &payload).await.unwrap();
    let oversized = cache.metrics().l2.oversized.load(Relaxed);
    assert_eq!(
        cache.get(&big).await.unwrap().unwrap().row.payload.len(),
        2 << 20
    );
    assert_eq!(cache.metrics().l2.oversized.load(Relaxed), oversized + 1);
    assert_eq!(cache.get(&big).await.unwrap().unwrap().source, Source::L1);

    // Circuit breaker: a stopped memcached node is skipped fast, reads go on to the database.
    let victim = &cluster.memcached[1];
    victim.stop().await.unwrap();
    let mut on_victim = (0..)
        .map(|i| key(&format!("cold:{i}")))
        .filter(|k| cache.l2().node_index(k.memcached().as_bytes()) == 1);
    for _ in 0..10 {
        let k = on_victim.next().unwrap();
        cache.write(&k, b"x").await.unwrap();
        let _: () = redis::cmd("DEL")
            .arg(k.as_str())
            .query_async(&mut r)
            .await
            .unwrap();
        assert_eq!(
            cache.get(&k).await.unwrap().unwrap().source,
            Source::Db,
            "reads survive a dead L2 node"
        );
    }
    let skipped = cache.metrics().l2.skipped.load(Relaxed);
    assert!(
        skipped >= 10,
        "the breaker opened and later calls skipped the node ({skipped})"
    );
    let start = tokio::time::Instant::now();
    let k = on_victim.next().unwrap();
    cache.write(&k, b"y").await.unwrap();
    cache.get(&k).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(cfg.l2_timeout_ms),
        "an open circuit costs no timeout"
    );
}

/// Negative caching against the real tiers: a key with no row reaches the database once, then
/// is answered "absent" by L1 (and by L2 once L1 forgets it) until the write creates it.
async fn negative_caching(
    cache: &containers::cluster::Library,
    r: &mut redis::aio::MultiplexedConnection,
) {
    let nothing = key("no-such-post");
    let db_reads = cache.metrics().db.hits.load(Relaxed);
    for _ in 0..3 {
        assert!(cache.get(&nothing).await.unwrap().is_none());
    }
    assert_eq!(cache.metrics().db.hits.load(Relaxed), db_reads + 1);
    let _: () = redis::cmd("DEL")
        .arg(nothing.as_str())
        .query_async(r)
        .await
        .unwrap();
    assert!(cache.get(&nothing).await.unwrap().is_none());
    assert_eq!(
        cache.metrics().db.hits.load(Relaxed),
        db_reads + 1,
        "from L2"
    );
    cache.write(&nothing, b"now it exists").await.unwrap();
    assert_eq!(
        cache.get(&nothing).await.unwrap().unwrap().row.payload,
        b"now it exists"
    );
}

async fn outbox_pruning(pg: &aside::backend::Postgres) {
    let head = aside::Store::outbox_head(pg).await.unwrap();
    for id in ["prune-1", "prune-2"] {
        aside::Store::write(pg, key(id).as_str(), b"x")
            .await
            .unwrap();
    }
    let ids: Vec<u64> = aside::Store::outbox_after(pg, head, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids.len(), 2);
    let undone = aside::Store::outbox_undone(pg).await.unwrap();
    assert!(undone >= 2, "{undone}: both rows are not done yet");
    aside::Store::outbox_done(pg, &ids[..1]).await.unwrap();
    let after = aside::Store::outbox_undone(pg).await.unwrap();
    assert!(after < undone, "{after} of {undone}: one row marked done");
    assert_eq!(
        pg.prune_outbox(Duration::from_secs(60)).await.unwrap(),
        0,
        "too young"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(aside::Store::outbox_prune(pg, 10).await.unwrap(), 1);
    let left: Vec<u64> = aside::Store::outbox_after(pg, head, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, ids[1..], "the row not applied stays");
}

/// The values a SCAN-based pattern invalidation found (`posts` is not a grouped namespace).
fn scanned(r: Result<aside::Invalidated, aside::Error>) -> u64 {
    match r.unwrap() {
        aside::Invalidated::Scanned { values, .. } => values,
        other => panic!("expected a SCAN, got {other:?}"),
    }
}
