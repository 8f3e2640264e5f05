//! `aside report HISTORY -o PAGE.html`: one self-contained page for a person. The verdicts
//! first, then the figures (a timeline of every client's ops with the faults shaded and each
//! failing verdict's witness ops ringed, hit ratio and database reads over time, the staleness
//! distribution), a swim lane per witness key ([`swim`]), the witness ops as the history's own
//! lines, and the full report `aside check` prints, causal chains included. No script, no
//! external file: it opens anywhere.

mod draw;
mod night;
mod picture;
mod swim;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use invariants::index::{Index, SPILL_AT};
use invariants::report::{read_lines, Report};
use invariants::{Override, Status};

use picture::Picture;
use plotters::style::RGBColor;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A history file (JSON Lines, docs/history-format.md), or a nightly folder that
    /// `cargo sim triage` judged (its results.json)
    file: PathBuf,
    /// The page to write (HTML, self-contained); for a nightly folder, the directory of pages
    #[arg(short = 'o', long = "out", value_name = "PATH")]
    out: PathBuf,
    /// Any bound, NAME=VALUE, as `aside check --bound`; repeatable
    #[arg(long = "bound", value_name = "NAME=VALUE", value_parser = Override::parse)]
    bounds: Vec<Override>,
}

/// Witness lines quoted in the page (all are ringed in the timeline).
const QUOTED_MAX: usize = 40;

pub fn report(a: ReportArgs) -> ExitCode {
    let span = tracing::info_span!("aside.report", file = %a.file.display());
    let _entered = span.enter();
    if a.file.is_dir() {
        return match night::pages(&a.file, &a.out) {
            Ok(n) => {
                println!("wrote {n} pages: {}", a.out.join("index.html").display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("aside report: {e}");
                ExitCode::from(2)
            }
        };
    }
    match page(&a.file, &a.bounds).and_then(|html| write_atomically(&a.out, &html)) {
        Ok(()) => {
            println!("wrote {}", a.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aside report: {e}");
            ExitCode::from(2)
        }
    }
}

/// Writes beside `out` and renames, so a failure leaves any earlier page whole.
fn write_atomically(out: &Path, html: &str) -> Result<(), String> {
    let tmp = out.with_extension("html.partial");
    std::fs::write(&tmp, html).map_err(|e| {
        format!(
            "cannot write {}: {e}: pass -o a file in a writable directory",
            tmp.display()
        )
    })?;
    std::fs::rename(&tmp, out).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// The page for the history in `file`.
pub fn page(file: &Path, bounds: &[Override]) -> Result<String, String> {
    let report = invariants::check_path(file, bounds).map_err(|e| e.to_string())?;
    let witness: BTreeSet<u64> = report
        .verdicts
        .iter()
        .filter(|v| v.fails())
        .flat_map(|v| v.witness.lines.iter().copied())
        .collect();
    let name = file.display().to_string();
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut idx = Index::build(&name, BufReader::with_capacity(1 << 16, f), SPILL_AT)
        .map_err(|e| e.to_string())?;
    idx.staleness_excludes_outbox_blind = report.bounds.staleness_excludes_outbox_blind;
    let keys = witness_keys(file, &report, &idx).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut pic = Picture::of(&mut idx, &witness, &keys).map_err(|e| format!("{name}: {e}"))?;
    let lanes = keys
        .iter()
        .map(|&k| {
            let reads = pic.key_reads.remove(&k).unwrap_or_default();
            swim::lane(&idx, k, &reads, &witness)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let quoted: BTreeSet<u64> = witness.iter().take(QUOTED_MAX).copied().collect();
    let lines = read_lines(file, &quoted).map_err(|e| format!("cannot read {name}: {e}"))?;
    let table_lines = read_lines(file, &report.witness_lines()).unwrap_or_default();
    let bound_ms = report.bounds.staleness_ns_max.map(|ns| ns as f64 / 1e6);
    let figures = [
        draw::timeline(&pic)?,
        draw::load(&pic)?,
        draw::staleness(&pic, bound_ms)?,
    ];
    Ok(html(
        &report,
        &pic,
        &figures,
        &lines,
        &report.table(&table_lines),
        witness.len(),
        &lanes,
    ))
}

/// The keys the failing verdicts' witness lines name, in the verdicts' order, at most
/// [`swim::KEYS_MAX`]: each gets a swim lane.
fn witness_keys(file: &Path, report: &Report, idx: &Index) -> std::io::Result<Vec<u32>> {
    /// Lines looked at per verdict: a key is named in its first ones.
    const LINES_PER_VERDICT: usize = 50;
    let wanted: BTreeSet<u64> = report
        .verdicts
        .iter()
        .filter(|v| v.fails())
        .flat_map(|v| v.witness.lines.iter().take(LINES_PER_VERDICT).copied())
        .collect();
    let texts = read_lines(file, &wanted)?;
    let mut keys = Vec::new();
    for v in report.verdicts.iter().filter(|v| v.fails()) {
        for line in v.witness.lines.iter().take(LINES_PER_VERDICT) {
            let key = texts
                .get(line)
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                .and_then(|j| j.get("key")?.as_str().and_then(|k| idx.key_id(k)));
            if let Some(k) = key.filter(|k| !keys.contains(k)) {
                keys.push(k);
            }
            if keys.len() == swim::KEYS_MAX {
                return Ok(keys);
            }
        }
    }
    Ok(keys)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(
    r: &Report,
    p: &Picture,
    figures: &[String; 3],
    lines: &std::collections::BTreeMap<u64, String>,
    table: &str,
    witness_total: usize,
    lanes: &[String],
) -> String {
    let h = &r.header;
    let title = format!("{} / {} / seed {}", h.scenario, h.strategy, h.seed);
    let verdict = if r.fails() {
        format!(
            "<p class=\"fails\">Fails: {}</p>",
            esc(&invariants::invariant::join(&r.failing()))
        )
    } else {
        "<p class=\"holds\">Every gating invariant holds.</p>".to_string()
    };
    let mut md = String::new();
    let _ = write!(
        md,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>aside report: {t}</title>\n<style>{CSS}</style></head><body>\n<h1>{t}</h1>\n<p class=\"meta\">{file} &middot; world {world} &middot; commit {commit} &middot; {ops} ops, {reads} reads, {clients} clients, {faults} faults, {span:.0} ms</p>\n{verdict}\n",
        t = esc(&title),
        file = esc(&r.file),
        world = esc(&h.world),
        commit = esc(&h.commit),
        ops = r.ops,
        reads = r.reads,
        clients = p.lanes.len(),
        faults = p.bands.len(),
        span = p.span_ms,
    );
    md.push_str("<table class=\"verdicts\"><tr><th>invariant</th><th>verdict</th><th>what it measured</th></tr>\n");
    for v in &r.verdicts {
        let (class, word) = match &v.status {
            Status::Holds => ("holds", "holds".to_string()),
            Status::Fails if v.gating => ("fails", "fails".to_string()),
            Status::Fails => ("reported", "fails (reported, not gating)".to_string()),
            Status::Unknown(why) => ("unknown", format!("unknown: {why}")),
        };
        let _ = writeln!(
            md,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.name(),
            esc(&word),
            esc(&v.summary)
        );
    }
    md.push_str("</table>\n");
    for ((id, legend), svg) in [
        ("timeline", TIMELINE_LEGEND),
        ("load", LOAD_LEGEND),
        ("staleness", &[]),
    ]
    .iter()
    .zip(figures)
    {
        let _ = writeln!(
            md,
            "<figure id=\"{id}\">{svg}{}</figure>",
            legend_html(legend)
        );
    }
    if !lanes.is_empty() {
        let _ = writeln!(
            md,
            "<h2>Witness keys, lane by lane</h2>\n<p>What each place did to the key a failing verdict names, around the lines it names (ringed): its writes, each Redis node's <code>l1</code> actions with the spans it was a master shaded, <code>l2</code>, the database loads, and its reads. The causal chain in the report below reads along these rows.</p>"
        );
        for svg in lanes {
            let _ = writeln!(
                md,
                "<figure class=\"lane\">{svg}{}</figure>",
                legend_html(LANE_LEGEND)
            );
        }
    }
    let _ = writeln!(
        md,
        "<h2>Witness ops</h2>\n<p>{} history lines witness the failing verdicts{}; each is ringed in the timeline.</p>",
        witness_total,
        if witness_total > lines.len() {
            format!(", the first {} quoted", lines.len())
        } else {
            String::new()
        }
    );
    if !lines.is_empty() {
        md.push_str(
            "<table class=\"lines\"><tr><th>line</th><th>the history's own line</th></tr>\n",
        );
        for (n, text) in lines {
            let _ = writeln!(
                md,
                "<tr><td>{n}</td><td><code>{}</code></td></tr>",
                esc(text)
            );
        }
        md.push_str("</table>\n");
    }
    let _ = write!(
        md,
        "<h2>The full report</h2>\n<pre>{}</pre>\n</body></html>\n",
        esc(table)
    );
    md
}

/// (colour, what it marks, shape) of the timeline's marks.
const TIMELINE_LEGEND: &[(RGBColor, &str, &str)] = &[
    (draw::FAULT, "a fault active (its name at the top)", "band"),
    (draw::HIT, "read served by a cache", "box"),
    (draw::DB, "read served by the database", "box"),
    (draw::FAILED, "read failed", "box"),
    (
        draw::STALE,
        "stale read (a bin shows its worst read)",
        "box",
    ),
    (draw::WRITE, "write (above the reads)", "box"),
    (
        draw::WITNESS,
        "an op a failing verdict names (its line below)",
        "ring",
    ),
];

const LANE_LEGEND: &[(RGBColor, &str, &str)] = &[
    (swim::MASTER, "the Redis node was a master", "box"),
    (draw::WRITE, "write, invoke to completion", "box"),
    (
        plotters::style::colors::BLACK,
        "dot: fill; triangle: invalidation; bar: load; cross: lease (black: ok)",
        "box",
    ),
    (
        swim::ACT_FAILED,
        "the action failed (it may have happened)",
        "box",
    ),
    (
        swim::ACT_REFUSED,
        "the tier refused it (a newer entry)",
        "box",
    ),
    (draw::STALE, "stale read", "box"),
    (draw::WITNESS, "a line a failing verdict names", "ring"),
    (draw::FAULT, "a fault active", "band"),
];

const LOAD_LEGEND: &[(RGBColor, &str, &str)] = &[
    (
        draw::HIT,
        "hit ratio of the reads begun in each slice (left axis)",
        "box",
    ),
    (draw::DB, "database reads per second (right axis)", "box"),
    (draw::FAULT, "a fault active", "band"),
];

fn legend_html(items: &[(RGBColor, &str, &str)]) -> String {
    let mut s = String::from("<figcaption>");
    for (c, what, shape) in items {
        let css = match *shape {
            "ring" => format!(
                "border:2px solid rgb({},{},{});border-radius:50%",
                c.0, c.1, c.2
            ),
            "band" => format!(
                "background:rgba({},{},{},{})",
                c.0,
                c.1,
                c.2,
                draw::BAND_OPACITY
            ),
            _ => format!("background:rgb({},{},{})", c.0, c.1, c.2),
        };
        let _ = write!(
            s,
            "<span class=\"key\"><i style=\"{css}\"></i>{what}</span>"
        );
    }
    s + "</figcaption>"
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1240px;color:#222}\
h1{font-size:1.4em}.meta{color:#555}.fails{color:#b00;font-weight:bold}.holds{color:#060;font-weight:bold}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
tr.fails td:nth-child(2){color:#b00;font-weight:bold}tr.holds td:nth-child(2){color:#060}\
tr.unknown td:nth-child(2),tr.reported td:nth-child(2){color:#a60}\
figure{margin:1em 0}figcaption{font-size:.85em;color:#444}.key{margin-right:1.2em;white-space:nowrap}\
.key i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}code{font-size:.85em;word-break:break-all}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}";

#[cfg(test)]
mod tests;

#[cfg(test)]
mod browser_tests;
