//! `cargo sim nightly`: every promise over a window of seeds, one child process per seed
//! (madsim's statics leak between seeds in one process); every failure with its replay command.
//! With `--shard I/N` it runs one share of the night's runs (an independent machine each); every
//! shard writes `shard-I-of-N.json` in `--out`, which `cargo sim triage` merges and judges.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use invariants::invariant::join;
use invariants::Invariant;

use crate::expect::{self, Cell};
use crate::pool::{par_map, progress};
use crate::runner::{self, replay_commands_with};
use crate::triage::{self, CellRuns, Failure, Shard, Twice};

/// What one child printed: its failing invariants and its trace hash.
pub(super) struct Child {
    pub failed: Vec<Invariant>,
    pub trace_hash: String,
}

/// One seed in a child process of this binary.
pub(super) fn run_child(c: &Cell, seed: u64, out: &Path) -> Result<Child, String> {
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
    let what = format!("{} / {} / seed {seed}", c.scenario, c.strategy.name());
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| {
        format!(
            "{what}: the child printed no result ({e}; exit {:?}): replay it with `cargo sim --scenario {} --strategy {} --seed {seed}`",
            o.status.code(), c.scenario, c.strategy.name()
        )
    })?;
    let failed = v["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Invariant::parse(x.as_str().unwrap_or_default()))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or(Ok(Vec::new()))
        .map_err(|e| format!("{what}: the child's result: {e}"))?;
    let trace_hash = v["trace_hash"]
        .as_str()
        .ok_or_else(|| format!("{what}: the child's result has no trace_hash"))?
        .to_string();
    Ok(Child { failed, trace_hash })
}

/// The night's settings.
pub struct Night<'a> {
    pub seeds: u64,
    pub first: u64,
    pub out: &'a Path,
    /// `(I, N)`: run the jobs `j` with `j mod N = I - 1`.
    pub shard: (u64, u64),
    /// Start no run after this long.
    pub budget: Option<Duration>,
    /// Run every this-many-th job twice and compare trace hashes (0: never).
    pub determinism_every: u64,
    /// Only these scenarios' cells (empty: all).
    pub scenarios: &'a [String],
}

/// One job's outcome.
enum Ran {
    Done(Child, Option<String>),
    Skipped,
    Error(String),
}

pub fn nightly(n: &Night) -> ExitCode {
    let cells = match super::scenarios(n.scenarios, &[]) {
        Ok(scs) => expect::cells_of(&scs),
        Err(e) => {
            eprintln!("cargo sim nightly: {e}");
            return ExitCode::from(2);
        }
    };
    let range = n.first..=n.first.saturating_add(n.seeds.max(1) - 1);
    // Seed-major: when the budget cuts a night short, every cell has run the same seeds.
    let jobs: Vec<(usize, u64)> = range
        .clone()
        .flat_map(|s| (0..cells.len()).map(move |i| (i, s)))
        .enumerate()
        .filter(|(j, _)| triage::in_shard(*j, n.shard))
        .map(|(_, job)| job)
        .collect();
    let (i, of) = n.shard;
    println!(
        "cargo sim nightly: {} cells x seeds {}..={}, shard {i}/{of}: {} runs, one process per seed, on every core",
        cells.len(),
        range.start(),
        range.end(),
        jobs.len()
    );
    if let Err(e) = std::fs::create_dir_all(n.out) {
        eprintln!(
            "cargo sim nightly: cannot create {}: {e}: pass a writable --out",
            n.out.display()
        );
        return ExitCode::from(2);
    }
    let began = Instant::now();
    let bar = progress(jobs.len() as u64);
    let twice = |k: usize| n.determinism_every > 0 && k as u64 % n.determinism_every == 0;
    let indexed: Vec<(usize, (usize, u64))> = jobs.iter().copied().enumerate().collect();
    let results = par_map(&indexed, |&(k, (i, seed))| {
        let c = &cells[i];
        if n.budget.is_some_and(|b| began.elapsed() >= b) {
            bar.inc(1);
            return Ran::Skipped;
        }
        let r = match run_child(c, seed, n.out) {
            Err(e) => Ran::Error(e),
            Ok(first) if twice(k) => match run_child(c, seed, n.out) {
                Ok(second) => {
                    let h = second.trace_hash;
                    Ran::Done(first, Some(h))
                }
                Err(e) => Ran::Error(e),
            },
            Ok(first) => Ran::Done(first, None),
        };
        match &r {
            Ran::Done(ch, _) if !ch.failed.is_empty() => {
                let log = n.out.join(log_name(c, seed));
                let name = c.strategy.name();
                bar.suspend(|| {
                    println!(
                        "FAIL {} {name} seed {seed}: {}",
                        &c.scenario,
                        join(&ch.failed)
                    );
                    print!(
                        "{}",
                        replay_commands_with(&c.scenario, name, seed, c.buggify, None, Some(&log))
                    );
                });
            }
            Ran::Error(e) => bar.suspend(|| eprintln!("harness error: {e}")),
            _ => {}
        }
        bar.inc(1);
        r
    });
    bar.finish_and_clear();
    let mut shard = Shard {
        shard: format!("{i}/{of}"),
        first_seed: n.first,
        seeds: n.seeds.max(1),
        cells: cells
            .iter()
            .map(|c| CellRuns {
                scenario: c.scenario.clone(),
                strategy: c.strategy.name().to_string(),
                buggify: c.buggify,
                ..CellRuns::default()
            })
            .collect(),
        ..Shard::default()
    };
    for (&(i, seed), r) in jobs.iter().zip(results) {
        let c = &cells[i];
        match r {
            Ran::Skipped => shard.skipped_for_budget += 1,
            Ran::Error(e) => shard.harness_errors.push(e),
            Ran::Done(ch, again) => {
                let runs = &mut shard.cells[i];
                runs.runs += 1;
                if !ch.failed.is_empty() {
                    runs.failures.push(Failure {
                        seed,
                        failed: ch.failed.iter().map(|x| x.name().to_string()).collect(),
                        log: log_name(c, seed),
                    });
                }
                if let Some(second) = again {
                    shard.determinism.push(Twice {
                        scenario: c.scenario.clone(),
                        strategy: c.strategy.name().to_string(),
                        buggify: c.buggify,
                        seed,
                        first: ch.trace_hash,
                        second,
                    });
                }
            }
        }
    }
    for c in &shard.cells {
        println!("{} / {}: {}", c.scenario, c.strategy, triage::verdict(c));
    }
    let file = n.out.join(format!("shard-{i}-of-{of}.json"));
    let text = serde_json::to_string_pretty(&shard).expect("plain data") + "\n";
    if let Err(e) = std::fs::write(&file, text) {
        eprintln!(
            "cargo sim nightly: cannot write {}: {e}: pass a writable --out",
            file.display()
        );
        return ExitCode::from(2);
    }
    println!(
        "wrote {} ({} runs, {} skipped for the budget, {} seeds run twice); `cargo sim triage {}` judges the night",
        file.display(),
        shard.cells.iter().map(|c| c.runs).sum::<u64>(),
        shard.skipped_for_budget,
        shard.determinism.len(),
        n.out.display()
    );
    // One shard alone cannot judge a promise over the night's seeds; it stops the job only when
    // it could not run what it was given.
    ExitCode::from(u8::from(!shard.harness_errors.is_empty()))
}

/// The seed log a failing child writes in `--out`.
fn log_name(c: &Cell, seed: u64) -> String {
    runner::log_name(&c.scenario, c.strategy.name(), seed)
}
