//! An exhausted PostgreSQL pool against a real server: a query waits `postgres.pool_wait_ms` for
//! a connection and no longer, then fails naming the pool and the settings that change it; a
//! read through the cache fails with that error, not as a database timeout, and a write that
//! never left the pool is not treated as one that may have committed.

use std::time::{Duration, Instant};

use aside::backend::Postgres;
use aside::{Key, Settings, TierError};
use aside::{ReadFrom, Store};
use containers::{Cluster, ClusterSpec};
use sqlx::Connection;

const WAIT: Duration = Duration::from_millis(300);

/// Takes the only connection of `pg`'s pool for `hold_s` seconds with a query named `tag`, and
/// returns once the server runs it (deadline 10 s). Each call needs its own `tag`: an aborted
/// holder's query runs on at the server until it ends. The pool's own counters cannot tell: while a
/// connection is on its way back to the pool it is neither idle nor handed out, so "one
/// connection, none idle" also holds before the holding query has it, and a read could take it
/// first (CI saw that). The server is asked on a connection of its own, outside the pool.
async fn occupy(
    pg: &Postgres,
    url: &str,
    tag: &'static str,
    hold_s: u32,
) -> tokio::task::JoinHandle<()> {
    let pool = pg.primary().clone();
    let busy = tokio::spawn(async move {
        let sql = format!("SELECT pg_sleep({hold_s}) AS {tag}");
        if let Err(e) = sqlx::query(&sql).execute(&pool).await {
            eprintln!("the query that holds the pool's connection failed: {e}");
        }
    });
    let mut watcher = sqlx::PgConnection::connect(url)
        .await
        .expect("a connection outside the pool");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE $1",
        )
        .bind(format!("%{tag}%"))
        .fetch_one(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if running == 1 {
            return busy;
        }
        assert!(
            Instant::now() < deadline,
            "the holding query never ran (running: {running})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_fails_within_its_wait_naming_the_pool_through_the_store_and_the_cache() {
    let cluster = Cluster::start(ClusterSpec::one_of_each())
        .await
        .expect("cluster");
    let addrs = cluster.addrs();
    let mut settings = Settings::from_toml(&addrs.toml("versioned"), []).expect("settings");
    settings.postgres.pool_max = 1;
    settings.postgres.pool_wait_ms = WAIT.as_millis() as u64;

    // The store alone: one connection, busy for 20 s; a read waits its 300 ms and fails.
    let pg = Postgres::connect_pool(&addrs.pg, None, 1, WAIT)
        .await
        .expect("postgres");
    pg.migrate().await.expect("migrate");
    let busy = occupy(&pg, &addrs.pg, "aside_holds_the_store", 20).await;
    let began = Instant::now();
    let e = pg.read("posts:v1:1", ReadFrom::Primary).await.unwrap_err();
    let waited = began.elapsed();
    assert!(matches!(e, TierError::Exhausted { .. }), "{e:?}");
    let text = e.to_string();
    let server = aside::backend::postgres::server_of(&addrs.pg);
    for part in [
        server.as_str(),
        "1 at most, postgres.pool_max",
        "within 300 ms (postgres.pool_wait_ms)",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    // It waited for its deadline, and not for the busy connection (20 s).
    assert!(
        waited >= WAIT && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    busy.abort();

    // Through the cache: a miss fails with the pool's error, not "postgres timed out"; a write
    // fails the same way and, having never reached the server, invalidates nothing.
    let cache = aside::backend::connect(&settings, "app-1")
        .await
        .expect("cache");
    let busy = occupy(cache.store(), &addrs.pg, "aside_holds_the_cache", 20).await;
    let k = Key::new("posts", 1, "pool-1").unwrap();
    match cache.get(&k).await {
        Err(aside::Error::Db(TierError::Exhausted { detail, .. })) => {
            assert!(detail.contains("postgres.pool_max"), "{detail}")
        }
        other => panic!("a miss on an exhausted pool: {other:?}"),
    }
    let w = cache.write(&k, b"x").await;
    assert!(
        matches!(w, Err(aside::Error::Db(TierError::Exhausted { .. }))),
        "{w:?}"
    );
    assert_eq!(
        cache
            .metrics()
            .l1
            .invalidations
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a write that never left the pool invalidates nothing"
    );
    busy.abort();
}
