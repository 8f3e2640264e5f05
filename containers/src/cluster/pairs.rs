//! The Redis pairs after the first (L1 shards), and the Sentinels' configuration that watches
//! every pair under a name of its own.

use futures_util::future::try_join_all;
use testcontainers::core::WaitFor;

use super::launch::{cert_script, redis_cmd};
use super::{ClusterSpec, Launch, Node, MASTER_NAME, REDIS_PASSWORD, REDIS_TLS_CA, REDIS_USER};
use crate::Error;

/// The Sentinel name of Redis pair `shard` (0: [`MASTER_NAME`]).
pub fn master_name(shard: usize) -> String {
    match shard {
        0 => MASTER_NAME.to_string(),
        s => format!("{MASTER_NAME}-{}", s + 1),
    }
}

/// A Redis pair after the first.
pub struct RedisPair {
    pub master: Node,
    pub replica: Option<Node>,
}

/// The CA (certificate, key) the first master made, in a `redis_secure` cluster.
type Ca<'a> = Option<(&'a str, &'a str)>;

/// The second pair on (`redis-master-2`, ...), each master then its replica (which follows its
/// master's address), under the same CA as the first.
pub(super) async fn launch_more(
    l: Launch<'_>,
    spec: &ClusterSpec,
    ca: Ca<'_>,
) -> Result<Vec<RedisPair>, Error> {
    let (min_replicas, with_replica) = (spec.redis_min_replicas, spec.redis_replica);
    try_join_all((1..spec.redis_shards).map(|shard| async move {
        let n = shard + 1;
        let master = l
            .node(
                &format!("redis-master-{n}"),
                6379,
                redis_cmd(&[], min_replicas, ca.map(Some)),
                WaitFor::message_on_stdout("Ready to accept connections"),
                None,
            )
            .await?;
        let replica = if with_replica {
            let ip = master.ip.to_string();
            Some(
                l.node(
                    &format!("redis-replica-{n}"),
                    6379,
                    redis_cmd(&["--replicaof", &ip, "6379"], min_replicas, ca.map(Some)),
                    WaitFor::message_on_stdout("MASTER <-> REPLICA sync: Finished with success"),
                    None,
                )
                .await?,
            )
        } else {
            None
        };
        Ok::<_, Error>(RedisPair { master, replica })
    }))
    .await
}

/// A Sentinel's command: its configuration written, then `redis-sentinel` on it, with a
/// `sentinel monitor` block per pair (`masters[i]` is pair i's master address).
pub(super) fn sentinel_conf(masters: &[String], spec: &ClusterSpec, ca: Ca<'_>) -> String {
    let secure_lines = if ca.is_some() {
        format!("port 0\\ntls-port 26379\\ntls-cert-file /tmp/tls/server.crt\\ntls-key-file /tmp/tls/server.key\\ntls-ca-cert-file {REDIS_TLS_CA}\\ntls-auth-clients no\\ntls-replication yes\\nuser default off\\nuser {REDIS_USER} on >{REDIS_PASSWORD} ~* &* +@all\\nsentinel sentinel-user {REDIS_USER}\\nsentinel sentinel-pass {REDIS_PASSWORD}\\n")
    } else {
        "port 26379\\n".to_string()
    };
    let monitors: String = masters
        .iter()
        .enumerate()
        .map(|(shard, ip)| {
            let name = master_name(shard);
            let auth = if ca.is_some() {
                format!("sentinel auth-user {name} {REDIS_USER}\\nsentinel auth-pass {name} {REDIS_PASSWORD}\\n")
            } else {
                String::new()
            };
            format!(
                "sentinel monitor {name} {ip} 6379 {q}\\n{auth}sentinel down-after-milliseconds {name} {d}\\nsentinel failover-timeout {name} 10000\\nsentinel parallel-syncs {name} 1\\n",
                q = spec.sentinels.div_ceil(2).max(1),
                d = spec.down_after_ms
            )
        })
        .collect();
    let certs = match ca {
        Some(ca) => format!("{} && ", cert_script("/tmp/tls", "sentinel", Some(ca))),
        None => String::new(),
    };
    format!(
        "{certs}printf '{secure_lines}protected-mode no\\n{monitors}' > /tmp/sentinel.conf && exec redis-sentinel /tmp/sentinel.conf"
    )
}
