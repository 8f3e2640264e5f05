//! The nightly's results as data, and their triage. Each shard of `cargo sim nightly --shard I/N`
//! writes a [`Shard`]; `cargo sim triage DIR` merges every shard of a night into one [`Night`]
//! (`results.json`), judges each cell's promise over all its seeds, groups the failures by
//! signature, and compares the night with the last one: what is new (a cell whose verdict
//! changed, a signature never seen, a last night's witness that no longer fails) is what makes
//! the night red, with the broken promises. Plain code, tested in the std build; the command
//! that runs seeds (shrinking, replaying) is `cmd::triage`.

use std::collections::BTreeSet;

use aside::Builtin;
use invariants::Invariant;
use serde::{Deserialize, Serialize};

use crate::expect::{self, Cell, Tally};
use chaos::scenario::Expect;

/// What one shard ran: every cell's runs over its share of the night's seeds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// `I/N`, 1-based.
    pub shard: String,
    pub first_seed: u64,
    /// Seeds per cell over the whole night (every shard's share together).
    pub seeds: u64,
    pub cells: Vec<CellRuns>,
    /// Seeds run twice, with both trace hashes.
    pub determinism: Vec<Twice>,
    pub harness_errors: Vec<String>,
    /// Runs not started because the shard's time budget ran out.
    pub skipped_for_budget: u64,
}

/// One (scenario, strategy) cell's runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellRuns {
    pub scenario: String,
    pub strategy: String,
    pub buggify: bool,
    pub runs: u64,
    /// In seed order.
    pub failures: Vec<Failure>,
}

/// A failing run: its seed, the invariants it failed, its seed log's file name (in the night's
/// folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub seed: u64,
    pub failed: Vec<String>,
    pub log: String,
}

/// One seed run twice in two processes: the same trace hash, or a determinism bug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Twice {
    pub scenario: String,
    pub strategy: String,
    pub buggify: bool,
    pub seed: u64,
    pub first: String,
    pub second: String,
}

/// A night: every shard merged, judged and grouped (`results.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Night {
    pub first_seed: u64,
    pub seeds: u64,
    pub shards: Vec<String>,
    pub cells: Vec<CellRuns>,
    pub groups: Vec<Group>,
    /// Every signature seen since the first night compared, with its latest witness: what
    /// "new" is measured against, so that a rare failure seen before is not news each time it
    /// comes back. A signature whose witness no longer fails leaves it.
    #[serde(default)]
    pub known: Vec<Group>,
    pub determinism_checked: u64,
    pub nondeterministic: Vec<Twice>,
    pub harness_errors: Vec<String>,
    pub broken_promises: Vec<String>,
    /// Cells promised to find something, run on fewer seeds than the promise is stated over
    /// ([`expect::SEEDS`]): a small night cannot say the harness no longer finds it.
    #[serde(default)]
    pub finds_unjudged: Vec<String>,
    pub skipped_for_budget: u64,
}

/// The failures of one signature: one cell failing one invariant. A run failing two invariants
/// is in two groups: a signature per combination would call every new combination of known
/// failures "new".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub scenario: String,
    pub strategy: String,
    pub invariant: String,
    pub buggify: bool,
    /// The cell's promise names this invariant as a finding.
    pub promised: bool,
    /// Every failing seed, in order; the first is the group's witness.
    pub seeds: Vec<u64>,
    /// The witness's seed log.
    pub log: String,
    /// The witness shrunk (`cargo sim shrink`), when the triage had the budget.
    pub shrunk: Option<Shrunk>,
}

impl Group {
    pub fn signature(&self) -> String {
        format!("{} / {} / {}", self.scenario, self.strategy, self.invariant)
    }

    /// The command that replays the group's witness.
    pub fn replay(&self) -> String {
        crate::seedlog::replay_command(
            &self.scenario,
            &self.strategy,
            self.seeds[0],
            self.buggify,
            None,
        )
    }
}

/// A witness after `cargo sim shrink`: its shape (the faults left, by kind and target, and the
/// workload's size) and the shrunk seed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shrunk {
    pub log: String,
    pub faults: Vec<String>,
    pub apps: u64,
    pub clients_per_app: u64,
    pub keys: u64,
    pub duration_ms: u64,
}

impl Shrunk {
    /// `2 faults (partition@redis-master, kill@memcached-1), 1 app x 2 clients, 4 keys, 900 ms`.
    pub fn shape(&self) -> String {
        let faults = if self.faults.is_empty() {
            "no fault".to_string()
        } else {
            format!("{} fault(s): {}", self.faults.len(), self.faults.join(", "))
        };
        format!(
            "{faults}; {} app(s) x {} client(s), {} keys, {} ms",
            self.apps, self.clients_per_app, self.keys, self.duration_ms
        )
    }
}

/// Parses `I/N` (1 <= I <= N).
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("--shard {s:?}: write I/N with 1 <= I <= N, e.g. --shard 2/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Whether job number `job` (0-based, in the night's order) is shard `i` of `n`'s.
pub fn in_shard(job: usize, (i, n): (u64, u64)) -> bool {
    job as u64 % n == i - 1
}

/// Every shard of one night merged into its cells, judged against this commit's promises and
/// grouped. Shards of different nights, a shard twice or a missing shard are errors in the
/// night (harness errors), not a refusal: the night is still reported.
pub fn merge(shards: &[Shard]) -> Result<Night, String> {
    let Some(first) = shards.first() else {
        return Err(
            "no shard results (shard-*.json): run `cargo sim nightly --out DIR` first".into(),
        );
    };
    let mut night = Night {
        first_seed: first.first_seed,
        seeds: first.seeds,
        ..Night::default()
    };
    let mut seen = BTreeSet::new();
    let mut n_of = None;
    for s in shards {
        if (s.first_seed, s.seeds) != (first.first_seed, first.seeds) {
            return Err(format!(
                "shard {} ran seeds {}+{} and shard {} seeds {}+{}: merge one night's shards only",
                first.shard, first.first_seed, first.seeds, s.shard, s.first_seed, s.seeds
            ));
        }
        let (i, n) = parse_shard(&s.shard)?;
        if !seen.insert(i) {
            night
                .harness_errors
                .push(format!("shard {} appears twice", s.shard));
        }
        if *n_of.get_or_insert(n) != n {
            return Err(format!(
                "shards of {} and of {n} in one night: merge one night's shards only",
                n_of.unwrap_or(n)
            ));
        }
        night.shards.push(s.shard.clone());
        night
            .harness_errors
            .extend(s.harness_errors.iter().cloned());
        night.skipped_for_budget += s.skipped_for_budget;
        night.determinism_checked += s.determinism.len() as u64;
        night.nondeterministic.extend(
            s.determinism
                .iter()
                .filter(|t| t.first != t.second)
                .cloned(),
        );
        for c in &s.cells {
            match night
                .cells
                .iter_mut()
                .find(|m| m.scenario == c.scenario && m.strategy == c.strategy)
            {
                Some(m) => {
                    m.runs += c.runs;
                    m.failures.extend(c.failures.iter().cloned());
                }
                None => night.cells.push(c.clone()),
            }
        }
    }
    if let Some(n) = n_of {
        for i in (1..=n).filter(|i| !seen.contains(i)) {
            night.harness_errors.push(format!(
                "shard {i}/{n} left no results: its seeds were not run (see that shard's log)"
            ));
        }
    }
    night.shards.sort();
    for c in &mut night.cells {
        c.failures.sort_by_key(|f| f.seed);
    }
    (night.broken_promises, night.finds_unjudged) = judge(&night.cells);
    night.groups = groups(&night.cells);
    Ok(night)
}

/// Each cell's runs against its promise; the cells no promise covers any more are broken too.
/// A finding is promised over [`expect::SEEDS`]: a cell run on fewer seeds is judged on its
/// harness errors only, and named in the second list.
fn judge(cells: &[CellRuns]) -> (Vec<String>, Vec<String>) {
    let all = expect::cells();
    let finds_seeds = expect::SEEDS.count() as u64;
    let mut broken = Vec::new();
    let mut unjudged = Vec::new();
    for c in cells {
        let Some(cell) = promise_of(&all, c) else {
            broken.push(format!(
                "{} / {}: no promise in this commit's scenario files",
                c.scenario, c.strategy
            ));
            continue;
        };
        let mut t = Tally::default();
        let mut bad = None;
        for f in &c.failures {
            match f.failed.iter().map(|n| Invariant::parse(n)).collect() {
                Ok(invs) => t.add(f.seed, invs),
                Err(e) => bad = Some(e),
            }
        }
        t.runs = c.runs;
        let small = matches!(cell.expect, Expect::Finds(_)) && c.runs < finds_seeds;
        if let Some(e) = bad {
            broken.push(format!("{} / {}: {e}", c.scenario, c.strategy));
        } else if let Err(e) = t.judge_harness(cell) {
            broken.push(e);
        } else if small {
            if t.judge(cell).is_err() {
                unjudged.push(format!(
                    "{} / {}: {} ({}; a finding is promised over {finds_seeds} seeds)",
                    c.scenario,
                    c.strategy,
                    t.summary(),
                    expect::promise(cell).0
                ));
            }
        } else if let Err(e) = t.judge(cell) {
            broken.push(e);
        }
    }
    (broken, unjudged)
}

/// The promise of `c`'s cell among `all`.
fn promise_of<'a>(all: &'a [Cell], c: &CellRuns) -> Option<&'a Cell> {
    let st = Builtin::parse(&c.strategy)?;
    all.iter()
        .find(|p| p.scenario == c.scenario && p.strategy == st)
}

/// One group per (cell, failing invariant), witnessed by its first seed.
fn groups(cells: &[CellRuns]) -> Vec<Group> {
    let all = expect::cells();
    let mut out: Vec<Group> = Vec::new();
    for c in cells {
        let finds = promise_of(&all, c)
            .map(|cell| match &cell.expect {
                Expect::Finds(names) => names.iter().map(|i| i.name().to_string()).collect(),
                Expect::Holds => Vec::new(),
            })
            .unwrap_or_default();
        for f in &c.failures {
            for inv in &f.failed {
                match out.iter_mut().find(|g| {
                    g.scenario == c.scenario && g.strategy == c.strategy && &g.invariant == inv
                }) {
                    Some(g) => g.seeds.push(f.seed),
                    None => out.push(Group {
                        scenario: c.scenario.clone(),
                        strategy: c.strategy.clone(),
                        invariant: inv.clone(),
                        buggify: c.buggify,
                        promised: finds.contains(inv),
                        seeds: vec![f.seed],
                        log: f.log.clone(),
                        shrunk: None,
                    }),
                }
            }
        }
    }
    out
}

/// A cell's verdict over the night: `holds`, or `fails` and the invariants it failed.
pub fn verdict(c: &CellRuns) -> String {
    let failed: BTreeSet<&str> = c
        .failures
        .iter()
        .flat_map(|f| f.failed.iter().map(String::as_str))
        .collect();
    if failed.is_empty() {
        "holds".into()
    } else {
        format!(
            "fails {}",
            failed.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Something tonight that last night did not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// A cell last night did not run (a new scenario or strategy): reported, not a failure.
    NewCell(String),
    /// A cell that held last night and fails tonight, or the other way round (which invariants
    /// fail is the signatures' news: a cell's secondary failures come and go with the seeds).
    Verdict {
        cell: String,
        was: String,
        now: String,
    },
    /// A signature last night did not have.
    Signature(String),
    /// Last night's witness of a signature tonight did not show, run again at this commit, no
    /// longer fails it: a fix landed, or the failure depended on more than the seed.
    NoLongerReplays { signature: String, replay: String },
    /// A containers cell whose verdict (holds or fails) is not the one `docs/results/compare.json`
    /// records; the recorded disagreements with the simulator are data, not news.
    Containers {
        cell: String,
        recorded: String,
        tonight: String,
    },
}

impl News {
    /// Whether this makes the night red.
    pub fn fails_the_night(&self) -> bool {
        !matches!(self, News::NewCell(_))
    }

    pub fn line(&self) -> String {
        match self {
            News::NewCell(c) => format!("new cell: {c} (last night did not run it)"),
            News::Verdict { cell, was, now } => {
                format!("{cell}: last night {was}, tonight {now}")
            }
            News::Signature(s) => format!("new failure signature: {s}"),
            News::NoLongerReplays { signature, replay } => format!(
                "{signature}: last night's witness no longer fails it at this commit (`{replay}`): a fix, or a failure that depended on more than its seed"
            ),
            News::Containers {
                cell,
                recorded,
                tonight,
            } => format!(
                "containers {cell}: recorded {recorded:?}, tonight {tonight:?} (a new verdict is recorded in docs/results/compare.json by `aside chaos compare --scenario NAME --readme docs/results.md`)"
            ),
        }
    }
}

/// What tonight shows that `last` did not, and the signatures known after tonight.
pub struct Triaged {
    pub news: Vec<News>,
    pub errors: Vec<String>,
    pub known: Vec<Group>,
}

/// What tonight shows that `last` did not. A signature is new when no night since the first
/// compared has seen it (`last.known`). `still_fails` runs a known signature's witness that
/// tonight did not show again at this commit: `Ok(true)` when it still fails.
pub fn news(
    last: &Night,
    tonight: &Night,
    mut still_fails: impl FnMut(&Group) -> Result<bool, String>,
) -> Triaged {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for c in &tonight.cells {
        let name = format!("{} / {}", c.scenario, c.strategy);
        let holds = |c: &CellRuns| c.failures.is_empty();
        match last
            .cells
            .iter()
            .find(|l| l.scenario == c.scenario && l.strategy == c.strategy)
        {
            None => out.push(News::NewCell(name)),
            Some(l) if holds(l) != holds(c) => out.push(News::Verdict {
                cell: name,
                was: verdict(l),
                now: verdict(c),
            }),
            Some(_) => {}
        }
    }
    let mut known: Vec<Group> = last.known.clone();
    for g in &last.groups {
        if !known.iter().any(|k| k.signature() == g.signature()) {
            known.push(g.clone());
        }
    }
    let has: BTreeSet<String> = tonight.groups.iter().map(Group::signature).collect();
    let mut kept = Vec::new();
    for g in known.iter().filter(|g| !has.contains(&g.signature())) {
        match still_fails(g) {
            Ok(true) => kept.push(g.clone()),
            Ok(false) => out.push(News::NoLongerReplays {
                signature: g.signature(),
                replay: g.replay(),
            }),
            Err(e) => {
                kept.push(g.clone());
                errors.push(format!("{}: cannot replay ({e})", g.signature()));
            }
        }
    }
    for g in &tonight.groups {
        if !known.iter().any(|k| k.signature() == g.signature()) {
            out.push(News::Signature(g.signature()));
        }
    }
    kept.extend(tonight.groups.iter().cloned());
    Triaged {
        news: out,
        errors,
        known: kept,
    }
}

/// Whether the night is red: a broken promise, a determinism bug, a harness error, or news
/// that fails it.
pub fn red(night: &Night, news: &[News]) -> bool {
    !night.broken_promises.is_empty()
        || !night.nondeterministic.is_empty()
        || !night.harness_errors.is_empty()
        || news.iter().any(News::fails_the_night)
}

/// `summary.md`: the verdict first, then what is new, the broken promises, the failures by
/// signature with their replay commands, determinism, and `extra` (the containers' table).
pub fn summary(night: &Night, news: Option<&[News]>, extra: &str) -> String {
    let runs: u64 = night.cells.iter().map(|c| c.runs).sum();
    let last = night.first_seed + night.seeds.max(1) - 1;
    let mut md = format!(
        "# Nightly chaos: seeds {}..={last}\n\n{} cells, {runs} runs, shards {}.",
        night.first_seed,
        night.cells.len(),
        night.shards.join(", ")
    );
    if night.skipped_for_budget > 0 {
        md.push_str(&format!(
            " {} runs not started: the time budget ran out.",
            night.skipped_for_budget
        ));
    }
    let news = news.unwrap_or_default();
    let is_red = red(night, news);
    md.push_str(&format!(
        "\n\n**{}**\n",
        if is_red {
            "Red: something below is new or broken."
        } else {
            "Green: every promise held and nothing is new."
        }
    ));
    md.push_str("\n## New since the last night\n\n");
    if news.is_empty() {
        md.push_str("Nothing.\n");
    }
    for n in news {
        md.push_str(&format!("- {}\n", n.line()));
    }
    let list = |md: &mut String, title: &str, items: &[String]| {
        md.push_str(&format!("\n## {title}\n\n"));
        if items.is_empty() {
            md.push_str("None.\n");
        }
        for i in items {
            md.push_str(&format!("- {i}\n"));
        }
    };
    list(&mut md, "Broken promises", &night.broken_promises);
    if !night.finds_unjudged.is_empty() {
        md.push_str(&format!(
            "\nNot judged: {} cells promised to find something ran on too few seeds to miss it:\n\n",
            night.finds_unjudged.len()
        ));
        for u in &night.finds_unjudged {
            md.push_str(&format!("- {u}\n"));
        }
    }
    let (promised, other): (Vec<&Group>, Vec<&Group>) =
        night.groups.iter().partition(|g| g.promised);
    md.push_str("\n## Failures by signature\n\n");
    md.push_str(
        "Failures no promise names (a holding cell failing, or a finding's side effect):\n\n",
    );
    signature_table(&mut md, &other);
    md.push_str("\nThe findings the promises name, found again:\n\n");
    signature_table(&mut md, &promised);
    md.push_str(&format!(
        "\n## Determinism\n\n{} seeds run twice in two processes: ",
        night.determinism_checked
    ));
    if night.nondeterministic.is_empty() {
        md.push_str("every trace hash matched.\n");
    } else {
        md.push_str(&format!("{} differed:\n", night.nondeterministic.len()));
        for t in &night.nondeterministic {
            md.push_str(&format!(
                "- {} / {} / seed {}: {} then {}\n",
                t.scenario, t.strategy, t.seed, t.first, t.second
            ));
        }
    }
    list(&mut md, "Harness errors", &night.harness_errors);
    if !extra.is_empty() {
        md.push('\n');
        md.push_str(extra);
    }
    md
}

fn signature_table(md: &mut String, groups: &[&Group]) {
    if groups.is_empty() {
        md.push_str("None.\n");
        return;
    }
    md.push_str("| signature | runs | witness | shrunk to | replay |\n|---|---|---|---|---|\n");
    for g in groups {
        let shrunk = g
            .shrunk
            .as_ref()
            .map(|s| format!("{} (`cargo sim repro {}`)", s.shape(), s.log))
            .unwrap_or_else(|| "not shrunk".into());
        md.push_str(&format!(
            "| {} | {} | seed {} (`{}`) | {shrunk} | `{}` |\n",
            g.signature(),
            g.seeds.len(),
            g.seeds[0],
            g.log,
            g.replay()
        ));
    }
}

mod containers;
pub use containers::containers_news;

#[cfg(test)]
mod tests;
