//! Weakened safeguards: test machinery that proves the harness catches the loss of each one.
//!
//! A [`Mutant`] set in [`crate::CacheConfig::mutant`] drops one check of the library, as
//! mutation testing would (FoundationDB and TigerBeetle test their simulators the same way): a
//! campaign that stays green with a safeguard gone proves nothing about that safeguard. Each
//! mutant names the scenario and strategy that must catch it, and `sim/tests/table.rs` holds
//! each to being caught within 20 seeds; `cargo sim stf` prints how many seeds each takes.
//! Never set one outside a test: every one of them serves stale data.

use std::fmt;

/// One dropped safeguard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// A versioned invalidation deletes instead of leaving a tombstone: a fill begun before the
    /// write lands after it.
    NoTombstone,
    /// L1 fills are plain SETs: the script that refuses a version older than the one held
    /// (a tombstone included) is not asked.
    NoL1VersionCheck,
    /// L2 fills are plain `set`s, not `add`/`cas` from what the read saw.
    NoL2Cas,
    /// Nothing closes the single-flight of a key: not a write here, not another instance's write
    /// the outbox names, not an invalidator fallen behind. A read after a write joins a load
    /// begun before it.
    NoFlightClose,
    /// `durable`: a tier this instance failed to invalidate is not fenced: reads go on using it
    /// until the invalidator repairs it.
    NoFence,
    /// `durable`: after a Redis master switch the outbox window is not applied again to the new
    /// master.
    NoReplay,
    /// `durable`: a read answered by a master the client switched to during the call is used
    /// (not fenced until the replay).
    NoSwitchCheck,
    /// `durable`: misses read the replica even when it has not replayed the version the outbox
    /// named.
    NoReplicaGuard,
    /// Hot keys' L0 takes a row whatever writes happened while it was read.
    NoL0Ticket,
    /// A read that joined another read's load serves its row even when it is older than a
    /// tombstone the read itself found (another instance's write the load began before).
    NoFloorCheck,
    /// A memcached ring change forgets the ring it left: invalidations go to a key's owner now
    /// only, and a node that leaves and comes back serves what it held before.
    NoRingHistory,
    /// L1's shards share one fence: a failure or master switch of one shard keeps reads off
    /// every shard until the invalidator repairs it.
    OneL1Fence,
    /// A write invalidates only the key it names, not the siblings its transaction changed: the
    /// writer may read its own write's sibling old until an invalidator applies it.
    NoSiblingInvalidation,
    /// `durable`: the start-up replay of the outbox window goes to L1 only and tells the replica
    /// guard nothing, and the passes read from the outbox's head: a row every instance started
    /// after is applied by none to L2.
    StartReplayL1Only,
    /// `durable`: the replica guard trusts what the outbox last named even while the invalidator
    /// has fallen behind the outbox.
    NoGuardWhenBehind,
    /// `durable`: reads use the tiers however long ago the invalidator last read the whole
    /// outbox (the lease never lapses).
    NoLease,
}

impl Mutant {
    pub const ALL: [Mutant; 16] = [
        Mutant::NoTombstone,
        Mutant::NoL1VersionCheck,
        Mutant::NoL2Cas,
        Mutant::NoFlightClose,
        Mutant::NoFence,
        Mutant::NoReplay,
        Mutant::NoSwitchCheck,
        Mutant::NoReplicaGuard,
        Mutant::NoL0Ticket,
        Mutant::NoFloorCheck,
        Mutant::NoRingHistory,
        Mutant::OneL1Fence,
        Mutant::NoSiblingInvalidation,
        Mutant::StartReplayL1Only,
        Mutant::NoGuardWhenBehind,
        Mutant::NoLease,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::NoTombstone => "no-tombstone",
            Mutant::NoL1VersionCheck => "no-l1-version-check",
            Mutant::NoL2Cas => "no-l2-cas",
            Mutant::NoFlightClose => "no-flight-close",
            Mutant::NoFence => "no-fence",
            Mutant::NoReplay => "no-replay",
            Mutant::NoSwitchCheck => "no-switch-check",
            Mutant::NoReplicaGuard => "no-replica-guard",
            Mutant::NoL0Ticket => "no-l0-ticket",
            Mutant::NoFloorCheck => "no-floor-check",
            Mutant::NoRingHistory => "no-ring-history",
            Mutant::OneL1Fence => "one-l1-fence",
            Mutant::NoSiblingInvalidation => "no-sibling-invalidation",
            Mutant::StartReplayL1Only => "start-replay-l1-only",
            Mutant::NoGuardWhenBehind => "no-guard-when-behind",
            Mutant::NoLease => "no-lease",
        }
    }

    /// The mutant called `name`, or a line that lists the names.
    pub fn from_name(name: &str) -> Result<Mutant, String> {
        Mutant::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                format!("{name:?} is not a mutant: use one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_an_unknown_one_lists_them() {
        for m in Mutant::ALL {
            assert_eq!(Mutant::from_name(m.name()), Ok(m));
        }
        let e = Mutant::from_name("no-such").unwrap_err();
        assert!(
            e.starts_with("\"no-such\" is not a mutant: use one of no-tombstone, "),
            "{e}"
        );
    }
}
