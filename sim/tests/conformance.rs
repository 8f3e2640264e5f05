//! The models against the real servers: the same proptest-generated command sequences run on
//! each model and on the real server in a container must get the same answers. A difference is
//! a bug in the model, and a simulated verdict is only worth what its models are.
#![cfg(not(madsim))]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aside::backend::{Memcached, Postgres, Redis};
use aside::envelope::{self, Entry, Kind};
use aside::tier::{MemcachedLike, ReadFrom, RedisLike, SetCond, Store};
use containers::{Cluster, ClusterSpec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use sim::models::memcached::{self as mc, MemcachedModel};
use sim::models::postgres::PgModel;
use sim::models::redis::{self as rd, RedisModel};

const KEYS: [&str; 4] = ["posts:v1:a", "posts:v1:b", "posts:v1:[c]", "lease:x"];

#[derive(Debug, Clone)]
enum ROp {
    Get(usize),
    Set(usize, u8, u8),
    Del(Vec<usize>),
    Versioned(usize, u8, bool, bool),
    Release(usize, u8),
}

fn r_op() -> impl Strategy<Value = ROp> {
    let k = 0..KEYS.len();
    prop_oneof![
        k.clone().prop_map(ROp::Get),
        (k.clone(), 0..3u8, 0..3u8).prop_map(|(k, c, v)| ROp::Set(k, c, v)),
        prop::collection::vec(k.clone(), 1..3).prop_map(ROp::Del),
        (k.clone(), 0..4u8, any::<bool>(), any::<bool>())
            .prop_map(|(k, v, t, garbage)| ROp::Versioned(k, v, t, garbage)),
        (k, 0..3u8).prop_map(|(k, t)| ROp::Release(k, t)),
    ]
}

fn envelope_for(key: &str, version: u8, tombstone: bool) -> Vec<u8> {
    let e = if tombstone {
        Entry::Tombstone {
            version: version.into(),
        }
    } else {
        Entry::Value {
            version: version.into(),
            fresh_until_ms: 0,
            payload: vec![version],
        }
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
        ROp::Versioned(k, v, t, garbage) => {
            let value = if *garbage {
                b"not an envelope".to_vec()
            } else {
                envelope_for(KEYS[*k], *v, *t)
            };
            if *t {
                r.tombstone(KEYS[*k], &value, (*v).into(), 60_000)
                    .await
                    .map(rd::Reply::Bool)
            } else {
                r.fill_if_newer(KEYS[*k], &value, (*v).into(), 60_000)
                    .await
                    .map(rd::Reply::Bool)
            }
        }
        ROp::Release(k, t) => r
            .release(KEYS[*k], &format!("v{t}"))
            .await
            .map(rd::Reply::Bool),
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
        ROp::Versioned(k, v, t, garbage) => {
            let value = if *garbage {
                b"not an envelope".to_vec()
            } else {
                envelope_for(KEYS[*k], *v, *t)
            };
            rd::Cmd::Versioned {
                key: KEYS[*k].into(),
                value,
                version: (*v).into(),
                px_ms: 60_000,
                kind: if *t { Kind::Tombstone } else { Kind::Value },
            }
        }
        ROp::Release(k, t) => rd::Cmd::Release {
            key: KEYS[*k].into(),
            token: format!("v{t}"),
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

#[derive(Debug, Clone)]
enum MOp {
    Gets(usize),
    Set(usize, u8),
    Add(usize, u8),
    /// Cas with the last token this key's gets returned (or a wrong one).
    Cas(usize, u8, bool),
    Delete(usize),
    Big(usize),
}

fn m_op() -> impl Strategy<Value = MOp> {
    let k = 0..3usize;
    prop_oneof![
        k.clone().prop_map(MOp::Gets),
        (k.clone(), any::<u8>()).prop_map(|(k, v)| MOp::Set(k, v)),
        (k.clone(), any::<u8>()).prop_map(|(k, v)| MOp::Add(k, v)),
        (k.clone(), any::<u8>(), any::<bool>()).prop_map(|(k, v, good)| MOp::Cas(k, v, good)),
        k.clone().prop_map(MOp::Delete),
        k.prop_map(MOp::Big),
    ]
}

/// Answers with CAS tokens left out (each server numbers them its own way); errors as "err".
#[derive(Debug, PartialEq)]
enum MAns {
    Value(Option<Vec<u8>>),
    Stored(bool),
    Deleted(bool),
    Err,
}

async fn memcached_conformance(cluster: &Cluster) {
    let real = Memcached::new(cluster.memcached[0].addr(), 2);
    let rt = tokio::runtime::Handle::current();
    let keys = ["mk:a", "mk:b", "mk:c"];
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(invariants::gen::test_seed("memcached conformance")),
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&prop::collection::vec(m_op(), 1..40), |ops| {
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                real.flush_all().await.unwrap();
                let mut model = MemcachedModel::default();
                let (mut real_cas, mut model_cas): (HashMap<usize, u64>, HashMap<usize, u64>) =
                    Default::default();
                for (i, op) in ops.iter().enumerate() {
                    let (want, got) = match op {
                        MOp::Gets(k) => {
                            let r = real.gets(keys[*k]).await.unwrap();
                            let m = match model.exec(0, mc::Cmd::Gets(keys[*k].into())) {
                                mc::Reply::Value(v) => v,
                                other => panic!("{other:?}"),
                            };
                            if let Some((_, c)) = &r {
                                real_cas.insert(*k, *c);
                            }
                            if let Some((_, c)) = &m {
                                model_cas.insert(*k, *c);
                            }
                            (MAns::Value(r.map(|x| x.0)), MAns::Value(m.map(|x| x.0)))
                        }
                        MOp::Set(k, v) => {
                            let r = real
                                .set(keys[*k], &[*v], 0)
                                .await
                                .map_or(MAns::Err, |()| MAns::Stored(true));
                            let m = model.exec(
                                0,
                                mc::Cmd::Set {
                                    key: keys[*k].into(),
                                    value: vec![*v],
                                    ttl_s: 0,
                                },
                            );
                            (r, ans(m))
                        }
                        MOp::Add(k, v) => {
                            let r = real
                                .add(keys[*k], &[*v], 0)
                                .await
                                .map_or(MAns::Err, MAns::Stored);
                            (
                                r,
                                ans(model.exec(
                                    0,
                                    mc::Cmd::Add {
                                        key: keys[*k].into(),
                                        value: vec![*v],
                                        ttl_s: 0,
                                    },
                                )),
                            )
                        }
                        MOp::Cas(k, v, good) => {
                            // Without a gets first, a token neither server can have issued.
                            let rc = real_cas.get(k).copied().unwrap_or(1 << 60)
                                + u64::from(!*good) * 1000;
                            let mcas = model_cas.get(k).copied().unwrap_or(1 << 60)
                                + u64::from(!*good) * 1000;
                            let r = real
                                .cas(keys[*k], &[*v], 0, rc)
                                .await
                                .map_or(MAns::Err, MAns::Stored);
                            (
                                r,
                                ans(model.exec(
                                    0,
                                    mc::Cmd::Cas {
                                        key: keys[*k].into(),
                                        value: vec![*v],
                                        ttl_s: 0,
                                        cas: mcas,
                                    },
                                )),
                            )
                        }
                        MOp::Delete(k) => {
                            let r = real.delete(keys[*k]).await.map_or(MAns::Err, MAns::Deleted);
                            (r, ans(model.exec(0, mc::Cmd::Delete(keys[*k].into()))))
                        }
                        MOp::Big(k) => {
                            let big = vec![b'x'; 1 << 20];
                            let r = real
                                .set(keys[*k], &big, 0)
                                .await
                                .map_or(MAns::Err, |()| MAns::Stored(true));
                            (
                                r,
                                ans(model.exec(
                                    0,
                                    mc::Cmd::Set {
                                        key: keys[*k].into(),
                                        value: big,
                                        ttl_s: 0,
                                    },
                                )),
                            )
                        }
                    };
                    prop_assert_eq!(&got, &want, "step {} {:?}", i, op);
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("the memcached model disagrees with memcached: {e}");
    }
}

fn ans(r: mc::Reply) -> MAns {
    match r {
        mc::Reply::Value(v) => MAns::Value(v.map(|x| x.0)),
        mc::Reply::Stored(b) => MAns::Stored(b),
        mc::Reply::Deleted(b) => MAns::Deleted(b),
        mc::Reply::Ok => MAns::Stored(true),
        mc::Reply::Err(_) => MAns::Err,
    }
}

async fn postgres_conformance(cluster: &Cluster) {
    let pg = Postgres::connect(&cluster.pg_url(), None, 4).await.unwrap();
    pg.migrate().await.unwrap();
    let rt = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(invariants::gen::test_seed("postgres conformance")),
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let round = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(
        &prop::collection::vec((0..3usize, any::<bool>()), 1..30),
        |ops| {
            let round = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::task::block_in_place(|| {
                rt.block_on(async {
                    let mut model = PgModel::default();
                    let keys: Vec<String> = (0..3).map(|i| format!("pg:{round}:{i}")).collect();
                    for (k, write) in &ops {
                        if *write {
                            let v = pg
                                .write(&keys[*k], &sim::models::postgres::payload(&keys[*k], 0))
                                .await
                                .unwrap();
                            prop_assert_eq!(v, model.write(&keys[*k], 0));
                        } else {
                            let real = pg
                                .read(&keys[*k], ReadFrom::Primary)
                                .await
                                .unwrap()
                                .map(|r| r.version);
                            prop_assert_eq!(real, model.read(&keys[*k]).map(|r| r.version));
                        }
                    }
                    let outbox = pg.outbox_after(0, 1_000_000).await.unwrap();
                    let mine: Vec<(String, u64)> = outbox
                        .into_iter()
                        .filter(|(_, k, _)| keys.contains(k))
                        .map(|(_, k, v)| (k, v))
                        .collect();
                    let model_outbox: Vec<(String, u64)> = model
                        .outbox
                        .iter()
                        .map(|(_, k, v)| (k.clone(), *v))
                        .collect();
                    prop_assert_eq!(
                        mine,
                        model_outbox,
                        "the outbox holds one row per write, in commit order"
                    );
                    Ok(())
                })
            })
        },
    );
    if let Err(e) = result {
        panic!("the PostgreSQL model disagrees with PostgreSQL: {e}");
    }
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
    memcached_conformance(&cluster).await;
    postgres_conformance(&cluster).await;
}
