//! Hand-written histories for unit tests: a builder that numbers ops and remembers their lines.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::history::{FaultAction, Header, OpKind, Outcome, Probe, Source, FORMAT};
use crate::write::{op, Writer};
use crate::{check_str, Override, Report};

pub struct H {
    w: Writer<Vec<u8>>,
    next_id: u64,
    line: u64,
    lines: HashMap<u64, u64>,
}

pub const MS: u64 = 1_000_000;

impl H {
    /// A history whose header carries `config` (bounds not named keep their defaults).
    pub fn new(config: Value) -> Self {
        let mut w = Writer::new(Vec::new());
        let header = Header {
            format: FORMAT,
            world: "test".into(),
            scenario: "hand-written".into(),
            strategy: "none".into(),
            seed: 1,
            commit: "0000000".into(),
            config: config.as_object().cloned().unwrap_or_default(),
        };
        w.header(&header).expect("vec");
        H {
            w,
            next_id: 1,
            line: 1,
            lines: HashMap::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        client: u64,
        key: &str,
        f: OpKind,
        span: (u64, u64),
        outcome: Outcome,
        version: Option<u64>,
        source: Option<Source>,
        payload: Option<String>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut o = op(id, client, key, f, span.0, span.1, outcome);
        o.version = version;
        o.source = source;
        o.payload = payload.map(Into::into);
        self.w.op(&o).expect("vec");
        self.line += 1;
        self.lines.insert(id, self.line);
        id
    }

    /// An acknowledged write of `version`.
    pub fn write(&mut self, client: u64, key: &str, span: (u64, u64), version: u64) -> u64 {
        self.push(
            client,
            key,
            OpKind::Write,
            span,
            Outcome::Ok,
            Some(version),
            None,
            None,
        )
    }

    pub fn write_outcome(
        &mut self,
        client: u64,
        key: &str,
        span: (u64, u64),
        version: Option<u64>,
        outcome: Outcome,
    ) -> u64 {
        self.push(
            client,
            key,
            OpKind::Write,
            span,
            outcome,
            version,
            None,
            None,
        )
    }

    /// A successful read of `version` served by `source`.
    pub fn read(
        &mut self,
        client: u64,
        key: &str,
        span: (u64, u64),
        version: u64,
        source: Source,
    ) -> u64 {
        self.push(
            client,
            key,
            OpKind::Read,
            span,
            Outcome::Ok,
            Some(version),
            Some(source),
            None,
        )
    }

    pub fn read_payload(
        &mut self,
        client: u64,
        key: &str,
        span: (u64, u64),
        version: u64,
        payload: &str,
    ) -> u64 {
        self.push(
            client,
            key,
            OpKind::Read,
            span,
            Outcome::Ok,
            Some(version),
            Some(Source::L1),
            Some(payload.into()),
        )
    }

    pub fn read_failed(
        &mut self,
        client: u64,
        key: &str,
        span: (u64, u64),
        outcome: Outcome,
    ) -> u64 {
        self.push(client, key, OpKind::Read, span, outcome, None, None, None)
    }

    /// A kill of `target` starting (`start`) or stopping; returns the line's number.
    pub fn fault(&mut self, at_ns: u64, start: bool, target: &str) -> u64 {
        let action = if start {
            FaultAction::Start
        } else {
            FaultAction::Stop
        };
        self.fault_line(at_ns, action, target)
    }

    /// The nemesis saw the kill of `target` take effect; returns the line's number.
    pub fn observed(&mut self, at_ns: u64, target: &str) -> u64 {
        self.fault_line(at_ns, FaultAction::Observed, target)
    }

    fn fault_line(&mut self, at_ns: u64, action: FaultAction, target: &str) -> u64 {
        self.fault_json(at_ns, action, json!({"kind": "kill", "target": target}))
    }

    /// A fault line of any fault (`{"kind": ..., "target": ...}`); returns the line's number.
    pub fn fault_json(&mut self, at_ns: u64, action: FaultAction, fault: Value) -> u64 {
        let effect = (action == FaultAction::Observed).then_some("calls to it fail");
        self.w.fault(at_ns, action, &fault, effect).expect("vec");
        self.line += 1;
        self.line
    }

    /// Returns the probe line's number.
    pub fn probe(&mut self, key: &str, at_ns: u64, tier: Source, version: Option<u64>) -> u64 {
        self.w
            .probe(&Probe {
                key: key.into(),
                at_ns,
                tier,
                version,
            })
            .expect("vec");
        self.line += 1;
        self.line
    }

    /// A `cache` line (a library action); returns its line number.
    #[allow(clippy::too_many_arguments)]
    pub fn cache(
        &mut self,
        node: &str,
        key: &str,
        action: &str,
        tier: Source,
        version: Option<u64>,
        outcome: &str,
        span: (u64, u64),
    ) -> u64 {
        let line = json!({
            "type": "cache", "node": node, "key": key, "action": action, "tier": tier.as_str(),
            "version": version, "outcome": outcome, "start_ns": span.0, "at_ns": span.1,
        });
        self.w.raw_line(&line.to_string()).expect("vec");
        self.line += 1;
        self.line
    }

    /// A `goal` line: `node` reached `goal` `count` times, first at `at_ns`; returns its line.
    pub fn goal(&mut self, goal: &str, node: &str, count: u64, at_ns: u64) -> u64 {
        let line = json!({
            "type": "goal", "goal": goal, "node": node, "count": count, "at_ns": at_ns,
        });
        self.w.raw_line(&line.to_string()).expect("vec");
        self.line += 1;
        self.line
    }

    /// A `role` line: Redis node `server` took `role` at `at_ns`; returns its line.
    pub fn role(&mut self, server: &str, role: &str, at_ns: u64) -> u64 {
        self.line(json!({"type": "role", "server": server, "role": role, "at_ns": at_ns}))
    }

    /// Any line, as given; returns its line number.
    pub fn line(&mut self, line: Value) -> u64 {
        self.w.raw_line(&line.to_string()).expect("vec");
        self.line += 1;
        self.line
    }

    /// The history's index, as the checkers build it.
    pub fn index(&self) -> crate::index::Index {
        let text = self.text();
        crate::index::Index::build("test", text.as_bytes(), crate::index::SPILL_AT)
            .expect("valid history")
    }

    pub fn line_of(&self, id: u64) -> u64 {
        self.lines[&id]
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.w.get_ref().clone()).expect("utf-8")
    }

    pub fn check(&self) -> Report {
        check_str(&self.text(), &[]).expect("valid history")
    }

    /// The check, or the history's error.
    pub fn try_check(&self) -> Result<Report, crate::HistoryError> {
        check_str(&self.text(), &[])
    }

    pub fn check_with(&self, overrides: &[(&str, Value)]) -> Report {
        let o: Vec<Override> = overrides
            .iter()
            .map(|(n, v)| Override {
                name: n.to_string(),
                value: v.clone(),
            })
            .collect();
        check_str(&self.text(), &o).expect("valid history")
    }
}
