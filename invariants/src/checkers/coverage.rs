//! The harness's second invariant: the run reached the coverage goals its scenario promised
//! (`goals_required` in the header's config, from the promise's `reaches`). A goal is an
//! interleaving worth exploring (`aside::goal`): a scenario that promises its runs reach a
//! failover's replay and never does proves nothing about the replay, so a promised goal with no
//! `goal` line fails here, gating, like a fault that never took effect. A harness error, never a
//! finding about the strategy.

use serde_json::{Map, Value};

use crate::error::Problem;
use crate::index::Index;
use crate::verdict::{Figure, Verdict};
use crate::Invariant;

/// The header's config key that lists the goals a run must reach.
pub const REQUIRED: &str = "goals_required";

/// The goals `config` requires, in its order: none when the key is absent.
pub fn required(config: &Map<String, Value>) -> Result<Vec<String>, Problem> {
    let Some(v) = config.get(REQUIRED) else {
        return Ok(Vec::new());
    };
    let bad = || Problem::BadConfig {
        key: REQUIRED.into(),
        why: format!("must be a list of coverage goal names, got {v}"),
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|g| g.as_str().filter(|s| !s.is_empty()).map(String::from))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)
}

pub fn check(idx: &Index, required: &[String]) -> Verdict {
    let mut v = Verdict::new(Invariant::Coverage);
    let missing: Vec<&str> = required
        .iter()
        .filter(|g| !idx.goals.contains_key(g.as_str()))
        .map(String::as_str)
        .collect();
    v.figure("goals_reached", Figure::Count(idx.goals.len() as u64))
        .figure("goals_required", Figure::Count(required.len() as u64))
        .figure("goals_missing", Figure::Count(missing.len() as u64));
    if missing.is_empty() {
        let what = if required.is_empty() {
            "no goal required".to_string()
        } else {
            format!("every required goal of {} reached", required.len())
        };
        v.judge(false, format!("{what}; {} goals reached", idx.goals.len()));
    } else {
        v.witness.line(idx.header_line);
        v.judge(
            true,
            format!(
                "harness error: the run never reached coverage goal {} ({} of {} required missing: {}): the scenario did not explore what it promises; change its plan or its `reaches`",
                missing[0],
                missing.len(),
                required.len(),
                missing.join(", ")
            ),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::Invariant;
    use serde_json::json;

    use crate::history::Source;
    use crate::testkit::{H, MS};

    fn history(required: serde_json::Value) -> H {
        let mut h = H::new(json!({ "goals_required": required }));
        h.read(1, "k", (MS, 2 * MS), 0, Source::L1);
        h
    }

    #[test]
    fn holds_when_every_required_goal_has_a_line() {
        let mut h = history(json!(["lease-waited", "fence-set"]));
        h.goal("lease-waited", "app-1", 2, 5);
        h.goal("fence-set", "app-2", 1, 9);
        h.goal("fence-set", "app-1", 4, 7);
        let r = h.check();
        let v = r.verdict(Invariant::Coverage).unwrap();
        assert!(!v.fails(), "{}", v.summary);
    }

    #[test]
    fn a_required_goal_never_reached_is_a_gating_harness_error() {
        let mut h = history(json!(["lease-waited", "switch-replayed"]));
        h.goal("lease-waited", "app-1", 2, 5);
        let r = h.check();
        let v = r.verdict(Invariant::Coverage).unwrap();
        assert!(v.fails() && v.gating, "{}", v.summary);
        assert!(v.summary.starts_with("harness error: the run never reached coverage goal switch-replayed (1 of 2 required missing"), "{}", v.summary);
        assert_eq!(
            v.witness.lines,
            vec![1],
            "the header, which carries the promise"
        );
    }

    #[test]
    fn nothing_required_holds_and_a_bad_list_is_a_config_error() {
        let r = H::new(json!({})).check();
        assert!(!r.verdict(Invariant::Coverage).unwrap().fails());
        let mut h = H::new(json!({ "goals_required": "fence-set" }));
        h.read(1, "k", (MS, 2 * MS), 0, Source::L1);
        let e = h.try_check().unwrap_err().to_string();
        assert!(
            e.contains("goals_required") && e.contains("must be a list"),
            "{e}"
        );
    }
}
