//! docs/results.md's sim-versus-real table (written by `aside chaos compare`) against this commit: its
//! simulator column is what the scenario files promise, its `agree` column follows from the two
//! verdict classes, its tally counts its rows, and every cell the containers world can run has a
//! row. The container runs themselves are `aside chaos compare` (nightly, and one failover
//! cell per strategy in `cli/tests/chaos.rs`); this keeps the committed table from drifting.
#![cfg(not(madsim))]

use aside::Builtin;
use sim::expect::{self, COMPARE_BEGIN, COMPARE_END};

#[test]
fn the_sim_versus_real_table_matches_this_commits_promises() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/results.md"))
            .expect("docs/results.md");
    let b = readme
        .find(COMPARE_BEGIN)
        .expect("the table's begin marker");
    let e = readme.find(COMPARE_END).expect("the table's end marker");
    let table = &readme[b..e];
    let fix = "rerun `aside chaos compare --runs 3 --scenario NAME --readme docs/results.md` for that scenario and commit it";
    let mut rows = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let [sc, st, sim, real, agree] = cells[..] else {
            panic!("a row of five cells expected: {line}");
        };
        let sc = sc.trim_matches('`');
        let strategy = Builtin::parse(st).unwrap_or_else(|| panic!("strategy {st:?} in {line}"));
        let cell = expect::cell(sc, strategy)
            .unwrap_or_else(|| panic!("{sc} / {st} has no promise in its scenario file: {fix}"));
        let (promised, sim_fails) = expect::promise(&cell);
        assert_eq!(
            sim, promised,
            "{sc} / {st}: docs/results.md says the simulator {sim:?}, its scenario file now says {promised:?}: {fix}"
        );
        let real_fails = if real.starts_with("fails on ") {
            true
        } else {
            assert!(real.starts_with("holds on "), "{line}");
            false
        };
        let agrees = real_fails == sim_fails;
        assert_eq!(
            agree,
            if agrees { "yes" } else { "**no**" },
            "{sc} / {st}: {line}"
        );
        rows.push((sc.to_string(), strategy, agrees));
    }
    let disagree = rows.iter().filter(|r| !r.2).count();
    let tally = format!("{} cells, {disagree} disagreeing;", rows.len());
    assert!(
        table.contains(&tally),
        "the tally under the table should say {tally:?}"
    );
    // Every scenario the containers world runs has a row per strategy with a promise.
    for sc in chaos::scenario::catalog() {
        if containers::run::unsupported(&sc).is_some() {
            continue;
        }
        for st in Builtin::ALL {
            if expect::cell(&sc.name, st).is_some() {
                assert!(
                    rows.iter().any(|r| r.0 == sc.name && r.1 == st),
                    "{} / {} runs against containers but has no row: {fix}",
                    sc.name,
                    st.name()
                );
            }
        }
    }
}
