//! `sim`: the deterministic simulation world. The server models ([`models`]) and scenarios
//! ([`scenario`]) are plain code, tested in the std build and held to the real servers by the
//! conformance tests; the world that runs them as madsim nodes ([`world`]) and the campaign
//! ([`campaign`]) exist only in the sim build (`cargo sim`, `--cfg madsim`).

pub mod expect;
pub mod models;
pub mod scenario;
pub mod seedlog;

#[cfg(madsim)]
pub mod campaign;
#[cfg(madsim)]
pub mod world;
