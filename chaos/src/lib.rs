//! `chaos`: the vocabulary the simulator and the containers world share, so that a scenario means
//! the same run in both. A [`fault::Fault`] names what goes wrong by role; a [`plan::Plan`] times
//! faults and their heals; each world implements [`nemesis::Nemesis`] and hands it to
//! [`nemesis::run_plan`], which records every fault's start, observed effect and stop; each world
//! is a [`drive::World`] and [`drive::drive`] runs a scenario in it the same way; the
//! [`workload`] is the production design's key shapes under Zipf; a [`scenario::Scenario`] packages
//! workload, plan and typed bounds; [`seed`] derives every sub-seed; [`record::Recorder`] turns the
//! library's results into history lines the same way in both worlds.
//!
//! This crate builds in the std and the sim build alike (`tokio` is madsim-tokio): it never
//! touches a runtime-specific API.

pub mod client;
pub mod drive;
pub mod fault;
pub mod foreign;
pub mod nemesis;
pub mod plan;
pub mod probe;
pub mod random;
pub mod record;
pub mod scenario;
pub mod seed;
pub mod swarm;
pub mod workload;

/// The commit this build came from (`git describe --dirty`): every history's header records it,
/// and a seed log replays only at its own commit.
pub const COMMIT: &str = env!("ASIDE_COMMIT");
