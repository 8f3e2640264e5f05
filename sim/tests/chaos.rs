//! The harness as a user meets it: their own strategy under the same runner as the built-ins,
//! and a nemesis whose fault does nothing reported as a harness error, never a pass.
#![cfg(madsim)]

use std::future::Future;

use aside::tier::{MemcachedLike, RedisLike, Release, Seen, SetCond, TierResult};
use aside::{Builtin, Strategy};
use chaos::fault::Fault;
use chaos::nemesis::Nemesis;
use chaos::scenario;
use invariants::Invariant;
use sim::nemesis::SimNemesis;
use sim::runner::{judge, run_one};

/// A user's strategy, written outside the library, with a bug: it fills but never invalidates.
#[derive(Clone)]
struct Forgetful;

impl Strategy for Forgetful {
    fn name(&self) -> &str {
        "forgetful"
    }
    fn fill_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        _version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        l1.set(key, entry, ttl_ms, SetCond::Always)
    }
    fn fill_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        _version: u64,
        ttl_s: u32,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        let set = node.set(key, entry, ttl_s);
        async move { set.await.map(|()| true) }
    }
    fn invalidate_l1<R: RedisLike>(
        &self,
        _l1: &R,
        _key: &str,
        _version: Option<u64>,
        _tombstone_ttl_ms: u64,
    ) -> impl Future<Output = TierResult<()>> + Send {
        std::future::ready(Ok(()))
    }
    fn invalidate_l2<M: MemcachedLike>(
        &self,
        _node: &M,
        _key: &str,
        _version: Option<u64>,
        _tombstone_ttl_s: u32,
    ) -> impl Future<Output = TierResult<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// A user's strategy that is right: it hands everything to `versioned`, under its own name.
#[derive(Clone)]
struct Delegating(Builtin);

impl Strategy for Delegating {
    fn name(&self) -> &str {
        "delegating"
    }
    fn fill_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        self.0.fill_l1(l1, key, entry, version, ttl_ms)
    }
    fn fill_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        self.0.fill_l2(node, key, entry, version, ttl_s)
    }
    fn invalidate_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_ms: u64,
    ) -> impl Future<Output = TierResult<()>> + Send {
        self.0.invalidate_l1(l1, key, version, tombstone_ttl_ms)
    }
    fn invalidate_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_s: u32,
    ) -> impl Future<Output = TierResult<()>> + Send {
        self.0.invalidate_l2(node, key, version, tombstone_ttl_s)
    }
    // The miss path's fused commands: without these, the delegate sends the trait's defaults
    // (the commands one at a time), which is right but not the built-in's run.
    fn fill_l1_releasing<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
        lease: Release<'_>,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        self.0
            .fill_l1_releasing(l1, key, entry, version, ttl_ms, lease)
    }
    fn fill_l2_after<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
        seen: Seen,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        self.0.fill_l2_after(node, key, entry, version, ttl_s, seen)
    }
}

#[test]
fn a_users_broken_strategy_is_caught_and_a_good_one_holds() {
    let sc = scenario::find("fill-race").unwrap();
    for seed in 1..=5 {
        let bad = run_one(&sc, Forgetful, seed);
        assert_eq!(bad.strategy, "forgetful");
        assert!(
            bad.failed.contains(&Invariant::Staleness),
            "seed {seed}: a strategy that never invalidates passed ({:?})",
            bad.failed
        );
        let good = run_one(&sc, Delegating(Builtin::Versioned), seed);
        assert!(good.failed.is_empty(), "seed {seed}: {:?}", good.failed);
        // The same runs as the built-in's, seed for seed, but for the header's name and the
        // coverage goals the built-in's promise names (a user's strategy has no promise).
        let builtin = run_one(&sc, Builtin::Versioned, seed);
        let names: Vec<&str> = sc
            .goals_required("sim", "versioned")
            .iter()
            .map(|g| g.name())
            .collect();
        assert!(!names.is_empty(), "fill-race promises versioned's goals");
        let goals = format!(",\"goals_required\":{}", serde_json::json!(names));
        assert_eq!(
            String::from_utf8(good.history).unwrap(),
            String::from_utf8(builtin.history)
                .unwrap()
                .replacen(
                    "\"strategy\":\"versioned\"",
                    "\"strategy\":\"delegating\"",
                    1
                )
                .replacen(&goals, "", 1)
        );
    }
}

/// The simulator's nemesis with its hands tied: it records the faults but applies none.
struct Inert(SimNemesis);

impl Nemesis for Inert {
    async fn begin(&mut self, _: &Fault) {}
    async fn heal(&mut self, _: &Fault) {}
    async fn observe(&mut self, fault: &Fault) -> Option<chaos::fault::effect::Effect> {
        self.0.observe(fault).await
    }
}

#[test]
fn a_fault_that_did_nothing_is_a_failing_harness_verdict() {
    for name in ["redis-failover", "memcached-restart"] {
        let sc = scenario::find(name).unwrap();
        let r = judge(
            &sc,
            "versioned",
            1,
            sim::run::run_with(&sc, Builtin::Versioned, 1, Inert),
        );
        assert!(
            r.failed.contains(&Invariant::FaultEffect),
            "{name}: an inert nemesis passed: {:?}",
            r.failed
        );
    }
}

/// A scenario that promises a coverage goal its plan cannot reach (no Redis master dies, so no
/// Sentinel promotes): its run fails `coverage`, a harness error, and the promise's judge says
/// so; the same scenario promising only what it reaches holds.
#[test]
fn a_promised_goal_never_reached_is_a_failing_harness_verdict() {
    let text = |goals: &str| {
        format!(
            "name = \"no-failover\"\nabout = \"no fault\"\n[workload]\nduration_ms = 1500\n\n[promise.versioned]\nholds = true\nwhy = \"nothing happens\"\nreaches = [{goals}]\n"
        )
    };
    let unreachable = scenario::file::parse("t.toml", &text("\"sentinel-promoted\"")).unwrap();
    let r = run_one(&unreachable, Builtin::Versioned, 1);
    assert_eq!(
        r.failed,
        vec![Invariant::Coverage],
        "{}",
        sim::runner::explain(&r)
    );
    assert!(Invariant::Coverage.harness());
    let v = r.report.verdict(Invariant::Coverage).unwrap();
    assert!(
        v.summary
            .starts_with("harness error: the run never reached coverage goal sentinel-promoted"),
        "{}",
        v.summary
    );
    let cell = sim::expect::Cell::of(&unreachable, &unreachable.promises[0]);
    let mut tally = sim::expect::Tally::default();
    tally.add(1, r.failed.clone());
    let why = tally.judge_harness(&cell).unwrap_err();
    assert!(
        why.contains("a promised coverage goal was never reached on seed 1"),
        "{why}"
    );
    // The run replays from its history alone, held to the same goals.
    let header =
        invariants::history::parse_line(r.history.split(|b| *b == b'\n').next().unwrap(), false)
            .unwrap();
    let invariants::history::Line::Header(h) = header else {
        panic!("no header")
    };
    assert_eq!(
        h.config["goals_required"],
        serde_json::json!(["sentinel-promoted"])
    );
    let reachable = scenario::file::parse("t.toml", &text("\"lease-waited\"")).unwrap();
    let r = run_one(&reachable, Builtin::Versioned, 1);
    assert!(r.failed.is_empty(), "{}", sim::runner::explain(&r));
    assert!(
        r.report.goals.contains_key("lease-waited"),
        "{:?}",
        r.report.goals
    );
}

#[test]
fn every_fault_of_every_scenario_is_observed_taking_effect() {
    for sc in scenario::catalog() {
        let r = run_one(&sc, Builtin::Versioned, 1);
        let v = r.report.verdict(Invariant::FaultEffect).unwrap();
        assert!(!v.fails(), "{}: {}", sc.name, v.summary);
        let text = String::from_utf8(r.history).unwrap();
        let observed = text.matches("\"action\":\"observed\"").count();
        assert_eq!(observed, sc.for_seed(1).plan.steps.len(), "{}", sc.name);
    }
}

/// The random scenario's plans, over a fixed range of seeds and the first past it that draw each
/// partition shape and each kind the range does not: every fault of every kind is observed (a
/// plan that drew a fault whose effect cannot show is the generator's bug).
#[test]
fn every_fault_of_random_plans_is_observed_taking_effect() {
    use chaos::fault::{shape::Shape, Kind, KINDS};
    let sc = scenario::find("random").unwrap();
    let draws = |seed: &u64, hit: &dyn Fn(&Kind) -> bool| {
        (sc.for_seed(*seed).plan.steps.iter()).any(|s| hit(&s.fault.kind))
    };
    // Partition shapes are rarer than kinds: the first seed past 40 that draws each, too; and
    // the first that draws each kind seeds 1-40 do not (the catalog grows; plans are redrawn).
    let mut extra: Vec<u64> = [Shape::Bridge, Shape::MajoritiesRing]
        .iter()
        .map(|&shape| {
            let shaped = |k: &Kind| matches!(k, Kind::Shaped { shape: x, .. } if *x == shape);
            (41..=2000)
                .find(|seed| draws(seed, &shaped))
                .unwrap_or_else(|| panic!("no random seed up to 2000 draws a {shape:?}"))
        })
        .collect();
    for name in KINDS {
        let named = |k: &Kind| k.name() == name;
        if !(1..=40).any(|seed| draws(&seed, &named)) {
            let first = (41..=2000).find(|seed| draws(seed, &named));
            extra.push(first.unwrap_or_else(|| panic!("no random seed up to 2000 draws {name}")));
        }
    }
    let mut kinds = std::collections::BTreeSet::new();
    let mut shapes = std::collections::BTreeSet::new();
    for seed in (1..=40).chain(extra.iter().copied()) {
        let plan = sc.for_seed(seed).plan;
        kinds.extend(plan.steps.iter().map(|s| s.fault.kind.name()));
        shapes.extend(plan.steps.iter().filter_map(|s| match s.fault.kind {
            Kind::Shaped { shape, .. } => Some(shape.name()),
            _ => None,
        }));
        let r = run_one(&sc, Builtin::Versioned, seed);
        let v = r.report.verdict(Invariant::FaultEffect).unwrap();
        assert!(!v.fails(), "random seed {seed}: {}", v.summary);
        let text = String::from_utf8(r.history).unwrap();
        let observed = text.matches("\"action\":\"observed\"").count();
        assert_eq!(observed, plan.steps.len(), "random seed {seed}: {plan:?}");
    }
    assert_eq!(
        kinds.len(),
        chaos::fault::KINDS.len(),
        "seeds 1-40 and {extra:?} draw every kind: {kinds:?}"
    );
    assert_eq!(
        shapes.len(),
        2,
        "seeds {extra:?} draw both shapes: {shapes:?}"
    );
}

/// The end-of-run probe reads the outbox's backlog where the strategy drains it (`durable`), and
/// convergence judges it: drained at T. A strategy without an invalidator leaves no such line.
#[test]
fn a_durable_run_reads_the_outbox_drained_and_a_versioned_run_no_outbox() {
    let sc = scenario::find("fill-race").unwrap();
    let outbox_lines = |h: &[u8]| -> Vec<u64> {
        h.split(|b| *b == b'\n')
            .filter_map(|l| invariants::history::parse_line(l, false).ok())
            .filter_map(|l| match l {
                invariants::history::Line::Outbox(o) => Some(o.undone),
                _ => None,
            })
            .collect()
    };
    let r = run_one(&sc, Builtin::Durable, 1);
    assert_eq!(outbox_lines(&r.history), vec![0]);
    let v = r.report.verdict(Invariant::Convergence).unwrap();
    assert!(v.summary.ends_with("the outbox drained"), "{}", v.summary);
    let r = run_one(&sc, Builtin::Versioned, 1);
    assert!(outbox_lines(&r.history).is_empty());
}
