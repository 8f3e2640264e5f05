//! The invariants a history is judged by, as one type. A promise, a shrink target or a table
//! column names an [`Invariant`], never a string, so a misspelling fails to compile; the names
//! below are the only place the words of reports, histories' JSON and the command line live.

use std::fmt;
use std::str::FromStr;

/// One invariant of DESIGN's list, in the order reports show them ([`Invariant::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// 1. Bounded staleness (Δ).
    Staleness,
    /// 2. No phantom values.
    Phantom,
    /// 3. Convergence after every fault healed.
    Convergence,
    /// 4. Read-your-writes for the writing client.
    ReadYourWrites,
    /// 4. Monotonic reads per client (reported, never gating).
    MonotonicReads,
    /// 5. No lost acknowledged writes.
    LostWrites,
    /// 6. Load safety: database reads per key per window, peak QPS.
    Load,
    /// 7. Availability while a tier is down.
    Availability,
    /// 8. Steady-state hit ratio.
    HitRatio,
    /// 8. Hit-latency p99 per tier.
    HitLatency,
    /// Every read ends, served or failed, within a bound: nothing waits without a deadline.
    Liveness,
    /// Every fault proved its effect: a harness error when not, never a finding.
    FaultEffect,
    /// Every coverage goal the scenario promised was reached: a harness error when not.
    Coverage,
}

impl Invariant {
    /// Every invariant, in report order: the checker registry's order.
    pub const ALL: [Invariant; 13] = [
        Invariant::Staleness,
        Invariant::Phantom,
        Invariant::Convergence,
        Invariant::ReadYourWrites,
        Invariant::MonotonicReads,
        Invariant::LostWrites,
        Invariant::Load,
        Invariant::Availability,
        Invariant::HitRatio,
        Invariant::HitLatency,
        Invariant::Liveness,
        Invariant::FaultEffect,
        Invariant::Coverage,
    ];

    /// The name in reports, histories' JSON, scenario files and `--invariant`.
    pub const fn name(self) -> &'static str {
        match self {
            Invariant::Staleness => "staleness",
            Invariant::Phantom => "phantom",
            Invariant::Convergence => "convergence",
            Invariant::ReadYourWrites => "read-your-writes",
            Invariant::MonotonicReads => "monotonic-reads",
            Invariant::LostWrites => "lost-writes",
            Invariant::Load => "load",
            Invariant::Availability => "availability",
            Invariant::HitRatio => "hit-ratio",
            Invariant::HitLatency => "hit-latency",
            Invariant::Liveness => "liveness",
            Invariant::FaultEffect => "fault-effect",
            Invariant::Coverage => "coverage",
        }
    }

    /// Whether failing it fails the run. Monotonic reads are reported only: cache-aside over
    /// several tiers does not promise them.
    pub const fn gating(self) -> bool {
        !matches!(self, Invariant::MonotonicReads)
    }

    /// Whether failing it is the harness's error (a fault that never took effect, a promised
    /// goal never reached), never a finding about the strategy under test.
    pub const fn harness(self) -> bool {
        matches!(self, Invariant::FaultEffect | Invariant::Coverage)
    }

    /// The invariant named `name`; the error names every known one.
    pub fn parse(name: &str) -> Result<Invariant, String> {
        Invariant::ALL
            .into_iter()
            .find(|i| i.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown invariant {name:?}: known invariants are {}",
                    Invariant::names().join(", ")
                )
            })
    }

    pub fn names() -> Vec<&'static str> {
        Invariant::ALL.iter().map(|i| i.name()).collect()
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Invariant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Invariant::parse(s)
    }
}

impl serde::Serialize for Invariant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Invariant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Invariant::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Names joined for a person: `staleness, convergence`.
pub fn join(invs: &[Invariant]) -> String {
    invs.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_all_is_in_declaration_order() {
        for (n, i) in Invariant::ALL.into_iter().enumerate() {
            assert_eq!(Invariant::parse(i.name()), Ok(i));
            assert_eq!(i as usize, n, "{i}");
        }
        let mut sorted = Invariant::ALL;
        sorted.sort();
        assert_eq!(sorted, Invariant::ALL);
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let e = Invariant::parse("stalness").unwrap_err();
        assert!(
            e.contains("\"stalness\"") && e.contains("staleness, phantom"),
            "{e}"
        );
        assert!(!Invariant::MonotonicReads.gating() && Invariant::FaultEffect.gating());
    }
}
