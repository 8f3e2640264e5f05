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

/// A heartbeat later than the gap (the process was frozen) fences every tier from then; until
/// the heartbeat runs again, a read finds it late and skips every tier. Then a pass that began
/// after the freeze lifts the fences (random seed 92 of its time: a node woken from a 1.4 s pause
/// read L1's old row before its invalidator ran).
#[tokio::test(start_paused = true)]
async fn a_freeze_fences_every_tier_until_a_pass_after_it() {
    let c = Arc::new(cache_with(
        CacheConfig::default(),
        0,
        crate::Builtin::Durable,
    ));
    assert!(c.invalidator().is_some());
    c.invalidator_pass().await;
    let gap = c.freeze_gap();
    assert!(!c.repair.beat(gap), "the first beat");
    tokio::time::advance(gap / 2).await;
    assert!(!c.repair.beat(gap), "on time");
    assert!(!c.l1_fenced(0) && !c.l2_fenced(0));
    // Frozen: time passes and nothing runs.
    tokio::time::advance(gap * 2).await;
    assert!(c.l1_fenced(0) && c.l2_fenced(0), "late: every tier skipped");
    assert!(c.repair.beat(gap), "the beat after the freeze fences");
    assert!(c.l1_fenced(0) && c.l2_fenced(0), "fenced until a pass");
    tokio::time::advance(Duration::from_millis(1)).await;
    c.invalidator_pass().await;
    assert!(
        !c.l1_fenced(0) && !c.l2_fenced(0),
        "a pass after the freeze lifts them"
    );
}
