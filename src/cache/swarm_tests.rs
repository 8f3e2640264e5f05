//! What the `swarm` scenario found in `durable` (docs/findings.md, "What the swarm found"), each
//! held here with its twin: the mutant that puts the bug back fails the same assertion.

use super::harness::*;
use super::*;

/// The replica's row of a key no write has reached it yet.
fn replica_v0() -> Row {
    Row {
        version: 0,
        payload: b"v0".to_vec(),
    }
}

/// A write invalidates every key its transaction changed, each at its version: the writer then
/// reads its own write of a sibling (swarm seed 4: a listing's sibling read old after its
/// transaction).
#[tokio::test]
async fn a_write_invalidates_the_siblings_its_transaction_changed() {
    for mutant in [None, Some(Mutant::NoSiblingInvalidation)] {
        let cfg = CacheConfig {
            lease_ms: 0,
            mutant,
            ..CacheConfig::default()
        };
        let c = cache(cfg, 0);
        let (k, sibling) = (key("new"), key("hot"));
        *c.store.siblings.lock().unwrap() = vec![sibling.as_str().to_string()];
        assert_eq!(c.get(&sibling).await.unwrap().unwrap().row.version, 0);
        assert_eq!(c.get(&sibling).await.unwrap().unwrap().source, Source::L1);
        let w = c.write(&k, b"x").await.unwrap();
        assert_eq!(w.siblings, vec![(sibling.as_str().to_string(), 1)]);
        let got = c.get(&sibling).await.unwrap().unwrap();
        let want = if mutant.is_none() {
            (1, Source::Db)
        } else {
            (0, Source::L1)
        };
        assert_eq!((got.row.version, got.source), want, "{mutant:?}");
    }
}

/// Rows committed before an instance's invalidator first reads the outbox lie at or below the
/// head it starts from, so its passes never read them: the start-up replay applies them to both
/// tiers and teaches the replica guard their versions (swarm seed 27: a foreign write no
/// instance applied, stale for 2.7 s).
#[tokio::test]
async fn the_start_up_replay_teaches_the_replica_guard_what_committed_before_it() {
    for mutant in [None, Some(Mutant::StartReplayL1Only)] {
        let cfg = CacheConfig {
            mutant,
            ..CacheConfig::default()
        };
        let c = Arc::new(cache_with(cfg, 0, crate::Builtin::Durable));
        // Another instance's write, committed before this instance starts.
        c.store.write(key("early").as_str(), b"x").await.unwrap();
        let task = c.invalidator();
        assert!(task.is_some());
        c.invalidator_pass().await;
        assert_eq!(
            c.replica_behind(key("early").as_str(), Some(&replica_v0())),
            mutant.is_none(),
            "{mutant:?}"
        );
        assert!(!c.outbox_behind(), "the pass read the whole outbox");
    }
}

/// A transaction in flight when an invalidator starts may commit below rows already committed:
/// its id lies below the outbox's head, so a start at the head passes over it for ever, and
/// the value it changed stays cached though its writer's own invalidation failed. The passes
/// start below every row that began in the last 2 W and wait on the gap until it commits.
#[tokio::test]
async fn a_row_in_flight_when_the_invalidator_starts_is_applied_when_it_commits() {
    for mutant in [None, Some(Mutant::StartReplayL1Only)] {
        let cfg = CacheConfig {
            mutant,
            ..CacheConfig::default()
        };
        let c = Arc::new(cache_with(cfg, 0, crate::Builtin::Durable));
        let (late, other) = (key("late"), key("other"));
        assert_eq!(c.get(&late).await.unwrap().unwrap().row.version, 0);
        // Another instance's write of `late` takes id 1 and has not committed; one of `other`
        // takes id 2 and commits. Nobody invalidates either.
        c.store.write(late.as_str(), b"x").await.unwrap();
        c.store.uncommitted.lock().unwrap().insert(1);
        c.store.write(other.as_str(), b"x").await.unwrap();
        let task = c.invalidator();
        assert!(task.is_some());
        c.invalidator_pass().await;
        let cached = c.get(&late).await.unwrap().unwrap();
        assert_eq!(
            (cached.row.version, cached.source),
            (0, Source::L1),
            "not committed yet: L1's v0 is still the database's"
        );
        c.store.uncommitted.lock().unwrap().clear();
        c.invalidator_pass().await;
        let read = c.get(&late).await.unwrap().unwrap();
        let want = if mutant.is_none() {
            (1, Source::Db)
        } else {
            (0, Source::L1)
        };
        assert_eq!((read.row.version, read.source), want, "{mutant:?}");
    }
}

/// The replica guard knows only what its invalidator has read: while that is behind the outbox
/// (cut off, paused, losing messages), a miss reads the primary (swarm seed 54: under 24 % loss,
/// another instance's write unread for 0.8 s while the replica's older row was filled).
#[tokio::test]
async fn the_replica_guard_reads_the_primary_while_the_invalidator_is_behind() {
    for mutant in [None, Some(Mutant::NoGuardWhenBehind)] {
        let cfg = CacheConfig {
            mutant,
            ..CacheConfig::default()
        };
        let c = Arc::new(cache_with(cfg, 0, crate::Builtin::Durable));
        // Started, never run: it has read nothing, as when its reads are lost.
        drop(c.invalidator());
        assert!(c.outbox_behind());
        assert_eq!(
            c.replica_behind(key("any").as_str(), Some(&replica_v0())),
            mutant.is_none(),
            "{mutant:?}"
        );
    }
    // Without an invalidator (`versioned`) there is no guard.
    let c = cache(CacheConfig::default(), 0);
    assert!(!c.replica_behind("t:v1:any", None));
}

/// The lease: a read uses the tiers only while the invalidator's last whole pass began less than
/// Δ ago. Rows committed before it were applied or their tiers fenced; a row committed after it
/// is less than Δ old. Under 14 % loss (swarm seed 199) an instance's outbox reads were lost
/// while another instance's write reached memcached late, and a read served the old row 627 ms
/// after the write, past Δ = 575 ms.
#[tokio::test(start_paused = true)]
async fn an_invalidator_cut_off_from_the_outbox_keeps_reads_off_the_tiers_after_delta() {
    for mutant in [None, Some(Mutant::NoLease)] {
        let cfg = CacheConfig {
            lease_ms: 0,
            mutant,
            ..CacheConfig::default()
        };
        let delta = Duration::from_millis(cfg.outbox_staleness_bound_ms());
        let c = Arc::new(cache_with(cfg, 0, crate::Builtin::Durable));
        let k = key("cut");
        drop(c.invalidator());
        assert_eq!(c.lease_lapsed(), mutant.is_none(), "no pass yet");
        c.invalidator_pass().await;
        let pass_end = Instant::now();
        assert!(!c.lease_lapsed());
        assert_eq!(c.get(&k).await.unwrap().unwrap().row.version, 0);
        assert_eq!(c.get(&k).await.unwrap().unwrap().source, Source::L1);
        // Another instance's write, whose invalidation nobody applies; this instance's reads of
        // the outbox fail from now.
        c.store.outbox_down.store(true, Relaxed);
        c.store.write(k.as_str(), b"x").await.unwrap();
        c.invalidator_pass().await;
        tokio::time::advance(delta - Duration::from_millis(2)).await;
        assert_eq!(
            c.get(&k).await.unwrap().unwrap().source,
            Source::L1,
            "within Δ of the last whole pass the tiers serve (stale by less than Δ)"
        );
        tokio::time::sleep_until(pass_end + delta).await;
        let read = c.get(&k).await.unwrap().unwrap();
        let want = if mutant.is_none() {
            (1, Source::Db)
        } else {
            (0, Source::L1)
        };
        assert_eq!((read.row.version, read.source), want, "{mutant:?}");
        // The outbox back: a whole pass renews the lease.
        c.store.outbox_down.store(false, Relaxed);
        c.invalidator_pass().await;
        assert!(!c.lease_lapsed());
        assert_eq!(c.get(&k).await.unwrap().unwrap().row.version, 1);
    }
}
