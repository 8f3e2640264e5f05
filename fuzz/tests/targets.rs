//! Every fuzz target over its saved crashes, its corpus and a few thousand mutants from a fixed,
//! printed seed (the nightly job runs `aside-fuzz` with a longer budget and tonight's seed).

use aside_fuzz::{crash_report, fuzz, targets, Plan, REGRESSIONS};

/// Mutants per target here; `ASIDE_FUZZ_ITERATIONS` changes it.
const ITERATIONS: u64 = 3_000;

#[test]
fn every_target_keeps_its_contracts_on_its_corpus_and_its_mutants() {
    let seed = std::env::var("ASIDE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261203);
    let iterations = std::env::var("ASIDE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ITERATIONS);
    println!(
        "seed {seed} (ASIDE_FUZZ_SEED={seed} reruns these inputs), {iterations} mutants per target"
    );
    let plan = Plan {
        seed,
        iterations,
        crashes: std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes"),
        regressions: REGRESSIONS.into(),
    };
    let mut crashes = Vec::new();
    for t in targets::ALL {
        let corpus = (t.corpus)();
        assert!(!corpus.is_empty(), "{}: no corpus", t.name);
        let o = fuzz(t.name, &corpus, t.run, &plan).unwrap();
        println!("{}: {} inputs", t.name, o.inputs);
        if let Some((file, what)) = o.crash {
            crashes.push(crash_report(t.name, &file, &what));
        }
    }
    assert!(crashes.is_empty(), "\n{}", crashes.join("\n"));
}

#[test]
fn a_crashing_target_is_caught_saved_and_reported_with_its_replay() {
    fn picky(b: &[u8]) {
        assert!(!b.contains(&b'!'), "a bang");
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        seed: 1,
        iterations: 10_000,
        crashes: dir.path().join("crashes"),
        regressions: dir.path().join("regressions"),
    };
    let o = fuzz("picky", &[b"hello".to_vec()], picky, &plan).unwrap();
    let (file, what) = o.crash.expect("the mutants reach a '!'");
    assert!(what.contains("a bang"), "{what}");
    assert!(std::fs::read(&file).unwrap().contains(&b'!'));
    let report = crash_report("picky", &file, &what);
    assert!(report.contains("--target picky --input"), "{report}");
    // The same seed finds the same input.
    let again = fuzz("picky", &[b"hello".to_vec()], picky, &plan).unwrap();
    assert_eq!(again.crash.as_ref().unwrap().0, file);
    assert_eq!(again.inputs, o.inputs);
    // Kept as a regression, it is the first input of the next run, whatever its seed.
    let kept = plan.regressions.join("picky");
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::copy(&file, kept.join("bang")).unwrap();
    let other = Plan { seed: 99, ..plan };
    let next = fuzz("picky", &[b"hello".to_vec()], picky, &other).unwrap();
    assert_eq!(next.inputs, 1, "the regression runs first");
    assert!(next.crash.is_some());
}
