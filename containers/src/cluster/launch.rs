//! Starting one server container of a cluster: its command line, its certificates, its run id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use tracing::info;

use super::{MinReplicas, Node, REDIS_PASSWORD, REDIS_TLS_CA, REDIS_USER};
use crate::{image, Error};

pub(super) fn run_id() -> String {
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
    pub(crate) async fn node(
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

pub(super) fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Shell: in `dir`, `server.key` and `server.crt` for this container's IP address, signed by
/// `ca.key` and `ca.crt` there, which `ca` writes (PEM texts) or, when `None`, makes.
pub(super) fn cert_script(dir: &str, cn: &str, ca: Option<(&str, &str)>) -> String {
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
pub(super) fn redis_cmd(
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

/// The shim a `clock` fault moves a Redis server's wall clock through (the image's
/// `ci/images/clock-shim.c`): it reads `/tmp/aside-clock` in the container.
pub(crate) const CLOCK_SHIM: &str = "/usr/local/lib/libaside-clock.so";
/// The file the shim reads: `JUMP_MS RATE_PERMILLE SINCE_MS`, absent for true time.
pub(crate) const CLOCK_FILE: &str = "/tmp/aside-clock";

pub(super) fn redis_args(extra: &[&str], guard: Option<MinReplicas>) -> Vec<String> {
    let preload = format!("LD_PRELOAD={CLOCK_SHIM}");
    let mut c = s(&[
        "env",
        &preload,
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
