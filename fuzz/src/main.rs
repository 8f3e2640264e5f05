//! `aside-fuzz`: the fuzz targets for a longer budget than the test command's (the nightly job),
//! or one input replayed.
//!
//!   aside-fuzz [--target NAME]... [--iterations N] [--seed S]   (default: every target)
//!   aside-fuzz --target NAME --input FILE                       (replay one input)

use std::path::PathBuf;
use std::process::ExitCode;

use aside_fuzz::{crash_report, fuzz, targets, Plan, REGRESSIONS};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "aside-fuzz",
    about = "Mutation fuzzing of every parser of outside input"
)]
struct Args {
    /// Targets to run (repeatable; default: all)
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// Mutated inputs per target
    #[arg(long, default_value_t = 100_000)]
    iterations: u64,
    /// The run's seed (printed; the same seed makes the same inputs)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replay this one input against the one --target
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Where crashing inputs are written
    #[arg(long, value_name = "DIR", default_value = "target/aside/fuzz")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let fail = |e: String| {
        eprintln!("aside-fuzz: {e}");
        ExitCode::from(2)
    };
    let chosen: Vec<&targets::Target> = if a.targets.is_empty() {
        targets::ALL.iter().collect()
    } else {
        match a.targets.iter().map(|n| targets::find(n)).collect() {
            Ok(t) => t,
            Err(e) => return fail(e),
        }
    };
    if let Some(file) = &a.input {
        let [t] = chosen.as_slice() else {
            return fail("--input replays against one --target: name it".into());
        };
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
        };
        (t.run)(&bytes);
        println!("{}: {} holds every contract", t.name, file.display());
        return ExitCode::SUCCESS;
    }
    let plan = Plan {
        seed: a.seed,
        iterations: a.iterations,
        crashes: a.out.clone(),
        regressions: REGRESSIONS.into(),
    };
    // Each crash prints its own report; the default hook would print every caught panic too.
    std::panic::set_hook(Box::new(|_| {}));
    let mut crashed = false;
    for t in chosen {
        match fuzz(t.name, &(t.corpus)(), t.run, &plan) {
            Ok(o) => match o.crash {
                None => println!(
                    "{}: {} inputs (seed {}), no crash",
                    t.name, o.inputs, a.seed
                ),
                Some((file, what)) => {
                    crashed = true;
                    println!("CRASH {}", crash_report(t.name, &file, &what));
                }
            },
            Err(e) => return fail(format!("{}: cannot write a crash: {e}", t.name)),
        }
    }
    ExitCode::from(u8::from(crashed))
}
