//! A PostgreSQL node over the pure model: the primary takes reads and writes; the replica pulls
//! the primary's log and applies it after a lag. Every query takes a time drawn from the node's
//! own RNG; a write's transaction takes its row locks and outbox ids when it arrives and commits
//! at the end of its query time, so transactions interleave ([`transaction`]). The model is the node's disk
//! ([`PgSpec::disk`]): a killed and restarted server comes back with every transaction it
//! committed, as PostgreSQL's WAL brings it back, and those it had open aborted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::tier::{OutboxRow, Row};
use invariants::gen::SplitMix;
use madsim::net::Endpoint;
use madsim::time::{sleep, Instant};

use aside::goal::Goal;

use crate::models::postgres::{PgModel, Wal};
use crate::net::{now_ms, serve, Rpc, TAG_PG};

fn rand_in(rng: &mut SplitMix, (lo, hi): (u64, u64)) -> u64 {
    lo + rng.below(hi.saturating_sub(lo).max(1))
}

#[derive(Clone)]
pub enum PgCmd {
    Read(String),
    Write(String),
    /// A foreign writer's transaction: every key bumped, each with its outbox row (the
    /// database's capture), the keys in the order given; with `rollback`, rolled back at the end
    /// instead of committed (the outbox ids it took stay a gap).
    WriteTx {
        keys: Vec<String>,
        rollback: bool,
    },
    WalAfter(u64),
    /// On a replica: apply the log this many ms behind (`None`: the lag it booted with).
    SetLag(Option<u64>),
    /// On a replica: how far behind its replay is, in ms (0 when it has applied all it has).
    ReplayLag,
    /// Every query of the app nodes (reads, writes, the outbox) takes this many ms longer
    /// (`None`: its own pace again). Replication and the nemesis's own commands are not slowed:
    /// with real servers the fault is a proxy in front of the app nodes' connections.
    SetSlow(Option<u64>),
    OutboxAfter {
        after: u64,
        limit: u32,
    },
    OutboxRecent {
        window_ms: u64,
        limit: u32,
    },
    OutboxHead,
    OutboxHeadBefore {
        age_ms: u64,
    },
    OutboxDone(Vec<u64>),
    /// How many committed outbox rows are not marked done.
    OutboxUndone,
}

#[derive(Clone)]
pub enum PgReply {
    Row(Option<Row>),
    /// Every key the write's transaction changed, with its version, the written key first.
    Written(Vec<(String, u64)>),
    /// The transaction rolled back as asked.
    RolledBack,
    Wal(Vec<Wal>),
    Done,
    LagMs(u64),
    Outbox(Vec<OutboxRow>),
    Head(u64),
    Count(u64),
}

/// A PostgreSQL server: `primary` is `None` for the primary, the address it streams from for a
/// replica.
#[derive(Clone)]
pub struct PgSpec {
    pub addr: SocketAddr,
    /// The server's disk: what it committed, which a kill and restart keep (what it had not
    /// answered yet is lost with the process; a reply lost with it leaves the client unsure).
    pub disk: Arc<Mutex<PgModel>>,
    pub primary: Option<SocketAddr>,
    pub lag_ms: u64,
    pub query_us: (u64, u64),
    /// A write to a listing also bumps its sibling listings in the same transaction.
    pub listing_tx: bool,
    pub seed: u64,
    pub start: Instant,
}

pub async fn pg_node(spec: PgSpec) {
    let PgSpec {
        addr,
        disk,
        primary,
        lag_ms,
        query_us,
        listing_tx,
        seed,
        start,
    } = spec;
    let model = disk;
    // Crash recovery: what was open when the server died never commits.
    if model.lock().unwrap().recover() > 0 {
        crate::net::reached(addr, Goal::PgTxAborted);
    }
    let ep = Endpoint::bind(addr).await.expect("bind postgres");
    let lag = Arc::new(AtomicU64::new(lag_ms));
    let slow_ms = Arc::new(AtomicU64::new(0));
    if let Some(p) = primary {
        let (model, rpc, lag) = (model.clone(), Rpc::bind(addr.ip()).await, lag.clone());
        madsim::task::spawn(async move {
            loop {
                sleep(Duration::from_millis(10)).await;
                let after = model.lock().unwrap().applied_lsn;
                if let Ok(PgReply::Wal(w)) = rpc
                    .call::<PgCmd, PgReply>(
                        p,
                        TAG_PG,
                        PgCmd::WalAfter(after),
                        Duration::from_millis(200),
                    )
                    .await
                {
                    model
                        .lock()
                        .unwrap()
                        .apply(&w, now_ms(start), lag.load(Relaxed));
                }
            }
        });
    }
    let rng = Arc::new(Mutex::new(SplitMix(seed)));
    serve(ep, TAG_PG, move |c: PgCmd| {
        let (m, rng, lag, slow_ms) = (model.clone(), rng.clone(), lag.clone(), slow_ms.clone());
        async move {
            let d = rand_in(&mut rng.lock().unwrap(), query_us);
            let app_query = !matches!(
                c,
                PgCmd::WalAfter(_) | PgCmd::SetLag(_) | PgCmd::ReplayLag | PgCmd::SetSlow(_)
            );
            let slow_us = if app_query {
                slow_ms.load(Relaxed) * 1_000
            } else {
                0
            };
            let c = match c {
                PgCmd::Write(k) => {
                    let keys = m.lock().unwrap().tx_keys(&k, listing_tx);
                    let tx = transaction(&m, addr, start, keys, d, slow_us, false);
                    return PgReply::Written(tx.await.unwrap_or_default());
                }
                PgCmd::WriteTx { keys, rollback } => {
                    let tx = transaction(&m, addr, start, keys, d, slow_us, rollback);
                    return tx.await.map_or(PgReply::RolledBack, PgReply::Written);
                }
                other => other,
            };
            sleep(Duration::from_micros(d + slow_us)).await;
            let mut m = m.lock().unwrap();
            match c {
                PgCmd::Write(_) | PgCmd::WriteTx { .. } => unreachable!("a transaction, above"),
                PgCmd::Read(k) => {
                    if primary.is_some() && m.behind() {
                        crate::net::reached(addr, Goal::ReplicaBehind);
                    }
                    PgReply::Row(m.read(&k))
                }
                PgCmd::WalAfter(lsn) => PgReply::Wal(m.wal_after(lsn).to_vec()),
                PgCmd::SetLag(ms) => {
                    lag.store(ms.unwrap_or(lag_ms), Relaxed);
                    PgReply::Done
                }
                PgCmd::ReplayLag => PgReply::LagMs(m.replay_lag_ms(now_ms(start))),
                PgCmd::SetSlow(ms) => {
                    slow_ms.store(ms.unwrap_or(0), Relaxed);
                    PgReply::Done
                }
                PgCmd::OutboxAfter { after, limit } => {
                    PgReply::Outbox(m.outbox_after(after, limit))
                }
                PgCmd::OutboxRecent { window_ms, limit } => {
                    PgReply::Outbox(m.outbox_recent(now_ms(start), window_ms, limit))
                }
                PgCmd::OutboxHead => PgReply::Head(m.outbox_head()),
                PgCmd::OutboxHeadBefore { age_ms } => {
                    PgReply::Head(m.outbox_head_before(now_ms(start), age_ms))
                }
                PgCmd::OutboxDone(ids) => {
                    m.done.extend(ids);
                    PgReply::Done
                }
                PgCmd::OutboxUndone => PgReply::Count(m.outbox_undone()),
            }
        }
    })
    .await;
}

/// How often a transaction waiting for a row lock looks again. It takes all its rows at once
/// when none is held, so unlike PostgreSQL's queue of waiters, a busy row may keep a
/// transaction of several rows waiting while single-row writes come and go.
const LOCK_POLL_MS: u64 = 1;

/// One write transaction as PostgreSQL runs it: its rows' locks (waiting while another open
/// transaction holds one) and the outbox ids their capture takes when it arrives, then its query
/// time and a slow disk's to commit. (Taking them halfway through instead, the same total time,
/// made `naive`'s fill race rarer: 1 to 2 of 20 `fill-race` seeds instead of 6; the catalog's
/// findings were tuned to this node's timing.) Nothing it wrote is
/// visible before the commit, so a transaction that began later may commit first, its outbox id
/// above one not visible yet. `None`: rolled back as asked.
async fn transaction(
    m: &Mutex<PgModel>,
    addr: SocketAddr,
    start: Instant,
    keys: Vec<String>,
    query_us: u64,
    slow_us: u64,
    rollback: bool,
) -> Option<Vec<(String, u64)>> {
    // `now()`, the transaction's start: before any wait for a lock.
    let began_ms = now_ms(start);
    let tx = loop {
        {
            let mut g = m.lock().unwrap();
            if g.locked(None, &keys).is_none() {
                let tx = g.begin(began_ms);
                for k in &keys {
                    g.tx_write(tx, k)
                        .expect("no other transaction holds these rows");
                }
                break tx;
            }
        }
        sleep(Duration::from_millis(LOCK_POLL_MS)).await;
    };
    sleep(Duration::from_micros(query_us + slow_us)).await;
    let mut g = m.lock().unwrap();
    if rollback {
        g.rollback(tx);
        crate::net::reached(addr, Goal::PgTxAborted);
        return None;
    }
    if g.first_id(tx).is_some_and(|id| id < g.outbox_head()) {
        crate::net::reached(addr, Goal::PgCommitOutOfOrder);
    }
    Some(g.commit(tx, now_ms(start)))
}
