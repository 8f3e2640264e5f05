//! PostgreSQL's model against the real server: one transaction at a time (versions and the
//! outbox in commit order), and interleaved transactions on three sessions (outbox ids taken at
//! insert and seen at commit, a rolled-back transaction's gap, row locks).

use std::cell::Cell;

use super::*;
use sim::models::postgres::{Locked, TxId};
use sqlx::{Postgres as Pg, Transaction};

pub(super) async fn postgres_conformance(cluster: &Cluster) {
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
                                .unwrap()
                                .version;
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
                    let outbox = aside::Store::outbox_after(&pg, 0, 1_000_000).await.unwrap();
                    let mine: Vec<(String, u64)> = outbox
                        .into_iter()
                        .filter(|r| keys.contains(&r.key))
                        .map(|r| (r.key, r.version))
                        .collect();
                    let model_outbox: Vec<(String, u64)> = model
                        .outbox_rows()
                        .map(|(_, k, v)| (k.to_string(), v))
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

const SESSIONS: usize = 3;

#[derive(Debug, Clone)]
enum TOp {
    /// Session s writes key k (`aside_write`, as an app write does), beginning a transaction if
    /// it has none open.
    Write(usize, usize),
    Commit(usize),
    Rollback(usize),
    /// Key k's committed version, read outside every transaction.
    Read(usize),
    /// The committed outbox rows above the round's n-th id.
    OutboxAfter(u64),
    /// The highest committed outbox id.
    Head,
}

fn t_op() -> impl Strategy<Value = TOp> {
    let (s, k) = (0..SESSIONS, 0..3usize);
    prop_oneof![
        4 => (s.clone(), k.clone()).prop_map(|(s, k)| TOp::Write(s, k)),
        2 => s.clone().prop_map(TOp::Commit),
        1 => s.prop_map(TOp::Rollback),
        1 => k.prop_map(TOp::Read),
        2 => (0..8u64).prop_map(TOp::OutboxAfter),
        1 => Just(TOp::Head),
    ]
}

/// Answers, outbox ids counted from the round's first.
#[derive(Debug, PartialEq)]
enum TAns {
    Written(u64),
    /// Another open transaction holds the row: the statement fails (`lock_timeout`) and its
    /// transaction is over.
    Locked,
    /// Commit or rollback of a session with nothing open.
    Idle,
    Ended,
    Version(Option<u64>),
    /// (id, key, version)
    Rows(Vec<(u64, String, u64)>),
    Head(u64),
}

const LOCK_NOT_AVAILABLE: &str = "55P03";

async fn real_write(tx: &mut Transaction<'static, Pg>, key: &str) -> Result<u64, String> {
    let r: Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT new_version FROM aside_write($1, $2)")
            .bind(key)
            .bind(sim::models::postgres::payload(key, 0))
            .fetch_one(&mut **tx)
            .await;
    match r {
        Ok(v) => Ok(v as u64),
        Err(e) => Err(e
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.into_owned()))
            .unwrap_or_else(|| e.to_string())),
    }
}

/// Interleaved transactions: the same session-by-session steps on the model and on three real
/// sessions. Each real transaction sets `lock_timeout`, so a write of a row another session
/// holds fails at once where the model says [`Locked`], instead of waiting for a commit that
/// this sequential test would only send later.
pub(super) async fn transactions_conformance(cluster: &Cluster) {
    let pg = Postgres::connect(&cluster.pg_url(), None, SESSIONS as u32 + 2)
        .await
        .unwrap();
    pg.migrate().await.unwrap();
    let rt = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(invariants::gen::test_seed(
            "postgres transactions conformance",
        )),
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let round = std::sync::atomic::AtomicU32::new(0);
    // Counted over every case, so the sequences are shown to exercise what the model is for.
    let (gaps, out_of_order, locked) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let result = runner.run(&prop::collection::vec(t_op(), 1..40), |ops| {
        let round = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let keys: Vec<String> = (0..3).map(|i| format!("tx:{round}:{i}")).collect();
                // The sequence's value before the round: ids are compared from there.
                let base: i64 = sqlx::query_scalar(
                    "SELECT nextval(pg_get_serial_sequence('aside_outbox', 'id'))",
                )
                .fetch_one(pg.primary())
                .await
                .unwrap();
                let base = base as u64;
                let undone_before = aside::Store::outbox_undone(&pg).await.unwrap();
                let mut model = PgModel::default();
                let mut real: Vec<Option<Transaction<'static, Pg>>> =
                    (0..SESSIONS).map(|_| None).collect();
                let mut mine: Vec<Option<TxId>> = vec![None; SESSIONS];
                let rows = |rs: Vec<aside::tier::OutboxRow>| -> Vec<(u64, String, u64)> {
                    rs.into_iter()
                        .map(|r| (r.id.saturating_sub(base), r.key, r.version))
                        .collect()
                };
                for (i, op) in ops.iter().enumerate() {
                    let (want, got) = match op {
                        TOp::Write(s, k) => {
                            if real[*s].is_none() {
                                let mut tx = pg.primary().begin().await.unwrap();
                                sqlx::query("SET LOCAL lock_timeout = '200ms'")
                                    .execute(&mut *tx)
                                    .await
                                    .unwrap();
                                real[*s] = Some(tx);
                                // The model's clock is the step: each BEGIN at its own.
                                mine[*s] = Some(model.begin(i as u64));
                            }
                            let r = real_write(real[*s].as_mut().unwrap(), &keys[*k]).await;
                            let want = match r {
                                Ok(v) => TAns::Written(v),
                                Err(code) if code == LOCK_NOT_AVAILABLE => {
                                    real[*s].take().unwrap().rollback().await.unwrap();
                                    TAns::Locked
                                }
                                Err(other) => panic!("op {i}: {other}"),
                            };
                            let tx = mine[*s].unwrap();
                            let got = match model.tx_write(tx, &keys[*k]) {
                                Ok((v, _)) => TAns::Written(v),
                                Err(Locked { .. }) => {
                                    model.rollback(tx);
                                    mine[*s] = None;
                                    locked.set(locked.get() + 1);
                                    TAns::Locked
                                }
                            };
                            (want, got)
                        }
                        TOp::Commit(s) | TOp::Rollback(s) => {
                            let commit = matches!(op, TOp::Commit(_));
                            let want = match real[*s].take() {
                                None => TAns::Idle,
                                Some(tx) if commit => {
                                    tx.commit().await.unwrap();
                                    TAns::Ended
                                }
                                Some(tx) => {
                                    tx.rollback().await.unwrap();
                                    TAns::Ended
                                }
                            };
                            let got = match mine[*s].take() {
                                None => TAns::Idle,
                                Some(tx) if commit => {
                                    if model
                                        .first_id(tx)
                                        .is_some_and(|id| id < model.outbox_head())
                                    {
                                        out_of_order.set(out_of_order.get() + 1);
                                    }
                                    model.commit(tx, i as u64);
                                    TAns::Ended
                                }
                                Some(tx) => {
                                    if model.first_id(tx).is_some() {
                                        gaps.set(gaps.get() + 1);
                                    }
                                    model.rollback(tx);
                                    TAns::Ended
                                }
                            };
                            (want, got)
                        }
                        TOp::Read(k) => (
                            TAns::Version(
                                pg.read(&keys[*k], ReadFrom::Primary)
                                    .await
                                    .unwrap()
                                    .map(|r| r.version),
                            ),
                            TAns::Version(model.read(&keys[*k]).map(|r| r.version)),
                        ),
                        TOp::OutboxAfter(n) => (
                            TAns::Rows(rows(
                                aside::Store::outbox_after(&pg, base + n, 100)
                                    .await
                                    .unwrap(),
                            )),
                            TAns::Rows(rows(
                                model
                                    .outbox_after(*n, 100)
                                    .into_iter()
                                    .map(|mut r| {
                                        r.id += base;
                                        r
                                    })
                                    .collect(),
                            )),
                        ),
                        TOp::Head => {
                            let h = aside::Store::outbox_head(&pg).await.unwrap();
                            (
                                TAns::Head(h.saturating_sub(base)),
                                TAns::Head(model.outbox_head()),
                            )
                        }
                    };
                    if want != got {
                        for tx in real.iter_mut().filter_map(Option::take) {
                            tx.rollback().await.unwrap();
                        }
                        prop_assert_eq!(want, got, "op {} of {:?}", i, ops);
                    }
                }
                for (s, tx) in real.iter_mut().enumerate() {
                    if let Some(tx) = tx.take() {
                        tx.rollback().await.unwrap();
                        model.rollback(mine[s].take().unwrap());
                    }
                }
                let real_rows = rows(aside::Store::outbox_after(&pg, base, 1_000).await.unwrap());
                let model_rows: Vec<(u64, String, u64)> = model
                    .outbox_rows()
                    .map(|(id, k, v)| (id, k.to_string(), v))
                    .collect();
                prop_assert_eq!(real_rows, model_rows, "the round's whole outbox");
                // Committed rows only, a rolled-back transaction's none (none is marked done).
                let undone = aside::Store::outbox_undone(&pg).await.unwrap();
                prop_assert_eq!(
                    undone.checked_sub(undone_before),
                    Some(model.outbox_undone()),
                    "the round's rows not marked done"
                );
                // `created_at` is the transaction's start: rows of one transaction share it, and
                // transactions are ordered by when they began, not by when they committed.
                let real_began: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT id - $1, dense_rank() OVER (ORDER BY created_at)
                       FROM aside_outbox WHERE id > $1 ORDER BY id",
                )
                .bind(base as i64)
                .fetch_all(pg.primary())
                .await
                .unwrap();
                let began: BTreeSet<u64> = model.outbox_created().map(|(_, at)| at).collect();
                let model_began: Vec<(i64, i64)> = model
                    .outbox_created()
                    .map(|(id, at)| (id as i64, began.range(..=at).count() as i64))
                    .collect();
                prop_assert_eq!(real_began, model_began, "(id, rank of created_at)");
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("the PostgreSQL model's transactions disagree with PostgreSQL: {e}");
    }
    // Where a new invalidator starts: the head of the rows older than the age asked.
    let head = aside::Store::outbox_head(&pg).await.unwrap();
    assert!(head > 0);
    assert_eq!(
        aside::Store::outbox_head_before(&pg, 0).await.unwrap(),
        head
    );
    assert_eq!(
        aside::Store::outbox_head_before(&pg, 3_600_000)
            .await
            .unwrap(),
        0,
        "no row of this server is an hour old"
    );
    let (gaps, out_of_order, locked) = (gaps.get(), out_of_order.get(), locked.get());
    assert!(
        gaps > 0 && out_of_order > 0 && locked > 0,
        "the generated transactions left {gaps} gaps, {out_of_order} out-of-order commits, {locked} lock conflicts: each should be over 0"
    );
}
