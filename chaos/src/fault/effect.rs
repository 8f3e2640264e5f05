//! What a fault's effect looks like: the typed [`Effect`] a nemesis observed, and how the
//! history's `observed` line says it. A world measures (a round trip, a burst of probes, a marker
//! key read back, an eviction count) with its own hands ([`super::hands::Hands`]); whether that
//! shows the fault is each kind's rule, in its module ([`super::latency::seen`], ...), once for
//! both worlds. What a world sees in its own words (a probe's error, Docker's account of a
//! container) is [`Effect::Seen`].

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
    /// A query to a slowed PostgreSQL took at least the added time.
    SlowQuery { path: String, took: Duration },
    /// Some requests of a [`LOSS_BURST`] went unanswered.
    Lost {
        path: String,
        lost: usize,
        within: Duration,
    },
    /// Every flushed cache answers and no longer holds the [`FLUSH_MARKER`].
    MarkerGone { caches: Vec<String> },
    /// A cache node evicted keys under its memory limit of `kib` KiB (`how`: what the count was
    /// read from; against a real memcached it counts the ballast's fillers too).
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
            Effect::SlowQuery { path, took } => write!(
                f,
                "a query from {path} took {:.1} ms",
                took.as_secs_f64() * 1e3
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
