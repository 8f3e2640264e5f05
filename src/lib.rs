//! `aside`: cache-aside caching over Redis (L1), Memcached (L2) and PostgreSQL.
//!
//! Reads go L1 → L2 → database and fill both tiers on the way back; writes go to the database,
//! then invalidate. What differs between strategies is only how fills and invalidations touch
//! the tiers ([`strategy`]); everything else — breakers, single-flight, leases,
//! stale-while-revalidate, load shedding, metrics — is shared ([`cache`]).
//!
//! The same code runs in two worlds: against real servers (the std build, backends in
//! [`backend`]) and inside the madsim simulator (`--cfg madsim`, with the simulator's backends
//! behind the same [`tier`] traits). `tokio` here is madsim-tokio, which is real tokio in the std
//! build.
//!
//! The `testing` feature adds [`model`] (the Redis and memcached state machines the simulator
//! runs) and `tier::mem` (in-process tiers over them, for tests of your own code): test
//! machinery, not part of the cache.

pub mod breaker;
pub mod cache;
pub mod config;
pub mod envelope;
pub mod events;
pub mod flight;
pub mod goal;
pub mod hot;
pub mod key;
pub mod membership;
pub mod metrics;
#[cfg(any(test, feature = "testing"))]
pub mod model;
pub mod mutant;
pub mod rate;
pub mod ring;
pub mod settings;
pub mod shards;
pub mod strategy;
pub mod tier;
pub mod wall;

#[cfg(not(madsim))]
pub mod backend;

pub use cache::{CacheAside, Error, Got, Invalidated, Pool, Source, Typed, Written};
pub use config::{CacheConfig, ConfigError};
pub use key::Key;
pub use membership::{Membership, MembershipError};
pub use ring::Ring;
pub use settings::Settings;
pub use shards::{ShardMap, Shards};
pub use strategy::{Builtin, Strategy};
pub use tier::{MemcachedLike, ReadFrom, RedisLike, Row, SetCond, Store, TierError};
