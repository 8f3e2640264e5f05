//! Shrinking a failing run: fewer faults, shorter faults, fewer app nodes, clients and keys, a
//! shorter workload, while the same seed still fails the same invariant (and every remaining
//! fault is still observed taking effect: a smaller run that only fails because a fault did
//! nothing is not the same failure).
//!
//! The search is greedy, like Jepsen's and proptest's: each round tries every one-step
//! reduction of the current run (on every core), keeps the first that still fails, and stops
//! when none does. Each candidate is a whole simulator run, so the result is a run that
//! really happened: its history, saved beside the seed log, replays with `cargo sim repro`.

use aside::Builtin;
use chaos::fault::{Side, Target};
use chaos::scenario::Scenario;

use crate::pool::par_map;
use crate::runner::{run_one, RunResult};
use invariants::Invariant;

/// Faults shorter than this are not halved again.
const SHORTEST_FAULT_MS: u64 = 50;
/// The workload keeps at least this many keys (one listing and its siblings need a few).
const FEWEST_KEYS: usize = 4;

/// What a shrink came to.
pub struct Shrunk {
    pub scenario: Scenario,
    pub result: RunResult,
    /// Runs tried, the original's included.
    pub runs: usize,
    /// Reductions kept, in order, as a person would say them.
    pub steps: Vec<String>,
}

/// Does `r` still show the failure being shrunk?
fn still_fails(r: &RunResult, invariant: Invariant) -> bool {
    r.failed.contains(&invariant) && !r.failed.iter().any(|f| f.harness())
}

/// Every one-step reduction of `sc`, most valuable first (a fault fewer before a shorter one).
pub fn candidates(sc: &Scenario) -> Vec<(String, Scenario)> {
    let mut out = Vec::new();
    let mut with = |what: String, f: &dyn Fn(&mut Scenario)| {
        let mut c = sc.clone();
        f(&mut c);
        out.push((what, c));
    };
    for (i, step) in sc.plan.steps.iter().enumerate() {
        with(format!("dropped fault {}", step.fault), &|c| {
            c.plan.steps.remove(i);
        });
    }
    for (i, step) in sc.plan.steps.iter().enumerate() {
        if step.for_ms / 2 >= SHORTEST_FAULT_MS {
            with(
                format!("halved fault {} to {} ms", step.fault, step.for_ms / 2),
                &|c| c.plan.steps[i].for_ms /= 2,
            );
        }
    }
    let last_app = sc.apps.saturating_sub(1) as u8;
    let app_in_plan = sc.plan.steps.iter().any(|s| {
        let names_app = |side: Side| side == Side::One(Target::App(last_app));
        names_app(s.fault.target)
            || matches!(s.fault.kind, chaos::fault::Kind::Partition { peers, .. } if names_app(peers))
    });
    if sc.apps > 1 && !app_in_plan {
        with(format!("{} app nodes", sc.apps - 1), &|c| c.apps -= 1);
    }
    if sc.clients_per_app > 1 {
        let n = sc.clients_per_app / 2;
        with(format!("{n} clients per app node"), &|c| {
            c.clients_per_app = n
        });
    }
    let plan_end = sc
        .plan
        .steps
        .iter()
        .map(|s| s.at_ms + s.for_ms)
        .max()
        .unwrap_or(0);
    let shorter = (sc.duration_ms / 2).max(plan_end + 100);
    if shorter < sc.duration_ms {
        with(format!("a {shorter} ms workload"), &|c| {
            c.duration_ms = shorter
        });
    }
    if sc.keys / 2 >= FEWEST_KEYS {
        let n = sc.keys / 2;
        with(format!("{n} keys"), &|c| c.keys = n);
    }
    out
}

/// Shrinks the run of `sc` with `strategy` and `seed`, which fails `invariant`. `None` when the
/// run does not fail it to begin with. `on_round` hears each reduction kept.
pub fn shrink(
    sc: &Scenario,
    strategy: Builtin,
    seed: u64,
    invariant: Invariant,
    mut on_round: impl FnMut(&str),
) -> Option<Shrunk> {
    // A random plan is drawn once, from the seed, and then shrunk like any other.
    let mut sc = sc.for_seed(seed);
    // Coverage goals belong to the scenario as written: a reduction that drops the fault
    // behind one is still the same failure.
    for p in &mut sc.promises {
        p.reaches.clear();
    }
    let sc = &sc;
    let first = run_one(sc, strategy, seed);
    if !still_fails(&first, invariant) {
        return None;
    }
    let mut cur = Shrunk {
        scenario: sc.clone(),
        result: first,
        runs: 1,
        steps: Vec::new(),
    };
    loop {
        let cands = candidates(&cur.scenario);
        if cands.is_empty() {
            return Some(cur);
        }
        let results = par_map(&cands, |(_, c)| run_one(c, strategy, seed));
        cur.runs += cands.len();
        let Some((i, r)) = results
            .into_iter()
            .enumerate()
            .find(|(_, r)| still_fails(r, invariant))
        else {
            return Some(cur);
        };
        let (what, c) = cands.into_iter().nth(i).expect("a candidate per result");
        on_round(&what);
        cur.steps.push(what);
        cur.scenario = c;
        cur.result = r;
    }
}
