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
        Phantom { ok_reads: 0, phantoms: 0, payload_mismatches: 0, first: None }
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
        if self.first.as_ref().is_none_or(|(f, _)| (r.invoke_ns, r.id) < (f.invoke_ns, f.id)) {
            self.first = Some((*r, why));
        }
    }

    fn finish(self: Box<Self>, idx: &Index, _reads: &mut ReadLog) -> io::Result<Verdict> {
        let mut v = Verdict::new("phantom");
        v.figure("phantom_reads", Figure::Count(self.phantoms))
            .figure("payload_mismatches", Figure::Count(self.payload_mismatches))
            .figure("ok_reads", Figure::Count(self.ok_reads));
        let Some((r, why)) = self.first else {
            v.judge(false, format!("every version read of {} reads was written in time", self.ok_reads));
            return Ok(v);
        };
        let key = idx.key_name(r.key);
        v.witness.op(r.id, r.line);
        let summary = match why {
            Why::Never => format!("read {} of {key:?} returned v{}, which no write made", r.id, r.version),
            Why::Payload => format!("read {} of {key:?} v{} returned a payload that is not that version's", r.id, r.version),
            Why::WrittenLater(w) | Why::FailedOnly(w) => {
                let w = idx.write(r.key, w);
                v.witness.op(w.id, w.line);
                if matches!(why, Why::FailedOnly(_)) {
                    format!("read {} of {key:?} returned v{}, made only by write {}, which failed", r.id, r.version, w.id)
                } else {
                    format!("read {} of {key:?} returned v{} before write {} that made it was invoked", r.id, r.version, w.id)
                }
            }
        };
        v.judge(true, format!("{summary} ({} phantom reads)", self.phantoms));
        Ok(v)
    }
}
