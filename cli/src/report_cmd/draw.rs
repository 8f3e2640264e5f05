//! The report's figures as SVG, drawn with plotters: the timeline (a lane per client, fault
//! bands shaded, each bin in the colour of its worst read, writes above, witnesses circled), hit
//! ratio and database reads over time, and the staleness distribution.

use plotters::prelude::*;

use super::picture::{Picture, State, COLUMNS};

/// Plotters' errors carry the backend's type; the report only needs their text.
pub(super) type Drawn = Result<String, String>;

pub(super) const WIDTH: u32 = 1200;
pub const HIT: RGBColor = RGBColor(0x9e, 0xc9, 0xe8);
pub const DB: RGBColor = RGBColor(0x31, 0x82, 0xbd);
pub const FAILED: RGBColor = RGBColor(0x96, 0x96, 0x96);
pub const STALE: RGBColor = RGBColor(0xd6, 0x27, 0x28);
pub const WRITE: RGBColor = RGBColor(0x2c, 0x2c, 0x2c);
/// Fault bands, drawn at [`BAND_OPACITY`] (overlapping faults darken).
pub const FAULT: RGBColor = RGBColor(0xff, 0xa5, 0x00);
pub const BAND_OPACITY: f64 = 0.15;
/// The hit ratio's steps.
pub const RATIO: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
/// Reads a slice of the load figure should hold at least, when the history has them: fewer make
/// its hit ratio jump between 0 and 1.
const READS_PER_SLICE_MIN: u64 = 30;
/// Witness rings.
pub const WITNESS: RGBColor = RGBColor(0x7b, 0x00, 0x9e);

pub(super) fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a figure: {e}")
}

pub(super) fn color(s: State) -> RGBColor {
    match s {
        State::Hit => HIT,
        State::DbRead => DB,
        State::Failed => FAILED,
        State::Stale => STALE,
    }
}

/// The timeline: time across, one lane per client.
pub fn timeline(p: &Picture) -> Drawn {
    let lanes = p.lanes.len().max(1);
    let lane_px = (560 / lanes as u32).clamp(4, 24);
    let height = (lane_px * lanes as u32 + 110).max(220);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let x_max = p.span_ms.max(1e-3);
        // Lane i spans [i - 0.5, i + 0.5): the axis labels (at whole numbers) name lane centres.
        let top = lanes as f64 - 0.5;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption("Ops per client", ("sans-serif", 15))
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, -0.5f64..top)
            .map_err(err)?;
        let names = p.lanes.clone();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(lanes.min(24))
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                names
                    .get(i as usize)
                    .map(|c| format!("client {c}"))
                    .unwrap_or_default()
            })
            .x_desc("ms since the history began")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(p.bands.iter().map(|b| {
                Rectangle::new(
                    [(b.from_ms, -0.5), (b.to_ms.max(b.from_ms), top)],
                    FAULT.mix(BAND_OPACITY).filled(),
                )
            }))
            .map_err(err)?;
        let col_ms = x_max / COLUMNS as f64;
        // At least 3 px wide, so that one op among thousands of empty columns shows.
        let mark_ms = col_ms.max(x_max * 3.0 / f64::from(WIDTH));
        let y = |lane: usize, at: f64| lane as f64 - 0.5 + at;
        for state in [State::Hit, State::DbRead, State::Failed, State::Stale] {
            let c = color(state);
            chart
                .draw_series(p.reads.iter().filter(|(_, s)| **s == state).map(
                    |(&(lane, col), _)| {
                        let x = col as f64 * col_ms;
                        Rectangle::new(
                            [(x, y(lane, 0.1)), (x + mark_ms, y(lane, 0.55))],
                            c.filled(),
                        )
                    },
                ))
                .map_err(err)?;
        }
        chart
            .draw_series(p.writes.iter().map(|&(lane, col)| {
                let x = col as f64 * col_ms;
                Rectangle::new(
                    [(x, y(lane, 0.65)), (x + mark_ms, y(lane, 0.9))],
                    WRITE.filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(p.marked.iter().map(|m| {
                let at = if m.write { 0.78 } else { 0.33 };
                Circle::new((m.at_ms, y(m.lane, at)), 6, WITNESS.stroke_width(2))
            }))
            .map_err(err)?;
        // One row of text per fault (up to 8, then again from the top), so that the names of
        // faults that begin together do not overwrite each other.
        let row_lanes = 14.0 / f64::from(lane_px);
        for (i, b) in p.bands.iter().enumerate() {
            let row = (i % 8) as f64 * row_lanes;
            chart
                .draw_series(std::iter::once(Text::new(
                    b.fault.clone(),
                    (b.from_ms, top - row),
                    ("sans-serif", 11),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Hit ratio (left) and database reads per second (right) over time, with the fault bands.
pub fn load(p: &Picture) -> Drawn {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        // Slices merged until the average one holds READS_PER_SLICE_MIN reads (at most 20 into
        // one): a short history's 200 slices hold a read or two each.
        let total: u64 = p.ok.iter().sum();
        let merge = (READS_PER_SLICE_MIN * p.ok.len() as u64)
            .div_ceil(total.max(1))
            .clamp(1, 20) as usize;
        let sum = |v: &[u64]| -> Vec<u64> { v.chunks(merge).map(|c| c.iter().sum()).collect() };
        let (ok, hits, db) = (sum(&p.ok), sum(&p.hits), sum(&p.db));
        let slice_ms = p.slice_ms() * merge as f64;
        let qps: Vec<f64> = db.iter().map(|&n| n as f64 / (slice_ms / 1e3)).collect();
        let qps_max = qps.iter().copied().fold(1.0, f64::max) * 1.1;
        let x_max = p.span_ms.max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption("Hit ratio and database reads over time", ("sans-serif", 15))
            .x_label_area_size(36)
            .y_label_area_size(60)
            .right_y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..1.05f64)
            .map_err(err)?
            .set_secondary_coord(0f64..x_max, 0f64..qps_max);
        chart
            .configure_mesh()
            .x_desc("ms since the history began")
            .y_desc("hit ratio")
            .draw()
            .map_err(err)?;
        chart
            .configure_secondary_axes()
            .y_desc("database reads / s")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(p.bands.iter().map(|b| {
                Rectangle::new(
                    [(b.from_ms, 0.0), (b.to_ms.max(b.from_ms), 1.05)],
                    FAULT.mix(BAND_OPACITY).filled(),
                )
            }))
            .map_err(err)?;
        // The hit ratio of each slice that had reads, as a step of its own: a line between two
        // slices with reads would invent the ones between.
        chart
            .draw_series(
                ok.iter()
                    .zip(&hits)
                    .enumerate()
                    .filter(|(_, (ok, _))| **ok > 0)
                    .map(|(i, (&ok, &hits))| {
                        let r = hits as f64 / ok as f64;
                        let x = i as f64 * slice_ms;
                        PathElement::new(vec![(x, r), (x + slice_ms, r)], RATIO.stroke_width(3))
                    }),
            )
            .map_err(err)?;
        let at = |i: usize| (i as f64 + 0.5) * slice_ms;
        chart
            .draw_secondary_series(LineSeries::new(
                qps.iter().enumerate().map(|(i, &q)| (at(i), q)),
                DB.stroke_width(2),
            ))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// How stale the stale reads were: a histogram of 30 bins up to the largest (or the bound,
/// `bound_ms`, drawn as a line), so that a reader sees which reads the bound let pass.
pub fn staleness(p: &Picture, bound_ms: Option<f64>) -> Drawn {
    const BINS: usize = 30;
    let max = p
        .staleness_ms
        .iter()
        .copied()
        .chain(bound_ms.map(|b| b * 1.05))
        .fold(0.0, f64::max)
        .max(1e-3);
    let width = max / BINS as f64;
    let mut counts = [0u64; BINS];
    for &s in &p.staleness_ms {
        counts[((s / width) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption(
                format!("Staleness of the {} stale reads", p.staleness_ms.len()),
                ("sans-serif", 15),
            )
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max, 0u64..top + top / 10 + 1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("staleness, ms (how long after a newer write completed the read began)")
            .y_desc("reads")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, &n)| n > 0)
                    .map(|(i, &n)| {
                        let x = i as f64 * width;
                        Rectangle::new([(x, 0), (x + width, n)], STALE.filled())
                    }),
            )
            .map_err(err)?;
        if let Some(b) = bound_ms {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(b, 0), (b, top + top / 10 + 1)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" bound {b} ms"),
                    (b, top + top / 10),
                    ("sans-serif", 12),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}
