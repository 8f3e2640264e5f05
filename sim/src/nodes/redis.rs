//! A Redis node over the pure model: commands, asynchronous replication to its replica, and the
//! admin verbs Sentinel uses (ping with role, promote, follow a new master and resync).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::Endpoint;
use madsim::time::sleep;

use crate::models::redis::{self as rd, RedisModel};
use crate::net::{serve, Rpc, MESSAGES, TAG_REDIS, TAG_REPL};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica(SocketAddr),
}

struct RedisNode {
    model: Mutex<RedisModel>,
    role: Mutex<Role>,
}

/// What a Redis node answers besides commands.
#[derive(Clone)]
pub enum Admin {
    Cmd(rd::Cmd),
    Ping,
    /// REPLICAOF NO ONE.
    Promote,
    /// REPLICAOF host port: become a replica and resync (discarding own writes).
    Follow(SocketAddr),
    /// A full copy for a resyncing replica.
    Snapshot,
    /// CONFIG SET maxmemory (0: no limit; the policy is always allkeys-lru).
    MaxMemory(usize),
    /// INFO memory and stats: keys evicted so far and bytes in use.
    Memory,
    /// TIME: the node's wall clock, ms since the epoch.
    Time,
}

#[derive(Clone)]
pub enum AdminReply {
    Reply(rd::Reply),
    Pong(Role),
    Snapshot(Box<RedisModel>),
    Done,
    Memory { evicted: u64, used_bytes: usize },
    Time { ms: u64 },
}

pub async fn redis_node(addr: SocketAddr, role: Role, replica: Option<SocketAddr>) {
    let node = Arc::new(RedisNode {
        model: Mutex::new(RedisModel::default()),
        role: Mutex::new(role),
    });
    // A restart boots in its first role again, whatever the Sentinels made it since.
    crate::net::role_taken(addr, role == Role::Master);
    let ep = Endpoint::bind(addr).await.expect("bind redis");
    let rpc = Rpc::bind(addr.ip()).await;
    if let Role::Replica(master) = role {
        resync(&node, &rpc, master).await;
    }
    // Replication: a master ships its writes to the replica every few ms; a replica applies them.
    {
        let (node, ep) = (node.clone(), ep.clone());
        madsim::task::spawn(async move {
            loop {
                sleep(Duration::from_millis(5)).await;
                let target = match *node.role.lock().unwrap() {
                    Role::Master => replica,
                    Role::Replica(_) => None,
                };
                let batch = {
                    let mut m = node.model.lock().unwrap();
                    m.replicating = target.is_some();
                    m.take_repl()
                };
                if let (Some(t), false) = (target, batch.is_empty()) {
                    MESSAGES.fetch_add(1, Relaxed);
                    let _ = ep.send_to_raw(t, TAG_REPL, Box::new(batch)).await;
                }
            }
        });
    }
    {
        let (node, ep) = (node.clone(), ep.clone());
        madsim::task::spawn(async move {
            loop {
                let Ok((payload, from)) = ep.recv_from_raw(TAG_REPL).await else {
                    continue;
                };
                let Ok(batch) = payload.downcast::<Vec<rd::Repl>>() else {
                    continue;
                };
                if *node.role.lock().unwrap() == Role::Replica(from) {
                    let mut m = node.model.lock().unwrap();
                    for r in *batch {
                        m.apply(r);
                    }
                    // An eviction while applying the stream is this replica's.
                    crate::net::collect_goals(addr);
                }
            }
        });
    }
    let handler_node = node.clone();
    serve(ep, TAG_REDIS, move |a: Admin| {
        let (node, rpc) = (handler_node.clone(), rpc.clone());
        async move {
            match a {
                Admin::Cmd(c) => {
                    let writes = !matches!(
                        c,
                        rd::Cmd::Get(_)
                            | rd::Cmd::GetInGeneration { .. }
                            | rd::Cmd::Scan { .. }
                            | rd::Cmd::DbSize
                    );
                    if writes && matches!(*node.role.lock().unwrap(), Role::Replica(_)) {
                        return AdminReply::Reply(rd::Reply::Err(rd::READONLY.into()));
                    }
                    // Keys, leases and tombstones expire by the node's wall clock, as Redis's do
                    // (a `clock` fault moves it).
                    let now_ms = crate::net::server_clock_ms(addr);
                    AdminReply::Reply(node.model.lock().unwrap().exec(now_ms, c))
                }
                Admin::Ping => AdminReply::Pong(*node.role.lock().unwrap()),
                Admin::Promote => {
                    let was = std::mem::replace(&mut *node.role.lock().unwrap(), Role::Master);
                    if was != Role::Master {
                        crate::net::role_taken(addr, true);
                    }
                    AdminReply::Done
                }
                Admin::Follow(master) => {
                    let was =
                        std::mem::replace(&mut *node.role.lock().unwrap(), Role::Replica(master));
                    if was == Role::Master {
                        crate::net::role_taken(addr, false);
                    }
                    resync(&node, &rpc, master).await;
                    AdminReply::Done
                }
                Admin::Snapshot => {
                    AdminReply::Snapshot(Box::new(node.model.lock().unwrap().clone()))
                }
                Admin::MaxMemory(bytes) => {
                    node.model.lock().unwrap().maxmemory_bytes = bytes;
                    AdminReply::Done
                }
                Admin::Time => AdminReply::Time {
                    ms: crate::net::server_clock_ms(addr),
                },
                Admin::Memory => {
                    let m = node.model.lock().unwrap();
                    AdminReply::Memory {
                        evicted: m.evictions,
                        used_bytes: m.used_bytes(),
                    }
                }
            }
        }
    })
    .await;
}

async fn resync(node: &RedisNode, rpc: &Rpc, master: SocketAddr) {
    for _ in 0..50 {
        if let Ok(AdminReply::Snapshot(m)) = rpc
            .call::<Admin, AdminReply>(
                master,
                TAG_REDIS,
                Admin::Snapshot,
                Duration::from_millis(200),
            )
            .await
        {
            node.model.lock().unwrap().resync_from(&m);
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
}
