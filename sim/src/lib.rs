//! `sim`: the deterministic simulation world. The server models ([`models`]) and the promises of
//! the results table ([`expect`]) are plain code, tested in the std build and the models held to
//! the real servers by the conformance tests. Everything that runs them as madsim nodes exists
//! only in the sim build (`cargo sim`, `--cfg madsim`), one concept per module:
//!
//! * [`net`]: request/response over madsim endpoints;
//! * [`nodes`]: one server per module (Redis, Sentinel, memcached, PostgreSQL) over the models;
//! * [`backends`]: the library's tier traits over those servers;
//! * [`cluster`]: boot, addresses, every node's handle by role;
//! * [`nemesis`]: `chaos::nemesis::Nemesis` over madsim (kill/restart, clog/unclog, observation);
//! * [`run`]: one run wired (the client loop and the probes are `chaos`'s, shared with the
//!   containers world);
//! * [`runner`]: one run, judged, with its witness and replay commands; [`pool`]: many on every
//!   core; [`replay`]: a seed log run again; [`seedlog`]: reading and naming seed logs;
//! * [`cmd`]: `cargo sim`, one module per subcommand; [`bench`]: speed;
//! * [`shrink`]: a failing run made minimal (`cargo sim shrink LOG`);
//! * [`buggify`]: FoundationDB's BUGGIFY, seeded delays at the slow points of the app's calls;
//! * [`coverage`]: which coverage goals a campaign's runs reached, and which none did;
//! * [`stf`]: seeds to first failure of every finding, without and with BUGGIFY; [`mutants`]:
//!   each of the library's safeguards dropped, with the cell that catches it;
//! * [`triage`]: the nightly's results as data: shards merged, promises judged, failures grouped
//!   by signature, what is new since the last night.
//!
//! Scenarios, workloads, faults and the recorder live in `chaos`, shared with the containers
//! world.

pub mod compare;
pub mod coverage;
pub mod expect;
pub mod models;
pub mod seedlog;

#[cfg(madsim)]
pub mod backends;
#[cfg(madsim)]
pub mod bench;
#[cfg(madsim)]
pub mod buggify;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod cmd;
#[cfg(madsim)]
pub mod explore;
pub mod matrix;
#[cfg(madsim)]
pub mod mutants;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod net;
#[cfg(madsim)]
pub mod nodes;
#[cfg(madsim)]
pub mod pool;
#[cfg(madsim)]
pub mod replay;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod shrink;
#[cfg(madsim)]
pub mod stf;
pub mod triage;
