//! The shared paths with in-memory tiers: what the container tests cannot make happen on
//! demand (a slow database, a value past its freshness, a tier that always fails).

use std::sync::Mutex;

use super::harness::*;
use super::*;
use crate::tier::mem::MemRedis;

#[derive(Default)]
struct Sink(Mutex<Vec<String>>);

impl Events for Sink {
    fn on(&self, e: &CacheEvent<'_>) {
        self.0.lock().unwrap().push(format!(
            "{} {} {} {:?} {} on {}",
            e.instance,
            e.action.as_str(),
            e.tier.as_str(),
            e.version,
            e.outcome.as_str(),
            e.server.unwrap_or("-")
        ));
    }
}

#[tokio::test]
async fn events_report_each_load_fill_invalidation_and_lease_in_order() {
    let sink = Arc::new(Sink::default());
    let c = cache(CacheConfig::default(), 0).with_events(sink.clone());
    let k = key("ev");
    c.get(&k).await.unwrap();
    c.write(&k, b"x").await.unwrap();
    // A fill older than the tombstone the write left is refused, and says so.
    c.fill_l1(
        &k,
        Some(&Row {
            version: 0,
            payload: b"v0".to_vec(),
        }),
        None,
    )
    .await;
    assert_eq!(
        *sink.0.lock().unwrap(),
        // The in-memory L1 knows no address; L2's node is named as the ring names it.
        vec![
            "test lease-won l1 None ok on -",
            "test load db Some(0) ok on -",
            "test fill l1 Some(0) ok on -",
            "test fill l2 Some(0) ok on l2:1",
            "test invalidate l1 Some(1) ok on -",
            "test invalidate l2 Some(1) ok on l2:1",
            "test fill l1 Some(0) refused on -",
        ]
    );
}

#[tokio::test]
async fn lease_tokens_are_unique_per_holder_even_when_instances_share_a_name() {
    // Two instances named alike ("test"), as six clients of one app node once were.
    let (a, b) = (
        cache(CacheConfig::default(), 0),
        cache(CacheConfig::default(), 0),
    );
    let k = key("lease");
    let (ta, tb) = (a.lease(&k).await.unwrap(), b.lease(&k).await.unwrap());
    assert_ne!(ta, tb, "same name: the tokens must still differ");
    // a's lease in the Redis both share: b's release must leave it alone.
    let lease = format!("aside:lease:{k}");
    b.l1()
        .set(&lease, ta.as_bytes(), 10_000, SetCond::Always)
        .await
        .unwrap();
    b.release(&k, &tb).await;
    assert_eq!(b.l1().get(&lease).await.unwrap(), Some(ta.into_bytes()));
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_while_the_lease_holder_refreshes() {
    let cfg = CacheConfig {
        l1_ttl_ms: 30,
        ttl_jitter: 0.0,
        stale_while_revalidate_ms: 5_000,
        ..CacheConfig::default()
    };
    let c = cache(cfg, 0);
    let k = key("swr");
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
    assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
    tokio::time::sleep(Duration::from_millis(40)).await;
    // Someone else holds the lease: we are served the stale value.
    let lease = format!("aside:lease:{k}");
    c.l1()
        .set(&lease, b"other", 10_000, SetCond::Always)
        .await
        .unwrap();
    let g = c.get(&k).await.unwrap().unwrap();
    assert_eq!((g.source, g.stale), (Source::L1, true));
    assert_eq!(c.metrics().stale_served.load(Relaxed), 1);
    // The lease is free: this reader refreshes from the database.
    c.l1().del(&[lease]).await.unwrap();
    let g = c.get(&k).await.unwrap().unwrap();
    assert_eq!((g.source, g.stale), (Source::Db, false));
    assert_eq!(
        c.get(&k).await.unwrap().unwrap().source,
        Source::L1,
        "and filled a fresh value"
    );
}

#[tokio::test]
async fn a_lease_loser_waits_for_the_winners_fill_instead_of_reading_the_database() {
    let cfg = CacheConfig::default();
    let c = cache(cfg, 30);
    let k = key("contended");
    c.l1()
        .set(
            &format!("aside:lease:{k}"),
            b"other-process",
            10_000,
            SetCond::Always,
        )
        .await
        .unwrap();
    let winner_fill = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let e = envelope::encode(
            k.as_str(),
            &Entry::Value {
                version: 0,
                fresh_until_ms: 0,
                payload: b"v0".to_vec(),
            },
        );
        c.l1()
            .set(k.as_str(), &e, 60_000, SetCond::Always)
            .await
            .unwrap();
    };
    let (got, ()) = tokio::join!(c.get(&k), winner_fill);
    let g = got.unwrap().unwrap();
    assert_eq!((g.source, g.waited), (Source::L1, true));
    assert_eq!(
        c.store().reads.load(Relaxed),
        0,
        "no database read of its own"
    );
    assert_eq!(c.metrics().lease_waits.load(Relaxed), 1);
}

#[tokio::test]
async fn a_dead_l1_is_skipped_after_the_breaker_opens_and_reads_still_succeed() {
    let cfg = CacheConfig {
        breaker_failures_max: 3,
        breaker_cooldown_ms: 60_000,
        ..CacheConfig::default()
    };
    let c = cache(cfg, 0);
    c.l1().set_down(true);
    for i in 0..10 {
        assert_eq!(
            c.get(&key(&format!("k{i}"))).await.unwrap().unwrap().source,
            Source::Db
        );
    }
    assert_eq!(
        c.metrics().l1.errors.load(Relaxed),
        3,
        "three failures open the circuit"
    );
    assert!(
        c.metrics().l1.skipped.load(Relaxed) >= 10,
        "then every call skips L1"
    );
}

/// A write whose reply is lost after it committed (the connection reset by a server that
/// restarted, as `pg-restart` does) has an unknown outcome: the cache invalidates at the
/// primary's version, as for a timeout. One the server refused changed nothing, and the cache
/// keeps serving.
#[tokio::test]
async fn a_write_that_may_have_committed_invalidates_and_a_refused_one_does_not() {
    let c = cache(CacheConfig::default(), 0);
    let k = key("lost-reply");
    async fn cached(c: &Mem, k: &Key) -> Got {
        c.get(k).await.unwrap().unwrap()
    }
    cached(&c, &k).await;
    assert_eq!(cached(&c, &k).await.source, Source::L1);

    *c.store().write_error.lock().unwrap() = Some((
        false,
        TierError::Refused {
            tier: "postgres",
            detail: "violates a constraint".into(),
        },
    ));
    assert!(c.write(&k, b"").await.is_err());
    let g = cached(&c, &k).await;
    assert_eq!(
        (g.source, g.row.version),
        (Source::L1, 0),
        "nothing committed"
    );

    *c.store().write_error.lock().unwrap() = Some((
        true,
        TierError::Unavailable {
            tier: "postgres",
            detail: "connection reset by peer".into(),
        },
    ));
    assert!(c.write(&k, b"").await.is_err());
    let g = cached(&c, &k).await;
    assert_eq!(
        (g.source, g.row.version),
        (Source::Db, 1),
        "the commit whose reply was lost is served, not the old value"
    );
}

#[tokio::test]
async fn a_write_leaves_a_tombstone_that_refuses_the_older_fill() {
    let c = cache(CacheConfig::default(), 0);
    let k = key("race");
    let w = c.write(&k, b"").await.unwrap();
    assert_eq!((w.version, w.invalidated), (1, true));
    let old = envelope::encode(
        k.as_str(),
        &Entry::Value {
            version: 0,
            fresh_until_ms: 0,
            payload: b"v0".to_vec(),
        },
    );
    assert!(!c
        .l1()
        .fill_if_newer(k.as_str(), &old, 0, 60_000)
        .await
        .unwrap());
    assert_eq!(c.get(&k).await.unwrap().unwrap().row.version, 1);
}

#[tokio::test]
async fn a_custom_loader_takes_the_stores_place_on_a_miss() {
    let c = cache(CacheConfig::default(), 0);
    let k = key("custom");
    let calls = AtomicU64::new(0);
    let loader = || async {
        calls.fetch_add(1, Relaxed);
        Ok(Some(Row {
            version: 7,
            payload: b"from my query".to_vec(),
        }))
    };
    let g = c.get_with(&k, loader).await.unwrap().unwrap();
    assert_eq!((g.row.version, g.source), (7, Source::Db));
    let g = c.get_with(&k, loader).await.unwrap().unwrap();
    assert_eq!(
        (g.row.payload.as_slice(), g.source),
        (&b"from my query"[..], Source::L1)
    );
    assert_eq!((calls.load(Relaxed), c.store().reads.load(Relaxed)), (1, 0));
}

/// A write whose L1 tombstone fails leaves the old value in L1. `versioned` serves it once L1
/// answers again; `durable` fences L1 until its invalidator has applied the outbox row, then
/// reads from L1 again.
#[tokio::test]
async fn durable_fences_a_tier_it_could_not_invalidate_until_the_invalidator_repairs_it() {
    for strategy in [crate::Builtin::Versioned, crate::Builtin::Durable] {
        let cfg = CacheConfig {
            lease_ms: 0,
            breaker_failures_max: 100,
            ..CacheConfig::default()
        };
        let c = Arc::new(cache_with(cfg, 0, strategy));
        let task = c.invalidator();
        assert_eq!(task.is_some(), strategy == crate::Builtin::Durable);
        if task.is_some() {
            c.invalidator_pass().await;
        }
        let k = key("a");
        assert_eq!(c.get(&k).await.unwrap().unwrap().row.version, 0);
        assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
        c.l1().set_down(true);
        let w = c.write(&k, b"new").await.unwrap();
        assert!(!w.invalidated, "L1 was down");
        c.l1().set_down(false);
        let got = c.get(&k).await.unwrap().unwrap();
        if strategy == crate::Builtin::Versioned {
            assert_eq!(
                (got.row.version, got.source),
                (0, Source::L1),
                "the old value, from L1"
            );
            continue;
        }
        assert_eq!(c.fenced_tiers(), vec!["l1".to_string()]);
        assert_eq!(
            (got.row.version, got.source),
            (1, Source::Db),
            "L1 is fenced"
        );
        assert_eq!(c.metrics().l1.fenced.load(Relaxed), 1);
        c.invalidator_pass().await;
        assert!(
            c.fenced_tiers().is_empty(),
            "the row is applied: the fence lifts"
        );
        assert_eq!(c.outbox_pending(), 0);
        let got = c.get(&k).await.unwrap().unwrap();
        assert_eq!(got.row.version, 1);
        assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
    }
}

/// An instance whose invalidator has not read the whole outbox lately (cut off from the
/// database, or paused) may have missed another instance's write: a read then loads for itself
/// instead of joining this process's load begun before that write. `versioned` joins and is
/// served the old row (found at seed 155 of `random`: a paused app node, 709 ms stale).
#[tokio::test]
async fn an_instance_whose_invalidator_is_behind_joins_no_older_load() {
    for strategy in [crate::Builtin::Versioned, crate::Builtin::Durable] {
        let cfg = CacheConfig {
            lease_ms: 0,
            ..CacheConfig::default()
        };
        let c = Arc::new(cache_with(cfg, 0, strategy));
        // Started, never run: it has not read the outbox, as after a pause.
        drop(c.invalidator());
        let db = AtomicU64::new(0);
        let loader = || {
            let v = db.load(Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(Some(Row {
                    version: v,
                    payload: format!("v{v}").into_bytes(),
                }))
            }
        };
        let k = key("behind");
        let first = c.get_with(&k, &loader);
        let second = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            // Another instance commits version 1; its outbox row is not read here.
            db.store(1, Relaxed);
            c.get_with(&k, &loader).await
        };
        let (first, second) = tokio::join!(first, second);
        let (first, second) = (first.unwrap().unwrap(), second.unwrap().unwrap());
        assert_eq!(first.row.version, 0);
        let want = if strategy == crate::Builtin::Durable {
            (1, false)
        } else {
            (0, true)
        };
        assert_eq!(
            (second.row.version, second.waited),
            want,
            "{}",
            strategy.name()
        );
    }
}

/// Negative caching closes the cache-penetration hole: reads of a key the database has no row
/// for are answered from the cache for `negative_ttl_ms`, the write that creates the row
/// invalidates the "absent" entry, and an "absent" fill from a load begun before that write is
/// refused by its tombstone. With `negative_ttl_ms: 0` every read reaches the database.
#[tokio::test]
async fn an_absent_row_is_cached_briefly_and_the_write_that_creates_it_invalidates_it() {
    for negative_ttl_ms in [5_000, 0] {
        let cfg = CacheConfig {
            lease_ms: 0,
            negative_ttl_ms,
            ..CacheConfig::default()
        };
        let c = cache(cfg, 0);
        let calls = AtomicU64::new(0);
        let db: Mutex<Option<Row>> = Mutex::new(None);
        let loader = || {
            calls.fetch_add(1, Relaxed);
            let row = db.lock().unwrap().clone();
            async move { Ok(row) }
        };
        let k = key("missing");
        for _ in 0..100 {
            assert!(c.get_with(&k, &loader).await.unwrap().is_none());
        }
        if negative_ttl_ms == 0 {
            assert_eq!(calls.load(Relaxed), 100, "no negative caching: every read");
            continue;
        }
        assert_eq!(
            calls.load(Relaxed),
            1,
            "100 reads of a missing key, one database read"
        );
        assert_eq!(c.metrics().l1.hits.load(Relaxed), 99);
        assert_eq!(c.metrics().db.misses.load(Relaxed), 1);
        // The write that creates the row (version 1) leaves its tombstone...
        let w = c.write(&k, b"created").await.unwrap();
        assert_eq!((w.version, w.invalidated), (1, true));
        *db.lock().unwrap() = Some(Row {
            version: 1,
            payload: b"created".to_vec(),
        });
        // ...which refuses the "absent" of a load that read before the write.
        c.fill_l1(&k, None, None).await;
        let got = c
            .get_with(&k, &loader)
            .await
            .unwrap()
            .expect("the row exists now");
        assert_eq!((got.row.version, got.source), (1, Source::Db));
        assert_eq!(calls.load(Relaxed), 2);
        // And "absent" entries expire after negative_ttl_ms.
        let gone = key("gone");
        *db.lock().unwrap() = None;
        assert!(c.get_with(&gone, &loader).await.unwrap().is_none());
        assert!(c.get_with(&gone, &loader).await.unwrap().is_none());
        assert_eq!(calls.load(Relaxed), 3);
        c.l1().advance(negative_ttl_ms + 1);
        assert!(c.get_with(&gone, &loader).await.unwrap().is_none());
        assert_eq!(calls.load(Relaxed), 4, "expired: read again");
    }
}

#[tokio::test]
async fn the_replay_window_has_a_lower_bound() {
    let cfg = CacheConfig {
        replay_window_ms: 1_000,
        ..CacheConfig::default()
    };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(
        e.contains("cache.replay_window_ms 1000 is under 4025"),
        "{e}"
    );
}

/// What a read and a write hold while they wait (every box and join of one copies it): each
/// tier call holds its command's future once (`call.rs`). Written as four `async fn` layers that
/// each held it again, these were 5,064 and 7,568 bytes.
#[test]
fn a_read_and_a_write_hold_their_tier_calls_once() {
    let c = cache(CacheConfig::default(), 0);
    let k = key("x");
    let (get, write) = (
        std::mem::size_of_val(&c.get(&k)),
        std::mem::size_of_val(&c.write(&k, b"")),
    );
    println!("future sizes: get {get} bytes, write {write} bytes");
    assert!(get <= 4096 && write <= 4096, "get {get}, write {write}");
}

/// `durable`'s invalidators prune the outbox: rows marked done and older than
/// `outbox_keep_ms` are deleted every `outbox_prune_every_ms`; rows not applied yet stay, and
/// with `outbox_keep_ms = 0` nothing is pruned.
#[tokio::test]
async fn the_invalidator_prunes_applied_outbox_rows_past_their_keep() {
    use crate::tier::mem::{MemMemcached, MemStore};
    for keep_ms in [0, 20] {
        let cfg = CacheConfig {
            strategy: "durable".into(),
            redis_max_lag_ms: 1,
            failover_ms: 1,
            outbox_poll_ms: 2,
            replay_window_ms: 10,
            outbox_keep_ms: keep_ms,
            outbox_prune_every_ms: 5,
            ..CacheConfig::default()
        }
        .validate()
        .unwrap();
        let pool = Pool::new(
            Ring::new(&["l2:1"]).unwrap(),
            vec![MemMemcached::default()],
            &cfg,
        );
        let c = Arc::new(CacheAside::new(
            MemRedis::default(),
            pool,
            MemStore::default(),
            crate::Builtin::Durable,
            cfg,
            "test",
        ));
        let task = c.invalidator().unwrap();
        // Its first pass starts at the outbox's head: the writes below come after it.
        c.invalidator_pass().await;
        let task = tokio::spawn(task);
        for id in ["a", "b", "c"] {
            c.write(&key(id), b"v").await.unwrap();
        }
        let mut left = usize::MAX;
        for _ in 0..200 {
            left = c.store().outbox_len();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if keep_ms == 0 {
            assert_eq!(left, 3, "0 keeps every row");
            assert_eq!(c.store().outbox_done_ids().len(), 3, "all applied");
        } else {
            assert_eq!(
                left, 0,
                "every applied row is pruned once past {keep_ms} ms"
            );
        }
        // A row nobody applied is never pruned, however old.
        task.abort();
        c.store().write("t:v1:unapplied", b"v").await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let applied_left = if keep_ms == 0 { 3 } else { 0 };
        assert_eq!(c.store().outbox_prune(1).await.unwrap(), applied_left);
        assert_eq!(c.store().outbox_len(), 1, "the unapplied row stays");
    }
}

/// A reader that lost the lease waits for the winner's fill; when the winner found no row and
/// cached "absent", the waiter is answered "no row" from L1 without reading the database
/// (without this, every waiter of a missing key read the database at its deadline).
#[tokio::test]
async fn a_lease_waiter_is_answered_by_the_winners_absent_entry() {
    let cfg = CacheConfig {
        lease_wait_ms: 2_000,
        ..CacheConfig::default()
    };
    let c = Arc::new(cache(cfg, 0));
    let k = key("nobody");
    let lease = format!("aside:lease:{k}");
    c.l1()
        .set(&lease, b"someone-else", 10_000, SetCond::Always)
        .await
        .unwrap();
    let reader = {
        let c = Arc::clone(&c);
        let k = k.clone();
        tokio::spawn(async move { c.get(&k).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let absent =
        crate::envelope::encode(k.as_str(), &crate::envelope::Entry::Absent { version: 0 });
    c.l1()
        .set(k.as_str(), &absent, 5_000, SetCond::Always)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = reader.await.unwrap().unwrap();
    assert!(got.is_none(), "the winner's absent entry answers: {got:?}");
    assert_eq!(c.store().reads.load(Relaxed), 0, "no database read");
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "not at the deadline"
    );
    assert_eq!(c.metrics().lease_waits.load(Relaxed), 1);
}

#[tokio::test]
async fn a_hot_key_is_served_from_l0_and_a_local_write_drops_it_at_once() {
    let cfg = CacheConfig {
        l0_ttl_ms: 60_000,
        hot_reads_per_sec_min: 2,
        ..CacheConfig::default()
    };
    let c = cache(cfg, 0);
    let (k, cold) = (key("hot"), key("cold"));
    let source = |g: Option<Got>| {
        let g = g.unwrap();
        (g.source, g.row.version)
    };
    assert_eq!(source(c.get(&k).await.unwrap()), (Source::Db, 0));
    // The second read makes the key hot: what L1 gave it goes into L0.
    assert_eq!(source(c.get(&k).await.unwrap()), (Source::L1, 0));
    assert_eq!(source(c.get(&k).await.unwrap()), (Source::L0, 0));
    assert_eq!(source(c.get(&cold).await.unwrap()), (Source::Db, 0));
    assert_eq!(source(c.get(&cold).await.unwrap()), (Source::L1, 0));
    assert_eq!(c.metrics().l0_hits.load(Relaxed), 1);
    // A write through this instance: the next read goes to the tiers and sees it.
    c.write(&k, b"new").await.unwrap();
    assert_eq!(source(c.get(&k).await.unwrap()), (Source::Db, 1));
    assert_eq!(source(c.get(&k).await.unwrap()), (Source::L0, 1));
    // Off by default: the same reads never touch L0.
    let off = cache(CacheConfig::default(), 0);
    for _ in 0..5 {
        assert_ne!(off.get(&k).await.unwrap().unwrap().source, Source::L0);
    }
}
