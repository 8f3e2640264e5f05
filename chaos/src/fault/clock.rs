//! `clock`: a node's wall clock jumps (`jump_ms`, negative: back) and from then on runs at
//! `rate_permille` / 1000 of true speed, as after an NTP step, a VM resumed from a snapshot, or a
//! bad oscillator; the heal steps it back to true time. It acts on app nodes and on Redis:
//! * An app node stamps an entry's freshness (`fresh_until_ms`, stale-while-revalidate and early
//!   refresh) from its clock and judges other nodes' stamps by it ([`aside::wall`]).
//! * Redis expires keys, leases and tombstones by its wall clock: a jump forward expires at once
//!   every key whose TTL it passes; a jump back keeps them past their time.
//!
//! memcached is not a target: it counts time on the monotonic clock from its start (an item's
//! expiry is relative to that), which an NTP step does not move, so a wall-clock fault has no
//! effect there to prove. PostgreSQL's clock stamps nothing the cache reads.
//!
//! Seen when the node's clock, read the way its clients could (Redis's `TIME`, the app node's own
//! reading), is off true time by at least half the jump (or, for a clock that only runs fast or
//! slow, by [`DRIFT_SEEN_MS`]) in the fault's direction.

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side, Target};

pub const NAME: &str = "clock";

/// The nodes a clock fault moves, and how a person names them.
pub fn skews(t: Target) -> bool {
    matches!(
        t,
        Target::App(_) | Target::RedisMaster(_) | Target::RedisReplica(_)
    )
}
pub const SKEWS: &str = "app-N, apps, redis-master, redis-replica or redis";

/// How far a clock that only drifts must be off to show the fault, in ms.
pub const DRIFT_SEEN_MS: i64 = 500;

/// How long a clock running at `rate_permille` takes to drift [`DRIFT_SEEN_MS`] twice over: how
/// long a fault that only drifts must last to be seen (random plans hold it that long).
pub fn drift_seen_after_ms(rate_permille: u16) -> u64 {
    let drift_permille = u64::from(rate_permille.abs_diff(1000)).max(1);
    (2 * DRIFT_SEEN_MS as u64 * 1000).div_ceil(drift_permille)
}

/// The largest jump either way a fault may name: ten days, in ms.
const JUMP_MS_MAX: i64 = 10 * 24 * 3600 * 1000;

/// Jumps of 2 to 120 s either way, or a clock running 1.5 to 4 times fast, on one app node, both
/// apps, or a Redis node or both.
pub fn draw() -> impl Strategy<Value = Fault> {
    let side = prop_oneof![
        (0u8..3).prop_map(|i| Side::One(Target::App(i))),
        Just(Side::Apps),
        Just(Side::One(Target::RedisMaster(0))),
        Just(Side::One(Target::RedisReplica(0))),
        Just(Side::Redis),
    ];
    let skew = prop_oneof![
        (2_000i32..120_000).prop_map(|jump_ms| (jump_ms, 1000u16)),
        (2_000i32..120_000).prop_map(|jump_ms| (-jump_ms, 1000u16)),
        (1_500u16..4_000).prop_map(|rate_permille| (0, rate_permille)),
    ];
    (side, skew).prop_map(|(side, (jump_ms, rate_permille))| {
        Fault::new(
            Kind::Clock {
                jump_ms,
                rate_permille,
            },
            side,
        )
    })
}

pub(super) fn fields(jump_ms: i32, rate_permille: u16) -> Vec<(&'static str, Value)> {
    vec![
        ("jump_ms", jump_ms.into()),
        ("rate_permille", rate_permille.into()),
    ]
}

/// `jump_ms` (required, may be negative) and `rate_permille` (1000, true speed, when absent).
pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    let jump_ms = v
        .get("jump_ms")
        .and_then(Value::as_i64)
        .filter(|j| j.abs() <= JUMP_MS_MAX)
        .ok_or(
            "a clock fault needs \"jump_ms\", a whole number of milliseconds within ten days \
             either way (negative: back)",
        )?;
    let rate_permille = match v.get("rate_permille") {
        None => 1000,
        Some(r) => r
            .as_u64()
            .filter(|r| (1..=u64::from(u16::MAX)).contains(r))
            .ok_or("a clock fault's \"rate_permille\" is the clock's speed in thousandths of true speed, 1 to 65535 (1000: true speed)")?,
    };
    if jump_ms == 0 && rate_permille == 1000 {
        return Err("a clock fault with \"jump_ms\" 0 and \"rate_permille\" 1000 moves no clock: give a jump or a rate".into());
    }
    Ok(Kind::Clock {
        jump_ms: jump_ms as i32,
        rate_permille: rate_permille as u16,
    })
}

/// The nodes on the fault's side whose clocks it moves.
fn nodes(h: &impl Hands, f: &Fault) -> Vec<Target> {
    h.targets(f.target)
        .into_iter()
        .filter(|t| skews(*t))
        .collect()
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, jump_ms: i32, rate_permille: u16) {
    for t in nodes(h, f) {
        h.skew_clock(t, Some((jump_ms, rate_permille))).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in nodes(h, f) {
        h.skew_clock(t, None).await;
    }
}

/// Reads the nodes' clocks in turn, until one shows the skew.
pub(super) async fn observe(
    h: &mut impl Hands,
    f: &Fault,
    jump_ms: i32,
    rate_permille: u16,
) -> Option<Effect> {
    for t in nodes(h, f) {
        if let Some((how, offset_ms)) = h.clock_offset(t).await {
            if let Some(e) = seen(&t.name(), &how, offset_ms, jump_ms, rate_permille) {
                return Some(e);
            }
        }
    }
    None
}

/// The rule: `node`'s clock, read `how`, is `offset_ms` off true time: does that show a skew of
/// `jump_ms` at `rate_permille`?
pub fn seen(
    node: &str,
    how: &str,
    offset_ms: i64,
    jump_ms: i32,
    rate_permille: u16,
) -> Option<Effect> {
    let jump_ms = i64::from(jump_ms);
    let shows = if jump_ms != 0 {
        offset_ms.signum() == jump_ms.signum() && offset_ms.abs() * 2 >= jump_ms.abs()
    } else if rate_permille > 1000 {
        offset_ms >= DRIFT_SEEN_MS
    } else {
        offset_ms <= -DRIFT_SEEN_MS
    };
    shows.then(|| {
        let (size, way) = (offset_ms.unsigned_abs() as f64 / 1e3, offset_ms > 0);
        Effect::Seen(format!(
            "{node}'s clock read {size:.1} s {} true time ({how})",
            if way { "ahead of" } else { "behind" }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_shows_the_fault_when_it_is_off_by_half_the_jump_its_way() {
        let s = |off, jump, rate| seen("redis-master", "TIME", off, jump, rate);
        assert_eq!(s(0, 60_000, 1000), None);
        assert_eq!(s(29_000, 60_000, 1000), None);
        assert_eq!(s(-60_000, 60_000, 1000), None, "the wrong way");
        assert_eq!(
            s(59_800, 60_000, 1000).unwrap().to_string(),
            "redis-master's clock read 59.8 s ahead of true time (TIME)"
        );
        assert_eq!(
            s(-30_000, -60_000, 1000).unwrap().to_string(),
            "redis-master's clock read 30.0 s behind true time (TIME)"
        );
        assert_eq!(s(400, 0, 2000), None, "a drift too small to tell");
        assert!(s(600, 0, 2000).is_some());
        assert!(s(-600, 0, 500).is_some());
        assert_eq!(s(600, 0, 500), None);
    }

    #[test]
    fn a_drifting_clock_is_held_long_enough_to_be_seen() {
        assert_eq!(drift_seen_after_ms(2000), 1000);
        assert_eq!(drift_seen_after_ms(1547), 1829);
        assert_eq!(drift_seen_after_ms(500), 2000);
        assert_eq!(drift_seen_after_ms(1000), 1_000_000);
    }

    #[test]
    fn a_clock_fault_names_a_jump_or_a_rate_within_bounds() {
        let p = |v: Value| parse(&v);
        assert_eq!(
            p(serde_json::json!({"jump_ms": -5000})),
            Ok(Kind::Clock {
                jump_ms: -5000,
                rate_permille: 1000
            })
        );
        assert!(p(serde_json::json!({"jump_ms": 0, "rate_permille": 3000})).is_ok());
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"jump_ms": "5s"}),
            serde_json::json!({"jump_ms": 0}),
            serde_json::json!({"jump_ms": 0, "rate_permille": 0}),
            serde_json::json!({"jump_ms": 11i64 * 24 * 3600 * 1000}),
            serde_json::json!({"jump_ms": 0, "rate_permille": 100_000}),
        ] {
            let e = p(bad.clone()).unwrap_err();
            assert!(e.contains("clock fault"), "{bad}: {e}");
        }
    }
}
