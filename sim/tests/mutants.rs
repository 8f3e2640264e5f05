//! Each of the library's safeguards dropped in turn (`aside::mutant`) is caught within 20 seeds
//! of the cell named for it (`sim::mutants::CATCHES`), and the cell holds without it: a
//! campaign that stays green with a safeguard gone would prove nothing about that safeguard.
#![cfg(madsim)]

use aside::mutant::Mutant;
use chaos::scenario;
use sim::expect::{self, Expect};
use sim::mutants::{catch_of, first_failure, CATCHES};
use sim::stf::GOAL;

#[test]
fn every_mutant_has_a_cell_whose_strategy_holds_there_unmutated() {
    for m in Mutant::ALL {
        let c = catch_of(m);
        assert!(scenario::find(c.scenario).is_ok(), "{m}: {}", c.scenario);
        let cell = expect::cells()
            .into_iter()
            .find(|cell| cell.scenario == c.scenario && cell.strategy == c.strategy)
            .unwrap_or_else(|| panic!("{m}: no cell {} / {}", c.scenario, c.strategy.name()));
        assert_eq!(
            cell.expect,
            Expect::Holds,
            "{m}: the cell must hold unmutated"
        );
    }
    assert_eq!(CATCHES.len(), Mutant::ALL.len());
}

fn caught(m: Mutant) {
    let c = catch_of(m);
    match (first_failure(c, GOAL), c.survives) {
        (Some((seed, _)), Some(_)) => panic!(
            "{m} is caught by {} / {} on seed {seed}: drop its `survives` in sim/src/mutants.rs",
            c.scenario,
            c.strategy.name()
        ),
        (None, Some(why)) => println!("{m}: survives seeds 1-{GOAL}, as documented: {why}"),
        (Some((seed, failed)), None) => println!(
            "{m}: caught by {} / {} on seed {seed}: {failed:?} (replay: cargo sim --scenario {} --strategy {} --seed {seed} --mutant {m})",
            c.scenario,
            c.strategy.name(),
            c.scenario,
            c.strategy.name()
        ),
        (None, None) => panic!(
            "{m} survived {} / {} over seeds 1-{GOAL}: the harness no longer sees this safeguard's loss",
            c.scenario,
            c.strategy.name()
        ),
    }
}

#[test]
fn no_tombstone_is_caught() {
    caught(Mutant::NoTombstone);
}

#[test]
fn no_l1_version_check_is_caught() {
    caught(Mutant::NoL1VersionCheck);
}

#[test]
fn no_l2_cas_is_caught() {
    caught(Mutant::NoL2Cas);
}

#[test]
fn no_flight_close_is_caught() {
    caught(Mutant::NoFlightClose);
}

#[test]
fn no_fence_is_caught() {
    caught(Mutant::NoFence);
}

#[test]
fn no_replay_is_caught() {
    caught(Mutant::NoReplay);
}

#[test]
fn no_switch_check_survives_as_documented() {
    caught(Mutant::NoSwitchCheck);
}

#[test]
fn no_replica_guard_is_caught() {
    caught(Mutant::NoReplicaGuard);
}

#[test]
fn no_l0_ticket_is_caught() {
    caught(Mutant::NoL0Ticket);
}

#[test]
fn no_floor_check_is_caught() {
    caught(Mutant::NoFloorCheck);
}

#[test]
fn no_ring_history_is_caught() {
    caught(Mutant::NoRingHistory);
}

#[test]
fn one_l1_fence_is_caught() {
    caught(Mutant::OneL1Fence);
}

#[test]
fn no_sibling_invalidation_is_caught() {
    caught(Mutant::NoSiblingInvalidation);
}

#[test]
fn start_replay_l1_only_is_caught() {
    caught(Mutant::StartReplayL1Only);
}

#[test]
fn no_guard_when_behind_is_caught() {
    caught(Mutant::NoGuardWhenBehind);
}
