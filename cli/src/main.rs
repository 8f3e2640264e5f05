//! `aside`: the command-line face of the project. `aside check` judges history files.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use invariants::{report, Override};

#[derive(Parser)]
#[command(
    name = "aside",
    version,
    about = "Cache-aside caching and the harness that proves what it guarantees"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check recorded histories against the invariants (exit 0: all hold, 1: one fails, 2: bad input)
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// History files (JSON Lines, see DESIGN.md)
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per file instead of a table
    #[arg(long)]
    json: bool,
    /// Staleness bound Δ in milliseconds (overrides the header's config.staleness_ns_max)
    #[arg(long, value_name = "N")]
    bound_ms: Option<u64>,
    /// Any bound, NAME=VALUE (e.g. hit_ratio_min=0.9, db_qps_max=null); repeatable
    #[arg(long = "bound", value_name = "NAME=VALUE", value_parser = Override::parse)]
    bounds: Vec<Override>,
}

fn check(args: CheckArgs) -> ExitCode {
    let mut overrides = args.bounds;
    if let Some(ms) = args.bound_ms {
        let Some(ns) = ms.checked_mul(1_000_000) else {
            eprintln!(
                "aside check: --bound-ms {ms} is too large (at most {} ms)",
                u64::MAX / 1_000_000
            );
            return ExitCode::from(2);
        };
        overrides.push(Override {
            name: "staleness_ns_max".into(),
            value: ns.into(),
        });
    }
    let mut code = 0u8;
    let mut out = io::stdout().lock();
    for (i, file) in args.files.iter().enumerate() {
        let report = match invariants::check_path(file, &overrides) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("aside check: {e}");
                code = 2;
                continue;
            }
        };
        if report.fails() {
            code = code.max(1);
        }
        let written = if args.json {
            writeln!(out, "{}", report.to_json())
        } else {
            let lines = report::read_lines(file, &report.witness_lines()).unwrap_or_default();
            let sep = if i > 0 { "\n" } else { "" };
            write!(out, "{sep}{}", report.table(&lines))
        };
        // A closed pipe (`| head`) is the reader's choice, not an error of ours.
        if written.is_err() {
            break;
        }
    }
    ExitCode::from(code)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check(args) => check(args),
    }
}
