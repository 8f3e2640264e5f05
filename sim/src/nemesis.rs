//! The simulator's nemesis: [`chaos::nemesis::Nemesis`] over madsim. Kill is `Handle::kill` and
//! its heal `Handle::restart` (the node's init runs again: memcached comes back empty, a Redis
//! master comes back as a master for Sentinel to demote); pause is `Handle::pause` (the node runs
//! nothing until resumed, then finishes what it was doing: a GC pause); a partition clogs the
//! links between the two sides, both ways or only from the peers to the target. madsim drops a
//! message sent over a clogged link (`NetSim`'s `link_clogged`, like packet loss), where TCP
//! would retransmit it once the link is back: a request held by a cut shorter than its caller's
//! timeout is lost here and served late against real servers (the sim-versus-real table in the
//! README shows the two cells where this matters).
//!
//! Effects are observed the way a client would see them: a request from the nemesis's own node to
//! a killed or paused server gets no reply; a request across a partition, sent from a node on one
//! side to a server on the other, gets no reply; a paused app node runs no task.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chaos::fault::effect::{Effect, FLUSH_MARKER, LOSS_BURST};
use chaos::fault::hands::{Hands, Kept};
use chaos::fault::{Fault, Side, Target};
use chaos::nemesis::Nemesis;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;

use crate::cluster::{Cluster, Node};
use crate::models::memcached as mc;
use crate::models::redis as rd;
use crate::net::{Rpc, TAG_MEMCACHED, TAG_PG, TAG_REDIS, TAG_SENTINEL};
use crate::nodes::postgres::{PgCmd, PgReply};
use crate::nodes::redis::{Admin, AdminReply};
use crate::nodes::sentinel::{SentinelMsg, SentinelReply};

mod hands;

/// How long the nemesis waits for a reply before it calls the target unreachable: a healthy
/// server answers within two round trips on every scenario's network.
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);

/// How long the nemesis waits for the answer to a request whose error it looks at (a `reset`
/// fault's): longer than a round trip under the largest latency a plan adds (150 ms one way).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Times a heal's command is sent before the nemesis gives up on it.
const HEAL_TRIES: usize = 10;

/// A node the nemesis can act on: a server (with the address it answers on) or an app node.
#[derive(Clone)]
struct Placed {
    target: Target,
    ip: IpAddr,
    addr: Option<SocketAddr>,
    node: NodeHandle,
}

pub struct SimNemesis {
    handle: Handle,
    /// What the fault kinds remember while their faults are on.
    kept: Kept,
    /// The network's own configuration, while a latency or loss fault replaces it.
    saved: Option<madsim::net::Config>,
    nodes: Vec<Placed>,
    /// The nemesis's own node: its probes of servers are sent from there, like any client's.
    node: NodeHandle,
    rpc: Rpc,
    /// Each app node's memcached ring: a ring change is pushed to all of them.
    rings: Vec<aside::Membership>,
    /// Each app node's wall clock, in app order: a `clock` fault skews them.
    clocks: Vec<aside::wall::WallClock>,
}

impl SimNemesis {
    /// A nemesis on a node of its own at `at`, acting on the cluster's servers and `apps`.
    pub async fn new(
        cluster: &Cluster,
        apps: &[Node],
        rings: Vec<aside::Membership>,
        clocks: Vec<aside::wall::WallClock>,
        at: IpAddr,
    ) -> SimNemesis {
        let handle = Handle::current();
        let node = handle.create_node().name("nemesis").ip(at).build();
        let rpc = node
            .spawn(async move { Rpc::bind(at).await })
            .await
            .expect("the nemesis binds its endpoint");
        let servers = cluster.servers.iter().map(|n| Placed {
            target: n.target,
            ip: n.addr.ip(),
            addr: Some(n.addr),
            node: n.handle.clone(),
        });
        let apps = apps.iter().map(|n| Placed {
            target: n.target,
            ip: n.addr.ip(),
            addr: None,
            node: n.handle.clone(),
        });
        SimNemesis {
            handle,
            kept: Kept::default(),
            saved: None,
            nodes: servers.chain(apps).collect(),
            node,
            rpc,
            rings,
            clocks,
        }
    }

    fn side(&self, side: Side) -> Vec<Placed> {
        self.nodes
            .iter()
            .filter(|n| side.contains(n.target))
            .cloned()
            .collect()
    }

    /// Does `server` answer a harmless request sent from `from` (the nemesis's node when
    /// `None`) within [`PROBE_TIMEOUT`]? `Err(what was seen)` when it does not.
    async fn answers(&self, server: &Placed, from: Option<&Placed>) -> Result<(), String> {
        let Some(addr) = server.addr else {
            return Ok(());
        };
        let target = server.target;
        let asked = match from {
            None => {
                let rpc = self.rpc.clone();
                self.node
                    .spawn(async move { ask(&rpc, target, addr).await })
            }
            // From a node of the cluster: an endpoint of its own there, so the request crosses
            // that node's links.
            Some(p) => {
                let ip = p.ip;
                p.node
                    .spawn(async move { ask(&Rpc::bind(ip).await, target, addr).await })
            }
        };
        let asked = asked
            .await
            .unwrap_or_else(|_| Err("the probe's node is down".into()));
        let who = from.map_or("the nemesis".to_string(), |p| p.target.name());
        asked.map_err(|e| format!("{who} -> {} ({addr}): {e}", target.name()))
    }

    /// Does an app node run a task within [`PROBE_TIMEOUT`]? `Err` when it is paused or down.
    async fn runs(&self, app: &Placed) -> Result<(), String> {
        match madsim::time::timeout(PROBE_TIMEOUT, app.node.spawn(async {})).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(format!(
                "{} is down: its tasks do not run",
                app.target.name()
            )),
            Err(_) => Err(format!(
                "{} ran nothing for {} ms: it is paused",
                app.target.name(),
                PROBE_TIMEOUT.as_millis()
            )),
        }
    }
}

impl SimNemesis {
    /// A request from the nemesis's node; `None` when no reply came within a second.
    async fn tell<C, R>(&self, to: &Placed, tag: u64, cmd: C) -> Option<R>
    where
        C: Clone + Send + Sync + 'static,
        R: Send + Sync + 'static,
    {
        let (rpc, addr) = (self.rpc.clone(), to.addr?);
        self.node
            .spawn(async move {
                rpc.call::<C, R>(addr, tag, cmd, Duration::from_secs(1))
                    .await
                    .ok()
            })
            .await
            .ok()
            .flatten()
    }

    /// [`SimNemesis::tell`] until a reply comes (a heal lost to packet loss would leave its
    /// fault on for the rest of the run), at most [`HEAL_TRIES`] times.
    async fn tell_until_heard<C, R>(&self, to: &Placed, tag: u64, cmd: impl Fn() -> C) -> Option<R>
    where
        C: Clone + Send + Sync + 'static,
        R: Send + Sync + 'static,
    {
        for _ in 0..HEAL_TRIES {
            if let Some(r) = self.tell(to, tag, cmd()).await {
                return Some(r);
            }
        }
        None
    }

    /// Writes the marker to a cache server; true if it was stored.
    async fn mark_on(&self, cache: &Placed) -> bool {
        match cache.target {
            Target::RedisMaster(_) | Target::RedisReplica(_) => {
                let set = rd::Cmd::Set {
                    key: FLUSH_MARKER.into(),
                    value: b"1".to_vec(),
                    px_ms: 600_000,
                    cond: rd::Cond::Always,
                };
                matches!(
                    self.tell(cache, TAG_REDIS, Admin::Cmd(set)).await,
                    Some(AdminReply::Reply(rd::Reply::Bool(true)))
                )
            }
            Target::Memcached(_) => {
                let set = mc::Cmd::Set {
                    key: FLUSH_MARKER.into(),
                    value: b"1".to_vec(),
                    ttl_s: 600,
                };
                matches!(
                    self.tell(cache, TAG_MEMCACHED, set).await,
                    Some(mc::Reply::Stored(true))
                )
            }
            _ => false,
        }
    }

    /// Does a cache server still hold the marker? `None` when it does not answer.
    async fn marker_on(&self, cache: &Placed) -> Option<bool> {
        match cache.target {
            Target::Memcached(_) => {
                match self
                    .tell(cache, TAG_MEMCACHED, mc::Cmd::Gets(FLUSH_MARKER.into()))
                    .await?
                {
                    mc::Reply::Value(v) => Some(v.is_some()),
                    _ => None,
                }
            }
            _ => match self
                .tell(
                    cache,
                    TAG_REDIS,
                    Admin::Cmd(rd::Cmd::Get(FLUSH_MARKER.into())),
                )
                .await?
            {
                AdminReply::Reply(rd::Reply::Bulk(v)) => Some(v.is_some()),
                _ => None,
            },
        }
    }

    async fn flush_on(&self, cache: &Placed) {
        match cache.target {
            Target::Memcached(_) => {
                let _: Option<mc::Reply> = self.tell(cache, TAG_MEMCACHED, mc::Cmd::FlushAll).await;
            }
            _ => {
                let _: Option<AdminReply> = self
                    .tell(cache, TAG_REDIS, Admin::Cmd(rd::Cmd::FlushAll))
                    .await;
            }
        }
    }

    async fn evicted_on(&self, redis: &Placed) -> Option<(u64, usize)> {
        match self.tell(redis, TAG_REDIS, Admin::Memory).await? {
            AdminReply::Memory {
                evicted,
                used_bytes,
            } => Some((evicted, used_bytes)),
            _ => None,
        }
    }
}

/// A harmless request to the server playing `target` at `addr`.
async fn ask(rpc: &Rpc, target: Target, addr: SocketAddr) -> Result<(), String> {
    ask_within(rpc, target, addr, PROBE_TIMEOUT).await
}

/// [`ask`], waiting `timeout` for the reply.
async fn ask_within(
    rpc: &Rpc,
    target: Target,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    let r = match target {
        Target::RedisMaster(_) | Target::RedisReplica(_) => rpc
            .call::<Admin, AdminReply>(addr, TAG_REDIS, Admin::Ping, timeout)
            .await
            .map(drop),
        Target::Sentinel(_) => rpc
            .call::<SentinelMsg, SentinelReply>(
                addr,
                TAG_SENTINEL,
                SentinelMsg::GetMaster(0),
                timeout,
            )
            .await
            .map(drop),
        Target::Memcached(_) => rpc
            .call::<mc::Cmd, mc::Reply>(
                addr,
                TAG_MEMCACHED,
                mc::Cmd::Gets("aside:nemesis".into()),
                timeout,
            )
            .await
            .map(drop),
        Target::PgPrimary | Target::PgReplica => rpc
            .call::<PgCmd, PgReply>(addr, TAG_PG, PgCmd::Read("aside:nemesis".into()), timeout)
            .await
            .map(drop),
        Target::App(_) => return Ok(()),
    };
    r.map_err(|e| format!("no reply: {e}"))
}

impl SimNemesis {
    /// Changes the whole network's configuration, keeping its own to restore at the heal (the
    /// first change's: overlapping network faults restore the network, not each other).
    fn reconfigure(&mut self, f: impl FnOnce(&mut madsim::net::Config)) {
        let saved = &mut self.saved;
        NetSim::current().update_config(|c| {
            if saved.is_none() {
                *saved = Some(c.clone());
            }
            f(c);
        });
    }

    /// Puts back the network's own configuration, if a fault changed it.
    fn restore(&mut self) {
        if let Some(own) = self.saved.take() {
            NetSim::current().update_config(|c| *c = own);
        }
    }

    /// The links a partition cuts, as (from, to): from each peer to each target node, and back
    /// unless one-way. A node is never cut from itself.
    fn links(&self, fault: &Fault, peers: Side, one_way: bool) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::new();
        for a in self.side(fault.target) {
            for b in self
                .side(peers)
                .into_iter()
                .filter(|b| b.target != a.target)
            {
                out.push((b.node.id(), a.node.id()));
                if !one_way {
                    out.push((a.node.id(), b.node.id()));
                }
            }
        }
        out
    }
}

impl SimNemesis {
    /// Sends `t` one harmless request as a client would, without waiting for it (a held or
    /// dropped request never answers), then reads the server's `count` and says `how` it counted.
    fn ask_then_count(
        &self,
        t: Target,
        count: fn(SocketAddr) -> u64,
        how: &str,
    ) -> Option<(u64, String)> {
        let addr = self.placed(t)?.addr?;
        let rpc = self.rpc.clone();
        self.node.spawn(async move {
            let _ = ask_within(&rpc, t, addr, REQUEST_TIMEOUT).await;
        });
        Some((count(addr), how.into()))
    }

    /// The nodes a `reset`, a `stall` or a `half-open` spares: the cluster's servers (replication, the
    /// Sentinels' pings and failover commands) and the foreign writer, which against real
    /// servers does not pass the proxies.
    fn servers_spared(&self) -> Vec<IpAddr> {
        (self.nodes.iter())
            .filter(|n| n.addr.is_some())
            .map(|n| n.ip)
            .chain([crate::net::foreign_writer_ip()])
            .collect()
    }

    /// The node playing `t`.
    fn placed(&self, t: Target) -> Option<Placed> {
        self.nodes.iter().find(|n| n.target == t).cloned()
    }
}

impl Nemesis for SimNemesis {
    async fn begin(&mut self, fault: &Fault) {
        fault.begin(self).await
    }

    async fn heal(&mut self, fault: &Fault) {
        fault.heal(self).await
    }

    async fn observe(&mut self, fault: &Fault) -> Option<Effect> {
        fault.observe(self).await
    }
}
