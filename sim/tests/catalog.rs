//! What the fault catalog's scenarios claim beyond their verdicts: who is master after a
//! Sentinel partition and after a split-brain, the hot key's share and the load on its node, the
//! L1 hit ratio under a full Redis, the database ceiling of a cold start, and what an expiry
//! storm costs the database with the stampede protection off, and what a slow database costs
//! reads and itself without shedding.
#![cfg(madsim)]

use aside::Builtin;
use chaos::scenario;
use invariants::Figure;
use invariants::Invariant;
use sim::runner::{run_one, RunResult};

fn run(name: &str, st: Builtin, seed: u64) -> RunResult {
    run_one(&scenario::find(name).unwrap(), st, seed)
}

/// Asserts who is master at the end: `master`'s role, the other node following it, and every
/// Sentinel naming it.
fn master_at_end(r: &RunResult, seed: u64, master: &str, other: &str) {
    let mut want = vec![
        (master.to_string(), "master".to_string()),
        (other.to_string(), format!("replica of {master}")),
    ];
    want.extend((1..=3).map(|i| (format!("sentinel-{i}"), format!("master is {master}"))));
    for (node, says) in &want {
        let got = r.roles.iter().find(|(n, _)| n == node).map(|(_, s)| s);
        assert_eq!(got, Some(says), "seed {seed}: {:?}", r.roles);
    }
}

fn ratio(r: &RunResult, verdict: Invariant, figure: &str) -> f64 {
    let v = r.report.verdict(verdict).unwrap();
    match v.figures.iter().find(|(n, _)| *n == figure) {
        Some((_, Figure::Ratio(x))) => *x,
        other => panic!("{verdict}.{figure}: {other:?}"),
    }
}

#[test]
fn a_minority_sentinel_promotes_nothing_and_every_sentinel_agrees_after() {
    for seed in 1..=20 {
        let r = run("sentinel-partition", Builtin::Versioned, seed);
        master_at_end(&r, seed, "redis-master", "redis-replica");
    }
}

#[test]
fn after_a_failover_the_returning_old_master_follows_the_promoted_one() {
    for seed in 1..=5 {
        let r = run("redis-failover", Builtin::Versioned, seed);
        master_at_end(&r, seed, "redis-replica", "redis-master");
    }
}

#[test]
fn after_a_split_brain_the_old_master_follows_the_promoted_one_and_every_sentinel_agrees() {
    for seed in 1..=5 {
        let r = run("split-brain", Builtin::Versioned, seed);
        master_at_end(&r, seed, "redis-replica", "redis-master");
    }
}

#[test]
fn the_hot_key_takes_its_share_and_loads_one_memcached_node() {
    for seed in 1..=3 {
        let r = run("hot-key", Builtin::Versioned, seed);
        let (_, share) = r.hot_key.clone().unwrap();
        assert!(
            share >= 0.30,
            "seed {seed}: the hot key took {share} of reads"
        );
        let mut mc: Vec<u64> = r
            .served
            .iter()
            .filter(|(n, _)| n.starts_with("memcached-"))
            .map(|(_, c)| *c)
            .collect();
        mc.sort_unstable();
        assert!(
            mc[2] >= 3 * mc[1],
            "seed {seed}: the hot key's node should carry the most: {:?}",
            r.served
        );
    }
}

#[test]
fn a_full_redis_collapses_the_l1_hit_ratio_during_the_limit_and_nothing_is_stale() {
    for seed in 1..=3 {
        let r = run("redis-memory-full", Builtin::Versioned, seed);
        let steady = ratio(&r, Invariant::HitRatio, "l1_hit_ratio");
        let during = ratio(&r, Invariant::HitRatio, "l1_hit_ratio_during_faults");
        assert!(
            during < 0.7 * steady,
            "seed {seed}: L1 hit ratio {during} during the limit, {steady} steady"
        );
        assert!(r.failed.is_empty(), "seed {seed}: {:?}", r.failed);
    }
}

#[test]
fn a_cold_start_keeps_the_database_under_its_ceiling() {
    for seed in 1..=3 {
        let r = run("cold-start", Builtin::Versioned, seed);
        let v = r.report.verdict(Invariant::Load).unwrap();
        assert!(!v.fails(), "seed {seed}: {}", v.summary);
        // Both flushes (Redis, memcached) were observed taking effect.
        let text = String::from_utf8(r.history.clone()).unwrap();
        assert_eq!(
            text.matches("the marker key written before the flush is gone")
                .count(),
            2
        );
    }
}

/// The count of one key's database reads in its worst fill window.
fn per_key_window_max(r: &RunResult) -> u64 {
    let v = r.report.verdict(Invariant::Load).unwrap();
    match v
        .figures
        .iter()
        .find(|(n, _)| *n == "db_reads_per_key_window_max")
    {
        Some((_, Figure::Count(n))) => *n,
        other => panic!("load.db_reads_per_key_window_max: {other:?}"),
    }
}

#[test]
fn an_expiry_storm_overloads_the_hot_key_without_the_lease_and_early_refresh_and_not_with_them() {
    let on = scenario::find("expiry-storm").unwrap();
    let mut off = on.clone();
    off.lease_ms = 0;
    off.early_refresh_beta = 0.0;
    let bound = on.bounds.db_reads_per_key_per_window_max.unwrap();
    for seed in 1..=3 {
        let with = run_one(&on, Builtin::Versioned, seed);
        let without = run_one(&off, Builtin::Versioned, seed);
        let (w, wo) = (per_key_window_max(&with), per_key_window_max(&without));
        println!(
            "seed {seed}: {w} database reads of one key per window with protection, {wo} without"
        );
        assert!(
            w <= bound,
            "seed {seed}: {w} reads with protection, bound {bound}"
        );
        assert!(
            wo > bound,
            "seed {seed}: {wo} reads without protection, bound {bound}"
        );
        assert!(without.report.verdict(Invariant::Load).unwrap().fails());
    }
}

#[test]
fn an_exhausted_pool_fails_reads_within_its_wait_and_a_wait_as_long_as_the_deadline_does_not() {
    let sc = scenario::find("pool-exhaustion").unwrap();
    let bound = sc.bounds.read_duration_max_ns.unwrap();
    let mut long_wait = sc.clone();
    long_wait.pg_pool_wait_ms = sc.cache_config().db_timeout_ms - 1;
    let mut over = 0;
    for seed in 1..=2 {
        let r = run_one(&sc, Builtin::Versioned, seed);
        assert!(
            !r.report.verdict(Invariant::Liveness).unwrap().fails(),
            "seed {seed}"
        );
        // The pool ran out: some reads failed (with the pool's error, which the history does
        // not keep; containers/tests/pool.rs checks its words against a real server).
        let failed = String::from_utf8(r.history.clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains(r#""f":"read""#) && l.contains(r#""outcome":"fail""#))
            .count();
        assert!(
            failed > 0,
            "seed {seed}: no read failed, the pool never ran out"
        );
        let slow = run_one(&long_wait, Builtin::Versioned, seed);
        let (held, waited) = (
            r.report.verdict(Invariant::Liveness).unwrap(),
            slow.report.verdict(Invariant::Liveness).unwrap(),
        );
        println!(
            "seed {seed}: {} | with a pool wait of the deadline: {}",
            held.summary, waited.summary
        );
        over += usize::from(waited.fails());
    }
    assert!(
        over > 0,
        "with a pool wait of the database deadline no read outlasted {bound} ns"
    );
}

fn ns_figure(r: &RunResult, verdict: Invariant, figure: &str) -> u64 {
    match r.report.verdict(verdict).unwrap().get(figure) {
        Some(Figure::Ns(x) | Figure::Count(x)) => *x,
        other => panic!("{verdict}.{figure}: {other:?}"),
    }
}

#[test]
fn a_slow_database_keeps_reads_and_its_load_bounded_with_shedding_and_not_without() {
    let on = scenario::find("db-slowdown").unwrap();
    // The library's defaults: 64 reads in flight, a 250 ms wait, no rate limit.
    let defaults = aside::CacheConfig::default();
    let mut off = on.clone();
    off.db_concurrency_max = defaults.db_concurrency_max;
    off.db_wait_ms_max = defaults.db_wait_ms_max;
    off.db_reads_per_sec_max = defaults.db_reads_per_sec_max;
    let p99_max = on.bounds.read_latency_p99_ns_max.unwrap();
    let qps_max = on.bounds.db_qps_max.unwrap();
    for seed in 1..=2 {
        let with = run_one(&on, Builtin::Versioned, seed);
        let without = run_one(&off, Builtin::Versioned, seed);
        let figures = |r: &RunResult| {
            (
                ns_figure(r, Invariant::Liveness, "read_latency_p99_ns"),
                ns_figure(r, Invariant::Load, "peak_db_qps"),
            )
        };
        let ((p99, qps), (p99_off, qps_off)) = (figures(&with), figures(&without));
        println!(
            "seed {seed}: with shedding p99 {:.1} ms, peak {qps} database reads/s; without: p99 {:.1} ms, {qps_off}/s",
            p99 as f64 / 1e6,
            p99_off as f64 / 1e6
        );
        assert!(
            p99 <= p99_max && qps <= qps_max,
            "seed {seed}: with shedding"
        );
        assert!(
            p99_off > p99_max && qps_off > qps_max,
            "seed {seed}: without shedding"
        );
        assert!(without.report.verdict(Invariant::Liveness).unwrap().fails());
    }
}

#[test]
fn a_hot_key_takes_under_its_share_of_server_reads_with_l0_and_over_it_without() {
    let on = scenario::find("hot-key").unwrap();
    let mut off = on.clone();
    off.l0_ttl_ms = 0;
    let share_max = on.bounds.server_key_share_max.unwrap();
    let share = |r: &RunResult| match r
        .report
        .verdict(Invariant::Load)
        .unwrap()
        .get("server_key_share")
    {
        Some(Figure::Ratio(x)) => *x,
        other => panic!("load.server_key_share: {other:?}"),
    };
    for seed in 1..=2 {
        let with = run_one(&on, Builtin::Versioned, seed);
        let without = run_one(&off, Builtin::Versioned, seed);
        let (s, s_off) = (share(&with), share(&without));
        println!("seed {seed}: the busiest key's share of server reads with L0 {s:.3}, without {s_off:.3} (bound {share_max})");
        assert!(
            !with.report.fails(),
            "seed {seed}: with L0: {:?}",
            with.report.failing()
        );
        assert!(s <= share_max && s_off > share_max, "seed {seed}");
        assert!(without.report.verdict(Invariant::Load).unwrap().fails());
    }
}
