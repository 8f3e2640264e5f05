//! The nemesis: each world's hands on its cluster. [`run_plan`] drives one through a
//! [`Plan`]: at each step's time it begins the fault, then looks for its effect until it shows or
//! the heal comes, then heals it, recording a `start`, an `observed` (with what was seen) and a
//! `stop` line. A fault whose effect never showed gets no `observed` line, and the checkers'
//! `fault-effect` verdict fails the run as a harness error: a fault that did nothing is never a
//! pass.

use std::time::Duration;

use invariants::history::FaultAction;
use tokio::time::sleep;

use crate::fault::Fault;
use crate::plan::{Action, Plan};
use crate::record::Recorder;

/// How often [`run_plan`] looks again for the effect of a fault not yet observed.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(20);

/// One world's way to break and mend its cluster. Every method works on the roles of
/// [`crate::fault::Target`]; a world that cannot apply a kind says so by never observing it.
// The simulator runs everything on one thread, and neither world sends a nemesis across threads:
// no `Send` bound on the futures.
#[allow(async_fn_in_trait)]
pub trait Nemesis {
    /// Applies `fault`.
    async fn begin(&mut self, fault: &Fault);
    /// Undoes `fault` (restart after kill, resume after pause).
    async fn heal(&mut self, fault: &Fault);
    /// Looks once for the effect of `fault`: `Some(what was seen)` once it shows (a call to the
    /// target fails, a role changed), `None` while it does not.
    async fn observe(&mut self, fault: &Fault) -> Option<String>;
}

/// Runs `plan` against `nemesis`, recording every fault line in `rec`; returns when the last
/// fault has healed.
pub async fn run_plan(nemesis: &mut impl Nemesis, plan: &Plan, rec: &Recorder) {
    let mut unobserved: Vec<Fault> = Vec::new();
    for e in plan.events() {
        let due = rec.origin() + Duration::from_millis(e.at_ms);
        // Until the event is due: look for the effects not seen yet.
        loop {
            let now = tokio::time::Instant::now();
            if now >= due {
                break;
            }
            let mut still = Vec::new();
            for f in std::mem::take(&mut unobserved) {
                match nemesis.observe(&f).await {
                    Some(effect) => rec.fault(FaultAction::Observed, f, Some(effect)),
                    None => still.push(f),
                }
            }
            unobserved = still;
            let left = due.saturating_duration_since(tokio::time::Instant::now());
            if unobserved.is_empty() {
                sleep(left).await;
            } else {
                sleep(left.min(OBSERVE_EVERY)).await;
            }
        }
        match e.action {
            Action::Begin => {
                nemesis.begin(&e.fault).await;
                rec.fault(FaultAction::Start, e.fault, None);
                unobserved.push(e.fault);
            }
            Action::Heal => {
                // A last look at the instant of the heal: an effect seen now was seen while on.
                if let Some(i) = unobserved.iter().position(|f| *f == e.fault) {
                    let f = unobserved.remove(i);
                    if let Some(effect) = nemesis.observe(&f).await {
                        rec.fault(FaultAction::Observed, f, Some(effect));
                    }
                }
                nemesis.heal(&e.fault).await;
                rec.fault(FaultAction::Stop, e.fault, None);
            }
        }
    }
}
