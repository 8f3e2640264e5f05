//! `cargo sim nightly`: every promise over a window of seeds, one child process per seed
//! (madsim's statics leak between seeds in one process); every failure with its replay command.

use std::path::Path;
use std::process::ExitCode;

use invariants::invariant::join;
use invariants::Invariant;

use super::judge_all;
use crate::expect::{self, Cell, Tally};
use crate::pool::{par_map, progress};
use crate::runner::replay_commands_with;

/// One seed in a child process of this binary: its failing invariants.
fn run_child(c: &Cell, seed: u64, out: &Path) -> Result<Vec<Invariant>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let o = std::process::Command::new(exe)
        .args([
            "--scenario",
            &c.scenario,
            "--strategy",
            c.strategy.name(),
            "--json",
        ])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(out)
        .args(c.buggify.then_some("--buggify"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run a seed in a child process: {e}"))?;
    let line = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| {
        format!(
            "{} / {} / seed {seed}: the child printed no result ({e}; exit {:?}): replay it with `cargo sim --scenario {} --strategy {} --seed {seed}`",
            c.scenario, c.strategy.name(), o.status.code(), c.scenario, c.strategy.name()
        )
    })?;
    v["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Invariant::parse(x.as_str().unwrap_or_default()))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or(Ok(Vec::new()))
        .map_err(|e| {
            format!(
                "{} / {} / seed {seed}: the child's result: {e}",
                c.scenario,
                c.strategy.name()
            )
        })
}

pub fn nightly(seeds: u64, first: u64, out: &Path) -> ExitCode {
    let cells = expect::cells();
    let range = first..=first.saturating_add(seeds.max(1) - 1);
    println!(
        "cargo sim nightly: {} cells x seeds {}..={} ({} runs), one process per seed, on every core",
        cells.len(),
        range.start(),
        range.end(),
        cells.len() as u64 * seeds
    );
    let jobs: Vec<(usize, u64)> = (0..cells.len())
        .flat_map(|i| range.clone().map(move |s| (i, s)))
        .collect();
    let bar = progress(jobs.len() as u64);
    let results = par_map(&jobs, |&(i, seed)| {
        let c = &cells[i];
        let r = run_child(c, seed, out);
        match &r {
            Ok(failed) if !failed.is_empty() => {
                let log = out.join(format!("{}-{}-{seed}.jsonl", c.scenario, c.strategy.name()));
                let name = c.strategy.name();
                bar.suspend(|| {
                    println!("FAIL {} {name} seed {seed}: {}", &c.scenario, join(failed));
                    print!(
                        "{}",
                        replay_commands_with(&c.scenario, name, seed, c.buggify, Some(&log))
                    );
                });
            }
            Ok(_) => {}
            Err(e) => bar.suspend(|| eprintln!("harness error: {e}")),
        }
        bar.inc(1);
        r
    });
    bar.finish_and_clear();
    let mut rows: Vec<(Cell, Tally)> = cells
        .iter()
        .map(|c| (c.clone(), Tally::default()))
        .collect();
    let mut harness_errors = 0;
    for (&(i, seed), r) in jobs.iter().zip(results) {
        match r {
            Ok(failed) => rows[i].1.add(seed, failed),
            Err(_) => harness_errors += 1,
        }
    }
    for (c, t) in &rows {
        println!("{} / {}: {}", c.scenario, c.strategy.name(), t.summary());
    }
    let held = judge_all(&rows);
    ExitCode::from(u8::from(!held || harness_errors > 0))
}
