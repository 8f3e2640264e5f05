//! Replays one run inside `#[madsim::test]`, seeded by MADSIM_TEST_SEED: the form of
//! reproduction that a debugger or `MADSIM_TEST_CHECK_DETERMINISM` can be pointed at.
//!
//! `ASIDE_SCENARIO=fill-race ASIDE_STRATEGY=naive MADSIM_TEST_SEED=7 cargo sim-test --test replay`
#![cfg(madsim)]

use aside::Builtin;
use sim::scenario;

#[madsim::test]
async fn replay() {
    let sc =
        scenario::find(&std::env::var("ASIDE_SCENARIO").unwrap_or_else(|_| "fill-race".into()))
            .expect("scenario");
    let st =
        Builtin::parse(&std::env::var("ASIDE_STRATEGY").unwrap_or_else(|_| "versioned".into()))
            .expect("strategy");
    let seed = madsim::runtime::Handle::current().seed();
    let out = sim::world::simulate(&sc, st, seed).await;
    let report = invariants::check_str(std::str::from_utf8(&out.history).unwrap(), &[]).unwrap();
    let lines = invariants::report::read_lines;
    let _ = lines;
    print!("{}", report.table(&Default::default()));
    println!("trace hash {}", sim::seedlog::trace_hash(&out.history));
    let lat: Vec<u64> = out
        .history
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|v| v["source"] == "l1")
        .map(|v| v["complete_ns"].as_u64().unwrap() - v["invoke_ns"].as_u64().unwrap())
        .collect();
    println!("l1 hits: {} min {:?}", lat.len(), lat.iter().min());
}
