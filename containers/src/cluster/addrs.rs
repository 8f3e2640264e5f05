//! Where a cluster's servers are, and an `aside` instance over them.

use aside::{Builtin, CacheConfig, Strategy};

use super::MASTER_NAME;
use crate::Error;

/// An `aside` instance over a launched cluster.
pub type Library = aside::backend::Cache;

/// An `aside` instance over a launched cluster, with a strategy of your own.
pub type LibraryWith<St> = aside::backend::CacheWith<St>;

/// Where a cluster's servers are, as the host and the app nodes' containers reach them (also
/// handed to an app node's container as JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Addrs {
    pub redis_master: String,
    /// The masters at boot of the second Redis pair on (`redis.shards`; each holds
    /// [`chaos::workload::SECOND_PAIR_CLASSES`]).
    #[serde(default)]
    pub redis_more: Vec<String>,
    pub sentinels: Vec<String>,
    pub memcached: Vec<String>,
    /// Memcached nodes outside the ring (`memcached.spares`).
    #[serde(default)]
    pub memcached_spares: Vec<String>,
    pub pg: String,
    pub pg_replica: Option<String>,
}

impl Addrs {
    /// `redis.shards` for the second pair on.
    fn shards(&self) -> Vec<aside::settings::RedisShard> {
        self.redis_more
            .iter()
            .enumerate()
            .map(|(i, addr)| aside::settings::RedisShard {
                master_name: super::master_name(i + 1),
                url: format!("redis://{addr}"),
                classes: chaos::workload::SECOND_PAIR_CLASSES
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            })
            .collect()
    }

    /// An `aside.toml` that points at these servers (Redis through its Sentinels), for
    /// `Settings::load` and `aside::backend::connect`.
    pub fn toml(&self, strategy: &str) -> String {
        let list = |v: &[String]| {
            v.iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut t = String::from("[redis]\n");
        if self.sentinels.is_empty() {
            t.push_str(&format!("url = \"redis://{}\"\n", self.redis_master));
        } else {
            t.push_str(&format!(
                "sentinels = [{}]\nmaster_name = {MASTER_NAME:?}\n",
                list(&self.sentinels)
            ));
        }
        for s in self.shards() {
            t.push_str(&format!(
                "[[redis.shards]]\nmaster_name = {:?}\nurl = {:?}\nclasses = [{}]\n",
                s.master_name,
                s.url,
                list(&s.classes)
            ));
        }
        t.push_str(&format!(
            "[memcached]\nnodes = [{}]\n",
            list(&self.memcached)
        ));
        if !self.memcached_spares.is_empty() {
            t.push_str(&format!("spares = [{}]\n", list(&self.memcached_spares)));
        }
        t.push_str(&format!("[postgres]\nurl = {:?}\n", self.pg));
        if let Some(r) = &self.pg_replica {
            t.push_str(&format!("replica_url = {r:?}\n"));
        }
        t.push_str(&format!("[cache]\nstrategy = {strategy:?}\n"));
        t
    }

    /// An `aside` instance over these servers: Redis through the Sentinels (directly when there
    /// are none), the memcached nodes on a Ketama ring, PostgreSQL (and its replica).
    pub async fn library(
        &self,
        strategy: Builtin,
        cfg: CacheConfig,
        instance: &str,
    ) -> Result<Library, Error> {
        self.library_with(strategy, cfg, instance).await
    }

    /// [`Addrs::library`] with a strategy of your own (`aside::backend::build_with`).
    pub async fn library_with<St: Strategy>(
        &self,
        strategy: St,
        cfg: CacheConfig,
        instance: &str,
    ) -> Result<LibraryWith<St>, Error> {
        let pg = aside::settings::PostgresSettings::default();
        self.library_pooled(strategy, cfg, instance, pg.pool_max, pg.pool_wait_ms)
            .await
    }

    /// [`Addrs::library_with`] whose PostgreSQL pools hold `pg_pool_max` connections each
    /// (`postgres.pool_max`), waited for at most `pg_pool_wait_ms` (`postgres.pool_wait_ms`).
    pub async fn library_pooled<St: Strategy>(
        &self,
        strategy: St,
        mut cfg: CacheConfig,
        instance: &str,
        pg_pool_max: u32,
        pg_pool_wait_ms: u64,
    ) -> Result<LibraryWith<St>, Error> {
        cfg.strategy = strategy.name().to_string();
        let settings = aside::Settings {
            redis: aside::settings::RedisSettings {
                sentinels: self.sentinels.clone(),
                master_name: MASTER_NAME.to_string(),
                url: format!("redis://{}", self.redis_master),
                shards: self.shards(),
                ..Default::default()
            },
            memcached: aside::settings::MemcachedSettings {
                nodes: self.memcached.clone(),
                spares: self.memcached_spares.clone(),
                pool_max: 16,
            },
            postgres: aside::settings::PostgresSettings {
                url: self.pg.clone(),
                replica_url: self.pg_replica.clone(),
                pool_max: pg_pool_max,
                pool_wait_ms: pg_pool_wait_ms,
            },
            cache: cfg,
        };
        aside::backend::build_with(&settings, instance, strategy)
            .await
            .map_err(|e| match e {
                aside::backend::ConnectError::Config(e) => Error::Config(e),
                aside::backend::ConnectError::Server(e) => Error::Tier(e),
            })
    }
}
