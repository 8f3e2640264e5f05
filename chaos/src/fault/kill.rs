//! `kill`: the process dies and what it held in memory is gone (a Redis master's unreplicated
//! writes, a memcached node's items); the heal restarts it. Seen when a request to it (or, for
//! an app node, a task on it) goes unanswered.

use proptest::prelude::*;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Target};

pub const NAME: &str = "kill";

/// A server other than PostgreSQL: random plans keep the database up (`pg-restart` kills it,
/// by name), so that the plans drawn for a seed stay what they were.
pub fn draw() -> impl Strategy<Value = Fault> {
    super::draw::server()
        .prop_filter("random plans keep PostgreSQL up", |t| {
            !matches!(t, Target::PgPrimary | Target::PgReplica)
        })
        .prop_map(|t| Fault::new(Kind::Kill, t))
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault) {
    for t in h.targets(f.target) {
        h.kill(t).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in h.targets(f.target) {
        h.restart(t).await;
    }
}

/// The first node on the side, as a client sees it (a pause is seen the same way).
pub(super) async fn observe(h: &mut impl Hands, f: &Fault) -> Option<Effect> {
    let t = *h.targets(f.target).first()?;
    h.unreachable(t).await.map(Effect::Seen)
}
