//! A scenario file of a user's own (docs/scenarios.md's example, not one of the catalog's) in the
//! simulator: it runs, a failure replays from its seed log alone, shrinks, and the shrunk run
//! replays; malformed files are refused on the command line in one line with exit 2.
#![cfg(madsim)]

use std::path::Path;

use aside::Builtin;
use chaos::scenario::file;
use invariants::Invariant;
use sim::replay::replay;
use sim::runner::{run_one, save};
use sim::shrink::shrink;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/scenarios/failover-under-pause.toml"
);

#[test]
fn a_users_scenario_runs_replays_from_its_log_and_shrinks() {
    let sc = file::load(Path::new(EXAMPLE)).unwrap();
    let held = run_one(&sc, Builtin::Durable, 1);
    assert!(held.failed.is_empty(), "{:?}", held.failed);
    // versioned loses tombstones with the old master: a client reads its own write back stale.
    let seed = (1..=20)
        .find(|&s| {
            run_one(&sc, Builtin::Versioned, s)
                .failed
                .contains(&Invariant::ReadYourWrites)
        })
        .expect("versioned fails read-your-writes on some seed of 1-20");
    println!("seed {seed}");
    let r = run_one(&sc, Builtin::Versioned, seed);
    let dir = tempfile::tempdir().unwrap();
    let log = save(dir.path(), &r).unwrap();
    // The log replays with no file but itself: the header carries the scenario.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().next().unwrap().contains("\"scenario_file\""));
    let (same, msg) = replay(&log).unwrap();
    assert!(same, "{msg}");
    let s = shrink(
        &sc,
        Builtin::Versioned,
        seed,
        Invariant::ReadYourWrites,
        |w| println!("kept: {w}"),
    )
    .expect("it fails, so it shrinks");
    assert!(s.result.failed.contains(&Invariant::ReadYourWrites));
    let min = dir.path().join("min.jsonl");
    std::fs::write(&min, &s.result.history).unwrap();
    let (same, msg) = replay(&min).unwrap();
    assert!(same, "the shrunk run replays: {msg}");
    // A header edited by hand is refused, not a panic.
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(
        &edited,
        text.replacen("\"l1_ttl_ms\":200", "\"l1_ttl_ms\":0", 1),
    )
    .unwrap();
    let e = replay(&edited).unwrap_err();
    assert!(e.contains("workload.l1_ttl_ms: is 0"), "{e}");
}

#[test]
fn five_malformed_files_are_refused_in_one_line_naming_the_field() {
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (i, (from, to, says)) in [
        (
            "l1_ttl_ms = 200",
            "l1_ttl = 200",
            ":7: unknown field `l1_ttl`",
        ),
        (
            "l1_ttl_ms = 200",
            "l1_ttl_ms = 0",
            ":7: workload.l1_ttl_ms: is 0",
        ),
        (
            "hit_ratio_min = 0.5",
            "hit_ratio_min = 5",
            ":12: bounds.hit_ratio_min: must be a number between 0 and 1",
        ),
        (
            "target = \"memcached-2\"",
            "target = \"memcached-7\"",
            ":24: fault[2].target: memcached-7 does not exist",
        ),
        (
            "holds = true",
            "finds = [\"stalness\"]",
            ":35: unknown invariant \"stalness\"",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(example.matches(from).count(), 1, "{from}");
        let f = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&f, example.replace(from, to)).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
            .arg("check-scenario")
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("bad-{i}.toml{says}")), "{err}");
        assert!(!err.contains("panicked"));
        // The campaign refuses it the same way, before running anything.
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
            .arg("--scenario-file")
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
    }
}

/// `cargo sim`'s exit status is whether every promise held: a failure the scenario promises to
/// find exits 0, the same failure under a promise to hold exits 1 with the broken promise and
/// the command that replays it on the screen, and a failure where nothing is promised exits 1.
#[test]
fn the_campaign_exits_by_its_promises_not_by_its_failures() {
    let dir = tempfile::tempdir().unwrap();
    let run = |promise: &str| {
        let f = dir.path().join("race.toml");
        std::fs::write(
            &f,
            format!("name = \"my-race\"\nabout = \"the fill race, no faults\"\n{promise}"),
        )
        .unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
            .arg("--scenario-file")
            .arg(&f)
            .args(["--strategy", "naive", "--seed", "1", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    // fill-race's seed 1 fails staleness with naive (docs/results.md).
    let (code, out) = run("[promise.naive]\nfinds = [\"staleness\"]\nwhy = \"the race\"\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("every promise held"), "{out}");
    let (code, out) = run("[promise.naive]\nholds = true\nwhy = \"wrongly\"\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("broken promise: my-race / naive is promised to hold"),
        "{out}"
    );
    assert!(out.contains("replay:  cargo sim --scenario-file"), "{out}");
    let (code, out) = run("");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(dir.path().join("my-race-naive-1.report.txt").exists());
}
