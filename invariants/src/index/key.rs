//! One key's writes with the query structures the checkers use.

use super::*;

/// Everything the checkers need about one key's writes, with query structures built once.
#[derive(Debug, Default)]
pub struct KeyIndex {
    pub writes: Vec<WriteRec>,
    /// Ok writes by version, with the suffix minimum of completion: entry `i` holds the earliest
    /// completion among ok writes of version `>= by_version[i].0`, and which write that is.
    by_version: Vec<(u64, u64, u32)>,
    /// Ok writes by (client, completion) with the running maximum version within each client.
    own: Vec<(u64, u64, u64, u32)>,
    /// Versioned writes that may have happened (ok or unknown), by (version, invoke).
    happened: Vec<(u64, u64, u32)>,
    /// Earliest invoke of an `unknown` write with no version: it may have made any version.
    pub unversioned_unknown_invoke_ns: Option<u64>,
    /// The acknowledged write with the highest version.
    pub max_ok: Option<u32>,
    pub any_unknown: bool,
    /// Cache actions on this key, by [`ActRec::order`].
    pub acts: Vec<ActRec>,
}

/// How a read's version is accounted for by the writes of its key.
pub enum Explained {
    /// By a write invoked before the read completed.
    Written,
    /// Only by writes invoked after the read completed (the earliest of them).
    WrittenLater(u32),
    /// Only by a write that certainly failed.
    FailedOnly(u32),
    /// By no write at all.
    Never,
}

impl KeyIndex {
    pub(super) fn finish(&mut self) {
        self.acts.sort_by(|a, b| a.order().cmp(&b.order()));
        let w = &self.writes;
        let mut ok: Vec<u32> = (0..w.len() as u32)
            .filter(|&i| w[i as usize].outcome == Outcome::Ok)
            .collect();
        ok.sort_unstable_by_key(|&i| {
            (
                w[i as usize].version,
                w[i as usize].complete_ns,
                w[i as usize].id,
            )
        });
        let mut by_version = Vec::with_capacity(ok.len());
        let mut best: Option<(u64, u64, u32)> = None; // (complete, id, idx)
        for &i in ok.iter().rev() {
            let r = &w[i as usize];
            let cand = (r.complete_ns, r.id, i);
            if best.is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                best = Some(cand);
            }
            let b = best.expect("set above");
            by_version.push((r.version.expect("ok writes carry a version"), b.0, b.2));
        }
        by_version.reverse();
        self.max_ok = ok.last().copied();

        let mut own: Vec<u32> = ok.clone();
        own.sort_unstable_by_key(|&i| {
            (
                w[i as usize].client,
                w[i as usize].complete_ns,
                w[i as usize].id,
            )
        });
        let mut run: Option<(u64, u64, u32)> = None; // (client, version, idx)
        self.own = own
            .iter()
            .map(|&i| {
                let r = &w[i as usize];
                let v = r.version.expect("ok writes carry a version");
                run = match run {
                    Some((c, mv, mi)) if c == r.client && mv >= v => Some((c, mv, mi)),
                    _ => Some((r.client, v, i)),
                };
                let (_, mv, mi) = run.expect("set above");
                (r.client, r.complete_ns, mv, mi)
            })
            .collect();

        let mut happened: Vec<(u64, u64, u32)> = Vec::new();
        for (i, r) in w.iter().enumerate() {
            match (r.outcome, r.version) {
                (Outcome::Fail, _) => {}
                (_, Some(v)) => happened.push((v, r.invoke_ns, i as u32)),
                (_, None) => {
                    let t = self
                        .unversioned_unknown_invoke_ns
                        .map_or(r.invoke_ns, |t| t.min(r.invoke_ns));
                    self.unversioned_unknown_invoke_ns = Some(t);
                }
            }
            self.any_unknown |= r.outcome == Outcome::Unknown;
        }
        happened.sort_unstable_by_key(|&(v, t, i)| (v, t, w[i as usize].id));
        self.happened = happened;
        self.by_version = by_version;
    }

    /// The earliest-completing acknowledged write of a version newer than `v`: `(complete, idx)`.
    pub fn first_newer(&self, v: u64) -> Option<(u64, u32)> {
        let i = self.by_version.partition_point(|e| e.0 <= v);
        self.by_version.get(i).map(|e| (e.1, e.2))
    }

    /// The highest version `client` had acknowledged strictly before `t`: `(version, idx)`.
    pub fn own_before(&self, client: u64, t: u64) -> Option<(u64, u32)> {
        let lo = self.own.partition_point(|e| e.0 < client);
        let hi = self
            .own
            .partition_point(|e| e.0 < client || (e.0 == client && e.1 < t));
        (hi > lo).then(|| (self.own[hi - 1].2, self.own[hi - 1].3))
    }

    /// Whether version `v`, read by an op completing at `complete_ns`, was ever written in time.
    pub fn explain(&self, v: u64, complete_ns: u64) -> Explained {
        let lo = self.happened.partition_point(|e| e.0 < v);
        let hi = self.happened.partition_point(|e| e.0 <= v);
        if self.happened[lo..hi].iter().any(|e| e.1 < complete_ns)
            || self
                .unversioned_unknown_invoke_ns
                .is_some_and(|t| t < complete_ns)
        {
            return Explained::Written;
        }
        if lo < hi {
            return Explained::WrittenLater(self.happened[lo].2);
        }
        let failed = self
            .writes
            .iter()
            .enumerate()
            .filter(|(_, w)| w.outcome == Outcome::Fail && w.version == Some(v));
        match failed.min_by_key(|(_, w)| (w.invoke_ns, w.id)) {
            Some((i, _)) => Explained::FailedOnly(i as u32),
            None => Explained::Never,
        }
    }
}
