//! The real backends (std build only): Redis with Sentinel, memcached, PostgreSQL.

pub mod memcached;
pub mod postgres;
pub mod redis;

pub use self::memcached::Memcached;
pub use self::postgres::Postgres;
pub use self::redis::Redis;
