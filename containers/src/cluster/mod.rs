//! One cluster per test: every container labelled `aside.run=<run id>` (the network's name), so
//! a test can count what is left behind.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use aside::backend::redis::Access;
use aside::backend::Memcached;
use aside::{Builtin, CacheConfig, Strategy};
use futures_util::future::try_join_all;
use testcontainers::core::WaitFor;
use testcontainers::{ContainerAsync, GenericImage};

use crate::{image, Error};

mod addrs;
mod launch;
mod pairs;
mod sweep;

pub use addrs::{Addrs, Library, LibraryWith};
use launch::{cert_script, redis_cmd, run_id, s};
pub(crate) use launch::{Launch, CLOCK_FILE};
pub use pairs::{master_name, RedisPair};
pub use sweep::{all_containers, containers_of, sweep_orphans};
/// What to launch. The default is the full cluster of docs/containers.md.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub redis_replica: bool,
    /// Redis master/replica pairs (L1 shards), all watched by the same Sentinels, each under
    /// its own name ([`master_name`]); the second on are `redis-master-N`, `redis-replica-N`.
    pub redis_shards: usize,
    pub sentinels: usize,
    pub memcached: usize,
    /// Memcached nodes launched after those, outside the ring (`memcached.spares`): a ring
    /// change can bring them in.
    pub memcached_spares: usize,
    pub pg_replica: bool,
    /// `recovery_min_apply_delay` of the PostgreSQL replica (replica lag), in ms.
    pub pg_apply_delay_ms: u64,
    /// Sentinel `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// Redis `min-replicas-to-write` and `min-replicas-max-lag` (seconds), on the master and
    /// the replica (which may be promoted): a master that has heard from too few replicas
    /// within the lag refuses writes (`NOREPLICAS`) instead of acknowledging writes a failover
    /// will discard.
    pub redis_min_replicas: Option<MinReplicas>,
    /// PostgreSQL accepts TLS as well as plain connections, with a certificate for its own IP
    /// address, signed by a CA made as it starts ([`PG_TLS_CA`]).
    pub pg_tls: bool,
    /// Redis and the Sentinels speak TLS only, with certificates for their own addresses signed
    /// by a CA the master makes as it starts ([`REDIS_TLS_CA`]), and log clients in as the ACL
    /// user [`REDIS_USER`] (the `default` user is off): replication, the Sentinels' own links
    /// and the cluster's checks go the same way ([`Cluster::redis_access`]).
    pub redis_secure: bool,
}

/// Where a `redis_secure` cluster's servers keep the CA that signed their certificates.
pub const REDIS_TLS_CA: &str = "/tmp/tls/ca.crt";
/// The ACL user of a `redis_secure` cluster's servers and Sentinels, and its password.
pub const REDIS_USER: &str = "aside";
pub const REDIS_PASSWORD: &str = "aside-test-password";

/// The CA that signed a `pg_tls` primary's certificate (which names the container's address, so
/// `verify-full` holds): read it with `docker exec ... cat` to verify the server against it.
pub const PG_TLS_CA: &str = "/var/lib/postgresql/data/ca.crt";

/// Redis's guard against writes to an isolated master (see [`ClusterSpec::redis_min_replicas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinReplicas {
    pub to_write: u32,
    pub max_lag_s: u32,
}

impl MinReplicas {
    fn args(self) -> [String; 4] {
        [
            "--min-replicas-to-write".into(),
            self.to_write.to_string(),
            "--min-replicas-max-lag".into(),
            self.max_lag_s.to_string(),
        ]
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            redis_replica: true,
            redis_shards: 1,
            sentinels: chaos::scenario::SENTINELS as usize,
            memcached: chaos::scenario::MEMCACHED_NODES as usize,
            memcached_spares: 0,
            pg_replica: true,
            pg_apply_delay_ms: 0,
            down_after_ms: 1000,
            redis_min_replicas: None,
            pg_tls: false,
            redis_secure: false,
        }
    }
}

impl ClusterSpec {
    /// One server of each kind: a Redis master with no replica and no Sentinels, one memcached
    /// node, a PostgreSQL primary with no replica (the tests that need no failover).
    pub fn one_of_each() -> Self {
        ClusterSpec {
            redis_replica: false,
            sentinels: 0,
            memcached: 1,
            pg_replica: false,
            ..ClusterSpec::default()
        }
    }
}

/// One server in a container.
pub struct Node {
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
    pub container: ContainerAsync<GenericImage>,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// `docker stop` (the process exits; restart with [`Node::start`]).
    pub async fn stop(&self) -> Result<(), Error> {
        self.container
            .stop()
            .await
            .map_err(|e| Error::Docker(format!("stopping {}: {e}", self.name)))
    }

    pub async fn start(&self) -> Result<(), Error> {
        self.container
            .start()
            .await
            .map_err(|e| Error::Docker(format!("starting {}: {e}", self.name)))
    }

    /// `docker pause`: the process freezes, connections hang (a GC pause, a partition).
    pub async fn pause(&self) -> Result<(), Error> {
        self.container
            .pause()
            .await
            .map_err(|e| Error::Docker(format!("pausing {}: {e}", self.name)))
    }

    pub async fn unpause(&self) -> Result<(), Error> {
        self.container
            .unpause()
            .await
            .map_err(|e| Error::Docker(format!("unpausing {}: {e}", self.name)))
    }
}

/// A launched cluster. Dropping it removes every container and the network.
pub struct Cluster {
    pub run_id: String,
    /// The image tag every container runs.
    pub tag: String,
    pub redis_master: Node,
    pub redis_replica: Option<Node>,
    /// The second Redis pair on (`ClusterSpec::redis_shards`).
    pub redis_more: Vec<RedisPair>,
    pub sentinels: Vec<Node>,
    /// The ring's nodes, then the spares.
    pub memcached: Vec<Node>,
    /// How many of [`Cluster::memcached`] make the ring.
    pub memcached_ring: usize,
    pub pg_primary: Node,
    pub pg_replica: Option<Node>,
    /// The replica's `recovery_min_apply_delay` at boot (the nemesis restores it).
    pub pg_apply_delay_ms: u64,
    /// How Redis and the Sentinels are reached: plain, or TLS and ACL (`redis_secure`).
    pub redis_access: Access,
}

pub const MASTER_NAME: &str = "mymaster";

/// The memory memcached boots with (`-m`), the model's too (`LIMIT_BYTES_BOOT` of
/// `aside::model::memcached`, held equal by a test).
pub const MEMCACHED_MIB: u32 = 64;

impl Cluster {
    /// Launches `spec`: about 10 s for the full cluster once the image exists.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, Error> {
        let tag = image::ensure()?;
        sweep_orphans();
        let run = run_id();
        let l = Launch {
            tag: &tag,
            run: &run,
        };
        // After initdb, in PGDATA: server.crt and server.key are PostgreSQL's default names.
        let (make_cert, tls) = if spec.pg_tls {
            (
                format!(" && {}", cert_script("\"$PGDATA\"", "pg-primary", None)),
                " -c ssl=on",
            )
        } else {
            (String::new(), "")
        };
        // A restarted container (the `kill` fault) keeps its data directory: initdb only the
        // first time, then PostgreSQL recovers from its WAL.
        let pg_primary_cmd = s(&["sh", "-c", &format!("{{ [ -s \"$PGDATA/PG_VERSION\" ] || {{ initdb -N -D \"$PGDATA\" -U postgres --auth=trust --no-locale -E UTF8 >/dev/null && printf 'host all all all trust\\nhost replication all all trust\\n' >> \"$PGDATA/pg_hba.conf\"{make_cert}; }}; }} && exec postgres -D \"$PGDATA\" -c listen_addresses=0.0.0.0 -c fsync=off{tls}")]);
        let (redis_master, pg_primary, memcached) = tokio::try_join!(
            l.node(
                "redis-master",
                6379,
                redis_cmd(
                    &[],
                    spec.redis_min_replicas,
                    spec.redis_secure.then_some(None)
                ),
                WaitFor::message_on_stdout("Ready to accept connections"),
                None
            ),
            l.node(
                "pg-primary",
                5432,
                pg_primary_cmd,
                WaitFor::message_on_stderr("database system is ready to accept connections"),
                Some("postgres")
            ),
            try_join_all((0..spec.memcached + spec.memcached_spares).map(|i| {
                let name = format!("memcached-{}", i + 1);
                let mib = MEMCACHED_MIB.to_string();
                async move {
                    l.node(
                        &name,
                        11211,
                        s(&["memcached", "-u", "nobody", "-p", "11211", "-m", &mib]),
                        WaitFor::Nothing,
                        None,
                    )
                    .await
                }
            })),
        )?;
        for m in &memcached {
            wait_memcached(m).await?;
        }
        let master_ip = redis_master.ip.to_string();
        // The master's CA signs the other Redis servers' certificates.
        let ca = if spec.redis_secure {
            let cat = |path: &str| redis_master.sh(&format!("cat {path}"));
            Some((cat(REDIS_TLS_CA)?, cat("/tmp/tls/ca.key")?))
        } else {
            None
        };
        let ca = ca.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
        let redis_access = match ca {
            Some((crt, _)) => Access {
                username: Some(REDIS_USER.into()),
                password: Some(aside::settings::Secret::new(REDIS_PASSWORD)),
                sentinel_username: Some(REDIS_USER.into()),
                sentinel_password: Some(aside::settings::Secret::new(REDIS_PASSWORD)),
                tls: true,
                tls_ca: Some(crt.as_bytes().to_vec()),
            },
            None => Access::default(),
        };
        let replica = async {
            if !spec.redis_replica {
                return Ok(None);
            }
            l.node(
                "redis-replica",
                6379,
                redis_cmd(
                    &["--replicaof", &master_ip, "6379"],
                    spec.redis_min_replicas,
                    ca.map(Some),
                ),
                WaitFor::message_on_stdout("MASTER <-> REPLICA sync: Finished with success"),
                None,
            )
            .await
            .map(Some)
        };
        let redis_more = pairs::launch_more(l, &spec, ca).await?;
        let masters: Vec<String> = std::iter::once(master_ip.clone())
            .chain(redis_more.iter().map(|p| p.master.ip.to_string()))
            .collect();
        let sentinel_conf = pairs::sentinel_conf(&masters, &spec, ca);
        let sentinels = try_join_all((0..spec.sentinels).map(|i| {
            let (name, cmd) = (
                format!("sentinel-{}", i + 1),
                s(&["sh", "-c", &sentinel_conf]),
            );
            async move {
                l.node(
                    &name,
                    26379,
                    cmd,
                    WaitFor::message_on_stdout("+monitor master"),
                    None,
                )
                .await
            }
        }));
        let primary_ip = pg_primary.ip.to_string();
        let pg_replica = async {
            if !spec.pg_replica {
                return Ok(None);
            }
            let cmd = format!(
                "{{ [ -s \"$PGDATA/PG_VERSION\" ] || {{ until pg_isready -q -h {primary_ip} -U postgres; do sleep 0.2; done; pg_basebackup -h {primary_ip} -U postgres -D \"$PGDATA\" -R -X stream -c fast && echo \"recovery_min_apply_delay = '{}ms'\" >> \"$PGDATA/postgresql.auto.conf\"; }}; }} && exec postgres -D \"$PGDATA\" -c listen_addresses=0.0.0.0 -c fsync=off",
                spec.pg_apply_delay_ms
            );
            l.node(
                "pg-replica",
                5432,
                s(&["sh", "-c", &cmd]),
                WaitFor::message_on_stderr(
                    "database system is ready to accept read-only connections",
                ),
                Some("postgres"),
            )
            .await
            .map(Some)
        };
        let (redis_replica, sentinels, pg_replica) =
            tokio::try_join!(replica, sentinels, pg_replica)?;
        let c = Cluster {
            tag: tag.clone(),
            run_id: run,
            redis_master,
            redis_replica,
            redis_more,
            sentinels,
            memcached,
            memcached_ring: spec.memcached,
            pg_primary,
            pg_replica,
            pg_apply_delay_ms: spec.pg_apply_delay_ms,
            redis_access,
        };
        if !c.sentinels.is_empty() {
            c.wait_sentinels_agree().await?;
        }
        Ok(c)
    }

    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::addr).collect()
    }

    /// The ring's nodes.
    pub fn memcached_addrs(&self) -> Vec<String> {
        self.memcached[..self.memcached_ring]
            .iter()
            .map(Node::addr)
            .collect()
    }

    /// The spares, outside the ring.
    pub fn memcached_spare_addrs(&self) -> Vec<String> {
        self.memcached[self.memcached_ring..]
            .iter()
            .map(Node::addr)
            .collect()
    }

    pub fn pg_url(&self) -> String {
        format!("postgres://postgres@{}/postgres", self.pg_primary.addr())
    }

    pub fn pg_replica_url(&self) -> Option<String> {
        self.pg_replica
            .as_ref()
            .map(|r| format!("postgres://postgres@{}/postgres", r.addr()))
    }

    /// Waits until every Sentinel knows the other Sentinels and the replica, so that a failover
    /// can reach quorum and has someone to promote.
    pub async fn wait_sentinels_agree(&self) -> Result<(), Error> {
        for shard in 0..1 + self.redis_more.len() {
            self.wait_sentinels_agree_on(&master_name(shard)).await?;
        }
        Ok(())
    }

    async fn wait_sentinels_agree_on(&self, name: &str) -> Result<(), Error> {
        let want_sentinels = self.sentinels.len() - 1;
        let want_replicas = usize::from(self.redis_replica.is_some());
        for _ in 0..150 {
            let mut ok = true;
            for s in &self.sentinels {
                let known = async {
                    let mut c = self
                        .redis_access
                        .sentinel(&s.addr())?
                        .get_multiplexed_async_connection()
                        .await?;
                    let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                        .arg("sentinels")
                        .arg(name)
                        .query_async(&mut c)
                        .await?;
                    let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                        .arg("replicas")
                        .arg(name)
                        .query_async(&mut c)
                        .await?;
                    Ok::<_, redis::RedisError>((others.len(), replicas.len()))
                }
                .await;
                ok &= known.is_ok_and(|(o, r)| o >= want_sentinels && r >= want_replicas);
            }
            if ok {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::Start {
            node: "sentinels".into(),
            detail: format!("did not discover each other and the replica of {name} within 30 s"),
        })
    }

    /// The Redis servers, each with its shard (its master/replica pair, from 0) and the role it
    /// was launched in.
    pub fn redis_nodes(&self) -> Vec<(&Node, u64, invariants::history::Role)> {
        use invariants::history::Role;
        let mut all = vec![(&self.redis_master, 0, Role::Master)];
        all.extend(self.redis_replica.iter().map(|r| (r, 0, Role::Replica)));
        for (i, p) in self.redis_more.iter().enumerate() {
            let shard = i as u64 + 1;
            all.push((&p.master, shard, Role::Master));
            all.extend(p.replica.iter().map(|r| (r, shard, Role::Replica)));
        }
        all
    }

    /// Every server container.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut all = vec![&self.redis_master];
        all.extend(self.redis_replica.as_ref());
        for p in &self.redis_more {
            all.push(&p.master);
            all.extend(p.replica.as_ref());
        }
        all.extend(self.sentinels.iter());
        all.extend(self.memcached.iter());
        all.push(&self.pg_primary);
        all.extend(self.pg_replica.as_ref());
        all
    }

    /// The host's address on the cluster network (its gateway): where the app nodes of the
    /// runner's process appear to come from, and where the latency proxies listen.
    pub fn gateway(&self) -> Result<IpAddr, Error> {
        let o = Command::new("docker")
            .args([
                "network",
                "inspect",
                &self.run_id,
                "-f",
                "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            ])
            .output()
            .map_err(|e| Error::Docker(format!("cannot run docker: {e}")))?;
        let gw = String::from_utf8_lossy(&o.stdout).trim().to_string();
        gw.parse().map_err(|e| {
            Error::Docker(format!(
                "the cluster network's gateway {gw:?}: {e} ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        })
    }

    /// Where this cluster's servers are.
    pub fn addrs(&self) -> Addrs {
        Addrs {
            redis_master: self.redis_master.addr(),
            redis_more: self.redis_more.iter().map(|p| p.master.addr()).collect(),
            sentinels: self.sentinel_addrs(),
            memcached: self.memcached_addrs(),
            memcached_spares: self.memcached_spare_addrs(),
            pg: self.pg_url(),
            pg_replica: self.pg_replica_url(),
        }
    }

    /// An `aside` instance over this cluster: Redis through the Sentinels, the memcached nodes on
    /// a Ketama ring, PostgreSQL (replica too, when there is one).
    pub async fn library(
        &self,
        strategy: Builtin,
        cfg: CacheConfig,
        instance: &str,
    ) -> Result<Library, Error> {
        self.addrs().library(strategy, cfg, instance).await
    }

    /// [`Cluster::library`] with a strategy of your own.
    pub async fn library_with<St: Strategy>(
        &self,
        strategy: St,
        cfg: CacheConfig,
        instance: &str,
    ) -> Result<LibraryWith<St>, Error> {
        self.addrs().library_with(strategy, cfg, instance).await
    }
}

impl Node {
    /// What `sh -c script` prints in this node's container.
    pub fn sh(&self, script: &str) -> Result<String, Error> {
        let o = Command::new("docker")
            .args(["exec", self.container.id(), "sh", "-c", script])
            .output()
            .map_err(|e| Error::Docker(format!("cannot run docker: {e}")))?;
        if !o.status.success() {
            return Err(Error::Docker(format!(
                "in {}: {script}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// A self-signed root certificate (PEM) that signed nothing of the cluster's, made in this
    /// node's container: a client that trusts only it must refuse the servers.
    pub fn unrelated_root(&self) -> Result<String, Error> {
        self.sh("cd /tmp && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=not-the-ca -keyout unrelated.key -out unrelated.crt 2>/dev/null && cat unrelated.crt")
    }
}

async fn wait_memcached(n: &Node) -> Result<(), Error> {
    let client = Memcached::new(n.addr(), 1);
    for _ in 0..100 {
        if client.ping().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Start {
        node: n.name.clone(),
        detail: "memcached did not answer `mn` within 10 s".into(),
    })
}
