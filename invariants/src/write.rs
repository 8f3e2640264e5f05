//! Writing histories: one function per line type, fields in a fixed order, so the same run gives
//! byte-identical files (the determinism check compares them).

use std::io::{self, Write};

use serde_json::Value;

use crate::history::{
    CacheAct, FaultAction, GoalLine, Header, Op, OpKind, OutboxLine, Outcome, Probe, RoleLine,
    FORMAT,
};

fn s(text: &str) -> String {
    serde_json::to_string(text).expect("strings always serialize")
}

/// A JSON Lines history sink.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out }
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        writeln!(
            self.out,
            r#"{{"type":"header","format":{FORMAT},"world":{},"scenario":{},"strategy":{},"seed":{},"commit":{},"config":{}}}"#,
            s(&h.world),
            s(&h.scenario),
            s(&h.strategy),
            h.seed,
            s(&h.commit),
            Value::Object(h.config.clone())
        )
    }

    pub fn op(&mut self, op: &Op<'_>) -> io::Result<()> {
        write!(
            self.out,
            r#"{{"type":"op","id":{},"client":{},"key":{},"f":"{}","invoke_ns":{},"complete_ns":{},"outcome":"{}""#,
            op.id,
            op.client,
            s(&op.key),
            op.f.as_str(),
            op.invoke_ns,
            op.complete_ns,
            op.outcome.as_str()
        )?;
        if let Some(v) = op.version {
            write!(self.out, r#","version":{v}"#)?;
        }
        if let Some(src) = op.source {
            write!(self.out, r#","source":"{}""#, src.as_str())?;
        }
        if let Some(p) = &op.payload {
            write!(self.out, r#","payload":{}"#, s(p))?;
        }
        writeln!(self.out, "}}")
    }

    /// `fault` is the fault's description, e.g. `{"kind":"kill","target":"redis-master"}`.
    /// A fault line; `effect` (what was seen) goes on `observed` lines.
    pub fn fault(
        &mut self,
        at_ns: u64,
        action: FaultAction,
        fault: &Value,
        effect: Option<&str>,
    ) -> io::Result<()> {
        write!(
            self.out,
            r#"{{"type":"fault","at_ns":{at_ns},"action":"{}","fault":{fault}"#,
            action.as_str()
        )?;
        if let Some(e) = effect {
            write!(self.out, r#","effect":{}"#, s(e))?;
        }
        writeln!(self.out, "}}")
    }

    /// A `cache` line: one action of the library (see [`CacheAct`]).
    pub fn cache(&mut self, c: &CacheAct<'_>) -> io::Result<()> {
        let v = c.version.map_or("null".to_string(), |v| v.to_string());
        let server = c
            .server
            .as_ref()
            .map_or(String::new(), |n| format!(r#","server":{}"#, s(n)));
        writeln!(
            self.out,
            r#"{{"type":"cache","node":{},"key":{},"action":"{}","tier":"{}","version":{v},"outcome":"{}","start_ns":{},"at_ns":{}{server}}}"#,
            s(&c.node),
            s(&c.key),
            c.action.as_str(),
            c.tier.as_str(),
            c.outcome.as_str(),
            c.start_ns,
            c.at_ns
        )
    }

    pub fn role(&mut self, r: &RoleLine<'_>) -> io::Result<()> {
        writeln!(
            self.out,
            r#"{{"type":"role","server":{},"shard":{},"role":"{}","at_ns":{}}}"#,
            s(&r.server),
            r.shard,
            r.role.as_str(),
            r.at_ns
        )
    }

    pub fn goal(&mut self, g: &GoalLine<'_>) -> io::Result<()> {
        writeln!(
            self.out,
            r#"{{"type":"goal","goal":{},"node":{},"count":{},"at_ns":{}}}"#,
            s(&g.goal),
            s(&g.node),
            g.count,
            g.at_ns
        )
    }

    pub fn outbox(&mut self, o: &OutboxLine) -> io::Result<()> {
        writeln!(
            self.out,
            r#"{{"type":"outbox","at_ns":{},"undone":{}}}"#,
            o.at_ns, o.undone
        )
    }

    /// A line written as given (for tests that build unusual lines).
    pub fn raw_line(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.out, "{line}")
    }

    pub fn probe(&mut self, p: &Probe<'_>) -> io::Result<()> {
        let v = p.version.map_or("null".to_string(), |v| v.to_string());
        writeln!(
            self.out,
            r#"{{"type":"probe","key":{},"at_ns":{},"tier":"{}","version":{v}}}"#,
            s(&p.key),
            p.at_ns,
            p.tier.as_str()
        )
    }
}

/// A read or write op with the fields most writers set; adjust the rest by hand.
pub fn op(
    id: u64,
    client: u64,
    key: &str,
    f: OpKind,
    invoke_ns: u64,
    complete_ns: u64,
    outcome: Outcome,
) -> Op<'_> {
    Op {
        id,
        client,
        key: key.into(),
        f,
        invoke_ns,
        complete_ns,
        outcome,
        version: None,
        source: None,
        payload: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{parse_line, Line, Source};

    #[test]
    fn written_lines_parse_back_to_the_same_values() {
        let mut w = Writer::new(Vec::new());
        let h = Header {
            format: FORMAT,
            world: "sim".into(),
            scenario: "redis-failover".into(),
            strategy: "versioned".into(),
            seed: 42,
            commit: "abc".into(),
            config: serde_json::json!({"staleness_ns_max": 5})
                .as_object()
                .unwrap()
                .clone(),
        };
        w.header(&h).unwrap();
        let mut o = op(7, 3, "a b\r\n\"c\"", OpKind::Read, 10, 20, Outcome::Ok);
        o.version = Some(4);
        o.source = Some(Source::L2);
        o.payload = Some("v4-x".into());
        w.op(&o).unwrap();
        let f = serde_json::json!({"kind":"kill","target":"redis-master"});
        w.fault(15, FaultAction::Start, &f, None).unwrap();
        w.fault(16, FaultAction::Observed, &f, Some("ping \"x\" failed"))
            .unwrap();
        let p = Probe {
            key: "k".into(),
            at_ns: 99,
            tier: Source::L1,
            version: None,
        };
        w.probe(&p).unwrap();
        let g = GoalLine {
            goal: "lease-waited".into(),
            node: "app-\"1\"".into(),
            count: 3,
            at_ns: 12,
        };
        w.goal(&g).unwrap();
        let mut c = CacheAct {
            node: "app-1".into(),
            key: "k".into(),
            action: crate::history::CacheAction::Invalidate,
            tier: Source::L1,
            version: Some(2),
            outcome: crate::history::ActOutcome::Ok,
            start_ns: 5,
            at_ns: 6,
            server: Some("redis-\"master\"".into()),
        };
        w.cache(&c).unwrap();
        let r = RoleLine {
            server: "redis-replica".into(),
            shard: 1,
            role: crate::history::Role::Master,
            at_ns: 40,
        };
        w.role(&r).unwrap();
        c.server = None;
        w.cache(&c).unwrap();
        let ob = OutboxLine {
            at_ns: 50,
            undone: 2,
        };
        w.outbox(&ob).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            parse_line(lines[0].as_bytes(), false).unwrap(),
            Line::Header(h)
        );
        assert_eq!(parse_line(lines[1].as_bytes(), false).unwrap(), Line::Op(o));
        let Line::Fault(pf) = parse_line(lines[2].as_bytes(), false).unwrap() else {
            panic!("not a fault")
        };
        assert_eq!(
            (pf.at_ns, pf.action, pf.fault.as_str(), pf.effect),
            (15, FaultAction::Start, f.to_string().as_str(), None)
        );
        let Line::Fault(po) = parse_line(lines[3].as_bytes(), false).unwrap() else {
            panic!("not a fault")
        };
        assert_eq!(
            (po.action, po.effect.as_deref()),
            (FaultAction::Observed, Some("ping \"x\" failed"))
        );
        assert_eq!(
            parse_line(lines[4].as_bytes(), false).unwrap(),
            Line::Probe(p)
        );
        assert_eq!(
            parse_line(lines[5].as_bytes(), false).unwrap(),
            Line::Goal(g)
        );
        let Line::Cache(pc) = parse_line(lines[6].as_bytes(), false).unwrap() else {
            panic!("not a cache line")
        };
        assert_eq!(pc.server.as_deref(), Some("redis-\"master\""));
        assert_eq!(
            parse_line(lines[7].as_bytes(), false).unwrap(),
            Line::Role(r)
        );
        assert_eq!(
            parse_line(lines[8].as_bytes(), false).unwrap(),
            Line::Cache(c)
        );
        assert_eq!(
            parse_line(lines[9].as_bytes(), false).unwrap(),
            Line::Outbox(ob)
        );
        let bad = r#"{"type":"role","server":"redis-master","role":"slave","at_ns":1}"#;
        let e = parse_line(bad.as_bytes(), false).unwrap_err().to_string();
        assert!(e.contains("expected master or replica"), "{e}");
        let zero = r#"{"type":"goal","goal":"x","node":"n","count":0,"at_ns":1}"#;
        let e = parse_line(zero.as_bytes(), false).unwrap_err().to_string();
        assert!(e.contains("expected a positive count"), "{e}");
    }
}
