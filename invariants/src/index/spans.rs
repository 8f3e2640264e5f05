//! Fault spans merged into the windows the checkers ask about: any fault active, and every app
//! node kept from the outbox.

use super::FaultSpan;

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
/// primary's replies (the foreign writer writes to it straight, past the proxies).
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
        Some("reset") => db(side("target")),
        _ => false,
    }
}
