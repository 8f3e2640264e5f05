//! `aside chaos`'s runner with a strategy of the user's own, against real servers in
//! containers: the same cell runner the command uses for the built-ins runs it, keeps its
//! history under its own name, and the checkers catch its bug.

use std::future::Future;

use aside::tier::{MemcachedLike, RedisLike, TierResult};
use aside::{Builtin, Strategy};
use containers::run::RunOptions;
use invariants::Invariant;

use super::{run_cell, runtime};

/// A user's strategy, written outside the library, with a bug: `versioned`'s fills and L2
/// invalidation, but its L1 invalidation forgets to do anything.
#[derive(Clone)]
struct ForgetsL1;

impl Strategy for ForgetsL1 {
    fn name(&self) -> &str {
        "forgets-l1"
    }
    fn fill_l1<R: RedisLike>(
        &self,
        l1: &R,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_ms: u64,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        Builtin::Versioned.fill_l1(l1, key, entry, version, ttl_ms)
    }
    fn fill_l2<M: MemcachedLike>(
        &self,
        node: &M,
        key: &str,
        entry: &[u8],
        version: u64,
        ttl_s: u32,
    ) -> impl Future<Output = TierResult<bool>> + Send {
        Builtin::Versioned.fill_l2(node, key, entry, version, ttl_s)
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
        node: &M,
        key: &str,
        version: Option<u64>,
        tombstone_ttl_s: u32,
    ) -> impl Future<Output = TierResult<()>> + Send {
        Builtin::Versioned.invalidate_l2(node, key, version, tombstone_ttl_s)
    }
}

#[test]
fn a_strategy_of_your_own_runs_against_the_containers_and_its_bug_is_caught() {
    let rt = runtime().expect("a runtime");
    let keep = tempfile::tempdir().unwrap();
    let sc = chaos::scenario::find("fill-race").unwrap();
    let mut lines = Vec::new();
    let ran = run_cell(
        &rt,
        &sc,
        ForgetsL1,
        1..2,
        keep.path(),
        RunOptions::default(),
        |r| lines.push(r.line(&sc.name, &ForgetsL1)),
    )
    .expect("the run");
    let r = &ran[0];
    println!("{}", lines[0]);
    assert!(lines[0].starts_with("fill-race / forgets-l1 / seed 1:"));
    assert!(r.ops > 100, "{} ops", r.ops);
    let history = std::fs::read_to_string(&r.file).unwrap();
    assert!(
        history.contains("\"world\":\"containers\"")
            && history.contains("\"strategy\":\"forgets-l1\"")
    );
    assert!(
        r.failed.contains(&Invariant::Staleness),
        "a strategy that never invalidates L1 passed: {:?}",
        r.failed
    );
    // Its app nodes run in this process; a scenario whose app nodes need containers of their
    // own (they run the `aside` binary, which knows the built-ins only) is one line, no cluster.
    let split = chaos::scenario::find("split-brain").unwrap();
    let e = run_cell(
        &rt,
        &split,
        ForgetsL1,
        1..2,
        keep.path(),
        RunOptions::default(),
        |_| {},
    )
    .err()
    .expect("refused");
    assert!(e.contains("a strategy of your own (forgets-l1)"), "{e}");
    assert_eq!(e.lines().count(), 1);
}
