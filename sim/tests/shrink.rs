#![cfg(madsim)]
//! Shrinking: a failing split-brain run becomes a plan of at most two faults that still fails
//! the same invariant, and its saved history replays.

use aside::Builtin;
use chaos::scenario;
use invariants::Invariant;
use sim::replay::replay;
use sim::runner::save;
use sim::shrink::shrink;

#[test]
fn a_failing_split_brain_run_shrinks_to_at_most_two_faults_and_replays() {
    let sc = scenario::find("split-brain").unwrap();
    assert_eq!(sc.plan.steps.len(), 5);
    let mut kept = Vec::new();
    let s = shrink(&sc, Builtin::Versioned, 1, Invariant::Staleness, |w| {
        kept.push(w.to_string())
    })
    .expect("split-brain / versioned / seed 1 fails staleness");
    assert!(s.result.failed.contains(&Invariant::Staleness));
    assert!(!s.result.failed.contains(&Invariant::FaultEffect));
    let plan: Vec<String> = s
        .scenario
        .plan
        .steps
        .iter()
        .map(|st| format!("{} +{} {}", st.at_ms, st.for_ms, st.fault))
        .collect();
    println!("kept: {kept:#?}\nminimal plan: {plan:?}");
    assert!(plan.len() <= 2, "{plan:?}");
    // The known minimal run, pinned: one short cut between the master and one app node, whose
    // tombstone to Redis fails while it lasts (no fewer clients, keys or milliseconds still
    // fail staleness on this seed).
    assert_eq!(plan, ["1000 +125 partition redis-master <-x-> app-3"]);
    assert_eq!((s.scenario.clients_per_app, s.scenario.keys), (6, 20));

    let dir = std::env::temp_dir().join(format!("aside-shrink-{}", std::process::id()));
    let file = save(&dir, &s.result).unwrap();
    let (same, msg) = replay(&file).unwrap();
    assert!(same, "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_that_does_not_fail_is_not_shrunk() {
    let sc = scenario::find("fill-race").unwrap();
    assert!(shrink(&sc, Builtin::Versioned, 1, Invariant::Staleness, |_| {}).is_none());
}
