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

mod iptables;
mod probe;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chaos::fault::effect::{self, Effect, FLUSH_MARKER, LOSS_BURST};
use chaos::fault::{Fault, Kind, Side, Target};
use chaos::nemesis::Nemesis;

use crate::cluster::{Cluster, Node};
use crate::docker::{docker, psql};
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
    flushed: Vec<Target>,
    evicted_before: Vec<(Target, u64)>,
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
            flushed: Vec::new(),
            evicted_before: Vec::new(),
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

    /// Applies `fault`, staging its iptables rules (added by [`DockerNemesis::apply_staged`]).
    async fn stage(&mut self, fault: &Fault) {
        match fault.kind {
            Kind::Kill => {
                for (_, n) in self.side(fault.target) {
                    if let Err(e) = docker(&["kill", n.container.id()]).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Kind::Pause => {
                for (_, n) in self.side(fault.target) {
                    if let Err(e) = n.pause().await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Kind::Partition { peers, one_way } => self.cut(*fault, peers, one_way),
            Kind::Loss { per_mille } => {
                let p = format!("{:.3}", f64::from(per_mille) / 1000.0);
                let s = |x: &str| x.to_string();
                for (_, n) in self.servers() {
                    self.add_rule(
                        *fault,
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
            // Without proxies (app nodes in this process) nothing happens, and nothing is observed.
            Kind::Latency { one_way_ms } => {
                if let Some(p) = self.proxies {
                    if let Err(e) = p.latency(Some(one_way_ms)).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Kind::Flush => {
                for (t, n) in self.side(fault.target) {
                    let marked = match t {
                        Target::Memcached(_) => {
                            let m = aside::backend::Memcached::new(n.addr(), 1);
                            use aside::tier::MemcachedLike;
                            m.set(FLUSH_MARKER, b"1", 600).await.is_ok()
                                && m.flush_all().await.is_ok()
                        }
                        Target::RedisMaster | Target::RedisReplica => {
                            redis(&n.addr(), &["SET", FLUSH_MARKER, "1"]).await.is_ok()
                                && redis(&n.addr(), &["FLUSHALL"]).await.is_ok()
                        }
                        _ => false,
                    };
                    if marked {
                        self.flushed.push(t);
                    }
                }
            }
            Kind::MemoryLimit { kib } => {
                for (t, n) in self.side(fault.target) {
                    if !matches!(t, Target::RedisMaster | Target::RedisReplica) {
                        continue;
                    }
                    if let Some(e) = Self::evicted(n).await {
                        self.evicted_before.push((t, e));
                    }
                    let bytes = (u64::from(kib) * 1024).to_string();
                    let _ = redis(
                        &n.addr(),
                        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
                    )
                    .await;
                    let _ = redis(&n.addr(), &["CONFIG", "SET", "maxmemory", &bytes]).await;
                }
            }
            Kind::ReplicaLag { lag_ms } => {
                for (_, n) in self
                    .side(fault.target)
                    .into_iter()
                    .filter(|(t, _)| *t == Target::PgReplica)
                {
                    let set = format!("ALTER SYSTEM SET recovery_min_apply_delay = '{lag_ms}ms'");
                    let set = match psql(n, &set).await {
                        Ok(_) => psql(n, "SELECT pg_reload_conf()").await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = set {
                        tracing::warn!("replica lag: {e}");
                    }
                }
            }
        }
    }

    async fn evicted(node: &Node) -> Option<u64> {
        let info = match redis(&node.addr(), &["INFO", "stats"]).await.ok()? {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            _ => return None,
        };
        info.lines()
            .find_map(|l| l.strip_prefix("evicted_keys:"))
            .and_then(|n| n.trim().parse().ok())
    }
}

impl Nemesis for DockerNemesis<'_> {
    async fn begin(&mut self, fault: &Fault) {
        self.stage(fault).await;
        self.apply_staged().await;
    }

    fn at_once(&self) -> bool {
        true
    }

    async fn begin_all(&mut self, faults: &[Fault]) {
        for f in faults {
            self.stage(f).await;
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
                None => self.observe(f).await,
            });
        }
        out
    }

    async fn heal_all(&mut self, faults: &[Fault]) {
        let (cuts, rest): (Vec<Fault>, Vec<Fault>) = faults
            .iter()
            .partition(|f| matches!(f.kind, Kind::Partition { .. } | Kind::Loss { .. }));
        self.drop_rules(&cuts).await;
        for f in &rest {
            self.heal(f).await;
        }
    }

    async fn heal(&mut self, fault: &Fault) {
        match fault.kind {
            Kind::Kill => {
                for (_, n) in self.side(fault.target) {
                    if let Err(e) = n.start().await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Kind::Pause => {
                for (_, n) in self.side(fault.target) {
                    if let Err(e) = n.unpause().await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Kind::Partition { .. } | Kind::Loss { .. } => self.drop_rules(&[*fault]).await,
            Kind::Latency { .. } => {
                if let Some(p) = self.proxies {
                    if let Err(e) = p.latency(None).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Kind::Flush => self.flushed.retain(|t| !fault.target.contains(*t)),
            Kind::MemoryLimit { .. } => {
                for (t, n) in self.side(fault.target) {
                    if matches!(t, Target::RedisMaster | Target::RedisReplica) {
                        let _ = redis(&n.addr(), &["CONFIG", "SET", "maxmemory", "0"]).await;
                    }
                }
                self.evicted_before
                    .retain(|(t, _)| !fault.target.contains(*t));
            }
            Kind::ReplicaLag { .. } => {
                for (_, n) in self
                    .side(fault.target)
                    .into_iter()
                    .filter(|(t, _)| *t == Target::PgReplica)
                {
                    // Back to the delay the replica booted with.
                    let reset = format!(
                        "ALTER SYSTEM SET recovery_min_apply_delay = '{}ms'",
                        self.cluster.pg_apply_delay_ms
                    );
                    let reset = match psql(n, &reset).await {
                        Ok(_) => psql(n, "SELECT pg_reload_conf()").await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = reset {
                        tracing::warn!("replica lag heal: {e}");
                    }
                }
            }
        }
    }

    async fn observe(&mut self, fault: &Fault) -> Option<Effect> {
        self.look(fault).await
    }
}

impl DockerNemesis<'_> {
    /// [`Nemesis::observe`].
    async fn look(&mut self, fault: &Fault) -> Option<Effect> {
        let seen = |s: String| Some(Effect::Seen(s));
        match fault.kind {
            Kind::Kill | Kind::Pause => {
                let (t, n) = *self.side(fault.target).first()?;
                if let Target::App(_) = t {
                    // Nobody talks to an app node: Docker's account of its cgroup says it.
                    let state = docker(&["inspect", "-f", "{{.State.Status}}", n.container.id()])
                        .await
                        .ok()?;
                    return (state == "paused" || state == "exited")
                        .then(|| format!("{}'s container is {state} (docker inspect)", t.name()))
                        .and_then(seen);
                }
                let addr: SocketAddr = n.addr().parse().ok()?;
                let e = ask(t, addr, PROBE_TIMEOUT).await.err()?;
                seen(format!("the host -> {} ({addr}): {e}", t.name()))
            }
            Kind::Partition { peers, .. } => {
                if self.is_apps(fault.target) || self.is_apps(peers) {
                    // From the host (the apps) to a server on the other side.
                    let other = if self.is_apps(fault.target) {
                        peers
                    } else {
                        fault.target
                    };
                    let (t, n) = *self.side(other).first()?;
                    let addr: SocketAddr = n.addr().parse().ok()?;
                    let e = ask(t, addr, PROBE_TIMEOUT).await.err()?;
                    return seen(format!("the apps -> {} ({addr}): {e}", t.name()));
                }
                let pair = self.cut_pair(fault, peers)?;
                cut_seen(pair).await.and_then(seen)
            }
            Kind::Loss { .. } => {
                let (t, n) = *self.servers().first()?;
                let addr: SocketAddr = n.addr().parse().ok()?;
                let within = Duration::from_millis(300);
                let probes = (0..LOSS_BURST).map(|_| ask(t, addr, within));
                let lost = futures_util::future::join_all(probes)
                    .await
                    .iter()
                    .filter(|r| r.is_err())
                    .count();
                effect::loss(lost, format!("the host to {}", t.name()), within)
            }
            Kind::Latency { one_way_ms } => {
                // A round trip from the host through the master's proxy, as an app node's goes.
                let (t, n) = *self.side(Side::One(Target::RedisMaster)).first()?;
                let (name, front) = self.proxies?.front_of(n.addr().parse().ok()?)?;
                let began = std::time::Instant::now();
                ask(t, front, Duration::from_secs(2)).await.ok()?;
                let path = format!("the host through the {name} proxy ({front})");
                effect::latency(one_way_ms, path, began.elapsed())
            }
            Kind::Flush => {
                // In turn, asking no further than the first that still holds it.
                let mut held = Vec::new();
                for t in self.flushed.clone() {
                    let n = self.node(t)?;
                    let h = match t {
                        Target::Memcached(_) => {
                            use aside::tier::MemcachedLike;
                            let m = aside::backend::Memcached::new(n.addr(), 1);
                            m.gets(FLUSH_MARKER).await.ok().map(|v| v.is_some())
                        }
                        _ => redis(&n.addr(), &["GET", FLUSH_MARKER])
                            .await
                            .ok()
                            .map(|v| !matches!(v, redis::Value::Nil)),
                    };
                    held.push((t.name(), h));
                    if h != Some(false) {
                        break;
                    }
                }
                effect::flush(held)
            }
            Kind::MemoryLimit { kib } => {
                for (t, before) in self.evicted_before.clone() {
                    let now = Self::evicted(self.node(t)?).await?;
                    let e = effect::memory_limit(t.name(), kib, before, now, "INFO evicted_keys");
                    if e.is_some() {
                        return e;
                    }
                }
                None
            }
            Kind::ReplicaLag { .. } => {
                let n = self.node(Target::PgReplica)?;
                let row = psql(
                    n,
                    "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn(), \
                     COALESCE((EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, 0)",
                )
                .await
                .ok()?;
                let (behind, ms) = row.split_once('|')?;
                (behind == "t").then(|| {
                    format!("pg-replica has received WAL it has not replayed; its last replayed transaction is {ms} ms old")
                }).and_then(seen)
            }
        }
    }
}
