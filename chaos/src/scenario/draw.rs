//! What a scenario's seed draws besides the simulation's schedule: nothing, the `random`
//! scenario's plan ([`crate::random`]) or a swarm family's workload and plan ([`crate::swarm`]),
//! and the hit-ratio and availability bounds a drawn incident lowers its run to.

use crate::fault::{Fault, Kind, Target};

use super::Scenario;

/// What a scenario's seed draws besides the simulation's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// Nothing: the scenario's plan is its plan for every seed.
    Fixed,
    /// The plan, from the whole catalog ([`crate::random`]; `random_faults = true`).
    Plan,
    /// The seed's swarm family's fault kinds, strengths and workload, then the plan from those
    /// kinds ([`crate::swarm`]; `swarm = true`).
    Swarm,
}

impl Scenario {
    /// The scenario as run with `seed`: the `random` scenario draws its plan from the seed
    /// ([`crate::random::plan_for_seed`]), the `swarm` scenario its family's workload and its
    /// plan ([`crate::swarm`]); every other scenario is the same for every seed.
    pub fn for_seed(&self, seed: u64) -> Scenario {
        let mut sc = self.clone();
        sc.draw = Draw::Fixed;
        match self.draw {
            Draw::Fixed => {}
            Draw::Plan => {
                sc.plan = crate::random::plan_for_seed(seed);
                sc.lower_hit_ratio_for_incidents();
                sc.lower_availability_for_incidents();
            }
            Draw::Swarm => {
                let swarm = crate::swarm::for_family(crate::swarm::family(seed));
                // Every family's workload is one a scenario file may give (a test draws
                // thousands): a refusal here is a bug in the swarm's ranges.
                sc.apply_workload(&swarm.workload)
                    .expect("a swarm family draws a valid workload");
                sc.plan = swarm.plan(seed);
            }
        }
        sc
    }

    /// A drawn incident lowers the hit-ratio bound as it does in its catalog scenario (a 66 ms
    /// spike leaves L1's circuit open for its cooldown: 0.74), and each further one by 0.1 more:
    /// their costs add up (random seed 195 of its time, a 66 ms spike over a flush of
    /// memcached: 0.68).
    fn lower_hit_ratio_for_incidents(&mut self) {
        let lows: Vec<f64> = self
            .plan
            .steps
            .iter()
            .filter_map(|s| incident_hit_ratio_min(s.fault.kind, self.read_from_replica))
            .collect();
        let lowest = lows
            .iter()
            .copied()
            .reduce(f64::min)
            .map(|low| low - 0.1 * (lows.len() - 1) as f64);
        if let (Some(b), Some(low)) = (self.bounds.hit_ratio_min, lowest) {
            self.bounds.hit_ratio_min = Some(b.min(low));
        }
    }

    /// A drawn incident that takes the database away unbinds availability, as `pg-restart`
    /// and `stale-if-error` do: every miss fails while it lasts, and what share of the reads
    /// miss depends on what the caches held (random seed 24: a reset of PostgreSQL's replies
    /// for 1.25 s over a cut of the apps from Redis, 755 of 1597 reads served).
    fn lower_availability_for_incidents(&mut self) {
        if self
            .plan
            .steps
            .iter()
            .any(|s| takes_the_database_away(&s.fault))
        {
            self.bounds.availability_min = self.bounds.availability_min.map(|_| 0.0);
        }
    }
}

/// Does `f` leave the app nodes no database to read from while it lasts? A reset of the
/// primary's replies (every query fails at once), or a half-open of its connections (every
/// query times out: random seeds 94 and 196 of their time, 79 of 91 and 27 of 40 reads served
/// during the fault).
pub fn takes_the_database_away(f: &Fault) -> bool {
    matches!(f.kind, Kind::Reset | Kind::HalfOpen) && f.target.contains(Target::PgPrimary)
}

/// The steady-phase hit-ratio bound an incident lowers its run to, for the faults whose effect
/// outlasts their heal: one rule for the catalog's scenarios and the `random` scenario's plans.
/// `reads_replica`: misses read the PostgreSQL replica.
pub fn incident_hit_ratio_min(kind: Kind, reads_replica: bool) -> Option<f64> {
    match kind {
        // Reads that timed out open L1's circuit, which stays open for its 1 s cooldown after the
        // spike (latency-spike seed 8: 0.79 with `durable`).
        Kind::Latency { .. } => Some(0.75),
        // An L1 call whose request or reply is lost times out (100 ms, shorter than TCP's first
        // resend) and the read goes on to L2 or the database (packet-loss seeds 1-20: 0.78 to
        // 0.91 with `versioned`).
        Kind::Loss { .. } => Some(0.75),
        // Every key written during the lag is tombstoned at a version the replica does not have
        // yet, so its misses go on after the spike (to the primary with `durable`'s replica
        // guard, refused fills with `versioned`) until each is filled again (pg-lag-spike seed
        // 17: 0.78 with `durable`, 0.75 with `versioned`).
        Kind::ReplicaLag { .. } if reads_replica => Some(0.7),
        // The steady phase includes the refill of what the limit evicted.
        Kind::MemoryLimit { .. } => Some(0.7),
        // A flushed tier refills at the database's pace.
        Kind::Flush => Some(0.75),
        // Every call to a half-open cache times out, which opens that tier's circuit, and it
        // stays open for its 1 s cooldown after the heal (random seed 152 of its time: 0.76 with
        // `durable`, a half-open memcached node over a paused Redis master).
        Kind::HalfOpen => Some(0.75),
        _ => None,
    }
}
