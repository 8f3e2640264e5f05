//! The simulated cluster: every server a madsim node with its own address, booted from the
//! scenario, every node's handle kept by its role so the nemesis can kill, restart or cut it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaos::fault::Target;
use chaos::scenario::Scenario;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::{sleep, Instant};

use crate::models::postgres::PgModel;
use crate::net::ip;
use crate::nodes::memcached::memcached_node;
use crate::nodes::postgres::{pg_node, PgSpec};
use crate::nodes::redis::{redis_node, Role};
use crate::nodes::sentinel::sentinel_node;

/// Addresses of the servers.
pub struct Addrs {
    /// Per Redis shard, its master and replica at boot.
    pub redis: Vec<[SocketAddr; 2]>,
    pub sentinels: Vec<SocketAddr>,
    /// The ring's nodes, then the spares booted outside it.
    pub memcached: Vec<SocketAddr>,
    pub pg: [SocketAddr; 2],
}

impl Addrs {
    fn new(redis_shards: u8, memcached_spares: u8) -> Addrs {
        Addrs {
            redis: (0..redis_shards)
                .map(|s| {
                    [
                        SocketAddr::new(ip(1, 1 + 2 * s), 6379),
                        SocketAddr::new(ip(1, 2 + 2 * s), 6379),
                    ]
                })
                .collect(),
            sentinels: (0..chaos::scenario::SENTINELS)
                .map(|i| SocketAddr::new(ip(1, 11 + i), 26379))
                .collect(),
            memcached: (0..chaos::scenario::MEMCACHED_NODES + memcached_spares)
                .map(|i| SocketAddr::new(ip(2, 1 + i), 11211))
                .collect(),
            pg: [
                SocketAddr::new(ip(3, 1), 5432),
                SocketAddr::new(ip(3, 2), 5432),
            ],
        }
    }
}

/// A node by role (a server, or an app node: its port is then 0).
pub struct Node {
    pub target: Target,
    pub addr: SocketAddr,
    pub handle: NodeHandle,
}

pub struct Cluster {
    pub addrs: Arc<Addrs>,
    /// The runtime's boot instant: the servers' clocks (TTLs, replica lag) count from here.
    pub start: Instant,
    pub servers: Vec<Node>,
}

/// Sentinels that must agree the master is down.
const QUORUM: usize = 2;

impl Cluster {
    /// Boots every server (`keys` seeds the database with version 0 of each) and waits until they
    /// listen.
    pub async fn boot(sc: &Scenario, keys: &[String], seed: u64) -> Cluster {
        let handle = Handle::current();
        let start = Instant::now();
        let a = Arc::new(Addrs::new(sc.redis_shards, sc.memcached_spares()));
        let mut servers = Vec::new();
        let mut node = |target: Target, addr: SocketAddr, n: NodeHandle| {
            servers.push(Node {
                target,
                addr,
                handle: n,
            })
        };
        let builder = |target: Target, addr: SocketAddr| {
            handle.create_node().name(target.name()).ip(addr.ip())
        };
        for (shard, &[m, r]) in a.redis.iter().enumerate() {
            let (tm, tr) = (
                Target::RedisMaster(shard as u8),
                Target::RedisReplica(shard as u8),
            );
            node(
                tm,
                m,
                builder(tm, m)
                    .init(move || redis_node(m, Role::Master, Some(r)))
                    .build(),
            );
            node(
                tr,
                r,
                builder(tr, r)
                    .init(move || redis_node(r, Role::Replica(m), Some(m)))
                    .build(),
            );
        }
        let monitors: Vec<(SocketAddr, Option<SocketAddr>)> =
            a.redis.iter().map(|&[m, r]| (m, Some(r))).collect();
        for (i, &s) in a.sentinels.iter().enumerate() {
            let peers: Vec<SocketAddr> = a.sentinels.iter().copied().filter(|&p| p != s).collect();
            let t = Target::Sentinel(i as u8);
            let monitors = monitors.clone();
            node(
                t,
                s,
                builder(t, s)
                    .init(move || sentinel_node(s, peers.clone(), monitors.clone(), QUORUM))
                    .build(),
            );
        }
        for (i, &addr) in a.memcached.iter().enumerate() {
            let t = Target::Memcached(i as u8);
            node(
                t,
                addr,
                builder(t, addr)
                    .init(move || memcached_node(addr, start))
                    .build(),
            );
        }
        let (p0, p1) = (a.pg[0], a.pg[1]);
        let spec = |addr, primary, lag_ms, seed| PgSpec {
            addr,
            disk: Arc::new(Mutex::new(PgModel::seeded(keys.iter().map(String::as_str)))),
            primary,
            lag_ms,
            query_us: sc.db_query_us,
            listing_tx: sc.listing_transactions,
            seed,
            start,
        };
        for (target, addr, primary, lag_ms, seed) in [
            (
                Target::PgPrimary,
                p0,
                None,
                0,
                chaos::seed::pg_primary(seed),
            ),
            (
                Target::PgReplica,
                p1,
                Some(p0),
                sc.pg_replica_lag_ms,
                chaos::seed::pg_replica(seed),
            ),
        ] {
            let s = spec(addr, primary, lag_ms, seed);
            node(
                target,
                addr,
                builder(target, addr)
                    .init(move || pg_node(s.clone()))
                    .build(),
            );
        }
        // Servers bind before clients connect.
        sleep(Duration::from_millis(50)).await;
        Cluster {
            addrs: a,
            start,
            servers,
        }
    }

    /// The server node playing `target` at boot.
    pub fn server(&self, target: Target) -> Option<&Node> {
        self.servers.iter().find(|n| n.target == target)
    }
}
