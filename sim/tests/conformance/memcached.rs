//! memcached's model against the real server: proptest-generated gets/set/add/cas/delete
//! sequences, and `stats cmd_get`.

use super::*;

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

pub(super) async fn memcached_conformance(cluster: &Cluster) {
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
                let gets_before = real.stat("cmd_get").await.unwrap();
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
                // `stats cmd_get`, which the ring fault's effect is read from.
                let gets = real.stat("cmd_get").await.unwrap() - gets_before;
                let mc::Reply::Stats { cmd_get, .. } = model.exec(0, mc::Cmd::Stats) else {
                    panic!("stats answers Stats");
                };
                prop_assert_eq!(gets, cmd_get, "cmd_get after {:?}", ops);
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
        other => panic!("no command of the test answers {other:?}"),
    }
}
