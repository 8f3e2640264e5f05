//! `slow-queries`: every query PostgreSQL answers takes `query_ms` longer (a lock queue, a
//! saturated disk, a plan gone bad: the production design's database slowdown); the heal
//! restores its own pace. Seen when one query to the target takes at least `query_ms`.
//!
//! The simulator's PostgreSQL adds it to each query's service time; with real servers the
//! proxy in front of PostgreSQL holds each of its replies to the app nodes that long.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use super::effect::Effect;
use super::hands::Hands;
use super::{u32_field, Fault, Kind, Side, Target};

pub const NAME: &str = "slow-queries";

/// 20 to 200 ms more per query, on the primary or on both servers.
pub fn draw() -> impl Strategy<Value = Fault> {
    (
        20u32..200,
        prop_oneof![Just(Side::One(Target::PgPrimary)), Just(Side::Postgres)],
    )
        .prop_map(|(query_ms, side)| Fault::new(Kind::SlowQueries { query_ms }, side))
}

pub(super) fn fields(query_ms: u32) -> Vec<(&'static str, Value)> {
    vec![("query_ms", query_ms.into())]
}

pub(super) fn parse(v: &Value) -> Result<Kind, String> {
    Ok(Kind::SlowQueries {
        query_ms: u32_field(v, "query_ms", "a slow-queries fault", "milliseconds")?,
    })
}

/// The targets a slow-queries fault acts on: the PostgreSQL servers on its side.
fn servers(h: &impl Hands, f: &Fault) -> Vec<Target> {
    h.targets(f.target)
        .into_iter()
        .filter(|t| matches!(t, Target::PgPrimary | Target::PgReplica))
        .collect()
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault, query_ms: u32) {
    for t in servers(h, f) {
        h.slow_queries(t, Some(query_ms)).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in servers(h, f) {
        h.slow_queries(t, None).await;
    }
}

pub(super) async fn observe(h: &mut impl Hands, f: &Fault, query_ms: u32) -> Option<Effect> {
    for t in servers(h, f) {
        if let Some((path, took)) = h.query_time(t).await {
            if let Some(e) = seen(query_ms, path, took) {
                return Some(e);
            }
        }
    }
    None
}

/// The rule: one query took at least the added time.
pub fn seen(query_ms: u32, path: impl Into<String>, took: Duration) -> Option<Effect> {
    (took >= Duration::from_millis(u64::from(query_ms))).then(|| Effect::SlowQuery {
        path: path.into(),
        took,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_shows_the_slowdown_from_the_added_time_on() {
        let ms = Duration::from_millis;
        assert_eq!(seen(40, "x", ms(39)), None);
        let e = seen(40, "the nemesis to pg-primary", ms(41)).unwrap();
        assert_eq!(
            e.to_string(),
            "a query from the nemesis to pg-primary took 41.0 ms"
        );
    }
}
