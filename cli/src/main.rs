//! `aside`: the command-line face of the project. `aside check` judges history files.

mod chaos_cmd;
mod report_cmd;
mod servers;

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
    /// One history as a self-contained HTML page: verdicts, a timeline of every client's ops
    /// with faults shaded and witnesses ringed, hit ratio and database load, staleness
    Report(report_cmd::ReportArgs),
    /// Where does a key live? Reads keys on stdin, prints `key<TAB>node` (libketama-compatible)
    Ring(RingArgs),
    /// Run a catalog scenario against real servers in containers (needs Docker and the offline
    /// image); `aside chaos list` shows what this world runs
    Chaos(Box<chaos_cmd::ChaosArgs>),
    /// Start the servers the quickstart needs from the offline image and print the aside.toml
    /// that points at them; Ctrl-C stops and removes them
    Servers(servers::ServersArgs),
}

#[derive(clap::Args)]
struct RingArgs {
    /// The memcached pool as host:port,host:port,... in the order every client lists it
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// Hash each line's bytes as given, instead of the memcached key aside would send for it
    #[arg(long)]
    raw: bool,
}

fn ring(args: RingArgs) -> ExitCode {
    for n in &args.nodes {
        if !n
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            eprintln!("aside ring: node {n:?} is not host:port");
            return ExitCode::from(2);
        }
    }
    let ring = match aside::Ring::new(&args.nodes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("aside ring: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = io::stdout().lock();
    for line in io::stdin().lines() {
        let Ok(line) = line else {
            eprintln!("aside ring: stdin is not UTF-8 text: give one key per line");
            return ExitCode::from(2);
        };
        let key = line.strip_suffix('\r').unwrap_or(&line);
        let routed = if args.raw {
            key.to_string()
        } else {
            aside::Key::parse(key)
                .map(|k| k.memcached())
                .unwrap_or_else(|_| aside::key::memcached_safe(key))
        };
        if writeln!(out, "{key}\t{}", ring.node(routed.as_bytes())).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args)]
struct CheckArgs {
    /// History files (JSON Lines, docs/history-format.md)
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
        let span = tracing::info_span!(
            "aside.check",
            file = %file.display(),
            ops = tracing::field::Empty,
            fails = tracing::field::Empty
        );
        let _entered = span.enter();
        let report = match invariants::check_path(file, &overrides) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("aside check: {e}");
                code = 2;
                continue;
            }
        };
        span.record("ops", report.ops);
        span.record("fails", report.fails());
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

/// Logs to stderr when `ASIDE_LOG` or `RUST_LOG` is set (e.g. `ASIDE_LOG=debug`): each span's
/// close with its duration.
fn init_tracing() {
    let Some((var, filter)) = ["ASIDE_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().map(|f| (v, f)))
    else {
        return;
    };
    match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => tracing_subscriber::fmt()
            .with_env_filter(f)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_writer(io::stderr)
            .init(),
        Err(e) => {
            eprintln!("aside: {var}={filter:?} is not a log filter ({e}): try {var}=debug");
            std::process::exit(2);
        }
    }
}

fn main() -> ExitCode {
    init_tracing();
    match Cli::parse().command {
        Command::Check(args) => check(args),
        Command::Report(args) => report_cmd::report(args),
        Command::Ring(args) => ring(args),
        Command::Chaos(args) => chaos_cmd::chaos(*args),
        Command::Servers(args) => servers::servers(args),
    }
}
