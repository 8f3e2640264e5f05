//! Capture against a real PostgreSQL, Redis and memcached: a table of a user's own, declared
//! once, and every write to it by plain SQL from another connection (an UPDATE, a multi-row
//! transaction, a DELETE) is invalidated in both tiers by `durable`'s invalidator within its Δ; a
//! rolled-back transaction leaves no trace; bad declarations are one line each.

use std::sync::Arc;
use std::time::Duration;

use aside::backend::{Capture, Postgres};
use aside::tier::{Row, TierResult};
use aside::{Builtin, CacheAside, CacheConfig, Key, Source, Store};
use containers::{Cluster, ClusterSpec};
use sqlx::Connection as _;

/// The loader of a captured table: the row and its key's version, in one statement.
async fn load(pg: &Postgres, key: Key, id: i32) -> TierResult<Option<Row>> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT aside_key_version($1), name FROM users WHERE id = $2")
            .bind(key.to_string())
            .bind(id)
            .fetch_optional(pg.primary())
            .await
            .map_err(|e| aside::TierError::Refused {
                tier: "postgres",
                detail: e.to_string(),
            })?;
    Ok(row.map(|(version, name)| Row {
        version: version as u64,
        payload: name.into_bytes(),
    }))
}

/// Reads `key` through the cache until it serves `want` (None: absent) or `deadline` passes;
/// what it served last.
async fn served<R, M, S>(
    cache: &CacheAside<R, M, S, Builtin>,
    pg: &Postgres,
    key: &Key,
    id: i32,
    want: Option<&str>,
    deadline: Duration,
) -> (Option<String>, Duration)
where
    R: aside::RedisLike,
    M: aside::MemcachedLike,
    S: Store,
{
    let began = tokio::time::Instant::now();
    loop {
        let got = cache
            .get_with(key, || load(pg, key.clone(), id))
            .await
            .expect("a read");
        let value = got.map(|g| String::from_utf8(g.row.payload).unwrap());
        if value.as_deref() == want || began.elapsed() >= deadline {
            return (value, began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A one-of-each cluster and a `durable` cache over it with its invalidator running, and the
/// staleness bound Δ that invalidator promises.
async fn durable_cache() -> (Cluster, Arc<aside::backend::Cache>, Duration) {
    let cluster = Cluster::start(ClusterSpec::one_of_each())
        .await
        .expect("cluster");
    let cfg = CacheConfig {
        strategy: "durable".into(),
        ..CacheConfig::default()
    };
    let delta = Duration::from_millis(cfg.outbox_staleness_bound_ms());
    let cache = Arc::new(
        cluster
            .library(Builtin::Durable, cfg, "app-1")
            .await
            .expect("the cache"),
    );
    tokio::spawn(cache.invalidator().expect("durable runs an invalidator"));
    (cluster, cache, delta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_writes_to_a_captured_table_are_invalidated_within_delta() {
    let (cluster, cache, delta) = durable_cache().await;
    let pg = cache.store().clone();

    // The user's own table, written by their own SQL.
    sqlx::raw_sql(
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'ada'), (2, 'brian'), (3, 'cleo');",
    )
    .execute(pg.primary())
    .await
    .unwrap();

    // Bad declarations: one line each, nothing installed.
    let err = |c: Capture| {
        let pg = pg.clone();
        async move { pg.capture(&c).await.unwrap_err().to_string() }
    };
    let e = err(Capture::table("users").key("users:v1:{uid}").unwrap()).await;
    assert!(
        e.contains("names column \"uid\"") && e.contains("its columns: id, name"),
        "{e}"
    );
    let e = err(Capture::table("nobody").key("users:v1:{id}").unwrap()).await;
    assert!(e.contains("table \"nobody\" does not exist"), "{e}");
    assert_eq!(e.lines().count(), 1);

    // Installed twice: the second replaces the first, one trigger.
    let capture = Capture::table("users").key("users:v1:{id}").unwrap();
    pg.capture(&capture).await.expect("installed");
    pg.capture(&capture).await.expect("installed again");
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND tgname = 'aside_capture'",
    )
    .fetch_one(pg.primary())
    .await
    .unwrap();
    assert_eq!(triggers, 1);

    let k = |id: i32| Key::new("users", 1, &id.to_string()).unwrap();
    // Filled in both tiers at version 0 (nothing written since the capture).
    for id in 1..=3 {
        let g = cache
            .get_with(&k(id), || load(&pg, k(id), id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((g.source, g.row.version), (Source::Db, 0));
        // Then from L1 (waited for, not assumed: a fill that outlasted L1's deadline on a
        // loaded machine leaves the next read to L2).
        let began = tokio::time::Instant::now();
        loop {
            let g = cache
                .get_with(&k(id), || load(&pg, k(id), id))
                .await
                .unwrap()
                .unwrap();
            if g.source == Source::L1 {
                break;
            }
            assert!(began.elapsed() < delta * 8, "{id} never served from L1");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // Another client, plain SQL: an UPDATE.
    let mut other = sqlx::PgConnection::connect(&cluster.pg_url())
        .await
        .unwrap();
    sqlx::query("UPDATE users SET name = 'ada lovelace' WHERE id = 1")
        .execute(&mut other)
        .await
        .unwrap();
    let (got, took) = served(&cache, &pg, &k(1), 1, Some("ada lovelace"), delta * 4).await;
    assert_eq!(got.as_deref(), Some("ada lovelace"), "after {took:?}");
    println!("an UPDATE from psql was served after {took:?} (Δ {delta:?})");
    assert!(took <= delta, "served stale for {took:?}, past Δ {delta:?}");

    // A rolled-back transaction: no version, no outbox row, the cache keeps serving.
    let outbox = |pg: Postgres| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM aside_outbox")
            .fetch_one(pg.primary())
            .await
            .unwrap()
    };
    let before = outbox(pg.clone()).await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query("UPDATE users SET name = 'nobody' WHERE id = 2")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        outbox(pg.clone()).await,
        before,
        "a rollback leaves no outbox row"
    );
    let g = cache
        .get_with(&k(2), || load(&pg, k(2), 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.row.version, 0);
    assert_ne!(g.source, Source::Db, "still served from the cache");

    // A multi-row transaction: each key its own next version, each invalidated.
    let mut tx = other.begin().await.unwrap();
    sqlx::query("UPDATE users SET name = name || '!' WHERE id IN (2, 3)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for (id, want) in [(2, "brian!"), (3, "cleo!")] {
        let (got, took) = served(&cache, &pg, &k(id), id, Some(want), delta * 4).await;
        assert_eq!(got.as_deref(), Some(want), "after {took:?}");
        assert!(took <= delta, "{id}: served stale for {took:?}");
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT aside_key_version(k) FROM unnest($1::text[]) AS k")
            .bind(vec![k(1).to_string(), k(2).to_string(), k(3).to_string()])
            .fetch_all(pg.primary())
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 1, 1]);

    // A DELETE: the key reads absent, from the database.
    sqlx::query("DELETE FROM users WHERE id = 3")
        .execute(&mut other)
        .await
        .unwrap();
    let (got, took) = served(&cache, &pg, &k(3), 3, None, delta * 4).await;
    assert_eq!(got, None, "a deleted row is not served after {took:?}");

    // Removed: writes no longer reach the outbox.
    pg.uncapture("users").await.unwrap();
    pg.uncapture("users")
        .await
        .expect("removing twice is nothing");
    let before = outbox(pg.clone()).await;
    sqlx::query("UPDATE users SET name = 'x' WHERE id = 1")
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(outbox(pg.clone()).await, before);
}

/// The library's own table is captured as a user's is: plain SQL to `aside_rows` from another
/// connection (an UPDATE that forgets the version, a multi-row transaction, an INSERT, a
/// DELETE) is invalidated within Δ, a rollback leaves no outbox row, and a write reports the
/// other keys its transaction changed through a trigger of the user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_writes_to_aside_rows_are_invalidated_and_siblings_reported() {
    let (cluster, cache, delta) = durable_cache().await;
    let pg = cache.store().clone();
    let k = |id: u32| Key::new("posts", 1, &id.to_string()).unwrap();
    // Reads `key` until it serves `want` (None: absent) or four Δ pass.
    let served = |key: Key, want: Option<(u64, &'static str)>| {
        let cache = cache.clone();
        async move {
            let began = tokio::time::Instant::now();
            loop {
                let got = cache.get(&key).await.expect("a read");
                let got = got.map(|g| (g.row.version, String::from_utf8(g.row.payload).unwrap()));
                let done = got.as_ref().map(|(v, p)| (*v, p.as_str())) == want;
                if done || began.elapsed() >= delta * 4 {
                    return (got, began.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    for id in 1..=3 {
        let w = cache.write(&k(id), b"app").await.unwrap();
        assert_eq!(w.version, 1);
        assert!(w.siblings.is_empty(), "{:?}", w.siblings);
        assert_eq!(served(k(id), Some((1, "app"))).await.0.unwrap().0, 1);
        // Cached before anyone else writes (the invalidator may apply the write's own outbox
        // row after the first fill, so wait for L1 rather than assume it).
        let began = tokio::time::Instant::now();
        while cache.get(&k(id)).await.unwrap().unwrap().source != Source::L1 {
            assert!(began.elapsed() < delta * 8, "{id} never served from L1");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // Another client, plain SQL that does not bump the version: the table's trigger does.
    let mut other = sqlx::PgConnection::connect(&cluster.pg_url())
        .await
        .unwrap();
    sqlx::query("UPDATE aside_rows SET payload = 'psql' WHERE key = $1")
        .bind(k(1).to_string())
        .execute(&mut other)
        .await
        .unwrap();
    let (got, took) = served(k(1), Some((2, "psql"))).await;
    assert_eq!(got, Some((2, "psql".into())), "after {took:?}");
    assert!(took <= delta, "served stale for {took:?}, past Δ {delta:?}");

    // A multi-row transaction, and a rolled-back one that leaves no outbox row.
    let mut tx = other.begin().await.unwrap();
    sqlx::query("UPDATE aside_rows SET payload = 'tx', version = version + 1 WHERE key = ANY($1)")
        .bind(vec![k(2).to_string(), k(3).to_string()])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for id in [2, 3] {
        let (got, took) = served(k(id), Some((2, "tx"))).await;
        assert_eq!(got, Some((2, "tx".into())), "{id} after {took:?}");
        assert!(took <= delta, "{id}: served stale for {took:?}");
    }
    let outbox = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM aside_outbox")
            .fetch_one(pg.primary())
            .await
            .unwrap()
    };
    let before = outbox().await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query("UPDATE aside_rows SET payload = 'nobody' WHERE key = $1")
        .bind(k(2).to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(outbox().await, before, "a rollback leaves no outbox row");

    // An INSERT without a version gets 1; a DELETE reads absent.
    sqlx::query("INSERT INTO aside_rows (key, payload) VALUES ($1, 'new')")
        .bind(k(4).to_string())
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(
        served(k(4), Some((1, "new"))).await.0,
        Some((1, "new".into()))
    );
    sqlx::query("DELETE FROM aside_rows WHERE key = $1")
        .bind(k(3).to_string())
        .execute(&mut other)
        .await
        .unwrap();
    let (got, took) = served(k(3), None).await;
    assert_eq!(got, None, "a deleted row is not served after {took:?}");

    // A trigger of the user's: a post's write also bumps its listing, in the same transaction;
    // the write names the listing with its new version, and the invalidator applies both.
    sqlx::raw_sql(
        "INSERT INTO aside_rows (key, version, payload) VALUES ('listings:v1:r/a:hot', 1, 'l');
         CREATE FUNCTION bump_listing() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.key LIKE 'posts:%' THEN
                 UPDATE aside_rows SET payload = 'l' WHERE key = 'listings:v1:r/a:hot';
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER bump_listing AFTER UPDATE ON aside_rows
             FOR EACH ROW EXECUTE FUNCTION bump_listing();",
    )
    .execute(pg.primary())
    .await
    .unwrap();
    let w = cache.write(&k(1), b"again").await.unwrap();
    assert_eq!(w.version, 3);
    assert_eq!(w.siblings, vec![("listings:v1:r/a:hot".to_string(), 2)]);
}
