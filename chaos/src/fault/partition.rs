//! `partition`: the network between the target and `peers` drops messages: both ways, or with
//! `"direction": "replies-lost"` only the peers' messages to the target (requests arrive,
//! replies are lost: a write commits but its caller times out). The heal repairs the links.
//! Seen when a request from one side to a server on the other goes unanswered. A partition with
//! a `shape` is [`super::shape`]'s.

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side, Target};

pub const NAME: &str = "partition";

/// A node or a group cut from a group it is not part of, both ways or one way; or, one time in
/// four, a shape over the Redis quorum ([`super::shape::draw`]).
pub fn draw() -> impl Strategy<Value = Fault> {
    prop_oneof![3 => sides(), 1 => super::shape::draw()]
}

/// A node or a group cut from a group it is not part of, both ways or one way.
fn sides() -> impl Strategy<Value = Fault> {
    use super::draw::{group, part, server};
    (
        prop_oneof![
            server().prop_map(Side::One),
            (0u8..3).prop_map(|i| Side::One(Target::App(i))),
            group()
        ],
        group(),
        any::<bool>(),
    )
        .prop_filter("a side is not cut from itself", |(t, p, _)| {
            part(*t) != part(*p)
                && !(matches!(t, Side::Apps | Side::One(Target::App(_))) && *p == Side::Apps)
        })
        .prop_map(|(target, peers, one_way)| Fault::new(Kind::Partition { peers, one_way }, target))
}

pub(super) fn fields(peers: Side, one_way: bool) -> Vec<(&'static str, Value)> {
    vec![
        ("peers", peers.name().into()),
        (
            "direction",
            if one_way { "replies-lost" } else { "both" }.into(),
        ),
    ]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    let text = |field: &str| v.get(field).and_then(Value::as_str);
    if let Some(shape) = v.get("shape") {
        let shape = shape
            .as_str()
            .ok_or(r#"a partition's "shape" is "bridge" or "majorities-ring""#)?;
        return super::shape::parse(v, shape);
    }
    Ok(Kind::Partition {
        peers: Side::parse(text("peers").ok_or("a partition needs \"peers\" such as \"redis\"")?)?,
        one_way: match text("direction") {
            Some("both") | None => false,
            Some("replies-lost") => true,
            Some(other) => {
                return Err(format!(
                    "unknown partition direction {other:?}: use \"both\" or \"replies-lost\""
                ))
            }
        },
    })
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, peers: Side, one_way: bool) {
    h.cut(f, peers, one_way).await;
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault, peers: Side, one_way: bool) {
    h.uncut(f, peers, one_way).await;
}

pub(super) async fn observe(h: &mut impl Hands, f: &Fault, peers: Side) -> Option<Effect> {
    h.cut_seen(f, peers).await.map(Effect::Seen)
}
