//! Fault spans merged into the windows the checkers ask about: any fault active, and every app
//! node kept from the outbox.

use super::{FaultSpan, Index};

/// The union of `spans`' active intervals, merged and sorted by start.
pub(super) fn merged<'a>(spans: impl Iterator<Item = &'a FaultSpan>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = spans.map(|f| (f.start_ns, f.end_ns)).collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Whether `fault` (a fault line's JSON) keeps every app node from the PostgreSQL primary's
/// outbox while a writer that is not an app node may still commit: a partition between every
/// app node and the primary (either way round, in either direction), or a reset of the
/// primary's replies, a stall of its requests or a half-open of its connections (the foreign
/// writer writes to it straight, past the proxies).
pub(super) fn cuts_apps_from_the_outbox(fault: &str) -> bool {
    let Ok(f) = serde_json::from_str::<serde_json::Value>(fault) else {
        return false;
    };
    let side = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let db = |s: &str| s == "postgres" || s == "pg-primary";
    match f.get("kind").and_then(|v| v.as_str()) {
        Some("partition") => {
            (side("target") == "apps" && db(side("peers")))
                || (db(side("target")) && side("peers") == "apps")
        }
        Some("reset" | "stall" | "half-open") => db(side("target")),
        _ => false,
    }
}

impl Index {
    /// When a write that completed at `t` could first be read from the outbox by an app node:
    /// `t`, or the end of a fault that cut every app node from the PostgreSQL primary (or reset
    /// its replies, stalled its requests or left its connections half-open) then.
    /// Nothing an app node runs can learn of a write it cannot see (only a writer that is not
    /// an app node, such as the foreign writer, completes one then), so staleness counts from
    /// there.
    pub fn outbox_seen_from(&self, t: u64) -> u64 {
        let i = self.outbox_blind.partition_point(|s| s.0 <= t);
        match self.outbox_blind[..i].last() {
            Some(&(_, end)) if t < end => end,
            _ => t,
        }
    }

    /// How much of `[from, to]` no app node could read the outbox in.
    pub fn outbox_blind_within(&self, from: u64, to: u64) -> u64 {
        self.outbox_blind
            .iter()
            .take_while(|s| s.0 < to)
            .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
            .sum()
    }
}
