//! `aside chaos`: the catalog's scenarios against real servers in containers, checked by the
//! same invariants as the simulator's runs, every history kept. Needs Docker and the offline
//! image (`bash ci/build-images.sh`); says so in one line when either is missing. `compare` and
//! `matrix` run every cell this world can and set it beside the simulator's promise or figures.

mod compare;
mod matrix;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aside::{Builtin, Strategy};
use chaos::scenario::{self, Scenario};
use containers::run::{run_with, unsupported, RunOptions};

#[derive(clap::Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    command: Option<ChaosCommand>,
    /// Scenario to run (see `aside chaos list`)
    #[arg(long, value_name = "NAME", conflicts_with = "scenario_file")]
    scenario: Option<String>,
    /// A scenario file of your own instead (docs/scenarios.md)
    #[arg(long, value_name = "FILE")]
    scenario_file: Option<PathBuf>,
    /// Strategy: naive, versioned or durable
    #[arg(long, default_value = "versioned")]
    strategy: String,
    /// Runs, with seeds --first-seed, --first-seed + 1, ...
    #[arg(long, default_value_t = 1)]
    runs: u64,
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// One JSON object per run on stdout
    #[arg(long)]
    json: bool,
    /// Where every run's history goes (`aside check` reads them)
    #[arg(long, value_name = "DIR", default_value = "target/aside/containers")]
    keep: PathBuf,
    /// Redis `min-replicas-to-write` on the master and the replica: an isolated master refuses
    /// writes instead of acknowledging writes a failover discards
    #[arg(long, value_name = "N")]
    min_replicas_to_write: Option<u32>,
    /// Redis `min-replicas-max-lag` in seconds, with --min-replicas-to-write
    #[arg(
        long,
        value_name = "S",
        default_value_t = 1,
        requires = "min_replicas_to_write"
    )]
    min_replicas_max_lag: u32,
}

#[derive(clap::Subcommand)]
enum ChaosCommand {
    /// The scenarios this world runs, and those it cannot run yet with the reason
    List,
    /// One app node of a run, inside its container (started by `aside chaos`, not by hand)
    #[command(hide = true)]
    App {
        /// The run's task as JSON (containers::app::AppTask)
        #[arg(long)]
        task: String,
    },
    /// Every scenario this world runs x every strategy, --runs times each: the figures `cargo sim
    /// matrix` prints (verdict, fresh-read nines, largest staleness, peak database QPS, hit
    /// ratio, the first seed that fails each invariant)
    Matrix {
        #[arg(long, default_value_t = 3)]
        runs: u64,
        /// Only these scenarios (repeatable; default: every one this world runs)
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Only these strategies (repeatable; default: all)
        #[arg(long = "strategy", value_name = "NAME")]
        strategies: Vec<String>,
        /// One JSON object per cell instead of the table
        #[arg(long)]
        json: bool,
        /// Where every run's history goes
        #[arg(long, value_name = "DIR", default_value = "target/aside/containers")]
        keep: PathBuf,
    },
    /// Every scenario this world runs, every strategy, --runs times each, beside what the
    /// simulator promises for the same cell (its scenario file): do the two worlds agree?
    Compare {
        #[arg(long, default_value_t = 3)]
        runs: u64,
        /// Only these scenarios (repeatable; default: every one this world runs)
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Record this run's cells in the comparison (docs/results/compare.json, beside --readme's
        /// directory) and render the generated table in this file from it (between its markers)
        #[arg(long, value_name = "FILE")]
        readme: Option<PathBuf>,
        /// Where every run's history goes
        #[arg(long, value_name = "DIR", default_value = "target/aside/containers")]
        keep: PathBuf,
        /// Only these strategies (repeatable; default: all)
        #[arg(long = "strategy", value_name = "NAME")]
        strategies: Vec<String>,
        /// Run nothing: render --readme's table again from the recorded comparison with this
        /// commit's promises (after a scenario file's promise changed)
        #[arg(long)]
        promises_only: bool,
        /// Write this run's cells to FILE (the nightly's compare.json, which `cargo sim triage`
        /// holds to the recorded ones) and exit 0 whatever they show: a disagreement with the
        /// simulator is data there, and a verdict unlike the recorded one is the triage's to judge
        #[arg(long, value_name = "FILE", conflicts_with_all = ["readme", "promises_only"])]
        save: Option<PathBuf>,
        /// Start no cell after this many minutes (the nightly's budget); the cells left are
        /// named, and saved with --save for the nightly's summary
        #[arg(long, value_name = "MINUTES", conflicts_with = "promises_only")]
        budget_min: Option<u64>,
    },
}

/// One run against containers: its seed, failing gating invariants and kept history.
struct Ran {
    seed: u64,
    ops: u64,
    secs: f64,
    failed: Vec<invariants::Invariant>,
    file: PathBuf,
    report: invariants::Report,
}

impl Ran {
    /// `S / X / seed N: O ops in T s, holds; history FILE` (or `fails INV, INV`).
    fn line(&self, scenario: &str, st: &impl Strategy) -> String {
        format!(
            "{scenario} / {} / seed {}: {} ops in {:.1} s, {}; history {}",
            st.name(),
            self.seed,
            self.ops,
            self.secs,
            if self.failed.is_empty() {
                "holds".to_string()
            } else {
                format!("fails {}", invariants::invariant::join(&self.failed))
            },
            self.file.display()
        )
    }
}

/// Runs `sc` with `st` (a built-in, or a strategy of your own) once per seed, keeping and
/// judging each history.
fn run_cell<St: Strategy + Clone>(
    rt: &tokio::runtime::Runtime,
    sc: &Scenario,
    st: St,
    seeds: std::ops::Range<u64>,
    keep: &Path,
    opts: RunOptions,
    mut each: impl FnMut(&Ran),
) -> Result<Vec<Ran>, String> {
    let mut out = Vec::new();
    for seed in seeds {
        let began = std::time::Instant::now();
        let o = rt
            .block_on(run_with(sc, st.clone(), seed, opts))
            .map_err(|e| format!("{} / {} / seed {seed}: {e}", sc.name, st.name()))?;
        let file = save(keep, &sc.name, st.name(), seed, &o.history)?;
        save_logs(&file, &o.logs)?;
        let mut report = invariants::check_str(&String::from_utf8_lossy(&o.history), &[])
            .map_err(|e| format!("{}: {e}", file.display()))?;
        // Named as `aside check FILE` names it.
        report.file = file.display().to_string();
        let failed = report.failing();
        let r = Ran {
            seed,
            ops: o.ops,
            secs: began.elapsed().as_secs_f64(),
            failed,
            file,
            report,
        };
        each(&r);
        out.push(r);
    }
    Ok(out)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    docker_ready()?;
    if cfg!(debug_assertions) {
        // The app nodes are this very executable: a debug build's L1 hits alone take longer
        // than the scenarios' latency bounds on a small machine.
        eprintln!("aside chaos: this is a debug build of aside, and its app nodes run it: hit-latency verdicts measure unoptimised code (cargo run --release -p aside-cli -- chaos ... for latency figures)");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// `holds on 3 of 3 runs` or `fails on 2 of 3 runs: convergence (2), staleness (1)`.
fn summary(runs: &[Ran]) -> String {
    let failing: Vec<&Ran> = runs.iter().filter(|r| !r.failed.is_empty()).collect();
    if failing.is_empty() {
        return format!("holds on {} of {} runs", runs.len(), runs.len());
    }
    let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &failing {
        for f in &r.failed {
            *by.entry(f.name()).or_default() += 1;
        }
    }
    let invs: Vec<String> = by.iter().map(|(k, v)| format!("{k} ({v})")).collect();
    format!(
        "fails on {} of {} runs: {}",
        failing.len(),
        runs.len(),
        invs.join(", ")
    )
}

/// `aside chaos app`: one app node in its container (see `containers::app`).
fn app(task: &str) -> ExitCode {
    let fail = |e: String| {
        eprintln!("aside chaos app: {e}");
        ExitCode::from(2)
    };
    let task: containers::app::AppTask = match serde_json::from_str(task) {
        Ok(t) => t,
        Err(e) => return fail(format!("--task is not an app task: {e}")),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let dir = std::path::Path::new(containers::app::RUN_DIR);
    match rt.block_on(containers::app::serve(&task, dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

fn list() -> ExitCode {
    let w = scenario::NAME_WIDTH;
    for sc in scenario::catalog() {
        match unsupported(&sc) {
            None => println!("{:<w$} runs", sc.name),
            Some(why) => println!("{:<w$} cannot run: {why}", sc.name),
        }
    }
    ExitCode::SUCCESS
}

/// Docker answers, or the one line that says how to fix it.
pub(crate) fn docker_ready() -> Result<(), String> {
    match std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "Docker does not answer ({}): start the Docker engine, or run as a user in the docker group",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!(
            "cannot run docker ({e}): install Docker and start its engine"
        )),
    }
}

fn save(dir: &Path, sc: &str, st: &str, seed: u64, history: &[u8]) -> Result<PathBuf, String> {
    keep_file(dir, &format!("{sc}-{st}-{seed}.jsonl"), history)
}

/// Each container's log beside the history: `<history>.logs/<node>.log`.
fn save_logs(history: &Path, logs: &[(String, String)]) -> Result<(), String> {
    let dir = history.with_extension("logs");
    for (node, text) in logs {
        keep_file(&dir, &format!("{node}.log"), text.as_bytes())?;
    }
    Ok(())
}

/// Writes `name` in the kept directory `dir` (made if missing); an error names the fix.
fn keep_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let unwritable = |what: &str, p: &Path, e: std::io::Error| {
        format!(
            "cannot {what} {}: {e}: pass a writable --keep DIR",
            p.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| unwritable("create", dir, e))?;
    let file = dir.join(name);
    std::fs::write(&file, bytes).map_err(|e| unwritable("write", &file, e))?;
    Ok(file)
}

pub fn chaos(args: ChaosArgs) -> ExitCode {
    match &args.command {
        Some(ChaosCommand::List) => return list(),
        Some(ChaosCommand::App { task }) => return app(task),
        Some(ChaosCommand::Matrix {
            runs,
            scenarios,
            strategies,
            json,
            keep,
        }) => return matrix::matrix(*runs, scenarios, strategies, *json, keep),
        Some(ChaosCommand::Compare {
            runs,
            scenarios,
            readme,
            keep,
            strategies,
            promises_only,
            save,
            budget_min,
        }) => {
            if *promises_only {
                return compare::compare_promises_only(readme.as_deref());
            }
            let to = match (readme, save) {
                (Some(f), _) => compare::Output::Readme(f),
                (None, Some(f)) => compare::Output::Save(f),
                (None, None) => compare::Output::Stdout,
            };
            let budget = budget_min.map(|m| std::time::Duration::from_secs(m.saturating_mul(60)));
            return compare::compare(*runs, scenarios, strategies, to, keep, budget);
        }
        None => {}
    }
    let fail = |e: String| {
        eprintln!("aside chaos: {e}");
        ExitCode::from(2)
    };
    let found = match (&args.scenario, &args.scenario_file) {
        (Some(name), _) => scenario::find(name),
        (None, Some(file)) => scenario::file::load(file).map_err(|e| e.to_string()),
        (None, None) => {
            return fail(
                "name a scenario with --scenario NAME (`aside chaos list` shows them) or --scenario-file FILE"
                    .into(),
            )
        }
    };
    let sc: Scenario = match found {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let name = sc.name.as_str();
    if let Some(why) = unsupported(&sc) {
        return fail(format!("{name} cannot run against containers yet: {why}"));
    }
    let Some(st) = Builtin::parse(&args.strategy) else {
        return fail(format!(
            "unknown strategy {:?}: use naive, versioned or durable",
            args.strategy
        ));
    };
    if args.runs == 0 {
        return fail("--runs must be at least 1".into());
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let json = args.json;
    let seeds = args.first_seed..args.first_seed.saturating_add(args.runs);
    let opts = RunOptions {
        redis_min_replicas: args
            .min_replicas_to_write
            .map(|to_write| containers::MinReplicas {
                to_write,
                max_lag_s: args.min_replicas_max_lag,
            }),
    };
    let ran = run_cell(&rt, &sc, st, seeds, &args.keep, opts, |r| {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "world": "containers", "scenario": name, "strategy": st.name(), "seed": r.seed,
                    "ops": r.ops, "holds": r.failed.is_empty(), "failed": r.failed,
                    "history": r.file.display().to_string(),
                    "verdicts": r.report.to_json()["invariants"],
                })
            );
            return;
        }
        println!("{}", r.line(name, &st));
        if !r.failed.is_empty() {
            let lines =
                crate::report::read_lines(&r.file, &r.report.witness_lines()).unwrap_or_default();
            print!("{}", r.report.table(&lines));
            println!("  check:   aside check {}", r.file.display());
        }
    });
    let ran = match ran {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if !json {
        let w = scenario::NAME_WIDTH;
        println!("\n{:<w$} {:<10} verdicts", "scenario", "strategy");
        println!("{name:<w$} {:<10} {}", st.name(), summary(&ran));
    }
    ExitCode::from(u8::from(ran.iter().any(|r| !r.failed.is_empty())))
}

/// The runnable scenarios among `only` (all when empty) and the strategies named (all when
/// empty), or what is wrong with a name.
pub(super) fn cells_to_run(
    only: &[String],
    strategies: &[String],
) -> Result<(Vec<Scenario>, Vec<Builtin>), String> {
    let mut scs = Vec::new();
    for sc in scenario::catalog() {
        if !only.is_empty() && !only.contains(&sc.name) {
            continue;
        }
        if unsupported(&sc).is_none() {
            scs.push(sc);
        }
    }
    if let Some(n) = only
        .iter()
        .find(|n| !scs.iter().any(|s| s.name == n.as_str()))
    {
        return Err(match scenario::find(n) {
            Err(e) => e,
            Ok(_) => format!("{n} cannot run against containers yet (`aside chaos list` says why)"),
        });
    }
    let mut builtins = Vec::new();
    for n in strategies {
        match Builtin::parse(n) {
            Some(b) => builtins.push(b),
            None => {
                return Err(format!(
                    "unknown strategy {n:?}: use one of {}",
                    Builtin::ALL.map(|b| b.name()).join(", ")
                ))
            }
        }
    }
    if builtins.is_empty() {
        builtins = Builtin::ALL.to_vec();
    }
    Ok((scs, builtins))
}

/// What `matrix` and `compare` run: the scenarios, the strategies and a runtime.
pub(super) fn prepare(
    runs: u64,
    only: &[String],
    strategies: &[String],
) -> Result<(Vec<Scenario>, Vec<Builtin>, tokio::runtime::Runtime), String> {
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let (scs, builtins) = cells_to_run(only, strategies)?;
    Ok((scs, builtins, runtime()?))
}

#[cfg(test)]
mod tests;
