//! Synthetic histories from a sequential model with known injected staleness, for benchmarks and
//! property tests. Ops run one after another on a global clock, so the model knows each read's
//! exact staleness: a read told to be stale returns the previous version of its key, and its
//! staleness is its invoke time minus the completion of the key's current version.

use std::io::{self, Write};

use serde_json::{json, Map};

use crate::history::{Header, OpKind, Outcome, Source, FORMAT};
use crate::write::{op, Writer};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub keys: u64,
    pub ops: u64,
    pub clients: u64,
    /// One op in `write_every` is a write.
    pub write_every: u64,
    /// One read in `stale_every` returns the previous version (0: never).
    pub stale_every: u64,
    /// Time each op takes and the gap after it.
    pub op_ns: u64,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            keys: 10_000,
            ops: 1_000_000,
            clients: 64,
            write_every: 10,
            stale_every: 1000,
            op_ns: 50_000,
            seed: 1,
        }
    }
}

/// What the model knows about the history it wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    pub ops: u64,
    pub stale_reads: u64,
    pub delta_ns: u64,
}

/// SplitMix64: a tiny deterministic generator (no dependency, same stream everywhere).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Writes a history following `spec` and returns what the model knows about it.
pub fn generate(spec: &Spec, out: impl Write) -> io::Result<Truth> {
    let mut w = Writer::new(out);
    let mut config = Map::new();
    config.insert("staleness_ns_max".into(), json!(null));
    w.header(&Header {
        format: FORMAT,
        world: "gen".into(),
        scenario: "sequential".into(),
        strategy: "model".into(),
        seed: spec.seed,
        commit: String::new(),
        config,
    })?;
    let mut rng = SplitMix(spec.seed);
    // Per key: current version and when it completed.
    let mut current: Vec<(u64, u64)> = vec![(0, 0); spec.keys as usize];
    let mut names: Vec<String> = (0..spec.keys).map(|k| format!("post:{k}")).collect();
    let mut truth = Truth::default();
    let mut now = 0u64;
    let mut reads = 0u64;
    for id in 0..spec.ops {
        let k = rng.below(spec.keys) as usize;
        let client = rng.below(spec.clients);
        let (invoke, complete) = (now, now + spec.op_ns);
        now = complete + spec.op_ns;
        let name = std::mem::take(&mut names[k]);
        if rng.below(spec.write_every) == 0 {
            let v = current[k].0 + 1;
            current[k] = (v, complete);
            let mut o = op(
                id,
                client,
                &name,
                OpKind::Write,
                invoke,
                complete,
                Outcome::Ok,
            );
            o.version = Some(v);
            w.op(&o)?;
        } else {
            reads += 1;
            let (v, done) = current[k];
            let stale = v > 0 && spec.stale_every > 0 && reads % spec.stale_every == 0;
            let mut o = op(
                id,
                client,
                &name,
                OpKind::Read,
                invoke,
                complete,
                Outcome::Ok,
            );
            o.version = Some(if stale { v - 1 } else { v });
            o.source = Some(if rng.below(10) == 0 {
                Source::Db
            } else {
                Source::L1
            });
            if stale {
                truth.stale_reads += 1;
                truth.delta_ns = truth.delta_ns.max(invoke - done);
            }
            w.op(&o)?;
        }
        names[k] = name;
        truth.ops += 1;
    }
    Ok(truth)
}

/// The seed a randomised test runs from: `PROPTEST_RNG_SEED` when set (the nightly job sets it to
/// explore), otherwise a fixed one, so `cargo test` gives the same result on every run of a
/// commit. Printed either way, with the variable that reproduces it. One rule for every
/// randomised suite of the workspace.
pub fn test_seed(test: &str) -> u64 {
    const FIXED: u64 = 20_261_126;
    let seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            panic!("PROPTEST_RNG_SEED={s:?} is not a number: set it to an unsigned integer or unset it")
        }),
        Err(_) => FIXED,
    };
    eprintln!("{test}: seed {seed} (PROPTEST_RNG_SEED={seed} reproduces this run)");
    seed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Invariant;
    use crate::{check_str, Figure};

    #[test]
    fn the_checker_finds_exactly_the_injected_staleness() {
        let spec = Spec {
            keys: 50,
            ops: 5000,
            stale_every: 7,
            ..Spec::default()
        };
        let mut buf = Vec::new();
        let truth = generate(&spec, &mut buf).unwrap();
        assert!(truth.stale_reads > 100);
        let r = check_str(std::str::from_utf8(&buf).unwrap(), &[]).unwrap();
        let v = r.verdict(Invariant::Staleness).unwrap();
        assert_eq!(v.get("delta_ns"), Some(&Figure::Ns(truth.delta_ns)));
        assert_eq!(
            v.get("stale_reads"),
            Some(&Figure::Count(truth.stale_reads))
        );
        assert_eq!(r.ops, truth.ops);
    }
}
