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

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use chaos::fault::{Fault, Kind, Side, Target};
use chaos::nemesis::Nemesis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::{Cluster, Node};
use crate::proxy::Proxies;

/// How long a probe waits for an answer before the target counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a connection between two containers may take before it counts as cut (on the
/// bridge one takes well under a millisecond; a cut one never completes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// Probes sent to look for packet loss.
const LOSS_BURST: usize = 20;

const FLUSH_MARKER: &str = "aside:nemesis:flush";

/// One iptables rule added inside a container, to delete at the heal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    container: String,
    args: Vec<String>,
}

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

/// `docker` with `args`: Ok(stdout) or Err(one line).
pub(crate) fn docker(args: &[&str]) -> Result<String, String> {
    let o = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// (from, to): a connection that a cut between containers must stop.
type CutPair<'a> = ((Target, &'a Node), (Target, &'a Node));

/// `Some(what was seen)` when the connection of `pair` fails.
fn cut_seen(((tt, from), (pt, to)): CutPair<'_>) -> Option<String> {
    DockerNemesis::reaches(from, to).err().map(|e| {
        format!(
            "{} -> {} ({}:{}): no connection ({e})",
            tt.name(),
            pt.name(),
            to.ip,
            to.port
        )
    })
}

/// Runs `iptables OP RULE` for every rule: one `docker exec` per container, every container at
/// once. Returns the containers where a command failed (each is tried).
fn iptables_batches(rules: &[(Fault, Rule)], op: &str) -> Vec<String> {
    let mut by: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (_, r) in rules {
        by.entry(r.container.as_str())
            .or_default()
            .push(format!("iptables {op} {} || rc=1", r.args.join(" ")));
    }
    std::thread::scope(|s| {
        let runs: Vec<_> = by
            .iter()
            .map(|(c, cmds)| {
                let script = format!("rc=0; {}; exit $rc", cmds.join("; "));
                s.spawn(move || {
                    docker(&["exec", "-u", "root", c, "sh", "-c", &script])
                        .err()
                        .map(|e| format!("{c}: {e}"))
                })
            })
            .collect();
        runs.into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    })
}

/// Runs `cmd` as root inside `node`'s container.
fn exec(node: &Node, cmd: &[&str]) -> Result<String, String> {
    let id = node.container.id().to_string();
    let mut args = vec!["exec", "-u", "root", id.as_str()];
    args.extend_from_slice(cmd);
    docker(&args)
}

/// A protocol-level hello to `addr` from the host: Redis and Sentinel answer PING, memcached
/// `version`, PostgreSQL an SSLRequest with one byte. `Err(what was seen)` without an answer.
/// A request and the test its answer must pass.
type Hello = (&'static [u8], fn(&[u8]) -> bool);

pub async fn ask(target: Target, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let (req, ok): Hello = match target {
        Target::RedisMaster | Target::RedisReplica | Target::Sentinel(_) => {
            (b"PING\r\n", |r| r.starts_with(b"+PONG"))
        }
        Target::Memcached(_) => (b"version\r\n", |r| r.starts_with(b"VERSION")),
        Target::PgPrimary | Target::PgReplica => (&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], |r| {
            matches!(r.first(), Some(b'N' | b'S'))
        }),
        Target::App(_) => return Ok(()),
    };
    let talk = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(req).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if ok(&buf[..n]) {
            Ok(())
        } else {
            Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&buf[..n])
            ))
        }
    };
    match tokio::time::timeout(timeout, talk).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Sends `cmd` (a Redis command in RESP) to `addr` and returns the raw reply.
async fn redis(addr: &str, cmd: &[&str]) -> Result<redis::Value, String> {
    let client = redis::Client::open(format!("redis://{addr}")).map_err(|e| e.to_string())?;
    let mut c = tokio::time::timeout(PROBE_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| {
            format!(
                "{addr}: no connection within {} ms",
                PROBE_TIMEOUT.as_millis()
            )
        })?
        .map_err(|e| e.to_string())?;
    let mut q = redis::cmd(cmd[0]);
    for a in &cmd[1..] {
        q.arg(*a);
    }
    tokio::time::timeout(PROBE_TIMEOUT, q.query_async(&mut c))
        .await
        .map_err(|_| format!("{addr}: no reply within {} ms", PROBE_TIMEOUT.as_millis()))?
        .map_err(|e| e.to_string())
}

/// `psql` inside `node`'s container, over TCP (the socket directory is not guaranteed).
fn psql(node: &Node, sql: &str) -> Result<String, String> {
    exec(
        node,
        &["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atqc", sql],
    )
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

    fn add_rule(&mut self, fault: Fault, node: &Node, args: Vec<String>) {
        self.staged.push((
            fault,
            Rule {
                container: node.container.id().to_string(),
                args,
            },
        ));
    }

    /// Adds every staged rule: one `docker exec` per container, all containers at once (each
    /// exec takes about 90 ms; one by one, a split-brain's cuts would start 0.5 s apart).
    fn apply_staged(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        for c in iptables_batches(&staged, "-A") {
            tracing::warn!(container = %c, "adding a rule failed");
        }
        // Kept also where adding failed: deleting a rule that is not there is harmless.
        self.rules.extend(staged);
    }

    /// Deletes the rules of `faults`, all containers at once.
    fn drop_rules(&mut self, faults: &[Fault]) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.rules)
            .into_iter()
            .partition(|(f, _)| faults.contains(f));
        self.rules = rest;
        for c in iptables_batches(&mine, "-D") {
            tracing::warn!(container = %c, "removing a partition rule failed");
        }
    }

    /// Is `side` the app nodes as a whole, behind the gateway?
    fn is_apps(&self, side: Side) -> bool {
        self.apps_on_host() && matches!(side, Side::Apps)
    }

    fn cut(&mut self, fault: Fault, peers: Side, one_way: bool) {
        let s = |x: &str| x.to_string();
        if self.is_apps(fault.target) {
            // Rules on the servers' side: what they send to the apps is lost, and for a
            // symmetric cut what they receive from them.
            for (_, p) in self.side(peers) {
                let apps = self.apps.to_string();
                self.add_rule(
                    fault,
                    p,
                    vec![s("OUTPUT"), s("-d"), apps.clone(), s("-j"), s("DROP")],
                );
                if !one_way {
                    self.add_rule(
                        fault,
                        p,
                        vec![s("INPUT"), s("-s"), apps, s("-j"), s("DROP")],
                    );
                }
            }
            return;
        }
        let mut peer_ips: Vec<(Option<&'a Node>, String)> = self
            .side(peers)
            .into_iter()
            .filter(|(t, _)| !fault.target.contains(*t))
            .map(|(t, n)| (matches!(t, Target::App(_)).then_some(n), n.ip.to_string()))
            .collect();
        if self.is_apps(peers) {
            peer_ips.push((None, self.apps.to_string()));
        }
        let drop =
            |chain: &str, flag: &str, ip: &str| vec![s(chain), s(flag), s(ip), s("-j"), s("DROP")];
        // Behind the proxies a server sees every app node's connection come from the proxy, so a
        // cut between an app node and a server is made in the app node, by the address it
        // dialled (conntrack's original destination, before the DNAT to the proxy).
        let dialled = |chain: &str, ip: &str| {
            vec![
                s(chain),
                s("-m"),
                s("conntrack"),
                s("--ctorigdst"),
                s(ip),
                s("-j"),
                s("DROP"),
            ]
        };
        let proxied = self.proxies.is_some();
        for (tt, t) in self.side(fault.target) {
            let target_app = matches!(tt, Target::App(_));
            for (peer_app, ip) in &peer_ips {
                match (proxied, target_app, peer_app) {
                    // The target is an app node, the peer a server.
                    (true, true, None) => {
                        self.add_rule(fault, t, dialled("INPUT", ip));
                        if !one_way {
                            self.add_rule(fault, t, dialled("OUTPUT", ip));
                        }
                    }
                    // The target is a server, the peer an app node.
                    (true, false, Some(app)) => {
                        let server = t.ip.to_string();
                        self.add_rule(fault, app, dialled("OUTPUT", &server));
                        if !one_way {
                            self.add_rule(fault, app, dialled("INPUT", &server));
                        }
                    }
                    _ => {
                        self.add_rule(fault, t, drop("INPUT", "-s", ip));
                        if !one_way {
                            self.add_rule(fault, t, drop("OUTPUT", "-d", ip));
                        }
                    }
                }
            }
        }
    }

    /// Applies `fault`, staging its iptables rules (added by [`DockerNemesis::apply_staged`]).
    async fn stage(&mut self, fault: &Fault) {
        match fault.kind {
            Kind::Kill => {
                for (_, n) in self.side(fault.target) {
                    if let Err(e) = docker(&["kill", n.container.id()]) {
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
                    if let Err(e) = psql(n, &set).and_then(|_| psql(n, "SELECT pg_reload_conf()")) {
                        tracing::warn!("replica lag: {e}");
                    }
                }
            }
        }
    }

    /// The connection that shows a cut between containers: from one side to a server on the
    /// other (app nodes listen on nothing, so when the peers are app nodes only, from a peer to
    /// the target).
    fn cut_pair(&self, fault: &Fault, peers: Side) -> Option<CutPair<'a>> {
        let server = |(t, _): &(Target, &Node)| !matches!(t, Target::App(_));
        let target = self.side(fault.target);
        let peers: Vec<_> = self
            .side(peers)
            .into_iter()
            .filter(|(t, _)| !fault.target.contains(*t))
            .collect();
        Some(match peers.iter().find(|p| server(p)) {
            Some(p) => (*target.first()?, *p),
            None => (*peers.first()?, *target.iter().find(|t| server(t))?),
        })
    }

    /// Can `from` (a container) open a TCP connection to `to` within [`CONNECT_TIMEOUT`]?
    fn reaches(from: &Node, to: &Node) -> Result<(), String> {
        let script = format!(
            "timeout {} bash -c 'exec 3<>/dev/tcp/{}/{}'",
            CONNECT_TIMEOUT.as_secs_f64(),
            to.ip,
            to.port
        );
        exec(from, &["bash", "-c", &script]).map(drop)
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
        self.apply_staged();
    }

    fn at_once(&self) -> bool {
        true
    }

    async fn begin_all(&mut self, faults: &[Fault]) {
        for f in faults {
            self.stage(f).await;
        }
        self.apply_staged();
    }

    /// Cuts between containers are looked at all at once (each look is a `docker exec` that
    /// waits up to the probe timeout: one by one, five cuts took 3 s to see); the rest in turn.
    async fn observe_all(&mut self, faults: &[Fault]) -> Vec<Option<String>> {
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
        let seen: Vec<Option<Option<String>>> = std::thread::scope(|s| {
            let looks: Vec<_> = pairs
                .iter()
                .map(|p| p.map(|p| s.spawn(move || cut_seen(p))))
                .collect();
            looks
                .into_iter()
                .map(|h| h.map(|h| h.join().ok().flatten()))
                .collect()
        });
        let mut out = Vec::new();
        for (f, seen) in faults.iter().zip(seen) {
            out.push(match seen {
                Some(seen) => seen,
                None => self.observe(f).await,
            });
        }
        out
    }

    async fn heal_all(&mut self, faults: &[Fault]) {
        let (cuts, rest): (Vec<Fault>, Vec<Fault>) = faults
            .iter()
            .partition(|f| matches!(f.kind, Kind::Partition { .. } | Kind::Loss { .. }));
        self.drop_rules(&cuts);
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
            Kind::Partition { .. } | Kind::Loss { .. } => self.drop_rules(&[*fault]),
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
                    if let Err(e) = psql(n, &reset).and_then(|_| psql(n, "SELECT pg_reload_conf()"))
                    {
                        tracing::warn!("replica lag heal: {e}");
                    }
                }
            }
        }
    }

    async fn observe(&mut self, fault: &Fault) -> Option<String> {
        match fault.kind {
            Kind::Kill | Kind::Pause => {
                let (t, n) = *self.side(fault.target).first()?;
                if let Target::App(_) = t {
                    // Nobody talks to an app node: Docker's account of its cgroup says it.
                    let state =
                        docker(&["inspect", "-f", "{{.State.Status}}", n.container.id()]).ok()?;
                    return (state == "paused" || state == "exited")
                        .then(|| format!("{}'s container is {state} (docker inspect)", t.name()));
                }
                let addr: SocketAddr = n.addr().parse().ok()?;
                ask(t, addr, PROBE_TIMEOUT)
                    .await
                    .err()
                    .map(|e| format!("the host -> {} ({addr}): {e}", t.name()))
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
                    return ask(t, addr, PROBE_TIMEOUT)
                        .await
                        .err()
                        .map(|e| format!("the apps -> {} ({addr}): {e}", t.name()));
                }
                let pair = self.cut_pair(fault, peers)?;
                cut_seen(pair)
            }
            Kind::Loss { .. } => {
                let (t, n) = *self.servers().first()?;
                let addr: SocketAddr = n.addr().parse().ok()?;
                let probes = (0..LOSS_BURST).map(|_| ask(t, addr, Duration::from_millis(300)));
                let lost = futures_util::future::join_all(probes)
                    .await
                    .iter()
                    .filter(|r| r.is_err())
                    .count();
                (lost > 0).then(|| {
                    format!("{lost} of {LOSS_BURST} requests from the host to {} got no answer within 300 ms", t.name())
                })
            }
            Kind::Latency { one_way_ms } => {
                // A round trip from the host through the master's proxy, as an app node's goes.
                let (t, n) = *self.side(Side::One(Target::RedisMaster)).first()?;
                let (name, front) = self.proxies?.front_of(n.addr().parse().ok()?)?;
                let began = std::time::Instant::now();
                ask(t, front, Duration::from_secs(2)).await.ok()?;
                let rtt = began.elapsed();
                (rtt >= Duration::from_millis(2 * u64::from(one_way_ms))).then(|| {
                    format!(
                        "a round trip from the host through the {name} proxy ({front}) took {:.1} ms",
                        rtt.as_secs_f64() * 1e3
                    )
                })
            }
            Kind::Flush => {
                let mut gone = Vec::new();
                for t in self.flushed.clone() {
                    let n = self.node(t)?;
                    let held = match t {
                        Target::Memcached(_) => {
                            use aside::tier::MemcachedLike;
                            let m = aside::backend::Memcached::new(n.addr(), 1);
                            m.gets(FLUSH_MARKER).await.ok()?.is_some()
                        }
                        _ => !matches!(
                            redis(&n.addr(), &["GET", FLUSH_MARKER]).await.ok()?,
                            redis::Value::Nil
                        ),
                    };
                    if held {
                        return None;
                    }
                    gone.push(t.name());
                }
                (!gone.is_empty()).then(|| {
                    format!(
                        "the marker key written before the flush is gone from {}",
                        gone.join(", ")
                    )
                })
            }
            Kind::MemoryLimit { kib } => {
                for (t, before) in self.evicted_before.clone() {
                    let now = Self::evicted(self.node(t)?).await?;
                    if now > before {
                        return Some(format!(
                            "{} evicted {} keys under its {kib} KiB limit (INFO evicted_keys)",
                            t.name(),
                            now - before
                        ));
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
                .ok()?;
                let (behind, ms) = row.split_once('|')?;
                (behind == "t").then(|| {
                    format!("pg-replica has received WAL it has not replayed; its last replayed transaction is {ms} ms old")
                })
            }
        }
    }
}
