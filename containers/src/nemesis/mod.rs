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
//! * duplicate: the same match with `TEE` in the mangle POSTROUTING of every server and app
//!   container, to each segment's own destination: a share of the segments each sends arrive
//!   twice, observed as the D-SACKs the receivers send back (`TCPDSACKRecv` in the senders'
//!   namespaces);
//! * flush: FLUSHALL / `flush_all` after writing a marker key, observed gone;
//! * memory-limit: on Redis `CONFIG SET maxmemory` with `allkeys-lru`, observed as
//!   `evicted_keys` growing; on memcached its 8 MiB floor kept full by a ballast writer
//!   ([`ballast`]), observed as `stats evictions` growing;
//! * replica-lag: `recovery_min_apply_delay` on the PostgreSQL replica (ALTER SYSTEM and a
//!   reload), observed as WAL received but not replayed;
//! * latency: the one-way delay of every proxy between the app nodes (in containers) and the
//!   servers ([`crate::proxy`]), observed as a round trip through the master's proxy; with the
//!   app nodes in this process there are no proxies, it is never observed, and a plan with it
//!   fails as a harness error, never as a pass.
//!
//! Effects are observed as a client would see them: a request from the host (where the app
//! nodes run) or from inside a container across a cut gets no answer within [`PROBE_TIMEOUT`].

mod ballast;
mod hands;
mod iptables;
mod probe;

use std::net::IpAddr;
use std::time::Duration;

use chaos::fault::effect::Effect;
use chaos::fault::hands::Kept;
use chaos::fault::{Fault, Kind, Side, Target};
use chaos::nemesis::Nemesis;
use chaos::plan::{Action, Event, Plan};

use crate::cluster::{Cluster, Node};
use crate::docker::psql;
use crate::proxy::Proxies;
use iptables::{cut_seen, Rule};
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
    /// Rules staged by a fault's start, added by [`DockerNemesis::apply_staged`].
    staged: Vec<(Fault, Rule)>,
    /// What the fault kinds remember while their faults are on.
    kept: Kept,
    /// The plan's events, in the order `run_plan` hands them over, and the next one due: the
    /// faults of one instant are applied (and their rules dropped) together.
    events: Vec<Event>,
    next: usize,
    /// Cuts and losses due to heal at this instant whose rules the first heal of it dropped.
    dropped: Vec<Fault>,
    /// Cuts between containers started and not seen yet: looked at all at once.
    cuts_unseen: Vec<Fault>,
    /// What such a look saw for cuts not asked about yet.
    seen: Vec<(Fault, String)>,
    /// Every app node's memcached ring.
    pub(crate) rings: crate::rings::Rings,
    /// Every app node's wall clock.
    pub(crate) clocks: crate::clocks::Clocks,
    /// The ballast writers of memcached nodes under a memory limit.
    ballasts: Vec<(Target, ballast::Ballast)>,
}

impl<'a> DockerNemesis<'a> {
    /// The nemesis of `cluster` for `plan`, whose app nodes run in `app_nodes` (empty: in this
    /// process), behind `proxies` when a plan delays the network, reaching the app nodes' rings
    /// and clocks through `apps`.
    pub fn new(
        cluster: &'a Cluster,
        app_nodes: &'a [Node],
        proxies: Option<&'a Proxies>,
        rings: crate::rings::Rings,
        clocks: crate::clocks::Clocks,
        plan: &Plan,
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
            events: plan.events(),
            next: 0,
            dropped: Vec::new(),
            cuts_unseen: Vec::new(),
            seen: Vec::new(),
            rings,
            clocks,
            ballasts: Vec::new(),
        })
    }

    /// `act` on the proxy in front of `t` (a plan with a proxy fault runs the app nodes behind
    /// proxies); without proxies nothing happens, and nothing is observed.
    fn through_proxy(
        &self,
        t: Target,
        act: impl FnOnce(&Proxies, std::net::SocketAddr) -> Result<(), crate::Error>,
    ) {
        let (Some(p), Some(n)) = (self.proxies, self.node(t)) else {
            return;
        };
        let Ok(addr) = n.addr().parse() else { return };
        if let Err(e) = act(p, addr) {
            tracing::warn!("{e}");
        }
    }

    /// A hello through `t`'s proxy, not waited for (a task keeps its connection open until the
    /// fault lets go of it), then `count` of that proxy's, and what it counted: `what` and the
    /// proxy's name.
    fn hello_then_count(
        &self,
        t: Target,
        count: fn(&Proxies, std::net::SocketAddr) -> Result<u64, crate::Error>,
        what: &str,
    ) -> Option<(u64, String)> {
        let (p, n) = (self.proxies?, self.node(t)?);
        let addr: std::net::SocketAddr = n.addr().parse().ok()?;
        let (name, front) = p.front_of(addr)?;
        tokio::spawn(async move {
            let _ = ask(t, front, Duration::from_secs(30)).await;
        });
        Some((count(p, addr).ok()?, format!("{what} the {name} proxy")))
    }

    /// The container playing `t` at boot.
    fn node(&self, t: Target) -> Option<&'a Node> {
        let c = self.cluster;
        match t {
            Target::RedisMaster(0) => Some(&c.redis_master),
            Target::RedisReplica(0) => c.redis_replica.as_ref(),
            Target::RedisMaster(s) => c.redis_more.get(usize::from(s) - 1).map(|p| &p.master),
            Target::RedisReplica(s) => c
                .redis_more
                .get(usize::from(s) - 1)
                .and_then(|p| p.replica.as_ref()),
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
        let mut all = vec![Target::RedisMaster(0), Target::RedisReplica(0)];
        for s in 1..=self.cluster.redis_more.len() as u8 {
            all.extend([Target::RedisMaster(s), Target::RedisReplica(s)]);
        }
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

impl DockerNemesis<'_> {
    /// Moves past the plan's event (`action`, `fault`) and returns the faults of its instant
    /// with the same action from it on (itself first). A call the plan does not have next (a
    /// test's own) is an instant of its own.
    fn instant(&mut self, fault: &Fault, action: Action) -> Vec<Fault> {
        let Some(e) = self.events.get(self.next) else {
            return vec![*fault];
        };
        if e.fault != *fault || e.action != action {
            return vec![*fault];
        }
        let at_ms = e.at_ms;
        let rest = self.events[self.next..]
            .iter()
            .take_while(|n| n.at_ms == at_ms && n.action == action)
            .map(|n| n.fault)
            .collect();
        self.next += 1;
        rest
    }

    /// Is `fault` a cut between containers (looked at from inside one)?
    fn is_container_cut(&self, fault: &Fault) -> bool {
        matches!(fault.kind, Kind::Partition { peers, .. }
            if !self.is_apps(fault.target) && !self.is_apps(peers))
    }

    /// Looks at every cut between containers not seen yet at once (each look is a `docker exec`
    /// that waits up to the connect timeout: one by one, five cuts took 3 s to see), and keeps
    /// what it saw for the cuts not asked about yet.
    async fn look_at_cuts(&mut self, asked: &Fault) -> Option<Effect> {
        self.look_at(self.cuts_unseen.clone(), asked).await
    }

    /// [`DockerNemesis::look_at_cuts`] for `cuts` alone.
    async fn look_at(&mut self, cuts: Vec<Fault>, asked: &Fault) -> Option<Effect> {
        let pairs: Vec<_> = cuts
            .iter()
            .map(|f| match f.kind {
                Kind::Partition { peers, .. } => self.cut_pair(f, peers),
                _ => None,
            })
            .collect();
        let looks = pairs.into_iter().map(|p| async move {
            match p {
                Some(p) => cut_seen(p).await,
                None => None,
            }
        });
        let seen: Vec<Option<String>> = futures_util::future::join_all(looks).await;
        let mut answer = None;
        for (f, seen) in cuts.into_iter().zip(seen) {
            let Some(seen) = seen else { continue };
            self.cuts_unseen.retain(|c| *c != f);
            if f == *asked {
                answer = Some(Effect::Seen(seen));
            } else {
                self.seen.push((f, seen));
            }
        }
        answer
    }
}

/// The faults due at one instant start as one: each stages its iptables rules ([`Hands::cut`],
/// [`Hands::drop_messages`], [`Hands::duplicate_messages`]) and the last adds them all in one
/// batch, so that a split-brain's five cuts begin together; the first heal of an instant drops
/// the rules of every cut, loss and copying healed at it, so each one's `stop` line comes after
/// its rules are gone (a copying fault's heal, which forgets its baseline, is not run: the next
/// start takes a new one).
impl Nemesis for DockerNemesis<'_> {
    async fn begin(&mut self, fault: &Fault) {
        let last = self.instant(fault, Action::Begin).len() == 1;
        fault.begin(self).await;
        if self.is_container_cut(fault) {
            self.cuts_unseen.push(*fault);
        }
        if last {
            self.apply_staged().await;
        }
    }

    async fn heal(&mut self, fault: &Fault) {
        let instant = self.instant(fault, Action::Heal);
        let rules = |f: &Fault| {
            matches!(
                f.kind,
                Kind::Partition { .. } | Kind::Loss { .. } | Kind::Duplicate { .. }
            )
        };
        if !rules(fault) {
            fault.heal(self).await;
        } else if let Some(i) = self.dropped.iter().position(|d| d == fault) {
            // Its rules went with the first heal of the instant.
            self.dropped.remove(i);
        } else {
            // Every cut, loss and copying healing now goes at once, with this one. Their last looks come
            // first: a cut not seen yet is looked at while it is still on, and what was seen is
            // kept for `run_plan`'s look before each one's own heal.
            let group: Vec<Fault> = instant.into_iter().filter(rules).collect();
            let unseen: Vec<Fault> = (group.iter().skip(1))
                .filter(|f| self.cuts_unseen.contains(f))
                .copied()
                .collect();
            if !unseen.is_empty() {
                let _ = self.look_at(unseen, fault).await;
            }
            self.drop_rules(&group).await;
            self.dropped.extend(group.into_iter().skip(1));
        }
        self.cuts_unseen.retain(|c| c != fault);
        self.seen.retain(|(c, _)| c != fault);
    }

    async fn observe(&mut self, fault: &Fault) -> Option<Effect> {
        if let Some(i) = self.seen.iter().position(|(c, _)| c == fault) {
            return Some(Effect::Seen(self.seen.remove(i).1));
        }
        if self.cuts_unseen.contains(fault) {
            return self.look_at_cuts(fault).await;
        }
        fault.observe(self).await
    }
}
