//! Pattern invalidation with in-memory tiers: a group's generation reaches what SCAN cannot.

use super::*;
use crate::tier::mem::{MemMemcached, MemRedis, MemStore};
use crate::Builtin;

type Mem = CacheAside<MemRedis, MemMemcached, MemStore, Builtin>;

fn cache(strategy: Builtin) -> Mem {
    let cfg = CacheConfig {
        grouped_namespaces: vec!["listings".into()],
        ..CacheConfig::default()
    }
    .validate()
    .unwrap();
    let pool = Pool::new(
        Ring::new(&["mc-1", "mc-2"]).unwrap(),
        vec![MemMemcached::default(), MemMemcached::default()],
        &cfg,
    );
    CacheAside::new(
        MemRedis::default(),
        pool,
        MemStore::default(),
        strategy,
        cfg,
        "test",
    )
}

fn listing(id: &str) -> Key {
    Key::new("listings", 1, id).unwrap()
}

/// The scan-gap finding, in one process: `r/rust:new` is held only in memcached when its row
/// changes in a transaction that invalidated only `r/rust:hot`. Returns the version the next
/// read of `r/rust:new` serves, and what the pattern invalidation reported.
async fn sibling_held_only_in_memcached(strategy: Builtin) -> (u64, Source, Invalidated) {
    let c = cache(strategy);
    let (hot, new) = (listing("r/rust:hot"), listing("r/rust:new"));
    for k in [&hot, &new] {
        c.write(k, b"first").await.unwrap();
        c.get(k).await.unwrap();
    }
    assert_eq!(c.get(&new).await.unwrap().unwrap().source, Source::L1);
    // L1 loses `new` (evicted), memcached keeps it; then the transaction changes `new` too.
    let stored = c.resolve(&new).await.unwrap().stored().into_owned();
    assert_eq!(c.l1().del(&[stored]).await.unwrap(), 1);
    assert_eq!(
        c.store()
            .write(new.as_str(), b"second")
            .await
            .unwrap()
            .version,
        2
    );
    c.write(&hot, b"second").await.unwrap();
    let done = c.invalidate_prefix("listings", 1, "r/rust:").await.unwrap();
    let got = c.get(&new).await.unwrap().unwrap();
    (got.row.version, got.source, done)
}

#[tokio::test]
async fn a_generation_bump_reaches_a_key_held_only_in_memcached() {
    let (version, source, done) = sibling_held_only_in_memcached(Builtin::Versioned).await;
    assert_eq!(
        done,
        Invalidated::Generation {
            generation: 1,
            confirmed: true
        }
    );
    assert_eq!((version, source), (2, Source::Db));
}

#[tokio::test]
async fn scan_misses_it_as_before_for_a_strategy_without_generations() {
    let (version, source, done) = sibling_held_only_in_memcached(Builtin::Naive).await;
    assert!(
        matches!(done, Invalidated::Scanned { values: 0, .. }),
        "{done:?}"
    );
    assert_eq!(
        (version, source),
        (1, Source::L2),
        "naive keeps the finding"
    );
}

#[tokio::test]
async fn every_key_of_the_group_moves_and_nothing_outside_it() {
    let c = cache(Builtin::Versioned);
    let keys = [
        listing("r/rust:hot"),
        listing("r/rust:top"),
        listing("r/go:hot"),
        Key::new("posts", 1, "r/rust:hot").unwrap(),
    ];
    for k in &keys {
        c.get(k).await.unwrap();
        assert_eq!(c.get(k).await.unwrap(), None, "absent, cached");
    }
    let reads = || async {
        let mut v = Vec::new();
        for k in &keys {
            c.store().write(k.as_str(), b"x").await.unwrap();
            v.push(c.get(k).await.unwrap().map(|g| g.source));
        }
        v
    };
    // The rows now exist, but every tier still says "absent" until invalidated.
    assert_eq!(reads().await, vec![None; 4]);
    c.invalidate_prefix("listings", 1, "r/rust:").await.unwrap();
    assert_eq!(
        reads().await,
        vec![Some(Source::Db), Some(Source::Db), None, None],
        "r/rust: moved to generation 1; r/go: and the posts namespace did not"
    );
    // A second bump: generation 2, and a reader of generation 1's entries is never served them.
    assert!(matches!(
        c.invalidate_prefix("listings", 1, "r/rust:").await.unwrap(),
        Invalidated::Generation { generation: 2, .. }
    ));
    assert_eq!(
        &*c.resolve(&keys[0]).await.unwrap().stored(),
        "listings:v1:r/rust:hot#g2"
    );
}

#[tokio::test]
async fn a_fill_of_the_old_generation_racing_the_bump_is_refused() {
    let c = cache(Builtin::Versioned);
    let k = listing("r/rust:hot");
    let gen_key = k.generation_key().unwrap();
    // A reader learned generation 0 from the database (no row yet) and fills it after the bump.
    let old = c.entry(&gen_key, None, 60_000).0;
    c.invalidate_prefix("listings", 1, "r/rust:").await.unwrap();
    let filled = c
        .strategy
        .fill_l1(c.l1(), gen_key.as_str(), &old, 0, 60_000)
        .await
        .unwrap();
    assert!(!filled, "the bump's new generation refuses the older one");
    assert_eq!(c.generation(&gen_key).await.unwrap(), 1);
}

#[tokio::test]
async fn a_prefix_that_is_not_a_whole_group_is_refused_in_words() {
    let c = cache(Builtin::Durable);
    for bad in ["r/ru", "r/rust:h", ""] {
        let e = c.invalidate_prefix("listings", 1, bad).await.unwrap_err();
        assert!(
            e.to_string().contains("takes a whole group") && e.to_string().contains("r/rust:"),
            "{e}"
        );
    }
    // Outside the grouped namespaces, any prefix: SCAN.
    assert!(matches!(
        c.invalidate_prefix("posts", 1, "r/ru").await.unwrap(),
        Invalidated::Scanned { .. }
    ));
    let e = CacheConfig {
        grouped_namespaces: vec!["Listings".into()],
        ..CacheConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("cache.grouped_namespaces"), "{e}");
}

#[tokio::test]
async fn a_grouped_key_once_filled_is_an_l1_hit() {
    for strategy in [Builtin::Versioned, Builtin::Durable] {
        let c = cache(strategy);
        let k = listing("r/rust:hot");
        c.write(&k, b"x").await.unwrap();
        assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::Db);
        assert_eq!(
            c.get(&k).await.unwrap().unwrap().source,
            Source::L1,
            "{strategy:?}"
        );
    }
}
