//! The invalidator's cursor over outbox ids that commit late or never.

use super::*;
use crate::cache::harness::*;

const W_MS: u64 = 300;

fn cursor(c: &Mem) -> u64 {
    c.repair.lock().cursor
}

/// Ids missing when the cursor stops at a gap are given up together once the gap is W old: one
/// by one, each waiting W in turn, the cursor would fall behind for good as soon as more than
/// one transaction per W rolls back (the foreign writer rolls one in eight back).
#[tokio::test]
async fn ids_missing_together_are_given_up_together_once_w_old() {
    let cfg = CacheConfig {
        redis_max_lag_ms: 1,
        failover_ms: 1,
        outbox_poll_ms: 2,
        replay_window_ms: W_MS,
        outbox_keep_ms: 0,
        ..CacheConfig::default()
    };
    let c = Arc::new(cache_with(cfg, 0, crate::Builtin::Durable));
    for id in ["a", "b", "c", "d", "e"] {
        c.store.write(key(id).as_str(), b"x").await.unwrap();
    }
    // Ids 2 and 4 never commit.
    c.store.uncommitted.lock().unwrap().extend([2, 4]);
    assert!(c.invalidator().is_some());
    // The gap is found during the first pass: between these two instants.
    let before = Instant::now();
    c.invalidator_pass().await;
    let after = Instant::now();
    assert_eq!(cursor(&c), 1, "it waits at 2");
    c.invalidator_pass().await;
    if before.elapsed() < Duration::from_millis(W_MS) {
        assert_eq!(cursor(&c), 1, "2 and 4 have been missing less than W");
    }
    tokio::time::sleep_until(after + Duration::from_millis(W_MS)).await;
    c.invalidator_pass().await;
    assert_eq!(cursor(&c), 5, "2 and 4 are given up in the same pass");
    // A late commit into a gap the cursor waits on is read, and the cursor moves past it.
    c.store.write(key("f").as_str(), b"x").await.unwrap();
    c.store.write(key("g").as_str(), b"x").await.unwrap();
    c.store.uncommitted.lock().unwrap().insert(6);
    c.invalidator_pass().await;
    assert_eq!(cursor(&c), 5, "it waits at 6");
    c.store.uncommitted.lock().unwrap().clear();
    c.invalidator_pass().await;
    assert_eq!(cursor(&c), 7);
}

/// A process frozen (or whose passes cannot finish) past Δ after its last whole pass began skips
/// every tier until a whole pass runs again (random seed 92 of its time: a node woken from a
/// 1.4 s pause read L1's old row before its invalidator ran).
#[tokio::test(start_paused = true)]
async fn every_tier_is_skipped_from_delta_after_the_last_whole_pass_until_the_next() {
    let cfg = CacheConfig::default();
    let delta = Duration::from_millis(cfg.outbox_staleness_bound_ms());
    let c = Arc::new(cache_with(cfg, 0, crate::Builtin::Durable));
    assert!(c.invalidator().is_some());
    assert!(c.l1_fenced(0) && c.l2_fenced(0), "no whole pass yet");
    let not_yet = tokio::time::timeout(Duration::from_millis(50), c.ready()).await;
    assert!(not_yet.is_err(), "not ready before a whole pass");
    let pass_start = Instant::now();
    c.invalidator_pass().await;
    let ready = tokio::time::timeout(Duration::from_millis(2), c.ready()).await;
    assert!(ready.is_ok(), "ready after it");
    assert!(!c.l1_fenced(0) && !c.l2_fenced(0));
    // Frozen: time passes and nothing runs.
    tokio::time::sleep_until(pass_start + delta - Duration::from_millis(1)).await;
    assert!(!c.l1_fenced(0) && !c.l2_fenced(0), "within Δ");
    tokio::time::sleep_until(pass_start + delta).await;
    assert!(
        c.l1_fenced(0) && c.l2_fenced(0),
        "Δ after: every tier skipped"
    );
    assert_eq!(c.fenced_tiers(), ["l1", "l2-0"]);
    c.invalidator_pass().await;
    assert!(
        !c.l1_fenced(0) && !c.l2_fenced(0),
        "a whole pass renews the lease"
    );
}

/// Rows applied whose marking as done failed are marked with the next pass's: pruning deletes
/// only rows marked done, and the end-of-run probe counts the others as a backlog never drained.
#[tokio::test]
async fn rows_whose_marking_failed_are_marked_by_the_next_pass() {
    let c = Arc::new(cache_with(
        CacheConfig::default(),
        0,
        crate::Builtin::Durable,
    ));
    assert!(c.invalidator().is_some());
    c.invalidator_pass().await;
    for id in ["a", "b"] {
        c.store.write(key(id).as_str(), b"x").await.unwrap();
    }
    c.store.done_down.store(true, Relaxed);
    c.invalidator_pass().await;
    assert!(c.store.done.lock().unwrap().is_empty());
    assert_eq!(c.outbox_pending(), 0, "applied to both tiers");
    c.store.done_down.store(false, Relaxed);
    c.invalidator_pass().await;
    let mut done = c.store.done.lock().unwrap().clone();
    done.sort();
    assert_eq!(done, [1, 2]);
}
