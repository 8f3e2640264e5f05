//! Every promise of the results table, over its fixed seeds: a strategy that stops holding where
//! a scenario file says it holds fails here, and so does a harness that stops finding a bug the
//! file says it finds. docs/results.md and the README's summary must be what these runs print.
#![cfg(madsim)]

use sim::expect;

fn doc(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `text` is unchanged with the block between `begin` and `end` replaced by `md`.
fn shows(text: &str, (begin, end): (&str, &str), md: &str, file: &str, cmd: &str) {
    assert_eq!(
        expect::splice_between(text, begin, end, md).unwrap(),
        text,
        "{file}'s generated table is not this commit's: run `{cmd} --readme {file}` and commit it"
    );
}

/// The same runs give the results table, its README summary and the strategy matrix, so all are
/// checked here.
#[test]
fn every_cell_of_the_results_table_keeps_its_promise_and_the_docs_show_these_runs() {
    let figures = sim::matrix::run(&expect::cells(), expect::SEEDS).unwrap();
    let rows: Vec<(expect::Cell, expect::Tally)> = figures
        .iter()
        .map(|f| (f.cell.clone(), f.tally.clone()))
        .collect();
    let broken: Vec<String> = rows.iter().filter_map(|(c, t)| t.judge(c).err()).collect();
    let md = expect::markdown(&rows, |s| {
        chaos::scenario::find(s).unwrap().about.to_string()
    });
    print!("{md}");
    assert!(broken.is_empty(), "broken promises:\n{}", broken.join("\n"));
    let results = doc("docs/results.md");
    let table = (expect::README_BEGIN, expect::README_END);
    shows(&results, table, &md, "docs/results.md", "cargo sim table");
    let summary = (expect::SUMMARY_BEGIN, expect::SUMMARY_END);
    let readme = doc("README.md");
    let short = expect::summary_markdown(&rows);
    shows(&readme, summary, &short, "README.md", "cargo sim table");
    let matrix = sim::matrix::markdown(&figures, &expect::SEEDS);
    let markers = (sim::matrix::README_BEGIN, sim::matrix::README_END);
    shows(
        &results,
        markers,
        &matrix,
        "docs/results.md",
        "cargo sim matrix --seeds 20",
    );
    // The coverage table of the same runs: every goal reached by some cell's run.
    let coverage = sim::matrix::coverage(&figures);
    let markers = (sim::coverage::README_BEGIN, sim::coverage::README_END);
    shows(
        &doc("docs/coverage.md"),
        markers,
        &coverage.document(&expect::SEEDS),
        "docs/coverage.md",
        "cargo sim coverage --seeds 20",
    );
    assert!(coverage.unreached().is_empty(), "{}", coverage.summary());
}

/// `cargo sim stf`'s table between `markers` in docs/results.md is `md`.
fn results_show_stf(markers: (&str, &str), md: &str) {
    print!("{md}");
    let file = "docs/results.md";
    shows(&doc(file), markers, md, file, "cargo sim stf");
}

/// Each of the library's safeguards dropped in turn (`aside::mutant`) is caught within
/// [`sim::stf::GOAL`] seeds of the cell named for it (`sim::mutants::CATCHES`), or, documented as
/// surviving, is not; and the mutants table is the one `cargo sim stf` prints at this commit (the
/// same runs). A campaign that stays green with a safeguard gone would prove nothing about it.
#[test]
fn every_mutant_is_caught_as_documented_and_the_docs_show_its_seeds_to_first_failure() {
    let found = sim::mutants::found(sim::stf::MAX_SEEDS);
    let judged: Vec<Result<String, String>> = found
        .iter()
        .map(|(c, f)| sim::mutants::judge(c, f))
        .collect();
    for ok in judged.iter().flatten() {
        println!("{ok}");
    }
    let broken: Vec<&String> = judged.iter().filter_map(|j| j.as_ref().err()).collect();
    assert!(broken.is_empty(), "{broken:#?}");
    let md = sim::mutants::markdown(&found, sim::stf::MAX_SEEDS);
    results_show_stf((sim::mutants::README_BEGIN, sim::mutants::README_END), &md);
}

/// Every mutant's cell holds without the mutant: its catch is the safeguard's, not the cell's.
#[test]
fn every_mutant_has_a_cell_whose_strategy_holds_there_unmutated() {
    use aside::mutant::Mutant;
    use sim::expect::Expect;
    use sim::mutants::{catch_of, CATCHES};
    for m in Mutant::ALL {
        let c = catch_of(m);
        assert!(
            chaos::scenario::find(c.scenario).is_ok(),
            "{m}: {}",
            c.scenario
        );
        let cell = expect::cells()
            .into_iter()
            .find(|cell| cell.scenario == c.scenario && cell.strategy == c.strategy)
            .unwrap_or_else(|| panic!("{m}: no cell {} / {}", c.scenario, c.strategy.name()));
        assert_eq!(
            cell.expect,
            Expect::Holds,
            "{m}: the cell must hold unmutated"
        );
    }
    assert_eq!(CATCHES.len(), Mutant::ALL.len());
}

/// The seeds-to-first-failure table is the one `cargo sim stf` prints at this commit.
#[test]
fn the_docs_show_this_commits_seeds_to_first_failure() {
    let md = sim::stf::markdown(&sim::stf::rows());
    results_show_stf((sim::stf::README_BEGIN, sim::stf::README_END), &md);
}
