//! `invariants`: the history format of aside runs and the checkers that judge them.
//!
//! A history is JSON Lines (docs/history-format.md): a header, then op, fault and probe lines with
//! nanosecond times. Checking takes two streaming passes and never holds the reads: pass one
//! ([`index::Index::build`]) validates every line and indexes writes, faults and probes per key,
//! logging reads as fixed-size records in key groups (spilled to a temporary file past
//! [`index::SPILL_AT`]); pass two streams the reads back group by group through every
//! [`checkers::ReadChecker`], so each group's keys stay in cache. Memory is linear in keys and
//! writes, not in reads. Nothing depends on line order: times decide.
//!
//! This crate knows nothing of caches or runtimes, so it can judge a history from anywhere.

pub mod bounds;
pub mod chain;
pub mod checkers;
pub mod error;
pub mod gen;
pub mod history;
pub mod index;
pub mod invariant;
pub mod payload;
pub mod quantiles;
pub mod report;
pub mod timeline;
pub mod verdict;
pub mod write;

#[cfg(test)]
mod testkit;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

pub use bounds::{Bounds, Override};
pub use error::{HistoryError, Problem};
pub use history::{Header, Line, Op, OpKind, Outcome, Source};
pub use index::Index;
pub use invariant::Invariant;
pub use report::Report;
pub use verdict::{Figure, Status, Verdict, Witness};

use checkers::{
    availability, convergence, coverage, fault_effect, liveness, load, lost_writes, phantom,
    session, slo, staleness, ReadChecker,
};

/// Checks the history in `path`, applying `overrides` after the header's bounds.
pub fn check_path(path: &Path, overrides: &[Override]) -> Result<Report, HistoryError> {
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(HistoryError::new(name, 0, Problem::Directory));
    }
    let file =
        File::open(path).map_err(|e| HistoryError::new(&name, 0, Problem::Io(e.to_string())))?;
    check_reader(&name, BufReader::with_capacity(1 << 16, file), overrides)
}

/// Checks a history read from `input`; `name` stands for it in errors and reports.
pub fn check_reader(
    name: &str,
    input: impl BufRead,
    overrides: &[Override],
) -> Result<Report, HistoryError> {
    check_index(Index::build(name, input, index::SPILL_AT)?, overrides)
}

/// Checks a history held in a string (tests, small tools).
pub fn check_str(text: &str, overrides: &[Override]) -> Result<Report, HistoryError> {
    check_reader("<history>", text.as_bytes(), overrides)
}

/// Pass two: every checker over an index built by pass one.
pub fn check_index(mut idx: Index, overrides: &[Override]) -> Result<Report, HistoryError> {
    let at_header = |p: Problem| HistoryError::new(&idx.file, idx.header_line, p);
    let mut bounds = Bounds::default();
    bounds.apply_config(&idx.header.config).map_err(at_header)?;
    for o in overrides {
        bounds
            .set(&o.name, &o.value)
            .map_err(|p| HistoryError::new(&idx.file, 0, p))?;
    }
    let io_err = |file: &str, e: std::io::Error| {
        HistoryError::new(file, 0, Problem::Io(format!("streaming reads back: {e}")))
    };
    idx.staleness_excludes_outbox_blind = bounds.staleness_excludes_outbox_blind;
    let mut reads = std::mem::replace(&mut idx.reads, index::ReadLog::new(0));
    let mut timeline = timeline::Timeline::new(&idx);
    // The registry: every streaming checker, then the ones that judge the index alone. Reports
    // list verdicts in `Invariant::ALL`'s order, whatever the order here.
    let mut checkers: Vec<Box<dyn ReadChecker>> = vec![
        Box::new(staleness::Staleness::new(
            bounds.staleness_ns_max,
            bounds.l0_ttl_ns,
        )),
        Box::new(phantom::Phantom::new()),
        Box::new(session::ReadYourWrites::default()),
        Box::new(session::MonotonicReads::default()),
        Box::new(load::Load::new(&bounds)),
        Box::new(availability::Availability::new(bounds.availability_min)),
        Box::new(slo::HitRatio::new(
            bounds.hit_ratio_min,
            bounds.l1_hit_ratio_during_faults_min,
            bounds.warmup_ns,
        )),
        Box::new(slo::HitLatency::new(
            bounds.hit_latency_p99_ns_max,
            bounds.l1_hit_latency_p99_ns_max,
            bounds.l2_hit_latency_p99_ns_max,
            bounds.warmup_ns,
        )),
        Box::new(liveness::Liveness::new(
            bounds.read_duration_max_ns,
            bounds.read_latency_p99_ns_max,
        )),
    ];
    let goals_required = coverage::required(&idx.header.config).map_err(at_header)?;
    let whole_index: [fn(&Index) -> Verdict; 2] = [lost_writes::check, fault_effect::check];
    for g in 0..index::GROUPS {
        reads
            .for_each_in(g, |r| checkers.iter_mut().for_each(|c| c.look_ahead(r)))
            .map_err(|e| io_err(&idx.file, e))?;
        reads
            .for_each_in(g, |r| {
                for c in checkers.iter_mut() {
                    c.observe(&idx, r);
                }
                timeline.observe(&idx, r);
            })
            .map_err(|e| io_err(&idx.file, e))?;
        checkers.iter_mut().for_each(|c| c.group_done());
    }
    let mut verdicts = Vec::with_capacity(Invariant::ALL.len());
    for c in checkers {
        verdicts.push(
            c.finish(&idx, &mut reads)
                .map_err(|e| io_err(&idx.file, e))?,
        );
    }
    verdicts.extend(whole_index.iter().map(|check| check(&idx)));
    verdicts.push(convergence::check(&idx, bounds.converge_within_ns));
    verdicts.push(coverage::check(&idx, &goals_required));
    verdicts.sort_by_key(|v| v.invariant);
    debug_assert!(verdicts.iter().map(|v| v.invariant).eq(Invariant::ALL));
    for v in &mut verdicts {
        v.witness.normalize();
    }
    Ok(Report {
        file: idx.file.clone(),
        ops: idx.ops,
        reads: reads.len(),
        header: idx.header.clone(),
        bounds,
        verdicts,
        timeline: (idx.ops > 0).then_some(timeline),
        goals: idx
            .goals
            .iter()
            .map(|(g, r)| (g.clone(), r.count))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"type":"header","format":1,"world":"test","scenario":"s","strategy":"naive","seed":1,"commit":"c","config":{}}"#;
    const READ: &str = r#"{"type":"op","id":1,"client":1,"key":"k","f":"read","invoke_ns":5,"complete_ns":9,"outcome":"ok","version":0,"source":"l1"}"#;

    fn error(text: &str) -> String {
        check_str(text, &[]).unwrap_err().to_string()
    }

    #[test]
    fn bad_histories_name_the_line_and_the_problem() {
        assert_eq!(error(""), "<history>: the file is empty: a history starts with a header line (docs/history-format.md)");
        assert_eq!(error("\n\n"), error(""));
        assert!(error(READ).starts_with("<history>:1: no header line"));
        assert!(error(&format!("{HEADER}\n{READ}\n{READ}\n"))
            .starts_with("<history>:3: duplicate op id 1"));
        assert!(error(&format!("{HEADER}\n{HEADER}\n"))
            .starts_with("<history>:2: second header line (the first is line 1)"));
        assert!(
            error(&format!("{HEADER}\n{}", &READ[..40])).starts_with("<history>:2: truncated line")
        );
        assert!(
            error(&format!("{HEADER}\n{}\n", &READ[..40])).starts_with("<history>:2: invalid JSON")
        );
        assert!(error(&format!(
            "{HEADER}\n{}\n",
            READ.replace(r#""version":0"#, r#""version":-1"#)
        ))
        .starts_with("<history>:2: version -1 is negative"));
        assert!(error(&format!(
            "{HEADER}\n{}\n",
            READ.replace(r#""type":"op""#, r#""type":"opp""#)
        ))
        .contains("unknown line type \"opp\""));
        assert!(error(&format!(
            "{HEADER}\n{}\n",
            READ.replace(r#""complete_ns":9"#, r#""complete_ns":4"#)
        ))
        .contains(":2: complete_ns 4 is before invoke_ns 5"));
        let stop =
            r#"{"type":"fault","at_ns":5,"action":"stop","fault":{"kind":"kill","target":"x"}}"#;
        assert!(error(&format!("{HEADER}\n{stop}\n"))
            .starts_with("<history>:2: fault {\"kind\":\"kill\",\"target\":\"x\"} stops at 5 ns"));
        let bad_cfg = HEADER.replace(r#""config":{}"#, r#""config":{"hit_ratio_min":"high"}"#);
        assert!(error(&format!("{READ}\n{bad_cfg}\n"))
            .starts_with("<history>:2: bound hit_ratio_min must be a number between 0 and 1"));
        assert!(error("\u{0}\u{1}garbage").contains("invalid JSON"));
    }

    #[test]
    fn reads_spilled_in_runs_give_the_verdicts_of_reads_held_in_memory() {
        let spec = gen::Spec {
            keys: 300,
            ops: 20_000,
            clients: 8,
            stale_every: 40,
            ..gen::Spec::default()
        };
        let mut text = Vec::new();
        gen::generate(&spec, &mut text).unwrap();
        let check = |spill_at: usize| {
            let idx = Index::build("h", text.as_slice(), spill_at).unwrap();
            assert_eq!(idx.reads.spilled(), spill_at < 20_000);
            check_index(idx, &[]).unwrap()
        };
        let held = check(usize::MAX);
        let monotonic = held.verdict(Invariant::MonotonicReads).unwrap();
        assert_eq!(
            monotonic.status,
            Status::Fails,
            "the history exercises the staircases"
        );
        let held = held.to_json();
        for spill_at in [1, 700, 5_000] {
            assert_eq!(
                check(spill_at).to_json(),
                held,
                "spilled past {spill_at} reads"
            );
        }
    }

    #[test]
    fn crlf_blank_lines_and_a_header_anywhere_are_accepted() {
        let text = format!("\r\n{READ}\r\n\r\n{HEADER}\r\n");
        let r = check_str(&text, &[]).unwrap();
        assert_eq!((r.ops, r.reads), (1, 1));
    }

    #[test]
    fn flags_override_the_header() {
        let h = HEADER.replace(r#""config":{}"#, r#""config":{"staleness_ns_max":5}"#);
        let r = check_str(
            &format!("{h}\n{READ}\n"),
            &[Override {
                name: "staleness_ns_max".into(),
                value: 7.into(),
            }],
        )
        .unwrap();
        assert_eq!(r.bounds.staleness_ns_max, Some(7));
        let e = check_str(
            &format!("{h}\n{READ}\n"),
            &[Override {
                name: "nope".into(),
                value: 7.into(),
            }],
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not a bound"));
    }
}
