//! The report as a person sees it: pages opened in headless Chromium (Debian's `chromium`) and
//! their screenshots read pixel by pixel. The HTML tests beside this one prove the shapes are
//! in the markup; these prove a browser draws them: the screenshot is not blank, a failing
//! split-brain run's fault band is shaded where the same run without its fault lines has none,
//! and its stale reads and witness rings are drawn where a holding history shows only the
//! legend's swatches.
//!
//! Without a browser the tests say so and pass, unless `ASIDE_REQUIRE_CHROMIUM=1` (the test
//! command sets it where it installed `chromium`), when they fail. `ASIDE_CHROMIUM=PATH` names
//! another Chromium-like binary. The screenshots stay in `target/aside/report-browser/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plotters::style::RGBColor;

use super::tests::fixture;
use super::*;

/// How long one screenshot may take before the test gives up on the browser.
const SCREENSHOT_TIMEOUT_MS: u64 = 60_000;
/// The viewport: as wide as the page's body, tall enough for the verdicts and the three figures.
const WINDOW: (u32, u32) = (1300, 3200);
/// How far a drawn pixel may be from its colour per channel (antialiasing, colour management).
const CHANNEL_SLACK: i32 = 6;

/// The browser to use, or None (the test then passes, saying why) where none is installed
/// and none is required.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ASIDE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var("ASIDE_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "ASIDE_REQUIRE_CHROMIUM=1 but no chromium on PATH: apt-get install chromium, or set ASIDE_CHROMIUM"
        );
        eprintln!("no chromium on PATH: the browser tests are skipped (apt-get install chromium)");
    }
    found
}

/// A screenshot of a page, as rows of RGB pixels.
struct Shot {
    width: usize,
    rgb: Vec<u8>,
}

impl Shot {
    fn pixels(&self) -> impl Iterator<Item = (i32, i32, i32)> + '_ {
        self.rgb
            .chunks_exact(3)
            .map(|p| (i32::from(p[0]), i32::from(p[1]), i32::from(p[2])))
    }

    /// Pixels within [`CHANNEL_SLACK`] of `c`.
    fn count(&self, c: (i32, i32, i32)) -> usize {
        let near = |a: i32, b: i32| (a - b).abs() <= CHANNEL_SLACK;
        self.count_where(|p| near(p.0, c.0) && near(p.1, c.1) && near(p.2, c.2))
    }

    fn count_where(&self, f: impl Fn((i32, i32, i32)) -> bool) -> usize {
        self.pixels().filter(|&p| f(p)).count()
    }

    /// The share of pixels that are not white.
    fn inked(&self) -> f64 {
        let n = self.rgb.len() / 3;
        let inked = self
            .pixels()
            .filter(|p| p.0.min(p.1).min(p.2) < 245)
            .count();
        inked as f64 / n as f64
    }
}

fn rgb(c: RGBColor) -> (i32, i32, i32) {
    (i32::from(c.0), i32::from(c.1), i32::from(c.2))
}

/// Whether a pixel is the fault colour washed over the page: one band of [`draw::FAULT`] at
/// [`draw::BAND_OPACITY`] over white, or several overlapping faults' bands, which deepen it
/// towards the full colour. Red stays near full, blue falls furthest, green between: no other
/// colour the report draws (blues, green, greys, the stale red, the witness purple) is so.
fn fault_washed(p: (i32, i32, i32)) -> bool {
    let (r, g, b) = p;
    let full = rgb(draw::FAULT);
    r >= 255 - CHANNEL_SLACK && g >= full.1 - CHANNEL_SLACK && g < r - 8 && b < g - 15
}

/// Renders `history` (with `bounds`) as the report page, opens it in `browser` and reads the
/// screenshot back; both files are kept under `target/aside/report-browser/NAME.*`.
fn screenshot(browser: &Path, history: &Path, name: &str) -> Shot {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/aside/report-browser");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let html = dir.join(format!("{name}.html"));
    let png = dir.join(format!("{name}.png"));
    std::fs::write(&html, page(history, &[]).unwrap()).unwrap();
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
        ])
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} did not start: {e}", browser.display()));
    let deadline = Instant::now() + Duration::from_millis(SCREENSHOT_TIMEOUT_MS);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} took over {SCREENSHOT_TIMEOUT_MS} ms to screenshot {name}",
                browser.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{} exited {status} on {name}",
        browser.display()
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        other => panic!("{name}.png: unexpected colour type {other:?}"),
    };
    assert_eq!(info.width, WINDOW.0, "{name}.png is the window's width");
    Shot {
        width: info.width as usize,
        rgb,
    }
}

/// The split-brain run with every line of `line_type` left out (`fault`: the same ops,
/// nothing to shade; `role`: the same actions, no master spans).
fn without(history: &Path, dir: &Path, line_type: &str) -> PathBuf {
    let text = std::fs::read_to_string(history).unwrap();
    let prefix = format!("{{\"type\":\"{line_type}\"");
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with(&prefix)).collect();
    assert!(
        kept.len() < text.lines().count(),
        "the fixture has {line_type} lines"
    );
    let out = dir.join(format!("split-brain-no-{line_type}s.jsonl"));
    std::fs::write(&out, kept.join("\n") + "\n").unwrap();
    out
}

#[test]
fn chromium_draws_a_failing_split_brain_runs_fault_band_stale_reads_and_witness_rings() {
    let Some(browser) = chromium() else { return };
    let history = fixture("split-brain-small-versioned-2.jsonl");
    let report = invariants::check_path(&history, &[]).unwrap();
    let stale = report.verdict(invariants::Invariant::Staleness).unwrap();
    assert!(
        stale.fails(),
        "the fixture fails staleness: {}",
        stale.summary
    );

    let failing = screenshot(&browser, &history, "split-brain");
    let tmp = tempfile::tempdir().unwrap();
    let unshaded = screenshot(
        &browser,
        &without(&history, tmp.path(), "fault"),
        "split-brain-no-faults",
    );
    let holding = screenshot(&browser, &fixture("holds.jsonl"), "holds");
    let roleless = screenshot(
        &browser,
        &without(&history, tmp.path(), "role"),
        "split-brain-no-roles",
    );
    println!(
        "screenshots {} px wide in target/aside/report-browser/",
        failing.width
    );

    // Not blank: text, axes and figures cover a good part of the page.
    let inked = failing.inked();
    assert!(
        inked > 0.03,
        "the screenshot is nearly blank: {inked:.4} inked"
    );

    // The fault band: the orange wash over the timeline and the ratio figure, where the same
    // ops without their faults have only the legend's swatch.
    let (shaded, bare) = (
        failing.count_where(fault_washed),
        unshaded.count_where(fault_washed),
    );
    println!("band pixels: {shaded} with the faults, {bare} without");
    assert!(
        shaded > bare + 5_000,
        "no fault band drawn: {shaded} band pixels, {bare} without faults"
    );

    // The witness keys' swim lanes: each Redis node shaded while it was a master, where the
    // same run without its role lines has only the legend's swatch.
    let (spans, swatch) = (
        failing.count(rgb(super::swim::MASTER)),
        roleless.count(rgb(super::swim::MASTER)),
    );
    println!("master-span pixels: {spans} with the roles, {swatch} without");
    assert!(
        spans > swatch + 5_000,
        "no master span drawn: {spans} pixels, {swatch} without the role lines"
    );

    // Stale reads and the rings around the failing verdicts' witness ops, beyond the legend's
    // swatches, which the holding page has too.
    for (what, c, min) in [
        ("stale read", draw::STALE, 200),
        ("witness ring", draw::WITNESS, 100),
    ] {
        let (here, legend_only) = (failing.count(rgb(c)), holding.count(rgb(c)));
        println!("{what} pixels: {here} failing, {legend_only} holding");
        assert!(
            here > legend_only + min,
            "no {what} drawn: {here} pixels against {legend_only} on a holding page"
        );
    }
}
