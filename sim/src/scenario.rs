//! Scenarios: a workload, its faults, the bounds it is judged by. A scenario is a package: the
//! same name always means the same run for the same strategy and seed.

use aside::CacheConfig;
use serde_json::{json, Value};

/// A fault the nemesis injects at `at_ms` and heals after `for_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultStep {
    pub at_ms: u64,
    pub for_ms: u64,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Kill the Redis master; Sentinel promotes the replica; the old master returns as a replica.
    KillRedisMaster,
    /// Kill a memcached node; it restarts empty.
    RestartMemcached(usize),
    /// Pause a memcached node; it returns with its old data.
    PauseMemcached(usize),
}

impl FaultKind {
    pub fn describe(&self) -> Value {
        match self {
            FaultKind::KillRedisMaster => json!({"kind": "kill", "target": "redis-master"}),
            FaultKind::RestartMemcached(i) => {
                json!({"kind": "restart", "target": format!("memcached-{}", i + 1)})
            }
            FaultKind::PauseMemcached(i) => {
                json!({"kind": "pause", "target": format!("memcached-{}", i + 1)})
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub keys: usize,
    /// Zipf exponent of key popularity.
    pub zipf_s: f64,
    /// Share of ops that are writes (the seed's read-heavy default: 5 %).
    pub write_ratio: f64,
    pub apps: usize,
    pub clients_per_app: usize,
    pub duration_ms: u64,
    /// Pause between a client's ops, uniform in this range.
    pub think_ms: (u64, u64),
    /// Quiet time after the workload and before the probes (shorter than any TTL).
    pub settle_ms: u64,
    /// One-way network latency, uniform in this range (madsim's send_latency). madsim adds about
    /// 2 ms to every message on top (a 1 ms minimum sleep at send and at receive), so a round
    /// trip takes 4 ms plus twice this.
    pub net_latency_us: (u64, u64),
    /// Time PostgreSQL takes per query, uniform in this range.
    pub db_query_us: (u64, u64),
    pub pg_replica_lag_ms: u64,
    pub read_from_replica: bool,
    /// The cache's TTLs and stale-while-revalidate window (the library's defaults unless a
    /// scenario needs entries to age within its few simulated seconds).
    pub l1_ttl_ms: u64,
    pub l2_ttl_ms: u64,
    pub stale_while_revalidate_ms: u64,
    pub faults: Vec<FaultStep>,
    /// Bounds for the checkers (header `config`).
    pub bounds: Value,
}

impl Scenario {
    fn base(name: &'static str, about: &'static str) -> Scenario {
        Scenario {
            name,
            about,
            keys: 40,
            zipf_s: 1.1,
            write_ratio: 0.05,
            apps: 3,
            clients_per_app: 6,
            duration_ms: 3_000,
            think_ms: (2, 20),
            settle_ms: 1_000,
            net_latency_us: (0, 500),
            db_query_us: (1_000, 8_000),
            pg_replica_lag_ms: 50,
            read_from_replica: false,
            l1_ttl_ms: CacheConfig::default().l1_ttl_ms,
            l2_ttl_ms: CacheConfig::default().l2_ttl_ms,
            stale_while_revalidate_ms: 0,
            faults: Vec::new(),
            bounds: json!({
                "staleness_ns_max": 100_000_000u64,
                "warmup_ns": 500_000_000u64,
                "hit_ratio_min": 0.8,
                // On this network a round trip is at most 2 x (2 ms madsim floor + 0.5 ms): an L1
                // hit is one round trip, an L2 hit three (L1 miss, L2, backfill). Plus 1 ms.
                "l1_hit_latency_p99_ns_max": 6_000_000u64,
                "l2_hit_latency_p99_ns_max": 16_000_000u64,
                "db_qps_max": 5_000,
                "availability_min": 0.99,
            }),
        }
    }

    /// The library's configuration in this scenario.
    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            read_from_replica: self.read_from_replica,
            l1_ttl_ms: self.l1_ttl_ms,
            l2_ttl_ms: self.l2_ttl_ms,
            stale_while_revalidate_ms: self.stale_while_revalidate_ms,
            ..CacheConfig::default()
        }
        .validate()
        .expect("scenario cache configurations are valid")
    }

    /// The workload and bounds as the history header records them.
    pub fn config(&self) -> Value {
        let mut c = self.bounds.clone();
        let o = c.as_object_mut().expect("bounds are an object");
        o.insert(
            "workload".into(),
            json!({
                "keys": self.keys, "zipf_s": self.zipf_s, "write_ratio": self.write_ratio,
                "apps": self.apps, "clients_per_app": self.clients_per_app, "duration_ms": self.duration_ms,
                "think_ms": [self.think_ms.0, self.think_ms.1], "settle_ms": self.settle_ms,
                "net_latency_us": [self.net_latency_us.0, self.net_latency_us.1],
                "db_query_us": [self.db_query_us.0, self.db_query_us.1],
                "pg_replica_lag_ms": self.pg_replica_lag_ms, "read_from_replica": self.read_from_replica,
                "l1_ttl_ms": self.l1_ttl_ms, "l2_ttl_ms": self.l2_ttl_ms,
                "stale_while_revalidate_ms": self.stale_while_revalidate_ms,
            }),
        );
        o.insert("faults".into(), Value::Array(self.faults.iter().map(|f| json!({"at_ms": f.at_ms, "for_ms": f.for_ms, "fault": f.kind.describe()})).collect()));
        c
    }
}

/// Every named scenario.
pub fn catalog() -> Vec<Scenario> {
    let fill_race = Scenario::base(
        "fill-race",
        "no faults: readers miss while writers commit and invalidate; naive's late fills leave stale values",
    );
    let mut replica_fill = Scenario::base(
        "replica-lag",
        "misses read the PostgreSQL replica, 50 ms behind: fills of old rows",
    );
    replica_fill.read_from_replica = true;
    let mut failover = Scenario::base("redis-failover", "the Redis master is killed at 1 s; Sentinel promotes the replica; the old master returns as a replica at 2.5 s");
    failover.faults = vec![FaultStep {
        at_ms: 1_000,
        for_ms: 1_500,
        kind: FaultKind::KillRedisMaster,
    }];
    failover.duration_ms = 4_000;
    failover.bounds["staleness_ns_max"] = json!(2_000_000_000u64);
    let mut mc_restart = Scenario::base(
        "memcached-restart",
        "memcached-1 is killed at 1 s and restarts empty at 1.5 s",
    );
    mc_restart.faults = vec![FaultStep {
        at_ms: 1_000,
        for_ms: 500,
        kind: FaultKind::RestartMemcached(0),
    }];
    let mut swr = Scenario::base(
        "stale-while-revalidate",
        "entries age after 300 ms (L1) and 600 ms (L2) and are served for 2 s more while one reader refreshes",
    );
    swr.l1_ttl_ms = 300;
    swr.l2_ttl_ms = 600;
    swr.stale_while_revalidate_ms = 2_000;
    // Every key ages every 300 ms here, and each refresh is one reader's miss.
    swr.bounds["hit_ratio_min"] = json!(0.7);
    // An aged L1 hit asks for the lease (one more round trip) before it is served: two round
    // trips of at most 5 ms, plus 1 ms.
    swr.bounds["l1_hit_latency_p99_ns_max"] = json!(11_000_000u64);
    vec![fill_race, replica_fill, failover, mc_restart, swr]
}

pub fn find(name: &str) -> Result<Scenario, String> {
    catalog()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = catalog().iter().map(|s| s.name).collect();
            format!(
                "unknown scenario {name:?}: known scenarios are {}",
                names.join(", ")
            )
        })
}

/// Zipf(s) over `n` keys by inverse CDF: key 0 is the most popular.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let w: Vec<f64> = (1..=n.max(1)).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        Zipf {
            cdf: w
                .iter()
                .map(|x| {
                    acc += x / total;
                    acc
                })
                .collect(),
        }
    }

    /// `u` uniform in [0, 1).
    pub fn sample(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(40, 1.1);
        let mut rng = invariants::gen::SplitMix(7);
        let mut counts = [0u32; 40];
        for _ in 0..10_000 {
            counts[z.sample((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[39]);
    }

    #[test]
    fn unknown_scenarios_name_the_known_ones() {
        let e = find("nope").unwrap_err();
        assert!(e.contains("fill-race") && e.contains("redis-failover"));
        assert_eq!(find("fill-race").unwrap().name, "fill-race");
    }
}
