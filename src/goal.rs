//! Coverage goals: the interesting points of the library and of the simulator's server models,
//! each recorded when a run reaches it ("sometimes" assertions, FoundationDB's `CODE_PROBE`).
//!
//! A campaign that stays green proves only what it explored. A [`Goal`] names one interleaving
//! worth exploring (a fill refused by a newer tombstone, a lease waited on, a fence set and
//! lifted, a master switch replayed). The library reports the goals it reaches to its
//! [`Events`](crate::events::Events) sink ([`crate::events::Events::goal`]); the models mark
//! theirs on the thread that runs them ([`reach_here`], drained by the simulator with
//! [`take_here`]). The harness counts them into the history, a scenario's promise names the
//! goals its runs must reach (a run that does not is a harness error, like a fault that never
//! took effect), and `cargo sim coverage` shows which goals no scenario reaches.
//!
//! Reporting a goal never awaits, sleeps, reads a clock or draws a random number: a run with a
//! sink and a run without one take the same path.

use std::cell::Cell;
use std::fmt;

/// Where a goal is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In the library: reached in both worlds, reported through the events sink.
    Library,
    /// In a server model or the simulator's nodes: reached in the simulator only.
    Model,
}

macro_rules! goals {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, $scope:ident; )*) => {
        /// One coverage goal. The names are the words of histories, scenario files and tables.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Goal {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Goal {
            /// Every goal, in table order.
            pub const ALL: &'static [Goal] = &[ $( Goal::$variant, )* ];

            /// The goal's name in histories, scenario files and tables.
            pub const fn name(self) -> &'static str {
                match self { $( Goal::$variant => $name, )* }
            }

            pub const fn scope(self) -> Scope {
                match self { $( Goal::$variant => Scope::$scope, )* }
            }

            /// What reaching it means, in a sentence (the first line of its doc).
            pub fn about(self) -> &'static str {
                match self { $( Goal::$variant => first_line(&[$($doc),*]), )* }
            }
        }
    };
}

fn first_line(doc: &[&'static str]) -> &'static str {
    doc.first().map_or("", |l| l.trim())
}

goals! {
    /// A read joined another read's load of the same key in this process (single-flight).
    SingleFlightJoined = "single-flight-joined", Library;
    /// A joined load's row was older than a tombstone the read found: the read loaded afresh.
    JoinedLoadReloaded = "joined-load-reloaded", Library;
    /// Another holder had the lease: the read waited for its fill.
    LeaseWaited = "lease-waited", Library;
    /// A read waiting on the lease was served the holder's fill from L1.
    LeaseWaitServedFill = "lease-wait-served-fill", Library;
    /// A read waiting on the lease took it over (its holder let it go without a fill L1 kept).
    LeaseTakenOver = "lease-taken-over", Library;
    /// A read waited the whole lease wait and read the database itself.
    LeaseWaitTimedOut = "lease-wait-timed-out", Library;
    /// L1 refused a fill: it held a newer version or a tombstone.
    L1FillRefused = "l1-fill-refused", Library;
    /// L2 refused a fill: its `add`/`cas` lost to a newer entry.
    L2FillRefused = "l2-fill-refused", Library;
    /// An L2 fill was dropped because the memcached ring moved while the row was read.
    L2FillRingMoved = "l2-fill-ring-moved", Library;
    /// A read was served a value past its freshness, within stale-while-revalidate.
    ServedStale = "served-stale", Library;
    /// A reload failed and the read was served what the tier held (stale-if-error).
    StaleIfError = "stale-if-error", Library;
    /// A value drawn for probabilistic early expiration (XFetch) was reloaded before it expired.
    EarlyRefresh = "early-refresh", Library;
    /// A database read was shed or refused by the database limits.
    DbShed = "db-shed", Library;
    /// The replica had not replayed the version the outbox named: the read went to the primary.
    ReplicaGuarded = "replica-guarded", Library;
    /// The Redis client followed a failover during a read: the answer was not used.
    L1AnswerSwitched = "l1-answer-switched", Library;
    /// A read skipped an L1 shard fenced after a failure or a switch, or with the lease lapsed (not before `durable`'s first whole pass).
    L1ReadFenced = "l1-read-fenced", Library;
    /// A read skipped a memcached node fenced after a failure, or with the lease lapsed (not before `durable`'s first whole pass).
    L2ReadFenced = "l2-read-fenced", Library;
    /// `durable` fenced a tier this instance failed to invalidate, or whose master switched.
    FenceSet = "fence-set", Library;
    /// The invalidator repaired a tier fenced after a failure or a switch and lifted the fence.
    FenceLifted = "fence-lifted", Library;
    /// The invalidator saw a Redis master switch and queued the outbox window for the new master.
    SwitchReplayed = "switch-replayed", Library;
    /// The outbox could not be read: the replay waits for the next pass.
    ReplayDeferred = "replay-deferred", Library;
    /// `durable`'s lease lapsed (its invalidator's last whole pass began Δ ago): a read skipped every tier.
    LeaseLapsed = "lease-lapsed", Library;
    /// The invalidator applied another instance's write, named by the outbox, to a tier.
    RemoteWriteApplied = "remote-write-applied", Library;
    /// An invalidation of a tier failed (a write's or the invalidator's: an error, a timeout).
    InvalidationFailed = "invalidation-failed", Library;
    /// A write invalidated a key on a memcached node the ring is changing to or from.
    InvalidatedOldOwner = "invalidated-old-owner", Library;
    /// A grouped namespace's generation moved (every key of the group invalidated at once).
    GenerationBumped = "generation-bumped", Library;
    /// A tier's circuit breaker opened.
    BreakerOpened = "breaker-opened", Library;
    /// A tier's circuit breaker closed again after a probe succeeded.
    BreakerClosed = "breaker-closed", Library;
    /// A read was served from the in-process hot-key cache (L0).
    L0Served = "l0-served", Library;
    /// L0 refused a row because a write of the key began while the row was read.
    L0OfferWritten = "l0-offer-written", Library;
    /// A read found the database's "no such row" cached (negative caching).
    NegativeHit = "negative-hit", Library;
    /// The outbox invalidator held its cursor below an outbox id not committed (yet).
    OutboxGapWaited = "outbox-gap-waited", Library;
    /// A transaction committed into the gap the invalidator held its cursor at.
    OutboxGapFilled = "outbox-gap-filled", Library;
    /// The invalidator gave up an outbox id missing for longer than W (a rolled-back write's).
    OutboxGapSkipped = "outbox-gap-skipped", Library;
    /// Redis (the model) refused a value older than the tombstone it held.
    RedisTombstoneKept = "redis-tombstone-kept", Model;
    /// Redis (the model) was asked to release a lease its caller no longer held.
    RedisForeignRelease = "redis-foreign-release", Model;
    /// Redis (the model) evicted a key under maxmemory.
    RedisEvicted = "redis-evicted", Model;
    /// A Redis node resynced from a new master and lost entries it held (a demoted master's).
    RedisResyncLost = "redis-resync-lost", Model;
    /// Sentinel (the simulator's) promoted a replica.
    SentinelPromoted = "sentinel-promoted", Model;
    /// Memcached (the model) refused a `cas`: the item changed since the `gets`.
    MemcachedCasConflict = "memcached-cas-conflict", Model;
    /// Memcached (the model) refused an `add`: the key was already there.
    MemcachedAddRefused = "memcached-add-refused", Model;
    /// Memcached (the model) evicted an item under its memory limit.
    MemcachedEvicted = "memcached-evicted", Model;
    /// The database's replica (the model) answered a read while it had commits not yet replayed.
    ReplicaBehind = "replica-behind", Model;
    /// PostgreSQL (the model) committed an outbox id below one already visible.
    PgCommitOutOfOrder = "pg-commit-out-of-order", Model;
    /// PostgreSQL (the model) rolled back a transaction that took outbox ids: a gap for ever.
    PgTxAborted = "pg-tx-aborted", Model;
}

impl Goal {
    /// The goal called `name`, or a line that names the problem and lists the goals.
    pub fn from_name(name: &str) -> Result<Goal, String> {
        Goal::ALL
            .iter()
            .copied()
            .find(|g| g.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Goal::ALL.iter().map(|g| g.name()).collect();
                format!(
                    "{name:?} is not a coverage goal: use one of {}",
                    names.join(", ")
                )
            })
    }

    /// The goal's bit in a set of goals held as a `u64` ([`take_here`], a run's goals).
    pub const fn bit(self) -> u64 {
        1 << (self as u32)
    }

    /// The goals of a set, in table order.
    pub fn of_set(bits: u64) -> impl Iterator<Item = Goal> {
        Goal::ALL
            .iter()
            .copied()
            .filter(move |g| bits & g.bit() != 0)
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Goal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Goal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Goal::from_name(&s).map_err(serde::de::Error::custom)
    }
}

const _: () = assert!(Goal::ALL.len() <= 64, "goals live in a u64 bitset");

thread_local! {
    /// Goals the models reached on this thread since the last [`take_here`].
    static HERE: Cell<u64> = const { Cell::new(0) };
}

/// A model (a server's state machine, which knows no sink) reached `goal`: marked on this
/// thread for whoever runs the model to collect ([`take_here`]).
pub fn reach_here(goal: Goal) {
    HERE.with(|h| h.set(h.get() | goal.bit()));
}

/// The goals marked on this thread since the last call, in table order; the marks are cleared.
pub fn take_here() -> Vec<Goal> {
    match HERE.with(|h| h.replace(0)) {
        // Every request a simulated server answers asks: nothing marked is the common answer.
        0 => Vec::new(),
        bits => Goal::of_set(bits).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_round_trip_and_an_unknown_one_lists_them() {
        let mut names: Vec<&str> = Goal::ALL.iter().map(|g| g.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Goal::ALL.len());
        for g in Goal::ALL {
            assert_eq!(Goal::from_name(g.name()), Ok(*g));
            assert!(!g.about().is_empty(), "{g} has no doc");
        }
        let e = Goal::from_name("no-such").unwrap_err();
        assert!(
            e.starts_with("\"no-such\" is not a coverage goal: use one of single-flight-joined, "),
            "{e}"
        );
    }

    #[test]
    fn marks_here_are_taken_once_in_table_order() {
        let _ = take_here();
        reach_here(Goal::MemcachedEvicted);
        reach_here(Goal::RedisEvicted);
        reach_here(Goal::RedisEvicted);
        assert_eq!(
            take_here(),
            vec![Goal::RedisEvicted, Goal::MemcachedEvicted]
        );
        assert!(take_here().is_empty());
    }

    #[test]
    fn at_least_25_goals() {
        assert!(Goal::ALL.len() >= 25);
    }
}
