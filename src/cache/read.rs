//! The read path: L1, then L2, then the database (or a caller's loader), filling the tiers on the
//! way back, under single-flight, the distributed lease and stale-while-revalidate.

use super::*;
use crate::hot::Offer;
use crate::tier::{LeaseAsk, Leased, Seen};

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    pub(super) fn decode(&self, key: &Key, raw: &[u8], m: &TierMetrics) -> Result<Found, ()> {
        match envelope::decode(key.as_str(), raw) {
            Ok(Entry::Value {
                version,
                fresh_until_ms,
                payload,
            }) => {
                let row = Row { version, payload };
                if fresh_until_ms == 0 {
                    return Ok(Found::Fresh(row));
                }
                let now = self.wall.now_ms();
                Ok(if now > fresh_until_ms {
                    // Past its freshness: served stale within the window, else expired (memcached
                    // keeps an item up to a second past its TTL: it counts whole seconds).
                    if now - fresh_until_ms <= self.cfg.stale_while_revalidate_ms {
                        Found::Stale(row)
                    } else {
                        Found::Miss
                    }
                } else if self.refresh_early(fresh_until_ms - now) {
                    Found::Expiring(row)
                } else {
                    Found::Fresh(row)
                })
            }
            Ok(Entry::Tombstone { version, .. }) => Ok(Found::Tombstone(version)),
            Ok(Entry::Absent { .. }) => Ok(Found::Absent),
            Err(e) => {
                m.corrupt.fetch_add(1, Relaxed);
                warn!(key = %key, error = %e, "corrupt cache entry: deleting it and reading on");
                Err(())
            }
        }
    }

    pub(super) async fn read_l1(&self, key: &Key) -> Found {
        let stored = key.stored();
        let (shard, l1) = self.l1.of(&stored);
        if self.l1_fenced(shard) {
            self.metrics.l1.fenced.fetch_add(1, Relaxed);
            if self.l1_fenced_by_fault(shard) {
                self.reach(Goal::L1ReadFenced);
            }
            return Found::Miss;
        }
        let switches = l1.master_switches();
        let got = self.on_l1(shard, l1.get(&stored)).await;
        self.found_l1(key, (shard, l1), got, switches).await
    }

    /// [`CacheAside::read_l1`] and, when L1 holds nothing a reader can serve for `key` (nothing,
    /// a tombstone, a value past its stale window), the lease its load needs, in one round trip
    /// (script `get_or_lease`): a cold miss asks L1 once, and no other reader's fill and release
    /// can land between the look and the lease.
    pub(super) async fn read_l1_leasing(&self, key: &Key) -> (Found, Lease) {
        let stored = key.stored();
        let (shard, l1) = self.l1.of(&stored);
        if self.cfg.lease_ms == 0 || self.l1_fenced(shard) {
            return (self.read_l1(key).await, Lease::Unasked);
        }
        let token = self.lease_token();
        let switches = l1.master_switches();
        let started = self.clock();
        let lease_key = Self::lease_key(key);
        let ask = LeaseAsk {
            lease_key: &lease_key,
            token,
            lease_ms: self.cfg.lease_ms,
            now_ms: self.wall.now_ms(),
            stale_ms: self.cfg.stale_while_revalidate_ms,
        };
        let got = self.on_l1(shard, l1.get_or_lease(&stored, ask)).await;
        let (got, lease) = match got {
            Ok((v, Leased::Won)) => (Ok(v), Lease::Won(token.to_owned())),
            Ok((v, Leased::Ours)) => (Ok(v), Lease::Ours(token.to_owned())),
            Ok((v, Leased::Lost)) => (Ok(v), Lease::Lost),
            Ok((v, Leased::Unasked)) => (Ok(v), Lease::Unasked),
            Err(e) => (Err(e), Lease::Unasked),
        };
        match lease {
            Lease::Won(_) | Lease::Ours(_) => self.emit_lease(key, Action::LeaseWon, started),
            Lease::Lost => self.emit_lease(key, Action::LeaseLost, started),
            Lease::Unasked => {}
        }
        (self.found_l1(key, (shard, l1), got, switches).await, lease)
    }

    /// What L1's answer `got` for `key` comes to, `switches` the master switches seen before
    /// it was asked.
    async fn found_l1(
        &self,
        key: &Key,
        (shard, l1): (usize, &R),
        got: TierResult<Option<Vec<u8>>>,
        switches: u64,
    ) -> Found {
        // The client followed a failover during this very call: the answer came from a master
        // the invalidator has not replayed the outbox on yet.
        if self.repair.active()
            && l1.master_switches() != switches
            && !self.mutated(Mutant::NoSwitchCheck)
        {
            self.metrics.l1.fenced.fetch_add(1, Relaxed);
            self.reach(Goal::L1AnswerSwitched);
            return Found::Miss;
        }
        match got {
            Ok(Some(raw)) => match self.decode(key, &raw, &self.metrics.l1) {
                Ok(f) => f,
                Err(()) => {
                    let _ = self
                        .on_l1(shard, l1.del(&[key.stored().into_owned()]))
                        .await;
                    Found::Miss
                }
            },
            Ok(None) => Found::Miss,
            Err(e) => {
                debug!(key = %key, error = %e, "L1 read failed; reading on");
                Found::Miss
            }
        }
    }

    /// L2's answer for `key`, and what the node held, for a fill after the load to start from
    /// (under the ring's epoch, the third).
    pub(super) async fn read_l2(&self, key: &Key) -> (Found, Seen, u64) {
        let (n, mk, epoch) = self.l2_slot(key);
        let (found, seen) = self.read_l2_node(key, n, &mk).await;
        (found, seen, epoch)
    }

    async fn read_l2_node(&self, key: &Key, n: usize, mk: &str) -> (Found, Seen) {
        if self.l2_fenced(n) {
            self.metrics.l2.fenced.fetch_add(1, Relaxed);
            if self.l2_fenced_by_fault(n) {
                self.reach(Goal::L2ReadFenced);
            }
            return (Found::Miss, Seen::Unknown);
        }
        match self.on_l2(n, self.l2.nodes[n].gets(mk)).await {
            Ok(Some((raw, cas))) => match self.decode(key, &raw, &self.metrics.l2) {
                Ok(f) => (f, Seen::Entry { raw, cas }),
                Err(()) => {
                    let _ = self.on_l2(n, self.l2.nodes[n].delete(mk)).await;
                    (Found::Miss, Seen::Unknown)
                }
            },
            Ok(None) => (Found::Miss, Seen::Absent),
            Err(e) => {
                debug!(key = %key, error = %e, "L2 read failed; reading on");
                (Found::Miss, Seen::Unknown)
            }
        }
    }

    /// Reads `key` through the tiers: L1, then L2, then the database (filling both on the way
    /// back). `Ok(None)`: the database has no such row.
    pub async fn get(&self, key: &Key) -> Result<Option<Got>, Error> {
        // A grouped key is loaded from the primary: a new generation starts with no tombstones,
        // so nothing there would refuse an old version a lagging replica handed out.
        let from = if self.grouped(key.prefix()) {
            ReadFrom::Primary
        } else {
            self.cfg.read_from
        };
        // Boxed: a miss allocates once, and the read path's future stays small (two store reads
        // held inline made it overflow a test thread's stack in debug builds).
        self.get_with(key, || {
            Box::pin(async move {
                let row = self.store.read(key.as_str(), from).await?;
                // The replica guard (`durable`): a replica that has not replayed the version
                // the outbox named is not read from.
                if from == ReadFrom::Replica && self.replica_behind(key.as_str(), row.as_ref()) {
                    self.metrics.replica_guarded.fetch_add(1, Relaxed);
                    self.reach(Goal::ReplicaGuarded);
                    return self.store.read(key.as_str(), ReadFrom::Primary).await;
                }
                Ok(row)
            })
        })
        .await
    }

    /// As [`CacheAside::get`], with `loader` in place of the store's read on a miss: it returns
    /// the row and the version the database gave it. Everything else is the same: one load per
    /// key per process, the lease, the limit on database reads, the fills.
    pub async fn get_with<L, F>(&self, key: &Key, loader: L) -> Result<Option<Got>, Error>
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let span = tracing::info_span!("aside.get", key = %key, source = tracing::field::Empty);
        let began = Instant::now();
        async {
            // A hot key L0 holds is served from this process; another read of a hot key may
            // put what the tiers gave it into L0 (grouped keys never: a generation bump
            // invalidates them without naming them).
            let ticket = match &self.hot {
                Some(hot) if !self.grouped(key.prefix()) => {
                    match hot.read(key.as_str(), Instant::now()) {
                        Ok(row) => {
                            self.metrics.l0_hits.fetch_add(1, Relaxed);
                            self.reach(Goal::L0Served);
                            tracing::Span::current().record("source", Source::L0.as_str());
                            self.metrics.reads.record(began.elapsed());
                            return served(row, Source::L0);
                        }
                        Err(ticket) => Some((hot, ticket)),
                    }
                }
                _ => None,
            };
            // A key of a grouped namespace is read in its group's current generation: both
            // from L1 in one round trip when L1 holds the generation, else learned first.
            let got = match self.read_l1_grouped(key).await {
                Some((stored, l1)) => {
                    self.get_after_l1(&stored, l1, Lease::Unasked, &loader)
                        .await
                }
                None if self.grouped(key.prefix()) => self.get_grouped(key, &loader).await,
                None => self.get_inner(key, &loader).await,
            };
            if let Ok(Some(g)) = &got {
                tracing::Span::current().record("source", g.source.as_str());
                if let (Some((hot, ticket)), false) = (ticket, g.stale) {
                    if hot.offer(key.as_str(), &g.row, ticket, Instant::now()) == Offer::Written {
                        self.reach(Goal::L0OfferWritten);
                    }
                }
            }
            self.metrics.reads.record(began.elapsed());
            got
        }
        .instrument(span)
        .await
    }

    pub(super) async fn get_inner<L, F>(&self, key: &Key, loader: &L) -> Result<Option<Got>, Error>
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let (l1, lease) = self.read_l1_leasing(key).await;
        self.get_after_l1(key, l1, lease, loader).await
    }

    /// The read path once L1 has answered `l1` for `key` (and `lease`, what came of the lease
    /// asked for with it).
    async fn get_after_l1<L, F>(&self, key: &Key, l1: Found, lease: Lease, loader: &L) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        match l1 {
            Found::Fresh(row) => {
                self.metrics.l1.hits.fetch_add(1, Relaxed);
                return served(row, Source::L1);
            }
            Found::Stale(row) => {
                return self
                    .revalidate(key, row, Source::L1, Ahead::default(), loader)
                    .await
            }
            Found::Expiring(row) => {
                return self
                    .refresh(key, row, Source::L1, Ahead::default(), loader)
                    .await
            }
            Found::Absent => {
                self.metrics.l1.hits.fetch_add(1, Relaxed);
                self.reach(Goal::NegativeHit);
                return Ok(None);
            }
            Found::Miss | Found::Tombstone(_) => drop(self.metrics.l1.misses.fetch_add(1, Relaxed)),
        }
        let floor = l1.floor();
        let started = self.clock();
        let (l2, seen, epoch) = self.read_l2(key).await;
        let ahead = Ahead {
            lease,
            seen,
            epoch: Some(epoch),
            floor: floor.max(l2.floor()),
        };
        self.get_after_l2(key, l2, ahead, started, loader).await
    }

    /// The read path once L1 has missed and L2 has answered `l2` for `key` (a read of L2 that
    /// began at `started`; `ahead`, what the two reads learned for the load).
    pub(super) async fn get_after_l2<L, F>(
        &self,
        key: &Key,
        l2: Found,
        ahead: Ahead,
        started: Option<Instant>,
        loader: &L,
    ) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        // One backfill call for a value and for "absent" alike: each call site adds the fill's
        // future to this function's frame, and a debug build's read path is near a test
        // thread's stack as it is.
        let backfill = match l2 {
            Found::Fresh(row) => Some(Some(row)),
            Found::Absent => Some(None),
            Found::Stale(row) => return self.revalidate(key, row, Source::L2, ahead, loader).await,
            Found::Expiring(row) => return self.refresh(key, row, Source::L2, ahead, loader).await,
            Found::Miss | Found::Tombstone(_) => {
                self.metrics.l2.misses.fetch_add(1, Relaxed);
                None
            }
        };
        if let Some(row) = backfill {
            self.metrics.l2.hits.fetch_add(1, Relaxed);
            // What the backfill below puts into L1 was loaded from L2.
            let v = row.as_ref().map(|r| r.version);
            self.emit(
                key.as_str(),
                Action::Load,
                Tier::L2,
                v,
                ActionOutcome::Ok,
                started,
            );
            // Boxed, as the load's fills are: the releasing fill's future is large.
            Box::pin(self.fill_l1(key, row.as_ref(), ahead.lease.won())).await;
            return match row {
                Some(row) => served(row, Source::L2),
                None => {
                    self.reach(Goal::NegativeHit);
                    Ok(None)
                }
            };
        }
        if self.outbox_behind() && !self.mutated(Mutant::NoFlightClose) {
            self.flights.close(&key.stored());
        }
        let unused = match &ahead.lease {
            Lease::Won(token) => Lease::Won(token.clone()),
            _ => Lease::Unasked,
        };
        let floor = ahead.floor;
        // Boxed: a miss allocates once, and a hit's future does not carry the load's.
        let (got, role) = self
            .flights
            .run(&key.stored(), || Box::pin(self.load(key, loader, ahead)))
            .await;
        if role == Role::Follower {
            self.reach(Goal::SingleFlightJoined);
            // A lease this reader took while another reader here led the load: the leader finds
            // it theirs at its next poll and releases it with its fill; released here too, for
            // a leader that gave up waiting first.
            self.release_unused(key, &unused).await;
            if matches!(&got, Ok(Some(g)) if g.row.version < floor)
                && !self.mutated(Mutant::NoFloorCheck)
            {
                // The load this read joined began before a write whose tombstone the read
                // saw (another instance's: this one's own writes close the flight): its row
                // is older than that write. Load afresh, as a new flight. Boxed: rare.
                self.reach(Goal::JoinedLoadReloaded);
                self.flights.close(&key.stored());
                let again = Ahead {
                    floor,
                    ..Ahead::default()
                };
                let fresh = || Box::pin(self.load(key, loader, again));
                return Box::pin(self.flights.run(&key.stored(), fresh)).await.0;
            }
            self.metrics.coalesced.fetch_add(1, Relaxed);
            return got.map(|g| g.map(|g| Got { waited: true, ..g }));
        }
        got
    }
}

/// A read served fresh from a tier by its own look.
pub(super) fn served(row: Row, source: Source) -> Load {
    Ok(Some(Got {
        row,
        source,
        stale: false,
        waited: false,
    }))
}
