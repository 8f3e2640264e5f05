//! L1 over several Redis master/replica pairs: each pair a shard, monitored under a Sentinel
//! name of its own, and every key on the shard its class is mapped to.
//!
//! A key's class is its namespace (`post` in `post:v1:42`). A lease key goes where its key
//! goes, and a group's generation key (`aside-gen:v1:listings:v1:r/rust:`) where the group's
//! keys go: the scripts that read a key with its lease or its generation need both on one
//! server. A class the map does not name goes to the default shard.
//!
//! The cache keeps a circuit breaker, a fence and a count of master switches per shard, so a
//! failover or split-brain of one shard leaves the other serving and fenced on its own
//! ([`crate::CacheAside::fenced_tiers`] names them `l1-0`, `l1-1`, ...).

use std::collections::BTreeMap;

use crate::key::GENERATION_NAMESPACE;
use crate::tier::RedisLike;

/// A shard map that cannot route: one line naming the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("redis shards: none given; give at least one master name")]
    NoShards,
    #[error(
        "redis shards: class {class:?} is mapped to shard {shard}, but there are {count} \
         (numbered from 0); map it to one of them"
    )]
    OutOfRange {
        class: String,
        shard: usize,
        count: usize,
    },
    #[error("redis shards: {given} servers for a map of {count} shards; give one per shard")]
    Count { given: usize, count: usize },
}

/// Which shard each key class goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    count: usize,
    default_shard: usize,
    classes: BTreeMap<String, usize>,
}

impl ShardMap {
    /// One shard: every key on it.
    pub fn single() -> ShardMap {
        ShardMap {
            count: 1,
            default_shard: 0,
            classes: BTreeMap::new(),
        }
    }

    /// `count` shards; a class the map does not name goes to `default_shard`.
    pub fn new(count: usize, default_shard: usize) -> Result<ShardMap, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if default_shard >= count {
            return Err(ShardError::OutOfRange {
                class: "(default)".into(),
                shard: default_shard,
                count,
            });
        }
        Ok(ShardMap {
            count,
            default_shard,
            classes: BTreeMap::new(),
        })
    }

    /// Keys of namespace `class` go to `shard`.
    pub fn class(mut self, class: &str, shard: usize) -> Result<ShardMap, ShardError> {
        if shard >= self.count {
            return Err(ShardError::OutOfRange {
                class: class.into(),
                shard,
                count: self.count,
            });
        }
        self.classes.insert(class.to_string(), shard);
        Ok(self)
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The shard of `key`: a stored key, its lease key, a group's generation key, or a SCAN
    /// pattern that begins with a namespace.
    pub fn shard_of(&self, key: &str) -> usize {
        if self.count == 1 {
            return 0;
        }
        self.classes
            .get(class_of(key))
            .copied()
            .unwrap_or(self.default_shard)
    }
}

/// The class (namespace) a key belongs to: see the module's docs.
pub fn class_of(key: &str) -> &str {
    let key = key.strip_prefix("aside:lease:").unwrap_or(key);
    let key = match key
        .strip_prefix(GENERATION_NAMESPACE)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|r| r.split_once(':'))
    {
        // `aside-gen:vN:` then the group's own key.
        Some((_version, group)) => group,
        None => key,
    };
    key.split_once(':').map_or(key, |(class, _)| class)
}

/// The L1 servers and the map that routes keys to them.
pub struct Shards<R> {
    servers: Vec<R>,
    map: ShardMap,
}

impl<R> Shards<R> {
    /// One server holding every key.
    pub fn one(server: R) -> Shards<R> {
        Shards {
            servers: vec![server],
            map: ShardMap::single(),
        }
    }

    /// `servers[i]` is shard `i` of `map`.
    pub fn new(servers: Vec<R>, map: ShardMap) -> Result<Shards<R>, ShardError> {
        if servers.len() != map.count() {
            return Err(ShardError::Count {
                given: servers.len(),
                count: map.count(),
            });
        }
        Ok(Shards { servers, map })
    }

    /// The shard of `key` and its server.
    pub fn of(&self, key: &str) -> (usize, &R) {
        let s = self.map.shard_of(key);
        (s, &self.servers[s])
    }

    pub fn server(&self, shard: usize) -> &R {
        &self.servers[shard]
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    pub fn map(&self) -> &ShardMap {
        &self.map
    }
}

impl<R: RedisLike> Shards<R> {
    /// Master switches the client of `shard` has followed.
    pub fn master_switches(&self, shard: usize) -> u64 {
        self.servers[shard].master_switches()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn two() -> ShardMap {
        ShardMap::new(2, 0).unwrap().class("session", 1).unwrap()
    }

    #[test]
    fn a_key_its_lease_and_its_group_generation_share_a_shard() {
        let m = two();
        let k = Key::new("session", 1, "r/rust:7").unwrap();
        assert_eq!(m.shard_of(k.as_str()), 1);
        assert_eq!(m.shard_of(&format!("aside:lease:{}", k.stored())), 1);
        assert_eq!(m.shard_of(&crate::key::stored_name(k.as_str(), 4)), 1);
        let g = k.generation_key().unwrap();
        assert_eq!(class_of(g.as_str()), "session", "{g}");
        assert_eq!(m.shard_of(g.as_str()), 1);
        assert_eq!(m.shard_of("session:v1:*"), 1, "a SCAN pattern");
        assert_eq!(m.shard_of("post:v1:9"), 0);
        assert_eq!(m.shard_of("unmapped:v1:9"), 0, "the default shard");
        assert_eq!(m.shard_of("no-colon"), 0);
    }

    #[test]
    fn a_map_that_cannot_route_is_refused_with_the_fix() {
        assert_eq!(ShardMap::new(0, 0), Err(ShardError::NoShards));
        let e = ShardMap::new(2, 0).unwrap().class("post", 2).unwrap_err();
        assert!(e.to_string().contains("map it to one of them"), "{e}");
        assert!(ShardMap::new(2, 2).is_err());
        let e = Shards::new(vec![()], two()).err().unwrap();
        assert_eq!(e, ShardError::Count { given: 1, count: 2 });
    }
}
