//! `cargo bench -p invariants`: the staleness checker, and all checkers, on generated histories.
//! Prints ops per second and peak heap (counted by a wrapping global allocator), side by side in
//! one run, and how peak heap moves when keys or ops double. Not a timed test: it never fails.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use invariants::checkers::{staleness::Staleness, ReadChecker};
use invariants::gen::{generate, Spec};
use invariants::index::{Index, SPILL_AT};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = NOW.fetch_add(l.size(), Relaxed) + l.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        NOW.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            if new > l.size() {
                let now = NOW.fetch_add(new - l.size(), Relaxed) + new - l.size();
                PEAK.fetch_max(now, Relaxed);
            } else {
                NOW.fetch_sub(l.size() - new, Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static A: Counting = Counting;

fn measure<T>(f: impl FnOnce() -> T) -> (T, f64, usize) {
    let base = NOW.load(Relaxed);
    PEAK.store(base, Relaxed);
    let t = Instant::now();
    let out = f();
    let secs = t.elapsed().as_secs_f64();
    (out, secs, PEAK.load(Relaxed) - base)
}

fn staleness_only(path: &std::path::Path) -> u64 {
    let file = File::open(path).expect("history");
    let mut idx =
        Index::build("bench", BufReader::with_capacity(1 << 16, file), SPILL_AT).expect("valid");
    let mut reads = std::mem::replace(&mut idx.reads, invariants::index::ReadLog::new(0));
    let mut c = Box::new(Staleness::new(None, 0));
    reads.for_each(|r| c.observe(&idx, r)).expect("stream");
    let v = c.finish(&idx, &mut reads).expect("finish");
    match v.get("delta_ns") {
        Some(invariants::Figure::Ns(d)) => *d,
        _ => 0,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().expect("tempdir");
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "invariants bench: one core, histories from the sequential model (1 op in 10 a write)"
    );
    println!(
        "{:<50} {:>12} {:>9} {:>12}",
        "run", "ops/s", "wall s", "peak heap"
    );
    let base = if quick { 100_000 } else { 1_000_000 };
    let cases = [
        (base, 10_000, ""),
        (2 * base, 10_000, " (ops x2)"),
        (base, 100_000, " (keys x10)"),
    ];
    let mut all_secs = Vec::new();
    for (ops, keys, what) in cases {
        let name = format!("{}k ops, {}k keys{what}", ops / 1000, keys / 1000);
        let path = dir.path().join(format!("{ops}-{keys}.jsonl"));
        let spec = Spec {
            ops,
            keys,
            ..Spec::default()
        };
        let truth = generate(&spec, BufWriter::new(File::create(&path).expect("create")))
            .expect("generate");
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let (delta, secs, peak) = measure(|| staleness_only(&path));
        assert_eq!(delta, truth.delta_ns, "the bench checks what it measures");
        println!(
            "{:<50} {:>12.0} {:>9.2} {:>9.1} MiB   ({:.0} MiB of JSON)",
            format!("staleness: {name}"),
            ops as f64 / secs,
            secs,
            mib(peak),
            size as f64 / (1 << 20) as f64
        );
        // Both passes, as `check_path` runs them, with pass one timed on its own.
        let ((report, pass_one_s), secs, peak) = measure(|| {
            let file = File::open(&path).expect("history");
            let t = Instant::now();
            let idx = Index::build("bench", BufReader::with_capacity(1 << 16, file), SPILL_AT)
                .expect("valid");
            let pass_one_s = t.elapsed().as_secs_f64();
            (
                invariants::check_index(idx, &[]).expect("valid"),
                pass_one_s,
            )
        });
        assert_eq!(report.ops, ops);
        println!(
            "{:<50} {:>12.0} {:>9.2} {:>9.1} MiB   (pass one {:.2} s, pass two {:.2} s)",
            format!("all {} checkers: {name}", invariants::Invariant::ALL.len()),
            ops as f64 / secs,
            secs,
            mib(peak),
            pass_one_s,
            secs - pass_one_s
        );
        all_secs.push(secs);
    }
    println!(
        "all checkers, twice the ops: {:.2}x the time (linear is 2.00x); target >= 1000000 ops/s",
        all_secs[1] / all_secs[0]
    );
}
