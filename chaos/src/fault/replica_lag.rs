//! `replica-lag`: the PostgreSQL replica applies the primary's log `lag_ms` behind (a long query
//! on the replica, a saturated disk); the heal restores its own lag. Seen when the replica's
//! replay is behind the primary's log.

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{u32_field, Fault, Kind, Target};

pub const NAME: &str = "replica-lag";

/// 0.2 to 2 s behind.
pub fn draw() -> impl Strategy<Value = Fault> {
    (200u32..2_000).prop_map(|lag_ms| Fault::new(Kind::ReplicaLag { lag_ms }, Target::PgReplica))
}

pub(super) fn fields(lag_ms: u32) -> Vec<(&'static str, Value)> {
    vec![("lag_ms", lag_ms.into())]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    Ok(Kind::ReplicaLag {
        lag_ms: u32_field(v, "lag_ms", "a replica-lag fault", "milliseconds")?,
    })
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, lag_ms: u32) {
    for t in h.targets(f.target) {
        h.lag_replica(t, Some(lag_ms)).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in h.targets(f.target) {
        h.lag_replica(t, None).await;
    }
}

pub(super) async fn observe(h: &mut impl Hands, f: &Fault, lag_ms: u32) -> Option<Effect> {
    for t in h.targets(f.target) {
        if let Some(seen) = h.replica_behind(t, lag_ms).await {
            return Some(Effect::Seen(seen));
        }
    }
    None
}
