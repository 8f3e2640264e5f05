//! Scenarios: a workload, a fault plan, the bounds the run is judged by and what each strategy
//! promises, as one package. A scenario is a TOML file ([`file`]); the catalog is the files in
//! `chaos/scenarios/`, embedded at build time. The same name always means the same run for the
//! same strategy and seed.

mod draw;
pub mod file;
mod workload;

pub use draw::{incident_hit_ratio_min, Draw};
pub use workload::WorkloadSpec;

use aside::{Builtin, CacheConfig};
use invariants::history::{Header, FORMAT};
use invariants::{Bounds, Invariant};
use serde_json::{json, Map, Value};

use crate::fault::{Kind, Side, Target};
use crate::plan::Plan;
use crate::workload::Workload;

/// Sentinels every world boots (a quorum of 2).
pub const SENTINELS: u8 = 3;
/// Redis master/replica pairs (L1 shards) a scenario may ask for (`workload.redis_shards`).
pub const REDIS_SHARDS_MAX: u8 = 2;
/// Memcached nodes every world boots, the ring they make.
pub const MEMCACHED_NODES: u8 = 3;
/// Memcached nodes a world boots outside the ring for a plan that brings one in (`ring` with
/// `change = "join"`): `memcached-4` on.
pub const MEMCACHED_SPARES: u8 = 1;
/// App nodes a scenario may ask for.
pub const APPS_MAX: u64 = 200;
/// The width of the scenario column of the command lines' tables: the catalog's longest name.
pub const NAME_WIDTH: usize = 25;

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub keys: usize,
    /// Zipf exponent of key popularity.
    pub zipf_s: f64,
    /// Share of ops that are writes (the production design's read-heavy default: 5 %).
    pub write_ratio: f64,
    /// Share of ops on one hot key, on top of the Zipf draw (0: none).
    pub hot_key_share: f64,
    pub apps: usize,
    pub clients_per_app: usize,
    pub duration_ms: u64,
    /// Pause between a client's ops, uniform in this range.
    pub think_ms: (u64, u64),
    /// Quiet time after the workload and before the probes (shorter than any TTL).
    pub settle_ms: u64,
    /// One-way network latency, uniform in this range (the simulator's send latency). madsim
    /// adds about 2 ms to every message on top (a 1 ms minimum sleep at send and at receive), so
    /// a round trip takes 4 ms plus twice this.
    pub net_latency_us: (u64, u64),
    /// Time PostgreSQL takes per query in the simulator, uniform in this range.
    pub db_query_us: (u64, u64),
    pub pg_replica_lag_ms: u64,
    pub read_from_replica: bool,
    /// A write to a listing is a new post in its subreddit: the same transaction bumps every
    /// sibling listing's version (every sort order changes), and the history records a write of
    /// each. Off, a listing write changes only its own row.
    pub listing_transactions: bool,
    /// The listings are a grouped namespace (`cache.grouped_namespaces`): with a versioned
    /// strategy, a listing write's pattern invalidation bumps its subreddit's generation instead
    /// of SCANning Redis. Off, it SCANs.
    pub grouped_listings: bool,
    /// A foreign writer (`crate::foreign`) writes to the database beside the app nodes.
    pub foreign_writes: bool,
    /// The cache's TTLs and stale-while-revalidate window (the library's defaults unless a
    /// scenario needs entries to age within its few seconds).
    pub l1_ttl_ms: u64,
    pub l2_ttl_ms: u64,
    pub stale_while_revalidate_ms: u64,
    /// The library's stampede protection across app nodes: the distributed lease on a miss
    /// (0: off; single-flight within one app node stays) and XFetch's β (0: off).
    pub lease_ms: u64,
    pub early_refresh_beta: f64,
    /// Each app node's PostgreSQL pool (`postgres.pool_max`; the library's default unless a
    /// scenario exhausts it).
    pub pg_pool_max: u32,
    /// How long a query waits for one of those connections (`postgres.pool_wait_ms`).
    pub pg_pool_wait_ms: u64,
    /// The library's shedding (`cache.db_concurrency_max`, `cache.db_wait_ms_max`,
    /// `cache.db_reads_per_sec_max`): database reads in flight per app node, how long a read
    /// waits for a slot or its turn, and database reads per second per app node (0: no limit).
    pub db_concurrency_max: usize,
    pub db_wait_ms_max: u64,
    pub db_reads_per_sec_max: u32,
    /// Hot keys' in-process L0 (`cache.l0_ttl_ms`, `cache.hot_reads_per_sec_min`): how long
    /// an app node serves a hot key from its memory (0: off), and the reads per second of one
    /// key on one app node that make it hot.
    pub l0_ttl_ms: u64,
    pub hot_reads_per_sec_min: u64,
    /// Redis master/replica pairs L1 is spread over, each under its own Sentinel name; keys go
    /// by class ([`crate::workload::shard_map`]).
    pub redis_shards: u8,
    /// A warming job on app-1 ([`crate::workload::Warming`]): how many of the hottest keys (0:
    /// none), at most how many a second, a pass every so many ms.
    pub warm_keys: usize,
    pub warm_reads_per_sec: u32,
    pub warm_every_ms: u64,
    /// Test machinery: a safeguard the library drops, to show the harness catches its loss
    /// (`aside::mutant`; recorded in the header, so a mutant's failure replays).
    pub mutant: Option<aside::mutant::Mutant>,
    pub plan: Plan,
    /// The simulator's BUGGIFY: seeded extra delays at the app's slow points (in the promises'
    /// runs only for findings too narrow to show without it; the containers world ignores it).
    pub buggify: bool,
    /// What the seed draws ([`Scenario::for_seed`]): nothing (`plan` is the plan), the plan, or
    /// a swarm family's workload and plan.
    pub draw: Draw,
    /// What the checkers judge the run by (the header's `config`).
    pub bounds: Bounds,
    /// What each strategy promises here, in [`Builtin::ALL`]'s order (none for a scenario file
    /// that states none: its runs are reported, not judged against a promise).
    pub promises: Vec<Promise>,
    /// The file's text when the scenario is not the catalog's: a seed log carries it, so a
    /// user's scenario replays and shrinks without the file.
    pub source: Option<String>,
    /// The file it was read from, if any: how a command line names it again.
    pub file: Option<std::path::PathBuf>,
}

/// What a strategy promises in a scenario, over the seeds the results table uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Promise {
    pub strategy: Builtin,
    pub expect: Expect,
    /// Why, in a sentence a user can act on (the results table shows it).
    pub why: String,
    /// The promise's runs use BUGGIFY: only for findings whose race window is too narrow to show
    /// within the seeds otherwise. Never for a promise to hold: BUGGIFY's delays bend the
    /// latency bounds.
    pub buggify: bool,
    /// Coverage goals every run of the promise must reach in the simulator (`reaches`): a run
    /// that misses one fails `coverage`, a harness error ([`aside::goal`]).
    pub reaches: Vec<aside::goal::Goal>,
}

/// Holds, or finds named invariants failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No gating invariant fails on any seed.
    Holds,
    /// Some seed fails, and every invariant named here fails on at least one seed (others may
    /// fail too: they are reported, not promised).
    Finds(Vec<Invariant>),
}

/// A field of a scenario that is wrong, by its path in the file (`workload.keys`,
/// `fault[2].target`, `promise.naive.finds`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub why: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, why: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            why: why.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.why)
    }
}

impl Scenario {
    /// A scenario of defaults: what a scenario file leaves out.
    pub fn base(name: &str, about: &str) -> Scenario {
        Scenario {
            name: name.into(),
            about: about.into(),
            keys: 40,
            zipf_s: 1.1,
            write_ratio: 0.05,
            hot_key_share: 0.0,
            apps: 3,
            clients_per_app: 6,
            duration_ms: 3_000,
            think_ms: (2, 20),
            settle_ms: 1_000,
            net_latency_us: (0, 500),
            db_query_us: (1_000, 8_000),
            pg_replica_lag_ms: 50,
            read_from_replica: false,
            listing_transactions: false,
            grouped_listings: false,
            foreign_writes: false,
            l1_ttl_ms: CacheConfig::default().l1_ttl_ms,
            l2_ttl_ms: CacheConfig::default().l2_ttl_ms,
            stale_while_revalidate_ms: 0,
            lease_ms: CacheConfig::default().lease_ms,
            early_refresh_beta: CacheConfig::default().early_refresh_beta,
            pg_pool_max: aside::settings::PostgresSettings::default().pool_max,
            pg_pool_wait_ms: aside::settings::PostgresSettings::default().pool_wait_ms,
            db_concurrency_max: CacheConfig::default().db_concurrency_max,
            db_wait_ms_max: CacheConfig::default().db_wait_ms_max,
            db_reads_per_sec_max: CacheConfig::default().db_reads_per_sec_max,
            l0_ttl_ms: CacheConfig::default().l0_ttl_ms,
            hot_reads_per_sec_min: CacheConfig::default().hot_reads_per_sec_min,
            redis_shards: 1,
            warm_keys: 0,
            warm_reads_per_sec: 500,
            warm_every_ms: 500,
            mutant: None,
            plan: Plan::default(),
            draw: Draw::Fixed,
            buggify: false,
            bounds: Bounds {
                staleness_ns_max: Some(100_000_000),
                warmup_ns: 500_000_000,
                hit_ratio_min: Some(0.8),
                // On this network a round trip is at most 2 x (2 ms madsim floor + 0.5 ms): an L1
                // hit is one round trip, an L2 hit three (L1 miss, L2, backfill). Plus 1 ms.
                l1_hit_latency_p99_ns_max: Some(6_000_000),
                l2_hit_latency_p99_ns_max: Some(16_000_000),
                db_qps_max: Some(5_000),
                availability_min: Some(0.99),
                ..Bounds::default()
            },
            promises: Vec::new(),
            source: None,
            file: None,
        }
    }

    /// The scenario as a strategy that promises a staleness bound (Δ, `durable`) is judged: by
    /// exactly that bound, whatever the scenario's own. A strategy without one keeps the
    /// scenario's. Reads served from an app's L0 may be `l0_ttl_ms` staler, as the library
    /// states (a row there outlives another node's write until it expires). Every tier must have
    /// converged by the end of the settle (`converge_within_ns`, T: the probes' last round), or
    /// by the scenario's own shorter T.
    /// A strategy whose invalidations go through the outbox (`outbox`) is judged without the
    /// time no app node could read it (`staleness_excludes_outbox_blind`).
    /// Judging twice is judging once: a replay judges the bounds its header recorded.
    pub fn judged_by(&self, staleness_bound_ms: Option<u64>, outbox: bool) -> Scenario {
        let mut sc = self.clone();
        if let Some(ms) = staleness_bound_ms {
            sc.bounds.staleness_ns_max = Some(ms.saturating_mul(1_000_000));
        }
        sc.bounds.staleness_excludes_outbox_blind |= outbox;
        sc.bounds.l0_ttl_ns = self.l0_ttl_ms.saturating_mul(1_000_000);
        // A scenario's own T may be shorter than its settle (validation refuses a longer one).
        sc.bounds.converge_within_ns =
            (self.bounds.converge_within_ns).or(Some(self.settle_ms.saturating_mul(1_000_000)));
        sc
    }

    /// What a command line passes to run this scenario again: the catalog's name
    /// (`--scenario`), or the path of the file it was read from (`--scenario-file`).
    pub fn arg(&self) -> String {
        match &self.file {
            Some(p) => p.display().to_string(),
            None => self.name.clone(),
        }
    }

    /// What `strategy` promises here, if the scenario says.
    pub fn promise(&self, strategy: Builtin) -> Option<&Promise> {
        self.promises.iter().find(|p| p.strategy == strategy)
    }

    /// This scenario as a history header's `config` describes it: its workload, its plan and its
    /// bounds (what `cargo sim shrink` changed is recorded there, so a shrunk run replays from its
    /// own history). Fields the config lacks keep this scenario's values; the result is validated
    /// as a scenario file is, so a hand-edited header is refused with the field named.
    pub fn with_config(&self, config: &Map<String, Value>) -> Result<Scenario, String> {
        let mut sc = self.clone();
        sc.bounds
            .apply_config(config)
            .map_err(|e| format!("the config's bounds: {e}"))?;
        if let Some(faults) = config.get("faults") {
            sc.plan = Plan::from_json(faults)?;
            sc.draw = Draw::Fixed;
        }
        if let Some(w) = config.get("workload") {
            let spec = WorkloadSpec::from_json(w).map_err(|e| format!("the config's {e}"))?;
            sc.apply_workload(&spec)
                .map_err(|e| format!("the config's {e}"))?;
        }
        // The goals the run was held to, as its header says (none when it names none: a shrunk
        // run, a mutant's): a replay is held to the same.
        let required = invariants::checkers::coverage::required(config)
            .map_err(|e| format!("the config's {e}"))?
            .iter()
            .map(|g| aside::goal::Goal::from_name(g))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the config's goals_required: {e}"))?;
        for p in &mut sc.promises {
            p.reaches.clone_from(&required);
        }
        sc.validate().map_err(|e| format!("the config's {e}"))?;
        Ok(sc)
    }

    /// What no world can run: a cache configuration the library refuses, a fault on a node the
    /// cluster does not have.
    pub fn validate(&self) -> Result<(), FieldError> {
        for (f, ms) in [("l1_ttl_ms", self.l1_ttl_ms), ("l2_ttl_ms", self.l2_ttl_ms)] {
            if ms == 0 {
                return Err(FieldError::new(
                    format!("workload.{f}"),
                    "is 0: a TTL must be at least 1 ms",
                ));
            }
        }
        let cfg = self
            .try_cache_config()
            .map_err(|e| FieldError::new("workload", e))?;
        aside::settings::PostgresSettings {
            pool_max: self.pg_pool_max,
            pool_wait_ms: self.pg_pool_wait_ms,
            ..Default::default()
        }
        .check(&cfg)
        .map_err(|e| match e {
            aside::ConfigError::Setting { setting, problem } => FieldError::new(
                setting.replace("postgres.", "workload.pg_"),
                problem.replace("cache.", "the cache's "),
            ),
            other => FieldError::new("workload", other.to_string()),
        })?;
        if let Some(t_ns) = self.bounds.converge_within_ns {
            if t_ns > self.settle_ms.saturating_mul(1_000_000) {
                return Err(FieldError::new(
                    "bounds.converge_within_ns",
                    format!(
                        "is longer than the settle ({} ms): the probes' last round is at its end, so nothing would be probed at T; raise workload.settle_ms",
                        self.settle_ms
                    ),
                ));
            }
        }
        for (i, step) in self.plan.steps.iter().enumerate() {
            let f = step.fault;
            let mut sides = vec![("target", f.target)];
            match f.kind {
                Kind::Partition { peers, .. } => sides.push(("peers", peers)),
                Kind::Shaped { nodes, .. } => sides.extend(nodes.map(|t| ("nodes", Side::One(t)))),
                _ => {}
            }
            for (field, side) in sides {
                if let Side::One(t) = side {
                    self.check_target(t)
                        .map_err(|why| FieldError::new(format!("fault[{}].{field}", i + 1), why))?;
                }
            }
        }
        Ok(())
    }

    /// Spare memcached nodes the worlds boot for this scenario: those its plan names (a spare
    /// no plan uses is not booted, so every other scenario's cluster is as it was).
    pub fn memcached_spares(&self) -> u8 {
        let names_spare =
            |s: Side| matches!(s, Side::One(Target::Memcached(i)) if i >= MEMCACHED_NODES);
        let used = self.plan.steps.iter().any(|step| {
            names_spare(step.fault.target)
                || matches!(step.fault.kind, Kind::Partition { peers, .. } if names_spare(peers))
                || matches!(step.fault.kind, Kind::Shaped { nodes, .. }
                    if nodes.iter().any(|t| names_spare(Side::One(*t))))
        });
        if used {
            MEMCACHED_SPARES
        } else {
            0
        }
    }

    fn check_target(&self, t: Target) -> Result<(), String> {
        let (n, have, what) = match t {
            Target::Sentinel(i) => (i, SENTINELS as usize, "Sentinels"),
            Target::Memcached(i) => (
                i,
                (MEMCACHED_NODES + MEMCACHED_SPARES) as usize,
                "memcached nodes (the last a spare)",
            ),
            Target::App(i) => (i, self.apps, "app nodes (workload.apps)"),
            Target::RedisMaster(i) | Target::RedisReplica(i) => (
                i,
                usize::from(self.redis_shards),
                "Redis master/replica pairs (workload.redis_shards)",
            ),
            _ => return Ok(()),
        };
        if usize::from(n) < have {
            Ok(())
        } else {
            Err(format!(
                "{} does not exist: the cluster has {have} {what}",
                t.name()
            ))
        }
    }

    /// The history header of a run of this scenario in `world` ("sim" or "containers").
    pub fn header(&self, world: &str, strategy: &str, seed: u64) -> Header {
        let mut config = self.config();
        let goals = self.goals_required(world, strategy);
        if !goals.is_empty() {
            let names: Vec<&str> = goals.iter().map(|g| g.name()).collect();
            config.insert(
                invariants::checkers::coverage::REQUIRED.into(),
                Value::from(names),
            );
        }
        Header {
            format: FORMAT,
            world: world.into(),
            scenario: self.name.clone(),
            strategy: strategy.into(),
            seed,
            commit: crate::COMMIT.into(),
            config,
        }
    }

    /// The coverage goals a run of `strategy` in `world` must reach: its promise's `reaches`, in
    /// the simulator only (real servers' timing is not the seed's: they report the goals they
    /// reach, ungated), and none for a mutant (a dropped safeguard may drop the path to a goal).
    pub fn goals_required(&self, world: &str, strategy: &str) -> Vec<aside::goal::Goal> {
        if world != "sim" || self.mutant.is_some() {
            return Vec::new();
        }
        self.promises
            .iter()
            .find(|p| p.strategy.name() == strategy)
            .map_or_else(Vec::new, |p| p.reaches.clone())
    }

    /// The library's configuration in this scenario, or why the library refuses it.
    pub fn try_cache_config(&self) -> Result<CacheConfig, String> {
        CacheConfig {
            read_from_replica: self.read_from_replica,
            l1_ttl_ms: self.l1_ttl_ms,
            l2_ttl_ms: self.l2_ttl_ms,
            stale_while_revalidate_ms: self.stale_while_revalidate_ms,
            lease_ms: self.lease_ms,
            early_refresh_beta: self.early_refresh_beta,
            db_concurrency_max: self.db_concurrency_max,
            db_wait_ms_max: self.db_wait_ms_max,
            db_reads_per_sec_max: self.db_reads_per_sec_max,
            l0_ttl_ms: self.l0_ttl_ms,
            hot_reads_per_sec_min: self.hot_reads_per_sec_min,
            mutant: self.mutant,
            // The workload's listings (`listings:v1:r/rust:hot`), invalidated by subreddit.
            grouped_namespaces: if self.grouped_listings {
                vec![crate::workload::LISTINGS.into()]
            } else {
                Vec::new()
            },
            ..CacheConfig::default()
        }
        .validate()
        .map_err(|e| e.to_string().replace("cache.", "workload."))
    }

    /// The library's configuration in this scenario. Every scenario is validated when it is
    /// read (from its file or a header), so this cannot fail for one that was.
    pub fn cache_config(&self) -> CacheConfig {
        self.try_cache_config()
            .expect("scenarios are validated when read")
    }

    /// The clients' ops.
    pub fn workload(&self) -> Workload {
        Workload::new(self.keys, self.zipf_s, self.write_ratio, self.think_ms)
            .with_hot_key(self.hot_key_share)
            .with_warming((self.warm_keys > 0).then_some(crate::workload::Warming {
                keys: self.warm_keys,
                reads_per_sec: self.warm_reads_per_sec,
                every_ms: self.warm_every_ms,
            }))
    }

    /// The header's `config`: every bound, the workload and the plan.
    pub fn config(&self) -> Map<String, Value> {
        let mut c = self.bounds.to_config();
        c.insert(
            "workload".into(),
            json!({
                "keys": self.keys, "zipf_s": self.zipf_s, "write_ratio": self.write_ratio,
                "hot_key_share": self.hot_key_share,
                "apps": self.apps, "clients_per_app": self.clients_per_app, "duration_ms": self.duration_ms,
                "think_ms": [self.think_ms.0, self.think_ms.1], "settle_ms": self.settle_ms,
                "net_latency_us": [self.net_latency_us.0, self.net_latency_us.1],
                "db_query_us": [self.db_query_us.0, self.db_query_us.1],
                "pg_replica_lag_ms": self.pg_replica_lag_ms, "read_from_replica": self.read_from_replica,
                "listing_transactions": self.listing_transactions,
                "grouped_listings": self.grouped_listings,
                "foreign_writes": self.foreign_writes,
                "l1_ttl_ms": self.l1_ttl_ms, "l2_ttl_ms": self.l2_ttl_ms,
                "stale_while_revalidate_ms": self.stale_while_revalidate_ms,
                "lease_ms": self.lease_ms, "early_refresh_beta": self.early_refresh_beta,
                "pg_pool_max": self.pg_pool_max, "pg_pool_wait_ms": self.pg_pool_wait_ms,
                "db_concurrency_max": self.db_concurrency_max, "db_wait_ms_max": self.db_wait_ms_max,
                "db_reads_per_sec_max": self.db_reads_per_sec_max,
                "buggify": self.buggify,
            }),
        );
        // Hot keys and mutants only when set: a header names what its run used.
        if self.l0_ttl_ms > 0 {
            c["workload"]["l0_ttl_ms"] = Value::from(self.l0_ttl_ms);
            c["workload"]["hot_reads_per_sec_min"] = Value::from(self.hot_reads_per_sec_min);
        }
        if self.redis_shards > 1 {
            c["workload"]["redis_shards"] = Value::from(self.redis_shards);
        }
        if self.warm_keys > 0 {
            c["workload"]["warm_keys"] = Value::from(self.warm_keys);
            c["workload"]["warm_reads_per_sec"] = Value::from(self.warm_reads_per_sec);
            c["workload"]["warm_every_ms"] = Value::from(self.warm_every_ms);
        }
        if let Some(m) = self.mutant {
            c["workload"]["mutant"] = Value::from(m.name());
        }
        c.insert("faults".into(), self.plan.to_json());
        if let Some(text) = &self.source {
            c.insert("scenario_file".into(), Value::from(text.as_str()));
        }
        c
    }
}

/// Every scenario of the catalog, in table order.
pub fn catalog() -> Vec<Scenario> {
    file::catalog()
}

/// The catalog's scenario named `name`.
pub fn find(name: &str) -> Result<Scenario, String> {
    let all = catalog();
    let names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| {
        format!(
            "unknown scenario {name:?}: known scenarios are {} (or pass a scenario file with --scenario-file)",
            names.join(", ")
        )
    })
}

/// The scenario a history header describes: the file it carries (a user's scenario) or the
/// catalog's by name, with the header's workload, plan and bounds.
pub fn from_header(name: &str, config: &Map<String, Value>) -> Result<Scenario, String> {
    let sc = match config.get("scenario_file") {
        Some(text) => {
            let text = text
                .as_str()
                .ok_or("the config's scenario_file must be the scenario file's text")?;
            file::parse(&format!("{name} (the header's scenario_file)"), text)
                .map_err(|e| e.to_string())?
        }
        None => find(name)?,
    };
    sc.with_config(config)
}

#[cfg(test)]
mod tests;
