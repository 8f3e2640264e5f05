//! The real backends (std build only): Redis with Sentinel, memcached, PostgreSQL.

pub mod capture;
pub mod memcached;
pub mod postgres;
pub mod redis;

pub use self::capture::{Capture, CaptureError};
pub use self::memcached::Memcached;
pub use self::postgres::{Postgres, PING_IF_IDLE_FOR};
pub use self::redis::Redis;

/// `url` without its credentials (`scheme://user:pass@host` -> `scheme://host`): what errors
/// name.
pub(crate) fn without_credentials(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}

use std::sync::Arc;

use crate::config::ConfigError;
use crate::settings::Settings;
use crate::tier::TierError;
use crate::{Builtin, CacheAside, Pool, Ring, Strategy};

/// The cache [`connect`] builds: Redis (through the Sentinels, or direct), the memcached pool,
/// PostgreSQL, and a strategy chosen by name.
pub type Cache = CacheWith<Builtin>;

/// The cache [`connect_with`] builds: the same servers, with a strategy of your own.
pub type CacheWith<St> = CacheAside<Arc<Redis>, Memcached, Postgres, St>;

/// Why [`connect`] could not build the cache: a setting, or a server (named, with the cause).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Server(#[from] TierError),
}

/// Builds the whole cache from `settings` ([`Settings::load`] reads them from a TOML file and the
/// `ASIDE_*` variables), as `instance`, and starts what it needs:
///
/// * Redis through the Sentinels when `redis.sentinels` lists any (the master of
///   `redis.master_name`, followed across failovers), else `redis.url` directly;
/// * one memcached client per `memcached.nodes` entry, on a libketama-compatible ring;
/// * PostgreSQL at `postgres.url` (and `postgres.replica_url`), with the schema migrated
///   (`aside_rows` and `aside_outbox` are created if missing);
/// * the strategy `cache.strategy` names. With `durable`, its outbox invalidator is spawned on
///   the current runtime and runs as long as the process does, and this returns once its first
///   pass has run ([`CacheAside::ready`](crate::CacheAside::ready): until then every read
///   would go to the database), or after `cache.db_timeout_ms` if it has not.
///
/// Every server is reached once before this returns, so a wrong address fails here, naming the
/// server and the cause.
pub async fn connect(settings: &Settings, instance: &str) -> Result<Arc<Cache>, ConnectError> {
    let strategy = Builtin::from_config(&settings.cache)?;
    connect_with(settings, instance, strategy).await
}

/// [`connect`] with a strategy of your own (any [`Strategy`]; `cache.strategy` is not read).
pub async fn connect_with<St: Strategy>(
    settings: &Settings,
    instance: &str,
    strategy: St,
) -> Result<Arc<CacheWith<St>>, ConnectError> {
    let cache = Arc::new(build_with(settings, instance, strategy).await?);
    for n in &cache.l2().nodes {
        n.ping().await?;
    }
    if let Some(task) = cache.invalidator() {
        tokio::spawn(task);
        if !cache.ready_within_db_timeout().await {
            tracing::warn!(
                waited_ms = cache.config().db_timeout_ms,
                "the outbox invalidator has not finished a pass: reads go to the database until it has"
            );
        }
    }
    Ok(cache)
}

/// [`connect`] without its start-up work: the cache, its Redis master resolved and its schema
/// migrated, with no memcached node asked yet and no invalidator spawned (spawn
/// `Arc::new(cache).invalidator()` yourself with `durable`).
pub async fn build(settings: &Settings, instance: &str) -> Result<Cache, ConnectError> {
    let strategy = Builtin::from_config(&settings.cache)?;
    build_with(settings, instance, strategy).await
}

/// [`build`] with a strategy of your own.
pub async fn build_with<St: Strategy>(
    settings: &Settings,
    instance: &str,
    strategy: St,
) -> Result<CacheWith<St>, ConnectError> {
    let cfg = settings.cache.clone().validate()?;
    let r = &settings.redis;
    let access = self::redis::Access::from_settings(r)?;
    // Shard 0 is `master_name` (or `url`); `redis.shards` adds a pair each.
    let pairs = std::iter::once((r.master_name.as_str(), r.url.as_str())).chain(
        r.shards
            .iter()
            .map(|s| (s.master_name.as_str(), s.url.as_str())),
    );
    let mut servers = Vec::new();
    for (master_name, url) in pairs {
        servers.push(if r.sentinels.is_empty() {
            Redis::direct_with(url, cfg.l1_timeout(), access.clone()).await?
        } else {
            // Below the cache's L1 deadline, so a master that stops answering is noticed (and
            // re-resolved) by the client rather than only dropped by the cache.
            let timeout = cfg.l1_timeout().mul_f64(0.8);
            Redis::sentinel_with(&r.sentinels, master_name, timeout, access.clone()).await?
        });
    }
    let redis = crate::Shards::new(servers, r.shard_map()?)
        .map_err(|e| ConfigError::setting("redis.shards", e.to_string()))?;
    let m = &settings.memcached;
    let ring =
        Ring::new(&m.nodes).map_err(|e| ConfigError::setting("memcached.nodes", e.to_string()))?;
    let nodes = m
        .nodes
        .iter()
        .map(|a| Memcached::new(a.clone(), m.pool_max))
        .collect();
    let p = &settings.postgres;
    let pg = Postgres::connect_pool(
        &p.url,
        p.replica_url.as_deref(),
        p.pool_max,
        std::time::Duration::from_millis(p.pool_wait_ms),
    )
    .await?;
    pg.migrate().await?;
    let mut pool = Pool::new(ring, nodes, &cfg);
    for a in &m.spares {
        pool = pool.with_spare(a.clone(), Memcached::new(a.clone(), m.pool_max), &cfg);
    }
    Ok(CacheAside::sharded(
        redis, pool, pg, strategy, cfg, instance,
    ))
}
