//! `reset`: every reply the target sends a client is replaced by a TCP reset (Toxiproxy's
//! `reset_peer`): the server ran the command, and the client's connection dies mid-command with
//! ECONNRESET, so a write may have been applied though its caller got an error, and every pooled
//! connection to the target must be re-opened. Clients are the app nodes and the nemesis's own
//! probes; replication, the Sentinels' links and the foreign writer (which writes to PostgreSQL
//! straight, not through the proxies) are spared. The heal lets replies through.
//!
//! In the simulator the server answers a client's request with a reset after running it; with
//! real servers the proxy in front of the target resets the client's connection at the first
//! chunk of a reply (`SO_LINGER` 0, then close). The two differ for a client that reconnects
//! during the fault: a real connection's first reply is its handshake's (PostgreSQL's startup,
//! the Redis client's `CLIENT SETINFO`), so there its commands never run until the heal, and
//! only memcached, which has none, runs each as the simulator does. The simulator's nemesis
//! is a client too (a plan that overlaps a reset with another fault on the same server gets
//! its commands reset, though run), where the containers' reaches the servers straight;
//! random plans never overlap two faults on one server. Seen when one request to the target,
//! sent as a client's would be, is answered by a reset (and, with real servers, one sent
//! straight to it is answered).

use proptest::prelude::*;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side, Target};

pub const NAME: &str = "reset";

/// The servers whose replies a reset fault can replace, and how a person names them.
pub fn resets(t: Target) -> bool {
    matches!(
        t,
        Target::RedisMaster(_)
            | Target::RedisReplica(_)
            | Target::Memcached(_)
            | Target::PgPrimary
            | Target::PgReplica
    )
}
pub const RESETS: &str = "redis-master, redis-replica, redis, memcached-N, memcached, pg-primary, pg-replica or postgres";

/// One server the app nodes talk to, or a group of them.
pub fn draw() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Side::One(Target::RedisMaster(0))),
        Just(Side::One(Target::RedisReplica(0))),
        (0u8..3).prop_map(|i| Side::One(Target::Memcached(i))),
        Just(Side::One(Target::PgPrimary)),
        Just(Side::One(Target::PgReplica)),
        Just(Side::Redis),
        Just(Side::Memcached),
        Just(Side::Postgres),
    ]
    .prop_map(|side| Fault::new(Kind::Reset, side))
}

/// The servers on the fault's side whose replies it resets (or, for a `stall`, whose requests it
/// holds).
pub(super) fn servers(h: &impl Hands, f: &Fault) -> Vec<Target> {
    h.targets(f.target)
        .into_iter()
        .filter(|t| resets(*t))
        .collect()
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault) {
    for t in servers(h, f) {
        h.reset_replies(t, true).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in servers(h, f) {
        h.reset_replies(t, false).await;
    }
}

/// Asks the servers in turn, until one answers with a reset.
pub(super) async fn observe(h: &mut impl Hands, f: &Fault) -> Option<Effect> {
    for t in servers(h, f) {
        if let Some((path, error)) = h.request_error(t).await {
            if let Some(e) = seen(&path, &error) {
                return Some(e);
            }
        }
    }
    None
}

/// The rule: a request's error says its connection was reset (a timeout, a refusal or a
/// closed connection does not show a reset).
pub fn seen(path: &str, error: &str) -> Option<Effect> {
    error
        .to_ascii_lowercase()
        .contains("connection reset")
        .then(|| {
            Effect::Seen(format!(
                "a request from {path} was answered by a reset: {error}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reset_shows_the_fault() {
        let path = "the nemesis to redis-master";
        assert_eq!(seen(path, "no answer within 1000 ms"), None);
        assert_eq!(seen(path, "unexpected answer \"\""), None);
        assert_eq!(seen(path, "Connection refused (os error 111)"), None);
        let e = seen(path, "Connection reset by peer (os error 104)").unwrap();
        assert_eq!(
            e.to_string(),
            "a request from the nemesis to redis-master was answered by a reset: Connection reset by peer (os error 104)"
        );
    }
}
