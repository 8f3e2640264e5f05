//! Invariant 5, no lost acknowledged writes: the database's final version of every key (its `db`
//! probe) is at least the highest version any client had acknowledged for it.

use super::convergence::db_probes;
use crate::index::Index;
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

pub fn check(idx: &Index) -> Verdict {
    let mut v = Verdict::new(Invariant::LostWrites);
    let db = db_probes(idx);
    let written: Vec<u32> = (0..idx.keys.len() as u32)
        .filter(|&k| idx.keys[k as usize].max_ok.is_some())
        .collect();
    v.figure("keys_written", Figure::Count(written.len() as u64));
    let mut unprobed = 0u64;
    let mut lost = Vec::new();
    for &k in &written {
        let ki = &idx.keys[k as usize];
        let w = &ki.writes[ki.max_ok.expect("filtered") as usize];
        match db[k as usize] {
            None => unprobed += 1,
            Some(p) if p.version.is_none_or(|pv| pv < w.version.unwrap_or(0)) => lost.push((w, p)),
            Some(_) => {}
        }
    }
    v.figure("keys_lost", Figure::Count(lost.len() as u64))
        .figure("keys_unprobed", Figure::Count(unprobed));
    match lost.iter().min_by_key(|(w, _)| (w.complete_ns, w.id)) {
        Some((w, p)) => {
            v.witness.op(w.id, w.line);
            v.witness.line(p.line);
            let found = p
                .version
                .map_or("no row".to_string(), |pv| format!("v{pv}"));
            v.judge(true, format!("write {} of v{} was acknowledged but the database holds {found} ({} keys lost)", w.id, w.version.unwrap_or(0), lost.len()));
        }
        None if db.iter().all(Option::is_none) => {
            v.unknown("no database probe lines: record a final probe with tier db for every key")
        }
        None if unprobed > 0 => v.unknown(format!(
            "{unprobed} written keys have no database probe: record a db probe for every key"
        )),
        None => v.judge(
            false,
            format!(
                "every acknowledged write of {} keys is in the database",
                written.len()
            ),
        ),
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
    fn holds_fails_and_unknown() {
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 1);
        let w = h.write(1, "k", (2 * MS, 3 * MS), 2);
        assert!(matches!(
            h.check().verdict(Invariant::LostWrites).unwrap().status,
            Status::Unknown(_)
        ));
        let p = h.probe("k", 900 * MS, Source::Db, Some(1));
        let v = h.check().verdict(Invariant::LostWrites).unwrap().clone();
        assert_eq!(
            (v.status, v.witness.lines),
            (Status::Fails, vec![h.line_of(w), p])
        );

        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 1);
        h.write_outcome(1, "k", (2 * MS, 3 * MS), Some(2), Outcome::Unknown); // may be lost
        h.probe("k", 900 * MS, Source::Db, Some(1));
        assert_eq!(
            h.check().verdict(Invariant::LostWrites).unwrap().status,
            Status::Holds
        );
        let w = h.write(1, "j", (0, MS), 1);
        let p = h.probe("j", 900 * MS, Source::Db, None);
        let v = h.check().verdict(Invariant::LostWrites).unwrap().clone();
        assert_eq!(
            (v.status, v.witness.lines),
            (Status::Fails, vec![h.line_of(w), p]),
            "a missing row is lost"
        );
    }
}
