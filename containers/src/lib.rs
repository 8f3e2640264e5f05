//! The containers world: real Redis (master, replica, three Sentinels), three memcached nodes and
//! a PostgreSQL primary with a streaming replica, launched with testcontainers from the offline
//! image on their own Docker network, one cluster per test, removed when it is dropped (also when
//! the test panics).
//!
//! Servers are reached at their container IPs on the cluster network (routable from the host on
//! Linux), so no port is published and Sentinel's answers (container IPs) work as they are.

pub mod app;
pub mod clocks;
pub mod cluster;
pub mod docker;
pub mod image;
pub mod nemesis;
pub mod proxy;
pub mod rings;
pub mod roles;
pub mod run;

pub use cluster::{
    all_containers, containers_of, sweep_orphans, Addrs, Cluster, ClusterSpec, Library,
    MinReplicas, Node,
};

/// Why the containers world could not be set up. One line each, naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Docker(String),
    #[error("{0}")]
    Image(String),
    #[error("{node} did not start: {detail}")]
    Start { node: String, detail: String },
    #[error("{0}")]
    Tier(#[from] aside::TierError),
    #[error("{0}")]
    Config(#[from] aside::ConfigError),
}
