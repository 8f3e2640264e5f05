//! `cargo sim repro LOG` and `cargo sim shrink LOG`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use invariants::invariant::join;
use invariants::Invariant;

use crate::replay::{logged_run, replay, Logged};

/// `cargo sim shrink LOG`.
pub fn shrink_cmd(file: &Path, invariant: Option<String>) -> ExitCode {
    let Logged {
        run,
        sc,
        st,
        before,
        ..
    } = match logged_run(file) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cargo sim shrink: {e}");
            return ExitCode::from(2);
        }
    };
    let inv = match invariant.as_deref().map(Invariant::parse).transpose() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("cargo sim shrink: --invariant: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(inv) = inv.or_else(|| before.first().copied()) else {
        eprintln!(
            "cargo sim shrink: {} records a run that fails no invariant: pass a failing run's seed log",
            file.display()
        );
        return ExitCode::from(2);
    };
    println!(
        "shrinking {} / {} / seed {} while {inv} fails",
        run.scenario, run.strategy, run.seed
    );
    let Some(s) = crate::shrink::shrink(&sc, st, run.seed, inv, |what| println!("  kept: {what}"))
    else {
        println!(
            "{} / {} / seed {} does not fail {inv}: nothing to shrink (failing: [{}])",
            run.scenario,
            run.strategy,
            run.seed,
            join(&before)
        );
        return ExitCode::from(1);
    };
    let stem = file.to_string_lossy();
    let out = PathBuf::from(format!(
        "{}.min.jsonl",
        stem.strip_suffix(".jsonl").unwrap_or(&stem)
    ));
    if let Err(e) = std::fs::write(&out, &s.result.history) {
        eprintln!(
            "cargo sim shrink: cannot write {}: {e}: make its directory writable",
            out.display()
        );
        return ExitCode::from(2);
    }
    let sc = &s.scenario;
    println!(
        "\nminimal run after {} runs: {} fault(s), {} app node(s) x {} client(s), {} keys, {} ms of workload",
        s.runs,
        sc.plan.steps.len(),
        sc.apps,
        sc.clients_per_app,
        sc.keys,
        sc.duration_ms
    );
    for step in &sc.plan.steps {
        println!(
            "  at {} ms for {} ms: {}",
            step.at_ms, step.for_ms, step.fault
        );
    }
    if let Some(v) = s.result.report.verdict(inv) {
        println!("  {inv}: {}", v.summary);
    }
    println!("  saved:   {}", out.display());
    println!("  replay:  cargo sim repro {}", out.display());
    ExitCode::SUCCESS
}

pub fn repro(file: &Path) -> ExitCode {
    match replay(file) {
        Ok((same, msg)) => {
            println!("{msg}");
            ExitCode::from(u8::from(!same))
        }
        Err(e) => {
            eprintln!("cargo sim repro: {e}");
            ExitCode::from(2)
        }
    }
}
