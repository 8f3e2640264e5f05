//! The nightly as a team runs it, on one scenario and two seeds: two shards, their triage, and
//! the next night's triage against it; bad input is one line and exit 2.
#![cfg(madsim)]

use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn two_shards_merge_into_one_night_and_the_same_night_again_is_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for shard in ["1/2", "2/2"] {
        let o = sim(&[
            "nightly",
            "--scenario",
            "split-brain",
            "--seeds",
            "2",
            "--first-seed",
            "1",
            "--shard",
            shard,
            "--determinism-every",
            "1",
            "--out",
            out,
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = sim(&["triage", out, "--shrink-max", "1"]);
    let first = text(&o);
    // split-brain: versioned and naive fail staleness on these seeds, durable holds; two seeds
    // are fewer than the promises are made over, so whether the night is red is the promises'.
    assert!(matches!(o.status.code(), Some(0 | 1)), "{first}");
    let night: sim::triage::Night =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(night.shards, ["1/2", "2/2"]);
    assert_eq!(
        night.cells.iter().map(|c| c.runs).sum::<u64>(),
        6,
        "{first}"
    );
    assert_eq!(night.determinism_checked, 6);
    assert!(night.nondeterministic.is_empty(), "{first}");
    let g = night
        .groups
        .iter()
        .find(|g| g.strategy == "naive" && g.invariant == "staleness")
        .expect("split-brain's naive staleness on seeds 1-2");
    // Each group's witness log is in the night's folder; the first one was shrunk.
    assert!(dir.path().join(&g.log).exists(), "{first}");
    let shrunk = night.groups.iter().filter_map(|g| g.shrunk.as_ref()).next();
    let shrunk = shrunk.expect("one witness shrunk");
    assert!(dir.path().join(&shrunk.log).exists(), "{first}");
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.contains("| split-brain / naive / staleness |"),
        "{summary}"
    );
    assert!(summary.contains("tonight is the baseline"), "{summary}");

    // The same night against itself: nothing new.
    let last = dir.path().join("last.json");
    std::fs::copy(dir.path().join("results.json"), &last).unwrap();
    let o = sim(&[
        "triage",
        out,
        "--last",
        last.to_str().unwrap(),
        "--shrink-max",
        "0",
    ]);
    let again = text(&o);
    assert!(
        again.contains("## New since the last night\n\nNothing."),
        "{again}"
    );
    assert_eq!(
        o.status.code(),
        Some(u8::from(!night.broken_promises.is_empty()).into()),
        "{again}"
    );
}

#[test]
fn bad_nightly_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for (args, says) in [
        (vec!["triage", out], "no shard results"),
        (vec!["nightly", "--shard", "3/2", "--out", out], "I/N"),
        (vec!["nightly", "--scenario", "nope", "--out", out], "nope"),
    ] {
        let o = sim(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(says), "{args:?}: {t}");
    }
    std::fs::write(dir.path().join("shard-1-of-1.json"), "{not json").unwrap();
    let o = sim(&["triage", out]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("shard-1-of-1.json") && t.contains("cargo sim nightly"),
        "{t}"
    );
}

#[test]
fn a_spent_budget_starts_no_run_and_counts_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = sim(&[
        "nightly",
        "--scenario",
        "split-brain",
        "--seeds",
        "2",
        "--budget-min",
        "0",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let shard: sim::triage::Shard = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("shard-1-of-1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shard.skipped_for_budget, 6);
    assert_eq!(shard.cells.iter().map(|c| c.runs).sum::<u64>(), 0);
    let o = sim(&["triage", out, "--shrink-max", "0"]);
    assert!(
        text(&o).contains("6 runs not started: the time budget ran out."),
        "{}",
        text(&o)
    );
}
