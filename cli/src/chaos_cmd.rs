//! `aside chaos`: the catalog's scenarios against real servers in containers, checked by the
//! same invariants as the simulator's runs, every history kept. Needs Docker and the offline
//! image (`bash ci/build-images.sh`); says so in one line when either is missing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aside::Builtin;
use chaos::scenario::{self, Scenario};
use containers::run::{run, unsupported};

#[derive(clap::Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    command: Option<ChaosCommand>,
    /// Scenario to run (see `aside chaos list`)
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
    /// Strategy: naive or versioned
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
}

#[derive(clap::Subcommand)]
enum ChaosCommand {
    /// The scenarios this world runs, and those it cannot run yet with the reason
    List,
}

fn list() -> ExitCode {
    for sc in scenario::catalog() {
        match unsupported(&sc) {
            None => println!("{:<22} runs", sc.name),
            Some(why) => println!("{:<22} cannot run: {why}", sc.name),
        }
    }
    ExitCode::SUCCESS
}

/// Docker answers, or the one line that says how to fix it.
fn docker_ready() -> Result<(), String> {
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
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create {}: {e}: pass a writable --keep DIR",
            dir.display()
        )
    })?;
    let file = dir.join(format!("{sc}-{st}-{seed}.jsonl"));
    std::fs::write(&file, history).map_err(|e| {
        format!(
            "cannot write {}: {e}: pass a writable --keep DIR",
            file.display()
        )
    })?;
    Ok(file)
}

pub fn chaos(args: ChaosArgs) -> ExitCode {
    if let Some(ChaosCommand::List) = args.command {
        return list();
    }
    let fail = |e: String| {
        eprintln!("aside chaos: {e}");
        ExitCode::from(2)
    };
    let Some(name) = args.scenario.as_deref() else {
        return fail("name a scenario with --scenario NAME (`aside chaos list` shows them)".into());
    };
    let sc: Scenario = match scenario::find(name) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(why) = unsupported(&sc) {
        return fail(format!("{name} cannot run against containers yet: {why}"));
    }
    let Some(st) = Builtin::parse(&args.strategy) else {
        return fail(format!(
            "unknown strategy {:?}: use naive or versioned",
            args.strategy
        ));
    };
    if args.runs == 0 {
        return fail("--runs must be at least 1".into());
    }
    if let Err(e) = docker_ready() {
        return fail(e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let mut failed_runs = Vec::new();
    let mut tally: std::collections::BTreeMap<String, u64> = Default::default();
    for seed in args.first_seed..args.first_seed.saturating_add(args.runs) {
        let began = std::time::Instant::now();
        let out = match rt.block_on(run(&sc, st, seed, chaos::COMMIT)) {
            Ok(o) => o,
            Err(e) => return fail(format!("{name} / {} / seed {seed}: {e}", st.name())),
        };
        let file = match save(&args.keep, name, st.name(), seed, &out.history) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        let text = String::from_utf8_lossy(&out.history);
        let report = match invariants::check_str(&text, &[]) {
            Ok(r) => r,
            Err(e) => return fail(format!("{}: {e}", file.display())),
        };
        let failed: Vec<String> = report
            .verdicts
            .iter()
            .filter(|v| v.gating && v.fails())
            .map(|v| v.name.to_string())
            .collect();
        for f in &failed {
            *tally.entry(f.clone()).or_default() += 1;
        }
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "world": "containers", "scenario": name, "strategy": st.name(), "seed": seed,
                    "ops": out.ops, "holds": failed.is_empty(), "failed": failed,
                    "history": file.display().to_string(),
                    "verdicts": report.to_json()["invariants"],
                })
            );
        } else {
            println!(
                "{name} / {} / seed {seed}: {} ops in {:.1} s, {}; history {}",
                st.name(),
                out.ops,
                began.elapsed().as_secs_f64(),
                if failed.is_empty() {
                    "holds".to_string()
                } else {
                    format!("fails {}", failed.join(", "))
                },
                file.display()
            );
            if !failed.is_empty() {
                print!("{}", report.table(&Default::default()));
                println!("  check:   aside check {}", file.display());
            }
        }
        if !failed.is_empty() {
            failed_runs.push(seed);
        }
    }
    if !args.json {
        let invs: Vec<String> = tally.iter().map(|(k, v)| format!("{k} ({v})")).collect();
        println!(
            "\n{:<22} {:<10} {:>5} {:>6}  failing invariants (runs)\n{:<22} {:<10} {:>5} {:>6}  {}",
            "scenario",
            "strategy",
            "runs",
            "failed",
            name,
            st.name(),
            args.runs,
            failed_runs.len(),
            if invs.is_empty() {
                "-".to_string()
            } else {
                invs.join(", ")
            }
        );
    }
    ExitCode::from(u8::from(!failed_runs.is_empty()))
}
