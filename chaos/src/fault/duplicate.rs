//! `duplicate`: messages are delivered twice with probability `per_mille` / 1000 (a flapping
//! link, a switch that floods, a retransmission that crosses its original); the heal stops it.
//!
//! Below TCP a copy is absorbed: the receiver drops a segment it already has, and no request
//! runs twice. That is what this fault holds both worlds to.
//!
//! * In the simulator, whose network carries datagrams, the requests of every call (the app
//!   nodes', the Sentinels', the nemesis's) arrive twice at that rate, the copy up to
//!   [`LATE_MS`] after its original, behind messages sent since (duplicated and reordered). A
//!   server drops a copy of a request it took already (TCP hands a segment over once) and a copy
//!   older than its memory of requests (5 s), as TCP drops a segment outside its window; a copy
//!   that comes first runs the request, and its original is then taken as a resend. Replies are
//!   not copied (a copy would reach a call that has its answer), nor is Redis's replication
//!   stream, a stream of its own.
//! * Against real servers each server's own network namespace, and each app node's that has a
//!   container, copies the TCP segments it sends (iptables' `TEE` to the segment's own
//!   destination, with the `statistic` match), and the receiver's kernel drops the copies. The
//!   copy leaves just before its original: the kernel has no `netem` to hold it back
//!   (ci/images/README.md).
//!
//! Seen when copies were absorbed after the fault began: in the simulator, copied requests the
//! servers absorbed; against real servers, the D-SACKs the receivers sent back for segments they
//! got twice (RFC 2883), which each server's kernel counts as `TCPDSACKRecv` in its namespace.
//! The look first sends a burst of requests, so that messages flow whatever the workload does.

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side, Target};

pub const NAME: &str = "duplicate";

/// What the `random` and `swarm` scenarios draw: 2 % to 20 % of the messages.
pub const PER_MILLE: std::ops::Range<u16> = 20..200;

/// In the simulator, how much later than its original a copy arrives at most, in ms (the copy's
/// delay is drawn from 0 to this): well within the 5 s a server remembers a request, past which
/// a copy (held up by a paused node) is dropped.
pub const LATE_MS: u64 = 50;

/// A share of the messages in `per_mille` (in thousandths).
pub fn draw(per_mille: std::ops::Range<u16>) -> impl Strategy<Value = Fault> {
    per_mille.prop_map(|pm| Fault::new(Kind::Duplicate { per_mille: pm }, Side::Network))
}

pub(super) fn fields(per_mille: u16) -> Vec<(&'static str, Value)> {
    vec![("per_mille", per_mille.into())]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    Ok(Kind::Duplicate {
        per_mille: v
            .get("per_mille")
            .and_then(Value::as_u64)
            .filter(|&n| (1..=1000).contains(&n))
            .map(|n| n as u16)
            .ok_or("a duplicate fault needs \"per_mille\", 1 to 1000")?,
    })
}

/// Why a duplicate fault's only target is the network (see [`super::network_only`]).
pub(super) const WHY_NETWORK: &str = "a duplicate fault copies the messages of every link";

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, per_mille: u16) {
    // What each node had absorbed before: copies of other causes (a spurious retransmission)
    // are not this fault's.
    let (before, _) = h.copies_absorbed().await;
    h.kept().absorbed_before = before;
    h.duplicate_messages(f, Some(per_mille)).await;
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    h.duplicate_messages(f, None).await;
    h.kept().absorbed_before.clear();
}

pub(super) async fn observe(h: &mut impl Hands) -> Option<Effect> {
    // Traffic first: the look must not depend on the workload's.
    h.loss_burst().await;
    let (now, how) = h.copies_absorbed().await;
    seen(&h.kept().absorbed_before, &now, &how)
}

/// The rule: the nodes read both when the fault began and now absorbed more copies now (`how`:
/// what counted them). A node read only once (down at the start, or at the look) counts for
/// nothing, nor does one whose count went back (its container restarted): no count is judged
/// from a baseline it does not have.
pub fn seen(before: &[(Target, u64)], now: &[(Target, u64)], how: &str) -> Option<Effect> {
    let n: u64 = (now.iter())
        .filter_map(|(t, c)| {
            let (_, b) = before.iter().find(|(x, _)| x == t)?;
            Some(c.saturating_sub(*b))
        })
        .sum();
    (n > 0).then(|| {
        Effect::Seen(format!(
            "{n} copied message{} absorbed since the fault began ({how})",
            if n == 1 { "" } else { "s" }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_absorbed_since_the_start_show_the_fault() {
        let (m, r) = (Target::RedisMaster(0), Target::PgPrimary);
        assert_eq!(seen(&[(m, 7)], &[(m, 7)], "x"), None);
        let went_back = seen(&[(m, 7)], &[(m, 3)], "x");
        assert_eq!(went_back, None, "a counter that went back shows nothing");
        assert_eq!(
            seen(&[], &[(m, 9)], "x"),
            None,
            "no baseline, nothing judged"
        );
        let gone = seen(&[(m, 7), (r, 1)], &[(r, 1)], "x");
        assert_eq!(gone, None, "a node not read now adds nothing");
        let both = seen(&[(m, 7), (r, 0)], &[(m, 8), (r, 1)], "TCPDSACKRecv");
        assert_eq!(
            both.unwrap().to_string(),
            "2 copied messages absorbed since the fault began (TCPDSACKRecv)"
        );
    }

    #[test]
    fn only_the_network_is_a_target_and_per_mille_is_bounded() {
        assert!(crate::fault::network_only(Side::Network, WHY_NETWORK).is_ok());
        let e = crate::fault::network_only(Side::Redis, WHY_NETWORK).unwrap_err();
        assert!(e.contains("\"network\""), "{e}");
        let v = |pm: u64| serde_json::json!({ "per_mille": pm });
        assert!(parse(&v(0)).is_err());
        assert!(parse(&v(1001)).is_err());
        assert_eq!(parse(&v(50)), Ok(Kind::Duplicate { per_mille: 50 }));
    }
}
