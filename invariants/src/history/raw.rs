//! The fields of op and probe lines however they were read (by serde or by the fast scanner),
//! and how they become typed lines.

use std::borrow::Cow;

use super::{Op, OpKind, Outcome, Probe, Source};
use crate::error::Problem;

/// The fields of op and probe lines, however they were scanned.
#[derive(Default)]
pub(super) struct RawFields<'a> {
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

pub(super) fn need<T>(
    v: Option<T>,
    line_type: &'static str,
    field: &'static str,
) -> Result<T, Problem> {
    v.ok_or(Problem::MissingField { line_type, field })
}

pub(super) fn version(v: Option<i64>) -> Result<Option<u64>, Problem> {
    match v {
        Some(v) if v < 0 => Err(Problem::NegativeVersion(v)),
        Some(v) => Ok(Some(v as u64)),
        None => Ok(None),
    }
}

pub(super) fn build_op(raw: RawFields<'_>) -> Result<Op<'_>, Problem> {
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

pub(super) fn build_probe(raw: RawFields<'_>) -> Result<Probe<'_>, Problem> {
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
