//! A seed log read back and run again: the scenario its header describes (a user's scenario file
//! travels in it), the same strategy and seed, and whether the same invariants fail with the same
//! trace hash (`cargo sim repro`, `cargo sim shrink`).

use std::path::Path;

use aside::Builtin;
use chaos::scenario::{self, Scenario};
use invariants::invariant::join;
use invariants::Invariant;

use crate::run::COMMIT;
use crate::runner::run_one;
use crate::seedlog::{self, trace_hash};

/// A seed log's run, ready to run again.
pub struct Logged {
    pub run: seedlog::Run,
    /// The log's bytes.
    pub saved: Vec<u8>,
    /// The scenario as the log's header describes it (a shrunk run's own workload and plan).
    pub sc: Scenario,
    pub st: Builtin,
    /// The gating invariants the logged run failed.
    pub before: Vec<Invariant>,
}

pub fn logged_run(file: &Path) -> Result<Logged, String> {
    let (run, saved) = seedlog::read(file)?;
    if run.commit != COMMIT {
        return Err(format!(
            "{} was recorded at commit {}, this is {COMMIT}: check out {} to replay it",
            file.display(),
            run.commit,
            run.commit
        ));
    }
    let sc = scenario::from_header(&run.scenario, &run.config)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let st = Builtin::parse(&run.strategy).ok_or_else(|| {
        format!(
            "{}: unknown strategy {:?}: `cargo sim repro` replays the built-in strategies (naive, versioned, durable)",
            file.display(),
            run.strategy
        )
    })?;
    let before: Vec<Invariant> =
        invariants::check_str(std::str::from_utf8(&saved).unwrap_or_default(), &[])
            .map(|r| r.failing())
            .unwrap_or_default();
    Ok(Logged {
        run,
        saved,
        sc,
        st,
        before,
    })
}

/// Replays a seed log. `Ok((true, msg))`: the same invariants fail with the same trace hash;
/// `Ok((false, msg))`: they do not; `Err`: the log cannot be replayed (bad input).
pub fn replay(file: &Path) -> Result<(bool, String), String> {
    let Logged {
        run,
        saved,
        sc,
        st,
        before,
    } = logged_run(file)?;
    let o = run_one(&sc, st, run.seed);
    let (want, got) = (trace_hash(&saved), o.trace_hash.clone());
    let what = format!("{} / {} / seed {}", run.scenario, run.strategy, run.seed);
    if want == got && before == o.failed {
        let failing = if o.failed.is_empty() {
            "no invariant".to_string()
        } else {
            join(&o.failed)
        };
        Ok((
            true,
            format!("reproduced: {what}: {failing} fail again, trace hash {got}"),
        ))
    } else {
        Ok((false, format!("NOT reproduced: {what}: trace hash {got} (log {want}), failing now [{}] (log [{}])", join(&o.failed), join(&before))))
    }
}
