//! Randomized suites for the checkers: agreement with a brute-force oracle, exactness against a
//! model with injected staleness, invariance under renaming and shuffling, shrinking to minimal
//! failing histories, and the fast line parser against serde_json.

use std::collections::{BTreeMap, HashMap};

use invariants::gen::{generate, Spec};
use invariants::history::{
    parse_line, parse_line_serde, FaultAction, OpKind, Outcome, Probe, Source,
};
use invariants::write::{op, Writer};
use invariants::Invariant;
use invariants::{check_str, Figure, Header, Report, Status};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// Random concurrent histories and a brute-force oracle.

#[derive(Debug, Clone)]
struct GOp {
    client: u64,
    key: u8,
    write: bool,
    invoke: u64,
    dur: u64,
    outcome: u8,
    pick: u8,
    source: u8,
}

#[derive(Debug, Clone)]
struct GHist {
    ops: Vec<GOp>,
    faults: Vec<(u64, u64, u8)>,
    probes: Vec<(u8, u8, Option<u8>)>,
}

fn g_op() -> impl Strategy<Value = GOp> {
    (
        0..4u64,
        0..3u8,
        prop::bool::weighted(0.3),
        0..200u64,
        0..40u64,
        0..10u8,
        any::<u8>(),
        0..6u8,
    )
        .prop_map(
            |(client, key, write, invoke, dur, outcome, pick, source)| GOp {
                client,
                key,
                write,
                invoke,
                dur,
                outcome,
                pick,
                source,
            },
        )
}

fn g_hist() -> impl Strategy<Value = GHist> {
    (
        prop::collection::vec(g_op(), 0..40),
        prop::collection::vec((0..200u64, 0..80u64, 0..2u8), 0..3),
        prop::collection::vec((0..3u8, 0..4u8, prop::option::of(0..6u8)), 0..6),
    )
        .prop_map(|(ops, faults, probes)| GHist {
            ops,
            faults,
            probes,
        })
}

const SOURCES: [Source; 6] = [
    Source::L0,
    Source::L1,
    Source::L2,
    Source::Db,
    Source::Replica,
    Source::Wait,
];
const TIERS: [Source; 4] = [Source::L1, Source::L2, Source::L0, Source::Db];

/// A concrete op with everything the oracle needs.
#[derive(Debug, Clone)]
struct COp {
    id: u64,
    client: u64,
    key: String,
    write: bool,
    invoke: u64,
    complete: u64,
    outcome: Outcome,
    version: Option<u64>,
    source: Option<Source>,
}

struct Concrete {
    ops: Vec<COp>,
    faults: Vec<(u64, u64, String)>,
    probes: Vec<(String, u64, Source, Option<u64>)>,
    text: String,
}

fn concretize(h: &GHist) -> Concrete {
    let mut next_version: HashMap<u8, u64> = HashMap::new();
    let mut ops = Vec::new();
    let end = 300;
    // Writes first, in generation order: the database hands out versions in that order.
    for (i, g) in h.ops.iter().enumerate() {
        let outcome = match g.outcome {
            0..=6 => Outcome::Ok,
            7..=8 => Outcome::Unknown,
            _ => Outcome::Fail,
        };
        let (version, source) = if g.write {
            let v = next_version.entry(g.key).or_insert(0);
            *v += 1;
            let known = outcome != Outcome::Unknown || g.pick % 2 == 0;
            (known.then_some(*v), None)
        } else {
            (None, Some(SOURCES[g.source as usize]))
        };
        ops.push(COp {
            id: i as u64 + 1,
            client: g.client,
            key: format!("k{}", g.key),
            write: g.write,
            invoke: g.invoke,
            complete: g.invoke + g.dur,
            outcome,
            version,
            source,
        });
    }
    for (op, g) in ops.iter_mut().zip(&h.ops) {
        if !op.write {
            if op.outcome == Outcome::Ok {
                let n = next_version.get(&g.key).copied().unwrap_or(0);
                op.version = Some(u64::from(g.pick) % (n + 2));
            } else {
                op.source = None;
            }
        }
    }
    let faults: Vec<(u64, u64, String)> = h
        .faults
        .iter()
        .map(|&(s, len, t)| (s, s + len, format!("target-{t}")))
        .collect();
    let probes: Vec<(String, u64, Source, Option<u64>)> = h
        .probes
        .iter()
        .map(|&(k, t, v)| (format!("k{k}"), end, TIERS[t as usize], v.map(u64::from)))
        .collect();
    let mut w = Writer::new(Vec::new());
    let config = json!({"staleness_ns_max": 50, "availability_min": 0.7, "hit_ratio_min": 0.6, "db_qps_max": null});
    w.header(&Header {
        format: 1,
        world: "prop".into(),
        scenario: "random".into(),
        strategy: "none".into(),
        seed: 0,
        commit: String::new(),
        config: config.as_object().unwrap().clone(),
    })
    .unwrap();
    for o in &ops {
        let f = if o.write { OpKind::Write } else { OpKind::Read };
        let mut x = op(o.id, o.client, &o.key, f, o.invoke, o.complete, o.outcome);
        x.version = o.version;
        x.source = o.source;
        w.op(&x).unwrap();
    }
    for (s, e, t) in &faults {
        let f = json!({"kind": "pause", "target": t});
        w.fault(*s, FaultAction::Start, &f, None).unwrap();
        // Some faults are seen taking effect, some are not (a harness error the checkers report).
        if t.ends_with('0') {
            w.fault(*s, FaultAction::Observed, &f, Some("no reply"))
                .unwrap();
        }
        w.fault(*e, FaultAction::Stop, &f, None).unwrap();
    }
    for (k, at, tier, v) in &probes {
        w.probe(&Probe {
            key: k.as_str().into(),
            at_ns: *at,
            tier: *tier,
            version: *v,
        })
        .unwrap();
    }
    let text = String::from_utf8(w.into_inner()).unwrap();
    Concrete {
        ops,
        faults,
        probes,
        text,
    }
}

#[derive(Debug, PartialEq)]
struct OracleFigures {
    delta: u64,
    stale: u64,
    phantoms: u64,
    ryw: u64,
    monotonic: u64,
    during: u64,
    served: u64,
    steady: u64,
    hits: u64,
    lost: u64,
}

/// Every invariant straight from its definition in docs/history-format.md: every read against every op.
fn oracle(c: &Concrete) -> OracleFigures {
    let ok_read = |o: &&COp| !o.write && o.outcome == Outcome::Ok;
    let reads: Vec<&COp> = c.ops.iter().filter(ok_read).collect();
    let writes: Vec<&COp> = c.ops.iter().filter(|o| o.write).collect();
    let (mut delta, mut stale) = (0, 0);
    let (mut phantoms, mut ryw, mut monotonic) = (0, 0, 0);
    for r in &reads {
        let v = r.version.unwrap();
        let newer = writes
            .iter()
            .filter(|w| w.key == r.key && w.outcome == Outcome::Ok && w.version.unwrap() > v)
            .map(|w| w.complete)
            .min();
        if let Some(c) = newer.filter(|&c| c < r.invoke) {
            stale += 1;
            delta = u64::max(delta, r.invoke - c);
        }
        let written = v == 0
            || writes.iter().any(|w| {
                w.key == r.key
                    && w.outcome != Outcome::Fail
                    && (w.version == Some(v)
                        || (w.version.is_none() && w.outcome == Outcome::Unknown))
                    && w.invoke < r.complete
            });
        phantoms += u64::from(!written);
        let own = writes.iter().any(|w| {
            w.key == r.key
                && w.client == r.client
                && w.outcome == Outcome::Ok
                && w.complete < r.invoke
                && w.version.unwrap() > v
        });
        ryw += u64::from(own);
        let went_back = reads.iter().any(|p| {
            p.key == r.key
                && p.client == r.client
                && p.complete < r.invoke
                && p.version.unwrap() > v
        });
        monotonic += u64::from(went_back);
    }
    let in_fault = |t: u64| c.faults.iter().any(|(s, e, _)| *s <= t && t < *e);
    let all_reads: Vec<&COp> = c.ops.iter().filter(|o| !o.write).collect();
    let during = all_reads.iter().filter(|r| in_fault(r.invoke)).count() as u64;
    let served = all_reads
        .iter()
        .filter(|r| in_fault(r.invoke) && r.outcome == Outcome::Ok)
        .count() as u64;
    let overlaps = |a: u64, b: u64| c.faults.iter().any(|(s, e, _)| *s <= b && a < *e);
    let steady: Vec<&&COp> = reads
        .iter()
        .filter(|r| !overlaps(r.invoke, r.complete))
        .collect();
    let hits = steady
        .iter()
        .filter(|r| r.source.unwrap().is_cache())
        .count() as u64;
    let mut lost = 0;
    let keys: std::collections::BTreeSet<&String> = writes.iter().map(|w| &w.key).collect();
    for k in keys {
        let acked = writes
            .iter()
            .filter(|w| &w.key == k && w.outcome == Outcome::Ok)
            .map(|w| w.version.unwrap())
            .max();
        let db = c
            .probes
            .iter()
            .filter(|p| &p.0 == k && p.2 == Source::Db)
            .max_by_key(|p| (p.1, p.3));
        if let (Some(a), Some(p)) = (acked, db) {
            lost += u64::from(p.3.is_none_or(|pv| pv < a));
        }
    }
    OracleFigures {
        delta,
        stale,
        phantoms,
        ryw,
        monotonic,
        during,
        served,
        steady: steady.len() as u64,
        hits,
        lost,
    }
}

fn count(r: &Report, verdict: Invariant, figure: &str) -> u64 {
    match r.verdict(verdict).and_then(|v| v.get(figure)) {
        Some(Figure::Count(n)) | Some(Figure::Ns(n)) => *n,
        other => panic!("{verdict}.{figure} is {other:?}"),
    }
}

fn figures(r: &Report) -> OracleFigures {
    OracleFigures {
        delta: count(r, Invariant::Staleness, "delta_ns"),
        stale: count(r, Invariant::Staleness, "stale_reads"),
        phantoms: count(r, Invariant::Phantom, "phantom_reads"),
        ryw: count(r, Invariant::ReadYourWrites, "violations"),
        monotonic: count(r, Invariant::MonotonicReads, "violations"),
        during: count(r, Invariant::Availability, "reads_during_faults"),
        served: count(r, Invariant::Availability, "served_during_faults"),
        steady: count(r, Invariant::HitRatio, "steady_reads"),
        hits: count(r, Invariant::HitRatio, "hits"),
        lost: count(r, Invariant::LostWrites, "keys_lost"),
    }
}

/// Statuses and figures, with per-client maps reduced to their sorted counts (renaming clients
/// renames the map's keys, not its values).
fn verdict_shape(r: &Report) -> Vec<(String, String, Vec<String>)> {
    r.verdicts
        .iter()
        .map(|v| {
            let figs = v
                .figures
                .iter()
                .map(|(n, f)| match f {
                    Figure::PerClient(m) => {
                        let mut c: Vec<u64> = m.values().copied().collect();
                        c.sort();
                        format!("{n}={c:?}")
                    }
                    other => format!("{n}={other:?}"),
                })
                .collect();
            let status = match &v.status {
                Status::Unknown(_) => "unknown".to_string(),
                s => format!("{s:?}"),
            };
            (v.name().to_string(), status, figs)
        })
        .collect()
}

/// Each witness as op ids plus the text of its lines: what a shuffle must not change.
fn witnesses(r: &Report, text: &str) -> Vec<(Vec<u64>, Vec<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    r.verdicts
        .iter()
        .map(|v| {
            let mut t: Vec<String> = v
                .witness
                .lines
                .iter()
                .map(|&l| lines[l as usize - 1].to_string())
                .collect();
            t.sort();
            (v.witness.ops.clone(), t)
        })
        .collect()
}

/// Every suite here runs from a fixed, printed seed (`invariants::gen::test_seed`).
fn fixed(test: &str, cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(invariants::gen::test_seed(test)),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(fixed("props", 400))]

    #[test]
    fn checkers_agree_with_the_brute_force_oracle(h in g_hist()) {
        let c = concretize(&h);
        let report = check_str(&c.text, &[]).unwrap();
        prop_assert_eq!(figures(&report), oracle(&c), "history:\n{}", c.text);
        // The staleness witness proves exactly Δ.
        let v = report.verdict(Invariant::Staleness).unwrap();
        if v.fails() {
            let ids = &v.witness.ops;
            prop_assert_eq!(ids.len(), 2);
            let (w, r) = {
                let a = c.ops.iter().find(|o| o.id == ids[0]).unwrap();
                let b = c.ops.iter().find(|o| o.id == ids[1]).unwrap();
                if a.write { (a, b) } else { (b, a) }
            };
            prop_assert_eq!(r.invoke - w.complete, count(&report, Invariant::Staleness, "delta_ns"));
        }
    }

    #[test]
    fn verdicts_do_not_depend_on_line_order(h in g_hist(), seed in any::<u64>()) {
        let c = concretize(&h);
        let mut lines: Vec<&str> = c.text.lines().collect();
        let mut rng = invariants::gen::SplitMix(seed);
        for i in (1..lines.len()).rev() {
            lines.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let shuffled = lines.join("\n") + "\n";
        let a = check_str(&c.text, &[]).unwrap();
        let b = check_str(&shuffled, &[]).unwrap();
        prop_assert_eq!(verdict_shape(&a), verdict_shape(&b));
        prop_assert_eq!(witnesses(&a, &c.text), witnesses(&b, &shuffled));
    }

    #[test]
    fn verdicts_do_not_depend_on_key_or_client_names(h in g_hist(), salt in 1..1000u64) {
        let c = concretize(&h);
        let renamed = c
            .text
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(k) = v.get("key").and_then(|k| k.as_str()).map(str::to_string) {
                    v["key"] = json!(format!("{salt} r/é {k}\r\n"));
                }
                if let Some(cl) = v.get("client").and_then(|c| c.as_u64()) {
                    v["client"] = json!(1_000_000 - cl * salt);
                }
                v.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        let a = check_str(&c.text, &[]).unwrap();
        let b = check_str(&renamed, &[]).unwrap();
        prop_assert_eq!(verdict_shape(&a), verdict_shape(&b));
    }

    #[test]
    fn delta_equals_the_staleness_the_model_injected(
        keys in 1..30u64, ops in 1..600u64, stale_every in 0..6u64, write_every in 1..6u64, seed in any::<u64>()
    ) {
        let spec = Spec { keys, ops, clients: 5, write_every, stale_every, op_ns: 1000, seed };
        let mut buf = Vec::new();
        let truth = generate(&spec, &mut buf).unwrap();
        let report = check_str(std::str::from_utf8(&buf).unwrap(), &[]).unwrap();
        prop_assert_eq!(count(&report, Invariant::Staleness, "delta_ns"), truth.delta_ns);
        prop_assert_eq!(count(&report, Invariant::Staleness, "stale_reads"), truth.stale_reads);
    }

    #[test]
    fn the_fast_parser_agrees_with_serde(line in mutated_line()) {
        prop_assert_eq!(parse_line(line.as_bytes(), false), parse_line_serde(line.as_bytes(), false), "{}", line);
        prop_assert_eq!(parse_line(line.as_bytes(), true), parse_line_serde(line.as_bytes(), true), "{}", line);
    }
}

fn mutated_line() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        Just(
            r#"{"type":"op","id":17,"client":3,"key":"post:42","f":"read","invoke_ns":123,"complete_ns":125,"outcome":"ok","version":7,"source":"l1"}"#
        ),
        Just(
            r#"{"type":"op","id":18,"client":1,"key":"post:42","f":"write","invoke_ns":124,"complete_ns":131,"outcome":"unknown"}"#
        ),
        Just(r#"{"type":"probe","key":"post:42","at_ns":130,"tier":"l2","version":null}"#),
        Just(r#"{"type":"probe","key":"p","at_ns":1,"tier":"db","version":3}"#),
        Just(r#"{"type":"fault","at_ns":130,"action":"start","fault":{"kind":"kill"}}"#),
    ];
    let edits = prop::collection::vec(
        (
            0..400usize,
            prop_oneof![
                Just(""),
                Just(" "),
                Just(","),
                Just("\"x\":1,"),
                Just("\"x\":{\"a\":[1]},"),
                Just("\"id\":5,"),
                Just("-"),
                Just("-0"),
                Just("0"),
                Just("1.5"),
                Just("1e3"),
                Just("null"),
                Just("\\n"),
                Just("\\u00e9"),
                Just("\"version\":-1,"),
                Just("\"type\":\"op\","),
                Just("\"seed\":2,"),
                Just("\"server\":1,"),
                Just("\"node\":\"app-1\","),
                Just("é"),
                Just("\u{1}"),
                Just("99999999999999999999999"),
                Just("}"),
                Just("\""),
                Just("\"source\":null,"),
            ],
            0..3usize,
        ),
        0..3,
    );
    (base, edits).prop_map(|(base, edits)| {
        let mut s = base.to_string();
        for (at, text, cut) in edits {
            let mut at = at % (s.len() + 1);
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.replace_range(at..end, text);
        }
        s
    })
}

// ---------------------------------------------------------------------------------------------
// Shrinking: a failing history reduces to one write and one read, exactly past the bound.

#[derive(Debug, Clone)]
enum Step {
    Write { key: u8 },
    Read { key: u8, stale: bool, gap_ns: u64 },
}

const BOUND_NS: u64 = 100_000_000;

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            (0..4u8).prop_map(|key| Step::Write { key }),
            (0..4u8, any::<bool>(), 0..400_000_000u64)
                .prop_map(|(key, stale, gap_ns)| Step::Read { key, stale, gap_ns }),
        ],
        1..60,
    )
}

/// A sequential history from steps: writes take 1 µs; a stale read returns the previous version.
fn history_of(steps: &[Step]) -> String {
    let mut w = Writer::new(Vec::new());
    w.header(&Header {
        format: 1,
        world: "prop".into(),
        scenario: "shrink".into(),
        strategy: "none".into(),
        seed: 0,
        commit: String::new(),
        config: json!({"staleness_ns_max": BOUND_NS})
            .as_object()
            .unwrap()
            .clone(),
    })
    .unwrap();
    let mut version: BTreeMap<u8, u64> = BTreeMap::new();
    let mut now = 0;
    for (i, s) in steps.iter().enumerate() {
        let name = match *s {
            Step::Write { key } | Step::Read { key, .. } => format!("k{key}"),
        };
        match *s {
            Step::Write { key } => {
                let v = version.entry(key).or_insert(0);
                *v += 1;
                let mut o = op(
                    i as u64,
                    0,
                    &name,
                    OpKind::Write,
                    now,
                    now + 1000,
                    Outcome::Ok,
                );
                o.version = Some(*v);
                w.op(&o).unwrap();
                now += 1001;
            }
            Step::Read { key, stale, gap_ns } => {
                let v = version.get(&key).copied().unwrap_or(0);
                let invoke = now + gap_ns;
                let mut o = op(
                    i as u64,
                    1,
                    &name,
                    OpKind::Read,
                    invoke,
                    invoke + 1,
                    Outcome::Ok,
                );
                o.version = Some(if stale { v.saturating_sub(1) } else { v });
                o.source = Some(Source::L1);
                w.op(&o).unwrap();
                now = invoke + 2;
            }
        }
    }
    String::from_utf8(w.into_inner()).unwrap()
}

fn fails(steps: &[Step]) -> bool {
    check_str(&history_of(steps), &[])
        .unwrap()
        .verdict(Invariant::Staleness)
        .unwrap()
        .fails()
}

/// The simulated time a step takes in [`history_of`]'s timeline.
fn span_ns(s: &Step) -> u64 {
    match *s {
        Step::Write { .. } => 1001,
        Step::Read { gap_ns, .. } => gap_ns + 2,
    }
}

/// Removes step `i` without moving any later read in time: its span goes to the gap of the next
/// read. Later writes can only move earlier, which never makes a stale read less stale.
fn delete_keeping_time(steps: &[Step], i: usize) -> Vec<Step> {
    let mut out = steps.to_vec();
    let span = span_ns(&out.remove(i));
    if let Some(Step::Read { gap_ns, .. }) =
        out[i..].iter_mut().find(|s| matches!(s, Step::Read { .. }))
    {
        *gap_ns += span;
    }
    out
}

/// A deterministic minimiser that finishes what proptest's generic shrinking may leave (it can
/// stop at a locally minimal history, e.g. a stale read whose lateness comes from two gaps):
/// delete steps keeping time, then lower each read's gap by bisection, until neither helps. At
/// that fixpoint only the newer write and the stale read remain (any other step can be deleted
/// keeping time without making the read less stale), and the read is exactly 1 ns past the bound
/// (any positive gap between them could otherwise be lowered by 1 ns).
fn minimise(mut steps: Vec<Step>) -> Vec<Step> {
    assert!(fails(&steps));
    'outer: loop {
        for i in 0..steps.len() {
            let shorter = delete_keeping_time(&steps, i);
            if fails(&shorter) {
                steps = shorter;
                continue 'outer;
            }
        }
        for i in 0..steps.len() {
            let Step::Read { gap_ns, .. } = steps[i] else {
                continue;
            };
            let with_gap = |g: u64| {
                let mut s = steps.clone();
                if let Step::Read { gap_ns, .. } = &mut s[i] {
                    *gap_ns = g;
                }
                s
            };
            // The smallest gap that still fails: fails(hi) holds, fails(lo) may not.
            let (mut lo, mut hi) = (0, gap_ns);
            if fails(&with_gap(0)) {
                hi = 0;
            }
            while hi > lo + 1 {
                let mid = lo + (hi - lo) / 2;
                if fails(&with_gap(mid)) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            if hi < gap_ns {
                steps = with_gap(hi);
                continue 'outer;
            }
        }
        return steps;
    }
}

#[test]
fn shrinking_finds_the_minimal_failing_history() {
    let config = Config {
        cases: 1000,
        max_shrink_iters: 100_000,
        failure_persistence: None,
        ..fixed("shrinking", 1000)
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&steps(), |s| {
        if fails(&s) {
            return Err(TestCaseError::fail("stale beyond the bound"));
        }
        Ok(())
    });
    let Err(TestError::Fail(_, shrunk)) = result else {
        panic!("random histories never went stale: {result:?}")
    };
    // What proptest guarantees: what it shrank to still fails.
    assert!(fails(&shrunk), "{shrunk:?}");
    let minimal = minimise(shrunk);
    assert_eq!(
        minimal.len(),
        2,
        "one write and one stale read: {minimal:?}"
    );
    let Step::Write { key } = minimal[0] else {
        panic!("{minimal:?}")
    };
    let Step::Read {
        key: read_key,
        stale: true,
        gap_ns,
    } = minimal[1]
    else {
        panic!("{minimal:?}")
    };
    assert_eq!(key, read_key, "{minimal:?}");
    let report = check_str(&history_of(&minimal), &[]).unwrap();
    assert_eq!(
        count(&report, Invariant::Staleness, "delta_ns"),
        BOUND_NS + 1,
        "shrunk to exactly one ns past the bound (gap {gap_ns})"
    );
}

#[test]
fn the_minimiser_merges_gaps_that_generic_shrinking_leaves_apart() {
    // Late only through two gaps: no single deletion of proptest's kind keeps it failing.
    let split = vec![
        Step::Write { key: 0 },
        Step::Read {
            key: 1,
            stale: false,
            gap_ns: 60_000_000,
        },
        Step::Read {
            key: 0,
            stale: true,
            gap_ns: 50_000_000,
        },
    ];
    assert!(fails(&split));
    for i in 0..split.len() {
        let mut plain = split.clone();
        plain.remove(i);
        assert!(!fails(&plain), "removing step {i} alone keeps it failing");
    }
    let minimal = minimise(split);
    assert_eq!(minimal.len(), 2, "{minimal:?}");
    let report = check_str(&history_of(&minimal), &[]).unwrap();
    assert_eq!(
        count(&report, Invariant::Staleness, "delta_ns"),
        BOUND_NS + 1
    );
}

/// The shrunk history kept as a fixture: it must keep failing exactly as it did.
#[test]
fn the_shrunk_fixture_still_fails_at_its_witness() {
    let text = include_str!("../test_data/shrunk-staleness.jsonl");
    let report = check_str(text, &[]).unwrap();
    let v = report.verdict(Invariant::Staleness).unwrap();
    assert!(v.fails());
    assert_eq!(v.witness.ops, vec![0, 1]);
    assert_eq!(
        count(&report, Invariant::Staleness, "delta_ns"),
        BOUND_NS + 1
    );
}
