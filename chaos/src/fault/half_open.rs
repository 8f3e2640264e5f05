//! `half-open`: the target's end of every connection its clients hold is gone without a FIN or
//! a reset (its host rebooted, a NAT or a firewall between forgot the flows): from the start,
//! what clients send on those connections is dropped and nothing comes back, so a command is
//! neither run nor answered and its caller hears nothing until its own timeout. Connections
//! opened while the fault is on die the same way. At the heal the target's end is back and
//! knows none of them, so it answers the next segment of each with a reset (RFC 793's answer
//! to a segment for no connection): every client must notice and connect again. Unlike a
//! `stall`, nothing held runs late; unlike a partition, TCP's resends never get through, the
//! heal included. Clients are the app nodes and the nemesis's own probes; replication, the
//! Sentinels' links and the foreign writer are spared, as for a `reset`.
//!
//! In the simulator the server drops each client's request while the fault is on, and the reply
//! to any it took before the fault began, and after the heal answers with a reset a request first
//! sent before it; with
//! real servers the proxy in front of the target drops what either side sends on every
//! connection open during the fault, and resets each of them at the heal (`SO_LINGER` 0). The
//! two differ after the heal for a connection that was idle throughout: a real client's next
//! request on it is reset, the simulator's runs (it has no connections, only requests). Seen when
//! the target dropped a request: the nemesis sends one as a client would, does not wait for its
//! answer, and reads what the server (the simulator's) or the proxy (real servers) dropped.

use super::effect::Effect;
use super::hands::Hands;
use super::reset::servers;
use super::{Fault, Kind};

pub const NAME: &str = "half-open";

/// One server the app nodes talk to, or a group of them (the servers a `reset` can act on).
pub fn draw() -> impl proptest::strategy::Strategy<Value = Fault> {
    use proptest::strategy::Strategy;
    super::reset::draw().prop_map(|f| Fault::new(Kind::HalfOpen, f.target))
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault) {
    for t in servers(h, f) {
        h.half_open(t, true).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in servers(h, f) {
        h.half_open(t, false).await;
    }
}

/// Looks at the servers in turn, until one dropped a client's request (each look first sends
/// one, as a client would, and does not wait for its answer).
pub(super) async fn observe(h: &mut impl Hands, f: &Fault) -> Option<Effect> {
    for t in servers(h, f) {
        if let Some((dropped, how)) = h.requests_dropped(t).await {
            if let Some(e) = seen(&t.name(), dropped, &how) {
                return Some(e);
            }
        }
    }
    None
}

/// The rule: on a connection of `server`'s that was half-open, at least one request was dropped
/// unanswered (`how`: what counted them).
pub fn seen(server: &str, dropped: u64, how: &str) -> Option<Effect> {
    (dropped > 0).then(|| {
        Effect::Seen(format!(
            "{server}'s half-open connections dropped {dropped} request{} unanswered ({how})",
            if dropped == 1 { "" } else { "s" }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_request_shows_the_fault() {
        assert_eq!(seen("pg-primary", 0, "the proxy's count"), None);
        assert_eq!(
            seen("pg-primary", 1, "the proxy's count")
                .unwrap()
                .to_string(),
            "pg-primary's half-open connections dropped 1 request unanswered (the proxy's count)"
        );
        assert!(seen("memcached-1", 4, "x")
            .unwrap()
            .to_string()
            .contains("4 requests"));
    }
}
