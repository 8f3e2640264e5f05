//! `flush`: a cache tier loses every item at once (FLUSHALL on the Redis master, `flush_all` on
//! memcached: a datacenter's cold start). Nothing to undo: the heal only marks the end of the
//! refill the plan watches. Each cache first takes a marker key
//! ([`super::effect::FLUSH_MARKER`]); the flush is seen once every flushed cache answers without
//! it.

use proptest::prelude::*;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Side, Target};

pub const NAME: &str = "flush";

/// One memcached node, or all of them (the node that booted as the Redis master may have been
/// demoted by then: random plans leave Redis alone).
pub fn draw() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (0u8..3).prop_map(|i| Side::One(Target::Memcached(i))),
        Just(Side::Memcached)
    ]
    .prop_map(|t| Fault::new(Kind::Flush, t))
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault) {
    for t in h.targets(f.target) {
        // A replica refuses the marker (READONLY): its master's flush reaches it.
        if h.mark(t).await {
            h.flush(t).await;
            h.kept().flushed.push(t);
        }
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    h.kept().flushed.retain(|t| !f.target.contains(*t));
}

/// Asks the flushed caches in turn, no further than the first that still holds the marker.
pub(super) async fn observe(h: &mut impl Hands, f: &Fault) -> Option<Effect> {
    let caches: Vec<Target> = (h.kept().flushed.iter())
        .copied()
        .filter(|t| f.target.contains(*t))
        .collect();
    let mut held = Vec::new();
    for t in caches {
        let marker = h.holds_marker(t).await;
        held.push((t.name(), marker));
        if marker != Some(false) {
            break;
        }
    }
    seen(held)
}

/// The rule: every flushed cache, asked in turn, answers that the marker is gone
/// (`Some(false)`); `held` may stop at the first that does not.
pub fn seen(held: Vec<(String, Option<bool>)>) -> Option<Effect> {
    if held.is_empty() || held.iter().any(|(_, h)| *h != Some(false)) {
        return None;
    }
    Some(Effect::MarkerGone {
        caches: held.into_iter().map(|(c, _)| c).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_shows_only_when_every_cache_answers_without_the_marker() {
        let gone = |c: &str| (c.to_string(), Some(false));
        assert_eq!(seen(vec![]), None);
        assert_eq!(seen(vec![gone("a"), ("b".into(), Some(true))]), None);
        assert_eq!(seen(vec![gone("a"), ("b".into(), None)]), None);
        assert_eq!(
            seen(vec![gone("redis-master"), gone("memcached-1")])
                .unwrap()
                .to_string(),
            "the marker key written before the flush is gone from redis-master, memcached-1"
        );
    }
}
