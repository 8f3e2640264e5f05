//! Mutation fuzzing of every parser of outside input, on stable Rust. A target ([`targets`]) is a
//! function of bytes that panics when a contract breaks (a parser panics, an error spans lines, a
//! memcached key is invalid, a round trip loses data). [`fuzz`] feeds it its corpus (real files
//! of its kind), then inputs made by stacking random mutations on corpus entries, from a seed, so
//! every run replays; an input that panics is saved, and every saved crash
//! (`fuzz/regressions/TARGET/`) runs first on every later run.
//!
//! Not coverage-guided: cargo-fuzz needs a nightly toolchain, which the project's machines do not
//! have. The targets are plain `fn(&[u8])`, so a cargo-fuzz wrapper around them is a few lines.

pub mod mutate;
pub mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// Mutated inputs after the corpus and the regressions.
    pub iterations: u64,
    /// Where crashing inputs are written.
    pub crashes: PathBuf,
    /// Saved crashes, one directory per target, run before anything else ([`REGRESSIONS`]).
    pub regressions: PathBuf,
}

/// The project's saved crashes.
pub const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/regressions");

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub inputs: u64,
    /// The first crash: its file and what the target said.
    pub crash: Option<(PathBuf, String)>,
}

/// The saved crashes of `target` in `dir` (`DIR/TARGET/*`), in name order.
pub fn regressions(dir: &Path, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = dir.join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| std::fs::read(&f).ok().map(|b| (f, b)))
        .collect()
}

/// Runs `target` over its regressions, `corpus`, then `plan.iterations` mutated inputs; stops at
/// the first input that panics and saves it.
pub fn fuzz(
    name: &str,
    corpus: &[Vec<u8>],
    target: fn(&[u8]),
    plan: &Plan,
) -> std::io::Result<Outcome> {
    let mut out = Outcome::default();
    let mut rng = mutate::Rng::new(plan.seed ^ mutate::fnv1a(name.as_bytes()));
    let run = |input: &[u8], out: &mut Outcome| -> std::io::Result<bool> {
        out.inputs += 1;
        let said = catch_unwind(AssertUnwindSafe(|| target(input)));
        let Err(panic) = said else { return Ok(true) };
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        std::fs::create_dir_all(&plan.crashes)?;
        let file = plan
            .crashes
            .join(format!("{name}-{:016x}", mutate::fnv1a(input)));
        std::fs::write(&file, input)?;
        out.crash = Some((file, what));
        Ok(false)
    };
    for (_, input) in regressions(&plan.regressions, name) {
        if !run(&input, &mut out)? {
            return Ok(out);
        }
    }
    for input in corpus {
        if !run(input, &mut out)? {
            return Ok(out);
        }
    }
    if corpus.is_empty() {
        return Ok(out);
    }
    for _ in 0..plan.iterations {
        let input = mutate::mutant(&mut rng, corpus);
        if !run(&input, &mut out)? {
            return Ok(out);
        }
    }
    Ok(out)
}

/// The line a crash is reported with: what broke, the input's file, and how to replay and keep it.
pub fn crash_report(target: &str, file: &Path, what: &str) -> String {
    format!(
        "{target}: {what}\n  input:   {}\n  replay:  cargo run -q -p aside-fuzz -- --target {target} --input {}\n  keep it: cp {} fuzz/regressions/{target}/  (every later run replays it first)",
        file.display(),
        file.display(),
        file.display()
    )
}
