//! Redis L1 over redis-rs, with Sentinel master discovery done here (redis-rs resolves the
//! master only when asked and does not follow `+switch-master`).
//!
//! The master is found by asking each Sentinel `SENTINEL get-master-addr-by-name` and verified
//! with `ROLE` (a Sentinel may still name a demoted master). The connection is dropped and the
//! master re-resolved on connection errors, on `READONLY` (we are talking to a replica: a
//! failover happened), after [`TIMEOUTS_TO_RESOLVE`] late replies in a row (one is a busy
//! server) and whenever a Sentinel publishes `+switch-master`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script, ServerErrorKind, Value};
use tokio::sync::{Mutex, RwLock};
use tracing::{info, warn};

use super::without_credentials;

mod access;
mod sentinel;

use crate::tier::{LeaseAsk, Leased, RedisLike, Release, SetCond, TierError, TierResult};
use access::connect_error;
pub use access::Access;
use sentinel::watch_switches;
pub use sentinel::TIMEOUTS_TO_RESOLVE;

const TIER: &str = "redis";

/// Store an envelope unless the key holds a newer version (`crate::envelope::blocks`), then,
/// when a lease key is given, release that lease if it still holds our token (a miss's fill and
/// its lease release in one round trip): deleted, or kept linger_ms more. KEYS[1] key, KEYS[2]
/// the lease key (optional); ARGV value, version, ttl_ms, kind ('v' or 't', for the logs), the
/// lease's token, linger_ms.
const VERSIONED_SET: &str = r"
local stored = 1
local cur = redis.call('GET', KEYS[1])
if cur then
  local kind, ver = string.match(cur, '^AS1|(%a)|(%d+)|')
  if kind and tonumber(ver) > tonumber(ARGV[2]) then stored = 0 end
end
if stored == 1 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[5] then
  if ARGV[6] == '0' then redis.call('DEL', KEYS[2]) else redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
end
return stored
";

/// A key's entry and, when a reader cannot serve it (`crate::envelope::unusable`: nothing, a
/// tombstone, a value past its stale window), the lease a miss needs, in one round trip; a
/// lease already ours (held with our token, as a fill's lingering release leaves it) runs
/// lease_ms again. KEYS[1] key, KEYS[2] lease key; ARGV token, lease_ms, the reader's now_ms,
/// its stale_ms.
/// Returns {entry or nil, 1 won | 3 already held with our token | 0 lost | 2 not asked}.
const GET_OR_LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  local kind, fresh = string.match(v, '^AS1|(%a)|%d+|(%d+)|')
  local expired = kind == 'v' and fresh ~= '0'
    and tonumber(fresh) + tonumber(ARGV[4]) < tonumber(ARGV[3])
  if kind ~= 't' and not expired then return {v, 2} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {v, 1} end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {v, 3}
end
return {v, 0}
";

/// A group's generation key and a key in the generation it names, in one round trip
/// (`crate::envelope::generation_named`: a value's version, 0 for "no such row", nothing for
/// a tombstone). KEYS[1] generation key; KEYS[2] the key (its name in generation g is
/// `KEYS[2] .. '#g' .. g`, as `crate::key::stored_name`).
const GET_IN_GENERATION: &str = r"
local g = redis.call('GET', KEYS[1])
if not g then return {false, false} end
local kind, ver = string.match(g, '^AS1|(%a)|(%d+)|')
if kind == 'a' then ver = '0' elseif kind ~= 'v' then return {g, false} end
return {g, redis.call('GET', KEYS[2] .. '#g' .. ver)}
";

/// Delete a lease only if we still hold it. KEYS[1] lease key; ARGV[1] our token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

enum Target {
    Direct(String),
    Sentinel {
        sentinels: Vec<String>,
        master_name: String,
    },
}

/// The Redis L1: a direct server or a Sentinel-managed master.
pub struct Redis {
    target: Target,
    access: Access,
    current: RwLock<Option<(String, MultiplexedConnection)>>,
    resolving: Mutex<()>,
    timeout: Duration,
    versioned_set: Script,
    get_in_generation: Script,
    get_or_lease: Script,
    release: Script,
    /// How many times the master was (re-)resolved: observability and tests.
    pub resolutions: AtomicU64,
    /// How many times a resolution found a master at another address than the last one.
    switches: AtomicU64,
    timeouts_in_a_row: AtomicU32,
    last_master: std::sync::Mutex<Option<String>>,
}

fn map_err(e: RedisError) -> TierError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
    {
        return TierError::Unavailable {
            tier: TIER,
            detail: e.to_string(),
        };
    }
    if matches!(
        e.kind(),
        redis::ErrorKind::Server(ServerErrorKind::ReadOnly)
    ) {
        // A replica answered: the master moved. A health failure: re-resolve.
        return TierError::Unavailable {
            tier: TIER,
            detail: format!("READONLY: {e}"),
        };
    }
    TierError::Refused {
        tier: TIER,
        detail: e.to_string(),
    }
}

fn unavailable(detail: impl Into<String>) -> TierError {
    TierError::Unavailable {
        tier: TIER,
        detail: detail.into(),
    }
}

impl Redis {
    fn with_target(target: Target, timeout: Duration, access: Access) -> Redis {
        Redis {
            target,
            access,
            current: RwLock::new(None),
            resolving: Mutex::new(()),
            timeout,
            versioned_set: Script::new(VERSIONED_SET),
            get_in_generation: Script::new(GET_IN_GENERATION),
            get_or_lease: Script::new(GET_OR_LEASE),
            release: Script::new(RELEASE),
            resolutions: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            timeouts_in_a_row: AtomicU32::new(0),
            last_master: std::sync::Mutex::new(None),
        }
    }

    /// A single server at `url` (redis://host:port).
    pub async fn direct(url: &str, timeout: Duration) -> TierResult<Arc<Redis>> {
        Redis::direct_with(url, timeout, Access::default()).await
    }

    /// [`Redis::direct`] logged in and over TLS as `access` says.
    pub async fn direct_with(
        url: &str,
        timeout: Duration,
        access: Access,
    ) -> TierResult<Arc<Redis>> {
        let r = Arc::new(Redis::with_target(
            Target::Direct(url.to_string()),
            timeout,
            access,
        ));
        r.connection().await?;
        Ok(r)
    }

    /// The master of `master_name` as the Sentinels at `sentinels` (host:port) know it, followed
    /// across failovers. `timeout` bounds connects and replies: keep it below the cache's
    /// `l1_timeout_ms`, so a master that stops answering is noticed here (and re-resolved) rather
    /// than only by the cache, which drops the call.
    pub async fn sentinel(
        sentinels: &[String],
        master_name: &str,
        timeout: Duration,
    ) -> TierResult<Arc<Redis>> {
        Redis::sentinel_with(sentinels, master_name, timeout, Access::default()).await
    }

    /// [`Redis::sentinel`] logged in (to the Sentinels and to the masters) and over TLS as
    /// `access` says.
    pub async fn sentinel_with(
        sentinels: &[String],
        master_name: &str,
        timeout: Duration,
        access: Access,
    ) -> TierResult<Arc<Redis>> {
        let target = Target::Sentinel {
            sentinels: sentinels.to_vec(),
            master_name: master_name.to_string(),
        };
        let r = Arc::new(Redis::with_target(target, timeout, access));
        r.connection().await?;
        tokio::spawn(watch_switches(
            Arc::downgrade(&r),
            sentinels.to_vec(),
            r.access.clone(),
        ));
        Ok(r)
    }

    /// The address of the server commands go to now.
    pub async fn master(&self) -> Option<String> {
        self.current.read().await.as_ref().map(|(a, _)| a.clone())
    }

    async fn open(
        &self,
        client: Result<Client, RedisError>,
    ) -> Result<MultiplexedConnection, RedisError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        client?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
    }

    async fn role(conn: &mut MultiplexedConnection) -> Result<String, RedisError> {
        let v: Value = redis::cmd("ROLE").query_async(conn).await?;
        match v {
            Value::Array(items) => match items.first() {
                Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
                Some(Value::SimpleString(s)) => Ok(s.clone()),
                _ => Ok(String::new()),
            },
            _ => Ok(String::new()),
        }
    }

    /// Finds the master and connects to it.
    async fn resolve(&self) -> TierResult<(String, MultiplexedConnection)> {
        match &self.target {
            Target::Direct(url) => {
                let said = |e: RedisError| {
                    unavailable(format!(
                        "{}: {}",
                        without_credentials(url),
                        connect_error(&e, false)
                    ))
                };
                let mut conn = self.open(self.access.client(url)).await.map_err(said)?;
                // A real command before the connection counts: a server that wants a password
                // (NOAUTH) or refuses this one says so here, not on every later call.
                redis::cmd("PING")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(said)?;
                Ok((url.clone(), conn))
            }
            Target::Sentinel {
                sentinels,
                master_name,
            } => {
                let (views, mut why) = self.sentinel_views(sentinels, master_name).await;
                for (master, _, s) in views {
                    let mut conn = match self.open(self.access.server(&master)).await {
                        Ok(c) => c,
                        Err(e) => {
                            why.push(format!(
                                "master {master} (from {s}): {}",
                                connect_error(&e, false)
                            ));
                            continue;
                        }
                    };
                    match Self::role(&mut conn).await {
                        Ok(role) if role == "master" => return Ok((master, conn)),
                        Ok(role) => {
                            why.push(format!("{master} (from {s}) is a {role}, not the master"))
                        }
                        Err(e) => why.push(format!(
                            "ROLE on {master} (from {s}): {}",
                            connect_error(&e, false)
                        )),
                    }
                }
                Err(unavailable(format!(
                    "no master for {master_name:?}: {}",
                    why.join("; ")
                )))
            }
        }
    }

    /// The live connection, resolving the master first if there is none (benchmarks compare
    /// against raw commands on this very connection).
    pub async fn connection(&self) -> TierResult<MultiplexedConnection> {
        if let Some((_, c)) = self.current.read().await.as_ref() {
            return Ok(c.clone());
        }
        let _one = self.resolving.lock().await;
        if let Some((_, c)) = self.current.read().await.as_ref() {
            return Ok(c.clone());
        }
        let (addr, conn) = self.resolve().await?;
        self.resolutions.fetch_add(1, Relaxed);
        {
            let mut last = self.last_master.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref().is_some_and(|l| *l != addr) {
                self.switches.fetch_add(1, Relaxed);
            }
            *last = Some(addr.clone());
        }
        info!(master = %addr, "redis master resolved");
        *self.current.write().await = Some((addr, conn.clone()));
        Ok(conn)
    }

    /// Forgets the connection so the next command re-resolves the master.
    pub async fn forget(&self) {
        *self.current.write().await = None;
    }

    async fn run<T>(
        &self,
        cmd: impl AsyncFnOnce(MultiplexedConnection) -> Result<T, RedisError>,
    ) -> TierResult<T> {
        let conn = self.connection().await?;
        match cmd(conn).await {
            Ok(v) => {
                self.timeouts_in_a_row.store(0, Relaxed);
                Ok(v)
            }
            Err(e) => {
                // One late reply is a busy server (or a busy client), not a lost master: the
                // multiplexed connection stays usable. Forgetting it would send every command
                // to the Sentinels meanwhile, and a node cut off from them (a split) would lose
                // its master for the whole cut.
                let timed_out = e.is_timeout();
                let err = map_err(e);
                if !matches!(err, TierError::Unavailable { .. }) {
                    return Err(err);
                }
                let late = if timed_out {
                    self.timeouts_in_a_row.fetch_add(1, Relaxed) + 1
                } else {
                    TIMEOUTS_TO_RESOLVE
                };
                if late >= TIMEOUTS_TO_RESOLVE {
                    warn!(error = %err, "redis command failed: re-resolving the master");
                    self.timeouts_in_a_row.store(0, Relaxed);
                    self.forget().await;
                }
                Err(err)
            }
        }
    }

    async fn versioned(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
        kind: &str,
        release: Option<Release<'_>>,
    ) -> TierResult<bool> {
        let script = &self.versioned_set;
        self.run(async move |mut c| {
            let mut call = script.key(key);
            call.arg(value).arg(version).arg(ttl_ms.max(1)).arg(kind);
            if let Some(r) = release {
                call.key(r.lease_key).arg(r.token).arg(r.linger_ms);
            }
            let stored: i64 = call.invoke_async(&mut c).await?;
            Ok(stored == 1)
        })
        .await
    }
}

impl RedisLike for Redis {
    async fn get(&self, key: &str) -> TierResult<Option<Vec<u8>>> {
        self.run(async move |mut c| redis::cmd("GET").arg(key).query_async(&mut c).await)
            .await
    }

    async fn get_in_generation(
        &self,
        gen_key: &str,
        key: &str,
    ) -> TierResult<crate::tier::EntryPair> {
        let script = &self.get_in_generation;
        self.run(async move |mut c| script.key(gen_key).key(key).invoke_async(&mut c).await)
            .await
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: u64, cond: SetCond) -> TierResult<bool> {
        self.run(async move |mut c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("PX").arg(ttl_ms.max(1));
            match cond {
                SetCond::Always => {}
                SetCond::Nx => drop(cmd.arg("NX")),
                SetCond::Xx => drop(cmd.arg("XX")),
            }
            let reply: Option<String> = cmd.query_async(&mut c).await?;
            Ok(reply.is_some())
        })
        .await
    }

    async fn del(&self, keys: &[String]) -> TierResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.run(async move |mut c| redis::cmd("DEL").arg(keys).query_async(&mut c).await)
            .await
    }

    async fn scan(&self, cursor: u64, pattern: &str, count: u32) -> TierResult<(u64, Vec<String>)> {
        self.run(async move |mut c| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn fill_if_newer(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        self.versioned(key, value, version, ttl_ms, "v", None).await
    }

    async fn tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        self.versioned(key, tombstone, version, ttl_ms, "t", None)
            .await
    }

    async fn get_or_lease(
        &self,
        key: &str,
        ask: LeaseAsk<'_>,
    ) -> TierResult<(Option<Vec<u8>>, Leased)> {
        let script = &self.get_or_lease;
        self.run(async move |mut c| {
            let (v, leased): (Option<Vec<u8>>, i64) = script
                .key(key)
                .key(ask.lease_key)
                .arg(ask.token)
                .arg(ask.lease_ms.max(1))
                .arg(ask.now_ms)
                .arg(ask.stale_ms)
                .invoke_async(&mut c)
                .await?;
            let leased = match leased {
                1 => Leased::Won,
                3 => Leased::Ours,
                0 => Leased::Lost,
                _ => Leased::Unasked,
            };
            Ok((v, leased))
        })
        .await
    }

    async fn fill_if_newer_releasing(
        &self,
        key: &str,
        value: &[u8],
        version: u64,
        ttl_ms: u64,
        lease: Release<'_>,
    ) -> TierResult<bool> {
        self.versioned(key, value, version, ttl_ms, "v", Some(lease))
            .await
    }

    async fn release(&self, key: &str, token: &str) -> TierResult<bool> {
        let script = &self.release;
        self.run(async move |mut c| {
            let n: i64 = script.key(key).arg(token).invoke_async(&mut c).await?;
            Ok(n == 1)
        })
        .await
    }

    fn master_switches(&self) -> u64 {
        self.switches.load(Relaxed)
    }

    fn master_addr(&self) -> Option<String> {
        match &self.target {
            // host:port, as a Sentinel names a master.
            Target::Direct(url) => {
                let url = without_credentials(url);
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                rest.split('/').next().map(str::to_string)
            }
            Target::Sentinel { .. } => self
                .last_master
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
