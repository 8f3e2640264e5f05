//! One line of text to a typed [`Line`]: the fast scanner first, serde for the rest.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::raw::{build_op, build_probe, need, version, RawFields};
use super::*;
use crate::error::Problem;

/// The union of every line type's fields; which ones are required depends on `type`.
#[derive(Deserialize)]
struct RawLine<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    // header
    format: Option<u64>,
    #[serde(borrow)]
    world: Option<Cow<'a, str>>,
    #[serde(borrow)]
    scenario: Option<Cow<'a, str>>,
    #[serde(borrow)]
    strategy: Option<Cow<'a, str>>,
    seed: Option<u64>,
    #[serde(borrow)]
    commit: Option<Cow<'a, str>>,
    config: Option<Value>,
    // op
    id: Option<u64>,
    client: Option<u64>,
    #[serde(borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    f: Option<Cow<'a, str>>,
    invoke_ns: Option<u64>,
    complete_ns: Option<u64>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "nullable_i64")]
    version: Option<Option<i64>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<Cow<'a, str>>,
    // fault
    at_ns: Option<u64>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    fault: Option<Value>,
    #[serde(borrow)]
    effect: Option<Cow<'a, str>>,
    // cache
    #[serde(borrow)]
    node: Option<Cow<'a, str>>,
    start_ns: Option<u64>,
    #[serde(borrow)]
    server: Option<Cow<'a, str>>,
    // role
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
    shard: Option<u64>,
    // probe
    #[serde(borrow)]
    tier: Option<Cow<'a, str>>,
    // goal
    #[serde(borrow)]
    goal: Option<Cow<'a, str>>,
    count: Option<u64>,
    // outbox
    undone: Option<u64>,
}

/// Distinguishes `"version":null` (present, empty: a probe of an empty tier) from absent.
fn nullable_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Parses one line (without its newline). `at_eof` marks the file's last line when it has no
/// newline, so that a record cut short is reported as truncated rather than as bad JSON.
pub fn parse_line(text: &[u8], at_eof: bool) -> Result<Line<'_>, Problem> {
    if let Some(line) = super::fast::parse(text) {
        return line;
    }
    parse_line_serde(text, at_eof)
}

/// The reference parser: serde_json for every line type. [`parse_line`] tries a faster scanner
/// first that gives the same answers for the lines it accepts.
pub fn parse_line_serde(text: &[u8], at_eof: bool) -> Result<Line<'_>, Problem> {
    let raw: RawLine<'_> = serde_json::from_slice(text).map_err(|e| {
        if e.is_eof() && at_eof {
            Problem::Truncated
        } else {
            Problem::Json(e.to_string())
        }
    })?;
    let ty = need(raw.ty.clone(), "a", "type")?;
    match ty.as_ref() {
        "op" => build_op(raw.fields()).map(Line::Op),
        "fault" => parse_fault(raw).map(Line::Fault),
        "probe" => build_probe(raw.fields()).map(Line::Probe),
        "header" => parse_header(raw).map(Line::Header),
        "cache" => parse_cache(raw).map(Line::Cache),
        "goal" => parse_goal(raw).map(Line::Goal),
        "role" => parse_role(raw).map(Line::Role),
        "outbox" => Ok(Line::Outbox(OutboxLine {
            at_ns: need(raw.at_ns, "outbox", "at_ns")?,
            undone: need(raw.undone, "outbox", "undone")?,
        })),
        _ => Err(Problem::UnknownType(ty.into_owned())),
    }
}

impl<'a> RawLine<'a> {
    fn fields(self) -> RawFields<'a> {
        RawFields {
            id: self.id,
            client: self.client,
            key: self.key,
            f: self.f,
            invoke_ns: self.invoke_ns,
            complete_ns: self.complete_ns,
            outcome: self.outcome,
            version: self.version,
            source: self.source,
            payload: self.payload,
            at_ns: self.at_ns,
            tier: self.tier,
        }
    }
}

fn parse_fault(raw: RawLine<'_>) -> Result<Fault, Problem> {
    const T: &str = "fault";
    let at_ns = need(raw.at_ns, T, "at_ns")?;
    let action = match need(raw.action, T, "action")?.as_ref() {
        "start" => FaultAction::Start,
        "observed" => FaultAction::Observed,
        "stop" => FaultAction::Stop,
        other => return Err(bad("action", other, "expected start, observed or stop")),
    };
    let fault = need(raw.fault, T, "fault")?;
    if !fault.is_object() {
        return Err(bad(
            "fault",
            &fault.to_string(),
            "expected an object such as {\"kind\":\"kill\",\"target\":\"redis-master\"}",
        ));
    }
    Ok(Fault {
        at_ns,
        action,
        fault: canonical(&fault),
        effect: raw.effect.map(Cow::into_owned),
    })
}

/// JSON with object keys sorted at every depth, whatever serde_json's map order is: two lines
/// describe the same fault exactly when their canonical texts are equal.
pub fn canonical(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    walk(&m[k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    walk(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    out
}

fn parse_goal(raw: RawLine<'_>) -> Result<GoalLine<'_>, Problem> {
    const T: &str = "goal";
    let goal = need(raw.goal, T, "goal")?;
    if goal.is_empty() {
        return Err(bad("goal", "", "expected a coverage goal's name"));
    }
    let count = need(raw.count, T, "count")?;
    if count == 0 {
        return Err(bad(
            "count",
            "0",
            "expected a positive count: a goal line says a goal was reached",
        ));
    }
    Ok(GoalLine {
        goal,
        node: need(raw.node, T, "node")?,
        count,
        at_ns: need(raw.at_ns, T, "at_ns")?,
    })
}

fn parse_cache(raw: RawLine<'_>) -> Result<CacheAct<'_>, Problem> {
    const T: &str = "cache";
    let tier = Source::parse("tier", &need(raw.tier, T, "tier")?)?;
    if matches!(tier, Source::L0 | Source::Wait) {
        return Err(bad(
            "tier",
            tier.as_str(),
            "expected l1, l2, db or replica for a cache action",
        ));
    }
    let start_ns = need(raw.start_ns, T, "start_ns")?;
    let at_ns = need(raw.at_ns, T, "at_ns")?;
    if start_ns > at_ns {
        return Err(Problem::ActBeforeStart { start_ns, at_ns });
    }
    Ok(CacheAct {
        node: need(raw.node, T, "node")?,
        key: need(raw.key, T, "key")?,
        action: CacheAction::parse(&need(raw.action, T, "action")?)?,
        tier,
        version: version(raw.version.flatten())?,
        outcome: ActOutcome::parse(&need(raw.outcome, T, "outcome")?)?,
        start_ns,
        at_ns,
        server: raw.server,
    })
}

fn parse_role(raw: RawLine<'_>) -> Result<RoleLine<'_>, Problem> {
    const T: &str = "role";
    Ok(RoleLine {
        server: need(raw.server, T, "server")?,
        shard: raw.shard.unwrap_or(0),
        role: Role::parse(&need(raw.role, T, "role")?)?,
        at_ns: need(raw.at_ns, T, "at_ns")?,
    })
}

fn parse_header(raw: RawLine<'_>) -> Result<Header, Problem> {
    const T: &str = "header";
    let format = need(raw.format, T, "format")?;
    if format != FORMAT {
        return Err(Problem::UnsupportedFormat(format));
    }
    let config = match raw.config {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(bad("config", &other.to_string(), "expected an object")),
    };
    let text = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned).unwrap_or_default();
    Ok(Header {
        format,
        world: text(raw.world),
        scenario: text(raw.scenario),
        strategy: text(raw.strategy),
        seed: raw.seed.unwrap_or(0),
        commit: text(raw.commit),
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Line<'_>, Problem> {
        parse_line(s.as_bytes(), false)
    }

    #[test]
    fn parses_the_design_examples() {
        let op = r#"{"type":"op","id":17,"client":3,"key":"post:42","f":"read","invoke_ns":123000000,"complete_ns":125500000,"outcome":"ok","version":7,"source":"l1"}"#;
        let Line::Op(op) = p(op).unwrap() else {
            panic!("not an op")
        };
        assert_eq!(
            (op.id, op.client, op.key.as_ref(), op.version, op.source),
            (17, 3, "post:42", Some(7), Some(Source::L1))
        );
        let fault = r#"{"type":"fault","at_ns":130000000,"action":"start","fault":{"target":"redis-master","kind":"kill"}}"#;
        let Line::Fault(f) = p(fault).unwrap() else {
            panic!("not a fault")
        };
        assert_eq!(
            f.fault, r#"{"kind":"kill","target":"redis-master"}"#,
            "canonical: keys sorted"
        );
        let probe = r#"{"type":"probe","key":"post:42","at_ns":5,"tier":"l1","version":null}"#;
        let Line::Probe(pr) = p(probe).unwrap() else {
            panic!("not a probe")
        };
        assert_eq!(pr.version, None);
        let header = r#"{"type":"header","format":1,"world":"sim","scenario":"s","strategy":"naive","seed":42,"commit":"abc","config":{"staleness_ns_max":5}}"#;
        let Line::Header(h) = p(header).unwrap() else {
            panic!("not a header")
        };
        assert_eq!((h.seed, h.config.len()), (42, 1));
    }

    #[test]
    fn rejects_what_a_checker_must_not_guess() {
        let base = |extra: &str| {
            format!(
                r#"{{"type":"op","id":1,"client":1,"key":"k","f":"read","invoke_ns":5,"complete_ns":9,"outcome":"ok"{extra}}}"#
            )
        };
        assert_eq!(
            p(&base(r#","version":-1"#)),
            Err(Problem::NegativeVersion(-1))
        );
        assert_eq!(p(&base("")), Err(Problem::OkWithoutVersion("read")));
        assert!(matches!(
            p(&base(r#","version":1,"source":"l9""#)),
            Err(Problem::BadField {
                field: "source",
                ..
            })
        ));
        let backwards = base(r#","version":1"#).replace(r#""complete_ns":9"#, r#""complete_ns":4"#);
        assert_eq!(
            p(&backwards),
            Err(Problem::CompleteBeforeInvoke {
                invoke_ns: 5,
                complete_ns: 4
            })
        );
        let no_key = base(r#","version":1"#).replace(r#""key":"k","#, "");
        assert_eq!(
            p(&no_key),
            Err(Problem::MissingField {
                line_type: "op",
                field: "key"
            })
        );
        assert_eq!(
            p(r#"{"type":"nemesis"}"#),
            Err(Problem::UnknownType("nemesis".into()))
        );
        assert_eq!(
            p(r#"{"type":"header","format":2}"#),
            Err(Problem::UnsupportedFormat(2))
        );
        assert!(matches!(p("{not json"), Err(Problem::Json(_))));
        assert_eq!(
            parse_line(br#"{"type":"op","id":1,"cli"#, true),
            Err(Problem::Truncated)
        );
    }

    #[test]
    fn negative_zero_is_serde_jsons_answer() {
        for l in [
            r#"{"type":"op","id":-0,"client":1,"key":"k","f":"read","invoke_ns":1,"complete_ns":2,"outcome":"ok","version":0}"#,
            r#"{"type":"op","id":1,"client":1,"key":"k","f":"read","invoke_ns":1,"complete_ns":2,"outcome":"ok","version":-0}"#,
        ] {
            assert_eq!(
                parse_line(l.as_bytes(), false),
                parse_line_serde(l.as_bytes(), false),
                "{l}"
            );
        }
    }

    #[test]
    fn keys_keep_escapes_spaces_and_newlines() {
        let Line::Op(op) = p(r#"{"type":"op","id":1,"client":1,"key":"a\r\nflush_all b","f":"write","invoke_ns":1,"complete_ns":2,"outcome":"unknown"}"#).unwrap() else {
            panic!("not an op")
        };
        assert_eq!(op.key, "a\r\nflush_all b");
        assert_eq!(op.version, None);
    }
}
