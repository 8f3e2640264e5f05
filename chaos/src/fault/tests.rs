//! The catalog's names, JSON and targets.
use super::*;

#[test]
fn names_round_trip_and_are_one_based() {
    let all = [
        Target::RedisMaster(0),
        Target::RedisReplica(0),
        Target::RedisMaster(1),
        Target::RedisReplica(1),
        Target::Sentinel(2),
        Target::Memcached(0),
        Target::PgPrimary,
        Target::PgReplica,
        Target::App(1),
    ];
    for t in all {
        assert_eq!(Target::parse(&t.name()), Ok(t));
    }
    assert_eq!(Target::Memcached(0).name(), "memcached-1");
    assert_eq!(Target::RedisMaster(1).name(), "redis-master-2");
    assert!(
        Target::parse("redis-master-1").is_err(),
        "shard 1 is plain redis-master"
    );
    assert!(Target::parse("memcached-0").is_err());
    assert!(Target::parse("redis").unwrap_err().contains("redis-master"));
}

#[test]
fn json_round_trips_and_bad_input_names_the_fix() {
    let f = Fault::new(Kind::Pause, Target::Memcached(1));
    assert_eq!(
        f.to_json().to_string(),
        r#"{"kind":"pause","target":"memcached-2"}"#
    );
    assert_eq!(Fault::from_json(&f.to_json()), Ok(f));
    assert!(
        Fault::from_json(&serde_json::json!({"kind": "melt", "target": "app-1"}))
            .unwrap_err()
            .contains("\"partition\"")
    );
    let p = Fault::new(
        Kind::Partition {
            peers: Side::Redis,
            one_way: true,
        },
        Side::Apps,
    );
    assert_eq!(
        p.to_json().to_string(),
        r#"{"kind":"partition","target":"apps","peers":"redis","direction":"replies-lost"}"#
    );
    assert_eq!(Fault::from_json(&p.to_json()), Ok(p));
    for kind in [
        Kind::Latency { one_way_ms: 55 },
        Kind::Loss { per_mille: 50 },
        Kind::Duplicate { per_mille: 50 },
        Kind::Flush,
        Kind::MemoryLimit { kib: 64 },
        Kind::ReplicaLag { lag_ms: 3_000 },
        Kind::SlowQueries { query_ms: 40 },
    ] {
        let f = Fault::new(kind, Side::Network);
        assert_eq!(Fault::from_json(&f.to_json()), Ok(f));
    }
    assert!(Fault::from_json(
        &serde_json::json!({"kind": "loss", "target": "network", "per_mille": 1001})
    )
    .unwrap_err()
    .contains("0 to 1000"));
    assert!(Side::Apps.contains(Target::App(2)) && !Side::Redis.contains(Target::Sentinel(0)));
    assert!(Fault::from_json(&serde_json::json!({"kind": "kill"}))
        .unwrap_err()
        .contains("target"));
}

#[test]
fn a_kind_on_a_target_it_cannot_act_on_is_refused_not_run_as_nothing() {
    let bad = |v: serde_json::Value| Fault::from_json(&v).unwrap_err();
    assert_eq!(
        bad(serde_json::json!({"kind": "memory-limit", "target": "pg-primary", "kib": 8})),
        "a memory-limit fault acts on redis-master, redis-replica, redis, memcached-N or memcached: target \"pg-primary\" is none of them, and the fault would do nothing"
    );
    assert!(
        bad(serde_json::json!({"kind": "replica-lag", "target": "pg-primary", "lag_ms": 9}))
            .contains("pg-replica or postgres")
    );
    assert!(
        bad(serde_json::json!({"kind": "slow-queries", "target": "apps", "query_ms": 9}))
            .contains("pg-primary")
    );
    assert!(bad(serde_json::json!({"kind": "flush", "target": "sentinels"})).contains("memcached"));
    // A group that holds one server the kind acts on is fine.
    for ok in [
        serde_json::json!({"kind": "replica-lag", "target": "postgres", "lag_ms": 9}),
        serde_json::json!({"kind": "flush", "target": "memcached"}),
        serde_json::json!({"kind": "memory-limit", "target": "redis", "kib": 8}),
        serde_json::json!({"kind": "memory-limit", "target": "memcached-2", "kib": 8}),
        serde_json::json!({"kind": "kill", "target": "sentinel-2"}),
    ] {
        assert!(Fault::from_json(&ok).is_ok(), "{ok}");
    }
}
