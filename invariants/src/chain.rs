//! Causal chains: why a cache served an old version. From the history's `cache` lines (the
//! library's own loads, fills and invalidations), a stale read is explained by the load that
//! read the old row (from the database, or from L2 for a backfill of L1), the newer write's
//! invalidations in every tier, and the fill that put the old row where the read found it,
//! typically after the invalidation: the fill/invalidate race, made visible.
//! Histories without `cache` lines simply get no chain.

use crate::history::{ActOutcome, CacheAction, Role, Source};
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

    /// One sentence: who loaded what, when the write's invalidations ran (on which Redis node,
    /// and whether a demotion of that node discarded one it acknowledged), who filled what
    /// after. `idx` gives the Redis nodes' roles.
    pub fn describe(&self, idx: &Index, write: &WriteRec) -> String {
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
                "{} invalidated v{} in {}{} at {} ({}){}",
                i.node,
                i.version.unwrap_or_default(),
                i.tier.as_str(),
                on(i),
                fmt_ns(i.at_ns),
                i.outcome.as_str(),
                discarded(idx, i)
            ));
        }
        if let Some(f) = self.fill {
            let after = self
                .invalidations
                .iter()
                .any(|i| i.tier == f.tier && i.at_ns <= f.start_ns);
            parts.push(format!(
                "{} filled v{} into {}{} at {}{}",
                f.node,
                f.version.unwrap_or_default(),
                f.tier.as_str(),
                on(f),
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

/// ` on redis-master`: the server that answered an action, when the history names it.
fn on(a: &ActRec) -> String {
    a.server
        .as_deref()
        .map_or(String::new(), |s| format!(" on {s}"))
}

/// What became of an invalidation a Redis master acknowledged while another node of its pair
/// was, or later became, a master: a demoted master resyncs from the new one, discarding every
/// write it took meanwhile (Jepsen's split-brain finding). Certain only when the new master
/// could not have had it: it was a master already when the old one acknowledged, or the two
/// were cut apart from then until its promotion; otherwise the tombstone may have replicated
/// first, and the chain says "may have". Empty when the action failed, its node was not a
/// master, or no other node of its pair became one.
fn discarded(idx: &Index, a: &ActRec) -> String {
    let Some(server) = a.server.as_deref() else {
        return String::new();
    };
    if a.outcome != ActOutcome::Ok {
        return String::new();
    }
    if idx.role_at(server, a.at_ns).map(|r| r.role) != Some(Role::Master) {
        return String::new();
    }
    let demoted = idx.demotion_after(server, a.at_ns);
    let took_over = match demoted {
        Some(d) => idx.other_master_at(server, d.at_ns),
        None => idx
            .other_master_at(server, a.at_ns)
            .or_else(|| idx.promotion_after(server, a.at_ns)),
    };
    let Some(p) = took_over else {
        return demoted.map_or(String::new(), |d| {
            format!(
                ", acknowledged by {server}, which was demoted at {} and resynced",
                fmt_ns(d.at_ns)
            )
        });
    };
    let (pn, pt) = (&*p.server, fmt_ns(p.at_ns));
    let how = if p.at_ns <= a.at_ns {
        Some(format!("{pn} was a master already (since {pt})"))
    } else if idx.cut_between(server, pn, a.at_ns, p.at_ns) {
        Some(format!(
            "{server} was cut from {pn} until {pn} was made master at {pt}"
        ))
    } else {
        None
    };
    match (demoted, how) {
        (Some(d), Some(how)) => format!(
            ", acknowledged by {server}, which lost it: {how}, and {server} was demoted at {} \
             and resynced from it",
            fmt_ns(d.at_ns)
        ),
        (Some(d), None) => format!(
            ", acknowledged by {server}, which may have lost it: {pn} was made master at {pt} \
             (it kept the tombstone only if it had replicated by then), and {server} was \
             demoted at {} and resynced from it",
            fmt_ns(d.at_ns)
        ),
        // Not demoted within the run: a real Sentinel waits seconds before it converts an old
        // master that answers again. Two masters, unless the old one was down.
        (None, _) if idx.down_at(server, p.at_ns) => String::new(),
        (None, how) => format!(
            ", acknowledged by {server}; {pn} was made master at {pt} while {server} still was \
             one (a split brain){}",
            if how.is_some() {
                ", and never got it"
            } else {
                ""
            }
        ),
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

    /// How a split-brain history is varied.
    struct Brain {
        /// The node the tombstone went to, and how it ended.
        on: &'static str,
        outcome: &'static str,
        /// redis-master is demoted at 90 ms.
        demoted: bool,
        /// A fault from 15 ms to 100 ms: a partition of redis-master from redis-replica, a kill
        /// of redis-master, or none.
        fault: Option<serde_json::Value>,
        /// redis-replica is made master at this ms (the tombstone is at 21 ms).
        promoted_ms: u64,
    }

    const SPLIT: Brain = Brain {
        on: "redis-master",
        outcome: "ok",
        demoted: true,
        fault: None,
        promoted_ms: 40,
    };

    fn cut() -> Option<serde_json::Value> {
        Some(json!({"kind": "partition", "target": "redis-master", "peers": "redis-replica"}))
    }

    /// A split brain: app-1 invalidates on redis-master at 21 ms, the Sentinels promote
    /// redis-replica (which holds the old fill), then maybe demote redis-master; the staleness
    /// verdict's summary.
    fn split_brain(b: Brain) -> String {
        use crate::history::FaultAction::{Start, Stop};
        let mut h = H::new(json!({"staleness_ns_max": 100 * MS}));
        h.role("redis-master", "master", 0);
        h.role("redis-replica", "replica", 0);
        if let Some(f) = &b.fault {
            h.fault_json(15 * MS, Start, f.clone());
            h.fault_json(100 * MS, Stop, f.clone());
        }
        let cache =
            |node: &str, action: &str, v: u64, outcome: &str, span: (u64, u64), on: &str| {
                json!({"type": "cache", "node": node, "key": "k", "action": action, "tier": "l1",
                   "version": v, "outcome": outcome, "start_ns": span.0, "at_ns": span.1,
                   "server": on})
            };
        h.cache(
            "app-2",
            "k",
            "load",
            Source::Db,
            Some(0),
            "ok",
            (MS, 2 * MS),
        );
        h.line(cache(
            "app-2",
            "fill",
            0,
            "ok",
            (2 * MS, 3 * MS),
            "redis-master",
        ));
        h.write(1, "k", (10 * MS, 20 * MS), 1);
        h.line(cache(
            "app-1",
            "invalidate",
            1,
            b.outcome,
            (20 * MS, 21 * MS),
            b.on,
        ));
        h.role("redis-replica", "master", b.promoted_ms * MS);
        if b.demoted {
            h.role("redis-master", "replica", 90 * MS);
        }
        h.read(2, "k", (300 * MS, 301 * MS), 0, Source::L1);
        let r = h.check();
        let v = r.verdict(Invariant::Staleness).unwrap();
        assert!(v.fails());
        v.summary.clone()
    }

    #[test]
    fn a_tombstone_a_demoted_master_acknowledged_is_said_lost_only_when_it_must_have_been() {
        // Cut from the replica until its promotion: certainly lost at the demotion.
        let lost = split_brain(Brain {
            fault: cut(),
            ..SPLIT
        });
        assert!(
            lost.contains(
                "app-1 invalidated v1 in l1 on redis-master at 21.0 ms (ok), acknowledged by \
                 redis-master, which lost it: redis-master was cut from redis-replica until \
                 redis-replica was made master at 40.0 ms, and redis-master was demoted at 90.0 \
                 ms and resynced from it"
            ) && lost.contains("app-2 filled v0 into l1 on redis-master at 3.0 ms"),
            "{lost}"
        );
        // Promoted before the tombstone: two masters then, certainly lost.
        let before = split_brain(Brain {
            promoted_ms: 18,
            ..SPLIT
        });
        assert!(
            before.contains(
                "which lost it: redis-replica was a master already (since 18.0 ms), and \
                 redis-master was demoted at 90.0 ms"
            ),
            "{before}"
        );
        // Not cut: it may have replicated before the promotion.
        let maybe = split_brain(SPLIT);
        assert!(
            maybe.contains("which may have lost it: redis-replica was made master at 40.0 ms"),
            "{maybe}"
        );
        // Not demoted in the run: two masters, said so.
        let brain = split_brain(Brain {
            demoted: false,
            fault: cut(),
            ..SPLIT
        });
        assert!(
            brain.contains(
                "on redis-master at 21.0 ms (ok), acknowledged by redis-master; redis-replica \
                 was made master at 40.0 ms while redis-master still was one (a split brain), \
                 and never got it"
            ),
            "{brain}"
        );
        // Twins: killed, not demoted (a failover, not a split brain); a tombstone that failed
        // was never acknowledged; one on the node that stayed a master was never discarded.
        let kill = Some(json!({"kind": "kill", "target": "redis-master"}));
        let failover = split_brain(Brain {
            demoted: false,
            fault: kill,
            ..SPLIT
        });
        assert!(
            failover.contains("on redis-master at 21.0 ms (ok);") && !failover.contains("brain"),
            "{failover}"
        );
        let failed = split_brain(Brain {
            outcome: "failed",
            fault: cut(),
            ..SPLIT
        });
        assert!(
            failed.contains("in l1 on redis-master at 21.0 ms (failed)")
                && !failed.contains("lost it"),
            "{failed}"
        );
        let kept = split_brain(Brain {
            on: "redis-replica",
            fault: cut(),
            ..SPLIT
        });
        assert!(
            kept.contains("in l1 on redis-replica at 21.0 ms (ok)") && !kept.contains("lost it"),
            "{kept}"
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
