//! `aside chaos compare`: every cell this world runs, --runs times, beside what the simulator
//! promises for it, as the sim-versus-real table in docs/results.md (`--readme FILE` rewrites
//! it; `--promises-only` redoes its simulator column from this commit's scenario files).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use containers::run::RunOptions;
use sim::compare::{Comparison, Measured, DATA};

use super::{prepare, run_cell, summary};

/// The comparison's data file for the table in `readme`: `docs/results/compare.json` when the
/// table is `docs/results.md`, i.e. `results/compare.json` beside it.
fn data_for(readme: &Path) -> PathBuf {
    let name = Path::new(DATA)
        .strip_prefix("docs")
        .expect("DATA is under docs/");
    readme.parent().unwrap_or(Path::new(".")).join(name)
}

/// Renders `readme`'s table from `data`; exit 1 when a cell disagrees, 2 on bad input.
fn render(readme: &Path, data: &Comparison) -> ExitCode {
    let fail = |e: String| {
        eprintln!("aside chaos compare: {e}");
        ExitCode::from(2)
    };
    let text = match std::fs::read_to_string(readme) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", readme.display())),
    };
    let new = match data.splice(&text) {
        Ok(n) => n,
        Err(e) => return fail(format!("{}: {e}", readme.display())),
    };
    if let Err(e) = std::fs::write(readme, new) {
        return fail(format!("cannot write {}: {e}", readme.display()));
    }
    let disagree = data
        .rows()
        .map(|rows| rows.iter().filter(|r| !r.agrees).count())
        .unwrap_or(0);
    ExitCode::from(u8::from(disagree > 0))
}

/// `compare --promises-only`: the recorded comparison rendered with this commit's promises.
pub(super) fn compare_promises_only(readme: Option<&Path>) -> ExitCode {
    let Some(file) = readme else {
        eprintln!(
            "aside chaos compare: --promises-only renders the table in --readme FILE: name the file"
        );
        return ExitCode::from(2);
    };
    match Comparison::load(&data_for(file)) {
        Ok(data) => render(file, &data),
        Err(e) => {
            eprintln!("aside chaos compare: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where `compare` puts what it ran.
pub(super) enum Output<'a> {
    /// Print the table; exit 1 when a cell disagrees.
    Stdout,
    /// Record the cells beside this file and render its table; exit 1 when a cell disagrees.
    Readme(&'a Path),
    /// Print the table, write the cells to this file, exit 0 (the nightly triage judges).
    Save(&'a Path),
}

pub(super) fn compare(
    runs: u64,
    only: &[String],
    strategies: &[String],
    to: Output<'_>,
    keep: &Path,
    budget: Option<std::time::Duration>,
) -> ExitCode {
    let fail = |e: String| {
        eprintln!("aside chaos compare: {e}");
        ExitCode::from(2)
    };
    let (scs, builtins, rt) = match prepare(runs, only, strategies) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let mut cells: Vec<Measured> = Vec::new();
    let began = std::time::Instant::now();
    let mut skipped: Vec<String> = Vec::new();
    for sc in &scs {
        for &st in &builtins {
            if sim::expect::cell(&sc.name, st).is_none() {
                continue;
            }
            if budget.is_some_and(|b| began.elapsed() >= b) {
                skipped.push(format!("{} / {}", sc.name, st.name()));
                continue;
            }
            let ran = match run_cell(&rt, sc, st, 1..1 + runs, keep, RunOptions::default(), |r| {
                eprintln!("{}", r.line(&sc.name, &st))
            }) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            cells.push(Measured {
                scenario: sc.name.clone(),
                strategy: st.name().to_string(),
                containers: summary(&ran),
            });
        }
    }
    if !skipped.is_empty() {
        let min = budget.map_or(0, |b| b.as_secs() / 60);
        eprintln!(
            "aside chaos compare: the budget of {min} min was spent: {} cells not started ({})",
            skipped.len(),
            skipped.join(", ")
        );
        if matches!(to, Output::Readme(_)) {
            return fail("--budget-min left cells unrun: record a comparison with every cell (drop --budget-min)".into());
        }
    }
    let this_run = Comparison {
        runs_per_cell: runs,
        cells: cells.clone(),
        skipped,
    };
    match this_run.markdown() {
        Ok(md) => print!("{md}"),
        Err(e) => return fail(e),
    }
    let file = match to {
        Output::Stdout => {
            let disagree = this_run
                .rows()
                .map(|rows| rows.iter().filter(|r| !r.agrees).count())
                .unwrap_or(0);
            return ExitCode::from(u8::from(disagree > 0));
        }
        Output::Save(f) => {
            return match this_run.save(f) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Output::Readme(f) => f,
    };
    // The recorded cells this run did not redo (`--scenario` names some) are kept.
    let data_file = data_for(file);
    let recorded = match Comparison::load(&data_file) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let all = recorded.merged(cells, runs);
    if let Err(e) = all.save(&data_file) {
        return fail(e);
    }
    render(file, &all)
}
