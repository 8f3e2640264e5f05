//! A memcached model at the tier boundary: items with TTL in seconds, CAS tokens, set/add/cas/
//! delete/flush_all, LRU eviction within a memory limit, the item size limit, and the server's
//! refusal of keys the text protocol cannot carry. Pure: time comes in with each command.

use std::collections::BTreeMap;

use crate::goal::{reach_here, Goal};

/// Bytes an item costs beyond its key and value (item header), for the memory limit.
pub const ITEM_OVERHEAD_BYTES: usize = 56;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Gets(String),
    Set {
        key: String,
        value: Vec<u8>,
        ttl_s: u32,
    },
    Add {
        key: String,
        value: Vec<u8>,
        ttl_s: u32,
    },
    Cas {
        key: String,
        value: Vec<u8>,
        ttl_s: u32,
        cas: u64,
    },
    Delete(String),
    FlushAll,
    /// `stats`: the counters [`Reply::Stats`] carries.
    Stats,
    /// `cache_memlimit`: the memory limit becomes `bytes`. Nothing is freed at once: items are
    /// evicted, least recently used first, as later stores need room (real memcached stops
    /// allocating pages past the new limit and evicts within what it holds).
    MemLimit {
        bytes: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Value(Option<(Vec<u8>, u64)>),
    /// STORED (true) or NOT_STORED / EXISTS / NOT_FOUND (false).
    Stored(bool),
    Deleted(bool),
    Ok,
    /// CLIENT_ERROR / SERVER_ERROR.
    Err(String),
    /// `stats`: `cmd_get` (keys asked for by get and gets) and `evictions`.
    Stats {
        cmd_get: u64,
        evictions: u64,
    },
}

#[derive(Debug, Clone)]
struct Item {
    value: Vec<u8>,
    expire_at_ms: Option<u64>,
    cas: u64,
    last_access: u64,
}

#[derive(Debug, Clone)]
pub struct MemcachedModel {
    items: BTreeMap<String, Item>,
    used_bytes: usize,
    pub limit_bytes: usize,
    pub item_bytes_max: usize,
    cas_seq: u64,
    clock: u64,
    pub evictions: u64,
    /// Keys asked for by `gets`, as memcached's `cmd_get` counts them.
    pub cmd_get: u64,
}

/// The memory limit a node boots with (`-m 64`).
pub const LIMIT_BYTES_BOOT: usize = 64 << 20;

impl Default for MemcachedModel {
    fn default() -> Self {
        MemcachedModel::new(LIMIT_BYTES_BOOT)
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 250 && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

impl MemcachedModel {
    pub fn new(limit_bytes: usize) -> Self {
        MemcachedModel {
            items: BTreeMap::new(),
            used_bytes: 0,
            limit_bytes,
            item_bytes_max: 1 << 20,
            cas_seq: 0,
            clock: 0,
            evictions: 0,
            cmd_get: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item under `key` unless it has expired, without counting an access: memcached's
    /// `add` and `cas` look at the old item without moving it up the LRU (`do_store_item`
    /// reads it with `DONT_UPDATE`; a failed `add` bumps it at most once a minute).
    fn peek(&mut self, key: &str, now_ms: u64) -> Option<&Item> {
        if self
            .items
            .get(key)
            .is_some_and(|i| i.expire_at_ms.is_some_and(|t| now_ms >= t))
        {
            self.drop_item(key);
            return None;
        }
        self.items.get(key)
    }

    /// The item under `key` unless it has expired, counted as an access (`get`, `gets`).
    fn live(&mut self, key: &str, now_ms: u64) -> Option<&mut Item> {
        self.peek(key, now_ms)?;
        self.clock += 1;
        let clock = self.clock;
        let item = self.items.get_mut(key)?;
        item.last_access = clock;
        Some(item)
    }

    fn drop_item(&mut self, key: &str) -> bool {
        match self.items.remove(key) {
            Some(i) => {
                self.used_bytes -= key.len() + i.value.len() + ITEM_OVERHEAD_BYTES;
                true
            }
            None => false,
        }
    }

    fn store(&mut self, key: String, value: Vec<u8>, ttl_s: u32, now_ms: u64) -> Reply {
        let size = key.len() + value.len() + ITEM_OVERHEAD_BYTES;
        if size > self.item_bytes_max {
            return Reply::Err("SERVER_ERROR object too large for cache".into());
        }
        self.drop_item(&key);
        while self.used_bytes + size > self.limit_bytes {
            let victim = self
                .items
                .iter()
                .min_by_key(|(_, i)| i.last_access)
                .map(|(k, _)| k.clone());
            match victim {
                Some(v) => {
                    self.drop_item(&v);
                    self.evictions += 1;
                    reach_here(Goal::MemcachedEvicted);
                }
                None => return Reply::Err("SERVER_ERROR out of memory storing object".into()),
            }
        }
        self.cas_seq += 1;
        self.clock += 1;
        // exptime 0 never expires; positive values are seconds from now.
        let expire_at_ms = (ttl_s > 0).then(|| now_ms + u64::from(ttl_s) * 1000);
        self.used_bytes += size;
        self.items.insert(
            key,
            Item {
                value,
                expire_at_ms,
                cas: self.cas_seq,
                last_access: self.clock,
            },
        );
        Reply::Stored(true)
    }

    pub fn exec(&mut self, now_ms: u64, cmd: Cmd) -> Reply {
        let key = match &cmd {
            Cmd::Gets(k) | Cmd::Delete(k) => Some(k),
            Cmd::Set { key, .. } | Cmd::Add { key, .. } | Cmd::Cas { key, .. } => Some(key),
            Cmd::FlushAll | Cmd::Stats | Cmd::MemLimit { .. } => None,
        };
        if key.is_some_and(|k| !valid_key(k)) {
            return Reply::Err("CLIENT_ERROR bad command line format".into());
        }
        match cmd {
            Cmd::Gets(k) => {
                self.cmd_get += 1;
                Reply::Value(self.live(&k, now_ms).map(|i| (i.value.clone(), i.cas)))
            }
            Cmd::Stats => Reply::Stats {
                cmd_get: self.cmd_get,
                evictions: self.evictions,
            },
            Cmd::MemLimit { bytes } => {
                self.limit_bytes = bytes;
                Reply::Ok
            }
            Cmd::Set { key, value, ttl_s } => {
                // memcached unlinks the old item when a set fails for size, so stale data does
                // not outlive the failed update (found by the conformance test).
                if key.len() + value.len() + ITEM_OVERHEAD_BYTES > self.item_bytes_max {
                    self.drop_item(&key);
                }
                self.store(key, value, ttl_s, now_ms)
            }
            Cmd::Add { key, value, ttl_s } => {
                if self.peek(&key, now_ms).is_some() {
                    reach_here(Goal::MemcachedAddRefused);
                    return Reply::Stored(false);
                }
                self.store(key, value, ttl_s, now_ms)
            }
            Cmd::Cas {
                key,
                value,
                ttl_s,
                cas,
            } => match self.peek(&key, now_ms) {
                Some(i) if i.cas == cas => self.store(key, value, ttl_s, now_ms),
                Some(_) => {
                    reach_here(Goal::MemcachedCasConflict);
                    Reply::Stored(false)
                }
                None => Reply::Stored(false),
            },
            Cmd::Delete(k) => {
                let there = self.live(&k, now_ms).is_some();
                Reply::Deleted(there && self.drop_item(&k))
            }
            Cmd::FlushAll => {
                self.items.clear();
                self.used_bytes = 0;
                Reply::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_cas_delete_ttl() {
        let mut m = MemcachedModel::default();
        let add = |k: &str, v: &str| Cmd::Add {
            key: k.into(),
            value: v.as_bytes().to_vec(),
            ttl_s: 2,
        };
        assert_eq!(m.exec(0, add("a", "1")), Reply::Stored(true));
        assert_eq!(m.exec(0, add("a", "2")), Reply::Stored(false));
        let Reply::Value(Some((v, cas))) = m.exec(0, Cmd::Gets("a".into())) else {
            panic!()
        };
        assert_eq!(v, b"1");
        let cas_cmd = |c| Cmd::Cas {
            key: "a".into(),
            value: b"3".to_vec(),
            ttl_s: 2,
            cas: c,
        };
        assert_eq!(m.exec(0, cas_cmd(cas + 1)), Reply::Stored(false));
        assert_eq!(m.exec(0, cas_cmd(cas)), Reply::Stored(true));
        assert_eq!(
            m.exec(0, cas_cmd(cas)),
            Reply::Stored(false),
            "the token changed with the store"
        );
        assert!(
            matches!(m.exec(1999, Cmd::Gets("a".into())), Reply::Value(Some(_))),
            "alive 1 ms before its TTL"
        );
        assert_eq!(
            m.exec(2000, Cmd::Gets("a".into())),
            Reply::Value(None),
            "expired after 2 s"
        );
        assert_eq!(m.exec(0, Cmd::Delete("a".into())), Reply::Deleted(false));
    }

    #[test]
    fn bad_keys_big_values_and_lru() {
        let mut m = MemcachedModel::new(3 * (2 + 100 + ITEM_OVERHEAD_BYTES));
        assert!(
            matches!(m.exec(0, Cmd::Gets("a b".into())), Reply::Err(e) if e.starts_with("CLIENT_ERROR"))
        );
        assert!(
            matches!(m.exec(0, Cmd::Set { key: "big".into(), value: vec![0; 2 << 20], ttl_s: 0 }), Reply::Err(e) if e.contains("too large"))
        );
        for k in ["k1", "k2", "k3"] {
            m.exec(
                0,
                Cmd::Set {
                    key: k.into(),
                    value: vec![0; 100],
                    ttl_s: 0,
                },
            );
        }
        m.exec(0, Cmd::Gets("k1".into()));
        m.exec(
            0,
            Cmd::Set {
                key: "k4".into(),
                value: vec![0; 100],
                ttl_s: 0,
            },
        );
        assert_eq!(m.exec(0, Cmd::Gets("k2".into())), Reply::Value(None));
        assert_eq!(m.evictions, 1);
        assert_eq!(m.exec(0, Cmd::FlushAll), Reply::Ok);
        assert!(m.is_empty());
    }

    #[test]
    fn a_lowered_limit_evicts_at_the_next_store_and_an_evicted_tombstone_lets_an_add_land() {
        let item = 2 + 100 + ITEM_OVERHEAD_BYTES;
        let mut m = MemcachedModel::default();
        let set = |k: &str| Cmd::Set {
            key: k.into(),
            value: vec![0; 100],
            ttl_s: 0,
        };
        for k in ["t1", "k2", "k3"] {
            m.exec(0, set(k));
        }
        let limit = Cmd::MemLimit { bytes: 2 * item };
        assert_eq!(m.exec(0, limit), Reply::Ok);
        assert_eq!(m.len(), 3, "nothing is freed when the limit falls");
        m.exec(0, set("k4"));
        assert_eq!(m.evictions, 2, "the store made room for itself");
        let old = Cmd::Add {
            key: "t1".into(),
            value: vec![1; 100],
            ttl_s: 0,
        };
        assert_eq!(
            m.exec(0, old),
            Reply::Stored(true),
            "the tombstone t1 was evicted, so an add of an older value lands"
        );
    }

    #[test]
    fn a_refused_add_or_cas_does_not_save_an_item_from_eviction() {
        let item = 2 + 100 + ITEM_OVERHEAD_BYTES;
        let mut m = MemcachedModel::new(2 * item);
        let set = |k: &str| Cmd::Set {
            key: k.into(),
            value: vec![0; 100],
            ttl_s: 0,
        };
        m.exec(0, set("t1"));
        m.exec(0, set("k2"));
        let add = Cmd::Add {
            key: "t1".into(),
            value: vec![1; 100],
            ttl_s: 0,
        };
        assert_eq!(m.exec(0, add), Reply::Stored(false));
        let cas = Cmd::Cas {
            key: "t1".into(),
            value: vec![1; 100],
            ttl_s: 0,
            cas: 999,
        };
        assert_eq!(m.exec(0, cas), Reply::Stored(false));
        m.exec(0, set("k3"));
        assert_eq!(
            m.exec(0, Cmd::Gets("t1".into())),
            Reply::Value(None),
            "t1, refusing fills but read by no one, was the least recently used"
        );
        assert!(matches!(
            m.exec(0, Cmd::Gets("k2".into())),
            Reply::Value(Some(_))
        ));
    }
}
