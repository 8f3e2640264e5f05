//! A witness key's swim lane: what happened to one key around the verdict that names it, a row
//! per place. The writes on top; then each Redis node, shaded while it was a master (from the
//! history's `role` lines), with the `l1` actions it answered; `l1` actions of no known node;
//! each memcached node's `l2` fills and invalidations (then `l2` actions of no known node); the
//! database loads; the reads at the bottom, coloured as in the timeline. Every line a failing
//! verdict names is ringed, so the causal chain the report quotes can be followed mark by mark:
//! the old row's load, the fill, the write, its tombstone on a master that was demoted later,
//! the stale read.

use std::collections::BTreeSet;

use invariants::history::{ActOutcome, CacheAction, Role, Source};
use invariants::index::{ActRec, Index};
use plotters::prelude::*;

use super::draw::{color, err, Drawn, BAND_OPACITY, FAULT, WIDTH, WITNESS, WRITE};
use super::picture::{fault_name, KeyRead};

/// Keys drawn, the first ones the failing verdicts name.
pub const KEYS_MAX: usize = 3;
/// A Redis node's master spans.
pub const MASTER: RGBColor = RGBColor(0xc7, 0xe9, 0xc0);
/// An action that failed (it may have happened), and one the tier refused on purpose.
pub const ACT_FAILED: RGBColor = RGBColor(0x96, 0x96, 0x96);
pub const ACT_REFUSED: RGBColor = RGBColor(0xe6, 0x55, 0x0d);
/// Version labels are written when the window holds at most this many marks.
const LABELS_MAX: usize = 80;

/// The rows of one key's lane, top to bottom.
struct Rows {
    names: Vec<String>,
}

impl Rows {
    /// The row of `name`, once every row is made (the first when there is none).
    fn at(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap_or(0)
    }

    fn index(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                self.names.len() - 1
            }
        }
    }
}

/// Where an action is drawn.
fn row_of(a: &ActRec) -> String {
    match (a.tier, a.action, a.server.as_deref()) {
        (Source::L1, _, Some(s)) => format!("l1 {s}"),
        (Source::L2, _, Some(s)) => format!("l2 {s}"),
        (Source::Db | Source::Replica, _, _) => "database".to_string(),
        (t, _, _) => t.as_str().to_string(),
    }
}

/// The time window around the key's witness lines (writes, reads, actions), padded by a tenth
/// on each side and at least 20 ms wide.
fn window(idx: &Index, key: u32, reads: &[KeyRead], witness: &BTreeSet<u64>) -> (u64, u64) {
    let k = &idx.keys[key as usize];
    let times = k
        .writes
        .iter()
        .filter(|w| witness.contains(&w.line))
        .flat_map(|w| [w.invoke_ns, w.complete_ns])
        .chain(
            k.acts
                .iter()
                .filter(|a| witness.contains(&a.line))
                .flat_map(|a| [a.start_ns, a.at_ns]),
        )
        .chain(
            reads
                .iter()
                .filter(|r| witness.contains(&r.line))
                .flat_map(|r| [r.invoke_ns, r.complete_ns]),
        );
    // A witness action's Redis node made a replica later (what discarded the action) or
    // another node made a master meanwhile: the lane shows that too.
    let roles = k
        .acts
        .iter()
        .filter(|a| witness.contains(&a.line))
        .filter_map(|a| {
            let s = a.server.as_deref()?;
            let later = idx.demotion_after(s, a.at_ns).map(|d| d.at_ns);
            Some(later.or_else(|| idx.promotion_after(s, a.at_ns).map(|p| p.at_ns)))
        })
        .flatten();
    // A convergence verdict names the probe that found the old version.
    let probes = idx
        .probes
        .iter()
        .filter(|p| p.key == key && witness.contains(&p.line))
        .map(|p| p.at_ns);
    let times = times.chain(roles).chain(probes);
    let (lo, hi) = times.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let (lo, hi) = if lo > hi { idx.span_ns } else { (lo, hi) };
    let pad = ((hi - lo) / 10).max(10_000_000);
    (lo.saturating_sub(pad), hi.saturating_add(pad))
}

/// The lane of `key` (its reads in `reads`); `witness` are the failing verdicts' lines.
pub fn lane(idx: &Index, key: u32, reads: &[KeyRead], witness: &BTreeSet<u64>) -> Drawn {
    let (from, to) = window(idx, key, reads, witness);
    let inside = |a: u64, b: u64| b >= from && a <= to;
    let origin = idx.span_ns.0;
    let ms = |t: u64| t.saturating_sub(origin) as f64 / 1e6;
    let k = &idx.keys[key as usize];
    let mut rows = Rows {
        names: vec!["writes".into()],
    };
    // Every Redis node with a role line gets a row, by name.
    let redis: BTreeSet<&str> = idx.roles.iter().map(|r| &*r.server).collect();
    for s in &redis {
        rows.index(&format!("l1 {s}"));
    }
    let acts: Vec<&ActRec> = k
        .acts
        .iter()
        .filter(|a| inside(a.start_ns, a.at_ns))
        .collect();
    // Then the nodes only actions name, and the tiers.
    let named: BTreeSet<String> = acts.iter().map(|a| row_of(a)).collect();
    for r in named.iter().filter(|r| r.starts_with("l1 ")) {
        rows.index(r);
    }
    if named.contains("l1") {
        rows.index("l1");
    }
    for r in named.iter().filter(|r| r.starts_with("l2 ")) {
        rows.index(r);
    }
    for tier in ["l2", "database"] {
        if named.contains(tier) {
            rows.index(tier);
        }
    }
    let reads_row = rows.index("reads");
    let n = rows.names.len();
    // Row i (top to bottom) spans y in [n-1-i - 0.5, n-1-i + 0.5).
    let y = |row: usize| (n - 1 - row) as f64;
    let marks = acts.len()
        + k.writes
            .iter()
            .filter(|w| inside(w.invoke_ns, w.complete_ns))
            .count();
    let labels = marks <= LABELS_MAX;
    let height = (n as u32 * 34 + 100).max(220);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (x0, x1) = (ms(from), ms(to).max(ms(from) + 1e-3));
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption(
                format!("{}: each place's part, row by row", idx.key_name(key)),
                ("sans-serif", 15),
            )
            .x_label_area_size(36)
            .y_label_area_size(150)
            .build_cartesian_2d(x0..x1, -0.5f64..n as f64 - 0.5)
            .map_err(err)?;
        let names = rows.names.clone();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() > 1e-6 || i < 0.0 || i as usize >= n {
                    return String::new();
                }
                names[n - 1 - i as usize].clone()
            })
            .x_desc("ms since the history began")
            .draw()
            .map_err(err)?;
        // Each Redis node's master spans, then the faults over every row.
        for s in &redis {
            let row = y(rows.at(&format!("l1 {s}")));
            let spans = master_spans(idx, s, from, to);
            chart
                .draw_series(spans.iter().map(|&(a, b)| {
                    Rectangle::new([(ms(a), row - 0.45), (ms(b), row + 0.45)], MASTER.filled())
                }))
                .map_err(err)?;
            chart
                .draw_series(
                    idx.roles
                        .iter()
                        .filter(|r| &*r.server == *s && r.at_ns > from && r.at_ns < to)
                        .map(|r| {
                            let word = match r.role {
                                Role::Master => "made master",
                                Role::Replica => "demoted",
                            };
                            Text::new(
                                word.to_string(),
                                (ms(r.at_ns), row + 0.3),
                                ("sans-serif", 11),
                            )
                        }),
                )
                .map_err(err)?;
        }
        // The faults' union, shaded once (overlapping faults would hide the rows), and each
        // fault's name at its start.
        let faults: Vec<_> = idx
            .faults
            .iter()
            .filter(|f| inside(f.start_ns, f.end_ns))
            .collect();
        let union: Vec<(u64, u64)> = idx
            .fault_union()
            .iter()
            .filter(|&&(a, b)| inside(a, b))
            .map(|&(a, b)| (a.max(from), b.min(to)))
            .collect();
        chart
            .draw_series(union.iter().map(|&(a, b)| {
                Rectangle::new(
                    [(ms(a), -0.5), (ms(b), n as f64 - 0.5)],
                    FAULT.mix(BAND_OPACITY).filled(),
                )
            }))
            .map_err(err)?;
        let row_h = (n as f64) / f64::from(height - 100) * 13.0;
        for (i, f) in faults.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Text::new(
                    fault_name(&f.fault),
                    (
                        ms(f.start_ns.max(from)),
                        n as f64 - 0.5 - (i % 6) as f64 * row_h,
                    ),
                    ("sans-serif", 10),
                )))
                .map_err(err)?;
        }
        // Writes: a bar from invoke to completion.
        let writes: Vec<_> = k
            .writes
            .iter()
            .filter(|w| inside(w.invoke_ns, w.complete_ns))
            .collect();
        let top = y(0);
        chart
            .draw_series(writes.iter().map(|w| {
                Rectangle::new(
                    [(ms(w.invoke_ns), top - 0.2), (ms(w.complete_ns), top + 0.2)],
                    WRITE.filled(),
                )
            }))
            .map_err(err)?;
        if labels {
            chart
                .draw_series(writes.iter().map(|w| {
                    Text::new(
                        w.version.map_or("v?".into(), |v| format!("v{v}")),
                        (ms(w.complete_ns), top + 0.25),
                        ("sans-serif", 10),
                    )
                }))
                .map_err(err)?;
        }
        // Actions: a load is a bar over its span, a fill a dot, an invalidation a triangle,
        // a lease a cross; ok in black, failed in grey, refused in orange.
        for a in &acts {
            let row = y(rows.at(&row_of(a)));
            let c = match a.outcome {
                ActOutcome::Ok => BLACK,
                ActOutcome::Failed => ACT_FAILED,
                ActOutcome::Refused => ACT_REFUSED,
            };
            let at = (ms(a.at_ns), row);
            let shape: Vec<DynElement<SVGBackend, (f64, f64)>> = match a.action {
                CacheAction::Load => vec![Rectangle::new(
                    [(ms(a.start_ns), row - 0.08), (ms(a.at_ns), row + 0.08)],
                    c.filled(),
                )
                .into_dyn()],
                CacheAction::Fill => vec![Circle::new(at, 5, c.filled()).into_dyn()],
                CacheAction::Invalidate => {
                    vec![TriangleMarker::new(at, 7, c.filled()).into_dyn()]
                }
                CacheAction::LeaseWon | CacheAction::LeaseLost => {
                    vec![Cross::new(at, 4, c.stroke_width(2)).into_dyn()]
                }
            };
            chart.draw_series(shape).map_err(err)?;
            if labels && a.version.is_some() {
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("v{}", a.version.unwrap_or_default()),
                        (ms(a.at_ns), row - 0.42),
                        ("sans-serif", 10),
                    )))
                    .map_err(err)?;
            }
        }
        // Reads, in the timeline's colours.
        let rrow = y(reads_row);
        let in_reads: Vec<&KeyRead> = reads
            .iter()
            .filter(|r| inside(r.invoke_ns, r.complete_ns))
            .collect();
        chart
            .draw_series(in_reads.iter().map(|r| {
                Rectangle::new(
                    [
                        (ms(r.invoke_ns), rrow - 0.25),
                        (
                            ms(r.complete_ns.max(r.invoke_ns.saturating_add(300_000))),
                            rrow + 0.25,
                        ),
                    ],
                    color(r.state).filled(),
                )
            }))
            .map_err(err)?;
        // The witness lines, ringed where they are drawn.
        let ringed = writes
            .iter()
            .filter(|w| witness.contains(&w.line))
            .map(|w| (ms(w.complete_ns), top))
            .chain(
                acts.iter()
                    .filter(|a| witness.contains(&a.line))
                    .map(|a| (ms(a.at_ns), y(rows.at(&row_of(a))))),
            )
            .chain(
                in_reads
                    .iter()
                    .filter(|r| witness.contains(&r.line))
                    .map(|r| (ms(r.invoke_ns), rrow)),
            )
            .collect::<Vec<_>>();
        chart
            .draw_series(
                ringed
                    .into_iter()
                    .map(|p| Circle::new(p, 9, WITNESS.stroke_width(2))),
            )
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// When `server` was a master within [from, to], from its role lines.
fn master_spans(idx: &Index, server: &str, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut spans = Vec::new();
    let mut since = idx
        .role_at(server, from)
        .filter(|r| r.role == Role::Master)
        .map(|_| from);
    for r in idx
        .roles
        .iter()
        .filter(|r| &*r.server == server && r.at_ns > from && r.at_ns <= to)
    {
        match (r.role, since) {
            (Role::Master, None) => since = Some(r.at_ns),
            (Role::Replica, Some(s)) => {
                spans.push((s, r.at_ns));
                since = None;
            }
            _ => {}
        }
    }
    spans.extend(since.map(|s| (s, to)));
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn split_brain() -> Index {
        let text = [
            r#"{"type":"header","format":1,"world":"test","scenario":"t","strategy":"s","seed":1,"commit":"c"}"#,
            r#"{"type":"op","id":1,"client":1,"key":"k","f":"write","invoke_ns":1000000,"complete_ns":2000000,"outcome":"ok","version":1}"#,
            r#"{"type":"role","server":"redis-master","role":"master","at_ns":0}"#,
            r#"{"type":"role","server":"redis-replica","role":"replica","at_ns":0}"#,
            r#"{"type":"role","server":"redis-replica","role":"master","at_ns":40000000}"#,
            r#"{"type":"role","server":"redis-master","role":"replica","at_ns":90000000}"#,
        ]
        .join("\n");
        Index::build("t", text.as_bytes(), invariants::index::SPILL_AT).unwrap()
    }

    #[test]
    fn a_master_span_ends_at_its_demotion_and_a_promotion_starts_one() {
        let idx = split_brain();
        assert_eq!(
            master_spans(&idx, "redis-master", 10 * MS, 200 * MS),
            vec![(10 * MS, 90 * MS)]
        );
        assert_eq!(
            master_spans(&idx, "redis-replica", 10 * MS, 200 * MS),
            vec![(40 * MS, 200 * MS)]
        );
        assert_eq!(
            master_spans(&idx, "redis-master", 95 * MS, 200 * MS),
            vec![]
        );
    }
}
