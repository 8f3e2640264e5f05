//! BUGGIFY, after FoundationDB's simulator: in a run that enables it, the app nodes' backends
//! wait a seeded, random extra time at the points where real systems are slow and races live:
//! after a database read and before the fill that depends on it, before a fill, a tombstone or a
//! delete, around a lease, between memcached's `gets` and its `cas`. Each site is switched on
//! for the whole run with probability [`SITE_ON`] the first time it is reached, and then fires
//! on each pass with probability [`FIRES`], for up to [`MAX_DELAY`]. Every draw comes from
//! madsim's seeded RNG, so a seed fixes every delay: a buggified run replays like any other.
//!
//! Enabled per run by the scenario (`workload.buggify` in the history header; `cargo sim
//! --buggify`), never in the promises' runs: its delays bend latency and hit-ratio bounds, so
//! it serves to find races sooner (`cargo sim stf` measures how much sooner).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use madsim::rand::random;
use madsim::time::sleep;

/// Probability that a site is on for a run.
pub const SITE_ON: f64 = 0.5;
/// Probability that an active site delays one pass.
pub const FIRES: f64 = 0.25;
/// The longest extra delay: below the library's shortest tier timeout (Redis, 100 ms) so a
/// buggified call is slow, not failed.
pub const MAX_DELAY: Duration = Duration::from_millis(40);

thread_local! {
    /// Which sites this run switched on (madsim runs a simulation on one thread).
    static SITES: RefCell<BTreeMap<&'static str, bool>> = RefCell::default();
}

/// Forgets every site's switch: a run starts with this.
pub fn reset() {
    SITES.with(|s| s.borrow_mut().clear());
}

/// At a slow point named `site`: maybe wait, if `on`.
pub async fn delay(on: bool, site: &'static str) {
    if !on {
        return;
    }
    let active = SITES.with(|s| {
        *s.borrow_mut()
            .entry(site)
            .or_insert_with(|| random::<f64>() < SITE_ON)
    });
    if active && random::<f64>() < FIRES {
        let us = random::<u64>() % (MAX_DELAY.as_micros() as u64 + 1);
        sleep(Duration::from_micros(us)).await;
    }
}
