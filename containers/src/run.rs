//! One scenario run against real servers: the same workload, client loop, nemesis runner,
//! probes and recorder as the simulator (all from `chaos`), over a freshly launched cluster,
//! writing a history with `"world":"containers"` that the same checkers judge.
//!
//! Where the app nodes run: a scenario whose plan cuts or freezes one app node alone
//! (`split-brain`, `app-pause`) runs each app node in a container of its own
//! ([`crate::app`]: its own address for iptables, its own cgroup for `docker pause`). Every other
//! scenario runs them in this process (one `aside` instance per app node, shared by its
//! clients), all behind the cluster network's gateway address, where "every app node" as one
//! side of a cut is exact and no binary has to be mounted.
//!
//! Clock: every line's time is `CLOCK_MONOTONIC` (`tokio::time::Instant`) since the history's
//! zero; containers share the host kernel's clocks, so app nodes in containers record on the
//! same axis as the host's nemesis and probes, and server-side times (TTLs, replica delay) run
//! at the same rate.
//!
//! Payloads: the checkers expect the payload of (key, version) to be
//! `invariants::payload::expected(key, version)`. The simulator's database derives it; here a
//! trigger the harness installs ([`PAYLOAD_SQL`]) computes it in PostgreSQL from the version the
//! upsert assigns, so a value read back under the wrong key or version is caught as in the sim.

use std::sync::Arc;
use std::time::Duration;

use aside::{Builtin, Strategy};
use chaos::client::Clients;
use chaos::drive::{app_node, drive, World};
use chaos::fault::{Kind, Side, Target};
use chaos::probe::{probe_rounds, Rounds};
use chaos::record::Recorder;
use chaos::scenario::Scenario;

use crate::app::{instant_at, monotonic_ns, AppNodes};
use crate::cluster::{Cluster, ClusterSpec, MinReplicas};
use crate::nemesis::DockerNemesis;
use crate::proxy::Proxies;
use crate::Error;

/// FNV-1a 64 of (key, 0xff, version as 8 little-endian bytes) in PL/pgSQL, with numeric
/// arithmetic modulo 2^64, and a trigger that sets every row's payload from its key and version.
pub const PAYLOAD_SQL: &str = r#"
CREATE OR REPLACE FUNCTION aside_payload(k text, v bigint) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    h numeric := 14695981039346656037;
    two64 numeric := 18446744073709551616;
    bytes bytea := convert_to(k, 'UTF8') || '\xff'::bytea;
    i int;
    b int;
    lo int;
BEGIN
    FOR i IN 0..7 LOOP
        bytes := bytes || set_byte('\x00'::bytea, 0, ((v >> (8 * i)) & 255)::int);
    END LOOP;
    FOR i IN 0..length(bytes) - 1 LOOP
        b := get_byte(bytes, i);
        lo := mod(h, 256)::int;
        h := h - lo + (lo # b);
        h := mod(h * 1099511628211, two64);
    END LOOP;
    IF h >= 9223372036854775808 THEN
        h := h - two64;
    END IF;
    RETURN convert_to('v' || v || '-' || lpad(to_hex(h::bigint), 16, '0'), 'UTF8');
END
$$;
CREATE OR REPLACE FUNCTION aside_payload_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.payload := aside_payload(NEW.key, NEW.version);
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS aside_payload ON aside_rows;
CREATE TRIGGER aside_payload BEFORE INSERT OR UPDATE ON aside_rows
    FOR EACH ROW EXECUTE FUNCTION aside_payload_row();
"#;

/// A listing transaction (scenarios with `listing_transactions`): a write to a listing is a new
/// post in its subreddit, and the same transaction bumps every sibling listing (every sort order
/// changes), as the simulator's database does. The siblings' rows fire `aside_rows`'s capture,
/// so each has its outbox row, and the library's write reports them (`Written::siblings`). A
/// sibling another listing transaction holds is skipped (`SKIP LOCKED`: that one is bumping it),
/// so two of them never wait on each other in a cycle.
pub const LISTINGS_SQL: &str = r#"
CREATE OR REPLACE FUNCTION aside_listing_siblings() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prefix TEXT := substring(NEW.key from '^(listings:.*:)');
BEGIN
    IF pg_trigger_depth() = 1 AND prefix IS NOT NULL AND NEW.version > 0 THEN
        UPDATE aside_rows SET version = version + 1
         WHERE key IN (SELECT key FROM aside_rows
                        WHERE left(key, length(prefix)) = prefix AND key <> NEW.key
                        ORDER BY key FOR UPDATE SKIP LOCKED);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS aside_listing_siblings ON aside_rows;
CREATE TRIGGER aside_listing_siblings AFTER INSERT OR UPDATE ON aside_rows
    FOR EACH ROW EXECUTE FUNCTION aside_listing_siblings();
"#;

/// The foreign writer's database: a connection pool of its own to the primary, and plain SQL
/// in explicit transactions, no cache call. A transaction of several keys is one multi-row
/// UPDATE that gives no version (the table's trigger bumps it); one of a single key rewrites its
/// row, as a migration might: a DELETE, then an INSERT at the next version (readers never see
/// the row missing; the DELETE's and the INSERT's capture each name the key). Either way
/// `aside_rows`'s capture writes the outbox rows.
struct ForeignPg {
    pool: sqlx::PgPool,
    timeout: Duration,
}

impl ForeignPg {
    async fn tx(&self, keys: &[String], rollback: bool) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let rows = if let [key] = keys {
            let old: Option<i64> =
                sqlx::query_scalar("DELETE FROM aside_rows WHERE key = $1 RETURNING version")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query_as(
                "INSERT INTO aside_rows (key, version, payload) VALUES ($1, $2, '')
                 RETURNING key, version",
            )
            .bind(key)
            .bind(old.unwrap_or(0) + 1)
            .fetch_all(&mut *tx)
            .await?
        } else {
            sqlx::query_as(
                "UPDATE aside_rows SET payload = '' WHERE key = ANY($1) RETURNING key, version",
            )
            .bind(keys)
            .fetch_all(&mut *tx)
            .await?
        };
        if rollback {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        tx.commit().await?;
        Ok(rows)
    }
}

impl chaos::foreign::ForeignDb for ForeignPg {
    async fn write_tx(
        &self,
        keys: &[String],
        rollback: bool,
    ) -> Result<Vec<(String, u64)>, String> {
        match tokio::time::timeout(self.timeout, self.tx(keys, rollback)).await {
            Ok(Ok(rows)) => Ok(rows.into_iter().map(|(k, v)| (k, v as u64)).collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// Why this world cannot run `sc` faithfully yet, if it cannot.
pub fn unsupported(sc: &Scenario) -> Option<String> {
    if sc.buggify {
        return Some("BUGGIFY exists only in the simulator".into());
    }
    if sc.db_query_us != Scenario::base("", "").db_query_us {
        return Some(
            "its database is slow only in the simulator (workload.db_query_us): real PostgreSQL answers in well under a millisecond"
                .into(),
        );
    }
    for step in &sc.plan.steps {
        let f = step.fault;
        if matches!(f.kind, Kind::Kill) && f.target.contains(Target::App(0)) {
            return Some(format!(
                "{f}: a killed app node loses the lines it holds in memory"
            ));
        }
    }
    None
}

/// Does `sc` (as run with its seed) cut or freeze one app node alone, delay the network, slow
/// PostgreSQL's queries, reset a server's replies or stall its requests? Then its app nodes run in containers
/// (delays and resets: behind the proxies).
pub fn apps_in_containers(sc: &Scenario) -> bool {
    let one_app = |s: Side| matches!(s, Side::One(Target::App(_)));
    sc.draw != chaos::scenario::Draw::Fixed
        || sc.plan.steps.iter().any(|step| {
            let f = step.fault;
            one_app(f.target)
                || matches!(f.kind, Kind::Partition { peers, .. } if one_app(peers))
                || needs_proxies(&f)
        })
}

/// Does `f` delay traffic, reset replies, hold requests or end connections (then the app nodes
/// reach the servers through proxies)?
fn needs_proxies(f: &chaos::fault::Fault) -> bool {
    matches!(
        f.kind,
        Kind::Latency { .. }
            | Kind::SlowQueries { .. }
            | Kind::Reset
            | Kind::Stall
            | Kind::HalfOpen
    )
}

/// What a run produced.
pub struct RunOutput {
    pub history: Vec<u8>,
    pub ops: u64,
    /// Every container's own log (`docker logs`, timestamped) by node name, taken after the
    /// probes: the Sentinels' `+switch-master` and `+convert-to-slave`, Redis's role changes,
    /// the app nodes' master resolutions, to set beside the history.
    pub logs: Vec<(String, String)>,
}

/// `docker logs --timestamps` of `node` (stdout and stderr), or why there are none.
fn docker_logs(node: &crate::cluster::Node) -> (String, String) {
    let text = std::process::Command::new("docker")
        .args(["logs", "--timestamps", node.container.id()])
        .output()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t
        })
        .unwrap_or_else(|e| format!("cannot run docker logs: {e}\n"));
    (node.name.clone(), text)
}

/// The containers as a [`World`]. App nodes run either in this process (one `aside` instance
/// each, their clients on this runtime, all behind the cluster network's gateway) or, when
/// `app_nodes` lists them, in containers of their own that run their clients themselves
/// ([`crate::app::serve`]): then starting one is nothing, they were launched and told when the
/// history's zero is before the run began.
struct Docker<'a, St: Strategy> {
    cluster: &'a Cluster,
    strategy: St,
    cfg: aside::CacheConfig,
    /// Each in-process app node's PostgreSQL pool (`postgres.pool_max`, `pool_wait_ms`).
    pg_pool_max: u32,
    pg_pool_wait_ms: u64,
    /// The harness's own instance, which reads every tier after the run.
    probe: &'a crate::cluster::LibraryWith<St>,
    app_nodes: &'a [crate::cluster::Node],
    proxies: Option<&'a Proxies>,
    /// The history's zero the app nodes in containers were told (`None`: in-process ones).
    origin: Option<tokio::time::Instant>,
    /// The memcached ring of each in-process app node.
    rings: Vec<aside::Membership>,
    /// The wall clocks of the app nodes in this process, in app order.
    clocks: Vec<aside::wall::WallClock>,
}

impl<'a, St: Strategy + Clone> World for Docker<'a, St> {
    type Join = tokio::task::JoinHandle<()>;
    type Nemesis = DockerNemesis<'a>;

    fn origin(&self) -> Option<tokio::time::Instant> {
        self.origin
    }

    async fn start_app(
        &mut self,
        app: usize,
        clients: &Clients,
        clients_per_app: usize,
    ) -> Result<Vec<Self::Join>, String> {
        if !self.app_nodes.is_empty() {
            // The clients run in the app node's container: the run waits for them as for its
            // own (the probes must not read the tiers while the last writes are in flight).
            let dir = crate::app::run_dir(self.cluster);
            let max = clients.duration + CLIENTS_LATE_MAX;
            return Ok(vec![tokio::spawn(crate::app::clients_done(dir, app, max))]);
        }
        let name = Target::App(app as u8).name();
        let cache = self
            .cluster
            .addrs()
            .library_pooled(
                self.strategy.clone(),
                self.cfg.clone(),
                &name,
                self.pg_pool_max,
                self.pg_pool_wait_ms,
            )
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        self.rings.push(cache.l2().membership());
        self.clocks.push(cache.wall_clock().clone());
        Ok(app_node(cache, clients, app, clients_per_app, tokio::spawn).clients)
    }

    async fn start_foreign(&mut self, writer: chaos::drive::Foreign) -> Result<Self::Join, String> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.cluster.pg_url())
            .await
            .map_err(|e| format!("the foreign writer's connection: {e}"))?;
        let db = ForeignPg {
            pool,
            timeout: self.cfg.db_timeout(),
        };
        Ok(tokio::spawn(writer.run(db)))
    }

    async fn nemesis(&mut self, plan: &chaos::plan::Plan) -> Result<DockerNemesis<'a>, String> {
        let rings = if self.app_nodes.is_empty() {
            crate::rings::Rings::InProcess(self.rings.clone())
        } else {
            crate::rings::Rings::Files {
                dir: crate::app::run_dir(self.cluster),
                apps: self.app_nodes.len(),
                seq: 0,
                boot: self.cluster.memcached_addrs(),
            }
        };
        let clocks = if self.app_nodes.is_empty() {
            crate::clocks::Clocks::InProcess(self.clocks.clone())
        } else {
            crate::clocks::Clocks::Files {
                dir: crate::app::run_dir(self.cluster),
                seqs: Vec::new(),
            }
        };
        DockerNemesis::new(
            self.cluster,
            self.app_nodes,
            self.proxies,
            rings,
            clocks,
            plan,
        )
    }

    async fn probe(
        &mut self,
        keys: &[String],
        rec: &Arc<Recorder>,
        rounds: Rounds,
    ) -> Result<(), String> {
        probe_rounds(self.probe, keys, rec, rounds).await;
        Ok(())
    }
}

/// How long after the run's duration an app node's clients may still finish their last ops.
const CLIENTS_LATE_MAX: Duration = Duration::from_secs(60);

/// How the servers of a run are configured beyond the scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Redis `min-replicas-to-write` / `min-replicas-max-lag` (recorded in the header's config
    /// as `redis_min_replicas_to_write` and `redis_min_replicas_max_lag_s`).
    pub redis_min_replicas: Option<MinReplicas>,
}

/// Runs `sc` once with `strategy` against a fresh cluster; `seed` fixes every client's ops (the
/// servers' timing is real, so two runs of one seed are alike, not identical). The cluster is
/// removed when the run ends, also on an error or a panic.
pub async fn run(sc: &Scenario, strategy: Builtin, seed: u64) -> Result<RunOutput, Error> {
    run_with(sc, strategy, seed, RunOptions::default()).await
}

/// [`run`] with the servers configured by `opts`, and any strategy: the built-ins or one of your
/// own (a type implementing `aside::Strategy`). App nodes in their own containers (the scenarios
/// that cut or freeze one app node, or delay the network) run the `aside` binary, which knows
/// the built-in strategies only: with a strategy of your own such a scenario is refused, in one
/// line that says so.
pub async fn run_with<St: Strategy + Clone>(
    sc: &Scenario,
    strategy: St,
    seed: u64,
    opts: RunOptions,
) -> Result<RunOutput, Error> {
    // The `random` scenario's plan is the seed's.
    let sc = &sc.for_seed(seed);
    // A strategy that promises a staleness bound is judged by exactly that bound.
    let sc = &sc.judged_by(
        strategy.staleness_bound_ms(&sc.cache_config()),
        strategy.uses_outbox(),
    );
    if let Some(why) = unsupported(sc) {
        return Err(Error::Docker(format!(
            "{} cannot run against containers: {why}",
            sc.name
        )));
    }
    // App nodes in containers run the `aside` binary: a built-in strategy, by name.
    let app_nodes = if apps_in_containers(sc) {
        Some(Builtin::parse(strategy.name()).ok_or_else(|| {
            Error::Docker(format!(
                "{}: its app nodes run in their own containers, which know the built-in strategies only; a strategy of your own ({}) runs the scenarios whose app nodes run in-process",
                sc.name,
                strategy.name()
            ))
        })?)
    } else {
        None
    };
    let cluster = Cluster::start(ClusterSpec {
        memcached_spares: usize::from(sc.memcached_spares()),
        redis_shards: usize::from(sc.redis_shards),
        pg_apply_delay_ms: sc.pg_replica_lag_ms,
        redis_min_replicas: opts.redis_min_replicas,
        ..ClusterSpec::default()
    })
    .await?;
    let workload = sc.workload();
    let cfg = sc.cache_config();
    // The harness's instance: it seeds the data, and reads every tier after the run.
    let probe = cluster
        .library_with(strategy.clone(), cfg.clone(), "probe")
        .await?;
    // The harness's data: the payload trigger, and every key at version 0 (as in the sim).
    let pg = probe.store().primary().clone();
    sqlx::raw_sql(PAYLOAD_SQL)
        .execute(&pg)
        .await
        .map_err(|e| Error::Docker(format!("installing the payload trigger: {e}")))?;
    if sc.listing_transactions {
        sqlx::raw_sql(LISTINGS_SQL)
            .execute(&pg)
            .await
            .map_err(|e| Error::Docker(format!("installing the listings trigger: {e}")))?;
    }
    for k in workload.keys() {
        sqlx::query(
            "INSERT INTO aside_rows (key, version, payload) VALUES ($1, 0, '') ON CONFLICT DO NOTHING",
        )
        .bind(k)
        .execute(&pg)
        .await
        .map_err(|e| Error::Docker(format!("seeding {k}: {e}")))?;
    }
    // Let the replica replay the seed rows.
    tokio::time::sleep(Duration::from_millis(sc.pg_replica_lag_ms + 500)).await;

    let mut logs = Vec::new();
    let mut apps_running = None;
    let rec = if let Some(builtin) = app_nodes {
        let proxies = if sc.plan.steps.iter().any(|s| needs_proxies(&s.fault)) {
            let servers: Vec<(String, std::net::SocketAddr)> = cluster
                .nodes()
                .into_iter()
                .filter_map(|n| Some((n.name.clone(), n.addr().parse().ok()?)))
                .collect();
            Some(Proxies::start(cluster.gateway()?, &servers).await?)
        } else {
            None
        };
        let apps = AppNodes::launch(&cluster, sc, builtin, seed, proxies.as_ref()).await?;
        // A zero a little ahead, so that every app node has read it before it comes.
        let origin_ns = monotonic_ns() + 50_000_000;
        apps.go(origin_ns)?;
        let mut world = Docker {
            cluster: &cluster,
            strategy: strategy.clone(),
            cfg: cfg.clone(),
            pg_pool_max: sc.pg_pool_max,
            pg_pool_wait_ms: sc.pg_pool_wait_ms,
            probe: &probe,
            app_nodes: &apps.nodes,
            proxies: proxies.as_ref(),
            origin: Some(instant_at(origin_ns)),
            rings: Vec::new(),
            clocks: Vec::new(),
        };
        let rec = drive(&mut world, sc, seed).await.map_err(Error::Docker)?;
        // They ran on (and so did their proxies) through the settle and the probes.
        apps_running = Some((apps, proxies));
        rec
    } else {
        let mut world = Docker {
            cluster: &cluster,
            strategy: strategy.clone(),
            cfg: cfg.clone(),
            pg_pool_max: sc.pg_pool_max,
            pg_pool_wait_ms: sc.pg_pool_wait_ms,
            probe: &probe,
            app_nodes: &[],
            proxies: None,
            origin: None,
            rings: Vec::new(),
            clocks: Vec::new(),
        };
        drive(&mut world, sc, seed).await.map_err(Error::Docker)?
    };
    if let Some((apps, _proxies)) = apps_running {
        apps.stop()?;
        apps.collect(&rec, tokio::time::Instant::now() + Duration::from_secs(60))
            .await?;
        logs.extend(apps.nodes.iter().map(docker_logs));
    }
    let mut header = sc.header("containers", strategy.name(), seed);
    if let Some(m) = opts.redis_min_replicas {
        header
            .config
            .insert("redis_min_replicas_to_write".into(), m.to_write.into());
        header
            .config
            .insert("redis_min_replicas_max_lag_s".into(), m.max_lag_s.into());
    }
    logs.extend(cluster.nodes().into_iter().map(docker_logs));
    record_servers(&cluster, &rec, &logs);
    Ok(RunOutput {
        ops: rec.ops(),
        history: rec.finish(&header),
        logs,
    })
}

/// The history's names for the servers (a cache line's `server`), and each Redis server's
/// roles as its own log (in `logs`, by node name) tells them, as `role` lines.
fn record_servers(cluster: &Cluster, rec: &Recorder, logs: &[(String, String)]) {
    for n in cluster.nodes() {
        rec.name_server(n.addr(), n.name.clone());
    }
    let zero_unix_ns =
        crate::roles::unix_now_ns().saturating_sub(rec.origin().elapsed().as_nanos());
    for (n, shard, boot) in cluster.redis_nodes() {
        let log = logs
            .iter()
            .find(|(name, _)| *name == n.name)
            .map_or("", |(_, text)| text.as_str());
        for (at_ns, role) in crate::roles::roles_in_log(log, zero_unix_ns, boot) {
            rec.role_at(&n.name, shard, role, at_ns);
        }
    }
}

/// What became of one app node's L1 tombstones while faults were on: `acked` ones the Redis it
/// reached said it applied, `refused` ones it failed (an error or a timeout, such as a
/// `NOREPLICAS` refusal of a master that hears from no replica).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tombstones {
    /// The server said yes.
    pub acked: u64,
    /// The server said no (`NOREPLICAS`: a guarded master cut from its replica).
    pub refused: u64,
    /// No answer in time, or no connection (a client that could not find its master).
    pub failed: u64,
}

/// Counts `node`'s L1 invalidations (its `cache` lines) that began while any fault was on. In
/// `split-brain`, app-1's acknowledged ones went to the isolated old master: the Sentinels'
/// demotion discards them (Jepsen's Redis finding).
pub fn tombstones_during_faults(history: &[u8], node: &str) -> Result<Tombstones, String> {
    use invariants::history::{parse_line, ActOutcome, CacheAction, FaultAction, Line, Source};
    let (mut from, mut to) = (u64::MAX, 0);
    let mut acts = Vec::new();
    for (n, text) in history.split(|b| *b == b'\n').enumerate() {
        if text.is_empty() {
            continue;
        }
        match parse_line(text, false).map_err(|e| format!("line {}: {e}", n + 1))? {
            Line::Fault(f) if f.action == FaultAction::Start => from = from.min(f.at_ns),
            Line::Fault(f) if f.action == FaultAction::Stop => to = to.max(f.at_ns),
            Line::Cache(c)
                if c.node == node
                    && c.action == CacheAction::Invalidate
                    && c.tier == Source::L1 =>
            {
                acts.push((c.start_ns, c.outcome))
            }
            _ => {}
        }
    }
    let mut t = Tombstones::default();
    for (at, outcome) in acts {
        if (from..to).contains(&at) {
            match outcome {
                ActOutcome::Ok => t.acked += 1,
                ActOutcome::Refused => t.refused += 1,
                ActOutcome::Failed => t.failed += 1,
            }
        }
    }
    Ok(t)
}
