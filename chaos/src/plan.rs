//! A plan: faults at times, each healed after its span. Times are milliseconds from the start of
//! the workload (the history's zero).

use serde_json::{json, Value};

use crate::fault::Fault;

/// One fault: begun at `at_ms`, healed `for_ms` later.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at_ms: u64,
    pub for_ms: u64,
    pub fault: Fault,
}

/// Begin or heal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Begin,
    Heal,
}

/// One thing the nemesis does, at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at_ms: u64,
    pub action: Action,
    pub fault: Fault,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new(steps: Vec<Step>) -> Plan {
        Plan { steps }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Every begin and heal in time order; at equal times a begin comes first (a fault healed at
    /// the instant another starts overlaps it), then plan order.
    pub fn events(&self) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .steps
            .iter()
            .flat_map(|s| {
                [
                    Event {
                        at_ms: s.at_ms,
                        action: Action::Begin,
                        fault: s.fault,
                    },
                    Event {
                        at_ms: s.at_ms + s.for_ms,
                        action: Action::Heal,
                        fault: s.fault,
                    },
                ]
            })
            .collect();
        out.sort_by_key(|e| (e.at_ms, e.action));
        out
    }

    /// The plan as the history header records it.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.steps
                .iter()
                .map(|s| json!({"at_ms": s.at_ms, "for_ms": s.for_ms, "fault": s.fault.to_json()}))
                .collect(),
        )
    }

    /// The inverse of [`Plan::to_json`].
    pub fn from_json(v: &Value) -> Result<Plan, String> {
        let steps = v
            .as_array()
            .ok_or("a plan is a JSON array of {\"at_ms\", \"for_ms\", \"fault\"} objects")?;
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let ms = |f: &str| {
                    s.get(f).and_then(Value::as_u64).ok_or_else(|| {
                        format!(
                            "fault {} of the plan needs \"{f}\", a number of milliseconds",
                            i + 1
                        )
                    })
                };
                Ok(Step {
                    at_ms: ms("at_ms")?,
                    for_ms: ms("for_ms")?,
                    fault: Fault::from_json(s.get("fault").unwrap_or(&Value::Null))
                        .map_err(|e| format!("fault {} of the plan: {e}", i + 1))?,
                })
            })
            .collect::<Result<_, String>>()
            .map(Plan::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{Kind, Target};

    #[test]
    fn events_are_in_time_order_begin_before_heal_at_one_instant() {
        let a = Fault::new(Kind::Kill, Target::RedisMaster(0));
        let b = Fault::new(Kind::Pause, Target::Memcached(0));
        let p = Plan::new(vec![
            Step {
                at_ms: 100,
                for_ms: 50,
                fault: a,
            },
            Step {
                at_ms: 150,
                for_ms: 10,
                fault: b,
            },
        ]);
        let ev: Vec<(u64, Action, Fault)> = p
            .events()
            .into_iter()
            .map(|e| (e.at_ms, e.action, e.fault))
            .collect();
        assert_eq!(
            ev,
            vec![
                (100, Action::Begin, a),
                (150, Action::Begin, b),
                (150, Action::Heal, a),
                (160, Action::Heal, b)
            ]
        );
    }
}
