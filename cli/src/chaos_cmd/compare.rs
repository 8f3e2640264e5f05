//! `aside chaos compare`: every cell this world runs, --runs times, beside what the simulator
//! promises for it, as the sim-versus-real table in docs/results.md (`--readme FILE` rewrites
//! it; `--promises-only` redoes its simulator column from this commit's scenario files).

use std::path::Path;
use std::process::ExitCode;

use aside::Builtin;
use chaos::scenario;
use containers::run::RunOptions;
use sim::expect::{COMPARE_BEGIN, COMPARE_END};

use super::{prepare, run_cell, summary};

/// One row of the sim-versus-real table.
fn compare_row(sc: &str, st: Builtin, cell: &sim::expect::Cell, containers: &str) -> String {
    let (sim, sim_fails) = sim::expect::promise(cell);
    let agree = containers.starts_with("fails") == sim_fails;
    format!(
        "| `{sc}` | {} | {sim} | {containers} | {} |",
        st.name(),
        if agree { "yes" } else { "**no**" }
    )
}

/// `compare --promises-only`: the README's rows with this commit's simulator column.
pub(super) fn compare_promises_only(runs: u64, readme: Option<&Path>) -> ExitCode {
    let fail = |e: String| {
        eprintln!("aside chaos compare: {e}");
        ExitCode::from(2)
    };
    let Some(file) = readme else {
        return fail("--promises-only rewrites the table in --readme FILE: name the file".into());
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
    };
    let mut rows = Vec::new();
    for (sc, st, line) in readme_rows(&text) {
        let Some(strategy) = Builtin::parse(&st) else {
            return fail(format!("{}: unknown strategy in {line}", file.display()));
        };
        let Some(cell) = sim::expect::cell(&sc, strategy) else {
            continue;
        };
        let Some(containers) = line.split(" | ").nth(3) else {
            return fail(format!(
                "{}: a row without a containers column: {line}",
                file.display()
            ));
        };
        let row = compare_row(&sc, strategy, &cell, containers);
        rows.push((sc, st, row));
    }
    write_compare(file, &text, &rows, runs)
}

/// Writes `rows` as the generated table in `file` (whose text is `text`).
fn write_compare(
    file: &Path,
    text: &str,
    rows: &[(String, String, String)],
    runs: u64,
) -> ExitCode {
    let md = compare_table(rows, runs);
    let new = match sim::expect::splice_between(text, COMPARE_BEGIN, COMPARE_END, &md) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("aside chaos compare: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::write(file, new) {
        eprintln!("aside chaos compare: cannot write {}: {e}", file.display());
        return ExitCode::from(2);
    }
    let disagree = rows.iter().filter(|r| !row_agrees(&r.2)).count();
    ExitCode::from(u8::from(disagree > 0))
}

pub(super) fn compare(
    runs: u64,
    only: &[String],
    strategies: &[String],
    readme: Option<&Path>,
    keep: &Path,
) -> ExitCode {
    let fail = |e: String| {
        eprintln!("aside chaos compare: {e}");
        ExitCode::from(2)
    };
    let (scs, builtins, rt) = match prepare(runs, only, strategies) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    // (scenario, strategy, row): this run's cells.
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for sc in &scs {
        for &st in &builtins {
            let Some(cell) = sim::expect::cell(&sc.name, st) else {
                continue;
            };
            let ran = match run_cell(&rt, sc, st, 1..1 + runs, keep, RunOptions::default(), |r| {
                eprintln!("{}", r.line(&sc.name, st))
            }) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let row = compare_row(&sc.name, st, &cell, &summary(&ran));
            rows.push((sc.name.to_string(), st.name().to_string(), row));
        }
    }
    let md = compare_table(&rows, runs);
    print!("{md}");
    let disagree = rows.iter().filter(|r| !row_agrees(&r.2)).count();
    if let Some(file) = readme {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
        };
        // The README keeps the cells this run did not redo (`--scenario` names some).
        let mut all = readme_rows(&text);
        all.retain(|old| !rows.iter().any(|r| r.0 == old.0 && r.1 == old.1));
        all.extend(rows.iter().cloned());
        let order = |r: &(String, String, String)| {
            let sc = scenario::catalog()
                .iter()
                .position(|s| s.name == r.0)
                .unwrap_or(usize::MAX);
            let st = Builtin::ALL.iter().position(|b| b.name() == r.1);
            (sc, st)
        };
        all.sort_by_key(order);
        return write_compare(file, &text, &all, runs);
    }
    ExitCode::from(u8::from(disagree > 0))
}

/// Does a generated row say the worlds agree?
fn row_agrees(row: &str) -> bool {
    row.trim_end().ends_with("| yes |")
}

/// The sim-versus-real table of `rows`, with its tally.
fn compare_table(rows: &[(String, String, String)], runs: u64) -> String {
    let mut md = String::from(
        "| scenario | strategy | simulator (seeds 1-20) | containers | agree |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        md.push_str(&r.2);
        md.push('\n');
    }
    md.push_str(&format!(
        "\n{} cells, {} disagreeing; {runs} container runs per cell.\n",
        rows.len(),
        rows.iter().filter(|r| !row_agrees(&r.2)).count()
    ));
    md
}

/// The rows of the generated table in `text`: (scenario, strategy, row).
fn readme_rows(text: &str) -> Vec<(String, String, String)> {
    let (Some(b), Some(e)) = (text.find(COMPARE_BEGIN), text.find(COMPARE_END)) else {
        return Vec::new();
    };
    text.get(b..e)
        .unwrap_or("")
        .lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix("| `")?.split(" | ");
            let sc = cells.next()?.strip_suffix('`')?;
            let st = cells.next()?;
            Some((sc.to_string(), st.to_string(), l.to_string()))
        })
        .collect()
}
