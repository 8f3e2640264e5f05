//! Invariant 3, convergence, from the end-of-run `probe` lines.
//!
//! Within T (`converge_within_ns`) of the quiet point, every cache tier holds, for every key,
//! either nothing or the database's latest version, and goes on doing so. The quiet point is the
//! last op's end or the last heal, whichever is later: from there nothing but the system itself
//! (an invalidator, an expiry, a background refresh) changes a tier. Every probe taken at or
//! after T is judged, so a tier that converged and diverged again fails; the probes before T
//! only measure how long a tier stayed diverged (`last_diverged_ns`, from the quiet point).
//! Without T, each tier's last probe of a key is judged (a history of one probe round).
//!
//! The database's latest version is its own probe (tier `db`, the last one per key) or, without
//! one, the highest acknowledged write when no write of the key is `unknown` (an unknown write
//! may have made a newer version, so then it is undecided).

use crate::chain;
use crate::history::Source;
use crate::index::{Index, OutboxRec, ProbeRec};
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

/// The last database probe of each key, by key id.
pub fn db_probes(idx: &Index) -> Vec<Option<&ProbeRec>> {
    let mut out = vec![None; idx.keys.len()];
    // Sorted by (key, tier, at_ns, version, line): the last db probe of a key wins.
    for p in idx.probes.iter().filter(|p| p.tier == Source::Db) {
        out[p.key as usize] = Some(p);
    }
    out
}

/// The version a cache tier must hold of `key` (or nothing): `None` when undecided.
fn target(idx: &Index, db: &[Option<&ProbeRec>], key: u32) -> Option<u64> {
    let k = &idx.keys[key as usize];
    match db[key as usize] {
        Some(d) => Some(d.version.unwrap_or(0)),
        None if !k.any_unknown => Some(
            k.max_ok
                .map_or(0, |w| k.writes[w as usize].version.unwrap_or(0)),
        ),
        None => None,
    }
}

/// Judges the cache probes by `within_ns` (T) after the quiet point; see the module doc.
pub fn check(idx: &Index, within_ns: Option<u64>) -> Verdict {
    let mut v = Verdict::new(Invariant::Convergence);
    let cache_probes: Vec<&ProbeRec> = idx.probes.iter().filter(|p| p.tier != Source::Db).collect();
    v.figure("probes", Figure::Count(cache_probes.len() as u64));
    if cache_probes.is_empty() {
        v.unknown("no cache probe lines: the run recorded no end-of-run reads of the tiers");
        return v;
    }
    // The earliest such probe by time and key name: the message does not depend on line order.
    let during = idx
        .probes
        .iter()
        .filter_map(|p| idx.fault_at(p.at_ns).map(|f| (p, f)));
    if let Some((p, f)) = during.min_by(|a, b| {
        (a.0.at_ns, idx.key_name(a.0.key), a.0.tier).cmp(&(
            b.0.at_ns,
            idx.key_name(b.0.key),
            b.0.tier,
        ))
    }) {
        v.unknown(format!(
            "probe on line {} was taken while the fault started on line {} was active: probe after the final heal",
            p.line, f.start_line
        ));
        return v;
    }
    let quiet_ns = idx.span_ns.1;
    let due_ns = within_ns.map(|t| quiet_ns.saturating_add(t));
    let db = db_probes(idx);
    // Probes are sorted by (key, tier, at_ns): the last probe of a key's tier ends its run.
    let mut last_at = vec![0u64; cache_probes.len()];
    for i in (0..cache_probes.len()).rev() {
        let (p, next) = (cache_probes[i], cache_probes.get(i + 1));
        last_at[i] = match next {
            Some(n) if (n.key, n.tier) == (p.key, p.tier) => last_at[i + 1],
            _ => p.at_ns,
        };
    }
    let mut undecided = 0u64;
    let mut early = 0u64;
    let mut judged_count = 0u64;
    let mut last_diverged: Option<u64> = None;
    let mut diverged: Vec<(&ProbeRec, u64)> = Vec::new();
    for (i, p) in cache_probes.iter().enumerate() {
        let Some(target) = target(idx, &db, p.key) else {
            undecided += 1;
            continue;
        };
        let off = p.version.is_some_and(|pv| pv != target);
        if off {
            last_diverged = Some(last_diverged.map_or(p.at_ns, |t: u64| t.max(p.at_ns)));
        }
        let last = last_at[i];
        let judged = match due_ns {
            Some(due) if last >= due => p.at_ns >= due,
            // The tier was last probed before T: nothing says what it held at T.
            Some(_) => {
                early += u64::from(p.at_ns == last);
                false
            }
            None => p.at_ns == last,
        };
        judged_count += u64::from(judged);
        if judged && off {
            diverged.push((p, target));
        }
    }
    // The outbox's backlog (a strategy that invalidates through it): judged as the probes are,
    // from T on (or its last reading without T); the earliest reading with rows left fails.
    let outbox_last_ns = idx.outbox.last().map_or(0, |o| o.at_ns);
    let outbox_judged = |o: &&OutboxRec| match due_ns {
        Some(due) => o.at_ns >= due,
        None => o.at_ns == outbox_last_ns,
    };
    let outbox_left = idx
        .outbox
        .iter()
        .filter(outbox_judged)
        .find(|o| o.undone > 0);
    let outbox_early = due_ns.is_some_and(|due| !idx.outbox.is_empty() && outbox_last_ns < due);
    v.figure("diverged_probes", Figure::Count(diverged.len() as u64))
        .figure("undecided_probes", Figure::Count(undecided))
        .figure(
            "last_diverged_ns",
            last_diverged.map_or(Figure::None, |t| Figure::Ns(t.saturating_sub(quiet_ns))),
        )
        .figure(
            "converge_within_ns",
            within_ns.map_or(Figure::None, Figure::Ns),
        )
        .figure(
            "outbox_undone",
            idx.outbox
                .last()
                .map_or(Figure::None, |o| Figure::Count(o.undone)),
        );
    let first = diverged.iter().min_by(|a, b| {
        // Line last: lines equal in everything else are the same probe written twice.
        (
            a.0.at_ns,
            idx.key_name(a.0.key),
            a.0.tier,
            a.0.version,
            a.0.line,
        )
            .cmp(&(
                b.0.at_ns,
                idx.key_name(b.0.key),
                b.0.tier,
                b.0.version,
                b.0.line,
            ))
    });
    let within = |t: u64| {
        format!(
            "{} ms after the quiet point",
            t.saturating_sub(quiet_ns) / 1_000_000
        )
    };
    match first {
        Some(&(p, target)) => {
            v.witness.line(p.line);
            let k = &idx.keys[p.key as usize];
            match db[p.key as usize] {
                Some(d) => v.witness.line(d.line),
                None => {
                    if let Some(w) = k.max_ok {
                        let w = &k.writes[w as usize];
                        v.witness.op(w.id, w.line);
                    }
                }
            }
            // How the old version got there: the chain against the first write that replaced it.
            let held = p.version.unwrap_or_default();
            let why = match k.first_newer(held) {
                Some((_, w)) => {
                    let write = idx.write(p.key, w);
                    let chain = chain::explain(idx, p.key, held, Some(p.tier), p.at_ns, write);
                    for l in chain.lines() {
                        v.witness.line(l);
                    }
                    if chain.is_empty() {
                        String::new()
                    } else {
                        format!("; causal chain: {}", chain.describe(idx, write))
                    }
                }
                None => String::new(),
            };
            let when = match within_ns {
                Some(t) => format!("{}, past T = {} ms", within(p.at_ns), t / 1_000_000),
                None => "after the run settled".to_string(),
            };
            v.judge(
                true,
                format!(
                    "{} holds v{held} of {:?} {when}, the database has v{target} ({} diverged probes){why}",
                    p.tier.as_str(),
                    idx.key_name(p.key),
                    diverged.len()
                ),
            );
        }
        None if outbox_left.is_some() => {
            let o = outbox_left.expect("guarded");
            v.witness.line(o.line);
            let when = match within_ns {
                Some(t) => format!("{}, past T = {} ms", within(o.at_ns), t / 1_000_000),
                None => "after the run settled".to_string(),
            };
            v.judge(
                true,
                format!(
                    "the outbox held {} rows no invalidator had applied to both tiers {when}: it never drained",
                    o.undone
                ),
            );
        }
        None if outbox_early => v.unknown(format!(
            "the outbox was last read before T ({} ms after the quiet point): read it at T",
            within_ns.unwrap_or(0) / 1_000_000
        )),
        None if early > 0 => v.unknown(format!(
            "{early} tiers were last probed before T ({} ms after the quiet point): probe them at T",
            within_ns.unwrap_or(0) / 1_000_000
        )),
        None if undecided > 0 => {
            v.unknown(format!("{undecided} probes are of keys with unknown writes and no database probe: record a db probe per key"))
        }
        None => {
            let how_long = match last_diverged {
                Some(t) => format!("; the last diverged probe was {}", within(t)),
                None => "; no probe found a tier diverged".to_string(),
            };
            let by = match within_ns {
                Some(t) => format!(" taken from T = {} ms after the quiet point on", t / 1_000_000),
                None => " taken last".to_string(),
            };
            let drained = if idx.outbox.is_empty() {
                ""
            } else {
                "; the outbox drained"
            };
            v.judge(
                false,
                format!(
                    "all {judged_count} cache probes{by} hold nothing or the database's version{how_long}{drained}"
                ),
            )
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::Invariant;
    use serde_json::json;

    use crate::history::{Outcome, Source};
    use crate::testkit::{H, MS};
    use crate::verdict::Status;

    #[test]
    fn holds_when_tiers_hold_nothing_or_the_latest() {
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 2);
        h.probe("k", 900 * MS, Source::L1, None);
        h.probe("k", 900 * MS, Source::L2, Some(2));
        h.probe("k", 900 * MS, Source::Db, Some(2));
        assert_eq!(
            h.check().verdict(Invariant::Convergence).unwrap().status,
            Status::Holds
        );
    }

    #[test]
    fn fails_with_the_diverged_probe_and_the_database_probe() {
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 2);
        let db = h.probe("k", 900 * MS, Source::Db, Some(2));
        let l2 = h.probe("k", 901 * MS, Source::L2, Some(1));
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert_eq!((v.status, v.witness.lines), (Status::Fails, vec![db, l2]));
    }

    #[test]
    fn without_a_db_probe_the_acknowledged_writes_decide_unless_one_is_unknown() {
        let mut h = H::new(json!({}));
        let w = h.write(1, "k", (0, MS), 2);
        h.probe("k", 900 * MS, Source::L1, Some(2));
        assert_eq!(
            h.check().verdict(Invariant::Convergence).unwrap().status,
            Status::Holds
        );
        let p = h.probe("k", 900 * MS, Source::L1, Some(1));
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert_eq!(
            (v.status, v.witness.lines),
            (Status::Fails, vec![h.line_of(w), p])
        );
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 2);
        h.write_outcome(1, "k", (0, MS), None, Outcome::Unknown);
        h.probe("k", 900 * MS, Source::L1, Some(2));
        assert!(matches!(
            h.check().verdict(Invariant::Convergence).unwrap().status,
            Status::Unknown(_)
        ));
    }

    #[test]
    fn a_probe_during_a_fault_or_no_probe_at_all_is_unknown() {
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 1);
        assert!(matches!(
            h.check().verdict(Invariant::Convergence).unwrap().status,
            Status::Unknown(_)
        ));
        h.fault(800 * MS, true, "memcached-1");
        h.probe("k", 900 * MS, Source::L2, Some(1));
        assert!(matches!(
            h.check().verdict(Invariant::Convergence).unwrap().status,
            Status::Unknown(_)
        ));
        h.fault(900 * MS, false, "memcached-1"); // boundary: healed at the probe's instant
        assert_eq!(
            h.check().verdict(Invariant::Convergence).unwrap().status,
            Status::Holds
        );
    }

    /// A write of v2 done by 1 ms (the quiet point), judged with T = 400 ms: the history and
    /// the probe line numbers of L1's probes, one per (at ms, version held).
    fn rounds(probes: &[(u64, u64)], t_ms: u64) -> (H, Vec<u64>) {
        let mut h = H::new(json!({ "converge_within_ns": t_ms * MS }));
        h.write(1, "k", (0, MS), 2);
        h.probe("k", 401 * MS, Source::Db, Some(2));
        let lines = probes
            .iter()
            .map(|&(at, ver)| h.probe("k", at * MS, Source::L1, Some(ver)))
            .collect();
        (h, lines)
    }

    #[test]
    fn a_tier_diverged_before_t_and_converged_from_t_on_holds_and_says_how_long() {
        let (h, _) = rounds(&[(101, 1), (201, 2), (401, 2)], 400);
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert_eq!(v.status, Status::Holds, "{}", v.summary);
        assert_eq!(
            v.get("last_diverged_ns"),
            Some(&crate::verdict::Figure::Ns(100 * MS))
        );
        assert!(
            v.summary.contains("100 ms after the quiet point"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn a_tier_still_diverged_at_t_fails_with_that_probe() {
        let (h, lines) = rounds(&[(101, 1), (201, 1), (401, 1)], 400);
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert!(v.witness.lines.contains(&lines[2]), "{:?}", v.witness);
        assert!(v.summary.contains("past T = 400 ms"), "{}", v.summary);
    }

    #[test]
    fn a_tier_that_diverges_again_after_t_fails_though_its_first_probe_at_t_held() {
        let (h, lines) = rounds(&[(401, 2), (501, 1)], 400);
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert!(v.witness.lines.contains(&lines[1]), "{:?}", v.witness);
    }

    #[test]
    fn a_smaller_t_judges_the_earlier_rounds_too() {
        let (h, lines) = rounds(&[(101, 1), (201, 2), (401, 2)], 400);
        let v = h.check_with(&[("converge_within_ns", json!(50 * MS))]);
        let v = v.verdict(Invariant::Convergence).unwrap();
        assert_eq!(v.status, Status::Fails);
        assert!(v.witness.lines.contains(&lines[0]), "{:?}", v.witness);
        // One nanosecond past the diverged probe, T judges only the converged ones.
        let v = h.check_with(&[("converge_within_ns", json!(100 * MS + 1))]);
        assert_eq!(
            v.verdict(Invariant::Convergence).unwrap().status,
            Status::Holds
        );
    }

    #[test]
    fn a_tier_last_probed_before_t_is_unknown_whatever_it_held() {
        for held in [1, 2] {
            let (h, _) = rounds(&[(101, held)], 400);
            let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
            assert!(matches!(v.status, Status::Unknown(_)), "{:?}", v.status);
        }
    }

    /// The liveness half of convergence: from T on, the outbox holds no row an invalidator has
    /// not applied to both tiers. A backlog before T only says it was still draining.
    #[test]
    fn an_outbox_that_never_drained_fails_from_t_on_and_one_that_drained_holds() {
        let outbox = |h: &mut H, at_ms: u64, undone: u64| {
            h.line(json!({"type": "outbox", "at_ns": at_ms * MS, "undone": undone}))
        };
        let (mut h, _) = rounds(&[(401, 2)], 400);
        outbox(&mut h, 201, 3);
        outbox(&mut h, 401, 0);
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert_eq!(v.status, Status::Holds, "{}", v.summary);
        assert!(v.summary.ends_with("the outbox drained"), "{}", v.summary);
        assert_eq!(
            v.get("outbox_undone"),
            Some(&crate::verdict::Figure::Count(0))
        );
        let (mut h, _) = rounds(&[(401, 2)], 400);
        outbox(&mut h, 201, 3);
        let left = outbox(&mut h, 401, 2);
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert_eq!(v.status, Status::Fails);
        assert_eq!(v.witness.lines, vec![left]);
        assert!(
            v.summary.contains("the outbox held 2 rows") && v.summary.contains("past T = 400 ms"),
            "{}",
            v.summary
        );
        // Read only before T: nothing says it drained.
        let (mut h, _) = rounds(&[(401, 2)], 400);
        outbox(&mut h, 201, 0);
        let v = h.check().verdict(Invariant::Convergence).unwrap().clone();
        assert!(matches!(v.status, Status::Unknown(_)), "{:?}", v.status);
    }
}
