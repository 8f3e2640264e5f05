//! Swarm plans (Groce et al., "Swarm testing", ISSTA 2012; TigerBeetle's VOPR draws its fault
//! parameters per seed the same way): the `swarm` scenario's runs each leave most of the
//! catalog out. A seed's *family* draws which fault kinds are on (each with probability ½; kinds
//! added to the catalog later are drawn last, so that a family keeps its other draws), how
//! hard the faults hit (loss up to 30 %, latency up to 150 ms one way) and the workload (keys,
//! write ratio, TTLs, stale-while-revalidate, the lease, XFetch, hot keys and L0, replica reads,
//! two Redis pairs, listings, foreign writes); the seed itself draws the plan from the family's
//! kinds ([`crate::random::plan_of`]): when, for how long, where.
//!
//! A plan that draws from fewer kinds draws each more often, and a workload unlike the catalog's
//! reaches paths the catalog's never does. Families make a guided search replayable: a seed's
//! family is its low 32 bits ([`family`]) and its variant the high ones ([`variant`]), so
//! another seed of a family that reached rare coverage goals ([`seed`]) is a plain seed like any
//! other, run and replayed with `--seed`. Everything drawn is in the history's header.

use proptest::prelude::*;

use crate::fault::KINDS;
use crate::plan::Plan;
use crate::random::{first, Strength};
use crate::scenario::WorkloadSpec;

/// A seed's family: its low 32 bits (seeds 1, 2, 3, ... are families 1, 2, 3, ...).
pub fn family(seed: u64) -> u64 {
    seed & 0xFFFF_FFFF
}

/// A seed's variant within its family: its high 32 bits (0 for seeds below 2^32).
pub fn variant(seed: u64) -> u64 {
    seed >> 32
}

/// The seed of `variant` of `family` (the inverse of [`family`] and [`variant`]).
pub fn seed(family: u64, variant: u64) -> u64 {
    (variant << 32) | (family & 0xFFFF_FFFF)
}

/// What a family draws: the kinds its plans draw from, how hard, and its workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Swarm {
    /// Names of [`KINDS`], at least one, in that order.
    pub kinds: Vec<&'static str>,
    pub strength: Strength,
    /// Every field the family sets; the scenario file's own for the rest.
    pub workload: WorkloadSpec,
}

/// Loss of up to 30 % of every link's messages, in thousandths.
pub const LOSS_PER_MILLE_MAX: u16 = 300;
/// Up to 150 ms more on every link, one way.
pub const LATENCY_MS_MAX: u32 = 150;

/// How many of [`KINDS`] the catalog had when families were first drawn, then how many each
/// growth of the catalog added, in [`KINDS`]' order. Each growth's kinds are drawn after
/// everything a family drew before it ([`kinds_added`]), so that a family keeps what it drew
/// when the catalog grows: its mutants' seeds, its known failures and the nightly's witnesses
/// stay what they were, unless a new kind is on. A kind added to [`KINDS`] is a new entry here.
const BATCHES: [usize; 4] = [11, 2, 1, 1];

/// The first batch's size.
const KINDS_FIRST: usize = BATCHES[0];

/// A family's first kinds: a non-empty subset of the first [`KINDS_FIRST`] of [`KINDS`], every
/// one equally likely (each kind on with probability ½).
fn kinds() -> impl Strategy<Value = u32> {
    1u32..(1 << KINDS_FIRST)
}

/// Which kinds of each later batch a family has on, each with probability ½: one draw per batch,
/// in order, each the batch's bits of the mask from bit [`KINDS_FIRST`] on.
fn kinds_added() -> impl Strategy<Value = u32> {
    let draws: Vec<std::ops::Range<u32>> = BATCHES[1..].iter().map(|&n| 0..(1 << n)).collect();
    draws.prop_map(|bits| {
        let mut mask = 0;
        let mut at = 0;
        for (b, n) in bits.into_iter().zip(&BATCHES[1..]) {
            mask |= b << at;
            at += n;
        }
        mask
    })
}

/// The names of `mask`'s kinds, in [`KINDS`]' order.
fn named(mask: u32) -> Vec<&'static str> {
    KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, k)| *k)
        .collect()
}

/// How hard a family's faults hit: loss from 1 % up to a top of 2 % to 30 %, latency from
/// 10 ms up to a top of 20 to 150 ms.
fn strength() -> impl Strategy<Value = Strength> {
    (20u16..=LOSS_PER_MILLE_MAX, 20u32..=LATENCY_MS_MAX).prop_map(|(loss, latency)| Strength {
        loss_per_mille: 10..loss,
        latency_one_way_ms: 10..latency,
    })
}

/// A family's workload: each knob at the library's default or drawn from a range the catalog's
/// scenarios use, so every draw is a workload the scenario file format accepts.
fn workload() -> impl Strategy<Value = WorkloadSpec> {
    let size = (
        10u64..=200,
        prop_oneof![Just(0.01), Just(0.05), Just(0.15), Just(0.3)],
        prop_oneof![Just(0.0), 0.1f64..0.5],
        any::<bool>(),
        1u64..=2,
    );
    // L1's TTL (None: the library's default; L2's is twice it), the stale-while-revalidate window,
    // the lease (None: the default, Some(0): off) and XFetch's β.
    let ttls = (
        prop_oneof![Just(None), (300u64..3_000).prop_map(Some)],
        prop_oneof![Just(0u64), 100u64..2_000],
        prop_oneof![Just(None), Just(Some(0u64))],
        prop_oneof![Just(None), Just(Some(0.0)), Just(Some(2.0))],
    );
    let features = (
        prop_oneof![Just(0u64), 50u64..200],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    );
    (size, ttls, features).prop_map(
        |(
            (keys, write_ratio, hot_key_share, read_from_replica, redis_shards),
            (l1_ttl_ms, swr_ms, lease_ms, beta),
            (l0_ttl_ms, foreign_writes, listing_transactions, grouped_listings),
        )| WorkloadSpec {
            keys: Some(keys),
            write_ratio: Some(write_ratio),
            hot_key_share: Some(hot_key_share),
            read_from_replica: Some(read_from_replica),
            redis_shards: Some(redis_shards),
            l1_ttl_ms,
            l2_ttl_ms: l1_ttl_ms.map(|ms| 2 * ms),
            stale_while_revalidate_ms: Some(swr_ms),
            lease_ms,
            early_refresh_beta: beta,
            l0_ttl_ms: Some(l0_ttl_ms),
            foreign_writes: Some(foreign_writes),
            listing_transactions: Some(listing_transactions),
            grouped_listings: Some(grouped_listings),
            ..WorkloadSpec::default()
        },
    )
}

/// Keys a family with memory limits on has at least: fewer fit in the limits' few KiB, and a
/// limit that evicts nothing is a fault never observed taking effect (swarm seed 159 of its
/// time, before the `reset` kind redrew every family: 25 keys over two Redis pairs under 3 KiB).
pub const MEMORY_LIMIT_KEYS_MIN: u64 = 60;

/// The write ratio a family with memory limits or replica lag on has at least, the `random`
/// scenario's: a limit is seen evicting the fills that writes cause, lag in a write the replica
/// has not replayed (swarm seeds 386 and 485 of their time, at 1 % writes, saw neither).
pub const TRAFFIC_WRITE_RATIO_MIN: f64 = 0.05;

/// The family `family` draws.
pub fn for_family(family: u64) -> Swarm {
    let drawn = (kinds(), strength(), workload(), kinds_added());
    let swarm = drawn.prop_map(|(first, strength, mut workload, added)| {
        use crate::fault::{memory_limit, replica_lag};
        let kinds = named(first | (added << KINDS_FIRST));
        if kinds.contains(&memory_limit::NAME) {
            workload.keys = workload.keys.map(|k| k.max(MEMORY_LIMIT_KEYS_MIN));
        }
        if kinds.contains(&memory_limit::NAME) || kinds.contains(&replica_lag::NAME) {
            workload.write_ratio = workload.write_ratio.map(|r| r.max(TRAFFIC_WRITE_RATIO_MIN));
        }
        Swarm {
            kinds,
            strength,
            workload,
        }
    });
    first(swarm, family)
}

/// The plan of `seed`: faults of its family's kinds, as hard as its family says, at times the
/// seed draws.
pub fn plan_for_seed(seed: u64) -> Plan {
    for_family(family(seed)).plan(seed)
}

impl Swarm {
    /// The plan of `seed`, one of this family's: [`plan_for_seed`] for a caller that has the
    /// family's draw already.
    pub fn plan(&self, seed: u64) -> Plan {
        // Another stream than the family's draw, which a runner seeded with the same number would
        // repeat for the first seed of each family.
        const SALT: u64 = 0x5357_4152_4d00_0000; // "SWARM"
        first(
            crate::random::plan_of(crate::random::fault_of(&self.kinds, &self.strength)),
            seed ^ SALT,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_a_family_and_a_variant() {
        for s in [1u64, 7, 0xFFFF_FFFF, seed(7, 3), u64::MAX] {
            assert_eq!(seed(family(s), variant(s)), s);
        }
        assert_eq!((family(42), variant(42)), (42, 0));
        assert_eq!(family(seed(42, 5)), 42);
    }

    #[test]
    fn families_draw_kinds_strengths_and_workloads_apart() {
        let swarms: Vec<Swarm> = (1..=200).map(for_family).collect();
        assert_eq!(for_family(9), for_family(9));
        let mut seen = std::collections::BTreeSet::new();
        for s in &swarms {
            assert!(!s.kinds.is_empty());
            seen.extend(s.kinds.iter().copied());
            assert!(s.strength.loss_per_mille.end <= LOSS_PER_MILLE_MAX);
        }
        assert_eq!(seen.len(), KINDS.len(), "every kind is on in some family");
        let sizes: std::collections::BTreeSet<usize> =
            swarms.iter().map(|s| s.kinds.len()).collect();
        assert!(
            sizes.len() >= 5,
            "families differ in how many kinds are on: {sizes:?}"
        );
        assert!(swarms.iter().any(|s| s.workload.l1_ttl_ms.is_some()));
        assert!(swarms.iter().any(|s| s.workload.l1_ttl_ms.is_none()));
        assert!(swarms.iter().any(|s| s.strength.loss_per_mille.end > 250));
    }

    /// Families 1-500 draw what they drew before each growth of the catalog, for everything but
    /// the kinds added since (FNV-1a 64 over each family with those left out): growing the
    /// catalog must not redraw every family. The last hash is this catalog's.
    #[test]
    fn families_keep_their_draws_when_the_catalog_grows() {
        assert_eq!(
            BATCHES.iter().sum::<usize>(),
            KINDS.len(),
            "a new kind is a new batch"
        );
        let mut kinds_then = 0;
        for (batch, want) in BATCHES.iter().zip(FAMILIES_HASH) {
            kinds_then += batch;
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for fam in 1..=500 {
                let mut s = for_family(fam);
                s.kinds.retain(|k| KINDS[..kinds_then].contains(k));
                for b in format!("{s:?}").bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
            assert_eq!(
                h, want,
                "the families of the first {kinds_then} kinds: {h:#x}"
            );
        }
    }

    const FAMILIES_HASH: [u64; 3] = [
        0x29e1_5852_7530_2979,
        0x18b4_316c_436d_d55f,
        0xc767_e5da_6868_a4c0,
    ];

    #[test]
    fn a_seed_draws_only_its_familys_kinds_and_variants_differ() {
        for fam in 1..=100u64 {
            let kinds = for_family(fam).kinds;
            for v in 0..3 {
                for step in plan_for_seed(seed(fam, v)).steps {
                    assert!(
                        kinds.contains(&step.fault.kind.name()),
                        "{fam}/{v}: {step:?}"
                    );
                }
            }
        }
        let plans: Vec<Plan> = (0..10).map(|v| plan_for_seed(seed(3, v))).collect();
        assert!(plans.windows(2).any(|w| w[0] != w[1]));
    }
}
