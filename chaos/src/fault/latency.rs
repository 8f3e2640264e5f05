//! `latency`: every message takes `one_way_ms` longer (a congested switch, a cross-zone detour);
//! the heal restores the network's own latency. Seen when a round trip takes at least twice the
//! added one-way delay.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{u32_field, Fault, Kind, Side};

pub const NAME: &str = "latency";

/// What the `random` scenario draws: 10 to 70 ms more on every link.
pub const ONE_WAY_MS: std::ops::Range<u32> = 10..70;

/// `one_way_ms` more on every link ([`ONE_WAY_MS`] in the `random` scenario, a family's own
/// range in swarm plans).
pub fn draw(one_way_ms: std::ops::Range<u32>) -> impl Strategy<Value = Fault> {
    one_way_ms.prop_map(|ms| Fault::new(Kind::Latency { one_way_ms: ms }, Side::Network))
}

pub(super) fn fields(one_way_ms: u32) -> Vec<(&'static str, Value)> {
    vec![("one_way_ms", one_way_ms.into())]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    Ok(Kind::Latency {
        one_way_ms: u32_field(v, "one_way_ms", "a latency fault", "milliseconds")?,
    })
}

pub(super) async fn begin(h: &mut impl Hands, one_way_ms: u32) {
    h.delay(Some(one_way_ms)).await;
}

pub(super) async fn heal(h: &mut impl Hands) {
    h.delay(None).await;
}

pub(super) async fn observe(h: &mut impl Hands, one_way_ms: u32) -> Option<Effect> {
    let (path, rtt) = h.round_trip().await?;
    seen(one_way_ms, path, rtt)
}

/// The rule: a round trip of at least twice the added one-way delay.
pub fn seen(one_way_ms: u32, path: impl Into<String>, rtt: Duration) -> Option<Effect> {
    (rtt >= Duration::from_millis(2 * u64::from(one_way_ms))).then(|| Effect::SlowRoundTrip {
        path: path.into(),
        rtt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_shows_latency_from_twice_the_one_way_delay() {
        let ms = Duration::from_millis;
        assert_eq!(seen(55, "x", ms(109)), None);
        let e = seen(55, "the nemesis to redis-master", ms(110)).unwrap();
        assert_eq!(
            e.to_string(),
            "a round trip from the nemesis to redis-master took 110.0 ms"
        );
    }
}
