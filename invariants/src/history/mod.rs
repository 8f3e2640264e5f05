//! The history format: JSON Lines, one object per line, times in nanoseconds.
//!
//! This module owns parsing and validation of single lines. It knows nothing about checking: a
//! line either becomes a typed [`Line`] or a [`Problem`] naming what is wrong with it. Unknown
//! fields are ignored so that writers may add context (Jepsen ops carry extra keys too); unknown
//! `type`s, `f`s, outcomes, sources and tiers are errors, because a checker that silently skips a
//! line it does not understand can pass a history it never read.

use std::borrow::Cow;

use crate::error::Problem;

mod fast;
mod parse;
mod raw;

pub use fast::parse as parse_line_fast;
pub use parse::{canonical, parse_line, parse_line_serde};
use serde_json::Value;

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

/// The client whose reads are a warming job's (`aside::CacheAside::warmer`): judged for
/// consistency and counted in the load like any read, but not in the hit ratio and hit latency,
/// which are the SLOs of the traffic (a warming job mostly reads what it already put in L1).
pub const WARMER_CLIENT: u64 = 998;

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
    /// The server that answered: an `l1` action's Redis master (the one the client was sending
    /// to when the action completed), an `l2` fill's or invalidation's memcached node, by its
    /// name in the history (`redis-master`, `memcached-2`), or its address when the recorder
    /// could not name it. Absent when unknown (and for loads).
    pub server: Option<Cow<'a, str>>,
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
            server: self.server.map(|s| s.into_owned().into()),
        }
    }
}

/// A Redis node's role, as Redis names it in `ROLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Master,
    Replica,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Result<Self, Problem> {
        match s {
            "master" => Ok(Role::Master),
            "replica" => Ok(Role::Replica),
            _ => Err(bad("role", s, "expected master or replica")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// A Redis node took `role` at `at_ns`: at boot, promoted by the Sentinels (`REPLICAOF NO
/// ONE`), or demoted (`REPLICAOF host port`, which discards what it held to resync from its
/// new master). Not an op and not judged: it explains which master an `l1` action reached.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleLine<'a> {
    pub server: Cow<'a, str>,
    /// The node's shard: its master/replica pair, numbered from 0 (absent: 0).
    pub shard: u64,
    pub role: Role,
    pub at_ns: u64,
}

impl RoleLine<'_> {
    /// The same line, owning its strings.
    pub fn into_owned(self) -> RoleLine<'static> {
        RoleLine {
            server: self.server.into_owned().into(),
            shard: self.shard,
            role: self.role,
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

/// An end-of-run read of the outbox (a strategy that invalidates through it, `durable`), taken
/// with the last round of probes: how many committed rows no invalidator has yet marked applied
/// to both tiers. Zero once the outbox has drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLine {
    pub at_ns: u64,
    pub undone: u64,
}

/// A coverage goal (`aside::goal`) reached by `node`: how many times in the run and when first.
/// The goal is a name here: the harness, not this crate, owns the list.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalLine<'a> {
    pub goal: Cow<'a, str>,
    pub node: Cow<'a, str>,
    pub count: u64,
    pub at_ns: u64,
}

impl GoalLine<'_> {
    /// The same line, owning its strings.
    pub fn into_owned(self) -> GoalLine<'static> {
        GoalLine {
            goal: self.goal.into_owned().into(),
            node: self.node.into_owned().into(),
            count: self.count,
            at_ns: self.at_ns,
        }
    }
}

/// One parsed, validated line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    Header(Header),
    Op(Op<'a>),
    Fault(Fault),
    Probe(Probe<'a>),
    Cache(CacheAct<'a>),
    Goal(GoalLine<'a>),
    Role(RoleLine<'a>),
    Outbox(OutboxLine),
}

fn bad(field: &'static str, value: &str, expected: &'static str) -> Problem {
    Problem::BadField {
        field,
        value: format!("{value:?}"),
        expected,
    }
}
