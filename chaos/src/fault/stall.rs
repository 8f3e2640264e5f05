//! `stall`: the target accepts its clients' connections and requests and answers none until the
//! heal (Toxiproxy's `timeout` toxic with no timeout: data held, not dropped). Callers time out
//! and give up; at the heal the server runs what it held, so a command its caller counted as
//! failed lands late: a fill after the invalidation that should have beaten it, a delete after
//! the fill it was meant to precede. Clients are the app nodes and the nemesis's own probes;
//! replication, the Sentinels' links and the foreign writer (which writes to PostgreSQL
//! straight) are spared, as for a `reset`.
//!
//! In the simulator the server takes each client's request and holds it until the heal; with
//! real servers the proxy in front of the target holds what clients send (connections are
//! accepted; a new one's handshake is held too). Seen when the target holds a request: the
//! nemesis sends one as a client would and counts what the server (the simulator's) or the proxy
//! (real servers) holds, without waiting for an answer, so its looks never hold up the plan (a
//! look that waited out a stalled request delayed the next fault by a second, which then healed
//! at once, unobserved).

use super::effect::Effect;
use super::hands::Hands;
use super::reset::servers;
use super::{Fault, Kind};

pub const NAME: &str = "stall";

/// One server the app nodes talk to, or a group of them (the servers a `reset` can act on).
pub fn draw() -> impl proptest::strategy::Strategy<Value = Fault> {
    use proptest::strategy::Strategy;
    super::reset::draw().prop_map(|f| Fault::new(Kind::Stall, f.target))
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault) {
    for t in servers(h, f) {
        h.stall_requests(t, true).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in servers(h, f) {
        h.stall_requests(t, false).await;
    }
}

/// Looks at the servers in turn, until one holds a request (each look first sends one, as a
/// client would, and does not wait for its answer: a look never holds up the plan).
pub(super) async fn observe(h: &mut impl Hands, f: &Fault) -> Option<Effect> {
    for t in servers(h, f) {
        if let Some((held, how)) = h.requests_held(t).await {
            if let Some(e) = seen(&t.name(), held, &how) {
                return Some(e);
            }
        }
    }
    None
}

/// The rule: `server` holds at least one request it took (`how`: what counted them).
pub fn seen(server: &str, held: u64, how: &str) -> Option<Effect> {
    (held > 0).then(|| {
        Effect::Seen(format!(
            "{server} held {held} request{} taken and not answered ({how})",
            if held == 1 { "" } else { "s" }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_request_shows_the_fault() {
        assert_eq!(seen("redis-master", 0, "the proxy's count"), None);
        assert_eq!(
            seen("redis-master", 1, "the proxy's count")
                .unwrap()
                .to_string(),
            "redis-master held 1 request taken and not answered (the proxy's count)"
        );
        assert!(seen("pg-primary", 3, "x")
            .unwrap()
            .to_string()
            .contains("3 requests"));
    }
}
