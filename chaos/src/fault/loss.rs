//! `loss`: each message is dropped with probability `per_mille` / 1000; the heal stops the loss.
//! Seen when any request of a burst of [`super::effect::LOSS_BURST`] sent at once goes
//! unanswered.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side};

pub const NAME: &str = "loss";

/// What the `random` scenario draws: 1 % to 10 % of every link's messages.
pub const PER_MILLE: std::ops::Range<u16> = 10..100;

/// A share of every link's messages in `per_mille` (in thousandths; [`PER_MILLE`] in the
/// `random` scenario, up to 30 % in swarm plans).
pub fn draw(per_mille: std::ops::Range<u16>) -> impl Strategy<Value = Fault> {
    per_mille.prop_map(|pm| Fault::new(Kind::Loss { per_mille: pm }, Side::Network))
}

pub(super) fn fields(per_mille: u16) -> Vec<(&'static str, Value)> {
    vec![("per_mille", per_mille.into())]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    Ok(Kind::Loss {
        per_mille: v
            .get("per_mille")
            .and_then(Value::as_u64)
            .filter(|&n| n <= 1000)
            .map(|n| n as u16)
            .ok_or("a loss fault needs \"per_mille\", 0 to 1000")?,
    })
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, per_mille: u16) {
    h.drop_messages(f, Some(per_mille)).await;
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    h.drop_messages(f, None).await;
}

pub(super) async fn observe(h: &mut impl Hands) -> Option<Effect> {
    let (path, lost, within) = h.loss_burst().await?;
    seen(lost, path, within)
}

/// The rule: any request of the burst got no reply `within` its timeout.
pub fn seen(lost: usize, path: impl Into<String>, within: Duration) -> Option<Effect> {
    (lost > 0).then(|| Effect::Lost {
        path: path.into(),
        lost,
        within,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lost_request_of_the_burst_shows_loss() {
        assert_eq!(seen(0, "x", Duration::from_millis(50)), None);
        assert_eq!(
            seen(3, "the host to pg-primary", Duration::from_millis(300))
                .unwrap()
                .to_string(),
            "3 of 20 requests from the host to pg-primary got no reply within 300 ms"
        );
    }
}
