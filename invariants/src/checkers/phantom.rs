//! Invariant 2, no phantom values.
//!
//! Every version a successful read returns was written by a write (ok or unknown, never a failed
//! one) invoked before the read completed, or is version 0, the initial row. An `unknown` write
//! that does not know its version may account for any version of its key once invoked. When the
//! read recorded its payload, the payload must be the one derived from (key, version).

use std::io;

use super::ReadChecker;
use crate::index::{Explained, Index, ReadLog, ReadRec};
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

pub struct Phantom {
    ok_reads: u64,
    phantoms: u64,
    payload_mismatches: u64,
    /// The earliest phantom read by (invoke, id), with the write that shows why.
    first: Option<(ReadRec, Why)>,
}

#[derive(Clone, Copy)]
enum Why {
    Never,
    WrittenLater(u32),
    FailedOnly(u32),
    Payload,
}

impl Phantom {
    pub fn new() -> Self {
        Phantom {
            ok_reads: 0,
            phantoms: 0,
            payload_mismatches: 0,
            first: None,
        }
    }
}

impl Default for Phantom {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadChecker for Phantom {
    fn observe(&mut self, idx: &Index, r: &ReadRec) {
        if !r.ok() {
            return;
        }
        self.ok_reads += 1;
        let why = if r.payload_ok == Some(false) {
            self.payload_mismatches += 1;
            Some(Why::Payload)
        } else if r.version == 0 {
            None
        } else {
            match idx.keys[r.key as usize].explain(r.version, r.complete_ns) {
                Explained::Written => None,
                Explained::WrittenLater(w) => Some(Why::WrittenLater(w)),
                Explained::FailedOnly(w) => Some(Why::FailedOnly(w)),
                Explained::Never => Some(Why::Never),
            }
        };
        let Some(why) = why else { return };
        self.phantoms += 1;
        if self
            .first
            .as_ref()
            .is_none_or(|(f, _)| (r.invoke_ns, r.id) < (f.invoke_ns, f.id))
        {
            self.first = Some((*r, why));
        }
    }

    fn finish(self: Box<Self>, idx: &Index, _reads: &mut ReadLog) -> io::Result<Verdict> {
        let mut v = Verdict::new(Invariant::Phantom);
        v.figure("phantom_reads", Figure::Count(self.phantoms))
            .figure("payload_mismatches", Figure::Count(self.payload_mismatches))
            .figure("ok_reads", Figure::Count(self.ok_reads));
        let Some((r, why)) = self.first else {
            v.judge(
                false,
                format!(
                    "every version read of {} reads was written in time",
                    self.ok_reads
                ),
            );
            return Ok(v);
        };
        let key = idx.key_name(r.key);
        v.witness.op(r.id, r.line);
        let summary = match why {
            Why::Never => format!(
                "read {} of {key:?} returned v{}, which no write made",
                r.id, r.version
            ),
            Why::Payload => format!(
                "read {} of {key:?} v{} returned a payload that is not that version's",
                r.id, r.version
            ),
            Why::WrittenLater(w) | Why::FailedOnly(w) => {
                let w = idx.write(r.key, w);
                v.witness.op(w.id, w.line);
                if matches!(why, Why::FailedOnly(_)) {
                    format!(
                        "read {} of {key:?} returned v{}, made only by write {}, which failed",
                        r.id, r.version, w.id
                    )
                } else {
                    format!(
                        "read {} of {key:?} returned v{} before write {} that made it was invoked",
                        r.id, r.version, w.id
                    )
                }
            }
        };
        v.judge(true, format!("{summary} ({} phantom reads)", self.phantoms));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use crate::Invariant;
    use serde_json::json;

    use crate::history::{Outcome, Source};
    use crate::payload;
    use crate::testkit::{H, MS};
    use crate::verdict::Status;

    fn status(h: &H) -> (Status, Vec<u64>) {
        let v = h.check().verdict(Invariant::Phantom).unwrap().clone();
        (v.status, v.witness.ops)
    }

    #[test]
    fn holds_for_a_version_written_by_a_write_still_in_flight() {
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, 100 * MS), 1);
        h.read(2, "k", (10 * MS, 20 * MS), 1, Source::Db);
        h.read(2, "k", (10 * MS, 20 * MS), 0, Source::Db);
        assert_eq!(status(&h).0, Status::Holds);
    }

    #[test]
    fn fails_for_a_version_no_write_made() {
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 1);
        let r = h.read(2, "k", (10 * MS, 20 * MS), 5, Source::L1);
        assert_eq!(status(&h), (Status::Fails, vec![r]));
    }

    #[test]
    fn boundary_a_write_invoked_exactly_when_the_read_completed_was_not_seen() {
        let mut h = H::new(json!({}));
        let w = h.write(1, "k", (20 * MS, 30 * MS), 1);
        let r = h.read(2, "k", (10 * MS, 20 * MS), 1, Source::L1);
        assert_eq!(status(&h), (Status::Fails, vec![w, r]));
        let mut h = H::new(json!({}));
        h.write(1, "k", (20 * MS - 1, 30 * MS), 1);
        h.read(2, "k", (10 * MS, 20 * MS), 1, Source::L1);
        assert_eq!(status(&h).0, Status::Holds);
    }

    #[test]
    fn a_failed_write_cannot_be_read_an_unknown_one_can() {
        let mut h = H::new(json!({}));
        let w = h.write_outcome(1, "k", (0, MS), Some(1), Outcome::Fail);
        let r = h.read(2, "k", (10 * MS, 20 * MS), 1, Source::L1);
        assert_eq!(status(&h), (Status::Fails, vec![w, r]));
        let mut h = H::new(json!({}));
        h.write_outcome(1, "k", (0, MS), Some(1), Outcome::Unknown);
        h.read(2, "k", (10 * MS, 20 * MS), 1, Source::L1);
        assert_eq!(status(&h).0, Status::Holds);
        let mut h = H::new(json!({}));
        h.write_outcome(1, "k", (0, MS), None, Outcome::Unknown);
        h.read(2, "k", (10 * MS, 20 * MS), 7, Source::L1);
        assert_eq!(
            status(&h).0,
            Status::Holds,
            "an unknown write without a version may have made any version"
        );
    }

    #[test]
    fn payload_must_match_key_and_version() {
        let mut h = H::new(json!({}));
        h.write(1, "k", (0, MS), 1);
        h.read_payload(2, "k", (10 * MS, 20 * MS), 1, &payload::expected("k", 1));
        assert_eq!(status(&h).0, Status::Holds);
        let r = h.read_payload(
            2,
            "k",
            (10 * MS, 20 * MS),
            1,
            &payload::expected("other", 1),
        );
        assert_eq!(status(&h), (Status::Fails, vec![r]));
    }
}
