//! Where the servers are, and how settings are read: a TOML file, then `ASIDE_*` environment
//! variables, then validation. Every problem is one [`ConfigError`] line naming the setting,
//! the value and what is allowed.

use serde::Deserialize;

use crate::config::{CacheConfig, ConfigError};
use crate::strategy::Builtin;

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
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.message().replace('\n', " ")))?;
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
                            return Err(ConfigError::Env {
                                var: k,
                                value: v,
                                problem: "is not a boolean: use true or false".into(),
                            })
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
            return Err(ConfigError::setting(
                "memcached.nodes",
                "is empty: list at least one host:port",
            ));
        }
        for (setting, list) in [
            ("memcached.nodes", &s.memcached.nodes),
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
