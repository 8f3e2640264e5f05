//! Replays one run inside `#[madsim::test]`, seeded by MADSIM_TEST_SEED (and repeated for
//! MADSIM_TEST_NUM seeds): the form of reproduction a debugger or MADSIM_TEST_CHECK_DETERMINISM
//! can be pointed at.
//!
//! `ASIDE_SCENARIO=fill-race ASIDE_STRATEGY=naive MADSIM_TEST_SEED=7 cargo sim-test --test replay -- --nocapture`
#![cfg(madsim)]

use aside::Builtin;
use sim::scenario;

#[madsim::test]
async fn replay() {
    let sc =
        scenario::find(&std::env::var("ASIDE_SCENARIO").unwrap_or_else(|_| "fill-race".into()))
            .expect("ASIDE_SCENARIO");
    let st =
        Builtin::parse(&std::env::var("ASIDE_STRATEGY").unwrap_or_else(|_| "versioned".into()))
            .expect("ASIDE_STRATEGY");
    let seed = madsim::runtime::Handle::current().seed();
    let out = sim::world::simulate(&sc, st, seed).await;
    let report = invariants::check_str(std::str::from_utf8(&out.history).unwrap(), &[]).unwrap();
    print!("{}", report.table(&Default::default()));
    assert!(out.ops > 0, "the run recorded no op");
    assert!(
        report
            .verdict("convergence")
            .and_then(|v| v.get("probes"))
            .is_some_and(|p| *p != invariants::Figure::Count(0)),
        "the run took no probe"
    );
    println!(
        "{} / {} / seed {seed}: trace hash {}",
        sc.name,
        st.name(),
        sim::seedlog::trace_hash(&out.history)
    );
}
