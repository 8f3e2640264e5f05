//! The simulator's nemesis: [`chaos::nemesis::Nemesis`] over madsim. Kill is `Handle::kill` and
//! its heal `Handle::restart` (the node's init runs again: memcached comes back empty, a Redis
//! master comes back as a master for Sentinel to demote); pause clogs the node (madsim holds its
//! messages, as a frozen process would) and resume unclogs it. The effect is observed the way a
//! client would see it: a request to the target gets no reply.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chaos::fault::{Fault, Kind, Target};
use chaos::nemesis::Nemesis;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;

use crate::cluster::Cluster;
use crate::models::memcached as mc;
use crate::net::{Rpc, TAG_MEMCACHED, TAG_PG, TAG_REDIS, TAG_SENTINEL};
use crate::nodes::postgres::{PgCmd, PgReply};
use crate::nodes::redis::{Admin, AdminReply};
use crate::nodes::sentinel::{SentinelMsg, SentinelReply};

/// How long the nemesis waits for a reply before it calls the target unreachable: a healthy
/// server answers within two round trips on every scenario's network.
const PROBE_TIMEOUT: Duration = Duration::from_millis(50);

/// A node the nemesis can act on.
#[derive(Clone, Copy)]
struct Placed {
    target: Target,
    id: NodeId,
    addr: SocketAddr,
}

pub struct SimNemesis {
    handle: Handle,
    nodes: Vec<Placed>,
    /// The nemesis's own node: its probes are sent from there, like any client's.
    node: NodeHandle,
    rpc: Rpc,
}

impl SimNemesis {
    /// A nemesis on a node of its own at `at`.
    pub async fn new(cluster: &Cluster, at: IpAddr) -> SimNemesis {
        let handle = Handle::current();
        let node = handle.create_node().name("nemesis").ip(at).build();
        let rpc = node
            .spawn(async move { Rpc::bind(at).await })
            .await
            .expect("the nemesis binds its endpoint");
        SimNemesis {
            handle,
            node,
            nodes: cluster
                .servers
                .iter()
                .map(|n| Placed {
                    target: n.target,
                    id: n.handle.id(),
                    addr: n.addr,
                })
                .collect(),
            rpc,
        }
    }

    fn place(&self, t: Target) -> Option<Placed> {
        self.nodes.iter().copied().find(|n| n.target == t)
    }

    /// Does the target answer a harmless request within [`PROBE_TIMEOUT`]? `Err(what was seen)`
    /// when it does not.
    async fn answers(&self, p: Placed) -> Result<(), String> {
        let rpc = self.rpc.clone();
        self.node
            .spawn(async move { ask(&rpc, p).await })
            .await
            .unwrap_or_else(|_| Err("the nemesis's probe was cancelled".into()))
    }
}

async fn ask(rpc: &Rpc, p: Placed) -> Result<(), String> {
    let r = match p.target {
        Target::RedisMaster | Target::RedisReplica => rpc
            .call::<Admin, AdminReply>(p.addr, TAG_REDIS, Admin::Ping, PROBE_TIMEOUT)
            .await
            .map(drop),
        Target::Sentinel(_) => rpc
            .call::<SentinelMsg, SentinelReply>(
                p.addr,
                TAG_SENTINEL,
                SentinelMsg::GetMaster,
                PROBE_TIMEOUT,
            )
            .await
            .map(drop),
        Target::Memcached(_) => rpc
            .call::<mc::Cmd, mc::Reply>(
                p.addr,
                TAG_MEMCACHED,
                mc::Cmd::Gets("aside:nemesis".into()),
                PROBE_TIMEOUT,
            )
            .await
            .map(drop),
        Target::PgPrimary | Target::PgReplica => rpc
            .call::<PgCmd, PgReply>(
                p.addr,
                TAG_PG,
                PgCmd::Read("aside:nemesis".into()),
                PROBE_TIMEOUT,
            )
            .await
            .map(drop),
        Target::App(_) => return Ok(()),
    };
    r.map_err(|e| format!("{} ({}) does not answer: {e}", p.target.name(), p.addr))
}

impl Nemesis for SimNemesis {
    async fn begin(&mut self, fault: &Fault) {
        let Some(p) = self.place(fault.target) else {
            return;
        };
        match fault.kind {
            Kind::Kill => self.handle.kill(p.id),
            Kind::Pause => NetSim::current().clog_node(p.id),
        }
    }

    async fn heal(&mut self, fault: &Fault) {
        let Some(p) = self.place(fault.target) else {
            return;
        };
        match fault.kind {
            Kind::Kill => self.handle.restart(p.id),
            Kind::Pause => NetSim::current().unclog_node(p.id),
        }
    }

    async fn observe(&mut self, fault: &Fault) -> Option<String> {
        let p = self.place(fault.target)?;
        self.answers(p).await.err()
    }
}
