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

/// The slow point before a Redis command an app node sends (its name is the site's).
pub fn before_redis(c: &crate::models::redis::Cmd) -> Option<&'static str> {
    use crate::models::redis::Cmd;
    use aside::envelope::Kind;
    match c {
        Cmd::Set { .. } => Some("redis set (fill or lease)"),
        Cmd::Del(_) => Some("redis del"),
        Cmd::Versioned {
            kind: Kind::Value, ..
        } => Some("redis fill_if_newer"),
        Cmd::Versioned {
            kind: Kind::Tombstone,
            ..
        } => Some("redis tombstone"),
        Cmd::Release { .. } => Some("redis lease release"),
        _ => None,
    }
}

/// The slow point after a Redis command returns, between an invalidation of L1 and the one of
/// L2: after a delete that was answered, and after any tombstone.
pub fn after_redis(c: &crate::models::redis::Cmd, answered: bool) -> Option<&'static str> {
    use crate::models::redis::Cmd;
    use aside::envelope::Kind;
    match c {
        Cmd::Del(_) if answered => Some("redis del returning"),
        Cmd::Versioned {
            kind: Kind::Tombstone,
            ..
        } => Some("redis tombstone returning"),
        _ => None,
    }
}

/// The slow point before a memcached command an app node sends.
pub fn before_memcached(c: &crate::models::memcached::Cmd) -> Option<&'static str> {
    use crate::models::memcached::Cmd;
    match c {
        Cmd::Set { .. } => Some("memcached set"),
        Cmd::Add { .. } => Some("memcached add"),
        Cmd::Cas { .. } => Some("memcached cas (after its gets)"),
        Cmd::Delete(_) => Some("memcached delete"),
        _ => None,
    }
}

/// [`delay`] at `site`, if there is one.
pub async fn maybe(on: bool, site: Option<&'static str>) {
    if let Some(site) = site {
        delay(on, site).await;
    }
}
