use super::*;
use crate::model::memcached::{self as mc, MemcachedModel};
use crate::tier::mem::{InProcess, MemcachedClient, MemcachedExec};

/// A memcached node on which every `cas` loses the race, as under a storm of writers; with
/// `newer`, another writer's entry lands just after the last round is lost.
#[derive(Default)]
struct LosesEveryCas {
    node: InProcess<MemcachedModel>,
    newer: Option<Vec<u8>>,
    rounds: std::sync::atomic::AtomicU32,
}

impl MemcachedExec for LosesEveryCas {
    async fn exec(&self, cmd: mc::Cmd) -> TierResult<mc::Reply> {
        let mc::Cmd::Cas { key, ttl_s, .. } = cmd else {
            return self.node.exec(cmd).await;
        };
        let round = 1 + self
            .rounds
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let (Some(newer), TOMBSTONE_CAS_ATTEMPTS) = (&self.newer, round) {
            let value = newer.clone();
            self.node.exec(mc::Cmd::Set { key, value, ttl_s }).await?;
        }
        Ok(mc::Reply::Stored(false))
    }
}

fn value(key: &str, version: u64) -> Vec<u8> {
    let e = Entry::Value {
        version,
        fresh_until_ms: 0,
        payload: format!("v{version}").into_bytes(),
    };
    envelope::encode(key, &e)
}

/// An invalidation that loses every CAS still leaves a tombstone, which a load begun before
/// the write cannot fill over. (A delete used to be the last resort: it left a hole that
/// the older load's `add` filled, and `split-brain` seed 151 of 200 read its own write stale.)
#[tokio::test]
async fn an_invalidation_that_loses_every_cas_still_blocks_older_fills() {
    let key = "posts:v1:hot";
    let node = MemcachedClient(LosesEveryCas::default());
    node.set(key, &value(key, 1), 60).await.unwrap();
    let s = Builtin::Versioned;
    s.invalidate_l2(&node, key, Some(2), 60).await.unwrap();
    let (raw, _) = node
        .gets(key)
        .await
        .unwrap()
        .expect("a tombstone, not a hole");
    assert_eq!(
        envelope::decode(key, &raw),
        Ok(Entry::Tombstone { version: 2 })
    );
    assert!(
        !s.fill_l2(&node, key, &value(key, 1), 1, 60).await.unwrap(),
        "the older load's fill is refused"
    );
    // The repair the invalidator makes falls back the same way.
    node.set(key, &value(key, 2), 60).await.unwrap();
    s.repair_l2(&node, key, 3, 60).await.unwrap();
    let (raw, _) = node.gets(key).await.unwrap().unwrap();
    assert_eq!(
        envelope::decode(key, &raw),
        Ok(Entry::Tombstone { version: 3 })
    );
}

/// A tier does not always hold an entry under the key its checksum covers: a grouped key
/// lives under `#g<generation>`, a long or unsafe key under its hash. The CAS loop reads the
/// held version from the header, so an older fill there is refused. It decoded under the
/// tier's key, failed the checksum, and replaced v16 with v14 (the swarm: `cargo sim
/// --scenario swarm --strategy durable --seed 4294967307`).
#[tokio::test]
async fn an_older_fill_is_refused_under_a_tier_key_unlike_the_envelopes() {
    let grouped = crate::Key::parse("listings:v1:r/rust:hot").unwrap();
    let spaced = crate::Key::new("posts", 1, "an id with spaces").unwrap();
    for (key, held) in [
        (grouped.as_str(), grouped.in_generation(4).memcached()),
        (spaced.as_str(), spaced.memcached()),
    ] {
        assert_ne!(key, held, "the tier holds it under another name");
        let node = MemcachedClient(InProcess::<MemcachedModel>::default());
        let s = Builtin::Versioned;
        node.set(&held, &value(key, 16), 60).await.unwrap();
        let (raw, cas) = node.gets(&held).await.unwrap().unwrap();
        let seen = Seen::Entry { raw, cas };
        let older = value(key, 14);
        let after = s.fill_l2_after(&node, &held, &older, 14, 60, seen);
        assert!(!after.await.unwrap(), "{held}: from what the read saw");
        assert!(!s.fill_l2(&node, &held, &older, 14, 60).await.unwrap());
        s.invalidate_l2(&node, &held, Some(15), 60).await.unwrap();
        s.repair_l2(&node, &held, 16, 60).await.unwrap();
        let (raw, _) = node.gets(&held).await.unwrap().unwrap();
        assert_eq!(raw, value(key, 16), "{held}: v16 stays");
    }
}

/// The last look after the lost rounds: a newer tombstone that landed meanwhile stays (an
/// older one set over it would let the older load's fill in again).
#[tokio::test]
async fn a_newer_tombstone_that_lands_after_the_lost_rounds_stays() {
    let key = "posts:v1:hot";
    let newer = envelope::encode(key, &Entry::Tombstone { version: 9 });
    let node = MemcachedClient(LosesEveryCas {
        newer: Some(newer),
        ..LosesEveryCas::default()
    });
    node.set(key, &value(key, 1), 60).await.unwrap();
    let s = Builtin::Versioned;
    s.invalidate_l2(&node, key, Some(2), 60).await.unwrap();
    let (raw, _) = node.gets(key).await.unwrap().unwrap();
    assert_eq!(
        envelope::decode(key, &raw),
        Ok(Entry::Tombstone { version: 9 })
    );
    assert!(!s.fill_l2(&node, key, &value(key, 5), 5, 60).await.unwrap());
}

/// The read's `gets` saw a tombstone of 1 (or nothing); a write's tombstone of 3 landed
/// before the fill of version 2 that the read loaded: the fill's `cas` with the old token (or
/// its `add`) loses, and asking again refuses it. What the read saw saves a round trip, never
/// a check.
#[tokio::test]
async fn a_fill_from_what_the_read_saw_is_refused_by_a_newer_tombstone_since() {
    let node = MemcachedClient(InProcess::<MemcachedModel>::default());
    let s = Builtin::Versioned;
    let t = |key: &str, v| envelope::encode(key, &Entry::Tombstone { version: v });
    let key = "posts:v1:seen";
    node.set(key, &t(key, 1), 60).await.unwrap();
    let (raw, cas) = node.gets(key).await.unwrap().unwrap();
    node.set(key, &t(key, 3), 60).await.unwrap();
    let seen = Seen::Entry { raw, cas };
    let fill = value(key, 2);
    let stored = s.fill_l2_after(&node, key, &fill, 2, 60, seen);
    assert!(!stored.await.unwrap());
    assert_eq!(node.gets(key).await.unwrap().unwrap().0, t(key, 3));

    let key = "posts:v1:seen-absent";
    node.set(key, &t(key, 3), 60).await.unwrap();
    let fill = value(key, 2);
    let stored = s.fill_l2_after(&node, key, &fill, 2, 60, Seen::Absent);
    assert!(!stored.await.unwrap());
    assert_eq!(node.gets(key).await.unwrap().unwrap().0, t(key, 3));

    // Unchanged since the read: the token's `cas` stores.
    let key = "posts:v1:seen-unchanged";
    node.set(key, &t(key, 1), 60).await.unwrap();
    let (raw, cas) = node.gets(key).await.unwrap().unwrap();
    let seen = Seen::Entry { raw, cas };
    let fill = value(key, 2);
    let stored = s.fill_l2_after(&node, key, &fill, 2, 60, seen);
    assert!(stored.await.unwrap());
    assert_eq!(node.gets(key).await.unwrap().unwrap().0, value(key, 2));
}
