//! One run, judged: a scenario, a strategy and a seed through the simulator, its history
//! checked by every invariant, and what a person needs to follow it up (the witness lines, where
//! the load went, the commands that replay it). Running many is [`crate::pool`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aside::Strategy;
use chaos::scenario::Scenario;
use invariants::Invariant;

use crate::run::{self, RunOutput};
use crate::seedlog::trace_hash;

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
    replay_commands_with(scenario, strategy, seed, false, None, log)
}

/// [`replay_commands`] for a run with or without BUGGIFY. `scenario` is a catalog name or a
/// scenario file's path (`Scenario::arg`); a file's run replays from the file or its seed log.
pub fn replay_commands_with(
    scenario: &str,
    strategy: &str,
    seed: u64,
    buggify: bool,
    mutant: Option<aside::mutant::Mutant>,
    log: Option<&Path>,
) -> String {
    let run = crate::seedlog::replay_command(scenario, strategy, seed, buggify, mutant);
    let mut s = format!("  replay:  {run}\n");
    // The test form takes catalog scenarios without a mutant.
    if !scenario.ends_with(".toml") && mutant.is_none() {
        let var = if buggify { "ASIDE_BUGGIFY=1 " } else { "" };
        s.push_str(&format!(
            "  or:      {var}ASIDE_SCENARIO={scenario} ASIDE_STRATEGY={strategy} MADSIM_TEST_SEED={seed} cargo sim-test --test replay -- --nocapture\n"
        ));
    }
    if let Some(f) = log {
        s.push_str(&format!(
            "  check:   cargo run -q -p aside-cli -- check {}\n  or:      cargo sim repro {}\n",
            f.display(),
            f.display()
        ));
    }
    s
}

/// The file name of a run's seed log: `SCENARIO-STRATEGY-SEED.jsonl`.
pub fn log_name(scenario: &str, strategy: &str, seed: u64) -> String {
    format!("{scenario}-{strategy}-{seed}.jsonl")
}

/// Writes the seed log of `o` under `out`.
pub fn save(out: &Path, o: &RunResult) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let file = out.join(log_name(&o.scenario, &o.strategy, o.seed));
    std::fs::write(&file, &o.history)?;
    Ok(file)
}
