//! `cargo sim`: the command line. One module per subcommand; what they share (choosing
//! scenarios and strategies, judging promises, logging) is here.

mod explore;
mod nightly;
mod repro;
mod run;
mod table;
mod triage;

use std::path::PathBuf;
use std::process::ExitCode;

use aside::Builtin;
use chaos::scenario::{self, Scenario};
use clap::{Parser, Subcommand};

use crate::expect::{Cell, Tally};
use crate::runner::replay_commands_with;

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
    /// A scenario file of your own (repeatable; docs/scenarios.md): runs beside any --scenario
    #[arg(long = "scenario-file", value_name = "FILE")]
    scenario_files: Vec<PathBuf>,
    /// Print every failing run's report, not only those that break a promise (each report is
    /// also written beside its seed log)
    #[arg(long)]
    verbose: bool,
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
    /// Test machinery: drop one safeguard of the library (`aside::mutant`: no-tombstone,
    /// no-fence, ...) to see the campaign catch it (recorded in each history, so failures
    /// replay)
    #[arg(long, value_name = "NAME")]
    mutant: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a campaign (the default)
    Run(RunArgs),
    /// Check scenario files without running them: what each would run, or the one line that
    /// says what is wrong (exit 2)
    CheckScenario {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Replay a seed log: same invariant fails with the same trace hash? (exit 0 yes, 1 no)
    Repro { file: PathBuf },
    /// Seeds to first failure of every finding the table promises, without and with BUGGIFY
    Stf {
        /// Rewrite the generated tables this file holds, between their markers (repeatable)
        #[arg(long, value_name = "FILE")]
        readme: Vec<PathBuf>,
        /// Exit 1 when a generated table in this file differs from this run's (repeatable)
        #[arg(long, value_name = "FILE")]
        check: Vec<PathBuf>,
    },
    /// Shrink a failing seed log (fewer and shorter faults, fewer apps, clients, keys, a shorter
    /// workload) while the same invariant fails; writes FILE.min.jsonl beside it, which `repro`
    /// replays
    Shrink {
        file: PathBuf,
        /// The invariant that must keep failing (default: the log's first failing one)
        #[arg(long, value_name = "NAME")]
        invariant: Option<String>,
        /// The account on stderr, and one JSON object on stdout: the shrunk log and its shape
        #[arg(long)]
        json: bool,
    },
    /// Simulated ops per wall second and time compression, beside a raw madsim echo
    Bench {
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// Runs per exploration mode (random, swarm, guided) whose coverage goals are compared
        #[arg(long, default_value_t = 1000)]
        explore_runs: usize,
        /// Only the message rate beside the echo: what `ci/profile.sh` counts instructions of
        #[arg(long)]
        rate_only: bool,
    },
    /// Runs of the `swarm` scenario chosen for coverage: by default each pick a new swarm family
    /// with probability 1/2, otherwise one more run of a family whose goals are rarest so far. Prints the
    /// coverage table and each failing run's replay command (exit 1 when a run breaks the
    /// strategy's promise)
    Explore {
        /// guided, swarm (each seed its own family) or random (the `random` scenario's plans)
        #[arg(long, default_value = "guided")]
        mode: String,
        #[arg(long, default_value = "durable")]
        strategy: String,
        #[arg(long, default_value_t = 200)]
        runs: usize,
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
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
        /// Rewrite the generated tables this file holds, between their markers (repeatable)
        #[arg(long, value_name = "FILE")]
        readme: Vec<PathBuf>,
        /// Exit 1 when a generated table in this file differs from this run's (repeatable)
        #[arg(long, value_name = "FILE")]
        check: Vec<PathBuf>,
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
        /// Rewrite the generated matrix in this file, between its markers (repeatable)
        #[arg(long, value_name = "FILE")]
        readme: Vec<PathBuf>,
        /// Exit 1 when the generated matrix in this file differs from this run's (repeatable)
        #[arg(long, value_name = "FILE")]
        check: Vec<PathBuf>,
    },
    /// Every promise's cell over --seeds seeds, and the coverage table of their runs: each
    /// coverage goal (aside::goal), how many runs reached it and the first that did. Exit 1 when
    /// some goal is reached by no run of the whole catalog (not with --scenario or --strategy)
    Coverage {
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Only these scenarios (repeatable)
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
        /// Only these strategies (repeatable)
        #[arg(long = "strategy", value_name = "NAME")]
        strategies: Vec<String>,
        /// Rewrite the generated coverage table in this file, between its markers (repeatable)
        #[arg(long, value_name = "FILE")]
        readme: Vec<PathBuf>,
        /// Exit 1 when the generated coverage table in this file differs from this run's
        /// (repeatable)
        #[arg(long, value_name = "FILE")]
        check: Vec<PathBuf>,
    },
    /// The scheduled job: every cell over SEEDS seeds from FIRST, one process per seed (madsim's
    /// statics leak between seeds in one process), or one shard of them; every failure with its
    /// replay command; writes OUT/shard-I-of-N.json for `triage` (exit 1 on a harness error)
    Nightly {
        #[arg(long, default_value_t = 200)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// The night's folder: seed logs of failing runs and this shard's results
        #[arg(long, default_value = "target/aside/nightly")]
        out: PathBuf,
        /// Run shard I of N (1-based): every N-th run, so N machines split one night
        #[arg(long, value_name = "I/N", default_value = "1/1", value_parser = crate::triage::parse_shard)]
        shard: (u64, u64),
        /// Start no run after this many minutes (the runs not started are counted)
        #[arg(long, value_name = "MINUTES")]
        budget_min: Option<u64>,
        /// Run every this-many-th run twice and compare trace hashes (0: none)
        #[arg(long, value_name = "N", default_value_t = 40)]
        determinism_every: u64,
        /// Only these scenarios' cells (repeatable; default: every promise)
        #[arg(long = "scenario", value_name = "NAME")]
        scenarios: Vec<String>,
    },
    /// Merge and judge one night's shards (DIR/shard-*.json): each promise over all its seeds,
    /// failures grouped by signature with one shrunk witness each, what is new since --last;
    /// writes DIR/results.json and DIR/summary.md. Exit 1 when the night is red
    Triage {
        dir: PathBuf,
        /// Last night's results.json (a missing file: tonight is the baseline)
        #[arg(long, value_name = "FILE")]
        last: Option<PathBuf>,
        /// Shrink at most this many signatures' witnesses, new ones first
        #[arg(long, value_name = "N", default_value_t = 8)]
        shrink_max: usize,
    },
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

/// `cargo sim check-scenario FILE...`.
fn check_scenarios(files: &[PathBuf]) -> ExitCode {
    let mut bad = false;
    for f in files {
        match scenario::file::load(f) {
            Ok(sc) => print!("{}", scenario::file::describe(&sc)),
            Err(e) => {
                eprintln!("cargo sim check-scenario: {e}");
                bad = true;
            }
        }
    }
    ExitCode::from(if bad { 2 } else { 0 })
}

/// The catalog's scenarios named, then the files given; the whole catalog when neither is.
fn scenarios(names: &[String], files: &[PathBuf]) -> Result<Vec<Scenario>, String> {
    if names.is_empty() && files.is_empty() {
        return Ok(scenario::catalog());
    }
    let mut out: Vec<Scenario> = names
        .iter()
        .map(|n| scenario::find(n))
        .collect::<Result<_, _>>()?;
    for f in files {
        out.push(scenario::file::load(f).map_err(|e| e.to_string())?);
    }
    Ok(out)
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
                    replay_commands_with(
                        &c.scenario_arg(),
                        c.strategy.name(),
                        *seed,
                        c.buggify,
                        None,
                        None
                    )
                );
            }
        }
    }
    ok
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
        None => run::campaign(cli.run),
        Some(Command::Run(a)) => run::campaign(a),
        Some(Command::Repro { file }) => repro::repro(&file),
        Some(Command::CheckScenario { files }) => check_scenarios(&files),
        Some(Command::Shrink {
            file,
            invariant,
            json,
        }) => repro::shrink_cmd(&file, invariant, json),
        Some(Command::Stf { readme, check }) => table::stf_cmd(&readme, &check),
        Some(Command::Bench {
            seeds,
            explore_runs,
            rate_only,
        }) => crate::bench::bench(seeds, explore_runs, rate_only),
        Some(Command::Explore {
            mode,
            strategy,
            runs,
            first_seed,
        }) => explore::explore_cmd(&mode, &strategy, runs, first_seed),
        Some(Command::List { cells }) => table::list(cells),
        Some(Command::Table { readme, check }) => table::table_cmd(&readme, &check),
        Some(Command::Matrix {
            seeds,
            first_seed,
            scenarios,
            strategies,
            json,
            readme,
            check,
        }) => table::matrix_cmd(
            first_seed..=first_seed.saturating_add(seeds.max(1) - 1),
            &scenarios,
            &strategies,
            json,
            &readme,
            &check,
        ),
        Some(Command::Coverage {
            seeds,
            first_seed,
            scenarios,
            strategies,
            readme,
            check,
        }) => table::coverage_cmd(
            first_seed..=first_seed.saturating_add(seeds.max(1) - 1),
            &scenarios,
            &strategies,
            &readme,
            &check,
        ),
        Some(Command::Nightly {
            seeds,
            first_seed,
            out,
            shard,
            budget_min,
            determinism_every,
            scenarios,
        }) => nightly::nightly(&nightly::Night {
            scenarios: &scenarios,
            seeds,
            first: first_seed,
            out: &out,
            shard,
            budget: budget_min.map(|m| std::time::Duration::from_secs(m * 60)),
            determinism_every,
        }),
        Some(Command::Triage {
            dir,
            last,
            shrink_max,
        }) => triage::triage(&triage::Args {
            dir,
            last,
            shrink_max,
        }),
    }
}
