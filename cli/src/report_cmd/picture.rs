//! What a report draws, taken from a history in one pass: every client's ops binned into pixel
//! columns (the worst state of each bin wins, so a stale read is never hidden by the hits around
//! it), the witness ops of every failing verdict kept one by one, the faults' spans, hit ratio and
//! database reads over time, and every stale read's staleness. Memory is the bins, not the ops:
//! a history of a million ops draws in about the time its check takes.

use std::collections::{BTreeMap, BTreeSet};

use invariants::checkers::staleness::staleness_of;
use invariants::index::{Index, ReadRec};

/// Pixel columns of the timeline.
pub const COLUMNS: u64 = 1000;
/// Slices of the series over time.
pub const SLICES: u64 = 200;

/// What an op was, worst last: a bin shows the worst of its ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// A read served by a cache tier.
    Hit,
    /// A read served by the database.
    DbRead,
    /// A read that failed.
    Failed,
    /// A read that returned a version older than a write completed before it began.
    Stale,
}

/// One op drawn on its own: a witness of a failing verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Marked {
    pub lane: usize,
    pub at_ms: f64,
    pub line: u64,
    pub write: bool,
}

/// A read of a key drawn in a swim lane ([`super::swim`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRead {
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub state: State,
    /// `None` when the read failed.
    pub version: Option<u64>,
    pub line: u64,
}

/// Reads kept per swim-lane key: its witnesses always, the others up to this many.
pub const KEY_READS_MAX: usize = 20_000;

/// A fault's active span, in ms since the history began.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub fault: String,
    pub from_ms: f64,
    pub to_ms: f64,
}

/// `kill redis-master`, `partition apps peers=redis`: a fault's JSON as a band's label.
pub fn fault_name(json: &str) -> String {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_str(json) else {
        return json.to_string();
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut parts: Vec<String> = ["kind", "target"]
        .iter()
        .filter_map(|k| m.get(*k).map(text))
        .collect();
    parts.extend(
        m.iter()
            .filter(|(k, _)| *k != "kind" && *k != "target")
            .map(|(k, v)| format!("{k}={}", text(v))),
    );
    parts.join(" ")
}

#[derive(Debug, Default)]
pub struct Picture {
    pub span_ms: f64,
    /// Client ids, one lane each, in id order.
    pub lanes: Vec<u64>,
    /// (lane, column) -> worst read state in that bin.
    pub reads: BTreeMap<(usize, u64), State>,
    /// (lane, column) bins holding a write.
    pub writes: BTreeSet<(usize, u64)>,
    pub marked: Vec<Marked>,
    pub bands: Vec<Band>,
    /// Per slice: ok reads, ok reads served by a cache, database reads.
    pub ok: Vec<u64>,
    pub hits: Vec<u64>,
    pub db: Vec<u64>,
    /// Every stale read's staleness, ms.
    pub staleness_ms: Vec<f64>,
    /// The reads of each key a swim lane is drawn for, in the order read.
    pub key_reads: BTreeMap<u32, Vec<KeyRead>>,
}

impl Picture {
    /// Takes `idx`'s reads (its read log is consumed) and writes; `witness` are the lines of
    /// the ops a failing verdict names; the reads of `keys` are kept for their swim lanes.
    pub fn of(idx: &mut Index, witness: &BTreeSet<u64>, keys: &[u32]) -> std::io::Result<Picture> {
        let (start, end) = idx.span_ns;
        let span = end.saturating_sub(start).max(1);
        let ms = |t: u64| t.saturating_sub(start) as f64 / 1e6;
        let bin = |t: u64, n: u64| {
            (t.saturating_sub(start) as u128 * n as u128 / span as u128).min(n as u128 - 1) as u64
        };
        // One pass over the reads (a large history's log is streamed back from disk), keyed by
        // client; clients become lanes once every client is known.
        let mut reads = std::mem::replace(&mut idx.reads, invariants::index::ReadLog::new(0));
        let mut bins: BTreeMap<(u64, u64), State> = BTreeMap::new();
        let mut marks: Vec<(u64, u64, u64, bool)> = Vec::new();
        let mut p = Picture {
            span_ms: ms(end),
            ok: vec![0; SLICES as usize],
            hits: vec![0; SLICES as usize],
            db: vec![0; SLICES as usize],
            ..Picture::default()
        };
        reads.for_each(|r: &ReadRec| {
            let state = if !r.ok() {
                State::Failed
            } else if let Some((stale_ns, _)) = staleness_of(idx, r) {
                p.staleness_ms.push(stale_ns as f64 / 1e6);
                State::Stale
            } else if r.source.is_some_and(|s| s.is_db()) {
                State::DbRead
            } else {
                State::Hit
            };
            let cell = bins
                .entry((r.client, bin(r.invoke_ns, COLUMNS)))
                .or_insert(state);
            *cell = (*cell).max(state);
            let s = bin(r.invoke_ns, SLICES) as usize;
            if r.ok() {
                p.ok[s] += 1;
                if r.source.is_some_and(|s| s.is_db()) {
                    p.db[s] += 1;
                }
                if r.source.is_some_and(|s| s.is_cache()) {
                    p.hits[s] += 1;
                }
            }
            if witness.contains(&r.line) {
                marks.push((r.client, r.invoke_ns, r.line, false));
            }
            if keys.contains(&r.key) {
                let kept = p.key_reads.entry(r.key).or_default();
                if kept.len() < KEY_READS_MAX || witness.contains(&r.line) {
                    kept.push(KeyRead {
                        invoke_ns: r.invoke_ns,
                        complete_ns: r.complete_ns,
                        state,
                        version: r.ok().then_some(r.version),
                        line: r.line,
                    });
                }
            }
        })?;
        let mut writes = BTreeSet::new();
        for w in idx.keys.iter().flat_map(|k| &k.writes) {
            writes.insert((w.client, bin(w.invoke_ns, COLUMNS)));
            if witness.contains(&w.line) {
                marks.push((w.client, w.invoke_ns, w.line, true));
            }
        }
        let clients: BTreeSet<u64> = bins.keys().chain(&writes).map(|&(c, _)| c).collect();
        let lanes: Vec<u64> = clients.into_iter().collect();
        let lane = |c: u64| lanes.binary_search(&c).unwrap_or(0);
        p.reads = bins
            .into_iter()
            .map(|((c, col), st)| ((lane(c), col), st))
            .collect();
        p.writes = writes.into_iter().map(|(c, col)| (lane(c), col)).collect();
        p.marked = marks
            .into_iter()
            .map(|(client, invoke_ns, line, write)| Marked {
                lane: lane(client),
                at_ms: ms(invoke_ns),
                line,
                write,
            })
            .collect();
        p.marked.sort_by_key(|m| m.line);
        for f in &idx.faults {
            p.bands.push(Band {
                fault: fault_name(&f.fault),
                from_ms: ms(f.start_ns),
                to_ms: ms(f.end_ns.min(end)),
            });
        }
        p.lanes = lanes;
        Ok(p)
    }

    /// The ms one slice of the series covers.
    pub fn slice_ms(&self) -> f64 {
        (self.span_ms / SLICES as f64).max(1e-6)
    }
}
