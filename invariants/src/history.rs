//! The history format: JSON Lines, one object per line, times in nanoseconds.
//!
//! This module owns parsing and validation of single lines. It knows nothing about checking: a
//! line either becomes a typed [`Line`] or a [`Problem`] naming what is wrong with it. Unknown
//! fields are ignored so that writers may add context (Jepsen ops carry extra keys too); unknown
//! `type`s, `f`s, outcomes, sources and tiers are errors, because a checker that silently skips a
//! line it does not understand can pass a history it never read.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::error::Problem;

/// The only format this crate reads and writes.
pub const FORMAT: u64 = 1;

/// What the client learned about an operation, as in Jepsen: `ok` happened, `fail` certainly did
/// not happen, `unknown` may have happened (timed out, connection lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Fail,
    Unknown,
}

impl Outcome {
    fn parse(s: &str) -> Result<Self, Problem> {
        match s {
            "ok" => Ok(Outcome::Ok),
            "fail" => Ok(Outcome::Fail),
            "unknown" => Ok(Outcome::Unknown),
            _ => Err(bad("outcome", s, "expected ok, fail or unknown")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        }
    }
}

/// The operation an op line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Read,
    Write,
}

impl OpKind {
    fn parse(s: &str) -> Result<Self, Problem> {
        match s {
            "read" => Ok(OpKind::Read),
            "write" => Ok(OpKind::Write),
            _ => Err(bad("f", s, "expected read or write")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
        }
    }
}

/// Where a successful read was served from. `l0` is the in-process hot-key cache, `l1` Redis,
/// `l2` Memcached, `db` the PostgreSQL primary and `replica` its streaming replica. `wait`: the
/// read found nothing cached and was served by another read's load (a single-flight follower, a
/// lease loser that found the winner's fill): a miss for the hit ratio, no load on the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    L0,
    L1,
    L2,
    Db,
    Replica,
    Wait,
}

impl Source {
    fn parse(field: &'static str, s: &str) -> Result<Self, Problem> {
        match s {
            "l0" => Ok(Source::L0),
            "l1" => Ok(Source::L1),
            "l2" => Ok(Source::L2),
            "db" => Ok(Source::Db),
            "replica" => Ok(Source::Replica),
            "wait" => Ok(Source::Wait),
            _ => Err(bad(field, s, "expected l0, l1, l2, db, replica or wait")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::L0 => "l0",
            Source::L1 => "l1",
            Source::L2 => "l2",
            Source::Db => "db",
            Source::Replica => "replica",
            Source::Wait => "wait",
        }
    }

    /// Served by a query of this read's own to the database.
    pub fn is_db(self) -> bool {
        matches!(self, Source::Db | Source::Replica)
    }

    /// A cache hit: served without touching the database.
    pub fn is_cache(self) -> bool {
        matches!(self, Source::L0 | Source::L1 | Source::L2)
    }
}

/// The first line of every history: what was run, and the bounds it is judged by.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub format: u64,
    pub world: String,
    pub scenario: String,
    pub strategy: String,
    pub seed: u64,
    pub commit: String,
    /// Scenario configuration, including the bounds the checkers read (see [`crate::Bounds`]).
    pub config: serde_json::Map<String, Value>,
}

/// One operation a client performed.
#[derive(Debug, Clone, PartialEq)]
pub struct Op<'a> {
    pub id: u64,
    pub client: u64,
    pub key: Cow<'a, str>,
    pub f: OpKind,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
    /// Version read or written. Required on `ok` ops; optional otherwise (an `unknown` write may
    /// not know the version the database gave it).
    pub version: Option<u64>,
    pub source: Option<Source>,
    /// The value's payload as read, when the writer recorded it; checked against
    /// [`crate::payload::expected`].
    pub payload: Option<Cow<'a, str>>,
}

/// What a fault line says happened to the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultAction {
    /// The nemesis applied it.
    Start,
    /// The nemesis saw it take effect (a call across the cut failed, a role changed): `effect`
    /// says what was seen. A fault never observed before its stop is a harness error.
    Observed,
    /// The nemesis healed it.
    Stop,
}

impl FaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::Start => "start",
            FaultAction::Observed => "observed",
            FaultAction::Stop => "stop",
        }
    }
}

/// A fault starting, observed taking effect, or stopping. Every line of one fault carries the same
/// `fault` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at_ns: u64,
    pub action: FaultAction,
    /// Canonical JSON of the `fault` object (keys sorted), which identifies the fault.
    pub fault: String,
    /// On `observed` lines: what the nemesis saw.
    pub effect: Option<String>,
}

/// What the cache itself did (not an op): a load, fill, invalidation or lease, reported by the
/// library so that a witness can name the causal chain behind a stale read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheAction {
    Load,
    Fill,
    Invalidate,
    LeaseWon,
    LeaseLost,
}

impl CacheAction {
    fn parse(s: &str) -> Result<Self, Problem> {
        match s {
            "load" => Ok(CacheAction::Load),
            "fill" => Ok(CacheAction::Fill),
            "invalidate" => Ok(CacheAction::Invalidate),
            "lease-won" => Ok(CacheAction::LeaseWon),
            "lease-lost" => Ok(CacheAction::LeaseLost),
            _ => Err(bad(
                "action",
                s,
                "expected load, fill, invalidate, lease-won or lease-lost",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CacheAction::Load => "load",
            CacheAction::Fill => "fill",
            CacheAction::Invalidate => "invalidate",
            CacheAction::LeaseWon => "lease-won",
            CacheAction::LeaseLost => "lease-lost",
        }
    }
}

/// How a cache action ended: `ok` done, `refused` the tier said no on purpose (a fill older than
/// a tombstone), `failed` an error or timeout (it may have happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActOutcome {
    Ok,
    Refused,
    Failed,
}

impl ActOutcome {
    fn parse(s: &str) -> Result<Self, Problem> {
        match s {
            "ok" => Ok(ActOutcome::Ok),
            "refused" => Ok(ActOutcome::Refused),
            "failed" => Ok(ActOutcome::Failed),
            _ => Err(bad("outcome", s, "expected ok, refused or failed")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActOutcome::Ok => "ok",
            ActOutcome::Refused => "refused",
            ActOutcome::Failed => "failed",
        }
    }
}

/// One cache action of instance `node`, from `start_ns` to `at_ns`.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheAct<'a> {
    pub node: Cow<'a, str>,
    pub key: Cow<'a, str>,
    pub action: CacheAction,
    /// `l1`, `l2`, `db` or `replica`.
    pub tier: Source,
    pub version: Option<u64>,
    pub outcome: ActOutcome,
    pub start_ns: u64,
    pub at_ns: u64,
}

impl CacheAct<'_> {
    /// The same action, owning its strings (to keep past the text it was parsed from).
    pub fn into_owned(self) -> CacheAct<'static> {
        CacheAct {
            node: self.node.into_owned().into(),
            key: self.key.into_owned().into(),
            action: self.action,
            tier: self.tier,
            version: self.version,
            outcome: self.outcome,
            start_ns: self.start_ns,
            at_ns: self.at_ns,
        }
    }
}

/// An end-of-run read of one tier for one key, taken after every fault healed.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe<'a> {
    pub key: Cow<'a, str>,
    pub at_ns: u64,
    pub tier: Source,
    /// `None`: the tier holds nothing for the key.
    pub version: Option<u64>,
}

/// One parsed, validated line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    Header(Header),
    Op(Op<'a>),
    Fault(Fault),
    Probe(Probe<'a>),
    Cache(CacheAct<'a>),
}

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
    // probe
    #[serde(borrow)]
    tier: Option<Cow<'a, str>>,
}

/// Distinguishes `"version":null` (present, empty: a probe of an empty tier) from absent.
fn nullable_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

fn bad(field: &'static str, value: &str, expected: &'static str) -> Problem {
    Problem::BadField {
        field,
        value: format!("{value:?}"),
        expected,
    }
}

fn need<T>(v: Option<T>, line_type: &'static str, field: &'static str) -> Result<T, Problem> {
    v.ok_or(Problem::MissingField { line_type, field })
}

fn version(v: Option<i64>) -> Result<Option<u64>, Problem> {
    match v {
        Some(v) if v < 0 => Err(Problem::NegativeVersion(v)),
        Some(v) => Ok(Some(v as u64)),
        None => Ok(None),
    }
}

/// Parses one line (without its newline). `at_eof` marks the file's last line when it has no
/// newline, so that a record cut short is reported as truncated rather than as bad JSON.
pub fn parse_line(text: &[u8], at_eof: bool) -> Result<Line<'_>, Problem> {
    if let Some(line) = crate::fastline::parse(text) {
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
        _ => Err(Problem::UnknownType(ty.into_owned())),
    }
}

/// The fields of op and probe lines, however they were scanned.
#[derive(Default)]
pub(crate) struct RawFields<'a> {
    pub id: Option<u64>,
    pub client: Option<u64>,
    pub key: Option<Cow<'a, str>>,
    pub f: Option<Cow<'a, str>>,
    pub invoke_ns: Option<u64>,
    pub complete_ns: Option<u64>,
    pub outcome: Option<Cow<'a, str>>,
    /// Absent, or present (possibly null).
    pub version: Option<Option<i64>>,
    pub source: Option<Cow<'a, str>>,
    pub payload: Option<Cow<'a, str>>,
    pub at_ns: Option<u64>,
    pub tier: Option<Cow<'a, str>>,
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

pub(crate) fn build_op(raw: RawFields<'_>) -> Result<Op<'_>, Problem> {
    const T: &str = "op";
    let id = need(raw.id, T, "id")?;
    let client = need(raw.client, T, "client")?;
    let key = need(raw.key, T, "key")?;
    let f = OpKind::parse(&need(raw.f, T, "f")?)?;
    let invoke_ns = need(raw.invoke_ns, T, "invoke_ns")?;
    let complete_ns = need(raw.complete_ns, T, "complete_ns")?;
    let outcome = Outcome::parse(&need(raw.outcome, T, "outcome")?)?;
    if complete_ns < invoke_ns {
        return Err(Problem::CompleteBeforeInvoke {
            invoke_ns,
            complete_ns,
        });
    }
    let version = version(raw.version.flatten())?;
    if outcome == Outcome::Ok && version.is_none() {
        return Err(Problem::OkWithoutVersion(f.as_str()));
    }
    let source = raw
        .source
        .as_deref()
        .map(|s| Source::parse("source", s))
        .transpose()?;
    Ok(Op {
        id,
        client,
        key,
        f,
        invoke_ns,
        complete_ns,
        outcome,
        version,
        source,
        payload: raw.payload,
    })
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

pub(crate) fn build_probe(raw: RawFields<'_>) -> Result<Probe<'_>, Problem> {
    const T: &str = "probe";
    let key = need(raw.key, T, "key")?;
    let at_ns = need(raw.at_ns, T, "at_ns")?;
    let tier = Source::parse("tier", &need(raw.tier, T, "tier")?)?;
    let version = version(need(raw.version, T, "version")?)?;
    Ok(Probe {
        key,
        at_ns,
        tier,
        version,
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
