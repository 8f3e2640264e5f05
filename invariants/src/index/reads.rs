//! The reads of pass one: fixed-size records in a log that spills to a temporary file, streamed
//! back by the checkers; and a compact set of op ids.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use rustc_hash::FxHashMap;

use super::*;

/// A read, fixed-size so it can be spilled and streamed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRec {
    pub id: u64,
    pub line: u64,
    pub client: u64,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    /// `NO_VERSION` when the read did not succeed.
    pub version: u64,
    pub key: u32,
    pub outcome: Outcome,
    pub source: Option<Source>,
    /// `Some(false)` when the read recorded a payload that does not match (key, version).
    pub payload_ok: Option<bool>,
}

pub const NO_VERSION: u64 = u64::MAX;
const REC_BYTES: usize = 64;

impl ReadRec {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }

    fn encode(&self) -> [u8; REC_BYTES] {
        let mut b = [0u8; REC_BYTES];
        for (i, v) in [
            self.id,
            self.line,
            self.client,
            self.invoke_ns,
            self.complete_ns,
            self.version,
        ]
        .iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b[48..52].copy_from_slice(&self.key.to_le_bytes());
        b[52] = match self.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Unknown => 2,
        };
        b[53] = match self.source {
            None => 0,
            Some(Source::L0) => 1,
            Some(Source::L1) => 2,
            Some(Source::L2) => 3,
            Some(Source::Db) => 4,
            Some(Source::Replica) => 5,
            Some(Source::Wait) => 6,
        };
        b[54] = match self.payload_ok {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        b
    }

    fn decode(b: &[u8; REC_BYTES]) -> Self {
        let u = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        ReadRec {
            id: u(0),
            line: u(1),
            client: u(2),
            invoke_ns: u(3),
            complete_ns: u(4),
            version: u(5),
            key: u32::from_le_bytes(b[48..52].try_into().expect("4 bytes")),
            outcome: [Outcome::Ok, Outcome::Fail, Outcome::Unknown][b[52] as usize % 3],
            source: [
                None,
                Some(Source::L0),
                Some(Source::L1),
                Some(Source::L2),
                Some(Source::Db),
                Some(Source::Replica),
                Some(Source::Wait),
            ][b[53] as usize % 7],
            payload_ok: [None, Some(true), Some(false)][b[54] as usize % 3],
        }
    }
}

/// Key groups the log keeps apart: a key's reads stream back with the other reads of its group.
pub const GROUPS: usize = 256;

/// Reads grouped by key (`key % GROUPS`): in memory up to a threshold, then in runs of one group
/// each in an anonymous temporary file. They stream back group by group, so the per-key
/// structures a checker looks up (a key's writes, its staircases) stay in the CPU's cache while
/// a group's reads pass, however many keys the history has. Checkers do not depend on the order
/// of reads (a shuffled history gives the same verdicts), so the grouping changes speed only.
pub struct ReadLog {
    groups: Vec<Vec<ReadRec>>,
    /// Per group, the runs already in the file: (byte offset, records).
    runs: Vec<Vec<(u64, usize)>>,
    file: Option<BufWriter<File>>,
    written_bytes: u64,
    held: usize,
    spill_at: usize,
    len: u64,
}

impl ReadLog {
    pub fn new(spill_at: usize) -> Self {
        ReadLog {
            groups: (0..GROUPS).map(|_| Vec::new()).collect(),
            runs: vec![Vec::new(); GROUPS],
            file: None,
            written_bytes: 0,
            held: 0,
            spill_at,
            len: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Once spilled, a group goes to the file when it holds this many: memory stays within
    /// `spill_at` reads.
    fn run_len(&self) -> usize {
        (self.spill_at / GROUPS).max(1)
    }

    pub(super) fn push(&mut self, r: ReadRec) -> io::Result<()> {
        self.len += 1;
        let g = r.key as usize % GROUPS;
        self.groups[g].push(r);
        self.held += 1;
        if self.file.is_some() {
            if self.groups[g].len() >= self.run_len() {
                self.spill(g)?;
            }
        } else if self.held >= self.spill_at {
            self.file = Some(BufWriter::with_capacity(1 << 16, tempfile::tempfile()?));
            let run_len = self.run_len();
            for g in 0..GROUPS {
                self.spill(g)?;
                // From now on a group holds at most a run: give back what it grew to.
                self.groups[g].shrink_to(run_len);
            }
        }
        Ok(())
    }

    /// Writes group `g`'s reads held in memory to the file as one run.
    fn spill(&mut self, g: usize) -> io::Result<()> {
        let Some(w) = &mut self.file else {
            return Ok(());
        };
        let n = self.groups[g].len();
        if n == 0 {
            return Ok(());
        }
        for r in self.groups[g].drain(..) {
            w.write_all(&r.encode())?;
        }
        self.runs[g].push((self.written_bytes, n));
        self.written_bytes += (n * REC_BYTES) as u64;
        self.held -= n;
        Ok(())
    }

    /// Streams every read back, group by group; within a group, in the order they were logged.
    pub fn for_each(&mut self, mut f: impl FnMut(&ReadRec)) -> io::Result<()> {
        for g in 0..GROUPS {
            self.for_each_in(g, &mut f)?;
        }
        Ok(())
    }

    /// Streams back the reads of key group `g` (the keys `k` with `k % GROUPS == g`), in the
    /// order they were logged.
    pub fn for_each_in(&mut self, g: usize, mut f: impl FnMut(&ReadRec)) -> io::Result<()> {
        if let Some(w) = &mut self.file {
            if !self.runs[g].is_empty() {
                w.flush()?;
                let mut file = w.get_ref().try_clone()?;
                let mut buf = Vec::new();
                for &(at, n) in &self.runs[g] {
                    buf.resize(n * REC_BYTES, 0);
                    file.seek(SeekFrom::Start(at))?;
                    file.read_exact(&mut buf)?;
                    for b in buf.chunks_exact(REC_BYTES) {
                        f(&ReadRec::decode(b.try_into().expect("a record")));
                    }
                }
                // The clone shares the writer's file offset: put it back at the end, where the
                // next run goes.
                file.seek(SeekFrom::Start(self.written_bytes))?;
            }
        }
        self.groups[g].iter().for_each(f);
        Ok(())
    }
}

/// Op ids seen so far, as a sparse bitset: 512 bytes per 4096 consecutive ids.
#[derive(Default)]
pub(super) struct IdSet(FxHashMap<u64, Box<[u64; 64]>>);

impl IdSet {
    /// False when `id` was already present.
    pub(super) fn insert(&mut self, id: u64) -> bool {
        let chunk = self.0.entry(id >> 12).or_insert_with(|| Box::new([0; 64]));
        let (word, bit) = (((id >> 6) & 63) as usize, id & 63);
        let fresh = chunk[word] & (1 << bit) == 0;
        chunk[word] |= 1 << bit;
        fresh
    }
}
