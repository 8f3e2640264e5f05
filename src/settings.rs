//! Where the servers are, and how settings are read: a TOML file, then `ASIDE_*` environment
//! variables, then validation. Every problem is one [`ConfigError`] line naming the setting,
//! the value and what is allowed.

use serde::Deserialize;

use crate::config::{CacheConfig, ConfigError};
use crate::strategy::Builtin;

mod shards;
pub use shards::RedisShard;

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
    /// Further master/replica pairs (L1 shards), each with the key classes it holds; the pair
    /// above holds every other class ([`RedisShard`], [`crate::shards`]).
    pub shards: Vec<RedisShard>,
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
            shards: Vec::new(),
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
    /// Nodes as host:port that the pool connects to but the ring leaves out until a
    /// [`crate::Membership`] change brings them in (a node held ready to add capacity).
    pub spares: Vec<String>,
    /// Connections per node, at most.
    pub pool_max: usize,
}

impl Default for MemcachedSettings {
    fn default() -> Self {
        MemcachedSettings {
            nodes: vec!["127.0.0.1:11211".into()],
            spares: Vec::new(),
            pool_max: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresSettings {
    pub url: String,
    pub replica_url: Option<String>,
    /// Connections per pool (the primary's, and the replica's), at most.
    pub pool_max: u32,
    /// How long a query waits for a connection when all `pool_max` are busy before it fails
    /// naming the pool. Under `cache.db_timeout_ms`, so an exhausted pool is told as one.
    pub pool_wait_ms: u64,
}

impl PostgresSettings {
    /// The pools' limits against the cache's: a pool of at least one connection, waited for
    /// less than the cache's database deadline.
    pub fn check(&self, cache: &CacheConfig) -> Result<(), ConfigError> {
        if self.pool_max == 0 {
            return Err(ConfigError::setting(
                "postgres.pool_max",
                "is 0: a pool needs at least 1 connection",
            ));
        }
        if self.pool_wait_ms == 0 || self.pool_wait_ms >= cache.db_timeout_ms {
            return Err(ConfigError::setting(
                "postgres.pool_wait_ms",
                format!(
                    "is {}: it must be from 1 to under cache.db_timeout_ms ({}), or a read waiting for a connection fails as a database timeout instead of naming the pool",
                    self.pool_wait_ms, cache.db_timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            replica_url: None,
            pool_max: 16,
            pool_wait_ms: 1_000,
        }
    }
}

/// The sections of the file; `ASIDE_<SECTION>_<SETTING>` (upper case) overrides any setting
/// (`ASIDE_STRATEGY` is short for `ASIDE_CACHE_STRATEGY`).
pub const SECTIONS: [&str; 4] = ["redis", "memcached", "postgres", "cache"];

/// The settings whose variable holds a comma-separated list.
const LISTS: [&str; 4] = [
    "redis.sentinels",
    "memcached.nodes",
    "memcached.spares",
    "cache.grouped_namespaces",
];

/// What a variable's text may mean, in the order tried: a list (for the list settings); what
/// TOML makes of it (a number, a boolean); `1`/`0` as booleans; the text itself.
fn env_values(setting: &str, text: &str) -> Vec<toml::Value> {
    if LISTS.contains(&setting) {
        return vec![toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect(),
        )];
    }
    let mut out = Vec::new();
    let literal = format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    if let Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) =
        literal
    {
        out.push(v);
    }
    match text {
        "1" => out.push(toml::Value::Boolean(true)),
        "0" => out.push(toml::Value::Boolean(false)),
        _ => {}
    }
    out.push(toml::Value::String(text.into()));
    out
}

/// Does `value` alone, at `section.field`, make valid settings? The error if not.
fn fits(section: &str, field: &str, value: &toml::Value) -> Result<(), String> {
    let mut alone = toml::Table::new();
    alone.insert(field.into(), value.clone());
    let mut one = toml::Table::new();
    one.insert(section.into(), toml::Value::Table(alone));
    toml::Value::Table(one)
        .try_into::<Settings>()
        .map(drop)
        .map_err(|e| e.message().replace('\n', " "))
}

/// The setting a variable names (`ASIDE_CACHE_L1_TTL_MS` -> `cache.l1_ttl_ms`;
/// `ASIDE_STRATEGY` -> `cache.strategy`), if it names one by its form.
fn env_setting(var: &str) -> Option<(&'static str, String)> {
    let rest = var.strip_prefix("ASIDE_")?;
    if rest == "STRATEGY" {
        return Some(("cache", "strategy".into()));
    }
    SECTIONS.iter().find_map(|section| {
        let field = rest.strip_prefix(&format!("{}_", section.to_uppercase()))?;
        Some((*section, field.to_lowercase()))
    })
}

impl Settings {
    /// Parses TOML text, applies `env` (name, value) overrides, validates.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.message().replace('\n', " ")))?;
        // Every setting has its variable; the harness's own ASIDE_* variables (ASIDE_LOG,
        // ASIDE_SCENARIO, ...) name no section and are none of the library's business.
        for (var, text) in env {
            let Some((section, field)) = env_setting(&var) else {
                continue;
            };
            let setting = format!("{section}.{field}");
            // Each variable alone first: a name that is no setting, or a value it cannot take,
            // is an error naming the variable.
            let candidates = env_values(&setting, &text);
            let mut first_error = None;
            let mut value = None;
            for v in candidates {
                match fits(section, &field, &v) {
                    Ok(()) => {
                        value = Some(v);
                        break;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            let Some(value) = value else {
                return Err(ConfigError::Env {
                    value: if var.contains("PASSWORD") {
                        "<secret>".into()
                    } else {
                        text
                    },
                    var,
                    problem: format!(
                        "is not a value of {setting}: {}",
                        first_error.unwrap_or_default()
                    ),
                });
            };
            let entry = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = entry.as_table_mut() else {
                return Err(ConfigError::Parse(format!("{section} is not a table")));
            };
            t.insert(field, value);
        }
        let mut s: Settings = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.message().replace('\n', " ")))?;
        if s.memcached.nodes.is_empty() {
            return Err(ConfigError::setting(
                "memcached.nodes",
                "is empty: list at least one host:port",
            ));
        }
        for (setting, list) in [
            ("memcached.nodes", &s.memcached.nodes),
            ("memcached.spares", &s.memcached.spares),
            ("redis.sentinels", &s.redis.sentinels),
        ] {
            for n in list {
                let ok = n
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(ConfigError::setting(
                        setting,
                        format!("has {n:?}, which is not host:port"),
                    ));
                }
            }
        }
        if let Some(both) = (s.memcached.spares.iter()).find(|n| s.memcached.nodes.contains(n)) {
            return Err(ConfigError::setting(
                "memcached.spares",
                format!("has {both:?}, which memcached.nodes has too: list a node in one of them"),
            ));
        }
        s.redis.shard_map()?;
        s.postgres.check(&s.cache)?;
        Builtin::from_config(&s.cache)?;
        s.cache = s.cache.validate()?;
        Ok(s)
    }

    /// Reads `path` and the process environment.
    pub fn load(path: &std::path::Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
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
        assert_eq!(Builtin::from_config(&s.cache).unwrap(), Builtin::Versioned);
        // Each variable a line names is that line's setting.
        for line in toml.lines() {
            let Some((key, comment)) = line.split_once('#') else {
                continue;
            };
            let Some(var) = comment.split_whitespace().find(|w| w.starts_with("ASIDE_")) else {
                continue;
            };
            let var = var.trim_end_matches([':', ';']);
            let key = key.split('=').next().unwrap().trim();
            let (_, field) = env_setting(var).unwrap_or_else(|| panic!("{var} names no setting"));
            assert_eq!(field, key, "{var} is documented on the line of {key}");
        }
        let s = Settings::from_toml(
            toml,
            [
                ("ASIDE_STRATEGY".to_string(), "durable".to_string()),
                ("ASIDE_REDIS_SENTINELS".to_string(), String::new()),
            ],
        )
        .unwrap();
        assert_eq!(Builtin::from_config(&s.cache).unwrap(), Builtin::Durable);
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
        assert!(err("[memcached]\nnodes = [\"nohost\"]")
            .contains("memcached.nodes has \"nohost\", which is not host:port"));
        assert!(err("[memcached]\nnodes = [\"a:1\"]\nspares = [\"a:1\"]")
            .contains("memcached.spares has \"a:1\", which memcached.nodes has too"));
        assert!(err("[[[").lines().count() == 1);
        let env = |k: &str, v: &str| Settings::from_toml("", [(k.to_string(), v.to_string())]);
        assert_eq!(
            env("ASIDE_REDIS_TLS", "yes").unwrap_err().to_string(),
            "config: ASIDE_REDIS_TLS \"yes\" is not a value of redis.tls: invalid type: string \"yes\", expected a boolean"
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

    /// Every setting of every section has its variable, `ASIDE_<SECTION>_<SETTING>`: the
    /// settings are the ones serde lists for an unknown key, so a new field is covered the day
    /// it is added. A variable of a section that names no setting is refused with the list, and
    /// one whose value its setting cannot take names both.
    #[test]
    fn the_pool_wait_must_end_before_the_database_deadline() {
        let s = Settings::from_toml("[postgres]\npool_wait_ms = 1999\n", []).unwrap();
        assert_eq!(s.postgres.pool_wait_ms, 1999);
        for bad in [
            "[postgres]\npool_wait_ms = 2000\n",
            "[postgres]\npool_wait_ms = 0\n",
            "[postgres]\npool_wait_ms = 600\n[cache]\ndb_timeout_ms = 500\n",
        ] {
            let e = Settings::from_toml(bad, []).unwrap_err();
            assert_eq!(
                e.setting_name(),
                Some("postgres.pool_wait_ms"),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("cache.db_timeout_ms"), "{e}");
        }
        let e = Settings::from_toml("[postgres]\npool_max = 0\n", []).unwrap_err();
        assert_eq!(e.setting_name(), Some("postgres.pool_max"));
    }

    #[test]
    fn every_setting_has_its_variable() {
        let env = |k: &str, v: &str| Settings::from_toml("", [(k.to_string(), v.to_string())]);
        let mut covered = 0;
        for section in SECTIONS {
            let e = Settings::from_toml(&format!("[{section}]\nno_such_setting = 1\n"), [])
                .unwrap_err()
                .to_string();
            let listed = e
                .split("`no_such_setting`, expected")
                .nth(1)
                .unwrap_or_else(|| panic!("serde lists the fields: {e}"));
            let fields: Vec<&str> = listed
                .split('`')
                .filter(|f| f.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !f.is_empty())
                .collect();
            assert!(fields.len() >= 2, "{section}: {fields:?}");
            for field in fields {
                let var = format!("ASIDE_{}_{}", section.to_uppercase(), field.to_uppercase());
                assert_eq!(
                    env_setting(&var),
                    Some((section, field.to_string())),
                    "{var}"
                );
                // A value of the wrong kind is refused naming the variable and the setting.
                let wrong = if field.ends_with("_ms") { "soon" } else { "" };
                if !wrong.is_empty() {
                    let e = env(&var, wrong).unwrap_err().to_string();
                    assert!(
                        e.starts_with(&format!(
                            "config: {var} \"soon\" is not a value of {section}.{field}"
                        )),
                        "{e}"
                    );
                }
                covered += 1;
            }
        }
        assert!(covered > 35, "{covered} settings");
        let s = env("ASIDE_CACHE_L1_TTL_MS", "5000").unwrap();
        assert_eq!(s.cache.l1_ttl_ms, 5000);
        assert_eq!(
            env("ASIDE_CACHE_TTL_JITTER", "0.25")
                .unwrap()
                .cache
                .ttl_jitter,
            0.25
        );
        assert!(
            env("ASIDE_CACHE_READ_FROM_REPLICA", "true")
                .unwrap()
                .cache
                .read_from_replica
        );
        assert!(env("ASIDE_REDIS_TLS", "1").unwrap().redis.tls);
        assert_eq!(
            env("ASIDE_POSTGRES_POOL_MAX", "4")
                .unwrap()
                .postgres
                .pool_max,
            4
        );
        // A password of digits is still a password.
        let s = env("ASIDE_REDIS_PASSWORD", "12345").unwrap();
        assert_eq!(s.redis.password.as_ref().map(Secret::expose), Some("12345"));
        let e = env("ASIDE_CACHE_L1_TTL", "5").unwrap_err().to_string();
        assert!(
            e.contains("ASIDE_CACHE_L1_TTL")
                && e.contains("unknown field `l1_ttl`")
                && e.contains("l1_ttl_ms"),
            "{e}"
        );
        // Validation still holds for what a variable set.
        assert!(env("ASIDE_CACHE_L1_TTL_MS", "0")
            .unwrap_err()
            .to_string()
            .contains("cache.l1_ttl_ms is 0"));
    }
}
