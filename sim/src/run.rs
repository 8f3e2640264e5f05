//! One run in the simulator: boot the cluster, then [`chaos::drive::drive`] with the simulator as
//! its [`World`] (one madsim node and one `aside` instance per app node, the simulator's nemesis,
//! a prober node), then ask every server who is master, write the history and end every node.
//! Generic over the strategy (any `aside::Strategy`, a user's own included) and over the nemesis
//! (the tests wrap the real one to show that a fault which does nothing is caught).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aside::Strategy;
use chaos::drive::{app_node, drive, World};
use chaos::nemesis::Nemesis;
use chaos::record::Recorder;
use chaos::scenario::Scenario;
use invariants::history::Role;
use madsim::runtime::Handle;
use madsim::time::{sleep, Instant};

use crate::backends::{build_cache, SimCache};
use crate::cluster::{Cluster, Node};
use crate::nemesis::SimNemesis;
use crate::net::ip;
use chaos::client::Clients;
use chaos::probe::{probe_rounds, Rounds};

/// What a run produced.
pub struct RunOutput {
    pub history: Vec<u8>,
    pub ops: u64,
    pub sim_ns: u64,
    /// Reads the app nodes answered from an aged entry (stale-while-revalidate), which the
    /// history cannot tell from fresh hits.
    pub stale_served: u64,
    /// Requests each server answered (clients', replication's, Sentinels' and the nemesis's),
    /// by role, busiest first.
    pub served: Vec<(String, u64)>,
    /// After the probes: each Redis node's role and the master each Sentinel names, by role
    /// name (`redis-master` -> `master`, `sentinel-1` -> `redis-replica`).
    pub roles: Vec<(String, String)>,
}

/// The commit this binary was built from (for seed logs).
pub const COMMIT: &str = chaos::COMMIT;

/// Simulated time a run may take before madsim aborts it: far beyond any scenario's span, so
/// reaching it means the run hung.
pub const TIME_LIMIT: Duration = Duration::from_secs(600);

/// The network configuration of a scenario.
pub fn config(scenario: &Scenario) -> madsim::Config {
    let mut c = madsim::Config::default();
    c.net.send_latency = Duration::from_micros(scenario.net_latency_us.0)
        ..Duration::from_micros(scenario.net_latency_us.1);
    c
}

/// Runs one seed in a fresh runtime: the one way a run is made, by `cargo sim`, its replay and
/// the `MADSIM_TEST_SEED` test alike.
pub fn run<St: Strategy + Clone>(scenario: &Scenario, strategy: St, seed: u64) -> RunOutput {
    run_with(scenario, strategy, seed, |n| n)
}

/// [`run`] with the simulator's nemesis wrapped by `nemesis`. Never inlined: `ci/profile.sh`
/// counts the instructions spent inside it.
#[inline(never)]
pub fn run_with<St, N>(
    scenario: &Scenario,
    strategy: St,
    seed: u64,
    nemesis: impl FnOnce(SimNemesis) -> N,
) -> RunOutput
where
    St: Strategy + Clone,
    N: Nemesis,
{
    let scenario = &scenario.for_seed(seed);
    let scenario = &scenario.judged_by(
        strategy.staleness_bound_ms(&scenario.cache_config()),
        strategy.uses_outbox(),
    );
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(seed, config(scenario));
    rt.set_time_limit(TIME_LIMIT);
    rt.block_on(simulate(scenario, strategy, seed, nemesis))
}

/// The simulator as a [`World`]: app nodes are madsim nodes of their own at `10.0.4.N`, the
/// prober is one more, and every server of `cluster` is a node the nemesis can kill, pause or
/// cut.
struct SimWorld<'a, St: Strategy, W> {
    handle: Handle,
    cluster: &'a Cluster,
    strategy: St,
    cfg: aside::CacheConfig,
    pools: crate::backends::PgPools,
    buggify: bool,
    apps: Vec<Node>,
    caches: Vec<Arc<SimCache<St>>>,
    wrap: Option<W>,
    prober: Option<madsim::runtime::NodeHandle>,
}

impl<St, W, N> World for SimWorld<'_, St, W>
where
    St: Strategy + Clone,
    W: FnOnce(SimNemesis) -> N,
    N: Nemesis,
{
    type Join = madsim::task::JoinHandle<()>;
    type Nemesis = N;

    async fn start_app(
        &mut self,
        app: usize,
        clients: &Clients,
        clients_per_app: usize,
    ) -> Result<Vec<Self::Join>, String> {
        let at = ip(4, 1 + app as u8);
        let target = chaos::fault::Target::App(app as u8);
        let name = target.name();
        let node = self.handle.create_node().name(&name).ip(at).build();
        self.apps.push(Node {
            target,
            addr: std::net::SocketAddr::new(at, 0),
            handle: node.clone(),
        });
        let (addrs, cfg, st) = (
            self.cluster.addrs.clone(),
            self.cfg.clone(),
            self.strategy.clone(),
        );
        let (buggify, pools) = (self.buggify, self.pools);
        let cache = node
            .spawn(async move {
                build_cache(at, &addrs, st, cfg, &name, Duration::MAX, pools, buggify).await
            })
            .await
            .map_err(|e| format!("app-{} could not build its cache: {e}", app + 1))?;
        let started = app_node(cache, clients, app, clients_per_app, |t| node.spawn(t));
        self.caches.push(started.cache);
        Ok(started.clients)
    }

    async fn start_foreign(&mut self, writer: chaos::drive::Foreign) -> Result<Self::Join, String> {
        let at = crate::net::foreign_writer_ip();
        let node = self.handle.create_node().name("foreign").ip(at).build();
        let (primary, timeout) = (self.cluster.addrs.pg[0], self.cfg.db_timeout());
        Ok(node.spawn(async move {
            let rpc = crate::net::Rpc::bind(at).await;
            writer
                .run(ForeignPg {
                    rpc,
                    primary,
                    timeout,
                })
                .await
        }))
    }

    async fn nemesis(&mut self, _plan: &chaos::plan::Plan) -> Result<N, String> {
        let wrap = self.wrap.take().ok_or("the nemesis is made once per run")?;
        let rings = self.caches.iter().map(|c| c.l2().membership()).collect();
        let clocks = self.caches.iter().map(|c| c.wall_clock().clone()).collect();
        Ok(wrap(
            SimNemesis::new(self.cluster, &self.apps, rings, clocks, ip(4, 200)).await,
        ))
    }

    async fn probe(
        &mut self,
        keys: &[String],
        rec: &Arc<Recorder>,
        rounds: Rounds,
    ) -> Result<(), String> {
        // Through a cache of its own, on a node of its own, from the quiet point on.
        let prober = self
            .handle
            .create_node()
            .name("prober")
            .ip(ip(4, 100))
            .build();
        self.prober = Some(prober.clone());
        let (addrs, keys, st, cfg) = (
            self.cluster.addrs.clone(),
            keys.to_vec(),
            self.strategy.clone(),
            self.cfg.clone(),
        );
        let rec = rec.clone();
        let _ = prober
            .spawn(async move {
                let cache = build_cache(
                    ip(4, 100),
                    &addrs,
                    st,
                    cfg,
                    "prober",
                    Duration::from_secs(1),
                    crate::backends::PgPools::defaults(),
                    false,
                )
                .await;
                for s in 0..cache.l1_shards().len() {
                    cache.l1_shards().server(s).resolve().await;
                }
                probe_rounds(&cache, &keys, &rec, rounds).await;
            })
            .await;
        Ok(())
    }
}

/// The coverage goals the server models and the simulator's nodes reached, into the history
/// under each server's name; marks no server collected (a replica applying its master's stream)
/// count for `servers`.
fn record_server_goals(cluster: &Cluster, rec: &Recorder) {
    let origin = rec.origin();
    let since = |t: Instant| t.saturating_duration_since(origin).as_nanos() as u64;
    for (goal, at, count, first) in crate::net::goals() {
        let node = cluster
            .servers
            .iter()
            .find(|n| n.addr == at)
            .map_or_else(|| at.to_string(), |n| n.target.name());
        rec.goal_at(goal, &node, count, since(first));
    }
    for goal in aside::goal::take_here() {
        rec.goal_at(goal, "servers", 1, rec.now_ns());
    }
}

/// The history's names for the servers (a cache line's `server`), and every role a Redis node
/// took, as `role` lines.
fn record_servers(cluster: &Cluster, rec: &Recorder) {
    for n in &cluster.servers {
        rec.name_server(n.addr.to_string(), n.target.name());
    }
    let origin = rec.origin();
    for (t, at, master) in crate::net::roles_taken() {
        let Some(n) = cluster.servers.iter().find(|n| n.addr == at) else {
            continue;
        };
        let role = if master { Role::Master } else { Role::Replica };
        let at_ns = t.saturating_duration_since(origin).as_nanos() as u64;
        let shard = cluster
            .addrs
            .redis
            .iter()
            .position(|pair| pair.contains(&at))
            .unwrap_or(0);
        rec.role_at(&n.target.name(), shard as u64, role, at_ns);
    }
}

/// The foreign writer's way to the PostgreSQL primary: one transaction per call.
struct ForeignPg {
    rpc: crate::net::Rpc,
    primary: std::net::SocketAddr,
    timeout: Duration,
}

impl chaos::foreign::ForeignDb for ForeignPg {
    async fn write_tx(
        &self,
        keys: &[String],
        rollback: bool,
    ) -> Result<Vec<(String, u64)>, String> {
        use crate::nodes::postgres::{PgCmd, PgReply};
        let tx = PgCmd::WriteTx {
            keys: keys.to_vec(),
            rollback,
        };
        match self
            .rpc
            .call::<PgCmd, PgReply>(self.primary, crate::net::TAG_PG, tx, self.timeout)
            .await
        {
            Ok(PgReply::Written(w)) => Ok(w),
            Ok(PgReply::RolledBack) => Ok(Vec::new()),
            Ok(_) => Err("an unexpected reply".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

async fn simulate<St, N>(
    scenario: &Scenario,
    strategy: St,
    seed: u64,
    wrap: impl FnOnce(SimNemesis) -> N,
) -> RunOutput
where
    St: Strategy + Clone,
    N: Nemesis,
{
    let handle = Handle::current();
    crate::net::served_reset();
    crate::buggify::reset();
    let workload = scenario.workload();
    let cluster = Cluster::boot(scenario, workload.keys(), seed).await;
    let mut world = SimWorld {
        handle: handle.clone(),
        cluster: &cluster,
        strategy: strategy.clone(),
        cfg: scenario.cache_config(),
        pools: crate::backends::PgPools {
            max: scenario.pg_pool_max,
            wait: Duration::from_millis(scenario.pg_pool_wait_ms),
        },
        buggify: scenario.buggify,
        apps: Vec::new(),
        caches: Vec::new(),
        wrap: Some(wrap),
        prober: None,
    };
    let rec = match drive(&mut world, scenario, seed).await {
        Ok(rec) => rec,
        Err(e) => panic!("{}: {e}", scenario.name),
    };
    let SimWorld {
        apps,
        caches,
        prober,
        ..
    } = world;
    let prober = prober.expect("the probes ran");
    let roles = roles(&cluster, &prober).await;

    let header = scenario.header("sim", strategy.name(), seed);
    record_server_goals(&cluster, &rec);
    record_servers(&cluster, &rec);
    let by_addr = crate::net::served();
    let mut served: Vec<(String, u64)> = cluster
        .servers
        .iter()
        .map(|n| (n.target.name(), by_addr.get(&n.addr).copied().unwrap_or(0)))
        .collect();
    served.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let out = RunOutput {
        roles,
        served,
        ops: rec.ops(),
        history: rec.finish(&header),
        sim_ns: cluster.start.elapsed().as_nanos() as u64,
        stale_served: caches
            .iter()
            .map(|c| c.metrics().stale_served.load(Ordering::Relaxed))
            .sum(),
    };
    // The run is over: end every node's tasks. A task still waiting (an invalidator's poll, a
    // server's accept loop) is held only by wakers kept in structures its own future holds, a
    // cycle that dropping the runtime never breaks: about 4 MB per run, 17 GB over a 200-seed
    // matrix. A killed node's tasks are woken and dropped by the next scheduling round.
    drop(caches);
    for id in apps
        .iter()
        .chain(&cluster.servers)
        .map(|n| n.handle.id())
        .chain([prober.id()])
    {
        handle.kill(id);
    }
    sleep(Duration::from_millis(1)).await;
    out
}

/// Who is master at the end of the run, as the Redis nodes and the Sentinels say.
async fn roles(cluster: &Cluster, from: &madsim::runtime::NodeHandle) -> Vec<(String, String)> {
    use crate::net::{Rpc, TAG_REDIS, TAG_SENTINEL};
    use crate::nodes::redis::{Admin, AdminReply, Role};
    use crate::nodes::sentinel::{SentinelMsg, SentinelReply};
    use chaos::fault::Target;
    let by_addr: Vec<(std::net::SocketAddr, String)> = cluster
        .servers
        .iter()
        .map(|n| (n.addr, n.target.name()))
        .collect();
    let servers: Vec<(Target, std::net::SocketAddr)> =
        cluster.servers.iter().map(|n| (n.target, n.addr)).collect();
    let shards = cluster.addrs.redis.len() as u8;
    from.spawn(async move {
        let rpc = Rpc::bind(ip(4, 100)).await;
        let name = |a: std::net::SocketAddr| {
            by_addr
                .iter()
                .find(|(x, _)| *x == a)
                .map_or(a.to_string(), |(_, n)| n.clone())
        };
        let wait = Duration::from_millis(500);
        let mut out = Vec::new();
        for (t, addr) in servers {
            let said = match t {
                Target::RedisMaster(_) | Target::RedisReplica(_) => {
                    match rpc
                        .call::<Admin, AdminReply>(addr, TAG_REDIS, Admin::Ping, wait)
                        .await
                    {
                        Ok(AdminReply::Pong(Role::Master)) => "master".to_string(),
                        Ok(AdminReply::Pong(Role::Replica(m))) => format!("replica of {}", name(m)),
                        _ => "no answer".into(),
                    }
                }
                Target::Sentinel(_) => {
                    // Per pair it watches (the first pair's alone as before shards).
                    let mut said = Vec::new();
                    for shard in 0..shards {
                        let ask = SentinelMsg::GetMaster(shard);
                        let m = match rpc
                            .call::<SentinelMsg, SentinelReply>(addr, TAG_SENTINEL, ask, wait)
                            .await
                        {
                            Ok(SentinelReply::Master(m)) => name(m),
                            _ => "no answer".into(),
                        };
                        said.push(match shard {
                            0 => format!("master is {m}"),
                            s => format!("pair {}'s master is {m}", s + 1),
                        });
                    }
                    said.join("; ")
                }
                _ => continue,
            };
            out.push((t.name(), said));
        }
        out
    })
    .await
    .unwrap_or_default()
}
