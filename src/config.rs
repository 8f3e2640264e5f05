//! Configuration: a TOML file, then `ASIDE_*` environment variables, then validation. Every
//! problem is one line naming the setting, the value and what is allowed.
//!
//! Defaults are the production design's: L1 TTL 1 h, L2 TTL 6 h, Redis
//! timeout 100 ms, Memcached timeout 200 ms, memcached items up to 1 MiB.

use std::time::Duration;

use serde::Deserialize;

use crate::breaker::Breaker;
use crate::strategy::Builtin;
use crate::tier::ReadFrom;

/// How the cache behaves (the same in both worlds).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    pub strategy: String,
    pub l1_ttl_ms: u64,
    pub l2_ttl_ms: u64,
    /// TTLs are shortened by up to this fraction, per key, so keys filled together do not expire
    /// together.
    pub ttl_jitter: f64,
    /// How long a tombstone (versioned) outlives its write: longer than any fill can take.
    pub tombstone_ttl_ms: u64,
    /// Distributed lease on misses (0: off).
    pub lease_ms: u64,
    /// How long a miss that lost the lease waits for the winner's fill before reading itself.
    pub lease_wait_ms: u64,
    /// Serve a value this long past its freshness while one reader refreshes it (0: off).
    pub stale_while_revalidate_ms: u64,
    /// Negative caching: a key the database has no row for is cached as absent for this long,
    /// so reads of missing keys do not all reach the database (cache penetration). The write
    /// that creates the row invalidates it like any other entry (0: off).
    pub negative_ttl_ms: u64,
    pub l1_timeout_ms: u64,
    pub l2_timeout_ms: u64,
    pub db_timeout_ms: u64,
    pub breaker_failures_max: u32,
    pub breaker_cooldown_ms: u64,
    /// Database reads in flight at once from this instance.
    pub db_concurrency_max: usize,
    /// How long a read waits for a database slot before it is shed.
    pub db_wait_ms_max: u64,
    pub l1_item_bytes_max: usize,
    /// Memcached's item limit (1 MiB by default) minus the item header.
    pub l2_item_bytes_max: usize,
    pub coalesce_waiters_max: usize,
    /// Read misses from the streaming replica instead of the primary.
    pub read_from_replica: bool,
    pub scan_count: u32,
    /// `durable`: how often the outbox invalidator looks for new rows.
    pub outbox_poll_ms: u64,
    /// `durable`: the invalidator's deadline for one outbox query.
    pub outbox_timeout_ms: u64,
    /// `durable`: outbox rows per query.
    pub outbox_batch: u32,
    /// `durable`: outbox rows marked done are deleted once older than this (0: never; then
    /// call `Postgres::prune_outbox` yourself). At least `replay_window_ms`.
    pub outbox_keep_ms: u64,
    /// `durable`: how often each invalidator prunes the outbox.
    pub outbox_prune_every_ms: u64,
    /// `durable`: after a Redis master switch, the invalidations of this window are applied to
    /// the new master again (W). At least `redis_max_lag_ms + failover_ms + outbox_poll_ms`.
    pub replay_window_ms: u64,
    /// `durable`: the Redis servers' `min-replicas-max-lag` (seconds there, ms here): how long
    /// a master cut from its replica may still acknowledge writes it will lose.
    pub redis_max_lag_ms: u64,
    /// `durable`: how long from a master's failure until this node talks to its successor
    /// (Sentinel's down-after, the election and the switch notice).
    pub failover_ms: u64,
    #[serde(skip)]
    pub read_from: ReadFrom,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            strategy: "versioned".into(),
            l1_ttl_ms: 3_600_000,
            l2_ttl_ms: 21_600_000,
            ttl_jitter: 0.1,
            tombstone_ttl_ms: 600_000,
            lease_ms: 2_000,
            lease_wait_ms: 500,
            stale_while_revalidate_ms: 0,
            negative_ttl_ms: 5_000,
            l1_timeout_ms: 100,
            l2_timeout_ms: 200,
            db_timeout_ms: 2_000,
            breaker_failures_max: 5,
            breaker_cooldown_ms: 1_000,
            db_concurrency_max: 64,
            db_wait_ms_max: 250,
            l1_item_bytes_max: 8 << 20,
            l2_item_bytes_max: (1 << 20) - 1024,
            coalesce_waiters_max: 10_000,
            read_from_replica: false,
            scan_count: 500,
            outbox_poll_ms: 25,
            outbox_timeout_ms: 250,
            outbox_batch: 500,
            outbox_keep_ms: 3_600_000,
            outbox_prune_every_ms: 60_000,
            replay_window_ms: 5_000,
            redis_max_lag_ms: 1_000,
            failover_ms: 3_000,
            read_from: ReadFrom::Primary,
        }
    }
}

/// A configuration problem, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

impl CacheConfig {
    pub fn l1_timeout(&self) -> Duration {
        Duration::from_millis(self.l1_timeout_ms)
    }

    pub fn l2_timeout(&self) -> Duration {
        Duration::from_millis(self.l2_timeout_ms)
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    pub fn breaker(&self) -> Breaker {
        Breaker::new(
            self.breaker_failures_max,
            Duration::from_millis(self.breaker_cooldown_ms),
        )
    }

    /// The staleness `durable` promises (Δ): a write whose own invalidation missed a tier is
    /// found by every invalidator within a poll and one outbox query, and applied within one
    /// call to each tier; an instance that cannot apply it fences the tier until it can. So no
    /// read is served stale for longer than `outbox_poll_ms + outbox_timeout_ms +
    /// l1_timeout_ms + l2_timeout_ms`.
    pub fn outbox_staleness_bound_ms(&self) -> u64 {
        self.outbox_poll_ms + self.outbox_timeout_ms + self.l1_timeout_ms + self.l2_timeout_ms
    }

    /// The smallest replay window that covers what a failed master may have acknowledged and
    /// lost: see [`CacheConfig::replay_window_ms`].
    pub fn replay_window_min_ms(&self) -> u64 {
        self.redis_max_lag_ms + self.failover_ms + self.outbox_poll_ms
    }

    pub fn builtin(&self) -> Result<Builtin, ConfigError> {
        Builtin::parse(&self.strategy).ok_or_else(|| {
            let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
            ConfigError(format!(
                "cache.strategy {:?} is unknown: use one of {}",
                self.strategy,
                names.join(", ")
            ))
        })
    }

    /// Checks every setting and derives the rest; `strategy` must name a built-in strategy.
    pub fn validate(self) -> Result<Self, ConfigError> {
        self.builtin()?;
        self.validate_settings()
    }

    /// [`CacheConfig::validate`] for a strategy of your own: every setting but `strategy`.
    pub fn validate_settings(mut self) -> Result<Self, ConfigError> {
        let e = |s: String| Err(ConfigError(s));
        for (name, v) in [
            ("l1_ttl_ms", self.l1_ttl_ms),
            ("l2_ttl_ms", self.l2_ttl_ms),
            ("l1_timeout_ms", self.l1_timeout_ms),
            ("l2_timeout_ms", self.l2_timeout_ms),
            ("db_timeout_ms", self.db_timeout_ms),
        ] {
            if v == 0 {
                return e(format!("cache.{name} is 0: it must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return e(format!(
                "cache.ttl_jitter {} must be in 0.0..1.0 (a fraction of the TTL)",
                self.ttl_jitter
            ));
        }
        if self.tombstone_ttl_ms < self.lease_ms {
            return e(format!("cache.tombstone_ttl_ms {} is shorter than cache.lease_ms {}: a slow fill could outlive its tombstone", self.tombstone_ttl_ms, self.lease_ms));
        }
        if self.db_concurrency_max == 0 || self.coalesce_waiters_max == 0 || self.scan_count == 0 {
            return e(
                "cache.db_concurrency_max, coalesce_waiters_max and scan_count must be at least 1"
                    .into(),
            );
        }
        if self.outbox_poll_ms == 0 || self.outbox_timeout_ms == 0 || self.outbox_batch == 0 {
            return e(
                "cache.outbox_poll_ms, outbox_timeout_ms and outbox_batch must be at least 1"
                    .into(),
            );
        }
        if self.replay_window_ms < self.replay_window_min_ms() {
            return e(format!(
                "cache.replay_window_ms {} is under {} (redis_max_lag_ms + failover_ms + outbox_poll_ms): invalidations a failed master acknowledged and lost would not be replayed; raise it",
                self.replay_window_ms,
                self.replay_window_min_ms()
            ));
        }
        if self.outbox_keep_ms > 0 && self.outbox_keep_ms < self.replay_window_ms {
            return e(format!(
                "cache.outbox_keep_ms {} is under cache.replay_window_ms {}: a replay after a master switch would miss pruned rows; raise it (or 0: never prune)",
                self.outbox_keep_ms, self.replay_window_ms
            ));
        }
        if self.outbox_keep_ms > 0 && self.outbox_prune_every_ms == 0 {
            return e("cache.outbox_prune_every_ms is 0: it must be at least 1 while outbox_keep_ms prunes".into());
        }
        if self.l2_item_bytes_max > 1 << 30 {
            return e(format!(
                "cache.l2_item_bytes_max {} is over memcached's 1 GiB maximum item size",
                self.l2_item_bytes_max
            ));
        }
        self.read_from = if self.read_from_replica {
            ReadFrom::Replica
        } else {
            ReadFrom::Primary
        };
        Ok(self)
    }
}

/// Where the servers are (std build: the real backends).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub redis: RedisSettings,
    pub memcached: MemcachedSettings,
    pub postgres: PostgresSettings,
    pub cache: CacheConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Sentinels as host:port; when empty, `url` is used directly.
    pub sentinels: Vec<String>,
    pub master_name: String,
    /// The server when there are no Sentinels: `redis://` or, over TLS, `rediss://`; it may
    /// hold `user:password@` (`username` and `password` below win).
    pub url: String,
    /// The ACL user the masters (and `url`) are logged in as (`AUTH username password`); only a
    /// password: the `default` user (`requirepass`).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The Sentinels' own ACL user and password, when they require one.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    /// Reach the Sentinels and the masters they name over TLS (the `tls` feature; a direct
    /// `url` says so with `rediss://`).
    pub tls: bool,
    /// A PEM file of the roots the servers' certificates are verified against (their name or
    /// IP address included), instead of the system's.
    pub tls_ca: Option<std::path::PathBuf>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            sentinels: Vec::new(),
            master_name: "mymaster".into(),
            url: "redis://127.0.0.1:6379".into(),
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            tls: false,
            tls_ca: None,
        }
    }
}

/// A password: read from the file or a variable, never printed (`Debug` says `<secret>`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself, to hand to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemcachedSettings {
    /// Nodes as host:port, in the order other clients of the pool list them.
    pub nodes: Vec<String>,
    /// Connections per node, at most.
    pub pool_max: usize,
}

impl Default for MemcachedSettings {
    fn default() -> Self {
        MemcachedSettings {
            nodes: vec!["127.0.0.1:11211".into()],
            pool_max: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    pub url: String,
    pub replica_url: Option<String>,
    pub pool_max: u32,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            replica_url: None,
            pool_max: 16,
        }
    }
}

/// The environment variables that override the file (comma-separated lists).
pub const ENV: &[&str] = &[
    "ASIDE_STRATEGY",
    "ASIDE_REDIS_URL",
    "ASIDE_REDIS_SENTINELS",
    "ASIDE_REDIS_MASTER_NAME",
    "ASIDE_REDIS_USERNAME",
    "ASIDE_REDIS_PASSWORD",
    "ASIDE_REDIS_SENTINEL_USERNAME",
    "ASIDE_REDIS_SENTINEL_PASSWORD",
    "ASIDE_REDIS_TLS",
    "ASIDE_REDIS_TLS_CA",
    "ASIDE_MEMCACHED_NODES",
    "ASIDE_POSTGRES_URL",
    "ASIDE_POSTGRES_REPLICA_URL",
];

impl Settings {
    /// Parses TOML text, applies `env` (name, value) overrides, validates.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut s: Settings =
            toml::from_str(text).map_err(|e| ConfigError(e.message().replace('\n', " ")))?;
        let list = |v: &str| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        for (k, v) in env {
            match k.as_str() {
                "ASIDE_STRATEGY" => s.cache.strategy = v,
                "ASIDE_REDIS_URL" => s.redis.url = v,
                "ASIDE_REDIS_SENTINELS" => s.redis.sentinels = list(&v),
                "ASIDE_REDIS_MASTER_NAME" => s.redis.master_name = v,
                "ASIDE_REDIS_USERNAME" => s.redis.username = Some(v),
                "ASIDE_REDIS_PASSWORD" => s.redis.password = Some(Secret(v)),
                "ASIDE_REDIS_SENTINEL_USERNAME" => s.redis.sentinel_username = Some(v),
                "ASIDE_REDIS_SENTINEL_PASSWORD" => s.redis.sentinel_password = Some(Secret(v)),
                "ASIDE_REDIS_TLS" => {
                    s.redis.tls = match v.as_str() {
                        "1" | "true" => true,
                        "0" | "false" | "" => false,
                        _ => {
                            return Err(ConfigError(format!(
                                "ASIDE_REDIS_TLS {v:?} is not a boolean: use true or false"
                            )))
                        }
                    }
                }
                "ASIDE_REDIS_TLS_CA" => s.redis.tls_ca = Some(v.into()),
                "ASIDE_MEMCACHED_NODES" => s.memcached.nodes = list(&v),
                "ASIDE_POSTGRES_URL" => s.postgres.url = v,
                "ASIDE_POSTGRES_REPLICA_URL" => s.postgres.replica_url = Some(v),
                // Other programs' ASIDE_* variables (the harness's own ASIDE_SCENARIO, for one)
                // are none of the library's business.
                _ => {}
            }
        }
        if s.memcached.nodes.is_empty() {
            return Err(ConfigError(
                "memcached.nodes is empty: list at least one host:port".into(),
            ));
        }
        for n in s.memcached.nodes.iter().chain(&s.redis.sentinels) {
            let ok = n
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError(format!("{n:?} is not host:port")));
            }
        }
        s.cache = s.cache.validate()?;
        Ok(s)
    }

    /// Reads `path` and the process environment.
    pub fn load(path: &std::path::Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Settings::from_toml(
            &text,
            std::env::vars().filter(|(k, _)| k.starts_with("ASIDE_")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_toml_plus_env_override() {
        let s = Settings::from_toml(
            "[cache]\nstrategy = \"naive\"\nl1_ttl_ms = 5000\n[memcached]\nnodes = [\"a:1\", \"b:2\"]\n",
            [("ASIDE_MEMCACHED_NODES".to_string(), "c:3, d:4".to_string())],
        )
        .unwrap();
        assert_eq!(
            (s.cache.strategy.as_str(), s.cache.l1_ttl_ms),
            ("naive", 5000)
        );
        assert_eq!(s.memcached.nodes, vec!["c:3", "d:4"]);
        assert_eq!(s.cache.l2_ttl_ms, 21_600_000, "the seed's default");
    }

    /// The README's configuration example is a valid file, and each variable it names
    /// overrides what it says.
    #[test]
    fn the_readmes_configuration_example_loads() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/library.md"));
        let at = readme.find("**Configuration**").expect("the section");
        let block = &readme[at..];
        let start = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let toml = &block[start..start + block[start..].find("```").unwrap()];
        let s = Settings::from_toml(toml, []).unwrap();
        assert_eq!(s.redis.sentinels.len(), 2);
        assert_eq!(s.memcached.pool_max, 16);
        assert_eq!(s.cache.builtin().unwrap(), Builtin::Versioned);
        let named: Vec<&str> = toml
            .lines()
            .filter_map(|l| l.split('#').nth(1))
            .filter_map(|c| c.split_whitespace().find(|w| w.starts_with("ASIDE_")))
            .map(|w| w.trim_end_matches([':', ';']))
            .collect();
        let mut want: Vec<&str> = ENV.to_vec();
        let mut got = named.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "the README names every variable");
        let s = Settings::from_toml(
            toml,
            [
                ("ASIDE_STRATEGY".to_string(), "durable".to_string()),
                ("ASIDE_REDIS_SENTINELS".to_string(), String::new()),
            ],
        )
        .unwrap();
        assert_eq!(s.cache.builtin().unwrap(), Builtin::Durable);
        assert!(s.redis.sentinels.is_empty());
    }

    #[test]
    fn problems_are_one_line_naming_the_setting() {
        let err = |t: &str| Settings::from_toml(t, []).unwrap_err().to_string();
        assert!(err("[cache]\nstrategy = \"magic\"")
            .contains("cache.strategy \"magic\" is unknown: use one of naive, versioned"));
        assert!(err("[cache]\nttl_jitter = 2.0").contains("ttl_jitter 2 must be in 0.0..1.0"));
        assert!(err("[cache]\nl1_ttl_ms = 0").contains("cache.l1_ttl_ms is 0"));
        assert!(err("[cache]\nbogus = 1").contains("unknown field `bogus`"));
        assert!(err("[memcached]\nnodes = [\"nohost\"]").contains("\"nohost\" is not host:port"));
        assert!(err("[[[").lines().count() == 1);
        let env = |k: &str, v: &str| Settings::from_toml("", [(k.to_string(), v.to_string())]);
        assert_eq!(
            env("ASIDE_REDIS_TLS", "yes").unwrap_err().to_string(),
            "config: ASIDE_REDIS_TLS \"yes\" is not a boolean: use true or false"
        );
        assert!(env("ASIDE_REDIS_TLS", "true").unwrap().redis.tls);
        let s = env("ASIDE_REDIS_PASSWORD", "hunter2").unwrap();
        assert_eq!(
            s.redis.password.as_ref().map(Secret::expose),
            Some("hunter2")
        );
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "a password is never printed"
        );
        assert!(
            Settings::from_toml("", [("ASIDE_SCENARIO".into(), "x".into())]).is_ok(),
            "another program's ASIDE_* variable is not an error"
        );
    }
}
