//! `cargo sim`: scenarios x strategies x seeds, a progress bar, a table of verdicts per
//! (scenario, strategy) with the failing seeds; seed logs of failures and the command that
//! replays each; `repro` to replay one; `bench` for the simulator's speed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use aside::Builtin;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::scenario::{self, Scenario};
use crate::seedlog::{self, trace_hash};
use crate::world::{self, COMMIT};

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
}

#[derive(Subcommand)]
enum Command {
    /// Run a campaign (the default)
    Run(RunArgs),
    /// Replay a seed log: same invariant fails with the same trace hash? (exit 0 yes, 1 no)
    Repro { file: PathBuf },
    /// Simulated ops per wall second and time compression, beside a raw madsim echo
    Bench {
        #[arg(long, default_value_t = 20)]
        seeds: u64,
    },
    /// The scenarios and strategies
    List,
}

/// What one run came to.
pub struct Outcome {
    pub scenario: String,
    pub strategy: String,
    pub seed: u64,
    pub trace_hash: String,
    pub ops: u64,
    pub failed: Vec<String>,
    pub report: invariants::Report,
    pub history: Vec<u8>,
}

/// Runs one seed and checks it.
pub fn run_one(sc: &Scenario, strategy: Builtin, seed: u64) -> Outcome {
    let out = world::run(sc, strategy, seed);
    let report = invariants::check_str(std::str::from_utf8(&out.history).expect("utf-8"), &[])
        .expect("the world writes valid histories");
    let failed = report
        .verdicts
        .iter()
        .filter(|v| v.gating && v.fails())
        .map(|v| v.name.to_string())
        .collect();
    Outcome {
        scenario: sc.name.into(),
        strategy: strategy.name().into(),
        seed,
        trace_hash: trace_hash(&out.history),
        ops: out.ops,
        failed,
        report,
        history: out.history,
    }
}

/// A table row: runs, failures (seed, failing invariants, seed log), failures per invariant.
type Row = (u64, Vec<(u64, Vec<String>, PathBuf)>, BTreeMap<String, u64>);

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

fn replay_command(file: &Path) -> String {
    format!("cargo sim repro {}", file.display())
}

/// Writes the seed log of `o` under `out`.
pub fn save(out: &Path, o: &Outcome) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let file = out.join(format!("{}-{}-{}.jsonl", o.scenario, o.strategy, o.seed));
    std::fs::write(&file, &o.history)?;
    Ok(file)
}

fn campaign(args: RunArgs) -> ExitCode {
    let (scs, sts) = match (scenarios(&args.scenarios), strategies(&args.strategies)) {
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
    let total = (scs.len() * sts.len() * seeds.len()) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs  {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut table: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut any_failed = false;
    for sc in &scs {
        for &st in &sts {
            for &seed in &seeds {
                bar.set_message(format!("{} / {} / seed {seed}", sc.name, st.name()));
                let o = run_one(sc, st, seed);
                let entry = table
                    .entry((sc.name.to_string(), st.name().to_string()))
                    .or_default();
                entry.0 += 1;
                let mut log = None;
                if !o.failed.is_empty() {
                    any_failed = true;
                    match save(&args.out, &o) {
                        Ok(f) => log = Some(f),
                        Err(e) => {
                            bar.finish_and_clear();
                            eprintln!(
                                "cargo sim: cannot write the seed log under {}: {e}",
                                args.out.display()
                            );
                            return ExitCode::from(2);
                        }
                    }
                    for f in &o.failed {
                        *entry.2.entry(f.clone()).or_default() += 1;
                    }
                    entry
                        .1
                        .push((seed, o.failed.clone(), log.clone().unwrap_or_default()));
                }
                if args.json {
                    let verdicts: Vec<serde_json::Value> = o.report.to_json()["invariants"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let line = json!({
                        "scenario": o.scenario, "strategy": o.strategy, "seed": o.seed, "trace_hash": o.trace_hash,
                        "ops": o.ops, "holds": o.failed.is_empty(), "failed": o.failed, "verdicts": verdicts,
                        "log": log.map(|p| p.display().to_string()),
                    });
                    bar.suspend(|| println!("{line}"));
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    if args.json {
        return ExitCode::from(u8::from(any_failed));
    }
    println!(
        "{:<18} {:<10} {:>5} {:>6}  failing invariants (runs)          failing seeds",
        "scenario", "strategy", "runs", "failed"
    );
    for ((sc, st), (runs, fails, by_inv)) in &table {
        let invs: Vec<String> = by_inv.iter().map(|(k, v)| format!("{k} ({v})")).collect();
        let seeds: Vec<String> = fails.iter().take(8).map(|f| f.0.to_string()).collect();
        let more = if fails.len() > 8 {
            format!(" +{}", fails.len() - 8)
        } else {
            String::new()
        };
        println!(
            "{sc:<18} {st:<10} {runs:>5} {:>6}  {:<35} {}{more}",
            fails.len(),
            if invs.is_empty() {
                "-".into()
            } else {
                invs.join(", ")
            },
            seeds.join(" ")
        );
    }
    for ((sc, st), (_, fails, _)) in &table {
        if let Some((seed, inv, file)) = fails.first() {
            println!("\n{sc} / {st}: seed {seed} fails {}", inv.join(", "));
            println!("  replay:  {}", replay_command(file));
            println!("  or:      ASIDE_SCENARIO={sc} ASIDE_STRATEGY={st} MADSIM_TEST_SEED={seed} cargo sim-test --test replay");
            println!(
                "  check:   cargo run -p aside-cli -- check {}",
                file.display()
            );
        }
    }
    ExitCode::from(u8::from(any_failed))
}

/// Replays a seed log. `Ok((true, msg))`: the same invariants fail with the same trace hash;
/// `Ok((false, msg))`: they do not; `Err`: the log cannot be replayed (bad input).
pub fn replay(file: &Path) -> Result<(bool, String), String> {
    let (run, saved) = seedlog::read(file)?;
    if run.commit != COMMIT {
        return Err(format!(
            "{} was recorded at commit {}, this is {COMMIT}: check out {} to replay it",
            file.display(),
            run.commit,
            run.commit
        ));
    }
    let sc = scenario::find(&run.scenario).map_err(|e| format!("{}: {e}", file.display()))?;
    let st = strategies(std::slice::from_ref(&run.strategy))
        .map_err(|e| format!("{}: {e}", file.display()))?[0];
    let before: Vec<String> =
        invariants::check_str(std::str::from_utf8(&saved).unwrap_or_default(), &[])
            .map(|r| {
                r.verdicts
                    .iter()
                    .filter(|v| v.gating && v.fails())
                    .map(|v| v.name.to_string())
                    .collect()
            })
            .unwrap_or_default();
    let o = run_one(&sc, st, run.seed);
    let (want, got) = (trace_hash(&saved), o.trace_hash.clone());
    let what = format!("{} / {} / seed {}", run.scenario, run.strategy, run.seed);
    if want == got && before == o.failed {
        let failing = if o.failed.is_empty() {
            "no invariant".to_string()
        } else {
            o.failed.join(", ")
        };
        Ok((
            true,
            format!("reproduced: {what}: {failing} fail again, trace hash {got}"),
        ))
    } else {
        Ok((false, format!("NOT reproduced: {what}: trace hash {got} (log {want}), failing now [{}] (log [{}])", o.failed.join(", "), before.join(", "))))
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

fn bench(seeds: u64) -> ExitCode {
    let sc = scenario::find("fill-race").expect("default scenario");
    world::MESSAGES.store(0, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let (mut ops, mut sim_ns) = (0u64, 0u64);
    for seed in 1..=seeds {
        let out = world::run(&sc, Builtin::Versioned, seed);
        ops += out.ops;
        sim_ns += out.sim_ns;
    }
    let wall = t.elapsed().as_secs_f64();
    let msgs = world::MESSAGES.load(std::sync::atomic::Ordering::Relaxed);
    let (echo_wall, echo_msgs) = world::echo(msgs / seeds.max(1), seeds);
    println!("cargo sim bench: scenario fill-race, strategy versioned, {seeds} seeds, one process");
    println!("  harness:    {ops} ops, {msgs} messages in {wall:.2} s wall: {:.0} ops/s, {:.0} messages/s", ops as f64 / wall, msgs as f64 / wall);
    println!(
        "  compression: {:.1} simulated s per wall s",
        sim_ns as f64 / 1e9 / wall
    );
    println!(
        "  raw echo:   {echo_msgs} messages in {echo_wall:.2} s wall: {:.0} messages/s",
        echo_msgs as f64 / echo_wall
    );
    println!(
        "  harness / echo message rate: {:.2} (target >= 0.5)",
        (msgs as f64 / wall) / (echo_msgs as f64 / echo_wall)
    );
    ExitCode::SUCCESS
}

pub fn main() -> ExitCode {
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
        Some(Command::Bench { seeds }) => bench(seeds),
        Some(Command::List) => {
            for s in scenario::catalog() {
                println!("{:<18} {}", s.name, s.about);
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
    }
}
