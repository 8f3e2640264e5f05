//! `cargo sim`: scenarios x strategies x seeds, a progress bar, a table of verdicts per
//! (scenario, strategy) with the failing seeds; seed logs of failures with their witnesses and
//! the command that replays each; `repro` to replay one; `table` for the README's results table
//! from the promises in [`crate::expect`]; `nightly` for the scheduled job; `bench` for speed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aside::{Builtin, Strategy};
use chaos::scenario::{self, Scenario};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::expect::{self, Cell, Tally};
use crate::run::{self, RunOutput, COMMIT};
use crate::seedlog::{self, trace_hash};
use invariants::invariant::join;
use invariants::Invariant;

#[derive(Parser)]
#[command(
    name = "cargo sim",
    about = "The chaos campaign in the deterministic simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Scenarios to run (repeatable; default: all)
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Strategies to run (repeatable; default: all)
    #[arg(long = "strategy", value_name = "NAME")]
    strategies: Vec<String>,
    /// Seeds per (scenario, strategy), starting at --first-seed
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Run this one seed only
    #[arg(long)]
    seed: Option<u64>,
    /// One JSON object per run on stdout
    #[arg(long)]
    json: bool,
    /// Where seed logs of failing runs go
    #[arg(long, default_value = "target/aside/failures")]
    out: PathBuf,
    /// Also keep the history of every run, passing or not, in DIR (`aside check` reads them)
    #[arg(long, value_name = "DIR")]
    save_histories: Option<PathBuf>,
    /// FoundationDB's BUGGIFY: seeded extra delays at the app's slow points, to find races in
    /// narrow windows sooner (recorded in each history, so failures replay)
    #[arg(long)]
    buggify: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a campaign (the default)
    Run(RunArgs),
    /// Replay a seed log: same invariant fails with the same trace hash? (exit 0 yes, 1 no)
    Repro { file: PathBuf },
    /// Seeds to first failure of every finding the table promises, without and with BUGGIFY
    Stf {
        /// Rewrite the generated table in this file (between its markers)
        #[arg(long, value_name = "FILE", conflicts_with = "check")]
        readme: Option<PathBuf>,
        /// Exit 1 when this file's generated table differs from this run's
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
    /// Shrink a failing seed log (fewer and shorter faults, fewer apps, clients, keys, a shorter
    /// workload) while the same invariant fails; writes FILE.min.jsonl beside it, which `repro`
    /// replays
    Shrink {
        file: PathBuf,
        /// The invariant that must keep failing (default: the log's first failing one)
        #[arg(long, value_name = "NAME")]
        invariant: Option<String>,
    },
    /// Simulated ops per wall second and time compression, beside a raw madsim echo
    Bench {
        #[arg(long, default_value_t = 20)]
        seeds: u64,
    },
    /// The scenarios and strategies; with --cells, each promise of the results table
    List {
        /// One line per (scenario, strategy): `SCENARIO STRATEGY holds` or `... finds INV,INV`
        #[arg(long)]
        cells: bool,
    },
    /// Every promise of the results table over its fixed seeds: print the README's table (exit 1
    /// when a promise breaks)
    Table {
        /// Rewrite the generated table in this file (between its markers)
        #[arg(long, value_name = "FILE", conflicts_with = "check")]
        readme: Option<PathBuf>,
        /// Exit 1 when this file's generated table differs from this run's
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
    /// Every (scenario, strategy) cell over --seeds seeds on every core: its verdict, how many
    /// nines of reads were fresh, the largest staleness, the database's peak QPS, the hit ratio
    /// and one seed that replays each failing invariant. Exit 1 when a cell breaks its promise
    /// (promises are made over seeds 1-20; a wider range may find more)
    Matrix {
        #[arg(long, default_value_t = 200)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Only these scenarios (repeatable)
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Only these strategies (repeatable)
        #[arg(long = "strategy", value_name = "NAME")]
        strategies: Vec<String>,
        /// One JSON object per cell instead of the table
        #[arg(long)]
        json: bool,
        /// Rewrite the generated matrix in this file (between its markers)
        #[arg(long, value_name = "FILE", conflicts_with = "check")]
        readme: Option<PathBuf>,
        /// Exit 1 when this file's generated matrix differs from this run's
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
    /// The scheduled job: every cell over SEEDS seeds from FIRST, one process per seed (madsim's
    /// statics leak between seeds in one process); every failure with its replay command; exit 1
    /// when a cell breaks its promise
    Nightly {
        #[arg(long, default_value_t = 200)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        #[arg(long, default_value = "target/aside/failures")]
        out: PathBuf,
    },
}

/// What one run came to.
pub struct RunResult {
    pub scenario: String,
    pub strategy: String,
    pub seed: u64,
    pub trace_hash: String,
    pub ops: u64,
    /// Reads served from an aged entry (stale-while-revalidate).
    pub stale_served: u64,
    pub failed: Vec<Invariant>,
    pub report: invariants::Report,
    pub history: Vec<u8>,
    /// Requests each server answered, busiest first.
    pub served: Vec<(String, u64)>,
    /// With a hot key: the key and its share of the reads.
    pub hot_key: Option<(String, f64)>,
    /// Who is master at the end, as the Redis nodes and the Sentinels say.
    pub roles: Vec<(String, String)>,
}

/// Runs one seed with any strategy (the built-ins or a user's own) and checks it.
pub fn run_one<St: Strategy + Clone>(sc: &Scenario, strategy: St, seed: u64) -> RunResult {
    let name = strategy.name().to_string();
    judge(sc, &name, seed, run::run(sc, strategy, seed))
}

/// Checks a run's history.
pub fn judge(sc: &Scenario, strategy: &str, seed: u64, out: RunOutput) -> RunResult {
    let report = invariants::check_str(std::str::from_utf8(&out.history).expect("utf-8"), &[])
        .expect("the world writes valid histories");
    let failed = report.failing();
    let hot_key = sc
        .workload()
        .hot_key()
        .map(|k| (k.to_string(), read_share(&out.history, k)));
    RunResult {
        hot_key,
        roles: out.roles,
        served: out.served,
        scenario: sc.name.clone(),
        strategy: strategy.into(),
        seed,
        trace_hash: trace_hash(&out.history),
        ops: out.ops,
        stale_served: out.stale_served,
        failed,
        report,
        history: out.history,
    }
}

/// The share of a history's reads that read `key`.
pub fn read_share(history: &[u8], key: &str) -> f64 {
    let (mut reads, mut on_key) = (0u64, 0u64);
    for line in history.split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if v["type"] == "op" && v["f"] == "read" {
            reads += 1;
            on_key += u64::from(v["key"] == key);
        }
    }
    on_key as f64 / reads.max(1) as f64
}

/// Where the load went: each server's share of the requests, and the hot key's share of reads.
pub fn load_lines(r: &RunResult) -> String {
    let total: u64 = r.served.iter().map(|(_, n)| n).sum();
    let shares: Vec<String> = r
        .served
        .iter()
        .map(|(name, n)| format!("{name} {:.1} %", 100.0 * *n as f64 / total.max(1) as f64))
        .collect();
    let mut s = format!(
        "  load      {total} requests answered: {}\n",
        shares.join(", ")
    );
    let roles: Vec<String> = r
        .roles
        .iter()
        .map(|(n, said)| format!("{n}: {said}"))
        .collect();
    s.push_str(&format!("  roles     {}\n", roles.join(", ")));
    if let Some((k, share)) = &r.hot_key {
        s.push_str(&format!(
            "  hot key   {k} took {:.1} % of reads\n",
            100.0 * share
        ));
    }
    s
}

/// The report of `r` as a table, with the history's own witness lines.
pub fn explain(r: &RunResult) -> String {
    let wanted: BTreeSet<u64> = r.report.witness_lines();
    let lines: BTreeMap<u64, String> = r
        .history
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .filter(|(n, _)| wanted.contains(n))
        .map(|(n, l)| (n, String::from_utf8_lossy(l).into_owned()))
        .collect();
    r.report.table(&lines)
}

/// The commands that replay a run: the seed, the madsim test form, and checking its log.
pub fn replay_commands(scenario: &str, strategy: &str, seed: u64, log: Option<&Path>) -> String {
    replay_commands_with(scenario, strategy, seed, false, log)
}

/// [`replay_commands`] for a run with or without BUGGIFY.
pub fn replay_commands_with(
    scenario: &str,
    strategy: &str,
    seed: u64,
    buggify: bool,
    log: Option<&Path>,
) -> String {
    let (flag, var) = if buggify {
        (" --buggify", "ASIDE_BUGGIFY=1 ")
    } else {
        ("", "")
    };
    let mut s = format!(
        "  replay:  cargo sim --scenario {scenario} --strategy {strategy} --seed {seed}{flag}\n  or:      {var}ASIDE_SCENARIO={scenario} ASIDE_STRATEGY={strategy} MADSIM_TEST_SEED={seed} cargo sim-test --test replay -- --nocapture\n"
    );
    if let Some(f) = log {
        s.push_str(&format!(
            "  check:   cargo run -q -p aside-cli -- check {}\n  or:      cargo sim repro {}\n",
            f.display(),
            f.display()
        ));
    }
    s
}

/// Runs every cell over `seeds` in this process (each run in a fresh runtime), with a progress
/// bar, and returns each cell's tally.
pub fn tally_cells(
    cells: &[Cell],
    seeds: std::ops::RangeInclusive<u64>,
) -> Result<Vec<(Cell, Tally)>, String> {
    let scs: Vec<Scenario> = cells.iter().map(Cell::scenario).collect::<Result<_, _>>()?;
    let jobs: Vec<(usize, u64)> = (0..cells.len())
        .flat_map(|i| seeds.clone().map(move |s| (i, s)))
        .collect();
    let bar = progress(jobs.len() as u64);
    let failed = par_map(&jobs, |&(i, seed)| {
        let r = run_one(&scs[i], cells[i].strategy, seed);
        bar.inc(1);
        r.failed
    });
    bar.finish_and_clear();
    let mut out: Vec<(Cell, Tally)> = cells
        .iter()
        .map(|c| (c.clone(), Tally::default()))
        .collect();
    for (&(i, seed), f) in jobs.iter().zip(failed) {
        out[i].1.add(seed, f);
    }
    Ok(out)
}

pub(crate) fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs  {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar
}

fn about(name: &str) -> String {
    scenario::find(name)
        .map(|s| s.about.to_string())
        .unwrap_or_default()
}

fn strategies(names: &[String]) -> Result<Vec<Builtin>, String> {
    if names.is_empty() {
        return Ok(Builtin::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            Builtin::parse(n).ok_or_else(|| {
                let all: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown strategy {n:?}: known strategies are {}",
                    all.join(", ")
                )
            })
        })
        .collect()
}

fn scenarios(names: &[String]) -> Result<Vec<Scenario>, String> {
    if names.is_empty() {
        return Ok(scenario::catalog());
    }
    names.iter().map(|n| scenario::find(n)).collect()
}

/// Writes the seed log of `o` under `out`.
pub fn save(out: &Path, o: &RunResult) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let file = out.join(format!("{}-{}-{}.jsonl", o.scenario, o.strategy, o.seed));
    std::fs::write(&file, &o.history)?;
    Ok(file)
}

/// What a worker hands back for one run of a campaign.
struct Ran {
    log: Option<PathBuf>,
    error: Option<String>,
    /// The report with its witness lines, for a failing run (or the only run).
    explained: Option<String>,
    json: Option<serde_json::Value>,
}

/// How many runs go at once: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` over `items` on every core, results in `items`' order. Each run builds its own madsim
/// runtime on the worker's thread, so runs never share a simulation; what madsim's statics keep
/// between runs on one thread does not reach a run's history (the determinism test runs every
/// seed twice in one process and compares).
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = workers().min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                *slots[i].lock().expect("a worker panicked") = Some(r);
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .expect("a worker panicked")
                .expect("every item ran")
        })
        .collect()
}

/// A cell's runs in a campaign, and the seed log of each failure.
#[derive(Default)]
struct CellRuns {
    tally: Tally,
    logs: BTreeMap<u64, PathBuf>,
    /// The first failure's report, shown with its witness.
    first: Option<String>,
}

fn campaign(args: RunArgs) -> ExitCode {
    let (mut scs, sts) = match (scenarios(&args.scenarios), strategies(&args.strategies)) {
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
    for sc in &mut scs {
        sc.buggify = args.buggify;
    }
    let single = seeds.len() == 1 && scs.len() == 1 && sts.len() == 1;
    let mut jobs: Vec<(&Scenario, Builtin, u64)> = Vec::new();
    for sc in &scs {
        for &st in &sts {
            jobs.extend(seeds.iter().map(|&seed| (sc, st, seed)));
        }
    }
    let bar = progress(jobs.len() as u64);
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
        };
        if let Some(dir) = &args.save_histories {
            r.error = keep(dir).err();
        }
        if !o.failed.is_empty() {
            match keep(&args.out) {
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
    let mut table: BTreeMap<(String, String), CellRuns> = BTreeMap::new();
    let mut any_failed = false;
    for (&(sc, st, seed), (failed, r)) in jobs.iter().zip(ran) {
        if let Some(e) = r.error {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        let cell = table
            .entry((sc.name.to_string(), st.name().to_string()))
            .or_default();
        if !failed.is_empty() {
            any_failed = true;
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
    if args.json {
        return ExitCode::from(u8::from(any_failed));
    }
    for ((sc, st), c) in &table {
        let Some((seed, inv)) = c.tally.failures.first() else {
            continue;
        };
        println!("\n{sc} / {st}: seed {seed} fails {}", join(inv));
        if !single {
            if let Some(report) = &c.first {
                print!("{report}");
            }
        }
        print!(
            "{}",
            replay_commands_with(
                sc,
                st,
                *seed,
                args.buggify,
                c.logs.get(seed).map(PathBuf::as_path)
            )
        );
    }
    println!();
    println!(
        "{:<22} {:<10} {:>5} {:>6}  failing invariants (runs)          failing seeds",
        "scenario", "strategy", "runs", "failed"
    );
    for ((sc, st), c) in &table {
        let t = &c.tally;
        let invs: Vec<String> = t
            .by_invariant()
            .iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect();
        let seeds: Vec<String> = t.failures.iter().take(8).map(|f| f.0.to_string()).collect();
        let more = if t.failures.len() > 8 {
            format!(" +{}", t.failures.len() - 8)
        } else {
            String::new()
        };
        println!(
            "{sc:<22} {st:<10} {:>5} {:>6}  {:<35} {}{more}",
            t.runs,
            t.failures.len(),
            if invs.is_empty() {
                "-".into()
            } else {
                invs.join(", ")
            },
            seeds.join(" ")
        );
    }
    println!(
        "{} runs in {:.1} s wall, {} at a time",
        jobs.len(),
        began.elapsed().as_secs_f64(),
        workers().min(jobs.len())
    );
    ExitCode::from(u8::from(any_failed))
}

fn list(cells: bool) -> ExitCode {
    if cells {
        for c in expect::cells() {
            match c.expect {
                expect::Expect::Holds => println!("{} {} holds", c.scenario, c.strategy.name()),
                expect::Expect::Finds(invs) => {
                    println!(
                        "{} {} finds {}{}",
                        &c.scenario,
                        c.strategy.name(),
                        invs.iter().map(|i| i.name()).collect::<Vec<_>>().join(","),
                        if c.buggify { " with-buggify" } else { "" }
                    )
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    for s in scenario::catalog() {
        println!("{:<22} {}", s.name, s.about);
    }
    println!(
        "strategies: {}",
        Builtin::ALL
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    ExitCode::SUCCESS
}

/// Judges every tally against its cell; prints what broke.
fn judge_all(rows: &[(Cell, Tally)]) -> bool {
    let mut ok = true;
    for (c, t) in rows {
        if let Err(e) = t.judge(c) {
            ok = false;
            eprintln!("broken promise: {e}");
            if let Some((seed, _)) = t.failures.first() {
                eprint!(
                    "{}",
                    replay_commands_with(&c.scenario, c.strategy.name(), *seed, c.buggify, None)
                );
            }
        }
    }
    ok
}

fn table_cmd(readme: Option<PathBuf>, check: Option<PathBuf>) -> ExitCode {
    let rows = match tally_cells(&expect::cells(), expect::SEEDS) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cargo sim table: {e}");
            return ExitCode::from(2);
        }
    };
    let md = expect::markdown(&rows, about);
    print!("{md}");
    let held = judge_all(&rows);
    let file = readme.as_ref().or(check.as_ref());
    let markers = (expect::README_BEGIN, expect::README_END);
    match file.map(|f| generated(f, markers, &md, check.is_some(), "table")) {
        Some(code @ 1..) => ExitCode::from(code),
        _ => ExitCode::from(u8::from(!held)),
    }
}

fn matrix_cmd(
    seeds: std::ops::RangeInclusive<u64>,
    scenario_names: &[String],
    strategy_names: &[String],
    json: bool,
    readme: Option<PathBuf>,
    check: Option<PathBuf>,
) -> ExitCode {
    let fail = |e: String| {
        eprintln!("cargo sim matrix: {e}");
        ExitCode::from(2)
    };
    let (scs, sts) = match (scenarios(scenario_names), strategies(strategy_names)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let cells: Vec<Cell> = expect::cells()
        .into_iter()
        .filter(|c| scs.iter().any(|s| s.name == c.scenario) && sts.contains(&c.strategy))
        .collect();
    let began = std::time::Instant::now();
    let rows = match crate::matrix::run(&cells, seeds.clone()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    eprintln!(
        "cargo sim matrix: {} cells x {} seeds in {:.1} s wall, {} at a time",
        cells.len(),
        seeds.clone().count(),
        began.elapsed().as_secs_f64(),
        workers()
    );
    let md = crate::matrix::markdown(&rows, &seeds);
    if json {
        for r in &rows {
            println!("{}", r.to_json());
        }
    } else {
        print!("{md}");
    }
    let tallies: Vec<(Cell, expect::Tally)> = rows
        .iter()
        .map(|r| (r.cell.clone(), r.tally.clone()))
        .collect();
    let held = judge_all(&tallies);
    let markers = (crate::matrix::README_BEGIN, crate::matrix::README_END);
    match readme
        .as_ref()
        .or(check.as_ref())
        .map(|f| generated(f, markers, &md, check.is_some(), "matrix"))
    {
        Some(code @ 1..) => ExitCode::from(code),
        _ => ExitCode::from(u8::from(!held)),
    }
}

/// Writes `md` between `markers` in `file` (or, with `check`, compares): 0 when the file is (now)
/// this run's, 1 when a check finds it stale, 2 when it cannot be read or written.
fn generated(file: &Path, markers: (&str, &str), md: &str, check: bool, cmd: &str) -> u8 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cargo sim {cmd}: cannot read {}: {e}", file.display());
            return 2;
        }
    };
    let new = match expect::splice_between(&text, markers.0, markers.1, md) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cargo sim {cmd}: {}: {e}", file.display());
            return 2;
        }
    };
    if new == text {
        return 0;
    }
    if check {
        eprintln!(
            "cargo sim {cmd}: the table in {} is not this commit's: run `cargo sim {cmd} --readme {}` and commit it",
            file.display(),
            file.display()
        );
        return 1;
    }
    if let Err(e) = std::fs::write(file, new) {
        eprintln!("cargo sim {cmd}: cannot write {}: {e}", file.display());
        return 2;
    }
    eprintln!("cargo sim {cmd}: updated the table in {}", file.display());
    0
}

/// `cargo sim stf`: seeds to first failure of every finding, without and with BUGGIFY.
fn stf_cmd(readme: Option<PathBuf>, check: Option<PathBuf>) -> ExitCode {
    let began = std::time::Instant::now();
    let md = crate::stf::markdown(&crate::stf::rows());
    print!("{md}");
    eprintln!(
        "cargo sim stf: {:.1} s wall, {} at a time",
        began.elapsed().as_secs_f64(),
        workers()
    );
    let markers = (crate::stf::README_BEGIN, crate::stf::README_END);
    match readme.as_ref().or(check.as_ref()) {
        Some(f) => ExitCode::from(generated(f, markers, &md, check.is_some(), "stf")),
        None => ExitCode::SUCCESS,
    }
}

/// One seed in a child process of this binary: its failing invariants.
fn run_child(c: &Cell, seed: u64, out: &Path) -> Result<Vec<Invariant>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let o = std::process::Command::new(exe)
        .args([
            "--scenario",
            &c.scenario,
            "--strategy",
            c.strategy.name(),
            "--json",
        ])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(out)
        .args(c.buggify.then_some("--buggify"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run a seed in a child process: {e}"))?;
    let line = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| {
        format!(
            "{} / {} / seed {seed}: the child printed no result ({e}; exit {:?}): replay it with `cargo sim --scenario {} --strategy {} --seed {seed}`",
            c.scenario, c.strategy.name(), o.status.code(), c.scenario, c.strategy.name()
        )
    })?;
    v["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Invariant::parse(x.as_str().unwrap_or_default()))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or(Ok(Vec::new()))
        .map_err(|e| {
            format!(
                "{} / {} / seed {seed}: the child's result: {e}",
                c.scenario,
                c.strategy.name()
            )
        })
}

fn nightly(seeds: u64, first: u64, out: &Path) -> ExitCode {
    let cells = expect::cells();
    let range = first..=first.saturating_add(seeds.max(1) - 1);
    println!(
        "cargo sim nightly: {} cells x seeds {}..={} ({} runs), one process per seed, on every core",
        cells.len(),
        range.start(),
        range.end(),
        cells.len() as u64 * seeds
    );
    let jobs: Vec<(usize, u64)> = (0..cells.len())
        .flat_map(|i| range.clone().map(move |s| (i, s)))
        .collect();
    let bar = progress(jobs.len() as u64);
    let results = par_map(&jobs, |&(i, seed)| {
        let c = &cells[i];
        let r = run_child(c, seed, out);
        match &r {
            Ok(failed) if !failed.is_empty() => {
                let log = out.join(format!("{}-{}-{seed}.jsonl", c.scenario, c.strategy.name()));
                let name = c.strategy.name();
                bar.suspend(|| {
                    println!("FAIL {} {name} seed {seed}: {}", &c.scenario, join(failed));
                    print!(
                        "{}",
                        replay_commands_with(&c.scenario, name, seed, c.buggify, Some(&log))
                    );
                });
            }
            Ok(_) => {}
            Err(e) => bar.suspend(|| eprintln!("harness error: {e}")),
        }
        bar.inc(1);
        r
    });
    bar.finish_and_clear();
    let mut rows: Vec<(Cell, Tally)> = cells
        .iter()
        .map(|c| (c.clone(), Tally::default()))
        .collect();
    let mut harness_errors = 0;
    for (&(i, seed), r) in jobs.iter().zip(results) {
        match r {
            Ok(failed) => rows[i].1.add(seed, failed),
            Err(_) => harness_errors += 1,
        }
    }
    for (c, t) in &rows {
        println!("{} / {}: {}", c.scenario, c.strategy.name(), t.summary());
    }
    let held = judge_all(&rows);
    ExitCode::from(u8::from(!held || harness_errors > 0))
}

/// Replays a seed log. `Ok((true, msg))`: the same invariants fail with the same trace hash;
/// `Ok((false, msg))`: they do not; `Err`: the log cannot be replayed (bad input).
/// A seed log's run, ready to run again.
struct Logged {
    run: seedlog::Run,
    /// The log's bytes.
    saved: Vec<u8>,
    /// The scenario as the log's header describes it (a shrunk run's own workload and plan).
    sc: Scenario,
    st: Builtin,
    /// The gating invariants the logged run failed.
    before: Vec<Invariant>,
}

fn logged_run(file: &Path) -> Result<Logged, String> {
    let (run, saved) = seedlog::read(file)?;
    if run.commit != COMMIT {
        return Err(format!(
            "{} was recorded at commit {}, this is {COMMIT}: check out {} to replay it",
            file.display(),
            run.commit,
            run.commit
        ));
    }
    let sc = scenario::find(&run.scenario)
        .and_then(|sc| sc.with_config(&run.config))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let st = strategies(std::slice::from_ref(&run.strategy))
        .map_err(|e| format!("{}: {e}", file.display()))?[0];
    let before: Vec<Invariant> =
        invariants::check_str(std::str::from_utf8(&saved).unwrap_or_default(), &[])
            .map(|r| r.failing())
            .unwrap_or_default();
    Ok(Logged {
        run,
        saved,
        sc,
        st,
        before,
    })
}

/// `cargo sim shrink LOG`.
fn shrink_cmd(file: &Path, invariant: Option<String>) -> ExitCode {
    let Logged {
        run,
        sc,
        st,
        before,
        ..
    } = match logged_run(file) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cargo sim shrink: {e}");
            return ExitCode::from(2);
        }
    };
    let inv = match invariant.as_deref().map(Invariant::parse).transpose() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("cargo sim shrink: --invariant: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(inv) = inv.or_else(|| before.first().copied()) else {
        eprintln!(
            "cargo sim shrink: {} records a run that fails no invariant: pass a failing run's seed log",
            file.display()
        );
        return ExitCode::from(2);
    };
    println!(
        "shrinking {} / {} / seed {} while {inv} fails",
        run.scenario, run.strategy, run.seed
    );
    let Some(s) = crate::shrink::shrink(&sc, st, run.seed, inv, |what| println!("  kept: {what}"))
    else {
        println!(
            "{} / {} / seed {} does not fail {inv}: nothing to shrink (failing: [{}])",
            run.scenario,
            run.strategy,
            run.seed,
            join(&before)
        );
        return ExitCode::from(1);
    };
    let stem = file.to_string_lossy();
    let out = PathBuf::from(format!(
        "{}.min.jsonl",
        stem.strip_suffix(".jsonl").unwrap_or(&stem)
    ));
    if let Err(e) = std::fs::write(&out, &s.result.history) {
        eprintln!(
            "cargo sim shrink: cannot write {}: {e}: make its directory writable",
            out.display()
        );
        return ExitCode::from(2);
    }
    let sc = &s.scenario;
    println!(
        "\nminimal run after {} runs: {} fault(s), {} app node(s) x {} client(s), {} keys, {} ms of workload",
        s.runs,
        sc.plan.steps.len(),
        sc.apps,
        sc.clients_per_app,
        sc.keys,
        sc.duration_ms
    );
    for step in &sc.plan.steps {
        println!(
            "  at {} ms for {} ms: {}",
            step.at_ms, step.for_ms, step.fault
        );
    }
    if let Some(v) = s.result.report.verdict(inv) {
        println!("  {inv}: {}", v.summary);
    }
    println!("  saved:   {}", out.display());
    println!("  replay:  cargo sim repro {}", out.display());
    ExitCode::SUCCESS
}

pub fn replay(file: &Path) -> Result<(bool, String), String> {
    let Logged {
        run,
        saved,
        sc,
        st,
        before,
    } = logged_run(file)?;
    let o = run_one(&sc, st, run.seed);
    let (want, got) = (trace_hash(&saved), o.trace_hash.clone());
    let what = format!("{} / {} / seed {}", run.scenario, run.strategy, run.seed);
    if want == got && before == o.failed {
        let failing = if o.failed.is_empty() {
            "no invariant".to_string()
        } else {
            join(&o.failed)
        };
        Ok((
            true,
            format!("reproduced: {what}: {failing} fail again, trace hash {got}"),
        ))
    } else {
        Ok((false, format!("NOT reproduced: {what}: trace hash {got} (log {want}), failing now [{}] (log [{}])", join(&o.failed), join(&before))))
    }
}

fn repro(file: &Path) -> ExitCode {
    match replay(file) {
        Ok((same, msg)) => {
            println!("{msg}");
            ExitCode::from(u8::from(!same))
        }
        Err(e) => {
            eprintln!("cargo sim repro: {e}");
            ExitCode::from(2)
        }
    }
}

/// Simulated time since the run began, for log lines: wall time means nothing in the simulator.
struct SimClock;

impl tracing_subscriber::fmt::time::FormatTime for SimClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match madsim::time::TimeHandle::try_current() {
            Some(t) => write!(w, "sim+{:.6}s", t.elapsed().as_secs_f64()),
            None => write!(w, "sim(outside a run)"),
        }
    }
}

/// Logs to stderr when `RUST_LOG` or `ASIDE_LOG` is set (the same filter syntax, e.g.
/// `ASIDE_LOG=aside=debug`): every span's close with its time, so one seed's reads and writes
/// can be followed through the tiers.
fn init_tracing() {
    let filter = ["ASIDE_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().map(|f| (v, f)));
    let Some((var, filter)) = filter else {
        return;
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "cargo sim: {var}={filter:?} is not a log filter ({e}): try {var}=aside=debug"
            );
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_timer(SimClock)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

pub fn main() -> ExitCode {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        None => campaign(cli.run),
        Some(Command::Run(a)) => campaign(a),
        Some(Command::Repro { file }) => repro(&file),
        Some(Command::Shrink { file, invariant }) => shrink_cmd(&file, invariant),
        Some(Command::Stf { readme, check }) => stf_cmd(readme, check),
        Some(Command::Bench { seeds }) => crate::bench::bench(seeds),
        Some(Command::List { cells }) => list(cells),
        Some(Command::Table { readme, check }) => table_cmd(readme, check),
        Some(Command::Matrix {
            seeds,
            first_seed,
            scenarios,
            strategies,
            json,
            readme,
            check,
        }) => matrix_cmd(
            first_seed..=first_seed.saturating_add(seeds.max(1) - 1),
            &scenarios,
            &strategies,
            json,
            readme,
            check,
        ),
        Some(Command::Nightly {
            seeds,
            first_seed,
            out,
        }) => nightly(seeds, first_seed, &out),
    }
}
