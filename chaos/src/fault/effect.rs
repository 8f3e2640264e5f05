//! What a fault's effect looks like: the observation rules both worlds share. A world measures
//! (a round trip, a burst of probes, a marker key read back, an eviction count) with its own
//! hands; whether that shows the fault, and how the history's `observed` line says it, is decided
//! here, once. Rules a world cannot share (a probe's own error, Docker's account of a container)
//! are [`Effect::Seen`].

use std::fmt;
use std::time::Duration;

/// The key a flush fault writes to every cache it flushes, and looks for afterwards: gone means
/// the flush took.
pub const FLUSH_MARKER: &str = "aside:nemesis:flush";

/// Requests sent at once to look for packet loss: at a few percent loss some request or reply
/// of the burst goes missing, where one probe at a time could be lucky for a whole fault.
pub const LOSS_BURST: usize = 20;

/// An effect a nemesis observed: what the history's `observed` line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A round trip over the delayed network took at least twice the added one-way latency.
    SlowRoundTrip { path: String, rtt: Duration },
    /// Some requests of a [`LOSS_BURST`] went unanswered.
    Lost {
        path: String,
        lost: usize,
        within: Duration,
    },
    /// Every flushed cache answers and no longer holds the [`FLUSH_MARKER`].
    MarkerGone { caches: Vec<String> },
    /// A Redis node evicted keys under its memory limit (`how`: what the count was read from).
    Evicted {
        target: String,
        keys: u64,
        kib: u32,
        how: String,
    },
    /// Anything else a world saw, in its words: a call that failed, a container's state.
    Seen(String),
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::SlowRoundTrip { path, rtt } => write!(
                f,
                "a round trip from {path} took {:.1} ms",
                rtt.as_secs_f64() * 1e3
            ),
            Effect::Lost { path, lost, within } => write!(
                f,
                "{lost} of {LOSS_BURST} requests from {path} got no reply within {} ms",
                within.as_millis()
            ),
            Effect::MarkerGone { caches } => write!(
                f,
                "the marker key written before the flush is gone from {}",
                caches.join(", ")
            ),
            Effect::Evicted {
                target,
                keys,
                kib,
                how,
            } => write!(
                f,
                "{target} evicted {keys} keys under its {kib} KiB limit ({how})"
            ),
            Effect::Seen(what) => f.write_str(what),
        }
    }
}

/// A latency fault of `one_way_ms` shows when a round trip takes at least twice that.
pub fn latency(one_way_ms: u32, path: impl Into<String>, rtt: Duration) -> Option<Effect> {
    (rtt >= Duration::from_millis(2 * u64::from(one_way_ms))).then(|| Effect::SlowRoundTrip {
        path: path.into(),
        rtt,
    })
}

/// A loss fault shows when any request of the burst got no reply `within` its timeout.
pub fn loss(lost: usize, path: impl Into<String>, within: Duration) -> Option<Effect> {
    (lost > 0).then(|| Effect::Lost {
        path: path.into(),
        lost,
        within,
    })
}

/// A flush shows when every flushed cache, asked in turn, answers that the marker is gone
/// (`Some(false)`); `held` may stop at the first that does not (a world asks no further).
pub fn flush(held: Vec<(String, Option<bool>)>) -> Option<Effect> {
    if held.is_empty() || held.iter().any(|(_, h)| *h != Some(false)) {
        return None;
    }
    Some(Effect::MarkerGone {
        caches: held.into_iter().map(|(c, _)| c).collect(),
    })
}

/// A memory limit shows when the node evicted more keys than it had when the limit began.
pub fn memory_limit(
    target: impl Into<String>,
    kib: u32,
    evicted_before: u64,
    evicted_now: u64,
    how: impl Into<String>,
) -> Option<Effect> {
    (evicted_now > evicted_before).then(|| Effect::Evicted {
        target: target.into(),
        keys: evicted_now - evicted_before,
        kib,
        how: how.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_shows_latency_from_twice_the_one_way_delay() {
        let ms = Duration::from_millis;
        assert_eq!(latency(55, "x", ms(109)), None);
        let e = latency(55, "the nemesis to redis-master", ms(110)).unwrap();
        assert_eq!(
            e.to_string(),
            "a round trip from the nemesis to redis-master took 110.0 ms"
        );
    }

    #[test]
    fn one_lost_request_of_the_burst_shows_loss() {
        assert_eq!(loss(0, "x", Duration::from_millis(50)), None);
        assert_eq!(
            loss(3, "the host to pg-primary", Duration::from_millis(300))
                .unwrap()
                .to_string(),
            "3 of 20 requests from the host to pg-primary got no reply within 300 ms"
        );
    }

    #[test]
    fn a_flush_shows_only_when_every_cache_answers_without_the_marker() {
        let gone = |c: &str| (c.to_string(), Some(false));
        assert_eq!(flush(vec![]), None);
        assert_eq!(flush(vec![gone("a"), ("b".into(), Some(true))]), None);
        assert_eq!(flush(vec![gone("a"), ("b".into(), None)]), None);
        assert_eq!(
            flush(vec![gone("redis-master"), gone("memcached-1")])
                .unwrap()
                .to_string(),
            "the marker key written before the flush is gone from redis-master, memcached-1"
        );
    }

    #[test]
    fn a_memory_limit_shows_when_evictions_grow() {
        assert_eq!(memory_limit("r", 8, 5, 5, "x"), None);
        assert_eq!(
            memory_limit("redis-master", 8, 5, 9, "INFO evicted_keys")
                .unwrap()
                .to_string(),
            "redis-master evicted 4 keys under its 8 KiB limit (INFO evicted_keys)"
        );
    }
}
