//! `cargo sim repro LOG` and `cargo sim shrink LOG`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use invariants::invariant::join;
use invariants::Invariant;

use crate::replay::{logged_run, replay, Logged};

/// `cargo sim shrink LOG`: the shrunk log is `LOG.min.jsonl`, or `LOG.INVARIANT.min.jsonl` when
/// `invariant` is not the log's first failing one (two shrinks of one log keep both). With
/// `json`, the account goes to stderr and one JSON object to stdout: the shrunk log, its faults
/// (`kind@target`) and its workload's size.
pub fn shrink_cmd(file: &Path, invariant: Option<String>, json: bool) -> ExitCode {
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
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
    say(format!(
        "shrinking {} / {} / seed {} while {inv} fails",
        run.scenario, run.strategy, run.seed
    ));
    let Some(s) = crate::shrink::shrink(&sc, st, run.seed, inv, |what| {
        say(format!("  kept: {what}"))
    }) else {
        say(format!(
            "{} / {} / seed {} does not fail {inv}: nothing to shrink (failing: [{}])",
            run.scenario,
            run.strategy,
            run.seed,
            join(&before)
        ));
        return ExitCode::from(1);
    };
    let stem = file.to_string_lossy();
    let stem = stem.strip_suffix(".jsonl").unwrap_or(&stem);
    let out = PathBuf::from(if before.first() == Some(&inv) {
        format!("{stem}.min.jsonl")
    } else {
        format!("{stem}.{inv}.min.jsonl")
    });
    if let Err(e) = std::fs::write(&out, &s.result.history) {
        eprintln!(
            "cargo sim shrink: cannot write {}: {e}: make its directory writable",
            out.display()
        );
        return ExitCode::from(2);
    }
    let sc = &s.scenario;
    say(format!(
        "\nminimal run after {} runs: {} fault(s), {} app node(s) x {} client(s), {} keys, {} ms of workload",
        s.runs,
        sc.plan.steps.len(),
        sc.apps,
        sc.clients_per_app,
        sc.keys,
        sc.duration_ms
    ));
    for step in &sc.plan.steps {
        say(format!(
            "  at {} ms for {} ms: {}",
            step.at_ms, step.for_ms, step.fault
        ));
    }
    if let Some(v) = s.result.report.verdict(inv) {
        say(format!("  {inv}: {}", v.summary));
    }
    say(format!("  saved:   {}", out.display()));
    say(format!("  replay:  cargo sim repro {}", out.display()));
    if json {
        let shrunk = crate::triage::Shrunk {
            log: out.to_string_lossy().into_owned(),
            faults: sc.plan.steps.iter().map(|st| st.fault.shape()).collect(),
            apps: sc.apps as u64,
            clients_per_app: sc.clients_per_app as u64,
            keys: sc.keys as u64,
            duration_ms: sc.duration_ms,
        };
        println!("{}", serde_json::to_string(&shrunk).expect("plain data"));
    }
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
