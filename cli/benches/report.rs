//! `cargo bench -p aside-cli --bench report`: `aside report` on generated histories of 1 M and
//! 2 M ops (100,000 and 200,000 with `--quick`), beside `aside check` on the same file in the
//! same run: what a page costs over the verdicts alone, and whether it stays linear in ops.
//! Every stale read is a witness (a staleness bound of 1 ns), so the page rings a thousand of
//! them per million ops and may bin none away. Not a timed test: it prints, it never fails on
//! speed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use invariants::gen::{generate, Spec};

/// Runs the `aside` this bench was built with; exit 0 or 1 (a failing verdict) is a result.
fn aside(args: &[&str]) -> f64 {
    let began = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_aside"))
        .args(args)
        .output()
        .expect("aside runs");
    let secs = began.elapsed().as_secs_f64();
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "aside {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    secs
}

struct Measured {
    ops: u64,
    check_s: f64,
    report_s: f64,
    page_bytes: u64,
}

fn measure(dir: &Path, ops: u64) -> Measured {
    let file = dir.join(format!("history-{ops}.jsonl"));
    let spec = Spec {
        ops,
        ..Spec::default()
    };
    let out = std::io::BufWriter::new(std::fs::File::create(&file).expect("history file"));
    generate(&spec, out).expect("generated");
    let page = dir.join(format!("page-{ops}.html"));
    let (f, p) = (file.to_str().unwrap(), page.to_str().unwrap());
    let bound = "staleness_ns_max=1";
    // Check first, then the page, then check again: the two checks bracket the page, so a
    // machine that slows down meanwhile shows as two checks that disagree.
    let first = aside(&["check", f, "--bound", bound]);
    let report_s = aside(&["report", f, "-o", p, "--bound", bound]);
    let second = aside(&["check", f, "--bound", bound]);
    let page_bytes = std::fs::metadata(&page).expect("the page").len();
    Measured {
        ops,
        check_s: (first + second) / 2.0,
        report_s,
        page_bytes,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let million = if quick { 100_000 } else { 1_000_000 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!(
        "aside report beside aside check on generated histories (10,000 keys, 64 clients, one stale read in 1,000, each a witness)"
    );
    println!(
        "{:>10} {:>10} {:>11} {:>13} {:>10}",
        "ops", "check s", "report s", "report÷check", "page KiB"
    );
    let rows: Vec<Measured> = [million, 2 * million]
        .into_iter()
        .map(|ops| measure(dir.path(), ops))
        .collect();
    for m in &rows {
        println!(
            "{:>10} {:>10.2} {:>11.2} {:>13.2} {:>10}",
            m.ops,
            m.check_s,
            m.report_s,
            m.report_s / m.check_s,
            m.page_bytes / 1024
        );
    }
    let (one, two) = (&rows[0], &rows[1]);
    println!(
        "twice the ops: the page takes {:.2}x the time (linear: 2.00; check: {:.2}x), the page is {:.2}x the size",
        two.report_s / one.report_s,
        two.check_s / one.check_s,
        two.page_bytes as f64 / one.page_bytes as f64
    );
}
