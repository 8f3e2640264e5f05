//! Redis L1 over redis-rs, with Sentinel master discovery done here (redis-rs resolves the
//! master only when asked and does not follow `+switch-master`).
//!
//! The master is found by asking each Sentinel `SENTINEL get-master-addr-by-name` and verified
//! with `ROLE` (a Sentinel may still name a demoted master). The connection is dropped and the
//! master re-resolved on connection errors, on `READONLY` (we are talking to a replica: a
//! failover happened), after [`TIMEOUTS_TO_RESOLVE`] late replies in a row (one is a busy
//! server) and whenever a Sentinel publishes `+switch-master`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Script, ServerErrorKind, Value};
use tokio::sync::{Mutex, RwLock};
use tracing::{info, warn};

use super::without_credentials;
use crate::config::ConfigError;
use crate::settings::{RedisSettings, Secret};
use crate::tier::{RedisLike, SetCond, TierError, TierResult};

const TIER: &str = "redis";

/// Store an envelope unless the key holds a newer version (`crate::envelope::blocks`).
/// KEYS[1] key; ARGV value, version, ttl_ms, kind ('v' or 't', for the logs).
const VERSIONED_SET: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local kind, ver = string.match(cur, '^AS1|(%a)|(%d+)|')
  if kind then
    ver = tonumber(ver)
    local v = tonumber(ARGV[2])
    if ver > v then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
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

/// How the Redis servers are reached and logged in to: ACL credentials for the masters and for
/// the Sentinels, and TLS (the `tls` feature).
#[derive(Clone, Default)]
pub struct Access {
    /// `AUTH username password` on the masters (and a direct URL); a password alone logs in
    /// as `default`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The same on the Sentinels.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    /// The Sentinels and the masters they name are reached over TLS (`rediss://`; a direct URL
    /// says so itself).
    pub tls: bool,
    /// PEM roots the servers' certificates are verified against, instead of the system's.
    pub tls_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &self.sentinel_password)
            .field("tls", &self.tls)
            .field(
                "tls_ca",
                &self.tls_ca.as_ref().map(|c| format!("{} bytes", c.len())),
            )
            .finish()
    }
}

impl Access {
    /// The access `settings` describe; the CA file is read here (a problem names it).
    pub fn from_settings(settings: &RedisSettings) -> Result<Access, ConfigError> {
        let wants_tls =
            settings.tls || settings.sentinels.is_empty() && settings.url.starts_with("rediss://");
        if wants_tls && !cfg!(feature = "tls") {
            return Err(ConfigError::setting(
                "redis.tls",
                "is asked for (redis.tls or a rediss:// url) but aside was built without its `tls` feature: enable it",
            ));
        }
        let tls_ca = match &settings.tls_ca {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                ConfigError::setting(
                    "redis.tls_ca",
                    format!("{}: cannot read it: {e}", path.display()),
                )
            })?),
        };
        Ok(Access {
            username: settings.username.clone(),
            password: settings.password.clone(),
            sentinel_username: settings.sentinel_username.clone(),
            sentinel_password: settings.sentinel_password.clone(),
            tls: settings.tls,
            tls_ca,
        })
    }

    /// A client for the server at `url`, logged in as a master's client.
    pub fn client(&self, url: &str) -> Result<Client, RedisError> {
        self.build(url, self.username.as_deref(), self.password.as_ref())
    }

    /// A client for the master (or replica) at `host:port`.
    pub fn server(&self, addr: &str) -> Result<Client, RedisError> {
        self.client(&self.url(addr))
    }

    /// A client for the Sentinel at `host:port`.
    pub fn sentinel(&self, addr: &str) -> Result<Client, RedisError> {
        self.build(
            &self.url(addr),
            self.sentinel_username.as_deref(),
            self.sentinel_password.as_ref(),
        )
    }

    fn url(&self, addr: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{addr}")
    }

    fn build(
        &self,
        url: &str,
        username: Option<&str>,
        password: Option<&Secret>,
    ) -> Result<Client, RedisError> {
        use redis::IntoConnectionInfo;
        let mut info = url.into_connection_info()?;
        let mut login = info.redis_settings().clone();
        if let Some(u) = username {
            login = login.set_username(u);
        }
        if let Some(p) = password {
            login = login.set_password(p.expose());
        }
        info = info.set_redis_settings(login);
        #[cfg(feature = "tls")]
        if let (Some(ca), redis::ConnectionAddr::TcpTls { .. }) = (&self.tls_ca, info.addr()) {
            return Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            );
        }
        Client::open(info)
    }
}

/// The Redis L1: a direct server or a Sentinel-managed master.
pub struct Redis {
    target: Target,
    access: Access,
    current: RwLock<Option<(String, MultiplexedConnection)>>,
    resolving: Mutex<()>,
    timeout: Duration,
    versioned_set: Script,
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

/// A connect error in words, with the setting to check when the cause is a login or a
/// certificate.
fn connect_error(e: &RedisError, sentinel: bool) -> String {
    let text = e.to_string();
    let hint = if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        if sentinel {
            " (check redis.sentinel_username and redis.sentinel_password)"
        } else {
            " (check redis.username and redis.password)"
        }
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (check redis.tls_ca: it must hold the root that signed the server's certificate)"
    } else if text.contains("NotValidForName") {
        " (the server's certificate does not name the address it was reached at)"
    } else {
        ""
    };
    format!("{text}{hint}")
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

    /// `SENTINEL master <name>` on the Sentinel at `s`: the master's address and the
    /// configuration epoch it was elected in, or what went wrong in words.
    async fn ask_sentinel(&self, s: &str, master_name: &str) -> Result<(String, u64), String> {
        let mut sc = self
            .open(self.access.sentinel(s))
            .await
            .map_err(|e| connect_error(&e, true))?;
        let fields: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(master_name)
            .query_async(&mut sc)
            .await
            .map_err(|e| {
                if e.to_string().contains("No such master") {
                    format!(
                        "unknown master {master_name:?}: this Sentinel monitors no master by that name (check the name in its `sentinel monitor` line)"
                    )
                } else {
                    e.to_string()
                }
            })?;
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1).cloned())
                .ok_or_else(|| format!("SENTINEL MASTER {master_name:?} has no {name} field"))
        };
        let epoch = field("config-epoch")?.parse().unwrap_or(0);
        Ok((format!("{}:{}", field("ip")?, field("port")?), epoch))
    }

    /// What every reachable Sentinel names as the master, the newest configuration epoch first
    /// (then the Sentinels' order), one entry per address: after a failover the Sentinels that
    /// have not heard of it yet still name the old master, which says `master` to ROLE until it
    /// is demoted. The leader's newer epoch wins. Also what went wrong with the others.
    async fn sentinel_views(
        &self,
        sentinels: &[String],
        master_name: &str,
    ) -> (Vec<(String, u64, String)>, Vec<String>) {
        let mut answers = Vec::new();
        let mut why = Vec::new();
        for s in sentinels {
            match self.ask_sentinel(s, master_name).await {
                Ok((addr, epoch)) => answers.push((addr, epoch, s.clone())),
                Err(e) => why.push(format!("sentinel {s}: {e}")),
            }
        }
        (newest_first(answers), why)
    }

    /// Whether the Sentinels now name (by the newest epoch) a master other than ours.
    async fn master_moved(&self) -> bool {
        let Target::Sentinel {
            sentinels,
            master_name,
        } = &self.target
        else {
            return false;
        };
        let Some(current) = self.master().await else {
            return false;
        };
        let (views, _) = self.sentinel_views(sentinels, master_name).await;
        views.first().is_some_and(|(best, _, _)| *best != current)
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
    ) -> TierResult<bool> {
        let script = &self.versioned_set;
        self.run(async move |mut c| {
            let stored: i64 = script
                .key(key)
                .arg(value)
                .arg(version)
                .arg(ttl_ms.max(1))
                .arg(kind)
                .invoke_async(&mut c)
                .await?;
            Ok(stored == 1)
        })
        .await
    }
}

/// (master, epoch, the Sentinel that said so), one per master, the newest epoch first, then in
/// the Sentinels' order.
fn newest_first(answers: Vec<(String, u64, String)>) -> Vec<(String, u64, String)> {
    let mut views: Vec<(String, u64, String)> = Vec::new();
    for (addr, epoch, s) in answers {
        match views.iter_mut().find(|v| v.0 == addr) {
            Some(v) if epoch > v.1 => *v = (addr, epoch, s),
            Some(_) => {}
            None => views.push((addr, epoch, s)),
        }
    }
    views.sort_by_key(|v| std::cmp::Reverse(v.1));
    views
}

/// Replies this many times late in a row, and the master is re-resolved (a connection error or
/// `READONLY` re-resolves at once).
pub const TIMEOUTS_TO_RESOLVE: u32 = 3;

/// How often the watcher asks a Sentinel who the master is, besides listening.
const POLL: Duration = Duration::from_secs(2);

/// Listens for `+switch-master` on the Sentinels and drops the connection when one arrives.
async fn watch_switches(redis: Weak<Redis>, sentinels: Vec<String>, access: Access) {
    let mut i = 0usize;
    loop {
        let s = &sentinels[i % sentinels.len()];
        i += 1;
        let sub = async {
            let mut ps = access.sentinel(s)?.get_async_pubsub().await?;
            ps.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(ps)
        }
        .await;
        match sub {
            Ok(mut ps) => {
                let mut stream = ps.on_message();
                loop {
                    // Pub/sub for speed, a poll as the backstop: a Sentinel cut off silently
                    // never publishes, and its connection may never fail.
                    let msg = tokio::select! {
                        m = stream.next() => m.map(Some),
                        () = tokio::time::sleep(POLL) => Some(None),
                    };
                    let Some(msg) = msg else { break };
                    let Some(r) = redis.upgrade() else { return };
                    let moved = match msg {
                        Some(m) => {
                            let payload: String = m.get_payload().unwrap_or_default();
                            info!(sentinel = %s, event = %payload, "+switch-master: re-resolving");
                            true
                        }
                        None => {
                            let moved = r.master_moved().await;
                            if moved {
                                info!("a sentinel names another master: re-resolving");
                            }
                            moved
                        }
                    };
                    if moved {
                        // Now, not at the next command: an instance with nothing to send (a
                        // quiet `durable` invalidator) must still see the switch and replay
                        // the outbox window on the new master.
                        r.forget().await;
                        if let Err(e) = r.connection().await {
                            warn!(error = %e, "re-resolving after a switch failed; the next command retries");
                        }
                    }
                }
            }
            Err(e) => {
                warn!(sentinel = %s, error = %e, "cannot subscribe to +switch-master; trying the next sentinel")
            }
        }
        if redis.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl RedisLike for Redis {
    async fn get(&self, key: &str) -> TierResult<Option<Vec<u8>>> {
        self.run(async move |mut c| redis::cmd("GET").arg(key).query_async(&mut c).await)
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
        self.versioned(key, value, version, ttl_ms, "v").await
    }

    async fn tombstone(
        &self,
        key: &str,
        tombstone: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> TierResult<bool> {
        self.versioned(key, tombstone, version, ttl_ms, "t").await
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
}

#[cfg(test)]
mod tests {
    /// A Sentinel that has not heard of a failover yet still names the old master, which
    /// answers ROLE `master` until it is demoted: the leader's newer epoch goes first.
    #[test]
    fn the_newest_epoch_names_the_master() {
        let a = |addr: &str, epoch, s: &str| (addr.to_string(), epoch, s.to_string());
        let views = super::newest_first(vec![
            a("old:6379", 0, "s1"),
            a("new:6379", 1, "s2"),
            a("old:6379", 0, "s3"),
            a("new:6379", 1, "s3"),
        ]);
        assert_eq!(views, vec![a("new:6379", 1, "s2"), a("old:6379", 0, "s1")]);
        let same = super::newest_first(vec![a("m:1", 3, "s1"), a("m:2", 3, "s2")]);
        assert_eq!(same[0].0, "m:1", "ties keep the Sentinels' order");
    }

    #[test]
    fn access_problems_name_the_setting() {
        use crate::settings::RedisSettings;
        let missing = RedisSettings {
            tls: true,
            tls_ca: Some("/nonexistent/ca.pem".into()),
            ..RedisSettings::default()
        };
        let e = super::Access::from_settings(&missing)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config: redis.tls_ca /nonexistent/ca.pem: cannot read it"),
            "{e}"
        );
        let plain = super::Access::from_settings(&RedisSettings::default()).unwrap();
        assert_eq!(
            plain
                .server("h:1")
                .unwrap()
                .get_connection_info()
                .addr()
                .to_string(),
            "h:1"
        );
        #[cfg(feature = "tls")]
        {
            let tls = RedisSettings {
                tls: true,
                password: Some(crate::settings::Secret::new("pw")),
                ..RedisSettings::default()
            };
            let a = super::Access::from_settings(&tls).unwrap();
            let c = a.server("h:1").unwrap();
            let info = c.get_connection_info();
            assert!(matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }));
            assert_eq!(info.redis_settings().password(), Some("pw"));
            assert_eq!(
                a.sentinel("h:2")
                    .unwrap()
                    .get_connection_info()
                    .redis_settings()
                    .password(),
                None,
                "the masters' password is not the Sentinels'"
            );
            assert!(!format!("{a:?}").contains("pw\""), "{a:?}");
        }
    }

    #[test]
    fn errors_name_a_server_without_its_credentials() {
        use super::without_credentials as w;
        assert_eq!(w("redis://u:secret@10.0.0.1:6379"), "redis://10.0.0.1:6379");
        assert_eq!(w("redis://:p@a@h:1/0"), "redis://h:1/0");
        assert_eq!(w("redis://h:6379"), "redis://h:6379");
    }
}
