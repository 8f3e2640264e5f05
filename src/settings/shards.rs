//! `[[redis.shards]]`: further Redis master/replica pairs (L1 shards, [`crate::shards`]) and the
//! key classes each holds. The pair of `redis.master_name` (or `redis.url`) is shard 0 and holds
//! every class no shard lists.
//!
//! ```toml
//! [redis]
//! sentinels = ["10.0.0.5:26379", "10.0.0.6:26379", "10.0.0.7:26379"]
//! master_name = "posts"
//!
//! [[redis.shards]]
//! master_name = "sessions"
//! classes = ["sessions", "comments"]
//! ```

use serde::Deserialize;

use super::RedisSettings;
use crate::config::ConfigError;
use crate::shards::ShardMap;

/// One further pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RedisShard {
    /// Its Sentinel name, when `redis.sentinels` is set (the same Sentinels watch every pair).
    pub master_name: String,
    /// Its server when there are no Sentinels (`redis://` or `rediss://`).
    pub url: String,
    /// The namespaces whose keys it holds (`post` of `post:v1:42`).
    pub classes: Vec<String>,
}

impl RedisSettings {
    /// Where each class goes, or the one line that says what is wrong with `redis.shards`.
    pub fn shard_map(&self) -> Result<ShardMap, ConfigError> {
        let bad = |i: usize, problem: String| {
            ConfigError::setting(format!("redis.shards[{}]", i + 1), problem)
        };
        let mut map = ShardMap::new(1 + self.shards.len(), 0)
            .map_err(|e| ConfigError::setting("redis.shards", e.to_string()))?;
        let mut names = vec![self.master_name.as_str()];
        for (i, s) in self.shards.iter().enumerate() {
            if self.sentinels.is_empty() {
                if s.url.is_empty() {
                    return Err(bad(
                        i,
                        "has no url: without redis.sentinels each pair needs its server's url"
                            .into(),
                    ));
                }
            } else if s.master_name.is_empty() {
                return Err(bad(
                    i,
                    "has no master_name: give the Sentinel name of its pair".into(),
                ));
            } else if names.contains(&s.master_name.as_str()) {
                return Err(bad(
                    i,
                    format!(
                        "names master {:?} again: each pair has its own Sentinel name",
                        s.master_name
                    ),
                ));
            } else {
                names.push(&s.master_name);
            }
            if s.classes.is_empty() {
                return Err(bad(
                    i,
                    "lists no classes: name the namespaces whose keys it holds".into(),
                ));
            }
            for class in &s.classes {
                if !crate::key::is_namespace(class) || class == crate::key::GENERATION_NAMESPACE {
                    return Err(bad(
                        i,
                        format!("lists class {class:?}, which is no key's namespace: a class is a namespace of 1 to 64 of a-z, 0-9, _, - (`sessions` of `sessions:v1:42`)"),
                    ));
                }
                if self.shards[..i].iter().any(|o| o.classes.contains(class)) {
                    return Err(bad(
                        i,
                        format!("lists class {class:?}, which an earlier shard lists: a class lives on one pair"),
                    ));
                }
                map = map.class(class, i + 1).map_err(|e| bad(i, e.to_string()))?;
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use crate::Settings;

    fn with(redis: &str) -> Result<Settings, String> {
        Settings::from_toml(
            &format!("[redis]\n{redis}\n[memcached]\nnodes = [\"m:1\"]\n"),
            [],
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn classes_go_to_their_pair_and_the_rest_to_the_first() {
        let s = with(
            "sentinels = [\"s:1\"]\nmaster_name = \"posts\"\n[[redis.shards]]\nmaster_name = \"sessions\"\nclasses = [\"sessions\", \"comments\"]",
        )
        .unwrap();
        let m = s.redis.shard_map().unwrap();
        assert_eq!(m.count(), 2);
        assert_eq!(m.shard_of("comments:v1:9"), 1);
        assert_eq!(m.shard_of("sessions:v1:u"), 1);
        assert_eq!(m.shard_of("posts:v1:9"), 0);
        let one = with("sentinels = [\"s:1\"]").unwrap();
        assert_eq!(one.redis.shard_map().unwrap().count(), 1);
    }

    #[test]
    fn a_shard_that_cannot_route_is_one_line_naming_it_and_the_fix() {
        let cases = [
            ("sentinels = [\"s:1\"]\n[[redis.shards]]\nclasses = [\"a\"]", "redis.shards[1] has no master_name"),
            ("[[redis.shards]]\nmaster_name = \"x\"\nclasses = [\"a\"]", "redis.shards[1] has no url"),
            ("sentinels = [\"s:1\"]\n[[redis.shards]]\nmaster_name = \"mymaster\"\nclasses = [\"a\"]", "names master \"mymaster\" again"),
            ("sentinels = [\"s:1\"]\n[[redis.shards]]\nmaster_name = \"x\"", "lists no classes"),
            ("sentinels = [\"s:1\"]\n[[redis.shards]]\nmaster_name = \"x\"\nclasses = [\"a\"]\n[[redis.shards]]\nmaster_name = \"y\"\nclasses = [\"a\"]", "redis.shards[2] lists class \"a\", which an earlier shard lists"),
            ("sentinels = [\"s:1\"]\n[[redis.shards]]\nmaster_name = \"x\"\nclasses = [\"a\"]\nport = 1", "unknown field `port`"),
            ("sentinels = [\"s:1\"]\n[[redis.shards]]\nmaster_name = \"x\"\nclasses = [\"Sessions\"]", "lists class \"Sessions\", which is no key's namespace"),
            ("sentinels = [\"s:1\"]\n[[redis.shards]]\nmaster_name = \"x\"\nclasses = [\"sessions:v1\"]", "which is no key's namespace"),
        ];
        for (toml, want) in cases {
            let e = with(toml).unwrap_err();
            assert!(e.contains(want), "{toml}\n=> {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
