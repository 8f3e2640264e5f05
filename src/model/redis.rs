//! A Redis model at the tier boundary: strings with TTL in (simulated) milliseconds, SET NX/XX,
//! DEL, SCAN with Redis's guarantees, the named scripts, maxmemory with allkeys-lru, and a
//! replication stream. Pure: time comes in with each command; no I/O, no runtime.
//!
//! SCAN visits keys in the order of a fixed hash of the key, and the cursor is the position in
//! that order. So a key present for the whole scan is returned exactly once, and a key created
//! during the scan behind the cursor is missed, as real Redis may miss it.

use std::collections::BTreeMap;

use crate::envelope::{self, Kind};
use crate::goal::{reach_here, Goal};
use crate::tier::Leased;

use super::glob;

/// Bytes a key costs beyond its key and value (dict entry, robj, SDS headers), for maxmemory.
pub const ITEM_OVERHEAD_BYTES: usize = 64;

/// A replica's answer to a write, word for word as Redis 7 says it (held to the real server by
/// `sim/tests/conformance.rs`).
pub const READONLY: &str = "READONLY You can't write against a read only replica.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    Always,
    Nx,
    Xx,
}

/// A command, as the sim backends send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Get(String),
    Set {
        key: String,
        value: Vec<u8>,
        px_ms: u64,
        cond: Cond,
    },
    Del(Vec<String>),
    Scan {
        cursor: u64,
        pattern: String,
        count: u32,
    },
    /// The `fill_if_newer` / `tombstone` scripts: one script with the incoming kind.
    Versioned {
        key: String,
        value: Vec<u8>,
        version: u64,
        px_ms: u64,
        kind: Kind,
        /// The lease released in the same round trip after the fill: (lease key, token, how
        /// long it is kept: 0 deletes it).
        release: Option<(String, String, u64)>,
    },
    /// The `get_or_lease` script: the key's entry, and when a reader at `reader_now_ms` cannot
    /// serve it ([`envelope::unusable`]), the lease taken with `SET lease_key token NX PX px_ms`.
    GetOrLease {
        key: String,
        lease_key: String,
        token: String,
        px_ms: u64,
        reader_now_ms: u64,
        stale_ms: u64,
    },
    Release {
        key: String,
        token: String,
    },
    /// The `get_in_generation` script: the generation key's entry, and the key's entry in the
    /// generation it names ([`generation_named`]).
    GetInGeneration {
        gen_key: String,
        key: String,
    },
    FlushAll,
    DbSize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Bulk(Option<Vec<u8>>),
    Bool(bool),
    Int(u64),
    Scan(u64, Vec<String>),
    /// Two entries at once (`GetInGeneration`).
    Pair(Option<Vec<u8>>, Option<Vec<u8>>),
    /// An entry and what became of the lease (`GetOrLease`).
    Leased(Option<Vec<u8>>, Leased),
    Ok,
    /// An error reply (`OOM ...`, `READONLY ...`).
    Err(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    value: Vec<u8>,
    expire_at_ms: Option<u64>,
    last_access: u64,
}

/// One write as it travels to a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repl {
    Set {
        key: String,
        value: Vec<u8>,
        expire_at_ms: Option<u64>,
    },
    Del(String),
    FlushAll,
}

#[derive(Debug, Clone, Default)]
pub struct RedisModel {
    /// By SCAN order (hash, key).
    data: BTreeMap<(u64, String), Item>,
    used_bytes: usize,
    /// 0: no limit.
    pub maxmemory_bytes: usize,
    clock: u64,
    pub evictions: u64,
    /// Writes since the last `take_repl`, for the replication stream.
    repl: Vec<Repl>,
    pub replicating: bool,
}

/// The position of a key in SCAN order: FNV-1a 64 of the key, halved to leave 0 for "done" (the
/// same hash as the harness's `invariants::payload::fnv1a`, which a simulator test holds equal:
/// the order decides which keys a scan misses, and pinned seeds depend on it).
pub fn scan_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h >> 1
}

fn cost(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ITEM_OVERHEAD_BYTES
}

impl RedisModel {
    pub fn new(maxmemory_bytes: usize) -> Self {
        RedisModel {
            maxmemory_bytes,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    fn live(&mut self, key: &str, now_ms: u64) -> Option<&mut Item> {
        let k = (scan_hash(key), key.to_string());
        let expired = self
            .data
            .get(&k)
            .is_some_and(|i| i.expire_at_ms.is_some_and(|t| now_ms >= t));
        if expired {
            self.remove(key);
            return None;
        }
        self.clock += 1;
        let clock = self.clock;
        let item = self.data.get_mut(&k)?;
        item.last_access = clock;
        Some(item)
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.data.remove(&(scan_hash(key), key.to_string())) {
            Some(i) => {
                self.used_bytes -= cost(key, &i.value);
                if self.replicating {
                    self.repl.push(Repl::Del(key.to_string()));
                }
                true
            }
            None => false,
        }
    }

    fn store(
        &mut self,
        key: &str,
        value: Vec<u8>,
        expire_at_ms: Option<u64>,
    ) -> Result<(), String> {
        let add = cost(key, &value);
        let old = self
            .data
            .get(&(scan_hash(key), key.to_string()))
            .map_or(0, |i| cost(key, &i.value));
        if self.maxmemory_bytes > 0 {
            // allkeys-lru: evict the least recently used keys (exactly, where Redis samples).
            while self.used_bytes - old + add > self.maxmemory_bytes {
                let victim = self
                    .data
                    .iter()
                    .filter(|(k, _)| k.1 != key)
                    .min_by_key(|(_, i)| i.last_access)
                    .map(|(k, _)| k.1.clone());
                match victim {
                    Some(v) => {
                        self.remove(&v);
                        self.evictions += 1;
                        reach_here(Goal::RedisEvicted);
                    }
                    None => {
                        return Err("OOM command not allowed when used memory > 'maxmemory'.".into())
                    }
                }
            }
        }
        self.clock += 1;
        if self.replicating {
            self.repl.push(Repl::Set {
                key: key.to_string(),
                value: value.clone(),
                expire_at_ms,
            });
        }
        self.used_bytes = self.used_bytes - old + add;
        self.data.insert(
            (scan_hash(key), key.to_string()),
            Item {
                value,
                expire_at_ms,
                last_access: self.clock,
            },
        );
        Ok(())
    }

    /// Runs one command at `now_ms`.
    pub fn exec(&mut self, now_ms: u64, cmd: Cmd) -> Reply {
        match cmd {
            Cmd::Get(k) => Reply::Bulk(self.live(&k, now_ms).map(|i| i.value.clone())),
            Cmd::GetInGeneration { gen_key, key } => {
                let g = self.live(&gen_key, now_ms).map(|i| i.value.clone());
                let v = g
                    .as_deref()
                    .and_then(crate::envelope::generation_named)
                    .and_then(|n| self.live(&crate::key::stored_name(&key, n), now_ms))
                    .map(|i| i.value.clone());
                Reply::Pair(g, v)
            }
            Cmd::Set {
                key,
                value,
                px_ms,
                cond,
            } => {
                let exists = self.live(&key, now_ms).is_some();
                if (cond == Cond::Nx && exists) || (cond == Cond::Xx && !exists) {
                    return Reply::Bool(false);
                }
                match self.store(&key, value, Some(now_ms + px_ms.max(1))) {
                    Ok(()) => Reply::Bool(true),
                    Err(e) => Reply::Err(e),
                }
            }
            Cmd::Del(keys) => {
                let mut n = 0;
                for k in keys {
                    if self.live(&k, now_ms).is_some() {
                        n += u64::from(self.remove(&k));
                    }
                }
                Reply::Int(n)
            }
            Cmd::Scan {
                cursor,
                pattern,
                count,
            } => {
                let from = (cursor, String::new());
                let mut keys = Vec::new();
                let mut next = 0;
                for (seen, ((h, k), i)) in self.data.range(from..).enumerate() {
                    if seen as u32 >= count.max(1) {
                        next = *h;
                        break;
                    }
                    if i.expire_at_ms.is_none_or(|t| now_ms < t)
                        && glob::matches(pattern.as_bytes(), k.as_bytes())
                    {
                        keys.push(k.clone());
                    }
                }
                Reply::Scan(next, keys)
            }
            Cmd::Versioned {
                key,
                value,
                version,
                px_ms,
                kind,
                release,
            } => {
                let blocked = self
                    .live(&key, now_ms)
                    .and_then(|i| envelope::header(&i.value))
                    .is_some_and(|(k, v)| {
                        let blocks = envelope::blocks((k, v), kind, version);
                        if blocks && k == Kind::Tombstone && kind == Kind::Value {
                            reach_here(Goal::RedisTombstoneKept);
                        }
                        blocks
                    });
                if !blocked {
                    if let Err(e) = self.store(&key, value, Some(now_ms + px_ms.max(1))) {
                        return Reply::Err(e);
                    }
                }
                if let Some((lease_key, token, linger_ms)) = release {
                    self.release_after(&lease_key, &token, now_ms, linger_ms);
                }
                Reply::Bool(!blocked)
            }
            Cmd::GetOrLease {
                key,
                lease_key,
                token,
                px_ms,
                reader_now_ms,
                stale_ms,
            } => {
                let v = self.live(&key, now_ms).map(|i| i.value.clone());
                let usable = |raw: &[u8]| !envelope::unusable(raw, reader_now_ms, stale_ms);
                if v.as_deref().is_some_and(usable) {
                    return Reply::Leased(v, Leased::Unasked);
                }
                if let Some(held) = self.live(&lease_key, now_ms) {
                    if held.value != token.as_bytes() {
                        return Reply::Leased(v, Leased::Lost);
                    }
                    // Ours: it runs `px_ms` again (PEXPIRE), a lingering release included.
                    let expire_at_ms = Some(now_ms + px_ms.max(1));
                    return match self.store(&lease_key, token.into_bytes(), expire_at_ms) {
                        Ok(()) => Reply::Leased(v, Leased::Ours),
                        Err(e) => Reply::Err(e),
                    };
                }
                match self.store(&lease_key, token.into_bytes(), Some(now_ms + px_ms.max(1))) {
                    Ok(()) => Reply::Leased(v, Leased::Won),
                    Err(e) => Reply::Err(e),
                }
            }
            Cmd::Release { key, token } => Reply::Bool(self.release_after(&key, &token, now_ms, 0)),
            Cmd::FlushAll => {
                self.data.clear();
                self.used_bytes = 0;
                if self.replicating {
                    self.repl.push(Repl::FlushAll);
                }
                Reply::Ok
            }
            Cmd::DbSize => {
                let n = self
                    .data
                    .values()
                    .filter(|i| i.expire_at_ms.is_none_or(|t| now_ms < t))
                    .count();
                Reply::Int(n as u64)
            }
        }
    }

    /// Releases the lease `key` if it holds `token`: deleted (`linger_ms` 0) or kept that much
    /// longer (PEXPIRE). True when it held the token.
    fn release_after(&mut self, key: &str, token: &str, now_ms: u64, linger_ms: u64) -> bool {
        let held = self.live(key, now_ms).map(|i| i.value == token.as_bytes());
        if held != Some(true) {
            if held == Some(false) {
                reach_here(Goal::RedisForeignRelease);
            }
            return false;
        }
        if linger_ms == 0 {
            return self.remove(key);
        }
        let value = token.as_bytes().to_vec();
        let _ = self.store(key, value, Some(now_ms + linger_ms));
        true
    }

    /// The writes since the last call, for the replica.
    pub fn take_repl(&mut self) -> Vec<Repl> {
        std::mem::take(&mut self.repl)
    }

    /// Applies a master's write on a replica.
    pub fn apply(&mut self, r: Repl) {
        match r {
            Repl::Set {
                key,
                value,
                expire_at_ms,
            } => {
                let _ = self.store(&key, value, expire_at_ms);
            }
            Repl::Del(k) => {
                self.remove(&k);
            }
            Repl::FlushAll => {
                self.data.clear();
                self.used_bytes = 0;
            }
        }
    }

    /// A full resync: the replica (or a demoted old master) drops its data, writes included,
    /// and takes the master's.
    pub fn resync_from(&mut self, master: &RedisModel) {
        if self
            .data
            .iter()
            .any(|(k, i)| master.data.get(k).is_none_or(|m| m.value != i.value))
        {
            reach_here(Goal::RedisResyncLost);
        }
        self.data = master.data.clone();
        self.used_bytes = master.used_bytes;
        self.repl.clear();
    }
}

#[cfg(test)]
mod tests;
