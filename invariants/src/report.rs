//! Reports: a readable table per history, or one JSON object per history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::bounds::Bounds;
use crate::checkers::fmt_ns;
use crate::history::Header;
use crate::timeline::Timeline;
use crate::verdict::{Figure, Status, Verdict};
use crate::Invariant;

/// Every verdict on one history.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub ops: u64,
    pub reads: u64,
    pub header: Header,
    pub bounds: Bounds,
    pub verdicts: Vec<Verdict>,
    /// Reads, stale reads, database reads and failures over time, with the faults.
    pub timeline: Option<Timeline>,
    /// The coverage goals the run reached (its `goal` lines), by name: times reached.
    pub goals: std::collections::BTreeMap<String, u64>,
}

/// Witness lines shown in a table before "… and N more".
pub const WITNESS_SHOWN_MAX: usize = 12;

impl Report {
    /// True when a gating invariant fails.
    pub fn fails(&self) -> bool {
        self.verdicts.iter().any(|v| v.gating && v.fails())
    }

    pub fn verdict(&self, invariant: Invariant) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.invariant == invariant)
    }

    /// The gating invariants that fail, in report order: what makes a run fail.
    pub fn failing(&self) -> Vec<Invariant> {
        self.verdicts
            .iter()
            .filter(|v| v.gating && v.fails())
            .map(|v| v.invariant)
            .collect()
    }

    /// Line numbers a table would show as witnesses.
    pub fn witness_lines(&self) -> BTreeSet<u64> {
        self.verdicts
            .iter()
            .filter(|v| v.fails())
            .flat_map(|v| v.witness.lines.iter().take(WITNESS_SHOWN_MAX).copied())
            .collect()
    }

    /// `{"file":..., "ops":N, "invariants":[{"name":..., "holds":bool|null, figures..., "witness":[ids]}]}`
    pub fn to_json(&self) -> Value {
        let h = &self.header;
        json!({
            "file": self.file,
            "ops": self.ops,
            "reads": self.reads,
            "holds": !self.fails(),
            "header": {"world": h.world, "scenario": h.scenario, "strategy": h.strategy, "seed": h.seed, "commit": h.commit},
            "invariants": self.verdicts.iter().map(verdict_json).collect::<Vec<_>>(),
            "timeline": self.timeline.as_ref().map(Timeline::to_json),
        })
    }

    /// A table for a person. `lines` maps witness line numbers to the history's text.
    pub fn table(&self, lines: &BTreeMap<u64, String>) -> String {
        let h = &self.header;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}  [{} {} / {} seed {}{}]  {} ops",
            self.file,
            if h.world.is_empty() { "?" } else { &h.world },
            if h.scenario.is_empty() {
                "?"
            } else {
                &h.scenario
            },
            if h.strategy.is_empty() {
                "?"
            } else {
                &h.strategy
            },
            h.seed,
            if h.commit.is_empty() {
                String::new()
            } else {
                format!(" @{}", &h.commit[..h.commit.len().min(10)])
            },
            self.ops
        );
        for v in &self.verdicts {
            let status = match (&v.status, v.gating) {
                (Status::Holds, _) => "ok",
                (Status::Fails, true) => "FAIL",
                (Status::Fails, false) => "note",
                (Status::Unknown(_), _) => "unknown",
            };
            let _ = writeln!(out, "  {:<17} {:<7} {}", v.name(), status, v.summary);
            let figs: Vec<String> = v
                .figures
                .iter()
                .map(|(n, f)| format!("{n}={}", figure_text(f)))
                .collect();
            let _ = writeln!(out, "  {:<17} {:<7} {}", "", "", figs.join("  "));
            if v.fails() && !v.witness.is_empty() {
                let n = v.witness.lines.len();
                let _ = writeln!(out, "  {:<17} {:<7} witness ({} lines):", "", "", n);
                for l in v.witness.lines.iter().take(WITNESS_SHOWN_MAX) {
                    let text = lines.get(l).map_or("", String::as_str);
                    let _ = writeln!(out, "      {l:>8}: {text}");
                }
                if n > WITNESS_SHOWN_MAX {
                    let _ = writeln!(
                        out,
                        "      … and {} more (--json lists every op id)",
                        n - WITNESS_SHOWN_MAX
                    );
                }
            }
        }
        if let Some(t) = &self.timeline {
            out.push_str(&t.render());
        }
        let verdict = if self.fails() { "FAILS" } else { "holds" };
        let _ = writeln!(out, "  => history {verdict}");
        out
    }
}

fn figure_json(f: &Figure) -> Value {
    match f {
        Figure::Count(n) | Figure::Ns(n) => json!(n),
        Figure::Ratio(r) => json!(r),
        Figure::Nines(n) => json!(n),
        Figure::PerClient(m) => {
            Value::Object(m.iter().map(|(c, n)| (c.to_string(), json!(n))).collect())
        }
        Figure::None => Value::Null,
    }
}

fn figure_text(f: &Figure) -> String {
    match f {
        Figure::Count(n) => n.to_string(),
        Figure::Ns(n) => fmt_ns(*n),
        Figure::Ratio(r) => format!("{r:.4}"),
        Figure::Nines(Some(n)) => format!("{n:.2}"),
        Figure::Nines(None) => "∞".to_string(),
        Figure::PerClient(m) if m.is_empty() => "-".to_string(),
        Figure::PerClient(m) => m
            .iter()
            .map(|(c, n)| format!("c{c}:{n}"))
            .collect::<Vec<_>>()
            .join(","),
        Figure::None => "-".to_string(),
    }
}

fn verdict_json(v: &Verdict) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(v.name()));
    let holds = match v.status {
        Status::Holds => json!(true),
        Status::Fails => json!(false),
        Status::Unknown(_) => Value::Null,
    };
    o.insert("holds".into(), holds);
    o.insert("gating".into(), json!(v.gating));
    o.insert("summary".into(), json!(v.summary));
    for (n, f) in &v.figures {
        o.insert((*n).into(), figure_json(f));
    }
    o.insert("witness".into(), json!(v.witness.ops));
    o.insert("witness_lines".into(), json!(v.witness.lines));
    Value::Object(o)
}

/// The text of the given 1-based lines of a file, for showing witnesses.
pub fn read_lines(path: &Path, wanted: &BTreeSet<u64>) -> io::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let last = *wanted.last().expect("not empty");
    let r = BufReader::new(File::open(path)?);
    for (i, line) in r.split(b'\n').enumerate() {
        let n = i as u64 + 1;
        if n > last {
            break;
        }
        let line = line?;
        if wanted.contains(&n) {
            out.insert(
                n,
                String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string(),
            );
        }
    }
    Ok(out)
}
