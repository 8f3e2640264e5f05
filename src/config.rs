//! How the cache behaves: [`CacheConfig`], the same in both worlds, and [`ConfigError`], the one
//! type every configuration problem is (a setting, the value, what is allowed; one line).
//! Where the servers are and how a file and `ASIDE_*` variables become settings is
//! [`crate::settings`].
//!
//! Defaults are the production design's: L1 TTL 1 h, L2 TTL 6 h, Redis
//! timeout 100 ms, Memcached timeout 200 ms, memcached items up to 1 MiB.

use std::time::Duration;

use serde::Deserialize;

use crate::breaker::Breaker;
use crate::tier::ReadFrom;

/// The largest [`CacheConfig::early_refresh_beta`]: past it a key is refreshed on most reads
/// of its last seconds, which is a database read per read, not protection.
pub const EARLY_REFRESH_BETA_MAX: f64 = 100.0;

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
    /// How long a lease outlives the fill that releases it (`versioned`, `durable`: the fill's
    /// script shortens the lease to this instead of deleting it): a reader that read L1 just
    /// before the fill landed and asks for the lease a round trip later finds it held and is
    /// served the fill, instead of loading the key again. Longer than an L1 round trip; a miss
    /// after a write that follows a fill within it waits this long at most. 0: delete.
    pub lease_linger_ms: u64,
    /// Serve a value this long past its freshness while one reader refreshes it (0: off).
    pub stale_while_revalidate_ms: u64,
    /// Probabilistic early expiration (XFetch: Vattani, Chierichetti and Lowenstein, VLDB 2015):
    /// a read of an entry that expires in `gap` refreshes it early (one reader, under the lease)
    /// when `Δ × β × -ln(U) ≥ gap`, U uniform in (0, 1] and Δ this instance's recent database
    /// read time, so a popular key is reloaded shortly before it expires instead of missing
    /// for every reader at once. Larger β refreshes earlier; 0: off (entries then carry no
    /// expiry time, and an expired entry is found only by the tier dropping it).
    pub early_refresh_beta: f64,
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
    /// How long a read waits for a database slot (and for its turn under
    /// `db_reads_per_sec_max`) before it is shed.
    pub db_wait_ms_max: u64,
    /// Database reads per second from this instance, with a burst of a tenth of a second's;
    /// a read whose turn is further off than `db_wait_ms_max` is shed at once (0: no limit).
    pub db_reads_per_sec_max: u32,
    /// Hot keys' in-process L0 (the production design's hot-key incident): a key this instance
    /// reads at least `hot_reads_per_sec_min` times a second is served from process memory
    /// for this long after each read of a tier, so it costs the cache servers one read per
    /// this long per instance. Another instance's write is seen here when the row expires: L0
    /// adds this to the staleness a strategy states. 0: off. See [`crate::hot`].
    pub l0_ttl_ms: u64,
    /// Reads per second of one key (on this instance) that make it hot.
    pub hot_reads_per_sec_min: u64,
    /// Keys counted and rows held in L0, at most (the detector's and L0's memory).
    pub hot_keys_max: usize,
    pub l1_item_bytes_max: usize,
    /// Memcached's item limit (1 MiB by default) minus the item header.
    pub l2_item_bytes_max: usize,
    pub coalesce_waiters_max: usize,
    /// Read misses from the streaming replica instead of the primary.
    pub read_from_replica: bool,
    /// Namespaces whose keys are grouped (the id up to its last `:` is the group, `r/rust:` of
    /// `listings:v1:r/rust:hot`): with a versioned strategy, a pattern invalidation of a group
    /// bumps its generation (one database write and one invalidation, whatever the key count)
    /// instead of SCANning Redis, and a read of a grouped key first reads its group's
    /// generation (one more L1 round trip, cached like any key).
    pub grouped_namespaces: Vec<String>,
    /// Keys per SCAN call of a pattern invalidation outside grouped namespaces.
    pub scan_count: u32,
    /// `durable`: how often the outbox invalidator looks for new rows.
    pub outbox_poll_ms: u64,
    /// `durable`: the invalidator's deadline for one outbox query.
    pub outbox_timeout_ms: u64,
    /// `durable`: outbox rows per query.
    pub outbox_batch: u32,
    /// `durable`: outbox rows marked done are deleted once older than this (0: never; then
    /// call `Postgres::prune_outbox` yourself). At least 2 × `replay_window_ms`.
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
    /// Test machinery: one safeguard dropped, to prove the harness catches its loss
    /// ([`crate::mutant`]). Never set outside a test; no settings file can.
    #[serde(skip)]
    #[doc(hidden)]
    pub mutant: Option<crate::mutant::Mutant>,
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
            lease_linger_ms: 20,
            stale_while_revalidate_ms: 0,
            early_refresh_beta: 1.0,
            negative_ttl_ms: 5_000,
            l1_timeout_ms: 100,
            l2_timeout_ms: 200,
            db_timeout_ms: 2_000,
            breaker_failures_max: 5,
            breaker_cooldown_ms: 1_000,
            db_concurrency_max: 64,
            db_wait_ms_max: 250,
            db_reads_per_sec_max: 0,
            l0_ttl_ms: 0,
            hot_reads_per_sec_min: 100,
            hot_keys_max: 64,
            l1_item_bytes_max: 8 << 20,
            l2_item_bytes_max: (1 << 20) - 1024,
            coalesce_waiters_max: 10_000,
            read_from_replica: false,
            grouped_namespaces: Vec::new(),
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
            mutant: None,
        }
    }
}

/// A configuration problem: which setting, what is wrong with it, and what to do instead. Its
/// text is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The settings file could not be read.
    #[error("config: cannot read {}: {reason}", .path.display())]
    Read {
        path: std::path::PathBuf,
        reason: String,
    },
    /// The TOML does not parse, or names a setting that does not exist.
    #[error("config: {0}")]
    Parse(String),
    /// A setting's value is outside what it allows, or contradicts another setting.
    #[error("config: {setting} {problem}")]
    Setting {
        /// Dotted, as in the file: `cache.l1_ttl_ms`, `memcached.nodes`.
        setting: String,
        /// What is wrong and what is allowed: `is 0: it must be at least 1`.
        problem: String,
    },
    /// `cache.strategy` (or `ASIDE_STRATEGY`) names no built-in strategy.
    #[error("config: cache.strategy {given:?} is unknown: use one of {}", .known.join(", "))]
    UnknownStrategy { given: String, known: Vec<String> },
    /// An `ASIDE_*` variable holds a value its setting cannot take.
    #[error("config: {var} {value:?} {problem}")]
    Env {
        var: String,
        value: String,
        problem: String,
    },
}

impl ConfigError {
    /// A [`ConfigError::Setting`].
    pub fn setting(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Setting {
            setting: setting.into(),
            problem: problem.into(),
        }
    }

    /// The setting (or variable) at fault, when there is one.
    pub fn setting_name(&self) -> Option<&str> {
        match self {
            ConfigError::Setting { setting, .. } => Some(setting),
            ConfigError::UnknownStrategy { .. } => Some("cache.strategy"),
            ConfigError::Env { var, .. } => Some(var),
            ConfigError::Read { .. } | ConfigError::Parse(_) => None,
        }
    }
}

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

    /// The longest an item this library writes can live in memcached: an entry (its TTL and
    /// stale-while-revalidate), a tombstone or a negative entry, in memcached's whole seconds,
    /// plus the second its expiry clock may lag. A ring a change has left is invalidated this
    /// long ([`crate::Membership`]).
    pub fn l2_item_lifetime_max(&self) -> Duration {
        let ms = (self.l2_ttl_ms + self.stale_while_revalidate_ms)
            .max(self.tombstone_ttl_ms)
            .max(self.negative_ttl_ms);
        Duration::from_secs(ms.div_ceil(1000) + 1)
    }

    /// The staleness `durable` promises (Δ): a write whose own invalidation missed a tier is
    /// found by every invalidator within a poll and one outbox query, and applied within one
    /// call to each tier; an instance that cannot apply it fences the tier until it can. So no
    /// read is served stale for longer than `outbox_poll_ms + outbox_timeout_ms +
    /// l1_timeout_ms + l2_timeout_ms`. A read served from hot keys' L0 may be `l0_ttl_ms`
    /// staler (a row another instance read just before the invalidation reached it is served
    /// until it expires).
    pub fn outbox_staleness_bound_ms(&self) -> u64 {
        self.outbox_poll_ms + self.outbox_timeout_ms + self.l1_timeout_ms + self.l2_timeout_ms
    }

    /// The smallest replay window that covers what a failed master may have acknowledged and
    /// lost: see [`CacheConfig::replay_window_ms`].
    pub fn replay_window_min_ms(&self) -> u64 {
        self.redis_max_lag_ms + self.failover_ms + self.outbox_poll_ms
    }

    /// Checks every setting but `strategy` (which names a built-in only when the cache is built
    /// by name: [`crate::Builtin::from_config`]) and derives the rest.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        let e = |setting: &str, problem: String| Err(ConfigError::setting(setting, problem));
        for (name, v) in [
            ("cache.l1_ttl_ms", self.l1_ttl_ms),
            ("cache.l2_ttl_ms", self.l2_ttl_ms),
            ("cache.l1_timeout_ms", self.l1_timeout_ms),
            ("cache.l2_timeout_ms", self.l2_timeout_ms),
            ("cache.db_timeout_ms", self.db_timeout_ms),
            ("cache.db_concurrency_max", self.db_concurrency_max as u64),
            (
                "cache.coalesce_waiters_max",
                self.coalesce_waiters_max as u64,
            ),
            ("cache.scan_count", u64::from(self.scan_count)),
            ("cache.hot_reads_per_sec_min", self.hot_reads_per_sec_min),
            ("cache.hot_keys_max", self.hot_keys_max as u64),
            ("cache.outbox_poll_ms", self.outbox_poll_ms),
            ("cache.outbox_timeout_ms", self.outbox_timeout_ms),
            ("cache.outbox_batch", u64::from(self.outbox_batch)),
        ] {
            if v == 0 {
                return e(name, "is 0: it must be at least 1".into());
            }
        }
        for ns in &self.grouped_namespaces {
            if ns == crate::key::GENERATION_NAMESPACE || crate::Key::new(ns, 1, "x").is_err() {
                return e(
                    "cache.grouped_namespaces",
                    format!(
                        "holds {ns:?}: each must be a namespace of your keys (1-64 of a-z, 0-9, '_', '-'; not {:?})",
                        crate::key::GENERATION_NAMESPACE
                    ),
                );
            }
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return e(
                "cache.ttl_jitter",
                format!(
                    "{} must be in 0.0..1.0 (a fraction of the TTL)",
                    self.ttl_jitter
                ),
            );
        }
        if !(self.early_refresh_beta.is_finite()
            && (0.0..=EARLY_REFRESH_BETA_MAX).contains(&self.early_refresh_beta))
        {
            return e(
                "cache.early_refresh_beta",
                format!(
                    "{} must be from 0 (off) to {EARLY_REFRESH_BETA_MAX} (1: XFetch's default)",
                    self.early_refresh_beta
                ),
            );
        }
        if self.tombstone_ttl_ms < self.lease_ms {
            return e(
                "cache.tombstone_ttl_ms",
                format!(
                    "{} is shorter than cache.lease_ms {}: a slow fill could outlive its tombstone",
                    self.tombstone_ttl_ms, self.lease_ms
                ),
            );
        }
        if self.replay_window_ms < self.replay_window_min_ms() {
            return e(
                "cache.replay_window_ms",
                format!(
                    "{} is under {} (redis_max_lag_ms + failover_ms + outbox_poll_ms): invalidations a failed master acknowledged and lost would not be replayed; raise it",
                    self.replay_window_ms,
                    self.replay_window_min_ms()
                ),
            );
        }
        if self.outbox_keep_ms > 0 && self.outbox_keep_ms < 2 * self.replay_window_ms {
            return e(
                "cache.outbox_keep_ms",
                format!(
                    "{} is under 2 x cache.replay_window_ms {}: an invalidator's start reads the rows of the last 2 W and a replay after a master switch those of the last W, and would miss pruned ones; raise it (or 0: never prune)",
                    self.outbox_keep_ms, self.replay_window_ms
                ),
            );
        }
        if self.outbox_keep_ms > 0 && self.outbox_prune_every_ms == 0 {
            return e(
                "cache.outbox_prune_every_ms",
                "is 0: it must be at least 1 while outbox_keep_ms prunes".into(),
            );
        }
        if self.l2_item_bytes_max > 1 << 30 {
            return e(
                "cache.l2_item_bytes_max",
                format!(
                    "{} is over memcached's 1 GiB maximum item size",
                    self.l2_item_bytes_max
                ),
            );
        }
        self.read_from = if self.read_from_replica {
            ReadFrom::Replica
        } else {
            ReadFrom::Primary
        };
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_names_its_setting() {
        let bad = |c: CacheConfig| c.validate().unwrap_err();
        let e = bad(CacheConfig {
            l1_ttl_ms: 0,
            ..CacheConfig::default()
        });
        assert_eq!(e.setting_name(), Some("cache.l1_ttl_ms"));
        assert_eq!(
            e.to_string(),
            "config: cache.l1_ttl_ms is 0: it must be at least 1"
        );
        let e = bad(CacheConfig {
            scan_count: 0,
            ..CacheConfig::default()
        });
        assert_eq!(e.setting_name(), Some("cache.scan_count"));
        let e = bad(CacheConfig {
            outbox_keep_ms: 10,
            ..CacheConfig::default()
        });
        assert_eq!(e.setting_name(), Some("cache.outbox_keep_ms"));
        assert!(e
            .to_string()
            .contains("is under 2 x cache.replay_window_ms 5000"));
        let e = bad(CacheConfig {
            ttl_jitter: 1.5,
            ..CacheConfig::default()
        });
        assert_eq!(e.setting_name(), Some("cache.ttl_jitter"));
        for beta in [-1.0, f64::NAN, EARLY_REFRESH_BETA_MAX + 1.0] {
            let e = bad(CacheConfig {
                early_refresh_beta: beta,
                ..CacheConfig::default()
            });
            assert_eq!(e.setting_name(), Some("cache.early_refresh_beta"));
        }
        // The strategy is not this check's business: a name of your own validates.
        let own = CacheConfig {
            strategy: "my-own".into(),
            ..CacheConfig::default()
        };
        assert!(own.validate().is_ok());
    }
}
