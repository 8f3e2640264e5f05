//! Exploration for coverage: runs of the `random` or `swarm` scenario, and a guided search that
//! keeps drawing from the swarm families whose runs reached goals few runs reached so far (the
//! feedback AFL's power schedules and Antithesis's explorer give a fuzzer, with coverage goals
//! as the signal: [`aside::goal`]).
//!
//! The search is deterministic: it goes in rounds of [`ROUND_RUNS`] runs, each round's seeds
//! chosen from the rounds before it only, by a generator seeded with the first seed, so the
//! same arguments give the same runs on any machine and core count. Every run is a plain seed
//! of the `swarm` scenario (a family's further runs are its variants, [`chaos::swarm::seed`]):
//! a failure replays with `--seed` like any other.

use std::collections::BTreeMap;

use aside::goal::Goal;
use aside::Builtin;
use chaos::scenario::Scenario;
use invariants::Invariant;

use crate::pool::{par_map, Progress};
use crate::runner::run_one;

/// Runs per round of the guided search: fixed, not the core count, so its choices are the same
/// everywhere.
pub const ROUND_RUNS: usize = 8;

/// How runs are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The `random` scenario's seeds in order: one to four faults of the whole catalog.
    Random,
    /// The `swarm` scenario's seeds in order: each its own family.
    Swarm,
    /// The `swarm` scenario, each pick a new family with probability ½, otherwise a further run
    /// of a family whose goals are rarest so far.
    Guided,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Random, Mode::Swarm, Mode::Guided];

    /// How `--mode` names it.
    pub fn arg(self) -> &'static str {
        match self {
            Mode::Random => "random",
            Mode::Swarm => "swarm",
            Mode::Guided => "guided",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Random => "random",
            Mode::Swarm => "swarm",
            Mode::Guided => "swarm, guided",
        }
    }

    fn scenario(self) -> Scenario {
        let name = if self == Mode::Random {
            "random"
        } else {
            "swarm"
        };
        chaos::scenario::find(name).expect("a catalog scenario")
    }
}

/// One run of an exploration.
#[derive(Debug, Clone)]
pub struct Explored {
    pub scenario: String,
    pub seed: u64,
    /// The goals it reached ([`crate::coverage::bits`]).
    pub goals: u64,
    pub failed: Vec<Invariant>,
}

/// `runs` runs of `strategy` chosen by `mode`, from `first_seed`, in the order they were
/// chosen.
pub fn explore(
    mode: Mode,
    strategy: Builtin,
    runs: usize,
    first_seed: u64,
    bar: Option<&Progress>,
) -> Vec<Explored> {
    let sc = mode.scenario();
    let mut picker = Picker::new(first_seed);
    let mut done: Vec<Explored> = Vec::with_capacity(runs);
    while done.len() < runs {
        let n = ROUND_RUNS.min(runs - done.len());
        let seeds: Vec<u64> = (0..n)
            .map(|_| match mode {
                Mode::Random | Mode::Swarm => picker.fresh(),
                Mode::Guided => picker.pick(),
            })
            .collect();
        let round = par_map(&seeds, |&seed| {
            let o = run_one(&sc, strategy, seed);
            if let Some(b) = bar {
                b.inc(1);
            }
            Explored {
                scenario: sc.name.clone(),
                seed,
                goals: crate::coverage::bits(&o.report),
                failed: o.failed,
            }
        });
        for r in &round {
            picker.learn(r.seed, r.goals);
        }
        done.extend(round);
    }
    done
}

/// The guided search's state: how many runs reached each goal, what each family's runs reached
/// and how many it has run, and the generator.
struct Picker {
    next_family: u64,
    reached: BTreeMap<Goal, u64>,
    /// Family → (the goals its runs reached, its next variant).
    families: BTreeMap<u64, (u64, u64)>,
    rng: u64,
}

impl Picker {
    fn new(first_seed: u64) -> Picker {
        Picker {
            next_family: chaos::swarm::family(first_seed),
            reached: BTreeMap::new(),
            families: BTreeMap::new(),
            rng: first_seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// SplitMix64: small, fixed, the same on every platform.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next new family's first seed.
    fn fresh(&mut self) -> u64 {
        let seed = self.next_family;
        self.next_family += 1;
        seed
    }

    /// A family's worth: the sum over the goals its runs reached of 1 / (runs that reached the
    /// goal), so a family that alone reached a goal outweighs many that reached common ones.
    fn energy(&self, goals: u64) -> f64 {
        Goal::of_set(goals)
            .map(|g| 1.0 / self.reached.get(&g).copied().unwrap_or(1).max(1) as f64)
            .sum()
    }

    /// Half the time (and always before any run has reached a goal) a new family; otherwise the
    /// next variant of a family drawn in proportion to its [`Picker::energy`].
    fn pick(&mut self) -> u64 {
        let weights: Vec<(u64, f64)> = self
            .families
            .iter()
            .map(|(&f, &(goals, _))| (f, self.energy(goals)))
            .filter(|&(_, e)| e > 0.0)
            .collect();
        let total: f64 = weights.iter().map(|(_, e)| e).sum();
        if weights.is_empty() || self.next() % 2 == 0 {
            return self.fresh();
        }
        // A uniform draw in [0, total) from the top 53 bits.
        let mut x = (self.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut chosen = weights[weights.len() - 1].0;
        for (f, e) in &weights {
            if x < *e {
                chosen = *f;
                break;
            }
            x -= e;
        }
        let entry = self.families.get_mut(&chosen).expect("a known family");
        entry.1 += 1;
        chaos::swarm::seed(chosen, entry.1)
    }

    /// What the run of `seed` reached.
    fn learn(&mut self, seed: u64, goals: u64) {
        for g in Goal::of_set(goals) {
            *self.reached.entry(g).or_default() += 1;
        }
        let family = chaos::swarm::family(seed);
        let entry = self
            .families
            .entry(family)
            .or_insert((0, chaos::swarm::variant(seed)));
        entry.0 |= goals;
    }
}

/// Goals reached per run of an exploration: for each goal, the runs that reached it.
pub fn per_goal(runs: &[Explored]) -> BTreeMap<Goal, u64> {
    let mut m = BTreeMap::new();
    for r in runs {
        for g in Goal::of_set(r.goals) {
            *m.entry(g).or_default() += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picker_prefers_families_of_rare_goals_and_is_deterministic() {
        let mut p = Picker::new(1);
        let common = Goal::SingleFlightJoined.bit();
        let rare = Goal::FenceSet.bit();
        // Families 1-9 reached only the common goal; family 10 also the rare one.
        for f in 1..=9 {
            assert_eq!(p.fresh(), f);
            p.learn(f, common);
        }
        assert_eq!(p.fresh(), 10);
        p.learn(10, common | rare);
        let picks: Vec<u64> = (0..400).map(|_| p.pick()).collect();
        let of_10 = picks
            .iter()
            .filter(|&&s| chaos::swarm::family(s) == 10 && chaos::swarm::variant(s) > 0)
            .count();
        let of_others = picks
            .iter()
            .filter(|&&s| chaos::swarm::family(s) < 10 && chaos::swarm::variant(s) > 0)
            .count();
        assert!(
            of_10 > of_others,
            "family 10: {of_10}, families 1-9: {of_others}"
        );
        assert!(
            picks.iter().any(|&s| chaos::swarm::variant(s) == 0),
            "new families too"
        );
        // Variants of one family are new seeds, never repeated.
        let mut seen = std::collections::BTreeSet::new();
        assert!(picks.iter().all(|s| seen.insert(*s)));
        let mut again = Picker::new(1);
        for f in 1..=9 {
            again.fresh();
            again.learn(f, common);
        }
        again.fresh();
        again.learn(10, common | rare);
        let twice: Vec<u64> = (0..400).map(|_| again.pick()).collect();
        assert_eq!(picks, twice);
    }
}
