//! A scenario file: TOML that says everything a run needs, so a team brings its own scenario
//! without writing Rust. `docs/scenarios.md` is the user's reference; in short:
//!
//! ```toml
//! name = "failover-under-pause"            # [a-z0-9-], how seed logs and tables name it
//! about = "the master dies while memcached-2 is frozen"
//!
//! [workload]                               # every field optional: the defaults of Scenario::base
//! duration_ms = 4000
//! l1_ttl_ms = 200
//!
//! [bounds]                                 # any bound of invariants::Bounds; "off" unbounds one
//! staleness_ns_max = 2_000_000_000
//!
//! [[fault]]                                # a step: when, how long, and the fault's own fields
//! at_ms = 1000
//! for_ms = 1500
//! kind = "kill"
//! target = "redis-master"
//!
//! [promise.durable]                        # optional: what a strategy promises over seeds 1-20
//! holds = true
//! why = "the invalidator replays W on the new master"
//! reaches = ["switch-replayed"]            # optional: coverage goals every run must reach
//! ```
//!
//! Every error is one line, `FILE:LINE: what is wrong: how to fix it`, and names the field.
//! Unknown fields are refused: a misspelt bound must not silently leave the default in force.

use std::collections::BTreeMap;
use std::fmt;

use aside::Builtin;
use invariants::Invariant;
use serde::Deserialize;
use serde_json::Value;

use super::{Draw, Expect, FieldError, Promise, Scenario, WorkloadSpec};
use crate::fault::Fault;
use crate::plan::{Plan, Step};

/// The catalog, one file per scenario, in the results table's order.
const CATALOG: &[(&str, &str)] = &[
    ("fill-race", include_str!("../../scenarios/fill-race.toml")),
    (
        "replica-lag",
        include_str!("../../scenarios/replica-lag.toml"),
    ),
    (
        "redis-failover",
        include_str!("../../scenarios/redis-failover.toml"),
    ),
    (
        "shard-failover",
        include_str!("../../scenarios/shard-failover.toml"),
    ),
    (
        "memcached-restart",
        include_str!("../../scenarios/memcached-restart.toml"),
    ),
    (
        "stale-while-revalidate",
        include_str!("../../scenarios/stale-while-revalidate.toml"),
    ),
    (
        "partition-app-l1",
        include_str!("../../scenarios/partition-app-l1.toml"),
    ),
    (
        "partition-app-l2",
        include_str!("../../scenarios/partition-app-l2.toml"),
    ),
    (
        "partition-app-db",
        include_str!("../../scenarios/partition-app-db.toml"),
    ),
    ("db-late", include_str!("../../scenarios/db-late.toml")),
    (
        "one-way-partition",
        include_str!("../../scenarios/one-way-partition.toml"),
    ),
    (
        "sentinel-partition",
        include_str!("../../scenarios/sentinel-partition.toml"),
    ),
    (
        "split-brain",
        include_str!("../../scenarios/split-brain.toml"),
    ),
    (
        "memcached-rejoin",
        include_str!("../../scenarios/memcached-rejoin.toml"),
    ),
    (
        "memcached-ring-grow",
        include_str!("../../scenarios/memcached-ring-grow.toml"),
    ),
    (
        "memcached-ring-shrink",
        include_str!("../../scenarios/memcached-ring-shrink.toml"),
    ),
    ("app-pause", include_str!("../../scenarios/app-pause.toml")),
    (
        "latency-spike",
        include_str!("../../scenarios/latency-spike.toml"),
    ),
    (
        "packet-loss",
        include_str!("../../scenarios/packet-loss.toml"),
    ),
    ("duplicate", include_str!("../../scenarios/duplicate.toml")),
    ("half-open", include_str!("../../scenarios/half-open.toml")),
    (
        "pg-lag-spike",
        include_str!("../../scenarios/pg-lag-spike.toml"),
    ),
    (
        "redis-memory-full",
        include_str!("../../scenarios/redis-memory-full.toml"),
    ),
    (
        "redis-memory-full-warmed",
        include_str!("../../scenarios/redis-memory-full-warmed.toml"),
    ),
    (
        "memcached-memory-pressure",
        include_str!("../../scenarios/memcached-memory-pressure.toml"),
    ),
    (
        "cold-start",
        include_str!("../../scenarios/cold-start.toml"),
    ),
    (
        "cold-start-warmed",
        include_str!("../../scenarios/cold-start-warmed.toml"),
    ),
    ("hot-key", include_str!("../../scenarios/hot-key.toml")),
    (
        "expiry-storm",
        include_str!("../../scenarios/expiry-storm.toml"),
    ),
    ("scan-gap", include_str!("../../scenarios/scan-gap.toml")),
    (
        "foreign-writer",
        include_str!("../../scenarios/foreign-writer.toml"),
    ),
    (
        "pg-restart",
        include_str!("../../scenarios/pg-restart.toml"),
    ),
    ("pg-freeze", include_str!("../../scenarios/pg-freeze.toml")),
    (
        "pool-exhaustion",
        include_str!("../../scenarios/pool-exhaustion.toml"),
    ),
    (
        "db-slowdown",
        include_str!("../../scenarios/db-slowdown.toml"),
    ),
    (
        "stale-if-error",
        include_str!("../../scenarios/stale-if-error.toml"),
    ),
    (
        "clock-jump",
        include_str!("../../scenarios/clock-jump.toml"),
    ),
    ("random", include_str!("../../scenarios/random.toml")),
    ("swarm", include_str!("../../scenarios/swarm.toml")),
];

/// Every scenario of the catalog. The files are checked by this crate's tests, so a catalog file
/// that does not parse never reaches a build that runs it.
pub fn catalog() -> Vec<Scenario> {
    // Parsed once per process: tables, promises and lookups by name ask for it often.
    static PARSED: std::sync::OnceLock<Vec<Scenario>> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            CATALOG
                .iter()
                .map(|(name, text)| {
                    let mut sc = parse(&format!("chaos/scenarios/{name}.toml"), text)
                        .unwrap_or_else(|e| panic!("the embedded catalog: {e}"));
                    sc.source = None;
                    sc
                })
                .collect()
        })
        .clone()
}

/// A scenario file that cannot be used: where and why, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    /// 1-based; `None` when the problem is the whole file (empty, unreadable).
    pub line: Option<usize>,
    pub why: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.why),
            None => write!(f, "{}: {}", self.file, self.why),
        }
    }
}

impl std::error::Error for FileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    name: String,
    about: String,
    #[serde(default)]
    workload: WorkloadSpec,
    #[serde(default)]
    bounds: BTreeMap<String, toml::Value>,
    #[serde(default)]
    fault: Vec<toml::Table>,
    /// Draw one to four faults of the whole catalog from the seed (`chaos::random`) instead.
    #[serde(default)]
    random_faults: bool,
    /// Draw per seed a swarm family's fault kinds, strengths and workload, then one to four
    /// faults of those kinds (`chaos::swarm`) instead.
    #[serde(default)]
    swarm: bool,
    #[serde(default)]
    promise: BTreeMap<String, PromiseSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromiseSpec {
    #[serde(default)]
    holds: bool,
    finds: Option<Vec<Invariant>>,
    why: String,
    #[serde(default)]
    buggify: bool,
    #[serde(default)]
    reaches: Vec<aside::goal::Goal>,
}

/// Reads the scenario file at `path`.
pub fn load(path: &std::path::Path) -> Result<Scenario, FileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: file.clone(),
        line: None,
        why: format!(
            "cannot read the scenario file: {e}: pass a readable TOML file (docs/scenarios.md)"
        ),
    })?;
    let mut sc = parse(&file, &text)?;
    sc.file = Some(path.to_path_buf());
    Ok(sc)
}

/// What a scenario would run, for a person checking a file: its workload, its plan in time
/// order and what each strategy promises.
pub fn describe(sc: &Scenario) -> String {
    use std::fmt::Write as _;
    let mut s = format!("{}: {}\n", sc.name, sc.about);
    let _ = writeln!(
        s,
        "  workload  {} app(s) x {} client(s), {} keys (Zipf {}), {} % writes, {} ms, then {} ms settle",
        sc.apps,
        sc.clients_per_app,
        sc.keys,
        sc.zipf_s,
        sc.write_ratio * 100.0,
        sc.duration_ms,
        sc.settle_ms
    );
    if sc.draw == Draw::Plan {
        s.push_str("  faults    drawn from the seed (one to four of the whole catalog)\n");
    } else if sc.draw == Draw::Swarm {
        s.push_str("  faults    drawn from the seed (one to four of the kinds its swarm family turns on; the family also draws the workload)\n");
    } else if sc.plan.is_empty() {
        s.push_str("  faults    none\n");
    }
    for step in &sc.plan.steps {
        let _ = writeln!(
            s,
            "  fault     at {} ms for {} ms: {}",
            step.at_ms, step.for_ms, step.fault
        );
    }
    let b = &sc.bounds;
    let _ = writeln!(
        s,
        "  bounds    staleness {}, hit ratio {}",
        b.staleness_ns_max
            .map_or("off".into(), |n| format!("{} ms", n / 1_000_000)),
        b.hit_ratio_min.map_or("off".into(), |r| r.to_string())
    );
    for p in &sc.promises {
        let what = match &p.expect {
            Expect::Holds => "holds".to_string(),
            Expect::Finds(i) if i.is_empty() => "finds a failure".to_string(),
            Expect::Finds(i) => format!("finds {}", invariants::invariant::join(i)),
        };
        let bug = if p.buggify { " (with BUGGIFY)" } else { "" };
        let _ = writeln!(s, "  promise   {}: {what}{bug}", p.strategy.name());
    }
    if sc.promises.is_empty() {
        s.push_str("  promise   none: runs are reported, not judged against a promise\n");
    }
    s
}

/// Parses and validates a scenario file's `text`; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, FileError> {
    let at = |line: Option<usize>, why: String| FileError {
        file: file.to_string(),
        line,
        why,
    };
    if text.trim().is_empty() {
        return Err(at(
            None,
            "the file is empty: a scenario needs at least `name` and `about` (docs/scenarios.md)"
                .into(),
        ));
    }
    let spec: FileSpec = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        at(line, e.message().trim().replace('\n', " "))
    })?;
    build(spec, text).map_err(|e| at(locate(text, &e.path), e.to_string()))
}

fn build(spec: FileSpec, text: &str) -> Result<Scenario, FieldError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(FieldError::new(
            "name",
            format!(
                "{:?} is not a scenario name: use 1 to 64 of a-z, 0-9 and '-' (it names seed logs)",
                spec.name
            ),
        ));
    }
    let mut sc = Scenario::base(&spec.name, &spec.about);
    sc.apply_workload(&spec.workload)?;
    for (name, v) in &spec.bounds {
        let v = match v {
            toml::Value::String(s) if s == "off" => Value::Null,
            other => serde_json::to_value(other)
                .map_err(|e| FieldError::new(format!("bounds.{name}"), e.to_string()))?,
        };
        sc.bounds.set(name, &v).map_err(|e| {
            let why = match e {
                invariants::Problem::BadConfig { why, .. } => why,
                other => other.to_string(),
            };
            FieldError::new(format!("bounds.{name}"), why)
        })?;
    }
    for (field, on) in [("random_faults", spec.random_faults), ("swarm", spec.swarm)] {
        if on && !spec.fault.is_empty() {
            return Err(FieldError::new(
                field,
                "a scenario draws its faults from the seed or lists them in [[fault]], not both",
            ));
        }
    }
    sc.draw = match (spec.random_faults, spec.swarm) {
        (true, true) => {
            return Err(FieldError::new(
                "swarm",
                "a scenario draws its plan from the whole catalog (random_faults) or from a swarm family (swarm), not both",
            ))
        }
        (true, false) => Draw::Plan,
        (false, true) => Draw::Swarm,
        (false, false) => Draw::Fixed,
    };
    sc.plan = Plan::new(
        spec.fault
            .iter()
            .enumerate()
            .map(|(i, t)| step(i, t))
            .collect::<Result<_, _>>()?,
    );
    for (strategy, p) in spec.promise {
        let path = format!("promise.{strategy}");
        let Some(b) = Builtin::parse(&strategy) else {
            let all: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
            return Err(FieldError::new(
                path,
                format!("unknown strategy: promises are for {}", all.join(", ")),
            ));
        };
        let expect = match (p.holds, p.finds) {
            (true, None) => Expect::Holds,
            (false, Some(invs)) => Expect::Finds(invs),
            _ => {
                return Err(FieldError::new(
                    path,
                    "say either `holds = true` or `finds = [\"invariant\", ...]` (an empty list: some failure)",
                ))
            }
        };
        if let Some(g) = p
            .reaches
            .iter()
            .enumerate()
            .find_map(|(i, g)| p.reaches[..i].contains(g).then_some(g))
        {
            return Err(FieldError::new(
                format!("{path}.reaches"),
                format!("names {g} twice: name each goal once"),
            ));
        }
        if p.buggify && expect == Expect::Holds {
            return Err(FieldError::new(
                format!("{path}.buggify"),
                "BUGGIFY is for findings: its delays bend the latency bounds a promise to hold is judged by",
            ));
        }
        sc.promises.push(Promise {
            strategy: b,
            expect,
            why: p.why,
            buggify: p.buggify,
            reaches: p.reaches,
        });
    }
    sc.promises.sort_by_key(|p| p.strategy as usize);
    sc.validate()?;
    sc.source = Some(text.to_string());
    Ok(sc)
}

/// One `[[fault]]` table: `at_ms`, `for_ms`, and the fault's own fields as a history's fault
/// line spells them. A field the fault does not use is refused, not ignored.
fn step(i: usize, table: &toml::Table) -> Result<Step, FieldError> {
    let path = format!("fault[{}]", i + 1);
    let ms = |f: &str| {
        table
            .get(f)
            .and_then(toml::Value::as_integer)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                FieldError::new(
                    format!("{path}.{f}"),
                    "is missing or not a number of milliseconds",
                )
            })
    };
    let (at_ms, for_ms) = (ms("at_ms")?, ms("for_ms")?);
    let mut fields = serde_json::Map::new();
    for (k, v) in table {
        if k != "at_ms" && k != "for_ms" {
            let v = serde_json::to_value(v)
                .map_err(|e| FieldError::new(format!("{path}.{k}"), e.to_string()))?;
            fields.insert(k.clone(), v);
        }
    }
    let fault = Fault::from_json(&Value::Object(fields.clone()))
        .map_err(|e| FieldError::new(path.clone(), e))?;
    let known = fault.to_json();
    if let Some(extra) = fields.keys().find(|k| known.get(k.as_str()).is_none()) {
        return Err(FieldError::new(
            format!("{path}.{extra}"),
            format!(
                "unknown field for a {} fault: it takes {}",
                fault.kind.name(),
                known
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(Step {
        at_ms,
        for_ms,
        fault,
    })
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of the field at `path` (`workload.keys`, `fault[2].target`, `promise.naive`), or of
/// the nearest table that holds it.
fn locate(text: &str, path: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text.to_string()).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut best = None;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let Some((k, item)) = table.get_key_value(key) else {
            break;
        };
        if let Some(span) = k.span().or_else(|| item.span()) {
            best = Some(span.start);
        }
        let next: Option<&dyn toml_edit::TableLike> = match index {
            Some(n) => item
                .as_array_of_tables()
                .and_then(|a| a.get(n.checked_sub(1)?))
                .map(|t| {
                    if let Some(span) = t.span() {
                        best = Some(span.start);
                    }
                    t as &dyn toml_edit::TableLike
                }),
            None => item.as_table_like(),
        };
        match next {
            Some(t) => table = t,
            None => break,
        }
    }
    best.map(|b| line_of(text, b))
}

#[cfg(test)]
mod tests;
