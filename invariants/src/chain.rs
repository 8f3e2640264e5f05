//! Causal chains: why a cache served an old version. From the history's `cache` lines (the
//! library's own loads, fills and invalidations), a stale read is explained by the load that
//! read the old row (from the database, or from L2 for a backfill of L1), the newer write's
//! invalidations in every tier, and the fill that put the old row where the read found it,
//! typically after the invalidation: the fill/invalidate race, made visible.
//! Histories without `cache` lines simply get no chain.

use crate::history::{ActOutcome, CacheAction, Source};
use crate::index::{ActRec, Index, WriteRec};

/// A time in the chain: milliseconds to 0.1, so that steps microseconds apart stay apart.
fn fmt_ns(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// The actions that explain one stale read or one diverged probe.
#[derive(Debug, Default)]
pub struct Chain<'a> {
    pub load: Option<&'a ActRec>,
    pub invalidations: Vec<&'a ActRec>,
    pub fill: Option<&'a ActRec>,
}

impl Chain<'_> {
    pub fn is_empty(&self) -> bool {
        self.load.is_none() && self.invalidations.is_empty() && self.fill.is_none()
    }

    /// The chain's lines, for a witness.
    pub fn lines(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.load.iter().map(|a| a.line).collect();
        v.extend(self.invalidations.iter().map(|a| a.line));
        v.extend(self.fill.iter().map(|a| a.line));
        v
    }

    /// One sentence: who loaded what, when the write's invalidations ran, who filled what after.
    pub fn describe(&self, write: &WriteRec) -> String {
        let mut parts = Vec::new();
        if let Some(l) = self.load {
            parts.push(format!(
                "{} loaded v{} from {} at {}{}",
                l.node,
                l.version.unwrap_or_default(),
                l.tier.as_str(),
                fmt_ns(l.start_ns),
                if l.start_ns < write.complete_ns {
                    format!(
                        ", before write {} completed at {}",
                        write.id,
                        fmt_ns(write.complete_ns)
                    )
                } else {
                    String::new()
                }
            ));
        }
        for i in &self.invalidations {
            parts.push(format!(
                "{} invalidated v{} in {} at {} ({})",
                i.node,
                i.version.unwrap_or_default(),
                i.tier.as_str(),
                fmt_ns(i.at_ns),
                i.outcome.as_str()
            ));
        }
        if let Some(f) = self.fill {
            let after = self
                .invalidations
                .iter()
                .any(|i| i.tier == f.tier && i.at_ns <= f.start_ns);
            parts.push(format!(
                "{} filled v{} into {} at {}{}",
                f.node,
                f.version.unwrap_or_default(),
                f.tier.as_str(),
                fmt_ns(f.at_ns),
                if after {
                    ", after the invalidation"
                } else {
                    ""
                }
            ));
        }
        parts.join("; ")
    }
}

/// The chain behind `version` of `key` being found in `tier` by `by_ns`, against `write` (the
/// newer write). `tier` is where the old value was found (`l1`, `l2`), or `None` when unknown
/// (a read served by another's load): then a fill into any cache tier counts.
pub fn explain<'a>(
    idx: &'a Index,
    key: u32,
    version: u64,
    tier: Option<Source>,
    by_ns: u64,
    write: &WriteRec,
) -> Chain<'a> {
    let acts = &idx.keys[key as usize].acts;
    let fill = acts
        .iter()
        .filter(|a| {
            a.action == CacheAction::Fill
                && a.outcome == ActOutcome::Ok
                && a.version == Some(version)
                && tier.is_none_or(|t| a.tier == t)
                && a.at_ns <= by_ns
        })
        .max_by(|a, b| a.order().cmp(&b.order()));
    let load_by = fill.map_or(by_ns, |f| f.start_ns);
    let loads = || {
        acts.iter().filter(move |a| {
            a.action == CacheAction::Load
                && a.outcome == ActOutcome::Ok
                && a.version == Some(version)
                && a.at_ns <= load_by
        })
    };
    // The filler's own load if there is one, else the latest anyone made.
    let load = fill
        .and_then(|f| {
            loads()
                .filter(|a| a.node == f.node)
                .max_by(|a, b| a.order().cmp(&b.order()))
        })
        .or_else(|| loads().max_by(|a, b| a.order().cmp(&b.order())));
    let invalidations = acts
        .iter()
        .filter(|a| {
            a.action == CacheAction::Invalidate
                && a.version == write.version
                && a.start_ns >= write.invoke_ns
        })
        .collect();
    Chain {
        load,
        invalidations,
        fill,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::history::Source;
    use crate::testkit::{H, MS};
    use crate::Invariant;

    #[test]
    fn a_late_fill_is_named_with_its_load_and_the_invalidation_it_followed() {
        let mut h = H::new(json!({"staleness_ns_max": 100 * MS}));
        // app-2 loads v0, the writer commits v1 and invalidates, app-2's fill of v0 lands after.
        let load = h.cache(
            "app-2",
            "k",
            "load",
            Source::Db,
            Some(0),
            "ok",
            (MS, 3 * MS),
        );
        h.write(1, "k", (2 * MS, 5 * MS), 1);
        let inval = h.cache(
            "app-1",
            "k",
            "invalidate",
            Source::L1,
            Some(1),
            "ok",
            (5 * MS, 6 * MS),
        );
        let fill = h.cache(
            "app-2",
            "k",
            "fill",
            Source::L1,
            Some(0),
            "ok",
            (7 * MS, 8 * MS),
        );
        // Noise: another key's fill, an older fill of the same version, a refused fill.
        h.cache(
            "app-3",
            "other",
            "fill",
            Source::L1,
            Some(0),
            "ok",
            (7 * MS, 8 * MS),
        );
        h.cache(
            "app-3",
            "k",
            "fill",
            Source::L1,
            Some(0),
            "refused",
            (9 * MS, 10 * MS),
        );
        h.read(2, "k", (300 * MS, 301 * MS), 0, Source::L1);
        let r = h.check();
        let v = r.verdict(Invariant::Staleness).unwrap();
        assert!(v.fails());
        for l in [load, inval, fill] {
            assert!(
                v.witness.lines.contains(&l),
                "line {l} in {:?}",
                v.witness.lines
            );
        }
        assert!(
            v.summary
                .contains("app-2 loaded v0 from db at 1.0 ms, before write")
                && v.summary
                    .contains("app-1 invalidated v1 in l1 at 6.0 ms (ok)")
                && v.summary
                    .contains("app-2 filled v0 into l1 at 8.0 ms, after the invalidation"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn a_diverged_probe_is_explained_by_the_fill_that_left_the_old_version() {
        let mut h = H::new(json!({}));
        h.cache(
            "app-2",
            "k",
            "load",
            Source::Db,
            Some(0),
            "ok",
            (MS, 3 * MS),
        );
        h.write(1, "k", (2 * MS, 5 * MS), 1);
        h.cache(
            "app-1",
            "k",
            "invalidate",
            Source::L2,
            Some(1),
            "failed",
            (5 * MS, 6 * MS),
        );
        let fill = h.cache(
            "app-2",
            "k",
            "fill",
            Source::L2,
            Some(0),
            "ok",
            (7 * MS, 8 * MS),
        );
        h.probe("k", 900 * MS, Source::L2, Some(0));
        h.probe("k", 900 * MS, Source::Db, Some(1));
        let r = h.check();
        let v = r.verdict(Invariant::Convergence).unwrap();
        assert!(v.fails());
        assert!(v.witness.lines.contains(&fill), "{:?}", v.witness.lines);
        assert!(
            v.summary
                .contains("app-1 invalidated v1 in l2 at 6.0 ms (failed)")
                && v.summary.contains("app-2 filled v0 into l2 at 8.0 ms"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn without_cache_lines_the_witness_is_the_write_and_the_read() {
        let mut h = H::new(json!({"staleness_ns_max": 100 * MS}));
        let w = h.write(1, "k", (2 * MS, 5 * MS), 1);
        let rd = h.read(2, "k", (300 * MS, 301 * MS), 0, Source::L1);
        let r = h.check();
        let v = r.verdict(Invariant::Staleness).unwrap();
        assert_eq!(v.witness.lines, vec![h.line_of(w), h.line_of(rd)]);
        assert!(!v.summary.contains("causal chain"), "{}", v.summary);
    }
}
