//! docs/results.md's sim-versus-real table against this commit: it is the rendering of the
//! recorded comparison (docs/results/compare.json, written by `aside chaos compare`) with the
//! promises of this commit's scenario files, and every cell the containers world can run has a
//! recorded row. The container runs themselves are `aside chaos compare` (nightly, and one
//! failover cell per strategy in `cli/tests/chaos.rs`); this keeps the committed table from
//! drifting.
#![cfg(not(madsim))]

use std::path::Path;

use aside::Builtin;
use sim::compare::{Comparison, DATA};
use sim::expect;

#[test]
fn the_sim_versus_real_table_is_the_recorded_comparison_with_this_commits_promises() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let data = Comparison::load(&Path::new(root).join(DATA)).unwrap();
    let results = std::fs::read_to_string(format!("{root}/docs/results.md")).unwrap();
    let fix = "rerun `aside chaos compare --runs 3 --scenario NAME --readme docs/results.md` for that scenario (or `--promises-only` after a promise changed) and commit both files";
    assert_eq!(
        data.splice(&results).unwrap(),
        results,
        "docs/results.md's sim-versus-real table is not {DATA} with this commit's promises: {fix}"
    );
    assert!(data.runs_per_cell >= 1);
    // Every scenario the containers world runs has a recorded cell per strategy it promises.
    for sc in chaos::scenario::catalog() {
        if containers::run::unsupported(&sc).is_some() {
            continue;
        }
        for st in Builtin::ALL {
            if expect::cell(&sc.name, st).is_some() {
                assert!(
                    data.cells
                        .iter()
                        .any(|c| c.scenario == sc.name && c.strategy == st.name()),
                    "{} / {} runs against containers but has no recorded cell: {fix}",
                    sc.name,
                    st.name()
                );
            }
        }
    }
}
