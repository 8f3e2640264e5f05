use std::path::PathBuf;

use super::*;

pub(super) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../invariants/test_data")
        .join(name)
}

/// The figure `<figure id="ID">` of a page.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure id=\"{id}\""))
        .unwrap_or_else(|| panic!("no figure {id}"));
    let end = html[start..].find("</figure>").expect("closed");
    &html[start..start + end]
}

/// The swim lanes of a page.
fn lanes(html: &str) -> Vec<&str> {
    html.split("<figure class=\"lane\">")
        .skip(1)
        .map(|rest| &rest[..rest.find("</figure>").expect("closed")])
        .collect()
}

/// Circles in the witness colour in the timeline (the legend is the page's, not the
/// figure's).
fn rings(html: &str) -> usize {
    circles(figure(html, "timeline"), draw::WITNESS)
}

/// Circles in colour `c`.
fn circles(svg: &str, c: plotters::style::RGBColor) -> usize {
    let witness = hex(c);
    svg.split("<circle")
        .skip(1)
        .filter(|rest| rest.split('>').next().unwrap_or("").contains(&witness))
        .count()
}

/// The ops the failing verdicts of `report` name.
fn witnessed_ops(report: &Report) -> usize {
    let ops: BTreeSet<u64> = report
        .verdicts
        .iter()
        .filter(|v| v.fails())
        .flat_map(|v| v.witness.ops.iter().copied())
        .collect();
    ops.len()
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[test]
fn a_failing_history_shows_its_verdict_its_fault_band_and_rings_its_witness_ops() {
    let html = page(&fixture("fill-race.jsonl"), &[]).unwrap();
    assert_eq!(html.matches("<figure id=").count(), 3, "three figures");
    assert_eq!(lanes(&html).len(), 1, "one witness key, one swim lane");
    assert!(
        html.contains("<p class=\"fails\">Fails: staleness"),
        "verdict first"
    );
    assert!(html.contains("<tr class=\"fails\"><td>staleness</td><td>fails</td>"));
    // The fault band and the stale read are drawn in their colours.
    assert!(html.contains(&hex(draw::FAULT)), "fault band");
    assert!(html.contains(&hex(draw::STALE)), "stale read");
    // The staleness verdict's witness: the write and the stale read after it, ringed and
    // quoted as the history's own lines.
    let report = invariants::check_path(&fixture("fill-race.jsonl"), &[]).unwrap();
    let v = report
        .verdict(invariants::Invariant::Staleness)
        .expect("a staleness verdict");
    assert!(!v.witness.ops.is_empty());
    assert_eq!(
        rings(&html),
        witnessed_ops(&report),
        "one ring per witness op"
    );
    assert!(html.contains("&quot;id&quot;:3"), "the stale read quoted");
    assert!(html.contains("<h2>The full report</h2>"));
}

#[test]
fn a_holding_history_says_so_and_rings_nothing() {
    let html = page(&fixture("holds.jsonl"), &[]).unwrap();
    assert!(html.contains("Every gating invariant holds."));
    assert_eq!(rings(&html), 0);
    assert!(!html.contains("<tr class=\"fails\">"));
    assert!(lanes(&html).is_empty() && !html.contains("Witness keys"));
}

/// The split-brain run's lanes: the old master shaded until its demotion, the replica from its
/// promotion, the tombstone the old master acknowledged and lost ringed on its row. Without
/// the role lines, the same run's lanes shade nothing and name no role change.
#[test]
fn a_split_brain_lane_shows_each_masters_span_and_rings_the_lost_tombstone_on_its_node() {
    let history = fixture("split-brain-small-versioned-2.jsonl");
    let html = page(&history, &[]).unwrap();
    let ls = lanes(&html);
    assert_eq!(ls.len(), swim::KEYS_MAX, "a lane per witness key");
    let first = ls[0];
    assert!(
        first.contains("listings:v1:r/rust:hot"),
        "the staleness witness's key first"
    );
    for text in [
        "l1 redis-master",
        "l1 redis-replica",
        "made master",
        "demoted",
        "l2 memcached-",
        "reads",
    ] {
        assert!(first.contains(text), "{text}");
    }
    assert!(first.contains(&hex(swim::MASTER)), "master spans shaded");
    assert!(
        circles(first, draw::WITNESS) >= 3,
        "the chain's lines ringed"
    );
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("no-roles.jsonl");
    let text = std::fs::read_to_string(&history).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"type\":\"role\""))
        .collect();
    std::fs::write(&plain, kept.join("\n") + "\n").unwrap();
    let html = page(&plain, &[]).unwrap();
    let first = lanes(&html)[0];
    assert!(!first.contains(&hex(swim::MASTER)) && !first.contains("demoted"));
    assert!(
        first.contains("l1 redis-master"),
        "the actions still name their node"
    );
}

#[test]
fn a_large_history_is_binned_and_never_loses_a_witness() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.jsonl");
    let spec = invariants::gen::Spec {
        keys: 500,
        ops: 100_000,
        clients: 16,
        stale_every: 5_000,
        seed: invariants::gen::test_seed("report-large"),
        ..Default::default()
    };
    println!("seed {}", spec.seed);
    invariants::gen::generate(&spec, std::fs::File::create(&file).unwrap()).unwrap();
    // A bound below the injected staleness: every stale read is a witness.
    let bound = [Override::parse("staleness_ns_max=1").unwrap()];
    let report = invariants::check_path(&file, &bound).unwrap();
    let v = report.verdict(invariants::Invariant::Staleness).unwrap();
    assert!(v.fails(), "{}", v.summary);
    let html = page(&file, &bound).unwrap();
    assert_eq!(rings(&html), witnessed_ops(&report));
    // Binned: far fewer shapes than ops.
    assert!(
        html.matches("<rect").count() < 40_000,
        "{} rects",
        html.matches("<rect").count()
    );
}

#[test]
fn bad_input_is_one_line_naming_the_file_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"type\":\"header\"\n").unwrap();
    let e = page(&bad, &[]).unwrap_err();
    assert!(e.contains("bad.jsonl") && !e.contains('\n'), "{e}");
    let e = page(&dir.path().join("missing.jsonl"), &[]).unwrap_err();
    assert!(e.contains("missing.jsonl"), "{e}");
    let out = dir.path().join("no-such-dir/page.html");
    let e = write_atomically(&out, "x").unwrap_err();
    assert!(e.contains("writable directory"), "{e}");
    assert!(!out.exists());
}

#[test]
fn a_fault_band_is_labelled_by_kind_target_and_parameters() {
    use picture::fault_name;
    assert_eq!(
        fault_name(r#"{"kind":"kill","target":"redis-master"}"#),
        "kill redis-master"
    );
    assert_eq!(
        fault_name(r#"{"kind":"partition","target":"apps","peers":"redis","one_way":true}"#),
        "partition apps peers=redis one_way=true"
    );
    assert_eq!(fault_name("not json"), "not json");
}

#[test]
fn a_night_becomes_a_matrix_linking_each_failure_to_its_witness_page() {
    use sim::triage::{CellRuns, Failure, Shard};
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("fill-race.jsonl"),
        dir.path().join("fill-race-naive-7.jsonl"),
    )
    .unwrap();
    let cell = |strategy: &str, failures: Vec<Failure>| CellRuns {
        scenario: "fill-race".into(),
        strategy: strategy.into(),
        buggify: false,
        runs: 1,
        failures,
    };
    let shard = Shard {
        shard: "1/1".into(),
        first_seed: 7,
        seeds: 1,
        cells: vec![
            cell(
                "naive",
                vec![Failure {
                    seed: 7,
                    failed: vec!["staleness".into()],
                    log: "fill-race-naive-7.jsonl".into(),
                }],
            ),
            cell("durable", vec![]),
        ],
        ..Shard::default()
    };
    let night = sim::triage::merge(&[shard]).unwrap();
    std::fs::write(
        dir.path().join("results.json"),
        serde_json::to_string(&night).unwrap(),
    )
    .unwrap();
    // The containers world ran two of the cells: naive held where the simulator finds
    // staleness (a disagreement, red), durable held (green).
    let measured = |strategy: &str| sim::compare::Measured {
        scenario: "fill-race".into(),
        strategy: strategy.into(),
        containers: "holds on 3 of 3 runs".into(),
    };
    let compare = sim::compare::Comparison {
        runs_per_cell: 3,
        cells: vec![measured("naive"), measured("durable")],
        skipped: Vec::new(),
    };
    std::fs::write(
        dir.path().join("compare.json"),
        serde_json::to_string(&compare).unwrap(),
    )
    .unwrap();
    let out = dir.path().join("report");
    assert_eq!(night::pages(dir.path(), &out).unwrap(), 2);
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    // naive's staleness is a promised finding (amber), durable holds (green).
    assert!(
        index.contains("<a href=\"fill-race-naive-7.html\""),
        "{index}"
    );
    assert!(index.contains("<td class=\"finds\""), "{index}");
    assert!(
        index.contains("<td class=\"holds\">holds (1)</td>"),
        "{index}"
    );
    assert!(index.contains("<th>naive: containers</th>"), "{index}");
    assert!(
        index.contains("<td class=\"fails\" title=\"disagrees with the simulator's promise\">holds on 3 of 3 runs</td>"),
        "{index}"
    );
    assert!(
        index.contains("<td class=\"holds\" title=\"holds as the simulator promises\">holds on 3 of 3 runs</td>"),
        "{index}"
    );
    let page = std::fs::read_to_string(out.join("fill-race-naive-7.html")).unwrap();
    assert!(page.contains("Fails: staleness"));
    // A folder the triage never judged: one line naming the fix.
    let empty = tempfile::tempdir().unwrap();
    let e = night::pages(empty.path(), &out).unwrap_err();
    assert!(e.contains("cargo sim triage"), "{e}");
}
