//! The simulated world (sim build only): madsim nodes with their own addresses running the server
//! models, `aside` instances on three application nodes with backends that speak to those nodes
//! over madsim's network, clients that record every op, a nemesis that injects the scenario's
//! faults, and end-of-run probes. One seed fixes everything.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::envelope::{self, Entry, Kind};
use aside::tier::{MemcachedLike, ReadFrom, RedisLike, Row, SetCond, Store, TierError, TierResult};
use aside::{Builtin, CacheAside, CacheConfig, Key, Pool, Ring};
use invariants::gen::SplitMix;
use invariants::history::{Header, OpKind, Outcome, Probe, Source};
use invariants::write::{op, Writer};
use madsim::net::{Endpoint, NetSim};
use madsim::runtime::Handle;
use madsim::time::{sleep, Instant};

use crate::models::memcached::{self as mc, MemcachedModel};
use crate::models::postgres::{PgModel, Wal};
use crate::models::redis::{self as rd, RedisModel};
use crate::scenario::{FaultKind, Scenario, Zipf};

const TAG_REDIS: u64 = 1;
const TAG_MEMCACHED: u64 = 2;
const TAG_PG: u64 = 3;
const TAG_SENTINEL: u64 = 4;
const TAG_REPL: u64 = 5;
/// Response tags start here, per endpoint.
const TAG_REPLY_BASE: u64 = 1 << 32;

fn ip(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
}

fn rand_in(rng: &mut SplitMix, (lo, hi): (u64, u64)) -> u64 {
    lo + rng.below(hi.saturating_sub(lo).max(1))
}

/// Counts every message the harness sends, for `cargo sim bench`.
pub static MESSAGES: AtomicU64 = AtomicU64::new(0);

/// Request/response over a madsim endpoint without serialization (payloads are `Box<dyn Any>`)
/// and without panics: a lost or late reply is a timeout, never a crash of the simulation.
#[derive(Clone)]
struct Rpc {
    ep: Endpoint,
    seq: Arc<AtomicU64>,
}

impl Rpc {
    async fn bind(at: IpAddr) -> Rpc {
        let ep = Endpoint::bind(SocketAddr::new(at, 0))
            .await
            .expect("bind in the simulator");
        Rpc {
            ep,
            seq: Arc::new(AtomicU64::new(TAG_REPLY_BASE)),
        }
    }

    async fn call<C: Send + Sync + 'static, R: Send + Sync + 'static>(
        &self,
        dst: SocketAddr,
        tag: u64,
        cmd: C,
        timeout: Duration,
    ) -> Result<R, TierError> {
        let reply_tag = self.seq.fetch_add(1, Relaxed);
        MESSAGES.fetch_add(1, Relaxed);
        let tier = match tag {
            TAG_REDIS => "redis",
            TAG_MEMCACHED => "memcached",
            TAG_PG => "postgres",
            _ => "sentinel",
        };
        if self
            .ep
            .send_to_raw(dst, tag, Box::new((reply_tag, cmd)))
            .await
            .is_err()
        {
            return Err(TierError::Unavailable {
                tier,
                detail: format!("{dst} unreachable"),
            });
        }
        // `Duration::MAX`: the caller enforces its own deadline (the cache times every tier
        // call), so no second timer goes on madsim's timer heap for every message.
        let reply = if timeout == Duration::MAX {
            Ok(self.ep.recv_from_raw(reply_tag).await)
        } else {
            madsim::time::timeout(timeout, self.ep.recv_from_raw(reply_tag)).await
        };
        match reply {
            Ok(Ok((payload, _))) => {
                payload
                    .downcast::<R>()
                    .map(|b| *b)
                    .map_err(|_| TierError::Refused {
                        tier,
                        detail: "reply of the wrong type".into(),
                    })
            }
            Ok(Err(e)) => Err(TierError::Unavailable {
                tier,
                detail: e.to_string(),
            }),
            Err(_) => Err(TierError::Timeout {
                tier,
                ms: timeout.as_millis() as u64,
            }),
        }
    }
}

/// Receive loops per server: madsim sleeps at least 1 ms in every receive, so one loop would
/// cap a server at 1000 messages per second of simulated time and queue everything behind it.
const RECEIVERS: usize = 64;

/// Serves requests of type `C` on `tag` with `handle`, replying asynchronously.
async fn serve<C, R, F, Fut>(ep: Endpoint, tag: u64, handle: F)
where
    C: Send + Sync + 'static,
    R: Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let handle = Arc::new(handle);
    for _ in 1..RECEIVERS {
        madsim::task::spawn(receive(ep.clone(), tag, handle.clone()));
    }
    receive(ep, tag, handle).await;
}

async fn receive<C, R, F, Fut>(ep: Endpoint, tag: u64, handle: Arc<F>)
where
    C: Send + Sync + 'static,
    R: Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    loop {
        let Ok((payload, from)) = ep.recv_from_raw(tag).await else {
            continue;
        };
        let Ok(b) = payload.downcast::<(u64, C)>() else {
            continue;
        };
        let (reply_tag, cmd) = *b;
        let (ep, handle) = (ep.clone(), handle.clone());
        madsim::task::spawn(async move {
            let reply = handle(cmd).await;
            MESSAGES.fetch_add(1, Relaxed);
            let _ = ep.send_to_raw(from, reply_tag, Box::new(reply)).await;
        });
    }
}

fn now_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// Redis: a master and a replica, asynchronous replication, three Sentinels.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Master,
    Replica(SocketAddr),
}

struct RedisNode {
    model: Mutex<RedisModel>,
    role: Mutex<Role>,
}

/// What a Redis node answers besides commands.
enum Admin {
    Cmd(rd::Cmd),
    Ping,
    /// REPLICAOF NO ONE.
    Promote,
    /// REPLICAOF host port: become a replica and resync (discarding own writes).
    Follow(SocketAddr),
    /// A full copy for a resyncing replica.
    Snapshot,
}

enum AdminReply {
    Reply(rd::Reply),
    Pong(Role),
    Snapshot(Box<RedisModel>),
    Done,
}

async fn redis_node(addr: SocketAddr, role: Role, replica: Option<SocketAddr>, start: Instant) {
    let node = Arc::new(RedisNode {
        model: Mutex::new(RedisModel::default()),
        role: Mutex::new(role),
    });
    let ep = Endpoint::bind(addr).await.expect("bind redis");
    let rpc = Rpc::bind(addr.ip()).await;
    if let Role::Replica(master) = role {
        resync(&node, &rpc, master).await;
    }
    // Replication: a master ships its writes to the replica every few ms; a replica applies them.
    {
        let (node, ep) = (node.clone(), ep.clone());
        madsim::task::spawn(async move {
            loop {
                sleep(Duration::from_millis(5)).await;
                let target = match *node.role.lock().unwrap() {
                    Role::Master => replica,
                    Role::Replica(_) => None,
                };
                let batch = {
                    let mut m = node.model.lock().unwrap();
                    m.replicating = target.is_some();
                    m.take_repl()
                };
                if let (Some(t), false) = (target, batch.is_empty()) {
                    MESSAGES.fetch_add(1, Relaxed);
                    let _ = ep.send_to_raw(t, TAG_REPL, Box::new(batch)).await;
                }
            }
        });
    }
    {
        let (node, ep) = (node.clone(), ep.clone());
        madsim::task::spawn(async move {
            loop {
                let Ok((payload, from)) = ep.recv_from_raw(TAG_REPL).await else {
                    continue;
                };
                let Ok(batch) = payload.downcast::<Vec<rd::Repl>>() else {
                    continue;
                };
                if *node.role.lock().unwrap() == Role::Replica(from) {
                    let mut m = node.model.lock().unwrap();
                    for r in *batch {
                        m.apply(r);
                    }
                }
            }
        });
    }
    let handler_node = node.clone();
    serve(ep, TAG_REDIS, move |a: Admin| {
        let (node, rpc) = (handler_node.clone(), rpc.clone());
        async move {
            match a {
                Admin::Cmd(c) => {
                    let writes =
                        !matches!(c, rd::Cmd::Get(_) | rd::Cmd::Scan { .. } | rd::Cmd::DbSize);
                    if writes && matches!(*node.role.lock().unwrap(), Role::Replica(_)) {
                        return AdminReply::Reply(rd::Reply::Err(
                            "READONLY You can't write against a read only replica.".into(),
                        ));
                    }
                    AdminReply::Reply(node.model.lock().unwrap().exec(now_ms(start), c))
                }
                Admin::Ping => AdminReply::Pong(*node.role.lock().unwrap()),
                Admin::Promote => {
                    *node.role.lock().unwrap() = Role::Master;
                    AdminReply::Done
                }
                Admin::Follow(master) => {
                    *node.role.lock().unwrap() = Role::Replica(master);
                    resync(&node, &rpc, master).await;
                    AdminReply::Done
                }
                Admin::Snapshot => {
                    AdminReply::Snapshot(Box::new(node.model.lock().unwrap().clone()))
                }
            }
        }
    })
    .await;
}

async fn resync(node: &RedisNode, rpc: &Rpc, master: SocketAddr) {
    for _ in 0..50 {
        if let Ok(AdminReply::Snapshot(m)) = rpc
            .call::<Admin, AdminReply>(
                master,
                TAG_REDIS,
                Admin::Snapshot,
                Duration::from_millis(200),
            )
            .await
        {
            node.model.lock().unwrap().resync_from(&m);
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// A Sentinel: pings the master, agrees with the others that it is down (quorum), the leader of
/// the new epoch (majority vote) promotes the replica, and returning old masters are demoted.
struct SentinelState {
    master: SocketAddr,
    replica: Option<SocketAddr>,
    epoch: u64,
    voted: u64,
    sdown: bool,
}

enum SentinelMsg {
    GetMaster,
    IsDown(SocketAddr),
    Vote(u64),
    Config {
        epoch: u64,
        master: SocketAddr,
        replica: Option<SocketAddr>,
    },
}

enum SentinelReply {
    Master(SocketAddr),
    Down(bool),
    Voted(bool),
    Ok,
}

const DOWN_AFTER: Duration = Duration::from_millis(300);

async fn sentinel_node(
    me: SocketAddr,
    peers: Vec<SocketAddr>,
    master: SocketAddr,
    replica: Option<SocketAddr>,
    quorum: usize,
) {
    let st = Arc::new(Mutex::new(SentinelState {
        master,
        replica,
        epoch: 0,
        voted: 0,
        sdown: false,
    }));
    let ep = Endpoint::bind(me).await.expect("bind sentinel");
    let rpc = Rpc::bind(me.ip()).await;
    let handler_state = st.clone();
    madsim::task::spawn(serve(ep, TAG_SENTINEL, move |m: SentinelMsg| {
        let st = handler_state.clone();
        async move {
            let mut s = st.lock().unwrap();
            match m {
                SentinelMsg::GetMaster => SentinelReply::Master(s.master),
                SentinelMsg::IsDown(a) => SentinelReply::Down(a == s.master && s.sdown),
                SentinelMsg::Vote(epoch) if epoch > s.voted => {
                    s.voted = epoch;
                    SentinelReply::Voted(true)
                }
                SentinelMsg::Vote(_) => SentinelReply::Voted(false),
                SentinelMsg::Config {
                    epoch,
                    master,
                    replica,
                } => {
                    if epoch > s.epoch {
                        (s.epoch, s.master, s.replica, s.sdown) = (epoch, master, replica, false);
                    }
                    SentinelReply::Ok
                }
            }
        }
    }));
    let mut last_ok = Instant::now();
    // Old masters seen since a failover, to demote when they come back.
    let mut demote: Vec<SocketAddr> = Vec::new();
    loop {
        sleep(Duration::from_millis(100)).await;
        let (master, replica, epoch) = {
            let s = st.lock().unwrap();
            (s.master, s.replica, s.epoch)
        };
        match rpc
            .call::<Admin, AdminReply>(master, TAG_REDIS, Admin::Ping, Duration::from_millis(100))
            .await
        {
            Ok(AdminReply::Pong(_)) => {
                last_ok = Instant::now();
                st.lock().unwrap().sdown = false;
            }
            _ => st.lock().unwrap().sdown = last_ok.elapsed() >= DOWN_AFTER,
        }
        for old in std::mem::take(&mut demote) {
            match rpc
                .call::<Admin, AdminReply>(old, TAG_REDIS, Admin::Ping, Duration::from_millis(100))
                .await
            {
                Ok(AdminReply::Pong(Role::Master)) if old != master => {
                    let _ = rpc
                        .call::<Admin, AdminReply>(
                            old,
                            TAG_REDIS,
                            Admin::Follow(master),
                            Duration::from_secs(5),
                        )
                        .await;
                    st.lock().unwrap().replica = Some(old);
                }
                Ok(AdminReply::Pong(_)) => {}
                _ => demote.push(old),
            }
        }
        if !st.lock().unwrap().sdown {
            continue;
        }
        // Objectively down once a quorum of Sentinels says so.
        let is_down = |r: &SentinelReply| matches!(r, SentinelReply::Down(true));
        let agree = 1 + ask_peers(&rpc, &peers, || SentinelMsg::IsDown(master), is_down).await;
        let Some(candidate) = replica else { continue };
        if agree < quorum {
            continue;
        }
        // Leader election for the next epoch: a majority of all Sentinels must vote for us.
        let new_epoch = epoch.max(st.lock().unwrap().voted) + 1;
        st.lock().unwrap().voted = new_epoch;
        let voted = |r: &SentinelReply| matches!(r, SentinelReply::Voted(true));
        let votes = 1 + ask_peers(&rpc, &peers, || SentinelMsg::Vote(new_epoch), voted).await;
        if votes * 2 <= peers.len() + 1 {
            sleep(Duration::from_millis(
                // Each Sentinel backs off by a different amount, so split votes do not repeat.
                50 + u64::from(match me.ip() {
                    IpAddr::V4(v4) => v4.octets()[3],
                    IpAddr::V6(v6) => v6.octets()[15],
                }) * 37,
            ))
            .await;
            continue;
        }
        if rpc
            .call::<Admin, AdminReply>(
                candidate,
                TAG_REDIS,
                Admin::Promote,
                Duration::from_millis(200),
            )
            .await
            .is_err()
        {
            continue;
        }
        {
            let mut s = st.lock().unwrap();
            (s.epoch, s.master, s.replica, s.sdown) = (new_epoch, candidate, None, false);
        }
        last_ok = Instant::now();
        demote.push(master);
        for &p in &peers {
            let cfg = SentinelMsg::Config {
                epoch: new_epoch,
                master: candidate,
                replica: Some(master),
            };
            let _ = rpc
                .call::<SentinelMsg, SentinelReply>(
                    p,
                    TAG_SENTINEL,
                    cfg,
                    Duration::from_millis(100),
                )
                .await;
        }
    }
}

/// How many of the other Sentinels answer `msg` with a reply that `yes` accepts.
async fn ask_peers(
    rpc: &Rpc,
    peers: &[SocketAddr],
    msg: impl Fn() -> SentinelMsg,
    yes: impl Fn(&SentinelReply) -> bool,
) -> usize {
    let mut n = 0;
    for &p in peers {
        let r = rpc
            .call::<SentinelMsg, SentinelReply>(p, TAG_SENTINEL, msg(), Duration::from_millis(100))
            .await;
        n += usize::from(r.as_ref().is_ok_and(&yes));
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Memcached and PostgreSQL nodes.

async fn memcached_node(addr: SocketAddr, start: Instant) {
    // A restart begins empty: the model lives as long as this task.
    let model = Arc::new(Mutex::new(MemcachedModel::default()));
    let ep = Endpoint::bind(addr).await.expect("bind memcached");
    serve(ep, TAG_MEMCACHED, move |c: mc::Cmd| {
        let m = model.clone();
        async move { m.lock().unwrap().exec(now_ms(start), c) }
    })
    .await;
}

enum PgCmd {
    Read(String),
    Write(String),
    WalAfter(u64),
}

enum PgReply {
    Row(Option<Row>),
    Version(u64),
    Wal(Vec<Wal>),
}

async fn pg_node(
    addr: SocketAddr,
    keys: Vec<String>,
    primary: Option<SocketAddr>,
    lag_ms: u64,
    query_us: (u64, u64),
    seed: u64,
    start: Instant,
) {
    let model = Arc::new(Mutex::new(PgModel::seeded(keys.iter().map(String::as_str))));
    let ep = Endpoint::bind(addr).await.expect("bind postgres");
    if let Some(p) = primary {
        let (model, rpc) = (model.clone(), Rpc::bind(addr.ip()).await);
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
                    model.lock().unwrap().apply(&w, now_ms(start), lag_ms);
                }
            }
        });
    }
    let rng = Arc::new(Mutex::new(SplitMix(seed)));
    serve(ep, TAG_PG, move |c: PgCmd| {
        let (m, rng) = (model.clone(), rng.clone());
        async move {
            let d = rand_in(&mut rng.lock().unwrap(), query_us);
            sleep(Duration::from_micros(d)).await;
            let mut m = m.lock().unwrap();
            match c {
                PgCmd::Read(k) => PgReply::Row(m.read(&k)),
                PgCmd::Write(k) => PgReply::Version(m.write(&k, now_ms(start))),
                PgCmd::WalAfter(lsn) => PgReply::Wal(m.wal_after(lsn).to_vec()),
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The backends `aside` uses inside the simulator: the same tier traits as the real ones.

/// Redis through the Sentinels: re-resolves on errors and READONLY, like the real backend.
pub struct SimRedis {
    rpc: Rpc,
    master: Arc<Mutex<SocketAddr>>,
    sentinels: Vec<SocketAddr>,
    timeout: Duration,
}

/// How often a client asks the Sentinels who the master is: the simulator's stand-in for the
/// real backend's `+switch-master` subscription (and its polling backstop). A call that times
/// out against a dead master never returns an error to re-resolve on: without this, clients
/// would follow a failover only once the old address answered again.
const SENTINEL_POLL: Duration = Duration::from_millis(250);

async fn follow_master(rpc: Rpc, sentinels: Vec<SocketAddr>, master: Arc<Mutex<SocketAddr>>) {
    loop {
        sleep(SENTINEL_POLL).await;
        resolve_master(&rpc, &sentinels, &master).await;
    }
}

/// Asks the Sentinels in turn who the master is; the first answer wins. Each is asked with a
/// deadline of its own: no Sentinel may hang a client.
async fn resolve_master(rpc: &Rpc, sentinels: &[SocketAddr], master: &Mutex<SocketAddr>) {
    for &s in sentinels {
        let ask = rpc.call::<SentinelMsg, SentinelReply>(
            s,
            TAG_SENTINEL,
            SentinelMsg::GetMaster,
            Duration::from_millis(200),
        );
        if let Ok(SentinelReply::Master(m)) = ask.await {
            *master.lock().unwrap() = m;
            return;
        }
    }
}

impl SimRedis {
    async fn resolve(&self) {
        resolve_master(&self.rpc, &self.sentinels, &self.master).await;
    }

    /// The `fill_if_newer` and `tombstone` scripts: one script, the incoming kind an argument.
    async fn versioned(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        px_ms: u64,
        kind: Kind,
    ) -> TierResult<bool> {
        match self
            .exec(rd::Cmd::Versioned {
                key: key.into(),
                value: value.to_vec(),
                version,
                px_ms,
                kind,
            })
            .await?
        {
            rd::Reply::Bool(b) => Ok(b),
            _ => unexpected("redis"),
        }
    }

    async fn exec(&self, c: rd::Cmd) -> TierResult<rd::Reply> {
        let master = *self.master.lock().unwrap();
        let r = self
            .rpc
            .call::<Admin, AdminReply>(master, TAG_REDIS, Admin::Cmd(c), self.timeout)
            .await;
        match r {
            Ok(AdminReply::Reply(rd::Reply::Err(e))) if e.starts_with("READONLY") => {
                self.resolve().await;
                Err(TierError::Unavailable {
                    tier: "redis",
                    detail: e,
                })
            }
            Ok(AdminReply::Reply(rd::Reply::Err(e))) => Err(TierError::Refused {
                tier: "redis",
                detail: e,
            }),
            Ok(AdminReply::Reply(r)) => Ok(r),
            Ok(_) => Err(TierError::Refused {
                tier: "redis",
                detail: "unexpected reply".into(),
            }),
            Err(e) => {
                self.resolve().await;
                Err(e)
            }
        }
    }
}

fn unexpected<T>(tier: &'static str) -> TierResult<T> {
    Err(TierError::Refused {
        tier,
        detail: "unexpected reply".into(),
    })
}

impl RedisLike for SimRedis {
    async fn get(&self, key: &str) -> TierResult<Option<Vec<u8>>> {
        match self.exec(rd::Cmd::Get(key.into())).await? {
            rd::Reply::Bulk(v) => Ok(v),
            _ => unexpected("redis"),
        }
    }
    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64, cond: SetCond) -> TierResult<bool> {
        let cond = match cond {
            SetCond::Always => rd::Cond::Always,
            SetCond::Nx => rd::Cond::Nx,
            SetCond::Xx => rd::Cond::Xx,
        };
        match self
            .exec(rd::Cmd::Set {
                key: key.into(),
                value: value.to_vec(),
                px_ms: ttl_ms,
                cond,
            })
            .await?
        {
            rd::Reply::Bool(b) => Ok(b),
            _ => unexpected("redis"),
        }
    }
    async fn del(&self, keys: &[String]) -> TierResult<u64> {
        match self.exec(rd::Cmd::Del(keys.to_vec())).await? {
            rd::Reply::Int(n) => Ok(n),
            _ => unexpected("redis"),
        }
    }
    async fn scan(&self, cursor: u64, pattern: &str, count: u32) -> TierResult<(u64, Vec<String>)> {
        match self
            .exec(rd::Cmd::Scan {
                cursor,
                pattern: pattern.into(),
                count,
            })
            .await?
        {
            rd::Reply::Scan(c, k) => Ok((c, k)),
            _ => unexpected("redis"),
        }
    }
    async fn fill_if_newer(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        self.versioned(key, value, version, ttl_ms, Kind::Value)
            .await
    }
    async fn tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        self.versioned(key, tombstone, version, ttl_ms, Kind::Tombstone)
            .await
    }
    async fn release(&self, key: &str, token: &str) -> TierResult<bool> {
        match self
            .exec(rd::Cmd::Release {
                key: key.into(),
                token: token.into(),
            })
            .await?
        {
            rd::Reply::Bool(b) => Ok(b),
            _ => unexpected("redis"),
        }
    }
}

pub struct SimMemcached {
    rpc: Rpc,
    addr: SocketAddr,
    timeout: Duration,
}

impl SimMemcached {
    async fn exec(&self, c: mc::Cmd) -> TierResult<mc::Reply> {
        match self
            .rpc
            .call::<mc::Cmd, mc::Reply>(self.addr, TAG_MEMCACHED, c, self.timeout)
            .await?
        {
            mc::Reply::Err(e) => Err(TierError::Refused {
                tier: "memcached",
                detail: e,
            }),
            r => Ok(r),
        }
    }
}

impl MemcachedLike for SimMemcached {
    async fn gets(&self, key: &str) -> TierResult<Option<(Vec<u8>, u64)>> {
        match self.exec(mc::Cmd::Gets(key.into())).await? {
            mc::Reply::Value(v) => Ok(v),
            _ => unexpected("memcached"),
        }
    }
    async fn set(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<()> {
        self.exec(mc::Cmd::Set {
            key: key.into(),
            value: value.to_vec(),
            ttl_s,
        })
        .await
        .map(drop)
    }
    async fn add(&self, key: &str, value: &[u8], ttl_s: u32) -> TierResult<bool> {
        match self
            .exec(mc::Cmd::Add {
                key: key.into(),
                value: value.to_vec(),
                ttl_s,
            })
            .await?
        {
            mc::Reply::Stored(b) => Ok(b),
            _ => unexpected("memcached"),
        }
    }
    async fn cas(&self, key: &str, value: &[u8], ttl_s: u32, cas: u64) -> TierResult<bool> {
        match self
            .exec(mc::Cmd::Cas {
                key: key.into(),
                value: value.to_vec(),
                ttl_s,
                cas,
            })
            .await?
        {
            mc::Reply::Stored(b) => Ok(b),
            _ => unexpected("memcached"),
        }
    }
    async fn delete(&self, key: &str) -> TierResult<bool> {
        match self.exec(mc::Cmd::Delete(key.into())).await? {
            mc::Reply::Deleted(b) => Ok(b),
            _ => unexpected("memcached"),
        }
    }
    async fn flush_all(&self) -> TierResult<()> {
        self.exec(mc::Cmd::FlushAll).await.map(drop)
    }
}

pub struct SimStore {
    rpc: Rpc,
    primary: SocketAddr,
    replica: SocketAddr,
    timeout: Duration,
}

impl Store for SimStore {
    async fn read(&self, key: &str, from: ReadFrom) -> TierResult<Option<Row>> {
        let dst = if from == ReadFrom::Replica {
            self.replica
        } else {
            self.primary
        };
        match self
            .rpc
            .call::<PgCmd, PgReply>(dst, TAG_PG, PgCmd::Read(key.into()), self.timeout)
            .await?
        {
            PgReply::Row(r) => Ok(r),
            _ => unexpected("postgres"),
        }
    }
    async fn write(&self, key: &str, _payload: &[u8]) -> TierResult<u64> {
        // The model derives the payload from (key, version), as a trigger would.
        match self
            .rpc
            .call::<PgCmd, PgReply>(self.primary, TAG_PG, PgCmd::Write(key.into()), self.timeout)
            .await?
        {
            PgReply::Version(v) => Ok(v),
            _ => unexpected("postgres"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Addresses of the world.
struct Addrs {
    redis: [SocketAddr; 2],
    sentinels: Vec<SocketAddr>,
    memcached: Vec<SocketAddr>,
    pg: [SocketAddr; 2],
}

impl Addrs {
    fn new() -> Addrs {
        Addrs {
            redis: [
                SocketAddr::new(ip(1, 1), 6379),
                SocketAddr::new(ip(1, 2), 6379),
            ],
            sentinels: (0..3)
                .map(|i| SocketAddr::new(ip(1, 11 + i), 26379))
                .collect(),
            memcached: (0..3)
                .map(|i| SocketAddr::new(ip(2, 1 + i), 11211))
                .collect(),
            pg: [
                SocketAddr::new(ip(3, 1), 5432),
                SocketAddr::new(ip(3, 2), 5432),
            ],
        }
    }
}

type SimCache = CacheAside<SimRedis, SimMemcached, SimStore, Builtin>;

const SUBREDDITS: [&str; 4] = ["rust", "programming", "python", "golang"];
const SORTS: [&str; 3] = ["hot", "new", "top"];

/// The seed's key shapes, most popular first (Zipf rank = position): a tenth hot listings
/// (`listings:v1:r/rust:hot`, invalidated by pattern), then posts (`posts:v1:42`) and comment
/// threads (`comments:v1:42:thread`) two to one.
fn keyspace(n: usize) -> Vec<String> {
    let listings = (n / 10).clamp(1, SUBREDDITS.len() * SORTS.len());
    let mut keys: Vec<Key> = (0..listings)
        .map(|i| {
            Key::new(
                "listings",
                1,
                &format!(
                    "r/{}:{}",
                    SUBREDDITS[i % SUBREDDITS.len()],
                    SORTS[i / SUBREDDITS.len()]
                ),
            )
        })
        .collect::<Result<_, _>>()
        .expect("valid");
    for i in 0..n - listings {
        let k = if i % 3 == 2 {
            Key::new("comments", 1, &format!("{i}:thread"))
        } else {
            Key::new("posts", 1, &format!("{i}"))
        };
        keys.push(k.expect("valid"));
    }
    keys.iter().map(Key::to_string).collect()
}

/// `r/rust:` for a listing key, the prefix its siblings share.
fn listing_prefix(key: &Key) -> Option<String> {
    if !key.as_str().starts_with("listings:") {
        return None;
    }
    key.id().split_once(':').map(|(sub, _)| format!("{sub}:"))
}

/// An `aside` instance on this node. `timeout`: per-call deadline of the backends themselves;
/// `Duration::MAX` when every call goes through the cache, which times each tier call.
async fn build_cache(
    at: IpAddr,
    a: &Addrs,
    strategy: Builtin,
    cfg: CacheConfig,
    name: &str,
    timeout: Duration,
) -> SimCache {
    let rpc = Rpc::bind(at).await;
    let master = Arc::new(Mutex::new(a.redis[0]));
    madsim::task::spawn(follow_master(
        rpc.clone(),
        a.sentinels.clone(),
        master.clone(),
    ));
    let redis = SimRedis {
        rpc: rpc.clone(),
        master,
        sentinels: a.sentinels.clone(),
        timeout,
    };
    let names: Vec<String> = a.memcached.iter().map(|m| m.to_string()).collect();
    let nodes = a
        .memcached
        .iter()
        .map(|&addr| SimMemcached {
            rpc: rpc.clone(),
            addr,
            timeout,
        })
        .collect();
    let pool = Pool::new(Ring::new(&names).expect("three nodes"), nodes, &cfg);
    let store = SimStore {
        rpc,
        primary: a.pg[0],
        replica: a.pg[1],
        timeout,
    };
    CacheAside::new(redis, pool, store, strategy, cfg, name)
}

/// One recorded op, before it becomes a history line.
struct Rec {
    client: u64,
    key: String,
    f: OpKind,
    invoke_ns: u64,
    complete_ns: u64,
    outcome: Outcome,
    version: Option<u64>,
    source: Option<Source>,
    payload: Option<String>,
}

/// What a run produced.
pub struct RunOutput {
    pub history: Vec<u8>,
    pub ops: u64,
    pub sim_ns: u64,
    /// Reads the app nodes answered from an aged entry (stale-while-revalidate), which the
    /// history cannot tell from fresh hits.
    pub stale_served: u64,
}

/// The commit this binary was built from (for seed logs).
pub const COMMIT: &str = env!("ASIDE_COMMIT");

/// Runs `scenario` with `strategy` inside the current madsim runtime and returns its history.
pub async fn simulate(scenario: &Scenario, strategy: Builtin, seed: u64) -> RunOutput {
    let handle = Handle::current();
    let start = Instant::now();
    let a = Arc::new(Addrs::new());
    let keys: Vec<String> = keyspace(scenario.keys);

    let mk = |name: &str, at: IpAddr| handle.create_node().name(name).ip(at).build();
    let (m, r) = (a.redis[0], a.redis[1]);
    let redis_nodes = [
        handle
            .create_node()
            .name("redis-master")
            .ip(m.ip())
            .init(move || redis_node(m, Role::Master, Some(r), start))
            .build(),
        handle
            .create_node()
            .name("redis-replica")
            .ip(r.ip())
            .init(move || redis_node(r, Role::Replica(m), Some(m), start))
            .build(),
    ];
    for (i, &s) in a.sentinels.iter().enumerate() {
        let peers: Vec<SocketAddr> = a.sentinels.iter().copied().filter(|&p| p != s).collect();
        let n = mk(&format!("sentinel-{}", i + 1), s.ip());
        n.spawn(sentinel_node(s, peers, m, Some(r), 2));
    }
    let memcached_nodes: Vec<_> = a
        .memcached
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            handle
                .create_node()
                .name(format!("memcached-{}", i + 1))
                .ip(addr.ip())
                .init(move || memcached_node(addr, start))
                .build()
        })
        .collect();
    let (pg_query, lag) = (scenario.db_query_us, scenario.pg_replica_lag_ms);
    let (p0, p1) = (a.pg[0], a.pg[1]);
    let (k0, k1) = (keys.clone(), keys.clone());
    mk("pg-primary", p0.ip()).spawn(pg_node(p0, k0, None, 0, pg_query, seed ^ 0x9e37, start));
    mk("pg-replica", p1.ip()).spawn(pg_node(
        p1,
        k1,
        Some(p0),
        lag,
        pg_query,
        seed ^ 0x7f4a,
        start,
    ));
    // Servers bind before clients connect.
    sleep(Duration::from_millis(50)).await;
    let t0 = start.elapsed().as_nanos() as u64;

    let recs: Arc<Mutex<Vec<Rec>>> = Arc::default();
    let cfg = scenario.cache_config();
    let zipf = Arc::new(Zipf::new(scenario.keys, scenario.zipf_s));
    let keys = Arc::new(keys);
    let mut clients = Vec::new();
    let mut caches = Vec::new();
    for app in 0..scenario.apps {
        let at = ip(4, 1 + app as u8);
        let node = mk(&format!("app-{}", app + 1), at);
        // One `aside` instance per application node, shared by its clients, as in production:
        // single-flight coalesces their misses and they share breakers and metrics.
        let (a2, cfg2) = (a.clone(), cfg.clone());
        let cache: Arc<SimCache> = Arc::new(
            node.spawn(async move {
                build_cache(
                    at,
                    &a2,
                    strategy,
                    cfg2,
                    &format!("app-{}", app + 1),
                    Duration::MAX,
                )
                .await
            })
            .await
            .expect("the app node builds its cache"),
        );
        caches.push(cache.clone());
        for c in 0..scenario.clients_per_app {
            let (recs, zipf, keys, sc, cache) = (
                recs.clone(),
                zipf.clone(),
                keys.clone(),
                scenario.clone(),
                cache.clone(),
            );
            let client = (app * scenario.clients_per_app + c) as u64;
            clients.push(node.spawn(async move {
                let mut rng = SplitMix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (client + 1));
                let ns = |s: Instant| s.elapsed().as_nanos() as u64;
                while (ns(start) - t0) / 1_000_000 < sc.duration_ms {
                    let k = &keys[zipf.sample((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)];
                    let key = Key::parse(k).expect("valid");
                    let write =
                        (rng.next_u64() >> 11) as f64 / ((1u64 << 53) as f64) < sc.write_ratio;
                    let invoke = ns(start);
                    let rec = if write {
                        let r = cache.write(&key, b"").await;
                        // A new listing changes every sort order of its subreddit: drop them all
                        // by pattern (SCAN-based; the write's own key is already invalidated).
                        if let Some(sub) = listing_prefix(&key) {
                            let _ = cache.invalidate_prefix("listings", 1, &sub).await;
                        }
                        let (outcome, version) = match r {
                            Ok(w) => (Outcome::Ok, Some(w.version)),
                            Err(aside::Error::Db(TierError::Refused { .. })) => {
                                (Outcome::Fail, None)
                            }
                            Err(_) => (Outcome::Unknown, None),
                        };
                        Rec {
                            client,
                            key: k.clone(),
                            f: OpKind::Write,
                            invoke_ns: invoke,
                            complete_ns: ns(start),
                            outcome,
                            version,
                            source: None,
                            payload: None,
                        }
                    } else {
                        match cache.get(&key).await {
                            Ok(Some(g)) => {
                                let source = if g.waited {
                                    // Served by another read's load: no hit, no query of its own.
                                    Source::Wait
                                } else {
                                    match g.source {
                                        aside::Source::L1 => Source::L1,
                                        aside::Source::L2 => Source::L2,
                                        aside::Source::Db => Source::Db,
                                        aside::Source::Replica => Source::Replica,
                                    }
                                };
                                let payload = String::from_utf8(g.row.payload).ok();
                                Rec {
                                    client,
                                    key: k.clone(),
                                    f: OpKind::Read,
                                    invoke_ns: invoke,
                                    complete_ns: ns(start),
                                    outcome: Outcome::Ok,
                                    version: Some(g.row.version),
                                    source: Some(source),
                                    payload,
                                }
                            }
                            _ => Rec {
                                client,
                                key: k.clone(),
                                f: OpKind::Read,
                                invoke_ns: invoke,
                                complete_ns: ns(start),
                                outcome: Outcome::Fail,
                                version: None,
                                source: None,
                                payload: None,
                            },
                        }
                    };
                    recs.lock().unwrap().push(rec);
                    sleep(Duration::from_millis(rand_in(&mut rng, sc.think_ms))).await;
                }
            }));
        }
    }

    // The nemesis: the scenario's faults, at their times, each healed after its span.
    let mut faults: Vec<(u64, bool, serde_json::Value)> = Vec::new();
    let mut plan: Vec<(u64, bool, FaultKind)> = scenario
        .faults
        .iter()
        .flat_map(|f| [(f.at_ms, true, f.kind), (f.at_ms + f.for_ms, false, f.kind)])
        .collect();
    plan.sort_by_key(|p| (p.0, !p.1));
    for (at_ms, begin, kind) in plan {
        let due = Duration::from_nanos(t0) + Duration::from_millis(at_ms);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            sleep(wait).await;
        }
        let net = NetSim::current();
        match (kind, begin) {
            (FaultKind::KillRedisMaster, true) => handle.kill(redis_nodes[0].id()),
            (FaultKind::KillRedisMaster, false) => handle.restart(redis_nodes[0].id()),
            (FaultKind::RestartMemcached(i), true) => handle.kill(memcached_nodes[i].id()),
            (FaultKind::RestartMemcached(i), false) => handle.restart(memcached_nodes[i].id()),
            (FaultKind::PauseMemcached(i), true) => net.clog_node(memcached_nodes[i].id()),
            (FaultKind::PauseMemcached(i), false) => net.unclog_node(memcached_nodes[i].id()),
        }
        faults.push((start.elapsed().as_nanos() as u64, begin, kind.describe()));
    }
    for c in clients {
        let _ = c.await;
    }
    sleep(Duration::from_millis(scenario.settle_ms)).await;

    // Probes: every tier, every key, after the final heal.
    let prober = mk("prober", ip(4, 100));
    let (pa, pkeys) = (a.clone(), keys.clone());
    let probe_cfg = cfg.clone();
    let probes: Vec<(String, u64, Source, Option<u64>)> = prober
        .spawn(async move {
            let cache = build_cache(
                ip(4, 100),
                &pa,
                strategy,
                probe_cfg,
                "prober",
                Duration::from_secs(1),
            )
            .await;
            cache.l1().resolve().await;
            let mut out = Vec::new();
            for k in pkeys.iter() {
                let at = start.elapsed().as_nanos() as u64;
                let version = |raw: Option<Vec<u8>>| match raw.map(|r| envelope::decode(k, &r)) {
                    Some(Ok(Entry::Value { version, .. })) => Some(version),
                    _ => None,
                };
                if let Ok(raw) = cache.l1().get(k).await {
                    out.push((k.clone(), at, Source::L1, version(raw)));
                }
                let key = Key::parse(k).expect("valid");
                let mkey = key.memcached();
                let n = cache.l2().ring.node_index(mkey.as_bytes());
                if let Ok(raw) = cache.l2().nodes[n].gets(&mkey).await {
                    out.push((k.clone(), at, Source::L2, version(raw.map(|r| r.0))));
                }
                if let Ok(row) = cache.store().read(k, ReadFrom::Primary).await {
                    out.push((k.clone(), at, Source::Db, row.map(|r| r.version)));
                }
            }
            out
        })
        .await
        .unwrap_or_default();

    // The history: header, ops in completion order, faults, probes.
    let mut w = Writer::new(Vec::new());
    let header = Header {
        format: invariants::history::FORMAT,
        world: "sim".into(),
        scenario: scenario.name.into(),
        strategy: strategy.name().into(),
        seed,
        commit: COMMIT.into(),
        config: scenario.config().as_object().cloned().unwrap_or_default(),
    };
    w.header(&header).expect("vec");
    let recs = std::mem::take(&mut *recs.lock().unwrap());
    let ops = recs.len() as u64;
    for (id, r) in recs.iter().enumerate() {
        let rel = |t: u64| t - t0;
        let mut o = op(
            id as u64 + 1,
            r.client,
            &r.key,
            r.f,
            rel(r.invoke_ns),
            rel(r.complete_ns),
            r.outcome,
        );
        o.version = r.version;
        o.source = r.source;
        o.payload = r.payload.as_deref().map(Into::into);
        w.op(&o).expect("vec");
    }
    for (at, begin, f) in &faults {
        w.fault(at - t0, *begin, f).expect("vec");
    }
    for (k, at, tier, v) in &probes {
        w.probe(&Probe {
            key: k.as_str().into(),
            at_ns: at - t0,
            tier: *tier,
            version: *v,
        })
        .expect("vec");
    }
    RunOutput {
        history: w.into_inner(),
        ops,
        sim_ns: start.elapsed().as_nanos() as u64,
        stale_served: caches
            .iter()
            .map(|c| c.metrics().stale_served.load(Relaxed))
            .sum(),
    }
}

/// The network configuration of a scenario.
pub fn config(scenario: &Scenario) -> madsim::Config {
    let mut c = madsim::Config::default();
    c.net.send_latency = Duration::from_micros(scenario.net_latency_us.0)
        ..Duration::from_micros(scenario.net_latency_us.1);
    c
}

/// Simulated time a run may take before madsim aborts it: far beyond any scenario's span, so
/// reaching it means the run hung.
pub const TIME_LIMIT: Duration = Duration::from_secs(600);

/// Runs one seed in a fresh runtime: the one way a run is made, by `cargo sim`, its replay and
/// the `MADSIM_TEST_SEED` test alike.
pub fn run(scenario: &Scenario, strategy: Builtin, seed: u64) -> RunOutput {
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, config(scenario));
    rt.set_time_limit(TIME_LIMIT);
    let sc = scenario.clone();
    rt.block_on(async move { simulate(&sc, strategy, seed).await })
}

/// A raw madsim request/response echo between two nodes: the ceiling for anything built on
/// madsim's network. Sends `per_run` round trips (two messages each) per seed; returns (wall
/// seconds, messages).
pub fn echo(per_run: u64, seeds: u64) -> (f64, u64) {
    let t = std::time::Instant::now();
    let mut msgs = 0;
    for seed in 1..=seeds {
        let rt = madsim::runtime::Runtime::with_seed_and_config(
            seed,
            config(&crate::scenario::find("fill-race").expect("default")),
        );
        msgs += rt.block_on(async move {
            let h = Handle::current();
            let server = SocketAddr::new(ip(9, 1), 7);
            h.create_node()
                .name("echo-server")
                .ip(server.ip())
                .build()
                .spawn(async move {
                    let ep = Endpoint::bind(server).await.expect("bind");
                    serve(ep, 1, |x: u64| async move { x }).await;
                });
            let client = h.create_node().name("echo-client").ip(ip(9, 2)).build();
            client
                .spawn(async move {
                    sleep(Duration::from_millis(10)).await;
                    let rpc = Rpc::bind(ip(9, 2)).await;
                    // As many concurrent callers as the harness has clients.
                    let tasks: Vec<_> = (0..12u64)
                        .map(|c| {
                            let rpc = rpc.clone();
                            madsim::task::spawn(async move {
                                for i in 0..per_run / 2 / 12 {
                                    let _: Result<u64, _> =
                                        rpc.call(server, 1, i + c, Duration::from_secs(1)).await;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                    per_run / 2 / 12 * 12 * 2
                })
                .await
                .unwrap_or(0)
        });
    }
    (t.elapsed().as_secs_f64(), msgs)
}
