//! One cluster per test: every container labelled `aside.run=<run id>` (the network's name), so
//! a test can count what is left behind.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aside::backend::redis::Access;
use aside::backend::Memcached;
use aside::{Builtin, CacheConfig};
use futures_util::future::try_join_all;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tracing::info;

use crate::{image, Error};

/// What to launch. The default is the full cluster of DESIGN.md.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub redis_replica: bool,
    pub sentinels: usize,
    pub memcached: usize,
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
            sentinels: 3,
            memcached: 3,
            pg_replica: true,
            pg_apply_delay_ms: 0,
            down_after_ms: 1000,
            redis_min_replicas: None,
            pg_tls: false,
            redis_secure: false,
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
    pub sentinels: Vec<Node>,
    pub memcached: Vec<Node>,
    pub pg_primary: Node,
    pub pg_replica: Option<Node>,
    /// The replica's `recovery_min_apply_delay` at boot (the nemesis restores it).
    pub pg_apply_delay_ms: u64,
    /// How Redis and the Sentinels are reached: plain, or TLS and ACL (`redis_secure`).
    pub redis_access: Access,
}

pub const MASTER_NAME: &str = "mymaster";

/// Containers (running or not) labelled with `run_id`.
pub fn containers_of(run_id: &str) -> usize {
    count_labelled(&format!("label=aside.run={run_id}"))
}

/// Containers (running or not) of any run of this project.
pub fn all_containers() -> usize {
    count_labelled("label=aside.run")
}

/// Containers (running or not) that `docker ps --filter FILTER` lists; 0 when Docker does not
/// answer.
fn count_labelled(filter: &str) -> usize {
    Command::new("docker")
        .args(["ps", "-aq", "--filter", filter])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Removes the containers and networks of clusters whose process is gone: a runner killed with
/// SIGKILL (or the machine's OOM killer) never drops its cluster, so every new cluster sweeps
/// what such runs left. A process id reused since is left alone (its owner looks alive).
/// Returns how many containers were removed.
pub fn sweep_orphans() -> usize {
    let listed = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=aside.pid",
            "--format",
            "{{.ID}} {{.Label \"aside.pid\"}} {{.Label \"aside.run\"}}",
        ])
        .output();
    let Ok(listed) = listed else {
        return 0;
    };
    let mut removed = 0;
    let mut networks = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let mut f = line.split_whitespace();
        let (Some(id), Some(pid), Some(run)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let rm = Command::new("docker").args(["rm", "-f", id]).output();
        if rm.is_ok_and(|o| o.status.success()) {
            removed += 1;
            networks.insert(run.to_string());
        }
    }
    for n in networks {
        let _ = Command::new("docker").args(["network", "rm", &n]).output();
    }
    if removed > 0 {
        info!(
            removed,
            "swept the containers of runs whose process is gone"
        );
    }
    removed
}

fn run_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "aside-{}-{}-{nanos:08x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Clone, Copy)]
pub(crate) struct Launch<'a> {
    pub tag: &'a str,
    pub run: &'a str,
}

impl Launch<'_> {
    async fn node(
        &self,
        name: &str,
        port: u16,
        cmd: Vec<String>,
        wait: WaitFor,
        user: Option<&str>,
    ) -> Result<Node, Error> {
        self.node_with(name, port, cmd, wait, user, Vec::new())
            .await
    }

    /// [`Launch::node`] with host paths mounted (an app node's binary and run directory).
    pub(crate) async fn node_with(
        &self,
        name: &str,
        port: u16,
        cmd: Vec<String>,
        wait: WaitFor,
        user: Option<&str>,
        mounts: Vec<testcontainers::core::Mount>,
    ) -> Result<Node, Error> {
        let mut image = GenericImage::new(image::REPOSITORY, self.tag).with_wait_for(wait);
        if port != 0 {
            image = image.with_exposed_port(port.tcp());
        }
        let mut req = image
            .with_cmd(cmd)
            .with_network(self.run)
            .with_container_name(format!("{}-{name}", self.run))
            .with_label("aside.run", self.run)
            // The owning process: a cluster whose process is gone is an orphan to sweep.
            .with_label("aside.pid", std::process::id().to_string())
            // For the nemesis's iptables rules, inside the container's own namespace only.
            .with_cap_add("NET_ADMIN")
            .with_startup_timeout(Duration::from_secs(90));
        if let Some(u) = user {
            req = req.with_user(u);
        }
        for m in mounts {
            req = req.with_mount(m);
        }
        let container = req.start().await.map_err(|e| Error::Start {
            node: name.to_string(),
            detail: e.to_string(),
        })?;
        let ip = container
            .get_bridge_ip_address()
            .await
            .map_err(|e| Error::Start {
                node: name.to_string(),
                detail: format!("no IP on the cluster network: {e}"),
            })?;
        info!(node = name, %ip, "container up");
        Ok(Node {
            name: name.to_string(),
            ip,
            port,
            container,
        })
    }
}

fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Shell: in `dir`, `server.key` and `server.crt` for this container's IP address, signed by
/// `ca.key` and `ca.crt` there, which `ca` writes (PEM texts) or, when `None`, makes.
fn cert_script(dir: &str, cn: &str, ca: Option<(&str, &str)>) -> String {
    let cnf = format!("cd {dir} && printf '[req]\\ndistinguished_name=dn\\n[dn]\\n[leaf]\\nbasicConstraints=critical,CA:FALSE\\nsubjectAltName=IP:%s\\n[ca]\\nbasicConstraints=critical,CA:TRUE\\nkeyUsage=keyCertSign\\n' \"$(hostname -i | cut -d' ' -f1)\" > tls.cnf");
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2";
    let make_ca = match ca {
        None => format!("openssl req -x509 -config tls.cnf -extensions ca {key} -subj /CN=aside-test-ca -keyout ca.key -out ca.crt 2>/dev/null"),
        Some((crt, k)) => {
            let lines = |pem: &str| pem.lines().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(" ");
            format!("printf '%s\\n' {} > ca.crt && printf '%s\\n' {} > ca.key", lines(crt), lines(k))
        }
    };
    format!("mkdir -p {dir} && {cnf} && {make_ca} && openssl req -x509 -config tls.cnf -extensions leaf -CA ca.crt -CAkey ca.key {key} -subj /CN={cn} -keyout server.key -out server.crt 2>/dev/null")
}

/// A word for `sh -c`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The `redis-server` command; over TLS with ACL when `tls` holds the CA (`None` for the
/// master, which makes it).
fn redis_cmd(
    extra: &[&str],
    guard: Option<MinReplicas>,
    secure: Option<Option<(&str, &str)>>,
) -> Vec<String> {
    let mut c = redis_args(extra, guard);
    let Some(ca) = secure else {
        return c;
    };
    let at = c.iter().position(|a| a == "--port").expect("the port") + 1;
    c[at] = "0".into();
    let pass = format!(">{REDIS_PASSWORD}");
    c.extend(s(&[
        "--tls-port",
        "6379",
        "--tls-cert-file",
        "/tmp/tls/server.crt",
        "--tls-key-file",
        "/tmp/tls/server.key",
        "--tls-ca-cert-file",
        REDIS_TLS_CA,
        "--tls-auth-clients",
        "no",
        "--tls-replication",
        "yes",
        "--user",
        "default",
        "off",
        "--user",
        REDIS_USER,
        "on",
        &pass,
        "~*",
        "&*",
        "+@all",
        "--masteruser",
        REDIS_USER,
        "--masterauth",
        REDIS_PASSWORD,
    ]));
    let words: Vec<String> = c.iter().map(|w| quote(w)).collect();
    s(&[
        "sh",
        "-c",
        &format!(
            "{} && exec {}",
            cert_script("/tmp/tls", "redis", ca),
            words.join(" ")
        ),
    ])
}

fn redis_args(extra: &[&str], guard: Option<MinReplicas>) -> Vec<String> {
    let mut c = s(&[
        "redis-server",
        "--port",
        "6379",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync-delay",
        "0",
    ]);
    c.extend(extra.iter().map(|p| p.to_string()));
    c.extend(guard.into_iter().flat_map(MinReplicas::args));
    c
}

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
        let pg_primary_cmd = s(&["sh", "-c", &format!("initdb -N -D \"$PGDATA\" -U postgres --auth=trust --no-locale -E UTF8 >/dev/null && printf 'host all all all trust\\nhost replication all all trust\\n' >> \"$PGDATA/pg_hba.conf\"{make_cert} && exec postgres -D \"$PGDATA\" -c listen_addresses=0.0.0.0 -c fsync=off{tls}")]);
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
            try_join_all((0..spec.memcached).map(|i| {
                let name = format!("memcached-{}", i + 1);
                async move {
                    l.node(
                        &name,
                        11211,
                        s(&["memcached", "-u", "nobody", "-p", "11211", "-m", "64"]),
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
                password: Some(aside::config::Secret::new(REDIS_PASSWORD)),
                sentinel_username: Some(REDIS_USER.into()),
                sentinel_password: Some(aside::config::Secret::new(REDIS_PASSWORD)),
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
        let secure_lines = if ca.is_some() {
            format!("port 0\\ntls-port 26379\\ntls-cert-file /tmp/tls/server.crt\\ntls-key-file /tmp/tls/server.key\\ntls-ca-cert-file {REDIS_TLS_CA}\\ntls-auth-clients no\\ntls-replication yes\\nuser default off\\nuser {REDIS_USER} on >{REDIS_PASSWORD} ~* &* +@all\\nsentinel sentinel-user {REDIS_USER}\\nsentinel sentinel-pass {REDIS_PASSWORD}\\n")
        } else {
            "port 26379\\n".to_string()
        };
        let auth_lines = if ca.is_some() {
            format!("sentinel auth-user {MASTER_NAME} {REDIS_USER}\\nsentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}\\n")
        } else {
            String::new()
        };
        let certs = match ca {
            Some(ca) => format!("{} && ", cert_script("/tmp/tls", "sentinel", Some(ca))),
            None => String::new(),
        };
        let sentinel_conf = format!(
            "{certs}printf '{secure_lines}protected-mode no\\nsentinel monitor {MASTER_NAME} {master_ip} 6379 {q}\\n{auth_lines}sentinel down-after-milliseconds {MASTER_NAME} {d}\\nsentinel failover-timeout {MASTER_NAME} 10000\\nsentinel parallel-syncs {MASTER_NAME} 1\\n' > /tmp/sentinel.conf && exec redis-sentinel /tmp/sentinel.conf",
            q = spec.sentinels.div_ceil(2).max(1),
            d = spec.down_after_ms
        );
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
                "until pg_isready -q -h {primary_ip} -U postgres; do sleep 0.2; done; pg_basebackup -h {primary_ip} -U postgres -D \"$PGDATA\" -R -X stream -c fast && echo \"recovery_min_apply_delay = '{}ms'\" >> \"$PGDATA/postgresql.auto.conf\" && exec postgres -D \"$PGDATA\" -c listen_addresses=0.0.0.0 -c fsync=off",
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
            sentinels,
            memcached,
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

    pub fn memcached_addrs(&self) -> Vec<String> {
        self.memcached.iter().map(Node::addr).collect()
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
                        .arg(MASTER_NAME)
                        .query_async(&mut c)
                        .await?;
                    let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                        .arg("replicas")
                        .arg(MASTER_NAME)
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
            detail: "did not discover each other and the replica within 30 s".into(),
        })
    }

    /// Every server container.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut all = vec![&self.redis_master];
        all.extend(self.redis_replica.as_ref());
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
            sentinels: self.sentinel_addrs(),
            memcached: self.memcached_addrs(),
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
}

/// An `aside` instance over a launched cluster.
pub type Library = aside::backend::Cache;

/// Where a cluster's servers are, as the host and the app nodes' containers reach them (also
/// handed to an app node's container as JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Addrs {
    pub redis_master: String,
    pub sentinels: Vec<String>,
    pub memcached: Vec<String>,
    pub pg: String,
    pub pg_replica: Option<String>,
}

impl Addrs {
    /// An `aside` instance over these servers: Redis through the Sentinels (directly when there
    /// are none), the memcached nodes on a Ketama ring, PostgreSQL (and its replica).
    pub async fn library(
        &self,
        strategy: Builtin,
        mut cfg: CacheConfig,
        instance: &str,
    ) -> Result<Library, Error> {
        cfg.strategy = strategy.name().to_string();
        let settings = aside::Settings {
            redis: aside::config::RedisSettings {
                sentinels: self.sentinels.clone(),
                master_name: MASTER_NAME.to_string(),
                url: format!("redis://{}", self.redis_master),
                ..Default::default()
            },
            memcached: aside::config::MemcachedSettings {
                nodes: self.memcached.clone(),
                pool_max: 16,
            },
            postgres: aside::config::PostgresSettings {
                url: self.pg.clone(),
                replica_url: self.pg_replica.clone(),
                pool_max: 16,
            },
            cache: cfg,
        };
        aside::backend::build(&settings, instance)
            .await
            .map_err(|e| match e {
                aside::backend::ConnectError::Config(e) => Error::Config(e),
                aside::backend::ConnectError::Server(e) => Error::Tier(e),
            })
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
