//! `cargo sim explore`: runs of the `swarm` scenario chosen for coverage ([`crate::explore`]),
//! guided by the goals rare so far unless `--mode` says otherwise. Prints the coverage table of
//! the runs and each failing run's replay command. Exit 1 when a run fails where the scenario
//! promises the strategy holds, or fails a harness invariant; a strategy promised to find
//! failures (naive, versioned) only reports them.

use std::process::ExitCode;

use aside::Builtin;
use chaos::scenario::Expect;
use invariants::invariant::join;

use crate::coverage::Coverage;
use crate::explore::{explore, Mode};
use crate::pool::progress;
use crate::runner::replay_commands;

/// Failing runs shown with their replay commands before the rest are only counted.
const SHOWN_MAX: usize = 10;

pub fn explore_cmd(mode: &str, strategy: &str, runs: usize, first_seed: u64) -> ExitCode {
    let Some(mode) = Mode::ALL.into_iter().find(|m| m.arg() == mode) else {
        let all: Vec<&str> = Mode::ALL.iter().map(|m| m.arg()).collect();
        eprintln!(
            "cargo sim explore: unknown --mode {mode:?}: use {}",
            all.join(", ")
        );
        return ExitCode::from(2);
    };
    let Some(st) = Builtin::parse(strategy) else {
        let all: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
        eprintln!(
            "cargo sim explore: unknown --strategy {strategy:?}: use {}",
            all.join(", ")
        );
        return ExitCode::from(2);
    };
    if runs == 0 {
        eprintln!("cargo sim explore: --runs 0 runs nothing: give at least 1");
        return ExitCode::from(2);
    }
    // A swarm seed's high 32 bits are its variant: families are numbered below 2^32.
    if mode != Mode::Random
        && first_seed > chaos::swarm::family(u64::MAX).saturating_sub(runs as u64)
    {
        eprintln!(
            "cargo sim explore: --first-seed {first_seed} leaves no room for {runs} swarm families below 2^32 (a seed's high bits are its variant): give a smaller one"
        );
        return ExitCode::from(2);
    }
    let bar = progress(runs as u64);
    let began = std::time::Instant::now();
    let done = explore(mode, st, runs, first_seed, Some(&bar));
    bar.finish_and_clear();
    let mut coverage = Coverage::default();
    for r in &done {
        coverage.add(&r.scenario, st.name(), false, r.seed, r.goals);
    }
    print!("{}", coverage.markdown());
    let sc = chaos::scenario::find(&done[0].scenario).expect("a catalog scenario");
    let holds = matches!(sc.promise(st).map(|p| &p.expect), Some(Expect::Holds));
    let broken: Vec<_> = done
        .iter()
        .filter(|r| !r.failed.is_empty() && (holds || r.failed.iter().any(|i| i.harness())))
        .collect();
    let failing = done.iter().filter(|r| !r.failed.is_empty()).count();
    for r in broken.iter().take(SHOWN_MAX) {
        println!(
            "\n{} / {} / seed {}: fails {}\n{}",
            r.scenario,
            st.name(),
            r.seed,
            join(&r.failed),
            replay_commands(&r.scenario, st.name(), r.seed, None)
        );
    }
    if broken.len() > SHOWN_MAX {
        println!("... and {} more", broken.len() - SHOWN_MAX);
    }
    let families: std::collections::BTreeSet<u64> =
        done.iter().map(|r| chaos::swarm::family(r.seed)).collect();
    println!(
        "\n{} runs ({}) of {} families, {} at a time, in {:.1} s wall: {failing} failed; {}",
        done.len(),
        mode.name(),
        families.len(),
        crate::pool::workers(),
        began.elapsed().as_secs_f64(),
        if broken.is_empty() {
            format!("every promise of {} held", st.name())
        } else {
            format!("{} broke a promise of {}", broken.len(), st.name())
        }
    );
    if broken.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
