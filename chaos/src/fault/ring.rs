//! `ring`: the memcached ring changes while traffic runs (the production design's "hash ring
//! changes: key redistribution"). `change = "join"` brings a node in (the spare, `memcached-4`,
//! which the cluster boots only for a plan that adds it); `"leave"` takes one out. The heal
//! undoes it, so the keys that moved move back: a node that left returns with what it held.
//!
//! Each world applies a change to every app node in two steps ([`aside::Membership`]: staged
//! everywhere, then committed everywhere). A node that joined is seen when every app node's ring
//! has it and it answers (the reads it answered since are told). A node that left still takes
//! invalidations (a versioned tombstone is a `gets` and a `cas`), so its counters cannot show it
//! left: it is seen when every app node's ring is without it while the other nodes answer reads.

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side, Target};

pub const NAME: &str = "ring";

/// Reads the other nodes must answer, between two looks at a node that left, for its answering
/// none to show that it is out of the ring.
pub const READS_ELSEWHERE_MIN: u64 = 20;

/// The shortest a random plan's ring change lasts: long enough for the keys that moved to be
/// read where they moved.
pub const RANDOM_FOR_MS_MIN: u64 = 1_000;

/// A booted node leaves, or the spare joins.
pub fn draw() -> impl Strategy<Value = Fault> {
    let spare = Target::Memcached(crate::scenario::MEMCACHED_NODES);
    prop_oneof![
        (0..crate::scenario::MEMCACHED_NODES)
            .prop_map(|i| Fault::new(Kind::Ring { join: false }, Target::Memcached(i))),
        Just(Fault::new(Kind::Ring { join: true }, spare)),
    ]
}

pub(super) fn fields(join: bool) -> Vec<(&'static str, Value)> {
    vec![("change", if join { "join" } else { "leave" }.into())]
}

/// A ring change moves one memcached node: a spare in (one the world boots outside the ring),
/// a booted one out.
pub(super) fn check_target(target: Side, join: bool) -> Result<(), String> {
    let booted = crate::scenario::MEMCACHED_NODES;
    let spares = crate::scenario::MEMCACHED_SPARES;
    match target {
        Side::One(Target::Memcached(i)) if join && i >= booted => Ok(()),
        Side::One(Target::Memcached(i)) if !join && i < booted => Ok(()),
        _ if join => Err(format!(
            "a ring join brings in a spare memcached node: target {:?} is not one (use memcached-{})",
            target.name(),
            u16::from(booted) + 1 + u16::from(spares) - 1
        )),
        _ => Err(format!(
            "a ring leave takes out a memcached node of the ring: target {:?} is not one (use memcached-1 to memcached-{booted})",
            target.name()
        )),
    }
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    match v.get("change").and_then(Value::as_str) {
        Some("join") => Ok(Kind::Ring { join: true }),
        Some("leave") => Ok(Kind::Ring { join: false }),
        _ => Err("a ring fault needs \"change\": \"join\" or \"leave\"".into()),
    }
}

/// The ring before any change: the nodes every world boots.
fn booted() -> Vec<Target> {
    (0..crate::scenario::MEMCACHED_NODES)
        .map(Target::Memcached)
        .collect()
}

fn node(f: &Fault) -> Option<Target> {
    match f.target {
        Side::One(t @ Target::Memcached(_)) => Some(t),
        _ => None,
    }
}

/// The ring with `t` in (`join`) or out.
fn moved(ring: &[Target], t: Target, join: bool) -> Vec<Target> {
    let mut out: Vec<Target> = ring.iter().copied().filter(|&m| m != t).collect();
    if join {
        out.push(t);
        out.sort();
    }
    out
}

async fn change(h: &mut impl Hands, t: Target, join: bool) {
    let ring = h.kept().ring.clone().unwrap_or_else(booted);
    let next = moved(&ring, t, join);
    h.set_ring(&next).await;
    h.kept().ring = Some(next);
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, join: bool) {
    let Some(t) = node(f) else { return };
    // Counted from before the change: the reads a joined node answers while the change
    // reaches the app nodes count too (a spare outside every ring answers none before).
    note_reads(h, t).await;
    change(h, t, join).await;
}

/// Notes what `t` and the other nodes have answered, for the looks to count from: before the
/// change, or at the first look that can read it (a lost request must not leave the fault
/// unobservable).
async fn note_reads(h: &mut impl Hands, t: Target) {
    let others = reads_elsewhere(h, t).await;
    if let Some((reads, _)) = h.reads_served(t).await {
        h.kept().reads_seen.push((t, reads, others));
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault, join: bool) {
    let Some(t) = node(f) else { return };
    change(h, t, !join).await;
    h.kept().reads_seen.retain(|(n, _, _)| *n != t);
}

/// Reads every other memcached node has answered, together.
async fn reads_elsewhere(h: &mut impl Hands, t: Target) -> u64 {
    let mut sum = 0;
    for n in h.targets(Side::Memcached) {
        if n != t {
            sum += h.reads_served(n).await.map_or(0, |(r, _)| r);
        }
    }
    sum
}

pub(super) async fn observe(h: &mut impl Hands, f: &Fault, join: bool) -> Option<Effect> {
    let t = node(f)?;
    let Some(i) = h.kept().reads_seen.iter().position(|(n, _, _)| *n == t) else {
        note_reads(h, t).await;
        return None;
    };
    let (_, before, others_before) = h.kept().reads_seen[i];
    let (now, how) = h.reads_served(t).await?;
    // A join is judged by the node's own reads alone: no request more than needed (a lossy
    // network loses some, and each costs the look a timeout).
    let others = if join {
        others_before
    } else {
        reads_elsewhere(h, t).await
    };
    let rings = h.rings().await;
    let apps_with = rings.iter().filter(|r| r.contains(&t)).count();
    let look = Look {
        reads: (before, now),
        others: (others_before, others),
        apps: rings.len(),
        apps_with,
    };
    seen(&t.name(), join, look, &how)
}

/// What a look at a node a `ring` fault moved found.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    /// Reads the node had answered when the change was made, and now.
    pub reads: (u64, u64),
    /// The same for the other memcached nodes together.
    pub others: (u64, u64),
    /// App nodes, and how many of them have a ring with the node.
    pub apps: usize,
    pub apps_with: usize,
}

/// The rule. A node that joined is in every app node's ring, and answers (its count of reads
/// since is told, not required: a workload whose hot keys all stayed put may read none of the
/// moved keys within the fault, seed 141 of `memcached-ring-grow` at its time; and its
/// `gets` count could come from invalidations alone, a versioned tombstone being a `gets` and a
/// `cas`).
/// A node that left is out of every app node's ring while the others answered at least
/// [`READS_ELSEWHERE_MIN`] reads.
pub fn seen(node: &str, join: bool, look: Look, how: &str) -> Option<Effect> {
    let mine = look.reads.1.saturating_sub(look.reads.0);
    let theirs = look.others.1.saturating_sub(look.others.0);
    if join {
        return (look.apps > 0 && look.apps_with == look.apps).then(|| {
            Effect::Seen(format!(
                "{node} is in the ring of all {} app nodes and answered {mine} reads since it joined ({how})",
                look.apps
            ))
        });
    }
    (look.apps > 0 && look.apps_with == 0 && theirs >= READS_ELSEWHERE_MIN).then(|| {
        Effect::Seen(format!(
            "{node} is out of the ring of all {} app nodes, and the other memcached nodes answered {theirs} reads since ({how})",
            look.apps
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(reads: (u64, u64), others: (u64, u64), apps_without: usize) -> Look {
        Look {
            reads,
            others,
            apps: 3,
            apps_with: 3 - apps_without,
        }
    }

    #[test]
    fn a_joined_node_shows_once_every_app_nodes_ring_has_it() {
        assert_eq!(
            seen("m", true, look((7, 9), (0, 0), 1), "x"),
            None,
            "an app node without it"
        );
        let none = Look {
            apps: 0,
            ..look((7, 9), (0, 0), 0)
        };
        assert_eq!(seen("m", true, none, "x"), None, "no app node to ask");
        assert_eq!(
            seen("memcached-4", true, look((7, 9), (0, 0), 0), "stats cmd_get")
                .unwrap()
                .to_string(),
            "memcached-4 is in the ring of all 3 app nodes and answered 2 reads since it joined (stats cmd_get)"
        );
    }

    #[test]
    fn a_node_that_left_shows_only_when_out_of_every_ring_while_the_others_are_read() {
        assert_eq!(
            seen("m", false, look((5, 5), (0, 500), 2), "x"),
            None,
            "one app still has it"
        );
        assert_eq!(
            seen("m", false, look((5, 5), (0, 19), 3), "x"),
            None,
            "nothing read"
        );
        let none = Look {
            apps: 0,
            ..look((5, 5), (0, 500), 0)
        };
        assert_eq!(seen("m", false, none, "x"), None, "no app node to ask");
        assert_eq!(
            seen("memcached-3", false, look((5, 9), (100, 120), 3), "stats cmd_get")
                .unwrap()
                .to_string(),
            "memcached-3 is out of the ring of all 3 app nodes, and the other memcached nodes answered 20 reads since (stats cmd_get)"
        );
    }

    #[test]
    fn the_ring_moves_and_moves_back() {
        let three = booted();
        let four = moved(&three, Target::Memcached(3), true);
        assert_eq!(four.len(), 4);
        assert_eq!(moved(&four, Target::Memcached(3), false), three);
        let two = moved(&three, Target::Memcached(1), false);
        assert_eq!(two, vec![Target::Memcached(0), Target::Memcached(2)]);
        assert_eq!(moved(&two, Target::Memcached(1), true), three);
    }
}
