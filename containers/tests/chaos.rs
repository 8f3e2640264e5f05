//! Scenarios against real servers: the payload trigger agrees with the checkers' payloads, and a
//! catalog scenario runs end to end (workload, nemesis, probes) into a history the same
//! checkers judge, with every fault observed and every payload the one its version implies.

use aside::Builtin;
use chaos::scenario;
use containers::run::{apps_in_containers, run, unsupported, PAYLOAD_SQL};
use containers::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_trigger_computes_the_checkers_payload() {
    let cluster = Cluster::start(ClusterSpec::one_of_each())
        .await
        .expect("cluster");
    let pg = aside::backend::Postgres::connect(&cluster.pg_url(), None, 2)
        .await
        .unwrap();
    pg.migrate().await.unwrap();
    sqlx::raw_sql(PAYLOAD_SQL)
        .execute(pg.primary())
        .await
        .unwrap();
    for (k, v) in [
        ("posts:v1:42", 0i64),
        ("listings:v1:r/rust:hot", 7),
        ("comments:v1:3:thread", 123_456_789),
        ("kéy", 1 << 40),
    ] {
        let got: Vec<u8> = sqlx::query_scalar("SELECT aside_payload($1, $2)")
            .bind(k)
            .bind(v)
            .fetch_one(pg.primary())
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            invariants::payload::expected(k, v as u64),
            "{k} v{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_restart_runs_against_real_servers_into_a_checked_history() {
    let sc = scenario::find("memcached-restart").unwrap();
    assert_eq!(unsupported(&sc), None);
    let out = run(&sc, Builtin::Versioned, 1).await.expect("run");
    let text = String::from_utf8(out.history).unwrap();
    assert!(text.starts_with("{\"type\":\"header\"") && text.contains("\"world\":\"containers\""));
    assert!(out.ops > 100, "{} ops", out.ops);
    let report = invariants::check_str(&text, &[]).unwrap();
    for name in [
        invariants::Invariant::FaultEffect,
        invariants::Invariant::Phantom,
        invariants::Invariant::LostWrites,
    ] {
        let v = report.verdict(name).unwrap();
        assert!(!v.fails(), "{name}: {}", v.summary);
    }
    assert!(text.contains("\"type\":\"probe\""));
    println!("{}", report.table(&Default::default()));
}

#[test]
fn scenarios_this_world_cannot_run_say_why() {
    let why_not = |sc: &scenario::Scenario| unsupported(sc);
    let why = |n: &str| why_not(&scenario::find(n).unwrap());
    // Listing transactions (a trigger bumps the siblings) and the foreign writer (plain SQL,
    // captured by aside_rows's trigger) run here too.
    assert_eq!(why("scan-gap"), None);
    assert_eq!(why("foreign-writer"), None);
    let mut app_kill = scenario::find("redis-failover").unwrap();
    app_kill.plan.steps[0].fault.target = chaos::fault::Side::One(chaos::fault::Target::App(0));
    assert!(why_not(&app_kill).unwrap().contains("killed app node"));
    assert!(why("cold-start").is_none());
    // A database slowed by the simulator's service time alone: real PostgreSQL is not slowed
    // that way here (a slow-queries fault slows both worlds, as pool-exhaustion's does).
    let mut sim_slow = scenario::find("memcached-restart").unwrap();
    sim_slow.db_query_us = (40_000, 80_000);
    assert!(why_not(&sim_slow).unwrap().contains("workload.db_query_us"));
    assert_eq!(why("redis-failover"), None);
    // One app node cut or frozen alone, latency and slow queries (through the proxies), random
    // plans (which may do both): runnable, with app nodes in containers of their own.
    for n in [
        "split-brain",
        "app-pause",
        "latency-spike",
        "db-slowdown",
        "pool-exhaustion",
        "random",
    ] {
        assert_eq!(why(n), None, "{n}");
        assert!(apps_in_containers(&scenario::find(n).unwrap()), "{n}");
    }
    assert!(!apps_in_containers(
        &scenario::find("partition-app-db").unwrap()
    ));
}
