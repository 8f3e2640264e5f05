//! `cargo sim matrix`: every scenario × strategy cell over a range of seeds, with what a user
//! choosing a strategy wants to see beside the verdict: how many nines of reads were fresh, the
//! largest staleness, the database's peak load, the hit ratio, and one seed that replays each
//! failing invariant. The README's strategy matrix is its Markdown; `--json` is for machines.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use aside::goal::Goal;
use invariants::verdict::Figure;
use invariants::{Invariant, Report};
use serde_json::json;

use crate::expect::{self, Cell, Tally};

/// One cell over its seeds.
#[derive(Debug, Clone)]
pub struct CellFigures {
    pub cell: Cell,
    pub tally: Tally,
    /// Reads the staleness checker judged, and those it found stale, over every run.
    pub reads: u64,
    pub stale: u64,
    /// The largest staleness of any run (0: none).
    pub delta_max_ns: u64,
    /// The highest database QPS of any run.
    pub peak_db_qps: u64,
    /// Steady-phase reads and hits over every run.
    pub steady_reads: u64,
    pub hits: u64,
    /// The first seed on which each failing invariant failed.
    pub replay: BTreeMap<String, u64>,
    /// Per coverage goal reached: the runs that reached it and the first seed that did.
    pub goals: BTreeMap<Goal, (u64, u64)>,
}

impl CellFigures {
    pub fn new(cell: Cell) -> Self {
        CellFigures {
            cell,
            tally: Tally::default(),
            reads: 0,
            stale: 0,
            delta_max_ns: 0,
            peak_db_qps: 0,
            steady_reads: 0,
            hits: 0,
            replay: BTreeMap::new(),
            goals: BTreeMap::new(),
        }
    }

    /// Adds one run: its seed, failing gating invariants and the [`figures`] of its report.
    pub fn add(&mut self, seed: u64, failed: Vec<Invariant>, figures: RunFigures) {
        for f in &failed {
            self.replay.entry(f.name().to_string()).or_insert(seed);
        }
        self.tally.add(seed, failed);
        self.reads += figures.reads;
        self.stale += figures.stale_reads;
        self.delta_max_ns = self.delta_max_ns.max(figures.delta_ns);
        self.peak_db_qps = self.peak_db_qps.max(figures.peak_db_qps);
        self.steady_reads += figures.steady_reads;
        self.hits += figures.hits;
        for g in Goal::of_set(figures.goals) {
            let e = self.goals.entry(g).or_insert((0, seed));
            e.0 += 1;
            e.1 = e.1.min(seed);
        }
    }

    /// `-log10(stale / reads)`: None when nothing was stale.
    pub fn fresh_nines(&self) -> Option<f64> {
        (self.stale > 0 && self.reads > 0)
            .then(|| -((self.stale as f64) / (self.reads as f64)).log10())
    }

    pub fn hit_ratio(&self) -> Option<f64> {
        (self.steady_reads > 0).then(|| self.hits as f64 / self.steady_reads as f64)
    }

    /// `Err(why)` when the seeds broke the cell's promise (expect.rs).
    pub fn judge(&self) -> Result<(), String> {
        self.tally.judge(&self.cell)
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "scenario": self.cell.scenario,
            "strategy": self.cell.strategy.name(),
            "buggify": self.cell.buggify,
            "runs": self.tally.runs,
            "failed_runs": self.tally.failures.len(),
            "failing": self
                .tally
                .by_invariant()
                .into_iter()
                .map(|(i, n)| (i.name(), n))
                .collect::<BTreeMap<_, _>>(),
            "promise": expect::promise(&self.cell).0,
            "promise_kept": self.judge().is_ok(),
            "reads": self.reads,
            "stale_reads": self.stale,
            "fresh_nines": self.fresh_nines(),
            "delta_max_ns": self.delta_max_ns,
            "peak_db_qps": self.peak_db_qps,
            "hit_ratio": self.hit_ratio(),
            "replay_seeds": self.replay,
            "goals": self
                .goals
                .iter()
                .map(|(g, (runs, first))| (g.name().to_string(), json!({"runs": runs, "first_seed": first})))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn count(r: &Report, verdict: Invariant, figure: &str) -> u64 {
    match r.verdict(verdict).and_then(|v| v.get(figure)) {
        Some(Figure::Count(n) | Figure::Ns(n)) => *n,
        _ => 0,
    }
}

/// What the matrix keeps of one run: a few figures of its report, not the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFigures {
    /// Reads the staleness checker judged, and those it found stale.
    pub reads: u64,
    pub stale_reads: u64,
    /// The run's largest staleness (0: none).
    pub delta_ns: u64,
    pub peak_db_qps: u64,
    /// Steady-phase reads, and the hits among them.
    pub steady_reads: u64,
    pub hits: u64,
    /// The coverage goals the run reached ([`crate::coverage::bits`]).
    pub goals: u64,
}

/// A run's [`RunFigures`], read off its report.
pub fn figures(r: &Report) -> RunFigures {
    let peak_db_qps = r
        .verdicts
        .iter()
        .find_map(|v| match v.get("peak_db_qps") {
            Some(Figure::Count(n)) => Some(*n),
            _ => None,
        })
        .unwrap_or(0);
    RunFigures {
        reads: count(r, Invariant::Staleness, "ok_reads"),
        stale_reads: count(r, Invariant::Staleness, "stale_reads"),
        delta_ns: count(r, Invariant::Staleness, "delta_ns"),
        peak_db_qps,
        steady_reads: count(r, Invariant::HitRatio, "steady_reads"),
        hits: count(r, Invariant::HitRatio, "hits"),
        goals: crate::coverage::bits(r),
    }
}

/// What the cells' runs reached, cells in table order.
pub fn coverage(rows: &[CellFigures]) -> crate::coverage::Coverage {
    let mut c = crate::coverage::Coverage::default();
    for r in rows {
        c.add_cell(
            &r.cell.scenario,
            r.cell.strategy.name(),
            r.cell.buggify,
            r.tally.runs,
            r.goals.iter().map(|(g, (n, first))| (*g, *n, *first)),
        );
    }
    c
}

/// Runs every cell over `seeds` on every core, with a progress bar.
#[cfg(madsim)]
pub fn run(cells: &[Cell], seeds: RangeInclusive<u64>) -> Result<Vec<CellFigures>, String> {
    use crate::pool::par_map;
    use crate::runner::run_one;
    let scs: Vec<chaos::scenario::Scenario> =
        cells.iter().map(Cell::scenario).collect::<Result<_, _>>()?;
    let jobs: Vec<(usize, u64)> = (0..cells.len())
        .flat_map(|i| seeds.clone().map(move |s| (i, s)))
        .collect();
    let bar = crate::pool::progress(jobs.len() as u64);
    // Each worker keeps only a run's six figures: the reports of 200 seeds x 63 cells, held
    // until the end, took 17 GB.
    let results = par_map(&jobs, |&(i, seed)| {
        let r = run_one(&scs[i], cells[i].strategy, seed);
        bar.inc(1);
        (r.failed, figures(&r.report))
    });
    bar.finish_and_clear();
    let mut out: Vec<CellFigures> = cells.iter().cloned().map(CellFigures::new).collect();
    for (&(i, seed), (failed, figs)) in jobs.iter().zip(results) {
        out[i].add(seed, failed, figs);
    }
    Ok(out)
}

fn ms(ns: u64) -> String {
    match ns {
        0 => "0".into(),
        n if n < 10_000_000 => format!("{:.1} ms", n as f64 / 1e6),
        n => format!("{} ms", n / 1_000_000),
    }
}

/// The verdict column: `holds`, or the failing invariants with their run counts.
fn verdict(c: &CellFigures) -> String {
    if c.tally.failures.is_empty() {
        return "holds".into();
    }
    let invs: Vec<String> = c
        .tally
        .by_invariant()
        .iter()
        .map(|(n, k)| format!("{n} ({k})"))
        .collect();
    format!(
        "fails {}/{}: {}",
        c.tally.failures.len(),
        c.tally.runs,
        invs.join(", ")
    )
}

/// The Markdown matrix of the simulator's runs: one row per cell.
pub fn markdown(rows: &[CellFigures], seeds: &RangeInclusive<u64>) -> String {
    let footer = format!(
        "Seeds {} to {} per cell. Replay a seed: `cargo sim --scenario SCENARIO --strategy STRATEGY --seed N` (add `--buggify` where the row says BUGGIFY).",
        seeds.start(),
        seeds.end()
    );
    markdown_with(rows, &footer)
}

/// The Markdown matrix with `footer` under it (what the runs were, how to replay one).
pub fn markdown_with(rows: &[CellFigures], footer: &str) -> String {
    let mut md = String::from(
        "| scenario | strategy | verdict | fresh reads (nines) | largest Δ | peak DB QPS | hit ratio | replay (first failing seed) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for c in rows {
        let nines = match c.fresh_nines() {
            None => "∞".to_string(),
            Some(n) => format!("{n:.1}"),
        };
        let replay: Vec<String> = c
            .replay
            .iter()
            .map(|(inv, seed)| format!("{inv}: {seed}"))
            .collect();
        md.push_str(&format!(
            "| `{}` | {}{} | {} | {nines} | {} | {} | {} | {} |\n",
            c.cell.scenario,
            c.cell.strategy.name(),
            if c.cell.buggify { " (BUGGIFY)" } else { "" },
            verdict(c),
            ms(c.delta_max_ns),
            c.peak_db_qps,
            c.hit_ratio().map_or("-".into(), |h| format!("{h:.3}")),
            if replay.is_empty() {
                "-".to_string()
            } else {
                replay.join(", ")
            },
        ));
    }
    md.push_str(&format!("\n{footer}\n"));
    md
}

/// Markers around the generated matrix in the README.
pub const README_BEGIN: &str =
    "<!-- generated by `cargo sim matrix --seeds 20 --readme docs/results.md`: do not edit by hand -->";
pub const README_END: &str = "<!-- end of generated matrix -->";
