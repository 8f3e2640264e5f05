//! App nodes in containers of their own, for the scenarios that cut or freeze one app node
//! alone (`split-brain`, `app-pause`): each app node is an `aside chaos app` process in a
//! container of the cluster's network, with its own address for the nemesis's iptables rules
//! and its own cgroup for `docker pause`.
//!
//! * **The binary** is the host's `aside` executable, mounted read-only into the cluster image
//!   (Debian bookworm, glibc 2.36). [`app_binary`] finds it (`ASIDE_APP_BINARY`, else the running
//!   `aside`); [`check_binary`] runs it once in the image first, so a binary linked against a
//!   newer glibc (a host newer than bookworm, such as a hosted CI runner on Ubuntu 24.04) is one
//!   line naming the fix: build it for `x86_64-unknown-linux-musl` (static, runs anywhere) and
//!   point `ASIDE_APP_BINARY` at it, or build on a host no newer than bookworm.
//! * **The clock.** Containers share the host kernel's clocks (Docker gives them no time
//!   namespace), so every process reads the same `CLOCK_MONOTONIC`. The host picks the history's
//!   zero as a `CLOCK_MONOTONIC` reading and writes it to the run directory's `go` file; each app
//!   node's recorder starts at that same instant ([`instant_at`]), so the lines of every process
//!   are on one time axis, the one the host's nemesis and probes use.
//! * **The lines.** Each app node runs its clients (the same [`chaos::client::Clients`] loop as
//!   the simulator, client numbers as there) and writes its ops and cache actions to
//!   `app-N.jsonl` in the run directory; the host's recorder absorbs them and numbers every op
//!   once, in completion order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aside::Builtin;
use chaos::client::Clients;
use chaos::fault::Target;
use chaos::record::Recorder;
use chaos::scenario::{self, Scenario};
use serde::{Deserialize, Serialize};
use testcontainers::core::{AccessMode, Mount, WaitFor};
use tokio::time::Instant;

use crate::cluster::{Addrs, Cluster, Launch, Node};
use crate::proxy::Proxies;
use crate::Error;

/// Where the run directory is mounted in an app node's container.
pub const RUN_DIR: &str = "/aside-run";
/// Where the binary is mounted.
const BINARY: &str = "/usr/local/bin/aside";
/// What an app node prints as soon as it runs (then it waits for the `net` file).
const STARTED: &str = "aside app started";

/// What one app node's container is told to do (one JSON argument of `aside chaos app`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppTask {
    pub scenario: String,
    /// The scenario as the host runs it (its history header's config).
    pub config: serde_json::Map<String, serde_json::Value>,
    pub strategy: String,
    pub seed: u64,
    /// 0-based: `app-1` is 0.
    pub app: usize,
    pub addrs: Addrs,
}

/// The host's run directory of `cluster`'s app nodes (mounted at [`RUN_DIR`] in theirs).
pub fn run_dir(cluster: &Cluster) -> PathBuf {
    std::env::temp_dir().join(&cluster.run_id)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the same in every container of the host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC exists
    // on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The [`Instant`] of a `CLOCK_MONOTONIC` reading (`std::time::Instant` is that clock on Linux).
pub fn instant_at(ns: u64) -> Instant {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    if ns <= now_ns {
        now - Duration::from_nanos(now_ns - ns)
    } else {
        now + Duration::from_nanos(ns - now_ns)
    }
}

/// The `aside` executable to run in the app nodes' containers: `ASIDE_APP_BINARY`, else this
/// process when it is `aside` (the command line, or a test that runs it).
pub fn app_binary() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("ASIDE_APP_BINARY") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Docker(format!(
                "ASIDE_APP_BINARY={} is not a file: point it at a built `aside` executable",
                p.display()
            )))
        };
    }
    let me = std::env::current_exe().map_err(|e| Error::Docker(format!("current_exe: {e}")))?;
    if me.file_stem().is_some_and(|n| n == "aside") {
        return Ok(me);
    }
    Err(Error::Docker(
        "this scenario runs its app nodes in containers, from the `aside` executable: run it with `aside chaos`, or set ASIDE_APP_BINARY to a built `aside`".into(),
    ))
}

/// Runs `binary --version` once in the image: a binary the image cannot run (linked against a
/// newer glibc than bookworm's 2.36) is one line naming the fix, before any cluster starts.
pub fn check_binary(binary: &Path, tag: &str) -> Result<(), Error> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let mount = format!("{}:{BINARY}:ro", binary.display());
            let image = format!("{}:{tag}", crate::image::REPOSITORY);
            let o = std::process::Command::new("docker")
                .args(["run", "--rm", "-v", &mount, &image, BINARY, "--version"])
                .output()
                .map_err(|e| format!("cannot run docker: {e}"))?;
            if o.status.success() {
                return Ok(());
            }
            let err = String::from_utf8_lossy(&o.stderr);
            Err(format!(
                "{} does not run in the cluster image (Debian bookworm, glibc 2.36): {}; build it with `cargo build -p aside-cli --target x86_64-unknown-linux-musl` and set ASIDE_APP_BINARY to it",
                binary.display(),
                err.lines().last().unwrap_or("no output").trim()
            ))
        })
        .clone()
        .map_err(Error::Docker)
}

/// The host's side: the app nodes' containers of one run and their run directory.
pub struct AppNodes {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

impl AppNodes {
    /// Starts `sc.apps` app nodes, each connected and waiting for [`AppNodes::go`]. With
    /// `proxies`, every connection of theirs goes through them (DNAT rules added before the app
    /// nodes open any).
    pub async fn launch(
        cluster: &Cluster,
        sc: &Scenario,
        strategy: Builtin,
        seed: u64,
        proxies: Option<&Proxies>,
    ) -> Result<AppNodes, Error> {
        let binary = app_binary()?;
        check_binary(&binary, &cluster.tag)?;
        let dir = run_dir(cluster);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Docker(format!("creating {}: {e}", dir.display())))?;
        // Removes the directory if a launch fails.
        let mut this = AppNodes {
            nodes: Vec::new(),
            dir,
        };
        let l = Launch {
            tag: &cluster.tag,
            run: &cluster.run_id,
        };
        // The host's user, so that the app's files are the host's to read and remove.
        // SAFETY: getuid and getgid cannot fail.
        let user = unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) };
        let launches = (0..sc.apps).map(|app| {
            let task = AppTask {
                scenario: sc.name.to_string(),
                config: sc.config(),
                strategy: strategy.name().to_string(),
                seed,
                app,
                addrs: cluster.addrs(),
            };
            let cmd = vec![
                // Its master resolutions and switches, for the run's kept logs.
                "env".to_string(),
                "ASIDE_LOG=aside::backend=info".into(),
                BINARY.to_string(),
                "chaos".into(),
                "app".into(),
                "--task".into(),
                serde_json::to_string(&task).expect("a task is JSON"),
            ];
            let mounts = vec![
                Mount::bind_mount(binary.display().to_string(), BINARY)
                    .with_access_mode(AccessMode::ReadOnly),
                Mount::bind_mount(this.dir.display().to_string(), RUN_DIR),
            ];
            let (name, user) = (Target::App(app as u8).name(), user.clone());
            async move {
                l.node_with(
                    &name,
                    0,
                    cmd,
                    WaitFor::message_on_stdout(STARTED),
                    Some(&user),
                    mounts,
                )
                .await
            }
        });
        let nodes = futures_util::future::try_join_all(launches).await?;
        this.nodes = nodes;
        if let Some(p) = proxies {
            let rules: Vec<String> = p
                .dnat_rules()
                .iter()
                .map(|r| format!("iptables {}", r.join(" ")))
                .collect();
            let script = rules.join(" && ");
            for n in &this.nodes {
                crate::docker::docker(&[
                    "exec",
                    "-u",
                    "root",
                    n.container.id(),
                    "sh",
                    "-c",
                    &script,
                ])
                .await
                .map_err(|e| {
                    Error::Docker(format!("{}: routing through the proxies: {e}", n.name))
                })?;
            }
        }
        this.signal("net", "")?;
        // Each app node connects, then says it is ready with a file of its own.
        let deadline = Instant::now() + Duration::from_secs(60);
        for (app, node) in this.nodes.iter().enumerate() {
            let file = this.dir.join(format!("ready-{}", app + 1));
            this.wait_for(node, &file, deadline).await?;
        }
        Ok(this)
    }

    /// Writes `name` (atomically) in the run directory, where every app node sees it.
    fn signal(&self, name: &str, text: &str) -> Result<(), Error> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, self.dir.join(name)))
            .map_err(|e| Error::Docker(format!("writing the {name} file: {e}")))
    }

    /// Waits until `file` exists, while `node` runs and `deadline` has not passed.
    async fn wait_for(&self, node: &Node, file: &Path, deadline: Instant) -> Result<(), Error> {
        loop {
            if file.exists() {
                return Ok(());
            }
            let exited = node.container.exit_code().await.ok().flatten();
            // The file is written before the process exits: look again once it has.
            if exited.is_some() && file.exists() {
                return Ok(());
            }
            if exited.is_some() || Instant::now() >= deadline {
                let err = node.container.stderr_to_vec().await.unwrap_or_default();
                let err = String::from_utf8_lossy(&err);
                return Err(Error::Docker(format!(
                    "{} wrote no {} ({}): {}",
                    node.name,
                    file.file_name().unwrap_or_default().to_string_lossy(),
                    match exited {
                        Some(c) => format!("it exited with {c}"),
                        None => "still running at the deadline".into(),
                    },
                    err.lines().last().unwrap_or("no output").trim()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Tells every app node that the run is over (the settle and the probes are done): each
    /// writes its lines and exits. Until then its invalidator runs, as an in-process node's does.
    pub fn stop(&self) -> Result<(), Error> {
        self.signal("stop", "")
    }

    /// Tells every app node that the history's zero is the `CLOCK_MONOTONIC` instant `origin_ns`.
    pub fn go(&self, origin_ns: u64) -> Result<(), Error> {
        self.signal("go", &origin_ns.to_string())
    }

    /// Waits (until `deadline`) for every app node's lines and absorbs them into `rec`.
    pub async fn collect(&self, rec: &Recorder, deadline: Instant) -> Result<(), Error> {
        for (app, node) in self.nodes.iter().enumerate() {
            let file = self.dir.join(format!("app-{}.jsonl", app + 1));
            self.wait_for(node, &file, deadline).await?;
            let lines = std::fs::read(&file)
                .map_err(|e| Error::Docker(format!("reading {}: {e}", file.display())))?;
            rec.absorb(&lines)
                .map_err(|e| Error::Docker(format!("{}: {e}", file.display())))?;
        }
        Ok(())
    }
}

impl Drop for AppNodes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The app node's side (`aside chaos app --task JSON`, in its container): builds its instance,
/// says it is ready, waits for the history's zero, runs its clients until the scenario's
/// duration is over, keeps its invalidator running until the host's stop, and writes its lines
/// to `RUN_DIR/app-N.jsonl`.
pub async fn serve(task: &AppTask, run_dir: &Path) -> Result<(), Error> {
    let bad = |e: String| Error::Docker(format!("app-{}: {e}", task.app + 1));
    // A user's scenario travels in the config as its file's text, as in a seed log.
    let sc = scenario::from_header(&task.scenario, &task.config).map_err(bad)?;
    let strategy = Builtin::parse(&task.strategy)
        .ok_or_else(|| bad(format!("unknown strategy {:?}", task.strategy)))?;
    let name = Target::App(task.app as u8).name();
    println!("{STARTED}");
    // The host routes this container's connections (through the proxies) before it opens any.
    signalled(&run_dir.join("net")).await;
    let cache = task
        .addrs
        .library_pooled(
            strategy,
            sc.cache_config(),
            &name,
            sc.pg_pool_max,
            sc.pg_pool_wait_ms,
        )
        .await?;
    // Ring changes the host's nemesis pushes, for as long as this process runs.
    tokio::spawn(crate::rings::follow(
        run_dir.to_path_buf(),
        task.app,
        cache.l2().membership(),
    ));
    // Clock skews the host's nemesis sets, likewise.
    tokio::spawn(crate::clocks::follow(
        run_dir.to_path_buf(),
        task.app,
        cache.wall_clock().clone(),
    ));
    let ready = run_dir.join(format!("ready-{}", task.app + 1));
    std::fs::write(&ready, "").map_err(|e| bad(format!("writing {}: {e}", ready.display())))?;
    let go = signalled(&run_dir.join("go")).await;
    let origin_ns = go
        .trim()
        .parse::<u64>()
        .map_err(|e| bad(format!("the go file {go:?}: {e}")))?;
    let origin = instant_at(origin_ns);
    tokio::time::sleep_until(origin).await;
    let rec = Arc::new(Recorder::start_at(origin));
    let run = Clients {
        workload: Arc::new(sc.workload()),
        rec: rec.clone(),
        seed: task.seed,
        duration: Duration::from_millis(sc.duration_ms),
        listing_tx: sc.listing_transactions,
    };
    let started = chaos::drive::app_node(cache, &run, task.app, sc.clients_per_app, tokio::spawn);
    for c in started.clients {
        let _ = c.await;
    }
    // The host settles and probes only once every app node's clients are done.
    let done = run_dir.join(clients_done_file(task.app));
    std::fs::write(&done, "").map_err(|e| bad(format!("writing {}: {e}", done.display())))?;
    // The invalidator works on through the settle (a `durable` node replays after a switch
    // that comes late) until the host has probed every tier; a host that is gone never says
    // stop, so not forever.
    let _ = tokio::time::timeout(STOP_WAIT_MAX, signalled(&run_dir.join("stop"))).await;
    let lines = rec.finish(&sc.header("containers", strategy.name(), task.seed));
    let file = run_dir.join(format!("app-{}.jsonl", task.app + 1));
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, lines)
        .and_then(|_| std::fs::rename(&tmp, &file))
        .map_err(|e| bad(format!("writing {}: {e}", file.display())))?;
    Ok(())
}

/// The file app node `app` (from 0) writes in the run directory once its clients are done.
pub fn clients_done_file(app: usize) -> String {
    format!("clients-done-{}", app + 1)
}

/// Waits until app node `app`'s clients are done ([`clients_done_file`]), at most `max`.
pub async fn clients_done(run_dir: PathBuf, app: usize, max: Duration) {
    let file = run_dir.join(clients_done_file(app));
    let _ = tokio::time::timeout(max, signalled(&file)).await;
}

/// How long an app node waits for the host's stop after its clients are done.
const STOP_WAIT_MAX: Duration = Duration::from_secs(120);

/// The text of `file`, once the host has written it.
async fn signalled(file: &Path) -> String {
    loop {
        if let Ok(s) = std::fs::read_to_string(file) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
