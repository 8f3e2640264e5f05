//! A circuit breaker per tier (per node for memcached): after `failures_max` consecutive health
//! failures the tier is skipped for `cooldown`, then one probe is let through (half-open); its
//! success closes the circuit, its failure opens it again. A dead tier costs reads nothing. A
//! probe that never reports back (its caller was cancelled) does not wedge the circuit: after
//! another cooldown a new probe goes.
//!
//! The breaker also says when a person should hear of it: when the circuit opens, when a tier
//! that keeps failing is still failing (at most once per [`REPORT_EVERY`]), and when it closes
//! again. The cache logs those at WARN and INFO with the cause.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

/// At most one "still failing" report per this long while a tier stays down.
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// What a call's outcome did to the circuit, when a person should hear of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The circuit opened: the tier is skipped for a cooldown.
    Opened,
    /// A probe failed again, and the last report is [`REPORT_EVERY`] old.
    StillFailing,
    /// A call succeeded and closed an open circuit.
    Recovered,
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    opened_at: Option<Instant>,
    /// When the half-open probe was let through, if one is out.
    probe_at: Option<Instant>,
    /// When the last report was made while the tier has been down.
    reported_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    failures_max: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(failures_max: u32, cooldown: Duration) -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
                opened_at: None,
                probe_at: None,
                reported_at: None,
            }),
            failures_max: failures_max.max(1),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long an open circuit skips its tier before a probe.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Whether a call may go to the tier now.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    /// [`Breaker::allow`] at `now`.
    fn allow_at(&self, now: Instant) -> bool {
        let mut i = self.lock();
        let due = |t: Option<Instant>| {
            t.is_none_or(|t| now.saturating_duration_since(t) >= self.cooldown)
        };
        match i.state {
            State::Closed => true,
            State::Open if due(i.opened_at) => {
                i.state = State::HalfOpen;
                i.probe_at = Some(now);
                true
            }
            State::Open => false,
            // One probe at a time; a new one when the last never reported back.
            State::HalfOpen if due(i.probe_at) => {
                i.probe_at = Some(now);
                true
            }
            State::HalfOpen => false,
        }
    }

    /// A call succeeded; [`Report::Recovered`] when that closed an open circuit.
    pub fn success(&self) -> Option<Report> {
        let mut i = self.lock();
        let was = i.state;
        i.state = State::Closed;
        i.failures = 0;
        i.probe_at = None;
        i.reported_at = None;
        (was != State::Closed).then_some(Report::Recovered)
    }

    /// A call failed as a sign of the tier's health; what a person should hear, if anything.
    pub fn failure(&self) -> Option<Report> {
        self.failure_at(Instant::now())
    }

    /// [`Breaker::failure`] at `now`.
    fn failure_at(&self, now: Instant) -> Option<Report> {
        let mut i = self.lock();
        i.failures = i.failures.saturating_add(1);
        i.probe_at = None;
        if i.state == State::HalfOpen || i.failures >= self.failures_max {
            let was = i.state;
            i.state = State::Open;
            i.opened_at = Some(now);
            let report = match was {
                State::Closed => Some(Report::Opened),
                _ if i
                    .reported_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_EVERY) =>
                {
                    Some(Report::StillFailing)
                }
                _ => None,
            };
            if report.is_some() {
                i.reported_at = Some(now);
            }
            return report;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_after_failures_probes_after_cooldown_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_millis(30));
        let _ = b.failure();
        let _ = b.failure();
        assert!(b.allow(), "two failures keep it closed");
        let _ = b.failure();
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(b.allow(), "cooldown over: one probe");
        assert!(!b.allow(), "only one probe at a time");
        let _ = b.failure();
        assert_eq!(b.state(), State::Open, "a failed probe reopens");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(b.allow());
        let _ = b.success();
        assert_eq!(b.state(), State::Closed);
        assert!(b.allow() && b.allow());
    }

    /// A tier that stays down is reported when its circuit opens, then at most once per
    /// REPORT_EVERY while its probes keep failing, and once more when it recovers.
    #[test]
    fn a_tier_that_keeps_failing_is_reported_once_per_period() {
        let b = Breaker::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            b.failure_at(at(0)),
            None,
            "one failure: closed, nothing to say"
        );
        assert_eq!(b.failure_at(at(0)), Some(Report::Opened));
        let mut reports = Vec::new();
        for s in 1..=65 {
            assert!(
                !b.allow_at(at(s) - Duration::from_millis(1)),
                "still cooling down"
            );
            assert!(b.allow_at(at(s)), "a probe each cooldown");
            reports.extend(b.failure_at(at(s)));
        }
        assert_eq!(
            reports,
            vec![Report::StillFailing, Report::StillFailing],
            "65 failed probes in 65 s: a report at 30 s and at 60 s"
        );
        assert!(b.allow_at(at(66)));
        assert_eq!(b.success(), Some(Report::Recovered));
        assert_eq!(b.success(), None, "closed already");
    }

    #[tokio::test]
    async fn a_probe_that_never_reports_back_does_not_wedge_the_circuit() {
        let b = Breaker::new(1, Duration::from_millis(30));
        let _ = b.failure();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(
            b.allow(),
            "the probe goes, and its caller is cancelled: no success, no failure"
        );
        assert!(!b.allow());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(b.allow(), "another probe after another cooldown");
    }
}
