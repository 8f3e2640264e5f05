use super::*;
use crate::compare::{Comparison, Measured};

fn cell(strategy: &str, runs: u64, failures: &[(u64, &[&str])]) -> CellRuns {
    CellRuns {
        scenario: "fill-race".into(),
        strategy: strategy.into(),
        buggify: false,
        runs,
        failures: failures
            .iter()
            .map(|(seed, failed)| Failure {
                seed: *seed,
                failed: failed.iter().map(|s| s.to_string()).collect(),
                log: format!("fill-race-{strategy}-{seed}.jsonl"),
            })
            .collect(),
    }
}

fn shard(which: &str, cells: Vec<CellRuns>) -> Shard {
    Shard {
        shard: which.into(),
        first_seed: 1000,
        seeds: 4,
        cells,
        ..Shard::default()
    }
}

/// fill-race: naive finds staleness and convergence, versioned and durable hold.
fn a_good_night() -> Vec<Shard> {
    vec![
        shard(
            "1/2",
            vec![
                cell("naive", 2, &[(1000, &["staleness", "convergence"])]),
                cell("versioned", 2, &[]),
                cell("durable", 2, &[]),
            ],
        ),
        shard(
            "2/2",
            vec![
                cell("naive", 2, &[(1003, &["staleness"])]),
                cell("versioned", 2, &[]),
                cell("durable", 2, &[]),
            ],
        ),
    ]
}

#[test]
fn shards_split_the_jobs_evenly_and_every_job_has_exactly_one() {
    for n in 1..=5u64 {
        for job in 0..37usize {
            let owners = (1..=n).filter(|&i| in_shard(job, (i, n))).count();
            assert_eq!(owners, 1, "job {job} of {n} shards");
        }
    }
    assert_eq!(parse_shard("2/4"), Ok((2, 4)));
    for bad in ["0/4", "5/4", "2", "a/b", "1/0", ""] {
        let e = parse_shard(bad).unwrap_err();
        assert!(e.contains("I/N"), "{bad}: {e}");
    }
}

#[test]
fn a_night_merges_its_shards_judges_every_promise_and_groups_by_cell_and_invariant() {
    let night = merge(&a_good_night()).unwrap();
    assert_eq!(night.shards, ["1/2", "2/2"]);
    let naive = &night.cells[0];
    assert_eq!((naive.runs, naive.failures.len()), (4, 2));
    assert!(
        night.broken_promises.is_empty(),
        "{:?}",
        night.broken_promises
    );
    assert!(
        night.harness_errors.is_empty(),
        "{:?}",
        night.harness_errors
    );
    let sigs: Vec<(String, Vec<u64>)> = night
        .groups
        .iter()
        .map(|g| (g.signature(), g.seeds.clone()))
        .collect();
    assert_eq!(
        sigs,
        [
            (
                "fill-race / naive / staleness".to_string(),
                vec![1000, 1003]
            ),
            ("fill-race / naive / convergence".to_string(), vec![1000]),
        ]
    );
    assert_eq!(
        night.groups[0].replay(),
        "cargo sim --scenario fill-race --strategy naive --seed 1000"
    );
    assert!(!red(&night, &[]));
    let md = summary(&night, None, "");
    assert!(md.contains("**Green"), "{md}");
    assert!(
        md.contains("| fill-race / naive / staleness | 2 | seed 1000"),
        "{md}"
    );
}

#[test]
fn a_strategy_failing_where_it_holds_breaks_its_promise_and_the_night_is_red() {
    let mut shards = a_good_night();
    shards[1].cells[1] = cell("versioned", 2, &[(1001, &["staleness"])]);
    let night = merge(&shards).unwrap();
    assert_eq!(
        night.broken_promises.len(),
        1,
        "{:?}",
        night.broken_promises
    );
    assert!(night.broken_promises[0].contains("versioned"));
    assert!(red(&night, &[]));
    assert!(summary(&night, None, "").contains("**Red"));
}

#[test]
fn a_missing_shard_a_shard_twice_and_a_determinism_bug_are_reported_not_hidden() {
    let mut shards = a_good_night();
    shards[1].shard = "1/2".into();
    shards[0].determinism.push(Twice {
        scenario: "fill-race".into(),
        strategy: "versioned".into(),
        buggify: false,
        seed: 1001,
        first: "aa".into(),
        second: "bb".into(),
    });
    let night = merge(&shards).unwrap();
    let errors = night.harness_errors.join("\n");
    assert!(errors.contains("shard 1/2 appears twice"), "{errors}");
    assert!(errors.contains("shard 2/2 left no results"), "{errors}");
    assert_eq!(night.nondeterministic.len(), 1);
    assert!(red(&night, &[]));
    let mut other = a_good_night();
    other[1].first_seed = 7;
    assert!(merge(&other).unwrap_err().contains("one night's shards"));
    assert!(merge(&[]).unwrap_err().contains("no shard results"));
}

#[test]
fn news_is_a_changed_verdict_a_new_signature_or_a_witness_that_no_longer_fails() {
    let last = merge(&a_good_night()).unwrap();
    // Same failures, other seeds: nothing new, and no witness is run again.
    let mut same = a_good_night();
    same[0].cells[0] = cell("naive", 2, &[(1002, &["convergence", "staleness"])]);
    let tonight = merge(&same).unwrap();
    let t = news(&last, &tonight, |g| panic!("ran {}", g.signature()));
    assert!(t.news.is_empty() && t.errors.is_empty(), "{:?}", t.news);
    assert_eq!(t.known.len(), 2);

    // naive stops failing convergence; last night's witness, run again, still fails it: not
    // news, and the signature stays known (a rare failure coming back later is not new).
    let mut fewer = a_good_night();
    fewer[0].cells[0] = cell("naive", 2, &[(1000, &["staleness"])]);
    let tonight = merge(&fewer).unwrap();
    let mut ran = Vec::new();
    let t = news(&last, &tonight, |g| {
        ran.push(g.signature());
        Ok(true)
    });
    assert_eq!(ran, ["fill-race / naive / convergence"]);
    assert!(t.news.is_empty(), "{:?}", t.news);
    assert_eq!(t.known.len(), 2);
    let mut later = tonight.clone();
    later.known = t.known;
    let t = news(&later, &last, |_| Ok(true));
    assert!(t.news.is_empty(), "{:?}", t.news);
    // ... and when it no longer fails, that is news, and the signature leaves the known ones.
    let t = news(&last, &tonight, |_| Ok(false));
    assert!(t.news.iter().any(
        |x| matches!(x, News::NoLongerReplays { signature, .. } if signature.ends_with("convergence"))
    ));
    assert_eq!(t.known.len(), 1);
    assert!(red(&tonight, &t.news));

    // A cell that held and now fails is a changed verdict.
    let mut broke = a_good_night();
    broke[0].cells[1] = cell("versioned", 2, &[(1000, &["staleness"])]);
    let t = news(&last, &merge(&broke).unwrap(), |_| Ok(true));
    assert!(t.news.contains(&News::Verdict {
        cell: "fill-race / versioned".into(),
        was: "holds".into(),
        now: "fails staleness".into()
    }));

    // A new invariant failing: a new signature, no promise names it.
    let mut more = a_good_night();
    more[1].cells[0] = cell("naive", 2, &[(1003, &["staleness", "load"])]);
    let tonight = merge(&more).unwrap();
    let n = news(&last, &tonight, |_| Ok(true)).news;
    assert!(
        !tonight
            .groups
            .iter()
            .find(|g| g.invariant == "load")
            .unwrap()
            .promised
    );
    assert!(
        tonight
            .groups
            .iter()
            .find(|g| g.invariant == "staleness")
            .unwrap()
            .promised
    );
    assert!(
        n.contains(&News::Signature("fill-race / naive / load".into())),
        "{n:?}"
    );
    let md = summary(&tonight, Some(&n), "");
    assert!(
        md.contains("new failure signature: fill-race / naive / load"),
        "{md}"
    );

    // A cell last night did not run is reported and does not make the night red.
    let mut empty = last.clone();
    empty.cells.retain(|c| c.strategy != "durable");
    let n = news(&empty, &merge(&a_good_night()).unwrap(), |_| Ok(true)).news;
    assert_eq!(n, [News::NewCell("fill-race / durable".into())]);
    assert!(!red(&merge(&a_good_night()).unwrap(), &n));
}

#[test]
fn a_night_round_trips_through_its_json() {
    let night = merge(&a_good_night()).unwrap();
    let text = serde_json::to_string_pretty(&night).unwrap();
    assert_eq!(serde_json::from_str::<Night>(&text).unwrap(), night);
}

#[test]
fn a_containers_cell_is_news_when_its_verdict_is_not_the_recorded_one() {
    let m = |scenario: &str, containers: &str| Measured {
        scenario: scenario.into(),
        strategy: "naive".into(),
        containers: containers.into(),
    };
    let recorded = Comparison {
        runs_per_cell: 3,
        cells: vec![
            m("fill-race", "fails on 2 of 3 runs: staleness (2)"),
            m("scan-gap", "holds on 3 of 3 runs"),
        ],
        skipped: Vec::new(),
    };
    let tonight = Comparison {
        runs_per_cell: 3,
        cells: vec![
            m("fill-race", "fails on 1 of 3 runs: staleness (1)"),
            m("scan-gap", "fails on 1 of 3 runs: staleness (1)"),
            m("hot-key", "holds on 3 of 3 runs"),
        ],
        skipped: Vec::new(),
    };
    let n = containers_news(&recorded, &tonight);
    assert_eq!(
        n,
        [
            News::Containers {
                cell: "scan-gap / naive".into(),
                recorded: "holds on 3 of 3 runs".into(),
                tonight: "fails on 1 of 3 runs: staleness (1)".into(),
            },
            News::NewCell("containers hot-key / naive".into()),
        ]
    );
    assert!(n[0].fails_the_night() && !n[1].fails_the_night());
}

#[test]
fn a_containers_cell_recorded_as_failing_now_and_then_is_no_news_either_way() {
    let m = |containers: &str| Measured {
        scenario: "fill-race".into(),
        strategy: "naive".into(),
        containers: containers.into(),
    };
    let night = |containers: &str| Comparison {
        runs_per_cell: 3,
        cells: vec![m(containers)],
        skipped: Vec::new(),
    };
    let sometimes = night("fails on 1 of 3 runs: staleness (1)");
    let always = night("fails on 3 of 3 runs: staleness (3)");
    let holds = night("holds on 3 of 3 runs");
    assert!(containers_news(&sometimes, &holds).is_empty());
    assert!(
        containers_news(&holds, &sometimes).len() == 1,
        "never failed before"
    );
    assert!(
        containers_news(&always, &holds).len() == 1,
        "always failed before"
    );
    assert!(containers_news(&always, &sometimes).is_empty());
}

/// A finding is promised over seeds 1-20: a night of fewer seeds per cell that misses it names
/// the cell as not judged (green), and one of 20 that misses it breaks the promise (red).
#[test]
fn a_finding_missed_on_fewer_seeds_than_promised_is_not_judged_and_on_as_many_breaks() {
    let night_of = |runs| {
        merge(&[shard(
            "1/1",
            vec![
                cell("naive", runs, &[]),
                cell("versioned", runs, &[]),
                cell("durable", runs, &[]),
            ],
        )])
        .unwrap()
    };
    let small = night_of(2);
    assert!(
        small.broken_promises.is_empty(),
        "{:?}",
        small.broken_promises
    );
    assert_eq!(small.finds_unjudged.len(), 1, "{:?}", small.finds_unjudged);
    assert!(small.finds_unjudged[0].starts_with("fill-race / naive: holds on 2 of 2 seeds"));
    assert!(!red(&small, &[]));
    assert!(summary(&small, None, "").contains("Not judged: 1 cells"));
    let full = night_of(expect::SEEDS.count() as u64);
    assert!(full.finds_unjudged.is_empty());
    assert_eq!(full.broken_promises.len(), 1, "{:?}", full.broken_promises);
    assert!(full.broken_promises[0].contains("no longer finds"));
    assert!(red(&full, &[]));
}
