//! `aside report NIGHT_DIR -o OUT_DIR`: a night of the nightly job as pages. `index.html` is the
//! scenario × strategy matrix of the night (`results.json`, written by `cargo sim triage`), each
//! cell in the colour of its verdict and linking to the page of every failure signature's
//! witness, with the containers world's verdict beside it when the night ran it
//! (`compare.json`, `aside chaos compare --save`), then what broke; each witness's seed log gets
//! its own page (`super::page`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use aside::Builtin;
use sim::compare::{Comparison, Measured};
use sim::expect;
use sim::triage::{verdict, CellRuns, Group, Night};

use super::{esc, write_atomically, CSS};

/// Writes `out/index.html` and a page per witness; returns how many pages.
pub fn pages(dir: &Path, out: &Path) -> Result<usize, String> {
    let results = dir.join("results.json");
    let text = std::fs::read_to_string(&results).map_err(|e| {
        format!(
            "cannot read {}: {e}: run `cargo sim triage {}` first",
            results.display(),
            dir.display()
        )
    })?;
    let night: Night = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: {e}: it is written by `cargo sim triage`; rerun that",
            results.display()
        )
    })?;
    std::fs::create_dir_all(out).map_err(|e| {
        format!(
            "cannot create {}: {e}: pass -o a writable directory",
            out.display()
        )
    })?;
    // One page per witness log (two signatures can share a witness).
    let mut rendered: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    for g in &night.groups {
        if rendered.contains_key(&g.log) {
            continue;
        }
        let name = format!("{}.html", g.log.trim_end_matches(".jsonl"));
        let r = super::page(&dir.join(&g.log), &[])
            .and_then(|html| write_atomically(&out.join(&name), &html))
            .map(|()| name);
        rendered.insert(g.log.clone(), r);
    }
    let containers = containers_of(dir)?;
    let index = index(&night, containers.as_ref(), &rendered);
    write_atomically(&out.join("index.html"), &index)?;
    Ok(1 + rendered.values().filter(|r| r.is_ok()).count())
}

/// The containers world's cells of the night, when it ran them.
fn containers_of(dir: &Path) -> Result<Option<Comparison>, String> {
    let file = dir.join("compare.json");
    if !file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        format!(
            "{}: {e}: it is written by `aside chaos compare --save`; rerun that",
            file.display()
        )
    })
}

fn index(
    n: &Night,
    containers: Option<&Comparison>,
    pages: &BTreeMap<String, Result<String, String>>,
) -> String {
    let last = n.first_seed + n.seeds.max(1) - 1;
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>aside nightly: seeds {}..={last}</title>\n<style>{CSS}{INDEX_CSS}</style></head><body>\n<h1>Nightly chaos: seeds {}..={last}</h1>\n<p class=\"meta\">{} cells, {} runs, shards {}; {} seeds run twice ({} differed)</p>\n",
        n.first_seed,
        n.first_seed,
        n.cells.len(),
        n.cells.iter().map(|c| c.runs).sum::<u64>(),
        esc(&n.shards.join(", ")),
        n.determinism_checked,
        n.nondeterministic.len(),
    );
    let mut strategies: Vec<&str> = Vec::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for c in &n.cells {
        if !strategies.contains(&c.strategy.as_str()) {
            strategies.push(&c.strategy);
        }
        if !scenarios.contains(&c.scenario.as_str()) {
            scenarios.push(&c.scenario);
        }
    }
    h.push_str("<table class=\"matrix\"><tr><th>scenario</th>");
    for s in &strategies {
        let _ = write!(h, "<th>{}</th>", esc(s));
        if containers.is_some() {
            let _ = write!(h, "<th>{}: containers</th>", esc(s));
        }
    }
    h.push_str("</tr>\n");
    for sc in &scenarios {
        let _ = write!(h, "<tr><td>{}</td>", esc(sc));
        for st in &strategies {
            match n
                .cells
                .iter()
                .find(|c| c.scenario == *sc && c.strategy == *st)
            {
                Some(c) => h.push_str(&cell(n, c, pages)),
                None => h.push_str("<td></td>"),
            }
            if let Some(k) = containers {
                let m = k
                    .cells
                    .iter()
                    .find(|m| m.scenario == *sc && m.strategy == *st);
                h.push_str(&containers_cell(sc, st, m));
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<p class=\"meta\">Green: holds on every seed. Amber: fails only as its promise says it finds. Red: a failure no promise names. Each invariant links to its witness's page. A containers cell is green or amber when real servers did what the simulator promises, red when they did not.</p>\n");
    for (title, items) in [
        ("Broken promises", &n.broken_promises),
        ("Harness errors", &n.harness_errors),
    ] {
        let _ = writeln!(h, "<h2>{title}</h2>");
        if items.is_empty() {
            h.push_str("<p>None.</p>\n");
        }
        h.push_str("<ul>");
        for i in items.iter() {
            let _ = write!(h, "<li>{}</li>", esc(i));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</body></html>\n");
    h
}

/// One matrix cell: its verdict, and a link per failing invariant to its witness's page.
fn cell(n: &Night, c: &CellRuns, pages: &BTreeMap<String, Result<String, String>>) -> String {
    let groups: Vec<&Group> = n
        .groups
        .iter()
        .filter(|g| g.scenario == c.scenario && g.strategy == c.strategy)
        .collect();
    if groups.is_empty() {
        return format!("<td class=\"holds\">holds ({})</td>", c.runs);
    }
    let class = if groups.iter().all(|g| g.promised) {
        "finds"
    } else {
        "fails"
    };
    let links: Vec<String> = groups
        .iter()
        .map(|g| {
            let what = format!("{} ({} of {})", g.invariant, g.seeds.len(), c.runs);
            match pages.get(&g.log) {
                Some(Ok(page)) => format!(
                    "<a href=\"{}\" title=\"{}\">{}</a>",
                    esc(page),
                    esc(&g.replay()),
                    esc(&what)
                ),
                Some(Err(e)) => {
                    format!("{} <span title=\"{}\">(no page)</span>", esc(&what), esc(e))
                }
                None => esc(&what),
            }
        })
        .collect();
    format!(
        "<td class=\"{class}\" title=\"{}\">{}</td>",
        esc(&verdict(c)),
        links.join("<br>")
    )
}

/// The containers world's verdict on one cell, coloured by whether it agrees with the
/// simulator's promise (a finding failing, a holding cell holding).
fn containers_cell(scenario: &str, strategy: &str, m: Option<&Measured>) -> String {
    let Some(m) = m else {
        return "<td class=\"meta\">not run</td>".to_string();
    };
    let promised_fails = Builtin::parse(strategy)
        .and_then(|st| expect::cell(scenario, st))
        .map(|cell| expect::promise(&cell).1);
    let fails = m.containers.starts_with("fails");
    let (class, title) = match promised_fails {
        Some(p) if p == fails && fails => ("finds", "fails as the simulator's promise finds"),
        Some(p) if p == fails => ("holds", "holds as the simulator promises"),
        Some(_) => ("fails", "disagrees with the simulator's promise"),
        None => ("fails", "no promise in this commit's scenario files"),
    };
    format!(
        "<td class=\"{class}\" title=\"{title}\">{}</td>",
        esc(&m.containers)
    )
}

const INDEX_CSS: &str = ".matrix td.holds{background:#e6f4e6}.matrix td.finds{background:#fff1d6}\
.matrix td.fails{background:#fbe0e0}.matrix td{font-size:.85em}";
