//! The fences and the replica guard: what a read asks before it uses a tier, and how a pass of
//! the invalidator lifts them ([`super`] says what they promise).

use super::*;

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// Whether reads skip L1 shard `shard`: it failed here, or its master switched, and the
    /// invalidator has not repaired it since.
    pub(in crate::cache) fn l1_fenced(&self, shard: usize) -> bool {
        if self.mutated(Mutant::OneL1Fence) {
            return (0..self.l1.len()).any(|s| self.shard_fenced(s));
        }
        self.shard_fenced(shard)
    }

    fn shard_fenced(&self, shard: usize) -> bool {
        self.repair.active()
            && (self.repair.fenced[shard].load(Relaxed)
                || self.l1.master_switches(shard) != self.repair.switches_seen[shard].load(Relaxed)
                || self.lease_lapsed())
    }

    /// Whether reads skip memcached node `n`.
    pub(in crate::cache) fn l2_fenced(&self, n: usize) -> bool {
        self.repair.active()
            && (self.repair.fenced[self.repair.l2_slot(n)].load(Relaxed) || self.lease_lapsed())
    }

    /// The lease: the invalidator's last whole pass began Δ
    /// ([`CacheConfig::outbox_staleness_bound_ms`]) or more ago, or none has run, so a row
    /// committed more than Δ ago may be neither applied nor fenced here yet (the invalidator is
    /// cut off from the database, its reads of the outbox are lost, or its passes wait on a
    /// tier): every tier counts as fenced. Under 14 % loss another instance's write reached
    /// memcached only at the second attempt, and this instance's invalidator had not read it
    /// yet: swarm seed 199, 627 ms stale.
    pub(in crate::cache) fn lease_lapsed(&self) -> bool {
        if self.mutated(Mutant::NoLease) {
            return false;
        }
        let delta_ms = self.cfg.outbox_staleness_bound_ms();
        match self.repair.since_caught_up_ms() {
            // No whole pass yet: the instance is not ready ([`CacheAside::ready`]).
            None => true,
            Some(ms) if ms >= delta_ms => {
                self.reach(Goal::LeaseLapsed);
                true
            }
            Some(_) => false,
        }
    }

    /// Whether L1 shard `shard`'s fence (if any) was set by a failure, a switch or a lapsed
    /// lease, not by the invalidator's start (its replay, or no whole pass yet): a read it keeps
    /// off L1 is a coverage goal.
    pub(in crate::cache) fn l1_fenced_by_fault(&self, shard: usize) -> bool {
        self.past_start(shard)
    }

    /// [`CacheAside::l1_fenced_by_fault`] for memcached node `n`.
    pub(in crate::cache) fn l2_fenced_by_fault(&self, n: usize) -> bool {
        self.past_start(self.repair.l2_slot(n))
    }

    fn past_start(&self, slot: usize) -> bool {
        self.repair.since_caught_up_ms().is_some() && !self.repair.boot_fenced(slot)
    }

    /// A health failure on L1 shard `shard`: fence it if an invalidator runs.
    pub(in crate::cache) fn l1_failed(&self, shard: usize, e: &TierError) {
        self.tier_failed(shard, e);
    }

    /// A health failure on memcached node `n`: fence it if an invalidator runs.
    pub(in crate::cache) fn l2_failed(&self, n: usize, e: &TierError) {
        self.tier_failed(self.repair.l2_slot(n), e);
    }

    fn tier_failed(&self, slot: usize, e: &TierError) {
        if !e.changed_nothing() {
            self.owes(slot);
        }
    }

    /// The invalidator could not apply a row to L1 shard `shard`: fence it, whatever the
    /// failure. A refusal (`NOREPLICAS`) changed nothing, so the tier still holds what the row
    /// invalidates, and the pass that read the row may renew the lease.
    pub(in crate::cache) fn l1_owed(&self, shard: usize) {
        self.owes(shard);
    }

    /// [`CacheAside::l1_owed`] for memcached node `n`.
    pub(in crate::cache) fn l2_owed(&self, n: usize) {
        self.owes(self.repair.l2_slot(n));
    }

    fn owes(&self, slot: usize) {
        if self.mutated(Mutant::NoFence) {
            return;
        }
        if self.repair.fence(slot, Instant::now()) {
            self.reach(Goal::FenceSet);
        }
    }

    /// This instance wrote `version` of `key`: the replica guard knows it at once.
    pub(in crate::cache) fn wrote(&self, key: &str, version: u64) {
        self.repair.know(key, version);
    }

    /// Whether a row read from the replica may be older than what the outbox names for the key:
    /// older than the version it last named, or the invalidator is behind the outbox
    /// ([`CacheAside::outbox_behind`]), so what it has not read yet is unknown (under 24 % loss
    /// another instance's write went unread for 0.8 s while the replica's older row was filled:
    /// swarm seed 54).
    pub(in crate::cache) fn replica_behind(&self, key: &str, row: Option<&Row>) -> bool {
        !self.mutated(Mutant::NoReplicaGuard)
            && (self.repair.known(key) > row.map_or(0, |r| r.version)
                || (self.outbox_behind() && !self.mutated(Mutant::NoGuardWhenBehind)))
    }

    /// Whether this instance may have missed other instances' writes: its invalidator has not
    /// read the whole outbox within `outbox_poll_ms + outbox_timeout_ms` (it is cut off from the
    /// database, or the process was paused). A read then does not join a load begun earlier in
    /// this process, which may predate such a write.
    pub(in crate::cache) fn outbox_behind(&self) -> bool {
        if !self.repair.active() {
            return false;
        }
        let fresh_ms = self.cfg.outbox_poll_ms + self.cfg.outbox_timeout_ms;
        self.repair
            .since_caught_up_ms()
            .is_none_or(|ms| ms >= fresh_ms)
    }

    /// Currently fenced tiers, by name (`l1`, or `l1-0`, `l1-1`, ... with L1 shards; `l2-0`,
    /// ...): tests and reports.
    pub fn fenced_tiers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in 0..self.l1.len() {
            if self.l1_fenced(s) {
                out.push(match self.l1.len() {
                    1 => "l1".to_string(),
                    _ => format!("l1-{s}"),
                });
            }
        }
        for n in 0..self.l2.nodes.len() {
            if self.l2_fenced(n) {
                out.push(format!("l2-{n}"));
            }
        }
        out
    }

    /// Resolves once the instance serves from its tiers: at once without an invalidator; with
    /// one (`durable`), once its first whole pass has run, which takes a few round trips to
    /// the database. Until then every read goes to the database (the lease: no pass has vouched
    /// for the tiers yet), so route traffic to the instance after it, as a readiness probe
    /// would: ten app nodes starting under a hot key's reads loaded it seven times in one fill
    /// window (`expiry-storm` seed 183, bound 6).
    ///
    /// Spawn the invalidator ([`CacheAside::invalidator`]) first: before that the instance has
    /// none, and this resolves at once. It waits as long as the database does not answer; put
    /// your own deadline on it.
    pub async fn ready(&self) {
        let poll = Duration::from_millis(self.cfg.outbox_poll_ms.min(5));
        while self.repair.active() && self.repair.since_caught_up_ms().is_none() {
            tokio::time::sleep(poll).await;
        }
    }

    /// [`CacheAside::ready`], waiting at most `cache.db_timeout_ms` (as long as a read waits on
    /// the database); says whether the instance became ready. Both `backend::connect` and the
    /// harness's app nodes start traffic after it.
    pub async fn ready_within_db_timeout(&self) -> bool {
        tokio::time::timeout(self.cfg.db_timeout(), self.ready())
            .await
            .is_ok()
    }

    /// Outbox rows this instance has read and not yet applied to both tiers.
    pub fn outbox_pending(&self) -> usize {
        self.repair.lock().pending.len()
    }

    /// Lifts each fence set before `pass_start` whose tier has nothing pending: this pass read
    /// the whole outbox and applied everything due to it.
    pub(in crate::cache) fn lift_fences(&self, pass_start: Instant) {
        let mut st = self.repair.lock();
        let mut owed = vec![false; self.repair.l2_slot(self.l2.nodes.len())];
        for d in st.pending.values() {
            if d.l1 {
                owed[d.shard] = true;
            }
            if d.l2 {
                if let Ok(k) = Key::parse(&d.key) {
                    for n in self.l2_owners(&k).0 {
                        owed[self.repair.l2_slot(n)] = true;
                    }
                }
            }
        }
        for (slot, owes) in owed.into_iter().enumerate() {
            if owes {
                continue;
            }
            if st.since[slot].is_some_and(|t| t <= pass_start) {
                st.since[slot] = None;
                self.repair.fenced[slot].store(false, Relaxed);
                if !st.boot_fence[slot] {
                    self.reach(Goal::FenceLifted);
                }
            }
        }
    }
}
