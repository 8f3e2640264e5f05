//! `cargo test` with seeds, as madsim users expect: `MADSIM_TEST_SEED=S` (and `MADSIM_TEST_NUM=N`
//! for S..S+N) on this test runs exactly the runs `cargo sim --scenario X --strategy Y --seed S`
//! runs: the same function (`sim::run::run`) with the scenario's network configuration and time
//! limit, so the same history and trace hash. It prints each run's report with its witness and
//! trace hash, and fails when a gating invariant fails. `MADSIM_TEST_CHECK_DETERMINISM` runs each
//! seed twice and compares. Without `MADSIM_TEST_SEED` it runs seed 1, never a clock-derived seed.
//!
//! `ASIDE_SCENARIO=fill-race ASIDE_STRATEGY=naive MADSIM_TEST_SEED=7 cargo sim-test --test replay -- --nocapture`
//! (`ASIDE_BUGGIFY=1` for a run of `cargo sim --buggify`)
#![cfg(madsim)]

use aside::Builtin;
use chaos::scenario;
use sim::runner::{explain, replay_commands_with, run_one};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str, default: u64) -> u64 {
    var(name).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number: give an unsigned integer"))
    })
}

#[test]
fn replay() {
    for fixed_by_the_scenario in ["MADSIM_TEST_CONFIG", "MADSIM_TEST_TIME_LIMIT"] {
        assert!(
            var(fixed_by_the_scenario).is_none(),
            "{fixed_by_the_scenario} is set, but a scenario fixes its own network configuration and time limit (as `cargo sim` does): unset it"
        );
    }
    let mut sc = scenario::find(&var("ASIDE_SCENARIO").unwrap_or_else(|| "fill-race".into()))
        .unwrap_or_else(|e| panic!("ASIDE_SCENARIO: {e}"));
    // `cargo sim --buggify`'s runs.
    sc.buggify = var("ASIDE_BUGGIFY").is_some_and(|v| v != "0");
    let st = var("ASIDE_STRATEGY").unwrap_or_else(|| "versioned".into());
    let st = Builtin::parse(&st).unwrap_or_else(|| {
        panic!(
            "ASIDE_STRATEGY={st:?} is not a strategy: use one of {}",
            Builtin::ALL.map(|b| b.name()).join(", ")
        )
    });
    let first = number("MADSIM_TEST_SEED", 1);
    let count = number("MADSIM_TEST_NUM", 1).max(1);
    let twice = var("MADSIM_TEST_CHECK_DETERMINISM").is_some();
    let mut failing = Vec::new();
    for seed in first..first.saturating_add(count) {
        let r = run_one(&sc, st, seed);
        print!("{}", explain(&r));
        println!(
            "{} / {} / seed {seed}: trace hash {}",
            sc.name,
            st.name(),
            r.trace_hash
        );
        if twice {
            let again = run_one(&sc, st, seed);
            assert_eq!(
                again.trace_hash, r.trace_hash,
                "seed {seed} is not deterministic"
            );
            assert!(again.history == r.history);
        }
        assert!(r.ops > 0, "seed {seed}: the run recorded no op");
        if !r.failed.is_empty() {
            println!(
                "seed {seed} fails {}\n{}",
                invariants::invariant::join(&r.failed),
                replay_commands_with(&sc.name, st.name(), seed, sc.buggify, None, None)
            );
            failing.push(seed);
        }
    }
    assert!(
        failing.is_empty(),
        "{} / {}: gating invariants fail on seeds {failing:?} (reports above)",
        sc.name,
        st.name()
    );
}

/// The test's run and `cargo sim`'s are one run: the same trace hash as the binary prints.
#[test]
fn a_seed_here_is_the_same_run_as_cargo_sim_with_that_seed() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
        .args([
            "--scenario",
            "fill-race",
            "--strategy",
            "naive",
            "--seed",
            "3",
            "--json",
        ])
        .args(["--out", std::env::temp_dir().to_str().unwrap()])
        .output()
        .unwrap();
    let line: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    let r = run_one(&scenario::find("fill-race").unwrap(), Builtin::Naive, 3);
    assert_eq!(line["trace_hash"].as_str(), Some(r.trace_hash.as_str()));
    assert_eq!(line["holds"].as_bool(), Some(r.failed.is_empty()));
    // fill-race promises that naive fails: a failing seed keeps the promise, and exits 0.
    assert_eq!(out.status.code(), Some(0));
}
