//! The outbox invalidator (`durable`), and the fences it lifts.
//!
//! Every write's transaction leaves an outbox row (key, version). A write invalidates both tiers
//! itself, as `versioned` does, but that call can fail: the tier is cut off, the tombstone is
//! lost on the wire, or a master acknowledges it and then loses its role. So each instance may
//! run an invalidator ([`CacheAside::invalidator`]) that reads every outbox row and applies it
//! to L1 and to the memcached node that owns the key, retrying until both acknowledge. Several
//! may run at once: tombstones carry versions, so applying one twice, or late, changes nothing.
//!
//! What the instance promises in return, and how:
//!
//! * **Fences.** A tier this instance could not invalidate (a write's own invalidation or the
//!   invalidator's failed) may hold values whose invalidation it missed. The instance does not
//!   read that tier (L1, or one memcached node) again until an invalidator pass that began
//!   after the failure has applied every row due to it. A memcached node that rejoins with old
//!   items is therefore never served from before it is repaired, without the cold node a flush
//!   would leave behind.
//! * **Replay after a master switch.** When the Redis client follows a failover
//!   ([`RedisLike::master_switches`] rises), L1 is fenced at once and every row of the last
//!   `replay_window_ms` (W) is applied to the new master: the old master may have acknowledged
//!   tombstones it never replicated. The instance also replays W when it starts, to both tiers
//!   (no other instance may have read those rows: all may have started after them). With L1 in
//!   shards ([`crate::shards`]) this is per shard: only the shard that switched is fenced, and
//!   only its keys' rows are replayed.
//! * **The replica guard.** A miss reads the replica only if the replica has the version the
//!   outbox last named for the key; otherwise it reads the primary.
//! * **The lease.** A read uses the tiers only while the last whole pass (it read the outbox to
//!   its end and applied, or fenced the tiers of, every row it read) began less than Δ ago:
//!   every row committed before it is applied or fenced, and any other is younger than Δ. A
//!   lost query, a cut from the database and a frozen process all let it lapse; reads then go
//!   to the database until a whole pass runs (swarm seed 199: under 14 % loss two instances'
//!   invalidators did not reach another's write for 0.7 s, and one served it 627 ms stale).
//!
//! With these, no read is served stale for longer than
//! [`CacheConfig::outbox_staleness_bound_ms`] (Δ): the harness judges `durable` by exactly
//! that bound in every scenario.
//!
//! Outbox ids are assigned when a transaction inserts its row, not when it commits, so a row
//! may appear below ids already read. The invalidator keeps its cursor below the first missing
//! id and reads on from there, until the gap is older than W (a rolled-back transaction leaves
//! a gap for ever); every id missing when the gap was found is given up together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

use futures_util::future::join_all;

use super::*;
use crate::tier::OutboxRow;

mod cursor;
use cursor::Gap;
mod fences;
mod lease;
#[cfg(test)]
mod tests;

/// Rows applied at once in one pass.
const APPLY_CONCURRENCY: usize = 64;

/// What the instance knows about its tiers' repair.
pub(super) struct Repair {
    /// An invalidator runs for this instance: fences and the replica guard apply.
    active: AtomicBool,
    /// Per tier: L1 shard s is slot s, memcached node n is slot [`Repair::l2_slot`]. Read on every
    /// read, so atomics.
    fenced: Vec<AtomicBool>,
    /// Per L1 shard, the master switches already replayed: a read sees a newer count as a
    /// fence.
    switches_seen: Vec<AtomicU64>,
    /// When the instance was made.
    made_at: Instant,
    /// When the last pass that read the whole outbox and applied what it read began, in ms
    /// after `made_at` (0: none yet): the lease ([`CacheAside::lease_lapsed`]).
    caught_up_ms: AtomicU64,
    st: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When each fenced tier was fenced (the latest failure).
    since: Vec<Option<Instant>>,
    /// Every id at or below it has been read (or given up as a gap).
    cursor: u64,
    /// Ids read above the cursor.
    above: BTreeSet<u64>,
    /// Where the cursor waits on missing ids.
    gap: Option<Gap>,
    /// Rows still due to a tier, by id.
    pending: BTreeMap<u64, Due>,
    /// Ids applied to both tiers whose marking as done failed: marked with the next pass's
    /// (pruning deletes only rows marked done, and the end-of-run probe counts the others).
    unmarked: Vec<u64>,
    /// The newest version the outbox (or a write of this instance) named per key, and when:
    /// the replica guard.
    known: HashMap<String, (u64, Instant)>,
    started: bool,
    /// Per slot: its fence was set by the start-up replay (every instance's first pass), not by
    /// a failure or a switch. Lifting it is no coverage goal.
    boot_fence: Vec<bool>,
}

impl State {
    /// The replica guard learns that the outbox (or a write of this instance) named `version`
    /// of `key` at `now`; an older version than it knows changes nothing.
    fn know(&mut self, key: &str, version: u64, now: Instant) {
        let e = self.known.entry(key.to_string()).or_insert((0, now));
        if version >= e.0 {
            *e = (version, now);
        }
    }
}

#[derive(Debug, Clone)]
struct Due {
    key: String,
    version: u64,
    l1: bool,
    l2: bool,
    /// The key's L1 shard.
    shard: usize,
    /// Replayed after a master switch: someone already applied it once.
    replay: bool,
    /// Written by another instance, and not yet applied here.
    remote: bool,
}

impl Repair {
    pub(super) fn new(l1_shards: usize, l2_nodes: usize) -> Self {
        let slots = l1_shards + l2_nodes;
        Repair {
            active: AtomicBool::new(false),
            fenced: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            switches_seen: (0..l1_shards).map(|_| AtomicU64::new(0)).collect(),
            made_at: Instant::now(),
            caught_up_ms: AtomicU64::new(0),
            st: Mutex::new(State {
                since: vec![None; slots],
                boot_fence: vec![false; slots],
                ..State::default()
            }),
        }
    }

    /// Memcached node `n`'s slot in the fences: after every L1 shard's.
    fn l2_slot(&self, n: usize) -> usize {
        self.switches_seen.len() + n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// Fences `slot` from `at`, if an invalidator runs; says whether it did.
    fn fence(&self, slot: usize, at: Instant) -> bool {
        if !self.active() {
            return false;
        }
        self.fenced[slot].store(true, Relaxed);
        let mut st = self.lock();
        st.since[slot] = Some(st.since[slot].map_or(at, |t| t.max(at)));
        st.boot_fence[slot] = !st.started;
        true
    }

    /// Whether `slot`'s fence is the start-up replay's (no failure or switch set it).
    fn boot_fenced(&self, slot: usize) -> bool {
        self.lock().boot_fence[slot]
    }

    fn know(&self, key: &str, version: u64) {
        if !self.active() {
            return;
        }
        self.lock().know(key, version, Instant::now());
    }

    /// The newest version of `key` the outbox named lately (0: none known).
    fn known(&self, key: &str) -> u64 {
        if !self.active() {
            return 0;
        }
        self.lock().known.get(key).map_or(0, |e| e.0)
    }
}

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// The outbox invalidator for this instance, if its strategy uses one (`durable`): a task
    /// that runs until dropped, polling the outbox every `outbox_poll_ms`. Spawn it next to the
    /// instance; from then on the instance fences tiers it could not reach until this task has
    /// repaired them.
    pub fn invalidator(self: &Arc<Self>) -> Option<impl Future<Output = ()> + Send + 'static> {
        if !self.strategy.uses_outbox() {
            return None;
        }
        self.repair.active.store(true, Relaxed);
        let me = Arc::clone(self);
        let span = tracing::info_span!("aside.invalidator", instance = %self.instance);
        Some(
            async move {
                let poll = Duration::from_millis(me.cfg.outbox_poll_ms);
                let prune_every = Duration::from_millis(me.cfg.outbox_prune_every_ms);
                let mut pruned_at = Instant::now();
                loop {
                    me.invalidator_pass().await;
                    if me.cfg.outbox_keep_ms > 0 && pruned_at.elapsed() >= prune_every {
                        pruned_at = Instant::now();
                        me.prune().await;
                    }
                    tokio::time::sleep(poll).await;
                }
            }
            .instrument(span),
        )
    }

    /// Deletes the outbox rows marked done and older than `outbox_keep_ms` (any invalidator
    /// may; they race harmlessly).
    async fn prune(&self) {
        match self
            .outbox_call(self.store.outbox_prune(self.cfg.outbox_keep_ms))
            .await
        {
            Ok(0) => {}
            Ok(rows) => debug!(rows, "outbox pruned"),
            Err(e) => debug!(error = %e, "outbox prune failed; trying again next time"),
        }
    }

    async fn outbox_call<T>(&self, f: impl Future<Output = TierResult<T>>) -> TierResult<T> {
        timed(
            "postgres",
            Duration::from_millis(self.cfg.outbox_timeout_ms),
            f,
        )
        .await
    }

    /// One pass: replay after a switch (or at start), read new rows, apply what is due, mark
    /// done, lift the fences this pass has earned.
    pub(super) async fn invalidator_pass(&self) {
        let pass_start = Instant::now();
        let switches: Vec<u64> = (0..self.l1.len())
            .map(|s| self.l1.master_switches(s))
            .collect();
        let started = self.repair.lock().started;
        // The shards whose master switched since their last replay (every shard at start).
        let switched: Vec<usize> = (0..self.l1.len())
            .filter(|&s| !started || switches[s] != self.repair.switches_seen[s].load(Relaxed))
            .collect();
        if !switched.is_empty() {
            // Reads skip those shards (the count differs) until the replay is applied.
            for &s in &switched {
                self.repair.fence(s, pass_start);
            }
            if started && self.repair.active() {
                self.reach(Goal::FenceSet);
            }
            let w = self.cfg.replay_window_ms;
            // At the start, where the passes read from: the head of the rows that began 2 W
            // ago. Every row that commits later lies above it (no transaction lasts W), also
            // one in flight now below rows already committed, which the outbox's head would
            // pass over for ever; the rows above it are read, and gaps waited on, as any.
            // (The test machinery's `start-replay-l1-only` starts at the head, as before.) It
            // is read before the window: a row committed between the two reads is in one or
            // the other (read the other way round, a foreign write committed at 15 ms was
            // applied by no instance: swarm seed 27, stale for 2.7 s).
            let head = if started {
                Ok(0)
            } else if self.mutated(Mutant::StartReplayL1Only) {
                self.outbox_call(self.store.outbox_head()).await
            } else {
                self.outbox_call(self.store.outbox_head_before(2 * w)).await
            };
            let recent = self
                .outbox_call(self.store.outbox_recent(w, u32::MAX))
                .await;
            let (Ok(rows), Ok(head)) = (recent, head) else {
                self.reach(Goal::ReplayDeferred);
                debug!("outbox unreachable: replay deferred to the next pass");
                return;
            };
            info!(
                rows = rows.len(),
                ?switched,
                "replaying the outbox window on L1"
            );
            if started {
                // The window is queued for the new master; the passes apply it.
                self.reach(Goal::SwitchReplayed);
            }
            let mut st = self.repair.lock();
            if !st.started {
                st.started = true;
                st.cursor = head;
            }
            // The test machinery's `no-replay` keeps only the start's replay.
            let rows = if started && self.mutated(Mutant::NoReplay) {
                Vec::new()
            } else {
                rows
            };
            let now = Instant::now();
            for r in rows {
                let shard = self.l1.map().shard_of(&r.key);
                if !switched.contains(&shard) {
                    continue;
                }
                let start = !started && !self.mutated(Mutant::StartReplayL1Only);
                if start {
                    // The replica guard learns its version now, before this pass reads it
                    // again from the start (which the mutant puts at the head, where the
                    // passes never would), or a miss may read the replica's older row.
                    st.know(&r.key, r.version, now);
                }
                let e = st.pending.entry(r.id).or_insert(Due {
                    key: r.key,
                    version: r.version,
                    l1: false,
                    l2: false,
                    shard,
                    replay: true,
                    remote: false,
                });
                e.l1 = true;
                // At the start, to both tiers: every instance may have started after it
                // committed (a whole deployment at once), so no invalidator may have read it.
                e.l2 |= start;
            }
            for &s in &switched {
                self.repair.switches_seen[s].store(switches[s], Relaxed);
            }
        }
        let Some(complete) = self.read_outbox().await else {
            return;
        };
        let mut done = self.apply_pending().await;
        done.append(&mut self.repair.lock().unmarked);
        if !done.is_empty() {
            if let Err(e) = self.outbox_call(self.store.outbox_done(&done)).await {
                debug!(error = %e, rows = done.len(), "could not mark outbox rows done: the next pass tries again");
                self.repair.lock().unmarked = done;
            }
        }
        if complete {
            self.repair.caught_up(pass_start);
            self.lift_fences(pass_start);
        }
    }

    /// Reads every row above the cursor into `pending`. Some(true) when it read to the end.
    async fn read_outbox(&self) -> Option<bool> {
        let batch = self.cfg.outbox_batch;
        let mut after = self.repair.lock().cursor;
        loop {
            let rows = match self
                .outbox_call(self.store.outbox_after(after, batch))
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    debug!(error = %e, "outbox unreachable: retrying next pass");
                    return Some(false);
                }
            };
            let full = rows.len() as u32 >= batch;
            if let Some(last) = rows.last() {
                after = last.id;
            }
            self.take_rows(rows);
            if !full {
                return Some(true);
            }
        }
    }

    /// Applies every pending row to the tiers it is due to; returns the ids now applied to both
    /// (not replays: those were marked before).
    async fn apply_pending(&self) -> Vec<u64> {
        let due: Vec<(u64, Due)> = {
            let st = self.repair.lock();
            st.pending.iter().map(|(&id, d)| (id, d.clone())).collect()
        };
        let mut done = Vec::new();
        for chunk in due.chunks(APPLY_CONCURRENCY) {
            let results = join_all(chunk.iter().map(|(id, d)| self.apply_row(*id, d))).await;
            let mut st = self.repair.lock();
            for ((id, d), (l1_ok, l2_ok)) in chunk.iter().zip(results) {
                if let Some(p) = st.pending.get_mut(id) {
                    p.l1 &= !l1_ok;
                    p.l2 &= !l2_ok;
                    p.remote = false;
                    if !p.l1 && !p.l2 {
                        st.pending.remove(id);
                        if !d.replay {
                            done.push(*id);
                        }
                    }
                }
            }
        }
        done
    }

    /// One row to the tiers it is due to: (L1 acknowledged, L2 acknowledged).
    async fn apply_row(&self, _id: u64, d: &Due) -> (bool, bool) {
        let acked = self.apply_row_to_tiers(d).await;
        if d.remote && (acked.0 || acked.1) {
            self.reach(Goal::RemoteWriteApplied);
        }
        // This process's L0 too, whatever the tiers answered, and after them: a read that
        // began meanwhile may have read the old value from a tier not yet invalidated.
        if let Some(hot) = &self.hot {
            hot.forget(&d.key);
        }
        acked
    }

    async fn apply_row_to_tiers(&self, d: &Due) -> (bool, bool) {
        // A key of a grouped namespace is invalidated in its group's current generation; one
        // whose generation cannot be read now stays due to both tiers.
        let key = match Key::parse(&d.key) {
            Ok(k) => match self.resolve(&k).await {
                Ok(stored) => Some(stored),
                Err(e) => {
                    debug!(key = %d.key, error = %e, "outbox row waits: its group's generation cannot be read");
                    // Fenced as any tier the row could not be applied to (lift_fences finds
                    // the same tiers owed).
                    if d.l1 {
                        self.l1_owed(d.shard);
                    }
                    if d.l2 {
                        for n in self.l2_owners(&k).0 {
                            self.l2_owed(n);
                        }
                    }
                    return (false, false);
                }
            },
            Err(_) => None,
        };
        if let Some(k) = key.as_ref().filter(|k| k.is_generation()) {
            return self.apply_generation(k, d).await;
        }
        let stored = key
            .as_ref()
            .map_or(d.key.clone(), |k| k.stored().into_owned());
        if d.remote && !self.mutated(Mutant::NoFlightClose) {
            // A write of another instance: readers here load afresh rather than join a load
            // begun before it (this instance's own writes closed the flight as they wrote).
            self.flights.close(&stored);
        }
        let tomb_ms = self.cfg.tombstone_ttl_ms;
        let v = Some(d.version);
        let mut l1_ok = false;
        if d.l1 {
            let started = self.clock();
            let (shard, l1) = self.l1.of(&stored);
            let r = self
                .retry_l1(
                    shard,
                    self.strategy.repair_l1(l1, &stored, d.version, tomb_ms),
                )
                .await;
            self.emit_invalidation(&d.key, Tier::L1, v, &r, started, None);
            match r {
                Ok(()) => l1_ok = true,
                Err(_) => {
                    self.reach(Goal::InvalidationFailed);
                    self.l1_owed(shard);
                }
            }
        }
        let mut l2_ok = false;
        if d.l2 {
            // Not a key this library writes: nothing of it can be in memcached.
            let Some(key) = &key else {
                return (l1_ok, true);
            };
            let (owners, mk) = self.l2_owners(key);
            l2_ok = true;
            for n in owners {
                let node = &self.l2.nodes[n];
                let repair = self
                    .strategy
                    .repair_l2(node, &mk, d.version, Self::secs(tomb_ms));
                let call = self.retry_l2(n, repair);
                let r = self.l2_node_invalidated(&d.key, n, v, call).await;
                // Any other failure fenced it already (`l2_failed`); a refusal is fenced here.
                if r.as_ref().is_err_and(TierError::changed_nothing) {
                    self.l2_owed(n);
                }
                l2_ok &= r.is_ok();
            }
        }
        (l1_ok, l2_ok)
    }

    /// A group's generation bump: the generation itself is written to the tiers it is due to
    /// (what the bump did, [`CacheAside::set_generation`]), not a tombstone that every reader of
    /// the group would then have to load past.
    async fn apply_generation(&self, gen_key: &Key, d: &Due) -> (bool, bool) {
        let row = Row {
            version: d.version,
            payload: Vec::new(),
        };
        let mut acked = (false, false);
        if d.l1 {
            match self.fill_l1_answer(gen_key, Some(&row)).await {
                Ok(_) => acked.0 = true,
                Err(_) => self.l1_owed(d.shard),
            }
        }
        if d.l2 {
            acked.1 = true;
            for (n, l2) in self.fill_l2_owners(gen_key, &row).await {
                if l2.is_err() {
                    acked.1 = false;
                    self.l2_owed(n);
                }
            }
        }
        acked
    }
}
