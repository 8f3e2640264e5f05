//! `pause`: the process freezes (SIGSTOP, a long GC pause): it runs nothing and answers nothing,
//! and what it was doing (a fill in flight) completes only when the heal resumes it, with its
//! state intact. Seen as [`super::kill`] is.

use proptest::prelude::*;

use super::effect::Effect;
use super::hands::Hands;
use super::{Fault, Kind, Target};

pub const NAME: &str = "pause";

/// Any server, or one app node.
pub fn draw() -> impl Strategy<Value = Fault> {
    prop_oneof![super::draw::server(), (0u8..3).prop_map(Target::App)]
        .prop_map(|t| Fault::new(Kind::Pause, t))
}

pub(super) async fn begin(h: &mut impl Hands, f: &Fault) {
    for t in h.targets(f.target) {
        h.pause(t).await;
    }
}

pub(super) async fn heal(h: &mut impl Hands, f: &Fault) {
    for t in h.targets(f.target) {
        h.resume(t).await;
    }
}

/// As a kill is seen: a frozen node answers nothing and runs nothing.
pub(super) async fn observe(h: &mut impl Hands, f: &Fault) -> Option<Effect> {
    super::kill::observe(h, f).await
}
