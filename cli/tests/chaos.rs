//! `aside chaos` against real servers: the catalog with what this world cannot run and why,
//! one-line errors, and one run whose history `aside check` judges the same way.

use std::process::{Command, Output};
use std::sync::Mutex;

/// The tests that launch clusters run one at a time: a cluster's start sweeps the containers of
/// dead runners, and the kill test must see its own runner's cluster until it sweeps it itself.
static CLUSTERS: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    CLUSTERS.lock().unwrap_or_else(|p| p.into_inner())
}

fn aside(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(args)
        .output()
        .expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The one JSON line of an `aside chaos --json` run that completed (held: exit 0, failed: 1).
fn one_run(o: &Output) -> serde_json::Value {
    let out = text(&o.stdout);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{out}{}",
        text(&o.stderr)
    );
    serde_json::from_str(out.trim()).expect("one JSON line")
}

#[test]
fn the_list_names_every_scenario_and_why_some_cannot_run() {
    let o = aside(&["chaos", "list"]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    for sc in chaos::scenario::catalog() {
        assert!(out.contains(&sc.name), "{} missing:\n{out}", sc.name);
    }
    assert!(out
        .lines()
        .any(|l| l.starts_with("memcached-restart") && l.ends_with("runs")));
    assert!(out
        .lines()
        .any(|l| l.starts_with("split-brain") && l.ends_with("runs")));
    // Listing transactions, the foreign writer and a slow database (a slow-queries fault,
    // through the proxy in front of PostgreSQL) run here too.
    for n in [
        "scan-gap",
        "foreign-writer",
        "pool-exhaustion",
        "db-slowdown",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(n) && l.ends_with("runs")),
            "{n}:\n{out}"
        );
    }
    assert!(out
        .lines()
        .any(|l| l.starts_with("latency-spike") && l.ends_with("runs")));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    // A user's scenario this world cannot run: one that kills an app node.
    let dir = tempfile::tempdir().unwrap();
    let app_kill = dir.path().join("app-kill.toml");
    std::fs::write(
        &app_kill,
        "name = \"app-kill\"\nabout = \"app-1 dies\"\n\n[[fault]]\nat_ms = 500\nfor_ms = 500\nkind = \"kill\"\ntarget = \"app-1\"\n\n[promise.naive]\nholds = true\nwhy = \"x\"\n\n[promise.versioned]\nholds = true\nwhy = \"x\"\n\n[promise.durable]\nholds = true\nwhy = \"x\"\n",
    )
    .unwrap();
    let app_kill = app_kill.to_str().unwrap();
    for (args, says) in [
        (vec!["chaos", "--scenario", "nope"], "unknown scenario"),
        (
            vec!["chaos", "--scenario-file", app_kill],
            "cannot run against containers yet",
        ),
        (
            vec!["chaos", "--scenario", "fill-race", "--strategy", "x"],
            "unknown strategy",
        ),
        (vec!["chaos"], "--scenario NAME"),
        (
            vec!["chaos", "--scenario", "fill-race", "--runs", "0"],
            "at least 1",
        ),
    ] {
        let o = aside(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_run_keeps_its_history_and_aside_check_agrees_with_its_verdict() {
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().to_str().unwrap();
    let o = aside(&[
        "chaos",
        "--scenario",
        "memcached-rejoin",
        "--strategy",
        "naive",
        "--runs",
        "1",
        "--json",
        "--keep",
        keep,
    ]);
    let v = one_run(&o);
    assert_eq!(v["world"], "containers");
    let holds = v["holds"].as_bool().unwrap();
    assert_eq!(o.status.code(), Some(i32::from(!holds)));
    let history = v["history"].as_str().unwrap();
    let check = aside(&["check", history]);
    assert_eq!(
        check.status.code(),
        Some(i32::from(!holds)),
        "{}",
        text(&check.stdout)
    );
    let fault_effect = v["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "fault-effect")
        .unwrap();
    assert_eq!(fault_effect["holds"], true, "{fault_effect}");
}

/// A scenario file of a user's own (docs/scenarios.md's example, not the catalog's) runs against
/// real servers: its history carries the file, every fault took effect, and `durable` keeps its
/// staleness bound through the failover while memcached-2 is frozen. (Hit latency is not judged
/// here: the test command's debug build exceeds the bounds on cache hits alone.)
#[test]
fn a_users_scenario_file_runs_against_real_servers() {
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios/failover-under-pause.toml"
    );
    let o = aside(&[
        "chaos",
        "--scenario-file",
        file,
        "--strategy",
        "durable",
        "--json",
        "--keep",
        dir.path().to_str().unwrap(),
    ]);
    let v = one_run(&o);
    assert_eq!(v["scenario"], "failover-under-pause");
    let history = std::fs::read_to_string(v["history"].as_str().unwrap()).unwrap();
    let header: serde_json::Value = serde_json::from_str(history.lines().next().unwrap()).unwrap();
    assert_eq!(
        header["config"]["scenario_file"].as_str(),
        Some(std::fs::read_to_string(file).unwrap().as_str()),
        "the history carries the scenario file"
    );
    for name in ["fault-effect", "staleness", "lost-writes", "phantom"] {
        let verdict = v["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap();
        assert_eq!(verdict["holds"], true, "{verdict}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nabout = \"y\"\n[workload]\nl1_ttl_ms = 0\n",
    )
    .unwrap();
    let o = aside(&["chaos", "--scenario-file", bad.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.trim().lines().count() == 1 && err.contains("bad.toml:4: workload.l1_ttl_ms: is 0"),
        "{err}"
    );
}

/// The two worlds agree on a Sentinel failover, cell by cell: the simulator finds lost
/// invalidations for both strategies, and so does one run of each against real servers (the
/// full comparison, three runs per cell, is `aside chaos compare` in the nightly job).
#[test]
fn the_worlds_agree_on_a_redis_failover() {
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let o = aside(&[
        "chaos",
        "compare",
        "--runs",
        "1",
        "--scenario",
        "redis-failover",
        // `durable` is compared in the README's table (`aside chaos compare --strategy
        // durable`): against real servers it can lose a race the simulator does not model.
        "--strategy",
        "naive",
        "--strategy",
        "versioned",
        "--keep",
        dir.path().to_str().unwrap(),
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("2 cells, 0 disagreeing"), "{out}");
}

/// The nightly's budget: a spent one starts no cell, names the cells left, and saves them and
/// what ran (nothing) for the triage's summary, exit 0.
#[test]
fn a_spent_budget_starts_no_cell_and_names_the_cells_left() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("compare.json");
    let o = aside(&[
        "chaos",
        "compare",
        "--scenario",
        "redis-failover",
        "--budget-min",
        "0",
        "--save",
        saved.to_str().unwrap(),
        "--keep",
        dir.path().to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{}{err}", text(&o.stdout));
    assert!(
        err.contains("the budget of 0 min was spent: 3 cells not started")
            && err.contains("redis-failover / durable"),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(json["cells"].as_array().map(Vec::len), Some(0), "{json}");
    assert_eq!(json["skipped"].as_array().map(Vec::len), Some(3), "{json}");
}

/// The `role` lines of `history` (server, role, at_ns), and the servers `node`'s L1
/// invalidations name.
fn roles_and_servers(history: &[u8], node: &str) -> (Vec<(String, String, u64)>, Vec<String>) {
    use invariants::history::{parse_line, CacheAction, Line, Source};
    let (mut roles, mut servers) = (Vec::new(), Vec::new());
    for text in history.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match parse_line(text, false).expect("a valid line") {
            Line::Role(r) => roles.push((r.server.into_owned(), r.role.as_str().into(), r.at_ns)),
            Line::Cache(c)
                if c.node == node
                    && c.tier == Source::L1
                    && c.action == CacheAction::Invalidate =>
            {
                servers.extend(c.server.map(|s| s.into_owned()))
            }
            _ => {}
        }
    }
    (roles, servers)
}

/// Jepsen's Redis finding against real Redis and Sentinel: in `split-brain`, app-1 (cut from
/// the Sentinels with the old master) keeps writing tombstones to the isolated master, which
/// acknowledges them all; the majority promotes the replica, the old master is demoted and
/// resyncs, and the tombstones are gone: the run fails with a witness and leaves nothing behind.
/// With `min-replicas-to-write 1` (max lag 1 s) the isolated master refuses tombstones once it
/// has not heard from its replica for the lag: app-1 sees the refusals instead of believing them
/// applied (the staleness stays until something retries them: the `durable` strategy's outbox).
#[test]
fn split_brain_loses_acknowledged_tombstones_unless_the_master_needs_a_replica() {
    let _one = one_cluster_at_a_time();
    // Kept after the test (in target/), for a look when it fails.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("split-brain");
    let keep = dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "chaos",
            "--scenario",
            "split-brain",
            "--strategy",
            "naive",
            "--runs",
            "1",
            "--json",
            "--keep",
            keep,
        ];
        args.extend_from_slice(extra);
        let o = aside(&args);
        let out = text(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{out}{}", text(&o.stderr));
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
        let failed: Vec<String> = serde_json::from_value(v["failed"].clone()).unwrap();
        assert!(
            failed
                .iter()
                .any(|f| f == "staleness" || f == "convergence"),
            "{failed:?}"
        );
        let history = std::fs::read(v["history"].as_str().unwrap()).unwrap();
        let t = containers::run::tombstones_during_faults(&history, "app-1").unwrap();
        println!("split-brain {extra:?}: app-1's L1 tombstones during the split: {t:?}");
        // The witness names a causal chain from real servers.
        let report = invariants::check_str(&String::from_utf8_lossy(&history), &[]).unwrap();
        assert!(!report.witness_lines().is_empty());
        // The servers' own logs gave the roles: both booted in theirs, the replica promoted
        // (the old master's demotion comes seconds after the heal, often after the run);
        // app-1's tombstones name the node that acknowledged them.
        let roles = roles_and_servers(&history, "app-1");
        for (server, role, later) in [
            ("redis-master", "master", false),
            ("redis-replica", "replica", false),
            ("redis-replica", "master", true),
        ] {
            assert!(
                roles
                    .0
                    .iter()
                    .any(|(s, r, at)| s == server && r == role && (*at > 0) == later),
                "{server} a {role}: {:?}",
                roles.0
            );
        }
        assert!(
            roles.1.iter().any(|s| s == "redis-master"),
            "app-1's L1 tombstones name redis-master: {:?}",
            roles.1
        );
        t
    };
    let plain = run(&[]);
    assert!(plain.acked > 0, "{plain:?}");
    assert_eq!(
        plain.refused, 0,
        "the isolated master refused no tombstone: {plain:?}"
    );
    // The guard, over a longer split. Redis counts a replica's lag in whole seconds from its
    // once-a-second acknowledgements, so with `min-replicas-max-lag 1` the isolated master
    // starts refusing 2 to 3 s into the split, about when the scenario's 2 s split ends: one run
    // refused 13 of 52 tombstones, another none. Here the split lasts 5 s.
    let mut sc = chaos::scenario::find("split-brain").unwrap();
    for step in &mut sc.plan.steps {
        step.for_ms = 5_000;
    }
    sc.duration_ms = 7_000;
    // App-1 runs in its own container, from the `aside` binary this test suite built.
    std::env::set_var("ASIDE_APP_BINARY", env!("CARGO_BIN_EXE_aside"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = containers::run::RunOptions {
        redis_min_replicas: Some(containers::MinReplicas {
            to_write: 1,
            max_lag_s: 1,
        }),
    };
    let out = rt
        .block_on(containers::run::run_with(
            &sc,
            aside::Builtin::Naive,
            1,
            guard,
        ))
        .unwrap();
    let guarded = containers::run::tombstones_during_faults(&out.history, "app-1").unwrap();
    println!("split-brain over 5 s with min-replicas-to-write 1: app-1's L1 tombstones during the split: {guarded:?}");
    assert!(
        guarded.refused > 0,
        "the guarded master said NOREPLICAS: {guarded:?}"
    );
    assert_eq!(
        containers::all_containers(),
        0,
        "every container of both runs is gone"
    );
}

/// Latency against real servers: the app nodes in containers reach every server through the
/// latency proxies, the fault is observed taking effect (a round trip through a proxy), the run
/// is judged like the simulator's (which finds lost invalidations here), and nothing is left.
#[test]
fn a_latency_spike_goes_through_the_proxies_and_is_observed() {
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let o = aside(&[
        "chaos",
        "--scenario",
        "latency-spike",
        "--strategy",
        "versioned",
        "--runs",
        "1",
        "--json",
        "--keep",
        dir.path().to_str().unwrap(),
    ]);
    let v = one_run(&o);
    let history = std::fs::read_to_string(v["history"].as_str().unwrap()).unwrap();
    let observed = history
        .lines()
        .find(|l| l.contains("\"action\":\"observed\"") && l.contains("\"kind\":\"latency\""))
        .expect("the latency fault observed");
    assert!(
        observed.contains("through the redis-master proxy"),
        "{observed}"
    );
    // The app nodes' clients run in their containers past the plan's last heal: the probes
    // wait for them (they once read the tiers while the last writes were in flight).
    let at = |l: &str, field: &str| -> Option<u64> {
        serde_json::from_str::<serde_json::Value>(l).ok()?[field].as_u64()
    };
    let last_op_ns = (history.lines().filter(|l| l.contains("\"type\":\"op\"")))
        .filter_map(|l| at(l, "complete_ns"))
        .max()
        .unwrap();
    let first_probe_ns = (history.lines().filter(|l| l.contains("\"type\":\"probe\"")))
        .filter_map(|l| at(l, "at_ns"))
        .min()
        .unwrap();
    assert!(
        first_probe_ns > last_op_ns,
        "probed at {first_probe_ns} ns, before the last op completed at {last_op_ns} ns"
    );
    let fault_effect = v["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "fault-effect")
        .unwrap();
    assert_eq!(fault_effect["holds"], true, "{fault_effect}");
    assert_eq!(containers::all_containers(), 0, "every container is gone");
}

/// A runner killed mid-run (SIGKILL: no destructor runs) leaves its cluster behind; the next
/// cluster's start sweeps every container whose owning process is gone, and the count is 0.
#[test]
fn a_runner_killed_mid_run_leaves_nothing_after_the_next_sweep() {
    let _one = one_cluster_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aside"))
        .args([
            "chaos",
            "--scenario",
            "memcached-rejoin",
            "--runs",
            "1",
            "--keep",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let label = format!("label=aside.pid={}", child.id());
    let count = || {
        let o = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .unwrap();
        text(&o.stdout).lines().count()
    };
    // The whole cluster is up (10 containers), then a little into the run: mid-fault.
    let mut up = 0;
    for _ in 0..300 {
        up = count();
        if up >= 10 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        up >= 10,
        "the runner did not start its cluster: {up} containers"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        count() >= 10,
        "SIGKILL runs no destructor: the cluster is still there"
    );
    assert!(containers::sweep_orphans() >= 10);
    assert_eq!(
        count(),
        0,
        "containers of the killed runner left after the sweep"
    );
}

/// App nodes in containers keep their `durable` invalidators running after their workload,
/// through the settle and the probes, until the host says stop (as in-process nodes do): an
/// outbox row written once every client is done is still applied to both tiers. Before, the app
/// nodes exited with their clients, and a switch that came late was never replayed.
#[test]
fn app_nodes_in_containers_apply_the_outbox_until_the_host_says_stop() {
    use aside::Store;
    let _one = one_cluster_at_a_time();
    std::env::set_var("ASIDE_APP_BINARY", env!("CARGO_BIN_EXE_aside"));
    let mut sc = chaos::scenario::find("app-pause").unwrap();
    sc.apps = 2;
    sc.clients_per_app = 1;
    sc.duration_ms = 300;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cluster = containers::Cluster::start(containers::ClusterSpec::default())
            .await
            .expect("cluster");
        // The host's instance writes without an invalidator of its own: only the app nodes'
        // can apply its outbox rows.
        let host = cluster
            .library(aside::Builtin::Durable, sc.cache_config(), "host")
            .await
            .expect("library");
        let apps =
            containers::app::AppNodes::launch(&cluster, &sc, aside::Builtin::Durable, 1, None)
                .await
                .expect("app nodes");
        apps.go(containers::app::monotonic_ns() + 50_000_000)
            .unwrap();
        // Every client is done well before this.
        tokio::time::sleep(std::time::Duration::from_millis(sc.duration_ms + 2_000)).await;
        let key = "posts:v1:after-the-workload";
        let version = host
            .store()
            .write(key, b"late")
            .await
            .expect("write")
            .version;
        let done = || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT bool_and(done_at IS NOT NULL) FROM aside_outbox WHERE key = $1",
            )
            .bind(key)
            .fetch_one(host.store().primary())
            .await
            .expect("outbox")
        };
        let began = std::time::Instant::now();
        while !done().await {
            assert!(
                began.elapsed() < std::time::Duration::from_secs(20),
                "no app node applied the outbox row of {key} v{version} written after the workload"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        println!(
            "{key} v{version}: applied to both tiers {:?} after it was written",
            began.elapsed()
        );
        apps.stop().unwrap();
        let rec = chaos::record::Recorder::start();
        apps.collect(
            &rec,
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
        )
        .await
        .expect("every app node wrote its lines after the stop");
        assert!(rec.ops() > 0);
    });
    assert_eq!(containers::all_containers(), 0, "every container is gone");
}
