//! Random draws the kinds' own draws share ([`super::kill::draw`], ...): a server, a group of
//! nodes, and which part of the cluster a side belongs to.

use proptest::prelude::*;

use super::{Side, Target};

/// Any server, by role.
pub fn server() -> impl Strategy<Value = Target> {
    prop_oneof![
        Just(Target::RedisMaster(0)),
        Just(Target::RedisReplica(0)),
        (0u8..3).prop_map(Target::Sentinel),
        (0u8..3).prop_map(Target::Memcached),
        Just(Target::PgPrimary),
        Just(Target::PgReplica),
    ]
}

/// A group of nodes by kind.
pub fn group() -> impl Strategy<Value = Side> {
    prop_oneof![
        Just(Side::Apps),
        Just(Side::Redis),
        Just(Side::Sentinels),
        Just(Side::Memcached),
        Just(Side::Postgres),
    ]
}

/// The part of the cluster a side belongs to (a memcached node is a part of its own).
pub fn part(side: Side) -> String {
    match side {
        Side::One(Target::RedisMaster(_) | Target::RedisReplica(_)) | Side::Redis => "redis".into(),
        Side::One(Target::Sentinel(_)) | Side::Sentinels => "sentinels".into(),
        Side::One(Target::PgPrimary | Target::PgReplica) | Side::Postgres => "postgres".into(),
        Side::One(Target::App(_)) | Side::Apps => "apps".into(),
        Side::One(Target::Memcached(i)) => format!("memcached-{i}"),
        Side::Memcached => "memcached".into(),
        Side::Network => "network".into(),
    }
}
