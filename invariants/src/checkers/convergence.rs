//! Invariant 3, convergence, from the end-of-run `probe` lines.
//!
//! After every fault healed and a settle period, every cache tier holds, for every key, either
//! nothing or the database's latest version. The database's latest version is its own probe (tier
//! `db`, the last one per key) or, without one, the highest acknowledged write when no write of the
//! key is `unknown` (an unknown write may have made a newer version, so then it is undecided).

use crate::chain;
use crate::history::Source;
use crate::index::{Index, ProbeRec};
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

pub fn check(idx: &Index) -> Verdict {
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
    let db = db_probes(idx);
    let mut undecided = 0u64;
    let mut diverged: Vec<(&ProbeRec, u64)> = Vec::new();
    for p in &cache_probes {
        let k = &idx.keys[p.key as usize];
        let target = match db[p.key as usize] {
            Some(d) => d.version.unwrap_or(0),
            None if !k.any_unknown => k
                .max_ok
                .map_or(0, |w| k.writes[w as usize].version.unwrap_or(0)),
            None => {
                undecided += 1;
                continue;
            }
        };
        if p.version.is_some_and(|pv| pv != target) {
            diverged.push((p, target));
        }
    }
    v.figure("diverged_probes", Figure::Count(diverged.len() as u64))
        .figure("undecided_probes", Figure::Count(undecided));
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
                        format!("; causal chain: {}", chain.describe(write))
                    }
                }
                None => String::new(),
            };
            v.judge(
                true,
                format!(
                    "{} holds v{held} of {:?} after the run settled, the database has v{target} ({} diverged probes){why}",
                    p.tier.as_str(),
                    idx.key_name(p.key),
                    diverged.len()
                ),
            );
        }
        None if undecided > 0 => {
            v.unknown(format!("{undecided} probes are of keys with unknown writes and no database probe: record a db probe per key"))
        }
        None => v.judge(false, format!("all {} cache probes hold nothing or the database's version", cache_probes.len())),
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
}
