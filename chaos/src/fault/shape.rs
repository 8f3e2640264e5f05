//! `partition` with a `shape`: the partitions Jepsen draws over five nodes that no cut of one
//! side from another makes. A `bridge` cuts the first two nodes from the last two and leaves the
//! middle one seeing both sides; a `majorities-ring` cuts each node from all but its two
//! neighbours in the list (the last beside the first), so every node sees a majority of the five
//! and no two see the same one. App nodes see every node, as Jepsen's clients do.
//!
//! The five are any distinct servers; the draw takes the quorum that decides a Redis failover
//! (the first pair and the three Sentinels) in a random order: whether the master, its replica
//! or a Sentinel is the bridge decides whether a Sentinel majority can still see the master.
//!
//! Made of cuts of one node from one node ([`Hands::cut`]), so no world has a primitive of its
//! own for it. Seen when a request across its first cut pair goes unanswered.
//!
//! ```json
//! {"kind":"partition","target":"network","shape":"bridge","nodes":["redis-master","sentinel-1","sentinel-2","redis-replica","sentinel-3"]}
//! ```

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side, Target};

/// How many nodes a shape spans.
pub const NODES: usize = 5;

/// Which shape: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Bridge,
    MajoritiesRing,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Bridge => "bridge",
            Shape::MajoritiesRing => "majorities-ring",
        }
    }
}

/// The quorum in a random order, as a bridge or a ring.
pub fn draw() -> impl Strategy<Value = Fault> {
    let quorum = vec![
        Target::RedisMaster(0),
        Target::RedisReplica(0),
        Target::Sentinel(0),
        Target::Sentinel(1),
        Target::Sentinel(2),
    ];
    (
        prop_oneof![Just(Shape::Bridge), Just(Shape::MajoritiesRing)],
        Just(quorum).prop_shuffle(),
    )
        .prop_map(|(shape, order)| {
            let nodes: [Target; NODES] = order.try_into().expect("five nodes");
            Fault::new(Kind::Shaped { shape, nodes }, Side::Network)
        })
}

/// The pairs of nodes cut from each other.
pub fn cut_pairs(shape: Shape, nodes: &[Target; NODES]) -> Vec<(Target, Target)> {
    match shape {
        Shape::Bridge => (0..2)
            .flat_map(|a| (3..NODES).map(move |b| (nodes[a], nodes[b])))
            .collect(),
        // In a ring of five, the pairs two apart are exactly the pairs not beside each other.
        Shape::MajoritiesRing => (0..NODES)
            .map(|i| (nodes[i], nodes[(i + 2) % NODES]))
            .collect(),
    }
}

/// The cut of `a` from `b` as a fault of its own: what a world's cut primitive keys its rules by.
fn pair(a: Target, b: Target) -> Fault {
    Fault::new(
        Kind::Partition {
            peers: Side::One(b),
            one_way: false,
        },
        a,
    )
}

pub(super) fn fields(shape: Shape, nodes: &[Target; NODES]) -> Vec<(&'static str, Value)> {
    vec![
        ("shape", shape.name().into()),
        (
            "nodes",
            Value::Array(nodes.iter().map(|t| t.name().into()).collect()),
        ),
    ]
}

/// The shape's fields of `v`, once [`super::partition::parse`] saw a `shape`.
pub(super) fn parse(v: &Value, shape: &str) -> Result<Kind, String> {
    let shape = match shape {
        "bridge" => Shape::Bridge,
        "majorities-ring" => Shape::MajoritiesRing,
        other => {
            return Err(format!(
                "unknown partition shape {other:?}: use \"bridge\" or \"majorities-ring\""
            ))
        }
    };
    let need = || {
        format!(
            "a {} partition needs \"nodes\": five distinct servers such as [\"redis-master\", \"sentinel-1\", \"sentinel-2\", \"redis-replica\", \"sentinel-3\"]",
            shape.name()
        )
    };
    let names = v.get("nodes").and_then(Value::as_array).ok_or_else(need)?;
    let mut nodes = Vec::with_capacity(NODES);
    for n in names {
        let t = Target::parse(n.as_str().ok_or_else(need)?)?;
        if matches!(t, Target::App(_)) || nodes.contains(&t) {
            return Err(need());
        }
        nodes.push(t);
    }
    let nodes: [Target; NODES] = nodes.try_into().map_err(|_| need())?;
    Ok(Kind::Shaped { shape, nodes })
}

/// Why a shaped partition's only target is the network (see [`super::network_only`]).
pub(super) const WHY_NETWORK: &str = "a partition with a shape cuts the nodes it names";

pub(super) async fn begin(h: &mut impl Hands, shape: Shape, nodes: &[Target; NODES]) {
    for (a, b) in cut_pairs(shape, nodes) {
        h.cut(&pair(a, b), Side::One(b), false).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, shape: Shape, nodes: &[Target; NODES]) {
    for (a, b) in cut_pairs(shape, nodes) {
        h.uncut(&pair(a, b), Side::One(b), false).await;
    }
}

/// Seen from the first cut pair, as a cut of one side from another is seen from one of its
/// pairs (each look is a request left unanswered: one per pair would take the containers' nemesis
/// five connect timeouts).
pub(super) async fn observe(
    h: &mut impl Hands,
    shape: Shape,
    nodes: &[Target; NODES],
) -> Option<Effect> {
    let pairs = cut_pairs(shape, nodes);
    let &(a, b) = pairs.first()?;
    let seen = h.cut_seen(&pair(a, b), Side::One(b)).await?;
    Some(Effect::Seen(format!(
        "{} ({} pairs cut)",
        seen,
        pairs.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: [Target; NODES] = [
        Target::RedisMaster(0),
        Target::Sentinel(0),
        Target::Sentinel(1),
        Target::RedisReplica(0),
        Target::Sentinel(2),
    ];

    /// Who still sees whom: every pair of the five not cut.
    fn sees(shape: Shape) -> Vec<Vec<Target>> {
        let cut = cut_pairs(shape, &FIVE);
        let linked = |a: Target, b: Target| !cut.contains(&(a, b)) && !cut.contains(&(b, a));
        FIVE.iter()
            .map(|&a| FIVE.iter().copied().filter(|&b| linked(a, b)).collect())
            .collect()
    }

    #[test]
    fn a_bridge_cuts_the_halves_and_its_middle_node_sees_both() {
        let s = sees(Shape::Bridge);
        assert_eq!(s[2], FIVE.to_vec(), "the bridge sees everyone");
        assert_eq!(s[0], vec![FIVE[0], FIVE[1], FIVE[2]]);
        assert_eq!(s[4], vec![FIVE[2], FIVE[3], FIVE[4]]);
        assert_eq!(cut_pairs(Shape::Bridge, &FIVE).len(), 4);
    }

    #[test]
    fn in_a_majorities_ring_each_node_sees_a_majority_and_no_two_the_same() {
        let s = sees(Shape::MajoritiesRing);
        assert!(s.iter().all(|v| v.len() == 3), "{s:?}");
        for i in 0..NODES {
            for j in i + 1..NODES {
                assert_ne!(s[i], s[j]);
            }
        }
        assert_eq!(
            s[0],
            vec![FIVE[0], FIVE[1], FIVE[4]],
            "the first beside the last"
        );
    }

    #[test]
    fn json_round_trips_and_bad_shapes_name_the_fix() {
        for shape in [Shape::Bridge, Shape::MajoritiesRing] {
            let f = Fault::new(Kind::Shaped { shape, nodes: FIVE }, Side::Network);
            assert_eq!(Fault::from_json(&f.to_json()), Ok(f));
        }
        let bad = |v: Value| Fault::from_json(&v).unwrap_err();
        let nodes = ["redis-master", "sentinel-1", "sentinel-2", "redis-replica"];
        assert!(bad(serde_json::json!({"kind": "partition", "target": "network", "shape": "bridge", "nodes": nodes}))
            .contains("five distinct servers"));
        assert!(bad(serde_json::json!({"kind": "partition", "target": "network", "shape": "star", "nodes": nodes}))
            .contains("\"majorities-ring\""));
        let five = [
            "redis-master",
            "sentinel-1",
            "sentinel-2",
            "redis-replica",
            "sentinel-1",
        ];
        assert!(bad(serde_json::json!({"kind": "partition", "target": "network", "shape": "bridge", "nodes": five}))
            .contains("distinct"));
        let five = [
            "redis-master",
            "sentinel-1",
            "sentinel-2",
            "redis-replica",
            "sentinel-3",
        ];
        assert!(bad(serde_json::json!({"kind": "partition", "target": "redis", "shape": "bridge", "nodes": five}))
            .contains("\"network\""));
    }

    #[test]
    fn the_draw_orders_the_quorum_at_random() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let mut orders = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let f = draw().new_tree(&mut runner).unwrap().current();
            let Kind::Shaped { nodes, .. } = f.kind else {
                panic!("{f:?}")
            };
            let mut sorted = nodes;
            sorted.sort();
            assert_eq!(sorted.len(), NODES);
            assert!(sorted.windows(2).all(|w| w[0] != w[1]), "{nodes:?}");
            orders.insert(format!("{nodes:?}"));
        }
        assert!(orders.len() > 10, "{orders:?}");
    }
}
