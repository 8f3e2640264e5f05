//! What a checker answers: a three-valued status, the figures behind it, and a witness.

use std::collections::BTreeMap;

use crate::Invariant;

/// Holds, fails, or cannot be decided from this history (and why). As in Jepsen, `Fails` wins a
/// merge and `Unknown` is never passed off as `Holds`.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Holds,
    Fails,
    Unknown(String),
}

/// One measured figure. Units are in the figure's name (`delta_ns`, `peak_db_qps`).
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    Count(u64),
    Ns(u64),
    Ratio(f64),
    /// `-log10(bad / total)`; `None` when nothing was bad (infinitely many nines).
    Nines(Option<f64>),
    /// A count per client (or per other small integer id), e.g. monotonic-read violations.
    PerClient(BTreeMap<u64, u64>),
    /// A figure that has no value in this history (no stale reads, so no p50 of staleness).
    None,
}

/// The smallest set of history lines that proves a failure: op ids plus the 1-based line numbers
/// of every item (ops, faults, probes), so a report can show the history's own lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Witness {
    pub ops: Vec<u64>,
    pub lines: Vec<u64>,
}

impl Witness {
    pub fn op(&mut self, id: u64, line: u64) {
        self.ops.push(id);
        self.lines.push(line);
    }

    pub fn line(&mut self, line: u64) {
        self.lines.push(line);
    }

    /// Sorted, without repeats: a witness is a set.
    pub fn normalize(&mut self) {
        self.ops.sort_unstable();
        self.ops.dedup();
        self.lines.sort_unstable();
        self.lines.dedup();
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// A checker's answer for one history.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub invariant: Invariant,
    pub status: Status,
    /// Whether a `Fails` makes the whole history fail. Reported-only invariants (monotonic reads)
    /// are not gating.
    pub gating: bool,
    pub figures: Vec<(&'static str, Figure)>,
    pub witness: Witness,
    /// One sentence for a person: what failed, or what was not judged.
    pub summary: String,
}

impl Verdict {
    pub fn new(invariant: Invariant) -> Self {
        Verdict {
            invariant,
            status: Status::Holds,
            gating: invariant.gating(),
            figures: Vec::new(),
            witness: Witness::default(),
            summary: String::new(),
        }
    }

    /// The invariant's name, as reports show it.
    pub fn name(&self) -> &'static str {
        self.invariant.name()
    }

    pub fn figure(&mut self, name: &'static str, f: Figure) -> &mut Self {
        self.figures.push((name, f));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
    }

    pub fn fails(&self) -> bool {
        self.status == Status::Fails
    }

    /// Holds or fails by a comparison, with the summary saying which.
    pub fn judge(&mut self, failed: bool, summary: String) {
        self.status = if failed { Status::Fails } else { Status::Holds };
        self.summary = summary;
    }

    pub fn unknown(&mut self, why: impl Into<String>) {
        let why = why.into();
        self.summary = why.clone();
        self.status = Status::Unknown(why);
    }
}

/// `bad` of `total` as nines of goodness.
pub fn nines(bad: u64, total: u64) -> Figure {
    if bad == 0 || total == 0 {
        Figure::Nines(None)
    } else {
        Figure::Nines(Some(-(bad as f64 / total as f64).log10()))
    }
}
