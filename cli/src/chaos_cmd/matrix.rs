//! `aside chaos matrix`: the figures `cargo sim matrix` prints, for every cell this world runs.

use std::path::Path;
use std::process::ExitCode;

use containers::run::RunOptions;

use super::{prepare, run_cell};

/// `aside chaos matrix`: the simulator's matrix, from real servers.
pub(super) fn matrix(
    runs: u64,
    only: &[String],
    strategies: &[String],
    json: bool,
    keep: &Path,
) -> ExitCode {
    let fail = |e: String| {
        eprintln!("aside chaos matrix: {e}");
        ExitCode::from(2)
    };
    let (scs, builtins, rt) = match prepare(runs, only, strategies) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let mut rows = Vec::new();
    for sc in &scs {
        for &st in &builtins {
            let Some(mut cell) = sim::expect::cell(&sc.name, st) else {
                continue;
            };
            // This world has no BUGGIFY.
            cell.buggify = false;
            let ran = match run_cell(&rt, sc, st, 1..1 + runs, keep, RunOptions::default(), |r| {
                eprintln!("{}", r.line(&sc.name, &st))
            }) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let mut f = sim::matrix::CellFigures::new(cell);
            for r in &ran {
                f.add(r.seed, r.failed.clone(), sim::matrix::figures(&r.report));
            }
            if json {
                println!("{}", f.to_json());
            }
            rows.push(f);
        }
    }
    if !json {
        print!(
            "{}",
            sim::matrix::markdown_with(
                &rows,
                &format!("Seeds 1 to {runs} per cell against containers. Replay a seed: `aside chaos --scenario SCENARIO --strategy STRATEGY --first-seed N`.")
            )
        );
    }
    ExitCode::from(u8::from(rows.iter().any(|r| !r.tally.failures.is_empty())))
}
