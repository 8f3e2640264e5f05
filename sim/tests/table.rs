//! Every promise of the README's results table, over its fixed seeds: a strategy that stops
//! holding where the table says it holds fails here, and so does a harness that stops finding a
//! bug the table says it finds. The README's table must be the one these runs print.
#![cfg(madsim)]

use sim::campaign::tally_cells;
use sim::expect;

#[test]
fn every_cell_of_the_results_table_keeps_its_promise_and_the_readme_shows_these_runs() {
    let rows = tally_cells(&expect::cells(), expect::SEEDS).unwrap();
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
