//! What the cache did, as it happens: every database load, fill, invalidation and lease, with
//! its tier, version and outcome. Give a [`CacheAside`](crate::CacheAside) an [`Events`] sink
//! (`with_events`) to see them: the harness records them as history lines so that a stale read's
//! witness can name its causal chain (the load of the old row, the write, its invalidation, the
//! late fill), and an audit log can do the same in production. Without a sink nothing is built.

use tokio::time::Instant;

/// Where an action happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    L1,
    L2,
    /// The database's primary.
    Db,
    /// The database's streaming replica.
    Replica,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::Db => "db",
            Tier::Replica => "replica",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A miss read the row (`version`: what it returned) from the database, or from L2 for the
    /// backfill of L1 that follows an L2 hit.
    Load,
    /// A value of `version` was written into a cache tier.
    Fill,
    /// A key was invalidated in a tier after the database moved it to `version` (None: no
    /// version known).
    Invalidate,
    /// This instance won the distributed lease for loading the key.
    LeaseWon,
    /// Another holder had the lease: this instance waited for its fill.
    LeaseLost,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Load => "load",
            Action::Fill => "fill",
            Action::Invalidate => "invalidate",
            Action::LeaseWon => "lease-won",
            Action::LeaseLost => "lease-lost",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Done.
    Ok,
    /// The tier said no on purpose (a fill older than what it holds, a tombstone included).
    Refused,
    /// An error, a timeout or an open circuit: it may or may not have happened.
    Failed,
}

impl ActionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Ok => "ok",
            ActionOutcome::Refused => "refused",
            ActionOutcome::Failed => "failed",
        }
    }
}

/// One action, reported when it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheEvent<'a> {
    /// The instance's name (`CacheAside::new`'s `instance`).
    pub instance: &'a str,
    pub key: &'a str,
    pub action: Action,
    pub tier: Tier,
    pub version: Option<u64>,
    pub outcome: ActionOutcome,
    /// When the action began (it is reported when it completed).
    pub started: Instant,
    /// The server that answered: for an L1 action, the address of the Redis master the client
    /// was sending to when the action completed ([`crate::tier::RedisLike::master_addr`]; an
    /// action completing just as the client follows a failover may be named by the new
    /// master); for an L2 fill or invalidation, the memcached node's name in the ring
    /// ("host:port"); `None` for the database, an L2 read's backfill load, or when the client
    /// does not know.
    pub server: Option<&'a str>,
}

/// A sink for [`CacheEvent`]s. Called inline on the cache's paths: keep it cheap.
pub trait Events: Send + Sync + 'static {
    fn on(&self, e: &CacheEvent<'_>);

    /// Instance `instance` reached coverage goal `goal` ([`crate::goal`]). Ignored unless a
    /// sink counts goals.
    fn goal(&self, instance: &str, goal: crate::goal::Goal) {
        let _ = (instance, goal);
    }
}
