//! The nemesis: each world's hands on its cluster. [`run_plan`] drives one through a
//! [`Plan`]: at each step's time it begins the fault, then looks for its effect until it shows or
//! the heal comes, then heals it, recording a `start`, an `observed` (with what was seen) and a
//! `stop` line. A fault whose effect never showed gets no `observed` line, and the checkers'
//! `fault-effect` verdict fails the run as a harness error: a fault that did nothing is never a
//! pass.

use std::time::Duration;

use invariants::history::FaultAction;
use tokio::time::sleep;

use crate::fault::effect::Effect;
use crate::fault::Fault;
use crate::plan::{Action, Plan};
use crate::record::Recorder;

/// How often [`run_plan`] looks again for the effect of a fault not yet observed.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(20);

/// One world's way to break and mend its cluster. Every method works on the roles of
/// [`crate::fault::Target`]; a world that cannot apply a kind says so by never observing it.
/// [`run_plan`] calls them one fault at a time, in the plan's order; a world that applies the
/// faults due at one instant together does so itself (it is made for the plan).
// The simulator runs everything on one thread, and neither world sends a nemesis across threads:
// no `Send` bound on the futures.
#[allow(async_fn_in_trait)]
pub trait Nemesis {
    /// Applies `fault`.
    async fn begin(&mut self, fault: &Fault);
    /// Undoes `fault` (restart after kill, resume after pause).
    async fn heal(&mut self, fault: &Fault);
    /// Looks once for the effect of `fault`: `Some(effect)` once it shows (a call to the target
    /// fails, a role changed), `None` while it does not. Whether a measurement shows the fault
    /// is the kind's rule ([`Fault::observe`]).
    async fn observe(&mut self, fault: &Fault) -> Option<Effect>;
}

/// Runs `plan` against `nemesis`, recording every fault line in `rec`; returns when the last
/// fault has healed.
pub async fn run_plan(nemesis: &mut impl Nemesis, plan: &Plan, rec: &Recorder) {
    let mut unobserved: Vec<Fault> = Vec::new();
    for e in plan.events() {
        let due = rec.origin() + Duration::from_millis(e.at_ms);
        // Until the event is due: look for the effects not seen yet, one by one, each line at
        // the moment its look ended.
        loop {
            let now = tokio::time::Instant::now();
            if now >= due {
                break;
            }
            let mut still = Vec::new();
            for f in std::mem::take(&mut unobserved) {
                match nemesis.observe(&f).await {
                    Some(effect) => rec.fault(FaultAction::Observed, f, Some(effect.to_string())),
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
        let f = e.fault;
        match e.action {
            Action::Begin => {
                // A fault may act from the moment the nemesis starts applying it: a `docker
                // kill` or a flush takes a while, loads the machine meanwhile, and the process
                // may be gone before the call returns. Reads from then on are not steady.
                let began = rec.now_ns();
                nemesis.begin(&f).await;
                rec.fault_at(began, FaultAction::Start, f, None);
                unobserved.push(f);
            }
            Action::Heal => {
                // A last look at the instant of the heal: an effect seen now was seen while on.
                if let Some(i) = unobserved.iter().position(|u| *u == f) {
                    unobserved.remove(i);
                    if let Some(effect) = nemesis.observe(&f).await {
                        rec.fault(FaultAction::Observed, f, Some(effect.to_string()));
                    }
                }
                nemesis.heal(&f).await;
                rec.fault(FaultAction::Stop, f, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Kind, Target};
    use crate::plan::Step;
    use invariants::history::{parse_line, Header, Line, FORMAT};

    /// A world whose `begin` takes `slow` (a `docker kill` under load) and whose every fault
    /// shows at once.
    struct Slow {
        slow: Duration,
    }

    impl Nemesis for Slow {
        async fn begin(&mut self, _: &Fault) {
            sleep(self.slow).await;
        }
        async fn heal(&mut self, _: &Fault) {}
        async fn observe(&mut self, _: &Fault) -> Option<Effect> {
            Some(Effect::Seen("seen".into()))
        }
    }

    fn fault_lines(history: &[u8]) -> Vec<(FaultAction, u64)> {
        history
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| match parse_line(l, false).expect("a history line") {
                Line::Fault(f) => Some((f.action, f.at_ns)),
                _ => None,
            })
            .collect()
    }

    /// A fault's `start` is stamped when the nemesis begins applying it, not when the apply
    /// returns: reads while a slow `docker kill` loads the machine are not steady reads.
    #[tokio::test]
    async fn a_fault_starts_when_the_nemesis_begins_applying_it() {
        let ms = Duration::from_millis;
        let plan = Plan::new(vec![Step {
            at_ms: 50,
            for_ms: 600,
            fault: Fault::new(Kind::Kill, Target::RedisMaster(0)),
        }]);
        let rec = Recorder::start();
        run_plan(&mut Slow { slow: ms(400) }, &plan, &rec).await;
        let lines = fault_lines(&rec.finish(&Header {
            format: FORMAT,
            world: "test".into(),
            scenario: "slow-begin".into(),
            strategy: "versioned".into(),
            seed: 0,
            commit: "test".into(),
            config: Default::default(),
        }));
        let at = |a: FaultAction| {
            lines
                .iter()
                .find(|(b, _)| *b == a)
                .unwrap_or_else(|| panic!("no {a:?} line in {lines:?}"))
                .1
        };
        let (start, observed) = (at(FaultAction::Start), at(FaultAction::Observed));
        // Due at 50 ms; the apply ran until at least 450 ms. Stamped at its end, the start would
        // be after 450 ms; the margin is the 400 ms the apply took.
        assert!(
            start >= ms(50).as_nanos() as u64 && start < ms(250).as_nanos() as u64,
            "start stamped at {start} ns: {lines:?}"
        );
        assert!(observed >= ms(450).as_nanos() as u64, "{lines:?}");
    }
}
