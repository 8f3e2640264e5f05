//! A circuit breaker per tier (per node for memcached): after `failures_max` consecutive health
//! failures the tier is skipped for `cooldown`, then one probe is let through (half-open); its
//! success closes the circuit, its failure opens it again. A dead tier costs reads nothing. A
//! probe that never reports back (its caller was cancelled) does not wedge the circuit: after
//! another cooldown a new probe goes.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    opened_at: Option<Instant>,
    /// When the half-open probe was let through, if one is out.
    probe_at: Option<Instant>,
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
            }),
            failures_max: failures_max.max(1),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Whether a call may go to the tier now.
    pub fn allow(&self) -> bool {
        let mut i = self.lock();
        let due = |t: Option<Instant>| t.is_none_or(|t| t.elapsed() >= self.cooldown);
        match i.state {
            State::Closed => true,
            State::Open if due(i.opened_at) => {
                i.state = State::HalfOpen;
                i.probe_at = Some(Instant::now());
                true
            }
            State::Open => false,
            // One probe at a time; a new one when the last never reported back.
            State::HalfOpen if due(i.probe_at) => {
                i.probe_at = Some(Instant::now());
                true
            }
            State::HalfOpen => false,
        }
    }

    pub fn success(&self) {
        let mut i = self.lock();
        i.state = State::Closed;
        i.failures = 0;
        i.probe_at = None;
    }

    pub fn failure(&self) {
        let mut i = self.lock();
        i.failures = i.failures.saturating_add(1);
        i.probe_at = None;
        if i.state == State::HalfOpen || i.failures >= self.failures_max {
            i.state = State::Open;
            i.opened_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_after_failures_probes_after_cooldown_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_millis(30));
        b.failure();
        b.failure();
        assert!(b.allow(), "two failures keep it closed");
        b.failure();
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(b.allow(), "cooldown over: one probe");
        assert!(!b.allow(), "only one probe at a time");
        b.failure();
        assert_eq!(b.state(), State::Open, "a failed probe reopens");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(b.allow());
        b.success();
        assert_eq!(b.state(), State::Closed);
        assert!(b.allow() && b.allow());
    }

    #[tokio::test]
    async fn a_probe_that_never_reports_back_does_not_wedge_the_circuit() {
        let b = Breaker::new(1, Duration::from_millis(30));
        b.failure();
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
