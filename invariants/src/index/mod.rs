//! Pass one over a history: validate every line, index writes, faults and probes per key, and
//! log reads compactly for pass two.
//!
//! Memory is linear in keys and writes, never in reads: reads (the bulk of a read-heavy history)
//! are written to a [`ReadLog`] of fixed-size records that spills to an anonymous temporary file
//! past a threshold, and are streamed back by the checkers. Nothing here depends on line order:
//! every structure is built so that shuffling the lines gives the same index.

use std::io::BufRead;

use rustc_hash::FxHashMap;

use crate::error::{HistoryError, Problem};
use crate::history::{
    parse_line, ActOutcome, CacheAction, FaultAction, Header, Line, OpKind, Outcome, Source,
};
use crate::payload;

mod key;
mod reads;
mod roles;
mod spans;

pub use key::{Explained, KeyIndex};
use reads::IdSet;
pub use reads::{ReadLog, ReadRec, GROUPS, NO_VERSION};
pub use roles::RoleRec;
use spans::{cuts_apps_from_the_outbox, merged};

/// Reads kept in memory before the log spills to a temporary file (64 bytes each: 4 MiB).
pub const SPILL_AT: usize = 1 << 16;

/// A write as the checkers need it.
#[derive(Debug, Clone)]
pub struct WriteRec {
    pub id: u64,
    pub line: u64,
    pub client: u64,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub version: Option<u64>,
    pub outcome: Outcome,
}

/// A cache action (a `cache` line) of one key, kept to explain stale reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActRec {
    pub line: u64,
    pub node: Box<str>,
    pub action: CacheAction,
    pub tier: Source,
    pub version: Option<u64>,
    pub outcome: ActOutcome,
    pub start_ns: u64,
    pub at_ns: u64,
    /// The server that answered, as the history names it.
    pub server: Option<Box<str>>,
}

impl ActRec {
    /// A total order that ignores line numbers, so a shuffled history picks the same action.
    pub fn order(&self) -> (u64, u64, CacheAction, Source, Option<u64>, ActOutcome, &str) {
        (
            self.at_ns,
            self.start_ns,
            self.action,
            self.tier,
            self.version,
            self.outcome,
            &self.node,
        )
    }
}

/// A fault's active interval `[start_ns, end_ns)`; `end_ns` is `u64::MAX` when it never stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpan {
    pub fault: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub start_line: u64,
    pub stop_line: Option<u64>,
    /// The first `observed` line of this fault within the span: (at_ns, line).
    pub observed: Option<(u64, u64)>,
}

/// A coverage goal as the history's goal lines tell it, summed over the nodes that reached it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalRec {
    /// Times reached, over every node.
    pub count: u64,
    /// When first reached, and the line that says so.
    pub first_ns: u64,
    pub line: u64,
}

/// An `outbox` line: the outbox's backlog read at the end of the run.
#[derive(Debug, Clone, Copy)]
pub struct OutboxRec {
    pub at_ns: u64,
    pub undone: u64,
    pub line: u64,
}

/// An end-of-run probe, with its key interned.
#[derive(Debug, Clone)]
pub struct ProbeRec {
    pub key: u32,
    pub at_ns: u64,
    pub tier: Source,
    pub version: Option<u64>,
    pub line: u64,
}

/// The result of pass one.
pub struct Index {
    pub file: String,
    pub header: Header,
    pub header_line: u64,
    names: Vec<Box<str>>,
    ids: FxHashMap<Box<str>, u32>,
    pub keys: Vec<KeyIndex>,
    pub faults: Vec<FaultSpan>,
    /// The union of all fault spans, merged and sorted, for "was any fault active at t".
    fault_union: Vec<(u64, u64)>,
    /// Merged and sorted: while every app node was cut from the PostgreSQL primary or its
    /// replies were reset, so no invalidator could read the outbox
    /// ([`Index::outbox_seen_from`]).
    outbox_blind: Vec<(u64, u64)>,
    pub probes: Vec<ProbeRec>,
    /// The `outbox` lines, by time.
    pub outbox: Vec<OutboxRec>,
    /// The Redis nodes' role lines, by time.
    pub roles: Vec<RoleRec>,
    /// Coverage goals reached, by name.
    pub goals: std::collections::BTreeMap<String, GoalRec>,
    pub reads: ReadLog,
    pub ops: u64,
    pub lines: u64,
    /// The time the ops and faults span: (earliest invoke or fault, latest completion or fault).
    pub span_ns: (u64, u64),
    /// Staleness leaves out every span no app node could read the outbox in
    /// ([`crate::Bounds::staleness_excludes_outbox_blind`]; set by the check from the bounds).
    pub staleness_excludes_outbox_blind: bool,
}

impl Index {
    pub fn key_name(&self, key: u32) -> &str {
        &self.names[key as usize]
    }

    pub fn key_id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn write(&self, key: u32, idx: u32) -> &WriteRec {
        &self.keys[key as usize].writes[idx as usize]
    }

    /// Faults whose active span overlaps `[from_ns, to_ns]`.
    pub fn faults_overlapping(&self, from_ns: u64, to_ns: u64) -> impl Iterator<Item = &FaultSpan> {
        self.faults
            .iter()
            .filter(move |f| f.start_ns <= to_ns && f.end_ns > from_ns)
    }

    /// The union of every fault's active span, merged and sorted by start.
    pub fn fault_union(&self) -> &[(u64, u64)] {
        &self.fault_union
    }

    /// Whether any fault was active at `t`.
    pub fn in_fault(&self, t: u64) -> bool {
        let i = self.fault_union.partition_point(|s| s.0 <= t);
        i > 0 && t < self.fault_union[i - 1].1
    }

    /// Whether any fault was active at some instant of `[from, to]`.
    pub fn overlaps_fault(&self, from: u64, to: u64) -> bool {
        let i = self.fault_union.partition_point(|s| s.0 <= to);
        i > 0 && from < self.fault_union[i - 1].1
    }

    /// The first fault (by start) active at `t`.
    pub fn fault_at(&self, t: u64) -> Option<&FaultSpan> {
        self.faults.iter().find(|f| f.start_ns <= t && t < f.end_ns)
    }

    /// Reads the history from `input`, validating every line. `file` names it in errors.
    pub fn build(
        file: &str,
        mut input: impl BufRead,
        spill_at: usize,
    ) -> Result<Index, HistoryError> {
        let err = |line: u64, p: Problem| HistoryError::new(file, line, p);
        let mut b = Builder {
            names: Vec::new(),
            ids: FxHashMap::default(),
            keys: Vec::new(),
        };
        let mut header: Option<(Header, u64)> = None;
        let mut seen = IdSet::default();
        let mut events: Vec<(String, u64, bool, u64)> = Vec::new();
        // Observed lines: (fault, at_ns, line).
        let mut observations: Vec<(String, u64, u64)> = Vec::new();
        let mut probes = Vec::new();
        let mut roles = Vec::new();
        let mut outbox = Vec::new();
        let mut goals: std::collections::BTreeMap<String, GoalRec> = Default::default();
        let mut reads = ReadLog::new(spill_at);
        let (mut ops, mut lineno, mut any) = (0u64, 0u64, false);
        let mut span = (u64::MAX, 0u64);
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            let n = input
                .read_until(b'\n', &mut buf)
                .map_err(|e| err(lineno + 1, Problem::Io(e.to_string())))?;
            if n == 0 {
                break;
            }
            lineno += 1;
            let at_eof = buf.last() != Some(&b'\n');
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            any = true;
            match parse_line(&buf, at_eof).map_err(|p| err(lineno, p))? {
                Line::Header(h) => {
                    if let Some((_, first)) = &header {
                        return Err(err(lineno, Problem::DuplicateHeader(*first)));
                    }
                    header = Some((h, lineno));
                }
                Line::Op(op) => {
                    if !seen.insert(op.id) {
                        return Err(err(lineno, Problem::DuplicateOpId(op.id)));
                    }
                    ops += 1;
                    span = (span.0.min(op.invoke_ns), span.1.max(op.complete_ns));
                    let key = b
                        .intern(&op.key)
                        .ok_or_else(|| err(lineno, Problem::TooManyKeys(u32::MAX as u64)))?;
                    match op.f {
                        OpKind::Write => b.keys[key as usize].writes.push(WriteRec {
                            id: op.id,
                            line: lineno,
                            client: op.client,
                            invoke_ns: op.invoke_ns,
                            complete_ns: op.complete_ns,
                            version: op.version,
                            outcome: op.outcome,
                        }),
                        OpKind::Read => {
                            let ok = op.outcome == Outcome::Ok;
                            let version = if ok {
                                op.version.expect("validated")
                            } else {
                                NO_VERSION
                            };
                            let payload_ok = match (&op.payload, ok) {
                                (Some(p), true) => Some(payload::matches(&op.key, version, p)),
                                _ => None,
                            };
                            let rec = ReadRec {
                                id: op.id,
                                line: lineno,
                                client: op.client,
                                invoke_ns: op.invoke_ns,
                                complete_ns: op.complete_ns,
                                version,
                                key,
                                outcome: op.outcome,
                                source: if ok { op.source } else { None },
                                payload_ok,
                            };
                            reads.push(rec).map_err(|e| {
                                err(
                                    lineno,
                                    Problem::Io(format!("spilling reads to a temporary file: {e}")),
                                )
                            })?;
                        }
                    }
                }
                Line::Fault(f) => {
                    span = (span.0.min(f.at_ns), span.1.max(f.at_ns));
                    match f.action {
                        FaultAction::Observed => observations.push((f.fault, f.at_ns, lineno)),
                        FaultAction::Start => events.push((f.fault, f.at_ns, true, lineno)),
                        FaultAction::Stop => events.push((f.fault, f.at_ns, false, lineno)),
                    }
                }
                Line::Cache(c) => {
                    let key = b
                        .intern(&c.key)
                        .ok_or_else(|| err(lineno, Problem::TooManyKeys(u32::MAX as u64)))?;
                    b.keys[key as usize].acts.push(ActRec {
                        line: lineno,
                        node: c.node.as_ref().into(),
                        action: c.action,
                        tier: c.tier,
                        version: c.version,
                        outcome: c.outcome,
                        start_ns: c.start_ns,
                        at_ns: c.at_ns,
                        server: c.server.map(|s| s.as_ref().into()),
                    });
                }
                Line::Outbox(o) => outbox.push(OutboxRec {
                    at_ns: o.at_ns,
                    undone: o.undone,
                    line: lineno,
                }),
                Line::Role(r) => roles.push(RoleRec {
                    server: r.server.as_ref().into(),
                    shard: r.shard,
                    role: r.role,
                    at_ns: r.at_ns,
                    line: lineno,
                }),
                Line::Goal(g) => {
                    let rec = goals.entry(g.goal.into_owned()).or_insert(GoalRec {
                        count: 0,
                        first_ns: g.at_ns,
                        line: lineno,
                    });
                    rec.count = rec.count.saturating_add(g.count);
                    if (g.at_ns, lineno) < (rec.first_ns, rec.line) {
                        (rec.first_ns, rec.line) = (g.at_ns, lineno);
                    }
                }
                Line::Probe(p) => {
                    let key = b
                        .intern(&p.key)
                        .ok_or_else(|| err(lineno, Problem::TooManyKeys(u32::MAX as u64)))?;
                    probes.push(ProbeRec {
                        key,
                        at_ns: p.at_ns,
                        tier: p.tier,
                        version: p.version,
                        line: lineno,
                    });
                }
            }
        }
        if !any {
            return Err(err(0, Problem::Empty));
        }
        let (header, header_line) = header.ok_or_else(|| err(1, Problem::NoHeader))?;
        let mut faults = spans(events).map_err(|(line, p)| err(line, p))?;
        // Each span takes the earliest observation of its fault inside it, by time.
        observations.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        for f in &mut faults {
            let from = observations.partition_point(|o| (&o.0, o.1) < (&f.fault, f.start_ns));
            f.observed = observations[from..]
                .first()
                .filter(|o| o.0 == f.fault && o.1 <= f.end_ns)
                .map(|o| (o.1, o.2));
        }
        for k in &mut b.keys {
            k.finish();
        }
        probes.sort_by_key(|p| (p.key, p.tier, p.at_ns, p.version, p.line));
        roles.sort_by_key(|r: &RoleRec| (r.at_ns, r.line));
        outbox.sort_by_key(|o: &OutboxRec| (o.at_ns, o.line));
        let fault_union = merged(faults.iter());
        let outbox_blind = merged(
            faults
                .iter()
                .filter(|f| cuts_apps_from_the_outbox(&f.fault)),
        );
        Ok(Index {
            file: file.to_string(),
            header,
            header_line,
            names: b.names,
            ids: b.ids,
            keys: b.keys,
            faults,
            fault_union,
            outbox_blind,
            probes,
            outbox,
            roles,
            goals,
            reads,
            ops,
            lines: lineno,
            span_ns: if span.0 > span.1 { (0, 0) } else { span },
            staleness_excludes_outbox_blind: false,
        })
    }
}

struct Builder {
    names: Vec<Box<str>>,
    ids: FxHashMap<Box<str>, u32>,
    keys: Vec<KeyIndex>,
}

impl Builder {
    fn intern(&mut self, key: &str) -> Option<u32> {
        if let Some(&id) = self.ids.get(key) {
            return Some(id);
        }
        let id = u32::try_from(self.names.len()).ok()?;
        self.names.push(key.into());
        self.ids.insert(key.into(), id);
        self.keys.push(KeyIndex::default());
        Some(id)
    }
}

/// Pairs fault starts and stops into spans, by time (never by line order). A fault started twice
/// before it stops stays one span; a stop with nothing open is an error.
fn spans(mut events: Vec<(String, u64, bool, u64)>) -> Result<Vec<FaultSpan>, (u64, Problem)> {
    // Per fault, by time; at equal times a start comes before a stop (a zero-length fault).
    events.sort_by(|a, b| (&a.0, a.1, !a.2, a.3).cmp(&(&b.0, b.1, !b.2, b.3)));
    let mut out: Vec<FaultSpan> = Vec::new();
    let mut open: Option<(usize, u32)> = None; // (index in out, depth)
    for (i, (fault, at, start, line)) in events.iter().enumerate() {
        if i > 0 && events[i - 1].0 != *fault {
            open = None;
        }
        match (open, start) {
            (None, true) => {
                out.push(FaultSpan {
                    fault: fault.clone(),
                    start_ns: *at,
                    end_ns: u64::MAX,
                    start_line: *line,
                    stop_line: None,
                    observed: None,
                });
                open = Some((out.len() - 1, 1));
            }
            (Some((j, d)), true) => open = Some((j, d + 1)),
            (Some((j, 1)), false) => {
                out[j].end_ns = *at;
                out[j].stop_line = Some(*line);
                open = None;
            }
            (Some((j, d)), false) => open = Some((j, d - 1)),
            (None, false) => {
                return Err((
                    *line,
                    Problem::StopWithoutStart {
                        fault: fault.clone(),
                        at_ns: *at,
                    },
                ))
            }
        }
    }
    out.sort_by(|a, b| (a.start_ns, &a.fault).cmp(&(b.start_ns, &b.fault)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_log_spills_and_streams_back_identically() {
        let recs: Vec<ReadRec> = (0..1000u64)
            .map(|i| ReadRec {
                id: i,
                line: i + 2,
                client: i % 7,
                invoke_ns: i * 10,
                complete_ns: i * 10 + 3,
                version: if i % 5 == 0 { NO_VERSION } else { i / 3 },
                key: (i % 13) as u32,
                outcome: [Outcome::Ok, Outcome::Fail, Outcome::Unknown][(i % 3) as usize],
                source: [
                    None,
                    Some(Source::L1),
                    Some(Source::Replica),
                    Some(Source::Wait),
                    Some(Source::L0),
                    Some(Source::L2),
                    Some(Source::Db),
                ][(i % 7) as usize],
                payload_ok: [None, Some(true), Some(false)][(i % 3) as usize],
            })
            .collect();
        let mut log = ReadLog::new(100);
        for r in &recs {
            log.push(*r).unwrap();
        }
        assert!(log.spilled());
        // Group by group, each in the order logged.
        let mut want = recs.clone();
        want.sort_by_key(|r| r.key as usize % reads::GROUPS);
        for _ in 0..2 {
            let mut back = Vec::new();
            log.for_each(|r| back.push(*r)).unwrap();
            assert_eq!(back, want);
        }
        let mut small = ReadLog::new(recs.len() + 1);
        recs.iter().for_each(|r| small.push(*r).unwrap());
        assert!(!small.spilled());
        let mut back = Vec::new();
        small.for_each(|r| back.push(*r)).unwrap();
        assert_eq!(back, want, "held in memory, the same order");
    }

    #[test]
    fn fault_spans_pair_by_time_not_line() {
        let ev = vec![
            ("b".to_string(), 50, false, 2),
            ("a".to_string(), 10, true, 3),
            ("b".to_string(), 20, true, 4),
            ("a".to_string(), 30, false, 5),
            ("c".to_string(), 40, true, 6),
        ];
        let s = spans(ev).unwrap();
        assert_eq!(
            s.iter().map(|f| (f.start_ns, f.end_ns)).collect::<Vec<_>>(),
            vec![(10, 30), (20, 50), (40, u64::MAX)]
        );
        assert!(spans(vec![("a".to_string(), 5, false, 9)]).is_err());
    }

    #[test]
    fn id_set_detects_repeats_across_chunks() {
        let mut s = IdSet::default();
        assert!(s.insert(0) && s.insert(4096) && s.insert(u64::MAX));
        assert!(!s.insert(4096) && !s.insert(u64::MAX));
    }
}
