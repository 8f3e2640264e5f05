//! The Redis model's commands, one behaviour per test: TTLs, SET NX/XX, the scripts, maxmemory.

use super::*;
use crate::envelope::Entry;

fn set(k: &str, v: &str, px: u64, cond: Cond) -> Cmd {
    Cmd::Set {
        key: k.into(),
        value: v.as_bytes().to_vec(),
        px_ms: px,
        cond,
    }
}

#[test]
fn ttl_nx_xx_del() {
    let mut r = RedisModel::default();
    assert_eq!(r.exec(0, set("a", "1", 100, Cond::Xx)), Reply::Bool(false));
    assert_eq!(r.exec(0, set("a", "1", 100, Cond::Nx)), Reply::Bool(true));
    assert_eq!(r.exec(50, set("a", "2", 100, Cond::Nx)), Reply::Bool(false));
    assert_eq!(
        r.exec(99, Cmd::Get("a".into())),
        Reply::Bulk(Some(b"1".to_vec()))
    );
    assert_eq!(
        r.exec(100, Cmd::Get("a".into())),
        Reply::Bulk(None),
        "expired at exactly its PX"
    );
    r.exec(0, set("b", "1", 100, Cond::Always));
    assert_eq!(
        r.exec(1, Cmd::Del(vec!["b".into(), "zz".into()])),
        Reply::Int(1)
    );
}

#[test]
fn scan_returns_every_stable_key_once_and_may_miss_new_ones() {
    let mut r = RedisModel::default();
    for i in 0..100 {
        r.exec(0, set(&format!("k{i}"), "v", 10_000, Cond::Always));
    }
    let (mut cursor, mut seen, mut steps) = (0, Vec::new(), 0);
    loop {
        let Reply::Scan(next, keys) = r.exec(
            1,
            Cmd::Scan {
                cursor,
                pattern: "k*".into(),
                count: 10,
            },
        ) else {
            panic!()
        };
        seen.extend(keys);
        steps += 1;
        if steps == 3 {
            // Keys created mid-scan: some land behind the cursor and are missed.
            for i in 0..50 {
                r.exec(1, set(&format!("new{i}"), "v", 10_000, Cond::Always));
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut stable: Vec<String> = seen
        .iter()
        .filter(|k| !k.starts_with("new"))
        .cloned()
        .collect();
    stable.sort();
    stable.dedup();
    assert_eq!(stable.len(), 100);
    assert_eq!(seen.len(), 100, "pattern k* does not match new*");
    let Reply::Int(n) = r.exec(1, Cmd::DbSize) else {
        panic!()
    };
    assert_eq!(n, 150);
}

#[test]
fn versioned_script_follows_the_envelope_rule() {
    let mut r = RedisModel::default();
    let v = |ver| {
        envelope::encode(
            "k",
            &Entry::Value {
                version: ver,
                fresh_until_ms: 0,
                payload: b"p".to_vec(),
            },
        )
    };
    let t = |ver| envelope::encode("k", &Entry::Tombstone { version: ver });
    let run = |r: &mut RedisModel, value: Vec<u8>, version, kind| {
        r.exec(
            0,
            Cmd::Versioned {
                key: "k".into(),
                value,
                version,
                px_ms: 1000,
                kind,
                release: None,
            },
        )
    };
    assert_eq!(run(&mut r, t(3), 3, Kind::Tombstone), Reply::Bool(true));
    assert_eq!(
        run(&mut r, v(2), 2, Kind::Value),
        Reply::Bool(false),
        "stale fill after a tombstone"
    );
    assert_eq!(run(&mut r, v(3), 3, Kind::Value), Reply::Bool(true));
    assert_eq!(
        run(&mut r, v(3), 3, Kind::Value),
        Reply::Bool(true),
        "a refresh of the same version"
    );
    assert_eq!(run(&mut r, t(3), 3, Kind::Tombstone), Reply::Bool(true));
    assert_eq!(run(&mut r, v(4), 4, Kind::Value), Reply::Bool(true));
    assert_eq!(
        run(&mut r, t(3), 3, Kind::Tombstone),
        Reply::Bool(false),
        "an old tombstone never hides v4"
    );
    r.exec(0, set("k", "garbage", 1000, Cond::Always));
    assert_eq!(
        run(&mut r, v(1), 1, Kind::Value),
        Reply::Bool(true),
        "a non-envelope never blocks"
    );
}

#[test]
fn maxmemory_evicts_least_recently_used() {
    let mut r = RedisModel::new(3 * (2 + 10 + ITEM_OVERHEAD_BYTES));
    for k in ["k1", "k2", "k3"] {
        r.exec(0, set(k, "0123456789", 10_000, Cond::Always));
    }
    r.exec(1, Cmd::Get("k1".into()));
    r.exec(2, set("k4", "0123456789", 10_000, Cond::Always));
    assert_eq!(
        r.exec(3, Cmd::Get("k2".into())),
        Reply::Bulk(None),
        "k2 was least recently used"
    );
    assert!(matches!(
        r.exec(3, Cmd::Get("k1".into())),
        Reply::Bulk(Some(_))
    ));
    assert_eq!(r.evictions, 1);
    let mut tiny = RedisModel::new(10);
    assert!(
        matches!(tiny.exec(0, set("big", "0123456789", 100, Cond::Always)), Reply::Err(e) if e.starts_with("OOM"))
    );
}

#[test]
fn release_only_with_our_token() {
    let mut r = RedisModel::default();
    r.exec(0, set("lease", "me", 1000, Cond::Nx));
    assert_eq!(
        r.exec(
            1,
            Cmd::Release {
                key: "lease".into(),
                token: "you".into()
            }
        ),
        Reply::Bool(false)
    );
    assert_eq!(
        r.exec(
            1,
            Cmd::Release {
                key: "lease".into(),
                token: "me".into()
            }
        ),
        Reply::Bool(true)
    );
}

/// `get_or_lease` takes the lease only where a reader cannot use what the key holds:
/// nothing, or a tombstone; a lease held with the asker's token is the asker's; and a fill
/// that releases drops only the lease it names.
#[test]
fn get_or_lease_leases_for_nothing_or_a_tombstone_and_the_fill_releases_it() {
    let mut r = RedisModel::default();
    let lease = |r: &mut RedisModel, token: &str| {
        r.exec(
            0,
            Cmd::GetOrLease {
                key: "k".into(),
                lease_key: "lease:k".into(),
                token: token.into(),
                px_ms: 1000,
                reader_now_ms: 0,
                stale_ms: 0,
            },
        )
    };
    assert_eq!(lease(&mut r, "a"), Reply::Leased(None, Leased::Won));
    assert_eq!(lease(&mut r, "b"), Reply::Leased(None, Leased::Lost));
    assert_eq!(
        lease(&mut r, "a"),
        Reply::Leased(None, Leased::Ours),
        "held with our token: ours"
    );
    let value = envelope::encode(
        "k",
        &Entry::Value {
            version: 2,
            fresh_until_ms: 0,
            payload: b"p".to_vec(),
        },
    );
    let fill = |release: Option<(&str, &str)>| Cmd::Versioned {
        release: release.map(|(k, t)| (k.to_string(), t.to_string(), 0)),
        key: "k".into(),
        value: value.clone(),
        version: 2,
        px_ms: 1000,
        kind: Kind::Value,
    };
    assert_eq!(r.exec(0, fill(Some(("lease:k", "b")))), Reply::Bool(true));
    assert!(r.live("lease:k", 0).is_some(), "b's release left a's lease");
    assert_eq!(r.exec(0, fill(Some(("lease:k", "a")))), Reply::Bool(true));
    assert!(r.live("lease:k", 0).is_none());
    assert_eq!(
        lease(&mut r, "c"),
        Reply::Leased(Some(value.clone()), Leased::Unasked)
    );
    let tomb = envelope::encode("k", &Entry::Tombstone { version: 3 });
    r.exec(
        0,
        Cmd::Set {
            key: "k".into(),
            value: tomb.clone(),
            px_ms: 1000,
            cond: Cond::Always,
        },
    );
    assert_eq!(lease(&mut r, "c"), Reply::Leased(Some(tomb), Leased::Won));
    // Lease expiry: a lease left behind runs out at its PX.
    assert_eq!(r.exec(999, Cmd::Del(vec!["k".into()])), Reply::Int(1));
    assert!(matches!(
        r.exec(
            1000,
            Cmd::GetOrLease {
                key: "k".into(),
                lease_key: "lease:k".into(),
                token: "d".into(),
                px_ms: 1000,
                reader_now_ms: 0,
                stale_ms: 0,
            }
        ),
        Reply::Leased(None, Leased::Won)
    ));
}
