//! The generated tables: `cargo sim list`, `table` (every promise over its seeds), `matrix`
//! (figures per cell), `stf` (seeds to first failure), and writing each between its markers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aside::Builtin;
use chaos::scenario::{self, Scenario};

use super::{about, judge_all, scenarios, strategies};
use crate::expect::{self, Cell, Tally};
use crate::pool::{par_map, progress, workers};
use crate::runner::run_one;

pub fn list(cells: bool) -> ExitCode {
    if cells {
        for c in expect::cells() {
            match c.expect {
                expect::Expect::Holds => println!("{} {} holds", c.scenario, c.strategy.name()),
                expect::Expect::Finds(invs) => {
                    println!(
                        "{} {} finds {}{}",
                        &c.scenario,
                        c.strategy.name(),
                        invs.iter().map(|i| i.name()).collect::<Vec<_>>().join(","),
                        if c.buggify { " with-buggify" } else { "" }
                    )
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let w = scenario::NAME_WIDTH;
    for s in scenario::catalog() {
        println!("{:<w$} {}", s.name, s.about);
    }
    println!(
        "strategies: {}",
        Builtin::ALL
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    ExitCode::SUCCESS
}

/// Runs every cell over `seeds` in this process (each run in a fresh runtime), with a progress
/// bar, and returns each cell's tally.
pub fn tally_cells(
    cells: &[Cell],
    seeds: std::ops::RangeInclusive<u64>,
) -> Result<Vec<(Cell, Tally)>, String> {
    let scs: Vec<Scenario> = cells.iter().map(Cell::scenario).collect::<Result<_, _>>()?;
    let jobs: Vec<(usize, u64)> = (0..cells.len())
        .flat_map(|i| seeds.clone().map(move |s| (i, s)))
        .collect();
    let bar = progress(jobs.len() as u64);
    let failed = par_map(&jobs, |&(i, seed)| {
        let r = run_one(&scs[i], cells[i].strategy, seed);
        bar.inc(1);
        r.failed
    });
    bar.finish_and_clear();
    let mut out: Vec<(Cell, Tally)> = cells
        .iter()
        .map(|c| (c.clone(), Tally::default()))
        .collect();
    for (&(i, seed), f) in jobs.iter().zip(failed) {
        out[i].1.add(seed, f);
    }
    Ok(out)
}

pub fn table_cmd(readme: &[PathBuf], check: &[PathBuf]) -> ExitCode {
    let rows = match tally_cells(&expect::cells(), expect::SEEDS) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cargo sim table: {e}");
            return ExitCode::from(2);
        }
    };
    let md = expect::markdown(&rows, about);
    let summary = expect::summary_markdown(&rows);
    print!("{md}");
    let held = judge_all(&rows);
    let blocks = [
        (expect::README_BEGIN, expect::README_END, md.as_str()),
        (expect::SUMMARY_BEGIN, expect::SUMMARY_END, summary.as_str()),
    ];
    let code = files_generated(readme, check, &blocks, "table");
    ExitCode::from(if code > 0 { code } else { u8::from(!held) })
}

/// [`generated`] over every `--readme` (rewrite) and `--check` file: the worst exit code.
fn files_generated(readme: &[PathBuf], check: &[PathBuf], blocks: &[Block], cmd: &str) -> u8 {
    let rewrite = readme.iter().map(|f| generated(f, blocks, false, cmd));
    let checked = check.iter().map(|f| generated(f, blocks, true, cmd));
    rewrite.chain(checked).max().unwrap_or(0)
}

/// The promises' cells of the scenarios and strategies named (all when none is).
fn promised_cells(
    scenario_names: &[String],
    strategy_names: &[String],
) -> Result<Vec<Cell>, String> {
    let scs = scenarios(scenario_names, &[])?;
    let sts = strategies(strategy_names)?;
    Ok(expect::cells()
        .into_iter()
        .filter(|c| scs.iter().any(|s| s.name == c.scenario) && sts.contains(&c.strategy))
        .collect())
}

pub fn matrix_cmd(
    seeds: std::ops::RangeInclusive<u64>,
    scenario_names: &[String],
    strategy_names: &[String],
    json: bool,
    readme: &[PathBuf],
    check: &[PathBuf],
) -> ExitCode {
    let fail = |e: String| {
        eprintln!("cargo sim matrix: {e}");
        ExitCode::from(2)
    };
    let cells = match promised_cells(scenario_names, strategy_names) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let began = std::time::Instant::now();
    let rows = match crate::matrix::run(&cells, seeds.clone()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    eprintln!(
        "cargo sim matrix: {} cells x {} seeds in {:.1} s wall, {} at a time",
        cells.len(),
        seeds.clone().count(),
        began.elapsed().as_secs_f64(),
        workers()
    );
    let md = crate::matrix::markdown(&rows, &seeds);
    if json {
        for r in &rows {
            println!("{}", r.to_json());
        }
    } else {
        print!("{md}\n{}", crate::matrix::coverage(&rows).markdown());
    }
    let tallies: Vec<(Cell, expect::Tally)> = rows
        .iter()
        .map(|r| (r.cell.clone(), r.tally.clone()))
        .collect();
    let held = judge_all(&tallies);
    let blocks = [(
        crate::matrix::README_BEGIN,
        crate::matrix::README_END,
        md.as_str(),
    )];
    let code = files_generated(readme, check, &blocks, "matrix");
    ExitCode::from(if code > 0 { code } else { u8::from(!held) })
}

/// `cargo sim coverage`: every promise's cell over `seeds`, and the coverage table of what their
/// runs reached. Exit 1 when a goal is reached by no run of the whole catalog (or a generated
/// table is out of date with `check`), 2 on bad input.
pub fn coverage_cmd(
    seeds: std::ops::RangeInclusive<u64>,
    scenario_names: &[String],
    strategy_names: &[String],
    readme: &[PathBuf],
    check: &[PathBuf],
) -> ExitCode {
    let fail = |e: String| {
        eprintln!("cargo sim coverage: {e}");
        ExitCode::from(2)
    };
    let cells = match promised_cells(scenario_names, strategy_names) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let rows = match crate::matrix::run(&cells, seeds.clone()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let cov = crate::matrix::coverage(&rows);
    let md = cov.document(&seeds);
    print!("{md}");
    let blocks = [(
        crate::coverage::README_BEGIN,
        crate::coverage::README_END,
        md.as_str(),
    )];
    let code = files_generated(readme, check, &blocks, "coverage");
    let unreached = cov.unreached();
    for g in &unreached {
        eprintln!(
            "cargo sim coverage: no run reached {g} ({}): add a scenario whose plan reaches it",
            g.about()
        );
    }
    // Only the whole catalog is held to every goal: one scenario reaches a few.
    let whole = scenario_names.is_empty() && strategy_names.is_empty();
    ExitCode::from(if code > 0 {
        code
    } else {
        u8::from(whole && !unreached.is_empty())
    })
}

/// A generated block: its begin and end markers and its Markdown.
type Block<'a> = (&'a str, &'a str, &'a str);

/// Rewrites (or with `check`, compares) every block of `blocks` whose begin marker `file` holds;
/// a file that holds none is an error. Exit code: 0 done, 1 out of date (check), 2 bad input.
fn generated(file: &Path, blocks: &[Block], check: bool, cmd: &str) -> u8 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cargo sim {cmd}: cannot read {}: {e}", file.display());
            return 2;
        }
    };
    let present: Vec<&Block> = blocks.iter().filter(|b| text.contains(b.0)).collect();
    if present.is_empty() {
        eprintln!(
            "cargo sim {cmd}: {} holds no table of this command: put `{}` and `{}` on their own lines where it goes",
            file.display(),
            blocks[0].0,
            blocks[0].1
        );
        return 2;
    }
    let mut new = text.clone();
    for (begin, end, md) in present {
        new = match expect::splice_between(&new, begin, end, md) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("cargo sim {cmd}: {}: {e}", file.display());
                return 2;
            }
        };
    }
    if new == text {
        return 0;
    }
    if check {
        eprintln!(
            "cargo sim {cmd}: the table in {} is not this commit's: run `cargo sim {cmd} --readme {}` and commit it",
            file.display(),
            file.display()
        );
        return 1;
    }
    if let Err(e) = std::fs::write(file, new) {
        eprintln!("cargo sim {cmd}: cannot write {}: {e}", file.display());
        return 2;
    }
    eprintln!("cargo sim {cmd}: updated the table in {}", file.display());
    0
}

/// `cargo sim stf`: seeds to first failure of every finding, without and with BUGGIFY.
pub fn stf_cmd(readme: &[PathBuf], check: &[PathBuf]) -> ExitCode {
    let began = std::time::Instant::now();
    let md = crate::stf::markdown(&crate::stf::rows());
    print!("{md}");
    let mutants = crate::mutants::table(crate::stf::MAX_SEEDS);
    print!("\n{mutants}");
    eprintln!(
        "cargo sim stf: {:.1} s wall, {} at a time",
        began.elapsed().as_secs_f64(),
        workers()
    );
    let blocks = [
        (
            crate::stf::README_BEGIN,
            crate::stf::README_END,
            md.as_str(),
        ),
        (
            crate::mutants::README_BEGIN,
            crate::mutants::README_END,
            mutants.as_str(),
        ),
    ];
    ExitCode::from(files_generated(readme, check, &blocks, "stf"))
}
