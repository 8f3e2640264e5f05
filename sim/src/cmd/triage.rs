//! `cargo sim triage DIR`: one night's shards merged and judged (`triage::merge`), each failure
//! signature's witness shrunk once, the night compared with the last one (`--last`), and the
//! containers' runs (`DIR/compare.json`) with the recorded ones; writes `DIR/results.json` and
//! `DIR/summary.md`. Exit 1 when the night is red (something new or broken), 2 on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aside::Builtin;

use crate::compare::{Comparison, DATA};
use crate::expect;
use crate::pool::par_map;
use crate::triage::{self, Group, News, Night, Shard, Shrunk};

use super::nightly::run_child;

pub struct Args {
    pub dir: PathBuf,
    /// Last night's `results.json`; missing: nothing to compare with.
    pub last: Option<PathBuf>,
    /// Shrink at most this many signatures' witnesses (new ones first).
    pub shrink_max: usize,
}

pub fn triage(a: &Args) -> ExitCode {
    match run(a) {
        Ok(red) => ExitCode::from(u8::from(red)),
        Err(e) => {
            eprintln!("cargo sim triage: {e}");
            ExitCode::from(2)
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, writer: &str) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: {e}: it is written by `{writer}`; rerun that, or move the file away",
            path.display()
        )
    })
}

fn shards(dir: &Path) -> Result<Vec<Shard>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read {}: {e}: pass the folder `cargo sim nightly --out` wrote",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("shard-") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| read_json(f, "cargo sim nightly --shard I/N"))
        .collect()
}

fn run(a: &Args) -> Result<bool, String> {
    let mut night = triage::merge(&shards(&a.dir)?)?;
    let last: Option<Night> = match &a.last {
        Some(f) if f.exists() => Some(read_json(f, "cargo sim triage")?),
        _ => None,
    };
    let replays = a.dir.join("replays");
    let mut news = Vec::new();
    match &last {
        Some(l) => {
            let t = triage::news(l, &night, |g| still_fails(g, &replays));
            news = t.news;
            night.harness_errors.extend(t.errors);
            night.known = t.known;
        }
        None => night.known = night.groups.clone(),
    }
    // The containers world's runs tonight, against what docs/results/compare.json records.
    let tonight_file = a.dir.join("compare.json");
    let mut containers = String::new();
    if tonight_file.exists() {
        let tonight: Comparison = read_json(&tonight_file, "aside chaos compare --save")?;
        let recorded = Comparison::load(Path::new(DATA))?;
        news.extend(triage::containers_news(&recorded, &tonight));
        containers = format!("## Containers (release build)\n\n{}", tonight.markdown()?);
        if !tonight.skipped.is_empty() {
            containers.push_str(&format!(
                "\n{} containers cells not started: the time budget ran out ({}).\n",
                tonight.skipped.len(),
                tonight.skipped.join(", ")
            ));
        }
    }
    shrink(&mut night, &news, a);
    let results = a.dir.join("results.json");
    let text = serde_json::to_string_pretty(&night).expect("plain data") + "\n";
    std::fs::write(&results, text)
        .map_err(|e| format!("cannot write {}: {e}", results.display()))?;
    let mut md = triage::summary(&night, Some(&news), &containers);
    if last.is_none() {
        md.push_str("\nNo last night to compare with (`--last FILE`): tonight is the baseline.\n");
    }
    let summary = a.dir.join("summary.md");
    std::fs::write(&summary, &md)
        .map_err(|e| format!("cannot write {}: {e}", summary.display()))?;
    print!("{md}");
    println!("\nwrote {} and {}", results.display(), summary.display());
    Ok(triage::red(&night, &news))
}

/// A last night's witness run again at this commit: does it still fail its invariant?
fn still_fails(g: &Group, out: &Path) -> Result<bool, String> {
    let st =
        Builtin::parse(&g.strategy).ok_or_else(|| format!("unknown strategy {:?}", g.strategy))?;
    let cell = expect::cell(&g.scenario, st)
        .ok_or_else(|| format!("{} / {} has no promise any more", g.scenario, g.strategy))?;
    let ran = run_child(&cell, g.seeds[0], out)?;
    Ok(ran.failed.iter().any(|i| i.name() == g.invariant))
}

/// Shrinks the witnesses of up to `shrink_max` signatures, the new ones first, in child
/// processes on every core; a shrink that fails is a harness error naming its command.
fn shrink(night: &mut Night, news: &[News], a: &Args) {
    let is_new = |g: &Group| news.contains(&News::Signature(g.signature()));
    let mut order: Vec<usize> = (0..night.groups.len()).collect();
    // New signatures first, then the failures no promise names, then the promised findings.
    order.sort_by_key(|&i| {
        let g = &night.groups[i];
        (!is_new(g), g.promised)
    });
    // A harness error (a fault that did nothing, a promised goal missed) is the harness's to
    // fix, not a failure to make small: shrinking drops the goals and would find nothing.
    order.retain(|&i| {
        invariants::Invariant::parse(&night.groups[i].invariant).map_or(true, |inv| !inv.harness())
    });
    order.truncate(a.shrink_max);
    if order.is_empty() {
        return;
    }
    eprintln!(
        "cargo sim triage: shrinking {} of {} signatures' witnesses",
        order.len(),
        night.groups.len()
    );
    let groups: Vec<Group> = order.iter().map(|&i| night.groups[i].clone()).collect();
    let shrunk = par_map(&groups, |g| shrink_one(g, &a.dir));
    for (&i, r) in order.iter().zip(shrunk) {
        match r {
            Ok(s) => night.groups[i].shrunk = Some(s),
            Err(e) => night.harness_errors.push(e),
        }
    }
}

fn shrink_one(g: &Group, dir: &Path) -> Result<Shrunk, String> {
    let log = dir.join(&g.log);
    let command = format!(
        "cargo sim shrink {} --invariant {}",
        log.display(),
        g.invariant
    );
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let o = std::process::Command::new(exe)
        .arg("shrink")
        .arg(&log)
        .args(["--invariant", &g.invariant, "--json"])
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("`{command}`: cannot run it: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut s: Shrunk = serde_json::from_str(text.trim()).map_err(|_| {
        format!(
            "{}: its witness did not shrink (exit {:?}): run `{command}`",
            g.signature(),
            o.status.code()
        )
    })?;
    // In the night's folder, by file name: the folder moves (an artifact) and the name stays.
    s.log = Path::new(&s.log)
        .file_name()
        .map_or(s.log.clone(), |n| n.to_string_lossy().into_owned());
    Ok(s)
}
