//! A fault: what goes wrong and where, named by role so that each world can place it on its own
//! nodes or containers. Every kind has its inverse, applied when the plan heals it.
//!
//! Each kind is a module of its own: its JSON fields, its random draw, and how it starts, heals
//! and is seen, in terms of the primitives every world implements ([`hands::Hands`]). This file
//! lists the kinds ([`Kind`]) and hands each call to its module.

use std::fmt;

use serde_json::Value;

pub mod draw;
pub mod effect;
pub mod hands;

pub mod clock;
pub mod duplicate;
pub mod flush;
pub mod half_open;
pub mod kill;
pub mod latency;
pub mod loss;
pub mod memory_limit;
pub mod partition;
pub mod pause;
pub mod replica_lag;
pub mod reset;
pub mod ring;
pub mod shape;
pub mod slow_queries;
pub mod stall;

use effect::Effect;
use hands::Hands;

/// A part of the cluster, by its role at boot (`redis-master` stays the node that booted as the
/// master, whoever holds the role later). Indices are 0-based here and 1-based in names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The master at boot of Redis shard N (0: the first, or only, pair).
    RedisMaster(u8),
    /// The replica at boot of Redis shard N.
    RedisReplica(u8),
    Sentinel(u8),
    Memcached(u8),
    PgPrimary,
    PgReplica,
    App(u8),
}

impl Target {
    /// `redis-master`, `memcached-2`, `app-1`, ...
    pub fn name(&self) -> String {
        match self {
            Target::RedisMaster(0) => "redis-master".into(),
            Target::RedisReplica(0) => "redis-replica".into(),
            Target::RedisMaster(s) => format!("redis-master-{}", u16::from(*s) + 1),
            Target::RedisReplica(s) => format!("redis-replica-{}", u16::from(*s) + 1),
            Target::Sentinel(i) => format!("sentinel-{}", u16::from(*i) + 1),
            Target::Memcached(i) => format!("memcached-{}", u16::from(*i) + 1),
            Target::PgPrimary => "pg-primary".into(),
            Target::PgReplica => "pg-replica".into(),
            Target::App(i) => format!("app-{}", u16::from(*i) + 1),
        }
    }

    /// The inverse of [`Target::name`].
    pub fn parse(name: &str) -> Result<Target, String> {
        let fixed = [
            Target::RedisMaster(0),
            Target::RedisReplica(0),
            Target::PgPrimary,
            Target::PgReplica,
        ];
        if let Some(t) = fixed.into_iter().find(|t| t.name() == name) {
            return Ok(t);
        }
        let numbered = |prefix: &str, make: fn(u8) -> Target| {
            let n: u16 = name.strip_prefix(prefix)?.parse().ok()?;
            (1..=256).contains(&n).then(|| make((n - 1) as u8))
        };
        // The second pair onwards: `redis-master-2` (the first is plain `redis-master`).
        let shard = |prefix: &str, make: fn(u8) -> Target| {
            let n: u16 = name.strip_prefix(prefix)?.parse().ok()?;
            (2..=256).contains(&n).then(|| make((n - 1) as u8))
        };
        shard("redis-master-", Target::RedisMaster)
            .or_else(|| shard("redis-replica-", Target::RedisReplica))
            .or_else(|| numbered("sentinel-", Target::Sentinel))
            .or_else(|| numbered("memcached-", Target::Memcached))
            .or_else(|| numbered("app-", Target::App))
            .ok_or_else(|| format!("unknown fault target {name:?}: use redis-master, redis-replica (redis-master-N, redis-replica-N for the Nth Redis pair, N from 2), sentinel-N, memcached-N, pg-primary, pg-replica or app-N"))
    }
}

/// One side of a fault: a node by role, or every node of a kind (`apps`, `redis`, `sentinels`,
/// `memcached`, `postgres`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    One(Target),
    Apps,
    Redis,
    Sentinels,
    Memcached,
    Postgres,
    /// Every link of the cluster (latency and loss are the network's).
    Network,
}

impl From<Target> for Side {
    fn from(t: Target) -> Side {
        Side::One(t)
    }
}

impl Side {
    pub fn name(&self) -> String {
        match self {
            Side::One(t) => t.name(),
            Side::Apps => "apps".into(),
            Side::Redis => "redis".into(),
            Side::Sentinels => "sentinels".into(),
            Side::Memcached => "memcached".into(),
            Side::Postgres => "postgres".into(),
            Side::Network => "network".into(),
        }
    }

    pub fn parse(name: &str) -> Result<Side, String> {
        Ok(match name {
            "apps" => Side::Apps,
            "redis" => Side::Redis,
            "sentinels" => Side::Sentinels,
            "memcached" => Side::Memcached,
            "postgres" => Side::Postgres,
            "network" => Side::Network,
            one => Side::One(Target::parse(one).map_err(|e| {
                format!("{e}, or a group: apps, redis, sentinels, memcached, postgres")
            })?),
        })
    }

    /// Is `t` on this side?
    /// One of each kind of server this side holds (enough to ask whether a fault kind acts on
    /// any of them).
    fn members(&self) -> Vec<Target> {
        match self {
            Side::One(t) => vec![*t],
            Side::Apps => vec![Target::App(0)],
            Side::Redis => vec![Target::RedisMaster(0), Target::RedisReplica(0)],
            Side::Sentinels => vec![Target::Sentinel(0)],
            Side::Memcached => vec![Target::Memcached(0)],
            Side::Postgres => vec![Target::PgPrimary, Target::PgReplica],
            Side::Network => vec![
                Target::App(0),
                Target::RedisMaster(0),
                Target::RedisReplica(0),
                Target::Sentinel(0),
                Target::Memcached(0),
                Target::PgPrimary,
                Target::PgReplica,
            ],
        }
    }

    pub fn contains(&self, t: Target) -> bool {
        match self {
            Side::One(x) => *x == t,
            Side::Apps => matches!(t, Target::App(_)),
            Side::Redis => matches!(t, Target::RedisMaster(_) | Target::RedisReplica(_)),
            Side::Sentinels => matches!(t, Target::Sentinel(_)),
            Side::Memcached => matches!(t, Target::Memcached(_)),
            Side::Postgres => matches!(t, Target::PgPrimary | Target::PgReplica),
            Side::Network => true,
        }
    }
}

/// The servers a fault kind acts on, and how a person names them.
type ActsOn = (fn(Target) -> bool, &'static str);

/// What happens to the target; each variant says what its heal undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The process dies and what it held in memory is gone (a Redis master's unreplicated
    /// writes, a memcached node's items); the heal restarts it.
    Kill,
    /// The process freezes (SIGSTOP, a long GC pause): it runs nothing and answers nothing, and
    /// what it was doing (a fill in flight) completes only when the heal resumes it, with its
    /// state intact.
    Pause,
    /// The network between the target and `peers` drops messages: both ways, or with
    /// `one_way` only the peers' messages to the target (requests arrive, replies are lost: a
    /// write commits but its caller times out). The heal repairs the links.
    Partition { peers: Side, one_way: bool },
    /// A `partition` of five nodes into a [`shape::Shape`] (a bridge, a majorities ring) no cut
    /// of one side from another makes; the heal repairs every link.
    Shaped {
        shape: shape::Shape,
        nodes: [Target; shape::NODES],
    },
    /// Every message takes `one_way_ms` longer (a congested switch, a cross-zone detour); the heal
    /// restores the network's own latency.
    Latency { one_way_ms: u32 },
    /// Each message is dropped with probability `per_mille` / 1000; the heal stops the loss.
    Loss { per_mille: u16 },
    /// A cache tier loses every item at once (FLUSHALL on the Redis master, `flush_all` on
    /// memcached: a datacenter's cold start). Nothing to undo: the heal only marks the end of
    /// the refill the plan watches.
    Flush,
    /// A cache node (Redis, memcached) may hold at most `kib` KiB: keys are evicted, least
    /// recently used first; the heal lifts the limit.
    MemoryLimit { kib: u32 },
    /// The PostgreSQL replica applies the primary's log `lag_ms` behind (a long query on the
    /// replica, a saturated disk); the heal restores its own lag.
    ReplicaLag { lag_ms: u32 },
    /// Every query the PostgreSQL target answers takes `query_ms` longer (the production
    /// design's database slowdown); the heal restores its own pace.
    SlowQueries { query_ms: u32 },
    /// A memcached node joins the ring (`join`) or leaves it while traffic runs; the heal moves
    /// the ring back.
    Ring { join: bool },
    /// Every reply the target sends a client (an app node, the nemesis) is replaced by a TCP
    /// reset: the command ran, its caller sees the connection die; the heal lets replies
    /// through.
    Reset,
    /// The target's wall clock jumps `jump_ms` (negative: back) and runs at `rate_permille` /
    /// 1000 of true speed from then on; the heal steps it back to true time.
    Clock { jump_ms: i32, rate_permille: u16 },
    /// The target takes its clients' requests and answers none; the heal lets it run what it
    /// held, late.
    Stall,
    /// Each message is delivered twice with probability `per_mille` / 1000 (in the simulator
    /// the copy late, behind later messages); the heal stops the copying.
    Duplicate { per_mille: u16 },
    /// The target's end of its clients' connections is gone without a FIN: what they send is
    /// dropped unanswered, never run; the heal answers each of those connections with a reset.
    HalfOpen,
}

/// Every kind's name, in the order error messages list them.
pub const KINDS: [&str; 15] = [
    kill::NAME,
    pause::NAME,
    partition::NAME,
    latency::NAME,
    loss::NAME,
    flush::NAME,
    memory_limit::NAME,
    replica_lag::NAME,
    slow_queries::NAME,
    ring::NAME,
    reset::NAME,
    clock::NAME,
    stall::NAME,
    duplicate::NAME,
    half_open::NAME,
];

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Kill => kill::NAME,
            Kind::Pause => pause::NAME,
            Kind::Partition { .. } | Kind::Shaped { .. } => partition::NAME,
            Kind::Latency { .. } => latency::NAME,
            Kind::Loss { .. } => loss::NAME,
            Kind::Flush => flush::NAME,
            Kind::MemoryLimit { .. } => memory_limit::NAME,
            Kind::ReplicaLag { .. } => replica_lag::NAME,
            Kind::SlowQueries { .. } => slow_queries::NAME,
            Kind::Ring { .. } => ring::NAME,
            Kind::Reset => reset::NAME,
            Kind::Clock { .. } => clock::NAME,
            Kind::Stall => stall::NAME,
            Kind::Duplicate { .. } => duplicate::NAME,
            Kind::HalfOpen => half_open::NAME,
        }
    }

    /// The kind's own fields of its JSON form, after `kind` and `target`.
    fn fields(&self) -> Vec<(&'static str, Value)> {
        match *self {
            Kind::Kill | Kind::Pause | Kind::Flush | Kind::Reset | Kind::Stall | Kind::HalfOpen => {
                Vec::new()
            }
            Kind::Partition { peers, one_way } => partition::fields(peers, one_way),
            Kind::Shaped { shape, nodes } => shape::fields(shape, &nodes),
            Kind::Latency { one_way_ms } => latency::fields(one_way_ms),
            Kind::Loss { per_mille } => loss::fields(per_mille),
            Kind::Duplicate { per_mille } => duplicate::fields(per_mille),
            Kind::MemoryLimit { kib } => memory_limit::fields(kib),
            Kind::ReplicaLag { lag_ms } => replica_lag::fields(lag_ms),
            Kind::SlowQueries { query_ms } => slow_queries::fields(query_ms),
            Kind::Ring { join } => ring::fields(join),
            Kind::Clock {
                jump_ms,
                rate_permille,
            } => clock::fields(jump_ms, rate_permille),
        }
    }

    /// The servers this kind acts on, and how a person names them; `None`: any target.
    fn acts_on(&self) -> Option<ActsOn> {
        Some(match self {
            Kind::MemoryLimit { .. } => (memory_limit::limits, memory_limit::LIMITS),
            Kind::ReplicaLag { .. } => (|t| t == Target::PgReplica, "pg-replica or postgres"),
            Kind::SlowQueries { .. } => (
                |t| matches!(t, Target::PgPrimary | Target::PgReplica),
                "pg-primary, pg-replica or postgres",
            ),
            Kind::Ring { .. } => (|t| matches!(t, Target::Memcached(_)), "memcached-N"),
            Kind::Reset | Kind::Stall | Kind::HalfOpen => (reset::resets, reset::RESETS),
            Kind::Clock { .. } => (clock::skews, clock::SKEWS),
            Kind::Flush => (
                |t| {
                    matches!(
                        t,
                        Target::RedisMaster(_) | Target::RedisReplica(_) | Target::Memcached(_)
                    )
                },
                "redis-master, redis-replica, redis, memcached-N or memcached",
            ),
            Kind::Kill
            | Kind::Pause
            | Kind::Partition { .. }
            | Kind::Shaped { .. }
            | Kind::Latency { .. }
            | Kind::Loss { .. }
            | Kind::Duplicate { .. } => return None,
        })
    }

    /// The kind named `name`, its fields read from `v`; `None` for no kind of that name.
    fn parse(name: &str, v: &Value) -> Option<Result<Kind, String>> {
        Some(match name {
            kill::NAME => Ok(Kind::Kill),
            pause::NAME => Ok(Kind::Pause),
            partition::NAME => partition::parse(v),
            latency::NAME => latency::parse(v),
            loss::NAME => loss::parse(v),
            flush::NAME => Ok(Kind::Flush),
            memory_limit::NAME => memory_limit::parse(v),
            replica_lag::NAME => replica_lag::parse(v),
            slow_queries::NAME => slow_queries::parse(v),
            ring::NAME => ring::parse(v),
            reset::NAME => Ok(Kind::Reset),
            clock::NAME => clock::parse(v),
            stall::NAME => Ok(Kind::Stall),
            duplicate::NAME => duplicate::parse(v),
            half_open::NAME => Ok(Kind::HalfOpen),
            _ => return None,
        })
    }
}

/// A field of `v` that is a `u32` number of `unit`, or the line saying what `what` needs.
fn u32_field(v: &Value, field: &str, what: &str, unit: &str) -> Result<u32, String> {
    v.get(field)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{what} needs \"{field}\", a number of {unit}"))
}

/// A kind that acts on the whole network names no node: its target is `network`, and `why` says
/// so in the line that refuses another target.
fn network_only(target: Side, why: &str) -> Result<(), String> {
    if target == Side::Network {
        Ok(())
    } else {
        Err(format!(
            "{why}: its target is \"network\", not {:?}",
            target.name()
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fault {
    pub kind: Kind,
    pub target: Side,
}

impl Fault {
    /// `kind@target` (`partition@redis-master`): what a shrunk plan's faults are, without their
    /// parameters, so that two nights' witnesses can be compared by shape.
    pub fn shape(&self) -> String {
        format!("{}@{}", self.kind.name(), self.target.name())
    }

    pub fn new(kind: Kind, target: impl Into<Side>) -> Fault {
        Fault {
            kind,
            target: target.into(),
        }
    }

    /// The `fault` object of a history's fault lines: `{"kind":"kill","target":"redis-master"}`,
    /// `{"kind":"partition","target":"apps","peers":"redis","direction":"both"}`.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), self.kind.name().into());
        m.insert("target".into(), self.target.name().into());
        for (k, v) in self.kind.fields() {
            m.insert(k.into(), v);
        }
        Value::Object(m)
    }

    /// The inverse of [`Fault::to_json`].
    pub fn from_json(v: &Value) -> Result<Fault, String> {
        let text = |field: &str| v.get(field).and_then(Value::as_str);
        let target = text("target").ok_or("a fault needs a \"target\" such as \"redis-master\"")?;
        let target = Side::parse(target)?;
        let unknown = |said: String| {
            let all: Vec<String> = KINDS.iter().map(|k| format!("{k:?}")).collect();
            let (last, rest) = all.split_last().expect("kinds exist");
            format!(
                "unknown fault kind {said}: use {} or {last}",
                rest.join(", ")
            )
        };
        let kind = match text("kind") {
            Some(name) => Kind::parse(name, v).ok_or_else(|| unknown(format!("{name:?}")))??,
            None => return Err(unknown("(none given)".into())),
        };
        if let Some((acts, names)) = kind.acts_on() {
            if !target.members().into_iter().any(acts) {
                return Err(format!(
                    "a {} fault acts on {names}: target {:?} is none of them, and the fault would do nothing",
                    kind.name(),
                    target.name()
                ));
            }
        }
        if let Kind::Ring { join } = kind {
            ring::check_target(target, join)?;
        }
        if let Kind::Shaped { .. } = kind {
            network_only(target, shape::WHY_NETWORK)?;
        }
        if let Kind::Duplicate { .. } = kind {
            network_only(target, duplicate::WHY_NETWORK)?;
        }
        Ok(Fault { kind, target })
    }

    /// Applies this fault with `h`'s primitives.
    pub async fn begin(&self, h: &mut impl Hands) {
        match self.kind {
            Kind::Kill => kill::begin(h, self).await,
            Kind::Pause => pause::begin(h, self).await,
            Kind::Partition { peers, one_way } => partition::begin(h, self, peers, one_way).await,
            Kind::Shaped { shape, nodes } => shape::begin(h, shape, &nodes).await,
            Kind::Latency { one_way_ms } => latency::begin(h, one_way_ms).await,
            Kind::Loss { per_mille } => loss::begin(h, self, per_mille).await,
            Kind::Flush => flush::begin(h, self).await,
            Kind::MemoryLimit { kib } => memory_limit::begin(h, self, kib).await,
            Kind::ReplicaLag { lag_ms } => replica_lag::begin(h, self, lag_ms).await,
            Kind::SlowQueries { query_ms } => slow_queries::begin(h, self, query_ms).await,
            Kind::Ring { join } => ring::begin(h, self, join).await,
            Kind::Reset => reset::begin(h, self).await,
            Kind::Stall => stall::begin(h, self).await,
            Kind::Duplicate { per_mille } => duplicate::begin(h, self, per_mille).await,
            Kind::HalfOpen => half_open::begin(h, self).await,
            Kind::Clock {
                jump_ms,
                rate_permille,
            } => clock::begin(h, self, jump_ms, rate_permille).await,
        }
    }

    /// Undoes this fault with `h`'s primitives.
    pub async fn heal(&self, h: &mut impl Hands) {
        match self.kind {
            Kind::Kill => kill::heal(h, self).await,
            Kind::Pause => pause::heal(h, self).await,
            Kind::Partition { peers, one_way } => partition::heal(h, self, peers, one_way).await,
            Kind::Shaped { shape, nodes } => shape::heal(h, shape, &nodes).await,
            Kind::Latency { .. } => latency::heal(h).await,
            Kind::Loss { .. } => loss::heal(h, self).await,
            Kind::Flush => flush::heal(h, self).await,
            Kind::MemoryLimit { .. } => memory_limit::heal(h, self).await,
            Kind::ReplicaLag { .. } => replica_lag::heal(h, self).await,
            Kind::SlowQueries { .. } => slow_queries::heal(h, self).await,
            Kind::Ring { join } => ring::heal(h, self, join).await,
            Kind::Reset => reset::heal(h, self).await,
            Kind::Stall => stall::heal(h, self).await,
            Kind::Duplicate { .. } => duplicate::heal(h, self).await,
            Kind::HalfOpen => half_open::heal(h, self).await,
            Kind::Clock { .. } => clock::heal(h, self).await,
        }
    }

    /// Looks once for this fault's effect with `h`'s primitives.
    pub async fn observe(&self, h: &mut impl Hands) -> Option<Effect> {
        match self.kind {
            Kind::Kill => kill::observe(h, self).await,
            Kind::Pause => pause::observe(h, self).await,
            Kind::Partition { peers, .. } => partition::observe(h, self, peers).await,
            Kind::Shaped { shape, nodes } => shape::observe(h, shape, &nodes).await,
            Kind::Latency { one_way_ms } => latency::observe(h, one_way_ms).await,
            Kind::Loss { .. } => loss::observe(h).await,
            Kind::Flush => flush::observe(h, self).await,
            Kind::MemoryLimit { .. } => memory_limit::observe(h).await,
            Kind::ReplicaLag { lag_ms } => replica_lag::observe(h, self, lag_ms).await,
            Kind::SlowQueries { query_ms } => slow_queries::observe(h, self, query_ms).await,
            Kind::Ring { join } => ring::observe(h, self, join).await,
            Kind::Reset => reset::observe(h, self).await,
            Kind::Stall => stall::observe(h, self).await,
            Kind::Duplicate { .. } => duplicate::observe(h).await,
            Kind::HalfOpen => half_open::observe(h, self).await,
            Kind::Clock {
                jump_ms,
                rate_permille,
            } => clock::observe(h, self, jump_ms, rate_permille).await,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Partition { peers, one_way } => write!(
                f,
                "partition {} {} {}",
                self.target.name(),
                if one_way { "<-x-" } else { "<-x->" },
                peers.name()
            ),
            Kind::Shaped { shape, nodes } => write!(
                f,
                "partition {}: {}",
                shape.name(),
                nodes.map(|t| t.name()).join(" ")
            ),
            Kind::Ring { join } => write!(
                f,
                "ring: {} {}",
                self.target.name(),
                if join { "joins" } else { "leaves" }
            ),
            _ => write!(f, "{} {}", self.kind.name(), self.target.name()),
        }
    }
}

#[cfg(test)]
mod tests;
