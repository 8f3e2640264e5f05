//! `memory-limit`: Redis may hold at most `kib` KiB (`CONFIG SET maxmemory`, `allkeys-lru`): keys
//! are evicted, least recently used first; the heal lifts the limit. Seen when a limited node
//! has evicted more keys than it had when the limit began.

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{u32_field, Fault, Kind, Side, Target};

pub const NAME: &str = "memory-limit";

/// Below the base scenario's working set (40 keys take about 6 KiB), so the limit evicts.
pub fn draw() -> impl Strategy<Value = Fault> {
    (2u32..5).prop_map(|kib| Fault::new(Kind::MemoryLimit { kib }, Side::Redis))
}

pub(super) fn fields(kib: u32) -> Vec<(&'static str, Value)> {
    vec![("kib", kib.into())]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    Ok(Kind::MemoryLimit {
        kib: u32_field(v, "kib", "a memory-limit fault", "KiB")?,
    })
}

fn redis_on(h: &impl Hands, f: &Fault) -> Vec<Target> {
    (h.targets(f.target).into_iter())
        .filter(|t| matches!(t, Target::RedisMaster | Target::RedisReplica))
        .collect()
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, kib: u32) {
    for t in redis_on(h, f) {
        if let Some((evicted, _)) = h.evicted(t).await {
            h.kept().evicted_before.push((t, evicted));
        }
        h.limit_memory(t, Some(kib)).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in redis_on(h, f) {
        h.limit_memory(t, None).await;
    }
    h.kept()
        .evicted_before
        .retain(|(t, _)| !f.target.contains(*t));
}

pub(super) async fn observe(h: &mut impl Hands, kib: u32) -> Option<Effect> {
    for (t, before) in h.kept().evicted_before.clone() {
        if let Some((now, how)) = h.evicted(t).await {
            if let Some(e) = seen(t.name(), kib, before, now, how) {
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
