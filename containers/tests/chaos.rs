//! Scenarios against real servers: the payload trigger agrees with the checkers' payloads, and a
//! catalog scenario runs end to end (workload, nemesis, probes) into a history the same
//! checkers judge, with every fault observed and every payload the one its version implies.

use aside::Builtin;
use chaos::scenario;
use containers::run::{apps_in_containers, run, unsupported, PAYLOAD_SQL};
use containers::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_trigger_computes_the_checkers_payload() {
    let cluster = Cluster::start(ClusterSpec {
        redis_replica: false,
        sentinels: 0,
        memcached: 1,
        pg_replica: false,
        ..ClusterSpec::default()
    })
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
    let why = |n: &str| unsupported(&scenario::find(n).unwrap());
    assert!(why("scan-gap").unwrap().contains("listing"));
    assert!(why("cold-start").is_none());
    assert_eq!(why("redis-failover"), None);
    // One app node cut or frozen alone, latency (through the proxies), random plans (which may
    // do both): runnable, with app nodes in containers of their own.
    for n in ["split-brain", "app-pause", "latency-spike", "random"] {
        assert_eq!(why(n), None, "{n}");
        assert!(apps_in_containers(&scenario::find(n).unwrap()), "{n}");
    }
    assert!(!apps_in_containers(
        &scenario::find("partition-app-db").unwrap()
    ));
}

/// A strategy of a user's own: `versioned`'s fills, but its L1 invalidation forgets to do
/// anything (a bug a team could ship). The harness runs it against real servers exactly as it
/// runs the built-ins, and the checkers catch the bug with a witness.
#[derive(Clone)]
struct ForgetsL1;

impl aside::Strategy for ForgetsL1 {
    fn name(&self) -> &str {
        "forgets-l1"
    }

    async fn fill_l1<R: aside::tier::RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> aside::tier::TierResult<bool> {
        Builtin::Versioned
            .fill_l1(l1, key, entry, version, ttl_ms)
            .await
    }

    async fn fill_l2<M: aside::tier::MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
    ) -> aside::tier::TierResult<bool> {
        Builtin::Versioned
            .fill_l2(node, key, entry, version, ttl_s)
            .await
    }

    async fn invalidate_l1<R: aside::tier::RedisLike>(
        &self,
        _l1: &R,
        _key: &str,
        _version: Option<u64>,
        _tombstone_ttl_ms: u64,
    ) -> aside::tier::TierResult<()> {
        Ok(())
    }

    async fn invalidate_l2<M: aside::tier::MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_s: u32,
    ) -> aside::tier::TierResult<()> {
        Builtin::Versioned
            .invalidate_l2(node, key, version, tombstone_ttl_s)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_strategy_runs_against_real_servers_and_its_bug_is_found() {
    use aside::Strategy as _;
    let sc = scenario::find("fill-race").unwrap();
    let out = containers::run::run_with(&sc, ForgetsL1, 1, Default::default())
        .await
        .expect("run");
    let text = String::from_utf8(out.history).unwrap();
    assert!(text.starts_with("{\"type\":\"header\""));
    assert!(text.contains("\"strategy\":\"forgets-l1\""));
    let report = invariants::check_str(&text, &[]).unwrap();
    let v = report.verdict(invariants::Invariant::Staleness).unwrap();
    assert!(v.fails() && !v.witness.is_empty(), "{}", v.summary);
    assert!(!report
        .verdict(invariants::Invariant::FaultEffect)
        .unwrap()
        .fails());
    // A scenario whose app nodes run in their own containers needs a built-in by name: refused
    // in one line before any container starts.
    let e = containers::run::run_with(
        &scenario::find("app-pause").unwrap(),
        ForgetsL1,
        1,
        Default::default(),
    )
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("built-in strategies only"), "{e}");
    assert_eq!(ForgetsL1.name(), "forgets-l1");
}
