//! One call to a tier: under its deadline ([`timed`]), and through its circuit breaker with its
//! latency and errors counted ([`Call`]).
//!
//! Neither adds a copy of the tier's future to what the timeout holds (tokio's holds it once;
//! madsim's, an `async` block, twice), and the cache's `on_l1` and its kin return them without
//! an `async` layer of their own. An `async fn` that takes a future and awaits it holds it twice
//! (its argument, and again inside the await), and each such layer doubles it again: written as
//! four of them, a read's and a write's futures took 5 KB and 7.5 KB with in-memory tiers;
//! `a_read_and_a_write_hold_their_tier_calls_once` holds each under 4 KiB and prints them. Each
//! box or join of one copies it: memcpy's share of the simulator's instructions is in
//! docs/PROFILE.md (`bash ci/profile.sh`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::breaker::{Breaker, Report, State};
use crate::goal::Goal;
use crate::metrics::TierMetrics;
use crate::tier::{TierError, TierResult};

/// `f`, or [`TierError::Timeout`] once `limit` has passed.
pub(super) fn timed<T>(
    tier: &'static str,
    limit: Duration,
    f: impl Future<Output = TierResult<T>>,
) -> impl Future<Output = TierResult<T>> {
    tokio::time::timeout(limit, f).map(move |r| match r {
        Ok(r) => r,
        Err(_) => Err(TierError::Timeout {
            tier,
            ms: limit.as_millis() as u64,
        }),
    })
}

/// When a failed call counts against its tier's breaker.
#[derive(Clone, Copy)]
pub(super) enum Trips {
    /// Always: a read's or a write's call.
    Always,
    /// Only while the circuit is not closed (decided when the call starts): a background retry
    /// (the outbox invalidator), which may need more time than a read (memcached's `gets` then
    /// `cas`) and must never take a tier away from reads; when the circuit is open it probes
    /// the tier like any call, so a tier nobody reads is still found healthy again.
    IfNotClosed,
}

pin_project_lite::pin_project! {
    /// One call through a breaker, with its latency and errors counted: refused at once while
    /// the circuit is open, otherwise `timed` to its end, the breaker told how it went.
    pub(super) struct Call<'a, F, G> {
        #[pin]
        timed: F,
        tier: &'static str,
        breaker: &'a Breaker,
        m: &'a TierMetrics,
        trips: Trips,
        reach: G,
        // Set at the first poll: when the call began, and whether its failure trips the breaker.
        started: Option<(Instant, bool)>,
    }
}

/// A call to `tier` through `breaker`: `f` under `limit`, counted in `m`; `reach` is told the
/// coverage goals the breaker reaches (opened, closed).
pub(super) fn call<'a, T: 'a>(
    tier: &'static str,
    breaker: &'a Breaker,
    m: &'a TierMetrics,
    limit: Duration,
    trips: Trips,
    reach: impl Fn(Goal) + 'a,
    f: impl Future<Output = TierResult<T>> + 'a,
) -> impl Future<Output = TierResult<T>> + 'a {
    Call {
        timed: timed(tier, limit, f),
        tier,
        breaker,
        m,
        trips,
        reach,
        started: None,
    }
}

impl<T, F, G> Future for Call<'_, F, G>
where
    F: Future<Output = TierResult<T>>,
    G: Fn(Goal),
{
    type Output = TierResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TierResult<T>> {
        let this = self.project();
        let (start, trips) = match *this.started {
            Some(s) => s,
            None => {
                if !this.breaker.allow() {
                    this.m.skipped.fetch_add(1, Relaxed);
                    return Poll::Ready(Err(TierError::CircuitOpen { tier: this.tier }));
                }
                let trips = match this.trips {
                    Trips::Always => true,
                    Trips::IfNotClosed => this.breaker.state() != State::Closed,
                };
                *this.started.insert((Instant::now(), trips))
            }
        };
        let r = ready!(this.timed.poll(cx));
        this.m.latency.record(start.elapsed());
        let report = match &r {
            Ok(_) => this.breaker.success(),
            Err(e) => {
                this.m.errors.fetch_add(1, Relaxed);
                if !e.is_health() {
                    this.breaker.success()
                } else if trips {
                    this.breaker.failure()
                } else {
                    None
                }
            }
        };
        if let Some(report) = report {
            match report {
                Report::Opened => (this.reach)(Goal::BreakerOpened),
                Report::Recovered => (this.reach)(Goal::BreakerClosed),
                Report::StillFailing => {}
            }
            report_tier(this.tier, report, r.as_ref().err(), this.breaker);
        }
        Poll::Ready(r)
    }
}

/// Tells a person what a tier's circuit did (the breaker rate-limits a tier that stays down).
fn report_tier(tier: &'static str, report: Report, cause: Option<&TierError>, breaker: &Breaker) {
    let cooldown_ms = breaker.cooldown().as_millis() as u64;
    match (report, cause) {
        (Report::Opened, Some(e)) => {
            warn!(tier, cooldown_ms, error = %e, "tier failing: skipped for a cooldown, then probed")
        }
        (Report::StillFailing, Some(e)) => warn!(tier, error = %e, "tier still failing"),
        (Report::Recovered, _) => info!(tier, "tier recovered"),
        (_, None) => {}
    }
}
