//! `cargo sim` (and `cargo sim run`): scenarios x strategies x seeds on every core. The screen
//! shows a table of every cell (its runs, its promise, whether the promise held, the failing
//! invariants and seeds) and, above it, the first failure of each cell that broke its promise
//! with its witness and the command that replays it. Every failing run leaves its seed log and
//! its full report (`*.report.txt`) in `--out`. Exit 0 when every promise held: a finding a
//! scenario promises is what the run is for, not a failure of it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aside::Builtin;
use chaos::scenario::{Expect, Scenario};
use invariants::invariant::join;
use invariants::Invariant;
use serde_json::json;

use super::{scenarios, strategies, RunArgs};
use crate::expect::{Cell, Tally, SEEDS};
use crate::pool::{par_map, progress, workers};
use crate::runner::{explain, load_lines, replay_commands_with, run_one, save};

/// Cells whose first failure is printed in full before the rest are only named (`--verbose`:
/// all).
const SHOWN_MAX: usize = 5;

/// What a worker hands back for one run of a campaign.
struct Ran {
    log: Option<PathBuf>,
    error: Option<String>,
    /// The report with its witness lines, for a failing run (or the only run).
    explained: Option<String>,
    json: Option<serde_json::Value>,
    /// The coverage goals the run reached ([`crate::coverage::bits`]).
    goals: u64,
}

/// A cell's runs in a campaign, and the seed log of each failure.
struct CellRuns<'a> {
    sc: &'a Scenario,
    strategy: Builtin,
    tally: Tally,
    logs: std::collections::BTreeMap<u64, PathBuf>,
    /// The first failure's report, shown with its witness.
    first: Option<String>,
}

/// A cell's runs against its scenario's promise.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The promise held over these seeds.
    Kept,
    /// The promise broke: why.
    Broken(String),
    /// The scenario promises nothing for this strategy:
    /// every failing run counts.
    Unpromised,
}

impl CellRuns<'_> {
    /// The scenario's promise for this cell's strategy.
    fn promise(&self) -> Option<Cell> {
        self.sc.promise(self.strategy).map(|p| Cell::of(self.sc, p))
    }

    /// A promise to hold breaks on any failing seed. A promise to find accepts the failures it
    /// names as findings; it breaks on a harness error, and on not finding what it names only
    /// when the run is the promise's own (its seeds, `expect::SEEDS`, and its BUGGIFY setting):
    /// fewer seeds, or no BUGGIFY, may not reach a narrow race.
    fn verdict(&self, buggify: bool, seeds: &[u64]) -> Verdict {
        let Some(cell) = self.promise() else {
            return Verdict::Unpromised;
        };
        let own_run = cell.buggify == buggify && SEEDS.clone().all(|s| seeds.contains(&s));
        let judged = match (&cell.expect, own_run) {
            (Expect::Finds(_), false) => self.tally.judge_harness(&cell),
            _ => self.tally.judge(&cell),
        };
        match judged {
            Ok(()) => Verdict::Kept,
            Err(why) => Verdict::Broken(why),
        }
    }

    /// What the table's promise column says.
    fn promise_text(&self) -> String {
        match self.promise() {
            None => "-".into(),
            Some(c) => {
                let with = if c.buggify { " (BUGGIFY)" } else { "" };
                match &c.expect {
                    Expect::Holds => "holds".into(),
                    Expect::Finds(i) if i.is_empty() => format!("finds any{with}"),
                    Expect::Finds(i) => format!("finds {}{with}", join(i)),
                }
            }
        }
    }

    /// Whether the screen shows this cell's first failure: its promise broke, or it promised
    /// nothing and failed.
    fn needs_attention(&self, v: &Verdict) -> bool {
        match v {
            Verdict::Kept => false,
            Verdict::Broken(_) => true,
            Verdict::Unpromised => !self.tally.failures.is_empty(),
        }
    }
}

pub fn campaign(args: RunArgs) -> ExitCode {
    let (mut scs, sts) = match (
        scenarios(&args.scenarios, &args.scenario_files),
        strategies(&args.strategies),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cargo sim: {e}");
            return ExitCode::from(2);
        }
    };
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first_seed..args.first_seed.saturating_add(args.seeds)).collect(),
    };
    let mutant = match args.mutant.as_deref().map(aside::mutant::Mutant::from_name) {
        Some(Err(e)) => {
            eprintln!("cargo sim: --mutant {e}");
            return ExitCode::from(2);
        }
        Some(Ok(m)) => Some(m),
        None => None,
    };
    for sc in &mut scs {
        sc.buggify = args.buggify;
        sc.mutant = mutant;
    }
    let single = seeds.len() == 1 && scs.len() == 1 && sts.len() == 1;
    let mut jobs: Vec<(&Scenario, Builtin, u64)> = Vec::new();
    for sc in &scs {
        for &st in &sts {
            jobs.extend(seeds.iter().map(|&seed| (sc, st, seed)));
        }
    }
    let bar = progress(jobs.len() as u64);
    let out = args.out.clone();
    let began = std::time::Instant::now();
    // Every run on a worker; what comes back is small (the history stays on disk, if kept).
    let ran: Vec<(Vec<Invariant>, Ran)> = par_map(&jobs, |&(sc, st, seed)| {
        let o = run_one(sc, st, seed);
        let keep = |dir: &Path| {
            save(dir, &o).map_err(|e| {
                format!(
                    "cargo sim: cannot write the history under {}: {e}: pass a writable directory",
                    dir.display()
                )
            })
        };
        let mut r = Ran {
            log: None,
            error: None,
            explained: (single || !o.failed.is_empty()).then(|| {
                format!(
                    "{}{}",
                    explain(&o),
                    if single {
                        load_lines(&o)
                    } else {
                        String::new()
                    }
                )
            }),
            json: None,
            goals: crate::coverage::bits(&o.report),
        };
        if let Some(dir) = &args.save_histories {
            r.error = keep(dir).err();
        }
        if !o.failed.is_empty() {
            match keep(&out).and_then(|f| keep_report(&f, &o, sc, args.buggify)) {
                Ok(f) => r.log = Some(f),
                Err(e) => r.error = Some(e),
            }
        }
        if args.json {
            let verdicts: Vec<serde_json::Value> = o.report.to_json()["invariants"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            r.json = Some(json!({
                "scenario": o.scenario, "strategy": o.strategy, "seed": o.seed, "trace_hash": o.trace_hash,
                "ops": o.ops, "holds": o.failed.is_empty(), "failed": o.failed, "verdicts": verdicts,
                "served": o.served.iter().map(|(n, c)| json!({"server": n, "requests": c})).collect::<Vec<_>>(),
                "hot_key": o.hot_key.as_ref().map(|(k, share)| json!({"key": k, "read_share": share})),
                "roles": o.roles.iter().map(|(n, said)| json!({"node": n, "says": said})).collect::<Vec<_>>(),
                "log": r.log.as_ref().map(|p| p.display().to_string()),
            }));
        }
        bar.inc(1);
        (o.failed, r)
    });
    bar.finish_and_clear();
    let mut cells: Vec<CellRuns> = Vec::new();
    let mut coverage = crate::coverage::Coverage::default();
    for (&(sc, st, seed), (failed, r)) in jobs.iter().zip(ran) {
        coverage.add(&sc.name, st.name(), sc.buggify, seed, r.goals);
        if let Some(e) = r.error {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        let i = match cells
            .iter()
            .position(|c| std::ptr::eq(c.sc, sc) && c.strategy == st)
        {
            Some(i) => i,
            None => {
                cells.push(CellRuns {
                    sc,
                    strategy: st,
                    tally: Tally::default(),
                    logs: Default::default(),
                    first: None,
                });
                cells.len() - 1
            }
        };
        let cell = &mut cells[i];
        if !failed.is_empty() {
            if let Some(f) = r.log {
                cell.logs.insert(seed, f);
            }
            if cell.first.is_none() {
                cell.first.clone_from(&r.explained);
            }
        }
        if single && !args.json {
            print!("{}", r.explained.unwrap_or_default());
        }
        if let Some(line) = r.json {
            println!("{line}");
        }
        cell.tally.add(seed, failed);
    }
    let verdicts: Vec<Verdict> = cells
        .iter()
        .map(|c| c.verdict(args.buggify, &seeds))
        .collect();
    let broken = cells
        .iter()
        .zip(&verdicts)
        .filter(|(c, v)| c.needs_attention(v))
        .count();
    if args.json {
        return ExitCode::from(u8::from(broken > 0));
    }
    let mut shown = 0;
    for (c, v) in cells.iter().zip(&verdicts) {
        let Some((seed, inv)) = c.tally.failures.first() else {
            continue;
        };
        if !(args.verbose || c.needs_attention(v)) {
            continue;
        }
        shown += 1;
        if shown > SHOWN_MAX && !args.verbose {
            continue;
        }
        let st = c.strategy.name();
        println!("\n{} / {st}: seed {seed} fails {}", c.sc.name, join(inv));
        if let Verdict::Broken(why) = v {
            println!("  broken promise: {why}");
        }
        if !single {
            if let Some(report) = &c.first {
                print!("{report}");
            }
        }
        let log = c.logs.get(seed).map(PathBuf::as_path);
        print!(
            "{}",
            replay_commands_with(&c.sc.arg(), st, *seed, args.buggify, c.sc.mutant, log)
        );
    }
    if shown > SHOWN_MAX && !args.verbose {
        println!(
            "\n{} more cells need a look: their reports are beside their seed logs in {} (or pass --verbose)",
            shown - SHOWN_MAX,
            args.out.display()
        );
    }
    println!();
    let w = chaos::scenario::NAME_WIDTH;
    println!(
        "{:<w$} {:<10} {:>5} {:>6}  {:<40} {:<7}  failing invariants (runs), seeds",
        "scenario", "strategy", "runs", "failed", "promise", "held"
    );
    for (c, v) in cells.iter().zip(&verdicts) {
        let t = &c.tally;
        let invs: Vec<String> = t
            .by_invariant()
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect();
        let seeds: Vec<String> = t.failures.iter().take(6).map(|f| f.0.to_string()).collect();
        let more = if t.failures.len() > 6 {
            format!(" +{}", t.failures.len() - 6)
        } else {
            String::new()
        };
        let held = match v {
            Verdict::Kept => "yes",
            Verdict::Broken(_) => "NO",
            Verdict::Unpromised if t.failures.is_empty() => "-",
            Verdict::Unpromised => "FAILED",
        };
        let failing = if invs.is_empty() {
            "-".to_string()
        } else {
            format!("{}; seeds {}{more}", invs.join(", "), seeds.join(" "))
        };
        println!(
            "{:<w$} {:<10} {:>5} {:>6}  {:<40} {held:<7}  {failing}",
            c.sc.name,
            c.strategy.name(),
            t.runs,
            t.failures.len(),
            c.promise_text(),
        );
    }
    if jobs.len() > 1 {
        println!(
            "\ncoverage goals (aside::goal; `cargo sim coverage` runs every promise's cell):\n"
        );
        print!("{}", coverage.markdown());
    } else {
        println!("\n{}", coverage.summary());
    }
    println!(
        "\n{} runs in {:.1} s wall, {} at a time: {}",
        jobs.len(),
        began.elapsed().as_secs_f64(),
        workers().min(jobs.len()),
        if broken == 0 {
            "every promise held".to_string()
        } else {
            format!("{broken} cell(s) broke a promise or failed without one")
        }
    );
    ExitCode::from(u8::from(broken > 0))
}

/// Writes the report of a failing run beside its seed log (`LOG.report.txt`): its verdicts, its
/// witness lines and the commands that replay it.
fn keep_report(
    log: &Path,
    o: &crate::runner::RunResult,
    sc: &Scenario,
    buggify: bool,
) -> Result<PathBuf, String> {
    let stem = log.to_string_lossy();
    let file = PathBuf::from(format!(
        "{}.report.txt",
        stem.strip_suffix(".jsonl").unwrap_or(&stem)
    ));
    let text = format!(
        "{} / {} / seed {}: fails {}\n{}{}",
        o.scenario,
        o.strategy,
        o.seed,
        join(&o.failed),
        explain(o),
        replay_commands_with(
            &sc.arg(),
            &o.strategy,
            o.seed,
            buggify,
            sc.mutant,
            Some(log)
        )
    );
    std::fs::write(&file, text).map_err(|e| {
        format!(
            "cargo sim: cannot write {}: {e}: pass a writable --out DIR",
            file.display()
        )
    })?;
    Ok(log.to_path_buf())
}
