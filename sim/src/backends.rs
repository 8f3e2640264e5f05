//! The backends `aside` uses inside the simulator: the same tier traits as the real ones
//! (`aside::backend`), over simulated servers.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::tier::mem::{MemcachedClient, MemcachedExec, RedisClient, RedisExec};
use aside::tier::{Committed, OutboxRow, ReadFrom, Row, Store, TierError, TierResult};
use aside::{CacheAside, CacheConfig, Pool, Ring, Shards, Strategy};
use madsim::time::sleep;

use crate::buggify::{self, delay};
use crate::cluster::Addrs;
use crate::models::memcached as mc;
use crate::models::redis as rd;
use crate::net::{Rpc, TAG_MEMCACHED, TAG_PG, TAG_REDIS, TAG_SENTINEL};
use crate::nodes::postgres::{PgCmd, PgReply};
use crate::nodes::redis::{Admin, AdminReply};
use crate::nodes::sentinel::{SentinelMsg, SentinelReply};

/// Redis through the Sentinels: re-resolves on errors and READONLY, like the real backend. The
/// tier traits' mapping onto model commands is the library's ([`RedisClient`]), shared with the
/// in-memory tiers.
pub type SimRedis = RedisClient<SimRedisConn>;

/// The connection under [`SimRedis`]: sends each command to the master the Sentinels named.
pub struct SimRedisConn {
    rpc: Rpc,
    /// The shard whose master this connection follows (its Sentinel name).
    shard: u8,
    master: Arc<Master>,
    sentinels: Vec<SocketAddr>,
    timeout: Duration,
    buggify: bool,
}

/// How often a client asks the Sentinels who the master is: the simulator's stand-in for the
/// real backend's `+switch-master` subscription (and its polling backstop). A call that times
/// out against a dead master never returns an error to re-resolve on: without this, clients
/// would follow a failover only once the old address answered again.
const SENTINEL_POLL: Duration = Duration::from_millis(250);

/// The master a client talks to, and how many times it moved.
pub struct Master {
    addr: Mutex<SocketAddr>,
    switches: std::sync::atomic::AtomicU64,
}

impl Master {
    fn get(&self) -> SocketAddr {
        *self.addr.lock().unwrap()
    }

    fn set(&self, m: SocketAddr) {
        let mut a = self.addr.lock().unwrap();
        if *a != m {
            *a = m;
            self.switches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn follow_master(rpc: Rpc, sentinels: Vec<SocketAddr>, shard: u8, master: Arc<Master>) {
    loop {
        sleep(SENTINEL_POLL).await;
        resolve_master(&rpc, &sentinels, shard, &master).await;
    }
}

/// Asks the Sentinels in turn who the master is; the first answer wins. Each is asked with a
/// deadline of its own: no Sentinel may hang a client.
async fn resolve_master(rpc: &Rpc, sentinels: &[SocketAddr], shard: u8, master: &Master) {
    for &s in sentinels {
        let ask = rpc.call::<SentinelMsg, SentinelReply>(
            s,
            TAG_SENTINEL,
            SentinelMsg::GetMaster(shard),
            Duration::from_millis(200),
        );
        if let Ok(SentinelReply::Master(m)) = ask.await {
            master.set(m);
            return;
        }
    }
}

impl SimRedisConn {
    pub async fn resolve(&self) {
        resolve_master(&self.rpc, &self.sentinels, self.shard, &self.master).await;
    }
}

impl RedisExec for SimRedisConn {
    async fn exec(&self, c: rd::Cmd) -> TierResult<rd::Reply> {
        buggify::maybe(self.buggify, buggify::before_redis(&c)).await;
        // The slow point after it, if answered and if not (decided before `c` is sent).
        let after = [
            buggify::after_redis(&c, false),
            buggify::after_redis(&c, true),
        ];
        let master = self.master.get();
        let r = self
            .rpc
            .call::<Admin, AdminReply>(master, TAG_REDIS, Admin::Cmd(c), self.timeout)
            .await;
        let r = match r {
            Ok(AdminReply::Reply(rd::Reply::Err(e))) if e.starts_with("READONLY") => {
                self.resolve().await;
                Err(TierError::Unavailable {
                    tier: "redis",
                    detail: e,
                })
            }
            Ok(AdminReply::Reply(r)) => Ok(r),
            Ok(_) => Err(TierError::Refused {
                tier: "redis",
                detail: "unexpected reply".into(),
            }),
            Err(e) => {
                self.resolve().await;
                Err(e)
            }
        };
        let answered = matches!(&r, Ok(reply) if !matches!(reply, rd::Reply::Err(_)));
        buggify::maybe(self.buggify, after[usize::from(answered)]).await;
        r
    }

    fn master_switches(&self) -> u64 {
        self.master
            .switches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn master_addr(&self) -> Option<String> {
        Some(self.master.get().to_string())
    }
}

fn unexpected<T>(tier: &'static str) -> TierResult<T> {
    Err(TierError::Refused {
        tier,
        detail: "unexpected reply".into(),
    })
}

/// One memcached node over the simulated network, with the library's command mapping.
pub type SimMemcached = MemcachedClient<SimMemcachedConn>;

pub struct SimMemcachedConn {
    rpc: Rpc,
    addr: SocketAddr,
    timeout: Duration,
    buggify: bool,
}

impl MemcachedExec for SimMemcachedConn {
    async fn exec(&self, c: mc::Cmd) -> TierResult<mc::Reply> {
        buggify::maybe(self.buggify, buggify::before_memcached(&c)).await;
        self.rpc
            .call::<mc::Cmd, mc::Reply>(self.addr, TAG_MEMCACHED, c, self.timeout)
            .await
    }
}

pub struct SimStore {
    rpc: Rpc,
    primary: SocketAddr,
    replica: SocketAddr,
    timeout: Duration,
    buggify: bool,
    primary_conns: Conns,
    replica_conns: Conns,
}

impl Store for SimStore {
    async fn read(&self, key: &str, from: ReadFrom) -> TierResult<Option<Row>> {
        let (dst, conns) = if from == ReadFrom::Replica {
            (self.replica, &self.replica_conns)
        } else {
            (self.primary, &self.primary_conns)
        };
        let conn = conns.acquire(dst).await?;
        let r = self
            .rpc
            .call::<PgCmd, PgReply>(dst, TAG_PG, PgCmd::Read(key.into()), self.timeout)
            .await;
        drop(conn);
        let r = r?;
        // Between the read and the fill that depends on it.
        delay(self.buggify, "postgres read returning").await;
        match r {
            PgReply::Row(r) => Ok(r),
            _ => unexpected("postgres"),
        }
    }
    async fn write(&self, key: &str, _payload: &[u8]) -> TierResult<Committed> {
        // The model derives the payload from (key, version), as a trigger would.
        match self.primary(PgCmd::Write(key.into())).await? {
            // The written key first, then the siblings the transaction bumped.
            PgReply::Written(mut all) if !all.is_empty() => {
                let version = all.remove(0).1;
                Ok(Committed {
                    version,
                    siblings: all,
                })
            }
            _ => unexpected("postgres"),
        }
    }
    async fn outbox_after(&self, after: u64, limit: u32) -> TierResult<Vec<OutboxRow>> {
        self.outbox(PgCmd::OutboxAfter { after, limit }).await
    }
    async fn outbox_recent(&self, window_ms: u64, limit: u32) -> TierResult<Vec<OutboxRow>> {
        self.outbox(PgCmd::OutboxRecent { window_ms, limit }).await
    }
    async fn outbox_head(&self) -> TierResult<u64> {
        match self.primary(PgCmd::OutboxHead).await? {
            PgReply::Head(h) => Ok(h),
            _ => unexpected("postgres"),
        }
    }
    async fn outbox_head_before(&self, age_ms: u64) -> TierResult<u64> {
        match self.primary(PgCmd::OutboxHeadBefore { age_ms }).await? {
            PgReply::Head(h) => Ok(h),
            _ => unexpected("postgres"),
        }
    }
    async fn outbox_done(&self, ids: &[u64]) -> TierResult<()> {
        self.primary(PgCmd::OutboxDone(ids.to_vec()))
            .await
            .map(drop)
    }
    async fn outbox_undone(&self) -> TierResult<u64> {
        match self.primary(PgCmd::OutboxUndone).await? {
            PgReply::Count(n) => Ok(n),
            _ => unexpected("postgres"),
        }
    }
}

impl SimStore {
    async fn primary(&self, c: PgCmd) -> TierResult<PgReply> {
        let _conn = self.primary_conns.acquire(self.primary).await?;
        self.rpc
            .call::<PgCmd, PgReply>(self.primary, TAG_PG, c, self.timeout)
            .await
    }

    async fn outbox(&self, c: PgCmd) -> TierResult<Vec<OutboxRow>> {
        match self.primary(c).await? {
            PgReply::Outbox(rows) => Ok(rows),
            _ => unexpected("postgres"),
        }
    }
}

/// `aside` over simulated servers, with any strategy.
pub type SimCache<St> = CacheAside<SimRedis, SimMemcached, SimStore, St>;

/// An app node's connection pools to PostgreSQL, as `postgres.pool_max` and
/// `postgres.pool_wait_ms` size the real backend's (`aside::backend::Postgres`): one per server.
#[derive(Debug, Clone, Copy)]
pub struct PgPools {
    pub max: u32,
    pub wait: Duration,
}

impl PgPools {
    /// The library's defaults.
    pub fn defaults() -> PgPools {
        let s = aside::settings::PostgresSettings::default();
        PgPools {
            max: s.pool_max,
            wait: Duration::from_millis(s.pool_wait_ms),
        }
    }
}

/// A pool's connections in the simulator: a query holds one for its round trip, and waits at
/// most `wait` for one to come free, then fails as the real pool does (the message is the
/// library's, [`TierError::pool_exhausted`]).
struct Conns {
    free: tokio::sync::Semaphore,
    max: u32,
    wait: Duration,
}

impl Conns {
    fn new(p: PgPools) -> Conns {
        Conns {
            free: tokio::sync::Semaphore::new(p.max.max(1) as usize),
            max: p.max.max(1),
            wait: p.wait,
        }
    }

    async fn acquire(&self, at: SocketAddr) -> TierResult<tokio::sync::SemaphorePermit<'_>> {
        match tokio::time::timeout(self.wait, self.free.acquire()).await {
            Ok(Ok(conn)) => Ok(conn),
            _ => Err(TierError::pool_exhausted(
                "postgres",
                &at.to_string(),
                self.max,
                self.wait.as_millis() as u64,
            )),
        }
    }
}

/// An `aside` instance on the node at `at` (call it from a task of that node). `timeout`:
/// per-call deadline of the backends themselves; `Duration::MAX` when every call goes through
/// the cache, which times each tier call.
#[allow(clippy::too_many_arguments)]
pub async fn build_cache<St: Strategy>(
    at: IpAddr,
    a: &Addrs,
    strategy: St,
    cfg: CacheConfig,
    name: &str,
    timeout: Duration,
    pools: PgPools,
    buggify: bool,
) -> SimCache<St> {
    let rpc = Rpc::bind(at).await;
    let redis: Vec<SimRedis> = a
        .redis
        .iter()
        .enumerate()
        .map(|(shard, &[m, _])| {
            let master = Arc::new(Master {
                addr: Mutex::new(m),
                switches: Default::default(),
            });
            madsim::task::spawn(follow_master(
                rpc.clone(),
                a.sentinels.clone(),
                shard as u8,
                master.clone(),
            ));
            RedisClient(SimRedisConn {
                rpc: rpc.clone(),
                shard: shard as u8,
                master,
                sentinels: a.sentinels.clone(),
                timeout,
                buggify,
            })
        })
        .collect();
    let map = chaos::workload::shard_map(a.redis.len() as u8);
    let redis = Shards::new(redis, map).expect("one client per shard");
    let client = |addr| {
        MemcachedClient(SimMemcachedConn {
            rpc: rpc.clone(),
            addr,
            timeout,
            buggify,
        })
    };
    let (ring, spares) = a
        .memcached
        .split_at(usize::from(chaos::scenario::MEMCACHED_NODES));
    let names: Vec<String> = ring.iter().map(|m| m.to_string()).collect();
    let nodes = ring.iter().map(|&addr| client(addr)).collect();
    let mut pool = Pool::new(Ring::new(&names).expect("three nodes"), nodes, &cfg);
    for &addr in spares {
        pool = pool.with_spare(addr.to_string(), client(addr), &cfg);
    }
    let store = SimStore {
        rpc,
        primary: a.pg[0],
        replica: a.pg[1],
        timeout,
        buggify,
        primary_conns: Conns::new(pools),
        replica_conns: Conns::new(pools),
    };
    CacheAside::sharded(redis, pool, store, strategy, cfg, name)
}
