//! The models against the real servers: the same proptest-generated command sequences run on
//! each model and on the real server in a container must get the same answers. A difference is
//! a bug in the model, and a simulated verdict is only worth what its models are.
#![cfg(not(madsim))]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aside::backend::{Memcached, Postgres, Redis};
use aside::envelope::{self, Entry, Kind};
use aside::tier::{LeaseAsk, MemcachedLike, ReadFrom, RedisLike, Release, SetCond, Store};
use containers::{Cluster, ClusterSpec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use sim::models::memcached::{self as mc, MemcachedModel};
use sim::models::postgres::PgModel;
use sim::models::redis::{self as rd, RedisModel};

#[path = "conformance/clock.rs"]
mod clock;
#[path = "conformance/memcached.rs"]
mod memcached;
#[path = "conformance/memory.rs"]
mod memory;
#[path = "conformance/postgres.rs"]
mod postgres;

/// Plain keys, a lease, a group's generation key and the first key in its first generations
/// (what `get_in_generation` reads).
const KEYS: [&str; 8] = [
    "posts:v1:a",
    "posts:v1:b",
    "posts:v1:[c]",
    "lease:x",
    "aside-gen:v1:posts:v1:",
    "posts:v1:a#g0",
    "posts:v1:a#g1",
    "posts:v1:a#g2",
];

#[derive(Debug, Clone)]
enum ROp {
    Get(usize),
    Set(usize, u8, u8),
    Del(Vec<usize>),
    /// Key, version, what the envelope holds (0 a value, 1 a tombstone, 2 "absent", which the
    /// cache fills like a value, 3 a value fresh until 2 s), garbage instead of an envelope,
    /// and for a fill, the lease (key, token) it releases in the same round trip.
    Versioned(usize, u8, u8, bool, Option<(usize, u8)>),
    /// The `get_or_lease` script: (key, lease key, token, the reader's clock and stale window:
    /// 0 at 1 s with none, 1 at 3 s with none, 2 at 3 s with 1.5 s; a value of kind 3 is fresh
    /// until 2 s).
    GetOrLease(usize, usize, u8, u8),
    Release(usize, u8),
    /// The `get_in_generation` script: (generation key, key).
    GetInGeneration(usize, usize),
}

fn r_op() -> impl Strategy<Value = ROp> {
    let k = 0..KEYS.len();
    prop_oneof![
        k.clone().prop_map(ROp::Get),
        (k.clone(), 0..3u8, 0..3u8).prop_map(|(k, c, v)| ROp::Set(k, c, v)),
        prop::collection::vec(k.clone(), 1..3).prop_map(ROp::Del),
        (
            k.clone(),
            0..4u8,
            0..4u8,
            any::<bool>(),
            prop::option::of((k.clone(), 0..3u8))
        )
            .prop_map(|(k, v, e, garbage, lease)| ROp::Versioned(k, v, e, garbage, lease)),
        (k.clone(), k.clone(), 0..3u8, 0..3u8)
            .prop_map(|(k, l, t, at)| ROp::GetOrLease(k, l, t, at)),
        (k.clone(), 0..3u8).prop_map(|(k, t)| ROp::Release(k, t)),
        (k.clone(), k).prop_map(|(g, k)| ROp::GetInGeneration(g, k)),
    ]
}

/// How long a fill's release keeps the lease: deleted for some fills, kept for others.
fn linger_ms(version: u8) -> u64 {
    [0, 20, 0, 5_000][version as usize % 4]
}

/// A lease request at one of three reader clocks (see [`ROp::GetOrLease`]).
fn lease_ask<'a>(lease_key: &'a str, token: &'a str, at: u8) -> LeaseAsk<'a> {
    let (now_ms, stale_ms) = [(1_000, 0), (3_000, 0), (3_000, 1_500)][at as usize];
    LeaseAsk {
        lease_key,
        token,
        lease_ms: 60_000,
        now_ms,
        stale_ms,
    }
}

fn envelope_for(key: &str, version: u8, entry: u8) -> Vec<u8> {
    let version = version.into();
    let e = match entry {
        1 => Entry::Tombstone { version },
        2 => Entry::Absent { version },
        3 => Entry::Value {
            version,
            fresh_until_ms: 2_000,
            payload: vec![version as u8],
        },
        _ => Entry::Value {
            version,
            fresh_until_ms: 0,
            payload: vec![version as u8],
        },
    };
    envelope::encode(key, &e)
}

/// The answer of a real Redis, in the model's terms.
async fn real_redis(r: &Redis, op: &ROp) -> rd::Reply {
    let out = match op {
        ROp::Get(k) => r.get(KEYS[*k]).await.map(rd::Reply::Bulk),
        ROp::Set(k, c, v) => {
            let cond = [SetCond::Always, SetCond::Nx, SetCond::Xx][*c as usize];
            r.set(KEYS[*k], &[b'v', *v], 60_000, cond)
                .await
                .map(rd::Reply::Bool)
        }
        ROp::Del(ks) => r
            .del(&ks.iter().map(|&k| KEYS[k].to_string()).collect::<Vec<_>>())
            .await
            .map(rd::Reply::Int),
        ROp::Versioned(k, v, e, garbage, lease) => {
            let value = if *garbage {
                b"not an envelope".to_vec()
            } else {
                envelope_for(KEYS[*k], *v, *e)
            };
            let token = lease.map(|(l, t)| (KEYS[l], format!("v{t}")));
            if *e == 1 {
                r.tombstone(KEYS[*k], &value, (*v).into(), 60_000)
                    .await
                    .map(rd::Reply::Bool)
            } else if let Some((lease_key, token)) = &token {
                let lease = Release {
                    lease_key,
                    token,
                    linger_ms: linger_ms(*v),
                };
                r.fill_if_newer_releasing(KEYS[*k], &value, (*v).into(), 60_000, lease)
                    .await
                    .map(rd::Reply::Bool)
            } else {
                r.fill_if_newer(KEYS[*k], &value, (*v).into(), 60_000)
                    .await
                    .map(rd::Reply::Bool)
            }
        }
        ROp::GetOrLease(k, l, t, at) => r
            .get_or_lease(KEYS[*k], lease_ask(KEYS[*l], &format!("v{t}"), *at))
            .await
            .map(|(v, leased)| rd::Reply::Leased(v, leased)),
        ROp::Release(k, t) => r
            .release(KEYS[*k], &format!("v{t}"))
            .await
            .map(rd::Reply::Bool),
        ROp::GetInGeneration(g, k) => r
            .get_in_generation(KEYS[*g], KEYS[*k])
            .await
            .map(|(g, v)| rd::Reply::Pair(g, v)),
    };
    out.unwrap_or_else(|e| rd::Reply::Err(e.to_string()))
}

fn model_redis(m: &mut RedisModel, op: &ROp) -> rd::Reply {
    let cmd = match op {
        ROp::Get(k) => rd::Cmd::Get(KEYS[*k].into()),
        ROp::Set(k, c, v) => {
            let cond = [rd::Cond::Always, rd::Cond::Nx, rd::Cond::Xx][*c as usize].clone();
            rd::Cmd::Set {
                key: KEYS[*k].into(),
                value: vec![b'v', *v],
                px_ms: 60_000,
                cond,
            }
        }
        ROp::Del(ks) => rd::Cmd::Del(ks.iter().map(|&k| KEYS[k].to_string()).collect()),
        ROp::Versioned(k, v, e, garbage, lease) => {
            let value = if *garbage {
                b"not an envelope".to_vec()
            } else {
                envelope_for(KEYS[*k], *v, *e)
            };
            let tombstone = *e == 1;
            rd::Cmd::Versioned {
                key: KEYS[*k].into(),
                value,
                version: (*v).into(),
                px_ms: 60_000,
                kind: if tombstone {
                    Kind::Tombstone
                } else {
                    Kind::Value
                },
                release: lease
                    .filter(|_| !tombstone)
                    .map(|(l, t)| (KEYS[l].to_string(), format!("v{t}"), linger_ms(*v))),
            }
        }
        ROp::GetOrLease(k, l, t, at) => {
            let token = format!("v{t}");
            let ask = lease_ask(KEYS[*l], &token, *at);
            rd::Cmd::GetOrLease {
                key: KEYS[*k].into(),
                lease_key: ask.lease_key.into(),
                token: ask.token.into(),
                px_ms: ask.lease_ms,
                reader_now_ms: ask.now_ms,
                stale_ms: ask.stale_ms,
            }
        }
        ROp::Release(k, t) => rd::Cmd::Release {
            key: KEYS[*k].into(),
            token: format!("v{t}"),
        },
        ROp::GetInGeneration(g, k) => rd::Cmd::GetInGeneration {
            gen_key: KEYS[*g].into(),
            key: KEYS[*k].into(),
        },
    };
    m.exec(0, cmd)
}

async fn redis_conformance(cluster: &Cluster) {
    let real = Redis::direct(
        &format!("redis://{}", cluster.redis_master.addr()),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    let raw = real.connection().await.unwrap();
    let rt = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(invariants::gen::test_seed("redis conformance")),
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(r_op(), 1..40), |ops| {
        let mut raw = raw.clone();
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
                let mut model = RedisModel::default();
                for (i, op) in ops.iter().enumerate() {
                    let (want, got) = (real_redis(&real, op).await, model_redis(&mut model, op));
                    prop_assert_eq!(&got, &want, "step {} {:?}", i, op);
                }
                // SCAN with a pattern (the `[c]` key needs the escape): the same set of keys.
                let pattern = "posts:v1:\\[*";
                let (mut cursor, mut real_keys) = (0u64, BTreeSet::new());
                loop {
                    let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .query_async(&mut raw)
                        .await
                        .unwrap();
                    real_keys.extend(keys);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                let (mut cursor, mut model_keys) = (0u64, BTreeSet::new());
                loop {
                    let rd::Reply::Scan(next, keys) = model.exec(
                        0,
                        rd::Cmd::Scan {
                            cursor,
                            pattern: pattern.into(),
                            count: 2,
                        },
                    ) else {
                        unreachable!()
                    };
                    model_keys.extend(keys);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                prop_assert_eq!(model_keys, real_keys);
                let size: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
                prop_assert_eq!(model.exec(0, rd::Cmd::DbSize), rd::Reply::Int(size));
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("the Redis model disagrees with Redis: {e}");
    }
    // TTL: expires at its PX in both (real time here, simulated time in the model).
    let mut raw = raw.clone();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
    assert!(real.set("ttl", b"x", 300, SetCond::Always).await.unwrap());
    assert!(real.get("ttl").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(real.get("ttl").await.unwrap(), None);
    let mut m = RedisModel::default();
    m.exec(
        0,
        rd::Cmd::Set {
            key: "ttl".into(),
            value: b"x".to_vec(),
            px_ms: 300,
            cond: rd::Cond::Always,
        },
    );
    assert_eq!(
        m.exec(600, rd::Cmd::Get("ttl".into())),
        rd::Reply::Bulk(None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_answer_as_the_real_servers_do() {
    let spec = ClusterSpec {
        redis_replica: false,
        sentinels: 0,
        memcached: 1,
        pg_replica: false,
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(spec).await.expect("cluster");
    redis_conformance(&cluster).await;
    clock::clock_conformance(&cluster).await;
    memcached::memcached_conformance(&cluster).await;
    memory::memory_pressure_conformance(&cluster.memcached[0].addr()).await;
    postgres::postgres_conformance(&cluster).await;
    postgres::transactions_conformance(&cluster).await;
}

/// `cmd` on the real Redis at `addr`: its value as text, `(nil)`, or `ERR <message>`.
async fn real_cmd(addr: &str, cmd: &[&str]) -> String {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut q = redis::cmd(cmd[0]);
    for a in &cmd[1..] {
        q.arg(*a);
    }
    match q.query_async::<redis::Value>(&mut c).await {
        Ok(redis::Value::Nil) => "(nil)".into(),
        Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(redis::Value::Okay) => "OK".into(),
        Ok(redis::Value::Int(n)) => n.to_string(),
        Ok(v) => format!("{v:?}"),
        Err(e) => format!(
            "ERR {}",
            e.detail()
                .map(|d| format!("{} {d}", e.code().unwrap_or("")))
                .unwrap_or_else(|| e.to_string())
        ),
    }
}

/// The model's answer to GET, in [`real_cmd`]'s words.
fn model_get(m: &mut RedisModel, key: &str) -> String {
    match m.exec(0, rd::Cmd::Get(key.into())) {
        rd::Reply::Bulk(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
        rd::Reply::Bulk(None) => "(nil)".into(),
        other => format!("{other:?}"),
    }
}

fn model_set(m: &mut RedisModel, key: &str, v: &str) {
    m.exec(
        0,
        rd::Cmd::Set {
            key: key.into(),
            value: v.as_bytes().to_vec(),
            px_ms: 0,
            cond: rd::Cond::Always,
        },
    );
}

/// Polls the real replica at `addr` until `INFO replication` says its link to the master is up
/// and `key` reads `want`.
async fn until_replicated(addr: &str, key: &str, want: &str) {
    for _ in 0..100 {
        let info = real_cmd(addr, &["INFO", "replication"]).await;
        if info.contains("master_link_status:up") && real_cmd(addr, &["GET", key]).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr} did not replicate {key}={want} within 10 s");
}

/// Replication, promotion and demotion, as the simulated nodes do them (`sim/src/nodes/redis.rs`
/// over `RedisModel`: the stream of a master's writes applied on its replica, `READONLY` on a
/// replica's writes, a promoted replica keeping its data, and a demoted master's full resync
/// that drops what it acknowledged while isolated) against a real master and replica driven
/// through the same steps with `REPLICAOF`. The Sentinels only choose when these steps happen;
/// their timing is held by the failover tests of each world.
async fn replication_conformance(cluster: &Cluster) {
    let (m, r) = (
        cluster.redis_master.addr(),
        cluster.redis_replica.as_ref().expect("a replica").addr(),
    );
    let (mut mm, mut rm) = (RedisModel::default(), RedisModel::default());
    // A master with a replica keeps its writes for the stream (as the node sets it).
    mm.replicating = true;
    let mut real = Vec::new();
    let mut model = Vec::new();
    // Writes on the master reach the replica.
    for k in ["a", "b"] {
        real_cmd(&m, &["SET", k, "1"]).await;
        model_set(&mut mm, k, "1");
    }
    for w in mm.take_repl() {
        rm.apply(w);
    }
    until_replicated(&r, "b", "1").await;
    for k in ["a", "b"] {
        real.push((
            "replica after the master's writes",
            k,
            real_cmd(&r, &["GET", k]).await,
        ));
        model.push((
            "replica after the master's writes",
            k,
            model_get(&mut rm, k),
        ));
    }
    // A replica refuses writes, in Redis's words.
    let refused = real_cmd(&r, &["SET", "c", "1"]).await;
    assert_eq!(
        refused,
        format!("ERR {}", rd::READONLY),
        "a replica's refusal"
    );
    // Promotion: the replica keeps what it has and takes writes.
    real_cmd(&r, &["REPLICAOF", "NO", "ONE"]).await;
    real_cmd(&r, &["SET", "d", "2"]).await;
    model_set(&mut rm, "d", "2");
    // The old master, isolated from the promoted one, acknowledges writes and a delete.
    assert_eq!(real_cmd(&m, &["SET", "e", "3"]).await, "OK");
    assert_eq!(real_cmd(&m, &["DEL", "a"]).await, "1");
    model_set(&mut mm, "e", "3");
    mm.exec(0, rd::Cmd::Del(vec!["a".into()]));
    // Demotion: the old master follows the new one and resyncs in full; what it acknowledged
    // alone is gone, the delete included.
    let (host, port) = r.split_once(':').unwrap();
    real_cmd(&m, &["REPLICAOF", host, port]).await;
    mm.resync_from(&rm);
    until_replicated(&m, "d", "2").await;
    for k in ["a", "b", "d", "e"] {
        real.push((
            "demoted master after its resync",
            k,
            real_cmd(&m, &["GET", k]).await,
        ));
        model.push(("demoted master after its resync", k, model_get(&mut mm, k)));
    }
    assert_eq!(
        real, model,
        "replication: real Redis (left) and the model (right)"
    );
}

/// Replica lag as the PostgreSQL model applies it (`PgModel::apply` with a lag: a commit is
/// visible on the replica once it is `lag` old, and the replica reports WAL received but not
/// replayed meanwhile) against a real streaming replica with `recovery_min_apply_delay`.
async fn replica_lag_conformance(cluster: &Cluster, lag_ms: u64) {
    let pg = Postgres::connect(&cluster.pg_url(), cluster.pg_replica_url().as_deref(), 2)
        .await
        .unwrap();
    pg.migrate().await.unwrap();
    let replica = cluster.pg_replica.as_ref().expect("a replica");
    let behind = || {
        let o = std::process::Command::new("docker")
            .args([
                "exec",
                replica.container.id(),
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-Atqc",
                "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim() == "t"
    };
    let key = "lag:k";
    let (mut primary, mut rep) = (PgModel::default(), PgModel::default());
    let v0 = pg.write(key, b"x").await.unwrap().version;
    primary.write(key, 0);
    tokio::time::sleep(Duration::from_millis(lag_ms + 1_500)).await;
    rep.apply(primary.wal_after(0), lag_ms + 1_500, lag_ms);
    let t0 = std::time::Instant::now();
    let v1 = pg.write(key, b"x").await.unwrap().version;
    primary.write(key, lag_ms + 1_500);
    let mut real = Vec::new();
    let mut model = Vec::new();
    for at_ms in [lag_ms / 5, lag_ms + 1_000] {
        let due = t0 + Duration::from_millis(at_ms);
        tokio::time::sleep_until(due.into()).await;
        let seen = pg
            .read(key, ReadFrom::Replica)
            .await
            .unwrap()
            .map(|r| r.version);
        real.push((at_ms, seen.map(|v| v == v1), behind()));
        let now = lag_ms + 1_500 + at_ms;
        rep.apply(primary.wal_after(0), now, lag_ms);
        let mv = rep.read(key).map(|r| r.version);
        model.push((at_ms, mv.map(|v| v == 2), rep.replay_lag_ms(now) > 0));
    }
    assert_eq!(v0 + 1, v1);
    assert_eq!(
        real, model,
        "replica lag: (ms after the write, replica has the new version, replica behind), real (left) and model (right)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_promotion_demotion_and_replica_lag_as_the_real_servers_do() {
    let lag_ms = 1_000;
    let spec = ClusterSpec {
        sentinels: 0,
        memcached: 1,
        pg_apply_delay_ms: lag_ms,
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(spec).await.expect("cluster");
    replication_conformance(&cluster).await;
    replica_lag_conformance(&cluster, lag_ms).await;
}
