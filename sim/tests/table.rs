//! Every promise of the README's results table, over its fixed seeds: a strategy that stops
//! holding where the table says it holds fails here, and so does a harness that stops finding a
//! bug the table says it finds. The README's table must be the one these runs print.
#![cfg(madsim)]

use sim::expect;

/// The same runs give the results table and the strategy matrix, so both are checked here.
#[test]
fn every_cell_of_the_results_table_keeps_its_promise_and_the_readme_shows_these_runs() {
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
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let text = std::fs::read_to_string(readme).unwrap();
    assert_eq!(
        expect::splice(&text, &md).unwrap(),
        text,
        "README.md's results table is not this commit's: run `cargo sim table --readme README.md` and commit it"
    );
    let matrix = sim::matrix::markdown(&figures, &expect::SEEDS);
    assert_eq!(
        expect::splice_between(
            &text,
            sim::matrix::README_BEGIN,
            sim::matrix::README_END,
            &matrix
        )
        .unwrap(),
        text,
        "README.md's strategy matrix is not this commit's: run `cargo sim matrix --seeds 20 --readme README.md` and commit it"
    );
}

/// The README's seeds-to-first-failure table is the one `cargo sim stf` prints at this commit.
#[test]
fn the_readme_shows_this_commits_seeds_to_first_failure() {
    let md = sim::stf::markdown(&sim::stf::rows());
    print!("{md}");
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let text = std::fs::read_to_string(readme).unwrap();
    assert_eq!(
        expect::splice_between(&text, sim::stf::README_BEGIN, sim::stf::README_END, &md).unwrap(),
        text,
        "README.md's seeds-to-first-failure table is not this commit's: run `cargo sim stf --readme README.md` and commit it"
    );
}
