//! The containers world's nemesis: [`chaos::nemesis::Nemesis`] over real servers in Docker.
//!
//! * kill: `docker kill` (SIGKILL), healed by `docker start` (memcached comes back empty, a Redis
//!   master comes back as a master for the Sentinels to demote);
//! * pause: `docker pause` / `unpause` (the cgroup freezer: a GC pause);
//! * partition: iptables rules inside the containers' own network namespaces (the containers get
//!   `NET_ADMIN`; the host's firewall is never touched): packets from the peers are dropped on
//!   the target's INPUT, and for a symmetric cut the target's packets to them on its OUTPUT.
//!   App nodes in containers of their own ([`crate::app`]) are cut like servers, by address;
//!   app nodes in the runner's process are all behind the cluster network's gateway address, so
//!   there `apps` as a whole is cut (rules on the servers' side);
//! * an app node in a container is paused with `docker pause` like a server, observed frozen
//!   by Docker's own account of its cgroup;
//! * loss: `iptables -m statistic --mode random` drops on every server's INPUT;
//! * flush: FLUSHALL / `flush_all` after writing a marker key, observed gone;
//! * memory-limit: `CONFIG SET maxmemory` with `allkeys-lru`, observed as `evicted_keys` growing;
//! * replica-lag: `recovery_min_apply_delay` on the PostgreSQL replica (ALTER SYSTEM and a
//!   reload), observed as WAL received but not replayed;
//! * latency: the one-way delay of every proxy between the app nodes (in containers) and the
//!   servers ([`crate::proxy`]), observed as a round trip through the master's proxy; with the
//!   app nodes in this process there are no proxies, it is never observed, and a plan with it
//!   fails as a harness error, never as a pass.
//!
//! Effects are observed as a client would see them: a request from the host (where the app
//! nodes run) or from inside a container across a cut gets no answer within [`PROBE_TIMEOUT`].

mod hands;
mod iptables;
mod probe;

use std::net::IpAddr;
use std::time::Duration;

use chaos::fault::effect::Effect;
use chaos::fault::hands::Kept;
use chaos::fault::{Fault, Kind, Side, Target};
use chaos::nemesis::Nemesis;

use crate::cluster::{Cluster, Node};
use crate::docker::psql;
use crate::proxy::Proxies;
use iptables::{cut_seen, CutPair, Rule};
pub use probe::ask;
use probe::redis;

/// How long a probe waits for an answer before the target counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a connection between two containers may take before it counts as cut (on the
/// bridge one takes well under a millisecond; a cut one never completes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

pub struct DockerNemesis<'a> {
    cluster: &'a Cluster,
    /// The app nodes' address as the servers see it when they run in the runner's process: the
    /// cluster network's gateway.
    apps: IpAddr,
    /// The app nodes' containers, when they run in containers of their own (else empty).
    app_nodes: &'a [Node],
    /// The proxies between the app nodes and the servers (latency faults), when there are.
    proxies: Option<&'a Proxies>,
    rules: Vec<(Fault, Rule)>,
    /// Rules staged by [`DockerNemesis::stage`], added by [`DockerNemesis::apply_staged`].
    staged: Vec<(Fault, Rule)>,
    /// What the fault kinds remember while their faults are on.
    kept: Kept,
}

impl<'a> DockerNemesis<'a> {
    /// The nemesis of `cluster`, whose app nodes run in `app_nodes` (empty: in this process),
    /// behind `proxies` when a plan delays the network.
    pub fn new(
        cluster: &'a Cluster,
        app_nodes: &'a [Node],
        proxies: Option<&'a Proxies>,
    ) -> Result<DockerNemesis<'a>, String> {
        let apps = cluster.gateway().map_err(|e| e.to_string())?;
        Ok(DockerNemesis {
            cluster,
            apps,
            app_nodes,
            proxies,
            rules: Vec::new(),
            staged: Vec::new(),
            kept: Kept::default(),
        })
    }

    /// The container playing `t` at boot.
    fn node(&self, t: Target) -> Option<&'a Node> {
        let c = self.cluster;
        match t {
            Target::RedisMaster => Some(&c.redis_master),
            Target::RedisReplica => c.redis_replica.as_ref(),
            Target::Sentinel(i) => c.sentinels.get(usize::from(i)),
            Target::Memcached(i) => c.memcached.get(usize::from(i)),
            Target::PgPrimary => Some(&c.pg_primary),
            Target::PgReplica => c.pg_replica.as_ref(),
            Target::App(i) => self.app_nodes.get(usize::from(i)),
        }
    }

    /// Are the app nodes in the runner's process (behind the gateway)?
    fn apps_on_host(&self) -> bool {
        self.app_nodes.is_empty()
    }

    /// Every server of the cluster, by role.
    fn servers(&self) -> Vec<(Target, &'a Node)> {
        let mut all = vec![Target::RedisMaster, Target::RedisReplica];
        all.extend((0..self.cluster.sentinels.len() as u8).map(Target::Sentinel));
        all.extend((0..self.cluster.memcached.len() as u8).map(Target::Memcached));
        all.extend([Target::PgPrimary, Target::PgReplica]);
        all.into_iter()
            .filter_map(|t| self.node(t).map(|n| (t, n)))
            .collect()
    }

    /// The containers on `side`: servers, and app nodes when they have containers.
    fn side(&self, side: Side) -> Vec<(Target, &'a Node)> {
        let apps = (0..self.app_nodes.len() as u8)
            .map(|i| (Target::App(i), &self.app_nodes[usize::from(i)]));
        self.servers()
            .into_iter()
            .chain(apps)
            .filter(|(t, _)| side.contains(*t))
            .collect()
    }

    /// Is `side` the app nodes as a whole, behind the gateway?
    fn is_apps(&self, side: Side) -> bool {
        self.apps_on_host() && matches!(side, Side::Apps)
    }

    /// Staged loss rules for `fault`: every server drops its INPUT with probability `per_mille`.
    fn stage_loss(&mut self, fault: Fault, per_mille: u16) {
        let p = format!("{:.3}", f64::from(per_mille) / 1000.0);
        let s = |x: &str| x.to_string();
        for (_, n) in self.servers() {
            self.add_rule(
                fault,
                n,
                vec![
                    s("INPUT"),
                    s("-m"),
                    s("statistic"),
                    s("--mode"),
                    s("random"),
                    s("--probability"),
                    p.clone(),
                    s("-j"),
                    s("DROP"),
                ],
            );
        }
    }

    async fn evicted_keys(node: &Node) -> Option<u64> {
        let info = match redis(&node.addr(), &["INFO", "stats"]).await.ok()? {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            _ => return None,
        };
        info.lines()
            .find_map(|l| l.strip_prefix("evicted_keys:"))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Sets the replica's `recovery_min_apply_delay` and reloads its configuration.
    async fn apply_delay(node: &Node, ms: u64) -> Result<String, String> {
        let set = format!("ALTER SYSTEM SET recovery_min_apply_delay = '{ms}ms'");
        psql(node, &set).await?;
        psql(node, "SELECT pg_reload_conf()").await
    }
}

/// Every fault starts with the iptables rules it stages ([`Hands::cut`],
/// [`Hands::drop_messages`]) added in one batch, so that faults due at one instant (a
/// split-brain's five cuts) start as one.
impl Nemesis for DockerNemesis<'_> {
    async fn begin(&mut self, fault: &Fault) {
        fault.begin(self).await;
        self.apply_staged().await;
    }

    fn at_once(&self) -> bool {
        true
    }

    async fn begin_all(&mut self, faults: &[Fault]) {
        for f in faults {
            f.begin(self).await;
        }
        self.apply_staged().await;
    }

    /// Cuts between containers are looked at all at once (each look is a `docker exec` that
    /// waits up to the probe timeout: one by one, five cuts took 3 s to see); the rest in turn.
    async fn observe_all(&mut self, faults: &[Fault]) -> Vec<Option<Effect>> {
        let pairs: Vec<Option<CutPair<'_>>> = faults
            .iter()
            .map(|f| match f.kind {
                Kind::Partition { peers, .. }
                    if !self.is_apps(f.target) && !self.is_apps(peers) =>
                {
                    self.cut_pair(f, peers)
                }
                _ => None,
            })
            .collect();
        let looks = pairs.iter().map(|p| async move {
            match p {
                Some(p) => Some(cut_seen(*p).await),
                None => None,
            }
        });
        let seen: Vec<Option<Option<String>>> = futures_util::future::join_all(looks).await;
        let mut out = Vec::new();
        for (f, seen) in faults.iter().zip(seen) {
            out.push(match seen {
                Some(seen) => seen.map(Effect::Seen),
                None => f.observe(self).await,
            });
        }
        out
    }

    /// The rules of every cut and loss due now are dropped in one batch; the rest in turn.
    async fn heal_all(&mut self, faults: &[Fault]) {
        let (rules, rest): (Vec<Fault>, Vec<Fault>) = faults
            .iter()
            .partition(|f| matches!(f.kind, Kind::Partition { .. } | Kind::Loss { .. }));
        self.drop_rules(&rules).await;
        for f in &rest {
            f.heal(self).await;
        }
    }

    async fn heal(&mut self, fault: &Fault) {
        fault.heal(self).await
    }

    async fn observe(&mut self, fault: &Fault) -> Option<Effect> {
        fault.observe(self).await
    }
}
