//! `memory-limit`: a cache node may hold at most `kib` KiB and evicts, least recently used
//! first; the heal lifts the limit. Redis: `CONFIG SET maxmemory` with `allkeys-lru`. memcached
//! (the production design's memory pressure): the simulator's model holds `kib` KiB; a real
//! memcached refuses a `cache_memlimit` under 8 MiB, so the containers world lowers it to 8 MiB
//! and a ballast writer keeps that full, which evicts the items nobody read lately just the
//! same. Seen when a limited node has evicted more keys than it had when the limit began.

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{u32_field, Fault, Kind, Side, Target};

pub const NAME: &str = "memory-limit";

/// Below the base scenario's working set, so the limit evicts: Redis holds its 40 keys in about
/// 6 KiB; a memcached node holds the keys the ring gives it, about 200 bytes each, and 1 KiB is
/// under what even the node with the fewest holds (2 KiB was not, random seeds 68, 77 and 137:
/// memcached-2 never evicted).
pub fn draw() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (2u32..5).prop_map(|kib| Fault::new(Kind::MemoryLimit { kib }, Side::Redis)),
        (0u8..3).prop_map(|i| {
            Fault::new(
                Kind::MemoryLimit { kib: 1 },
                Side::One(Target::Memcached(i)),
            )
        }),
    ]
}

pub(super) fn fields(kib: u32) -> Vec<(&'static str, Value)> {
    vec![("kib", kib.into())]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    Ok(Kind::MemoryLimit {
        kib: u32_field(v, "kib", "a memory-limit fault", "KiB")?,
    })
}

/// The servers a memory limit acts on.
pub fn limits(t: Target) -> bool {
    matches!(
        t,
        Target::RedisMaster(_) | Target::RedisReplica(_) | Target::Memcached(_)
    )
}

/// How a person names them.
pub const LIMITS: &str = "redis-master, redis-replica, redis, memcached-N or memcached";

fn caches_in(h: &impl Hands, f: &Fault) -> Vec<Target> {
    (h.targets(f.target).into_iter())
        .filter(|t| limits(*t))
        .collect()
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, kib: u32) {
    for t in caches_in(h, f) {
        let before = h.evicted(t).await;
        let held_kib = h.limit_memory(t, Some(kib)).await;
        if let Some((evicted, _)) = before {
            h.kept().evicted_before.push((t, evicted, held_kib));
        }
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in caches_in(h, f) {
        h.limit_memory(t, None).await;
    }
    h.kept()
        .evicted_before
        .retain(|(t, _, _)| !f.target.contains(*t));
}

pub(super) async fn observe(h: &mut impl Hands) -> Option<Effect> {
    for (t, before, held_kib) in h.kept().evicted_before.clone() {
        if let Some((now, how)) = h.evicted(t).await {
            if let Some(e) = seen(t.name(), held_kib, before, now, how) {
                return Some(e);
            }
        }
    }
    None
}

/// The rule: the node evicted more keys than it had when the limit began.
pub fn seen(
    target: impl Into<String>,
    kib: u32,
    evicted_before: u64,
    evicted_now: u64,
    how: impl Into<String>,
) -> Option<Effect> {
    (evicted_now > evicted_before).then(|| Effect::Evicted {
        target: target.into(),
        keys: evicted_now - evicted_before,
        kib,
        how: how.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_limit_shows_when_evictions_grow() {
        assert_eq!(seen("r", 8, 5, 5, "x"), None);
        assert_eq!(
            seen("redis-master", 8, 5, 9, "INFO evicted_keys")
                .unwrap()
                .to_string(),
            "redis-master evicted 4 keys under its 8 KiB limit (INFO evicted_keys)"
        );
    }
}
