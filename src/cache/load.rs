//! A miss: the distributed lease (taken with the L1 read when it can be), the wait for another
//! holder's fill, the database read under the concurrency limit, and the fills that release the
//! lease, both tiers at once.

use super::*;
use crate::rate::Admit;
use crate::tier::Seen;

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// A value past its freshness: one reader (the lease winner) refreshes it from the database,
    /// everyone else is served the stale value meanwhile.
    pub(super) async fn revalidate<L, F>(
        &self,
        key: &Key,
        row: Row,
        source: Source,
        ahead: Ahead,
        loader: &L,
    ) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        self.reload_or_serve(key, row, source, true, ahead, loader)
            .await
    }

    /// Counts a read served by the tier it was found in.
    pub(super) fn count_hit(&self, source: Source) {
        match source {
            Source::L1 => self.metrics.l1.hits.fetch_add(1, Relaxed),
            _ => self.metrics.l2.hits.fetch_add(1, Relaxed),
        };
    }

    /// One reader (the lease winner) reloads `key` from the database; the others are served
    /// `row` from `source`, marked `stale` or not. `ahead`: a lease already asked for. A reload
    /// that fails (shed under the database limits, the database down) serves `row` too: it is
    /// what every other reader of the key is served meanwhile (stale-if-error).
    pub(super) async fn reload_or_serve<L, F>(
        &self,
        key: &Key,
        row: Row,
        source: Source,
        stale: bool,
        ahead: Ahead,
        loader: &L,
    ) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let token = match ahead.lease {
            Lease::Won(token) => Some(token),
            // Another reader here holds it: it reloads, this one serves.
            Lease::Ours(_) | Lease::Lost => None,
            Lease::Unasked => self.lease(key).await,
        };
        if let Some(token) = token {
            if !stale {
                self.metrics.early_refreshes.fetch_add(1, Relaxed);
            }
            match self
                .load_locked(key, loader, (ahead.seen, ahead.epoch), &token)
                .await
            {
                Err(e) => {
                    self.reach(Goal::StaleIfError);
                    debug!(key = %key, error = %e, "reload failed: serving what the tier holds")
                }
                loaded => {
                    if !stale {
                        self.reach(Goal::EarlyRefresh);
                    }
                    return loaded;
                }
            }
        }
        if stale {
            self.metrics.stale_served.fetch_add(1, Relaxed);
            self.reach(Goal::ServedStale);
        }
        self.count_hit(source);
        Ok(Some(Got {
            row,
            source,
            stale,
            waited: false,
        }))
    }

    pub(super) fn lease_key(key: &Key) -> String {
        format!("aside:lease:{}", key.stored())
    }

    /// Releases a lease this reader took ([`Lease::Won`]) and will not load under: left, it
    /// would keep every other instance's readers waiting until it runs out. A lease it found
    /// its instance holding ([`Lease::Ours`]) is left to the reader that took it.
    pub(super) async fn release_unused(&self, key: &Key, lease: &Lease) {
        if let Some(token) = lease.won() {
            self.release(key, token).await;
        }
    }

    /// This instance's lease token, which no other holder has: its name and its holder id. One
    /// token for all its readers: a lease this instance holds is its readers' to load under
    /// (`get_or_lease` answers "won" to the token that holds it), so whichever of them leads
    /// the key's single flight loads, even when another of them took the lease.
    pub(super) fn lease_token(&self) -> &str {
        &self.lease_token
    }

    pub(super) fn emit_lease(&self, key: &Key, action: Action, started: Option<Instant>) {
        self.emit(
            key.as_str(),
            action,
            Tier::L1,
            None,
            ActionOutcome::Ok,
            started,
        );
    }

    /// Takes the distributed lease for loading `key`: Some(token) when won. When L1 cannot be
    /// asked (down, circuit open), the lease is taken as won: availability over stampede safety.
    pub(super) async fn lease(&self, key: &Key) -> Option<String> {
        if self.cfg.lease_ms == 0 {
            return Some(String::new());
        }
        let token = self.lease_token();
        let started = self.clock();
        let lease_key = Self::lease_key(key);
        let (shard, l1) = self.l1.of(&lease_key);
        let r = self
            .on_l1(
                shard,
                l1.set(&lease_key, token.as_bytes(), self.cfg.lease_ms, SetCond::Nx),
            )
            .await;
        let (action, outcome) = match r {
            Ok(true) => (Action::LeaseWon, ActionOutcome::Ok),
            Err(_) => (Action::LeaseWon, ActionOutcome::Failed),
            Ok(false) => (Action::LeaseLost, ActionOutcome::Ok),
        };
        self.emit(key.as_str(), action, Tier::L1, None, outcome, started);
        (action == Action::LeaseWon).then(|| token.to_owned())
    }

    pub(super) async fn release(&self, key: &Key, token: &str) {
        if !token.is_empty() {
            let lease_key = Self::lease_key(key);
            let (shard, l1) = self.l1.of(&lease_key);
            let _ = self.on_l1(shard, l1.release(&lease_key, token)).await;
        }
    }

    /// A miss, once per process: take the lease (unless the L1 read asked for it already, as
    /// `ahead` says) or wait for its holder's fill, then load.
    pub(super) async fn load<L, F>(&self, key: &Key, loader: &L, ahead: Ahead) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let span = tracing::debug_span!("aside.load", key = %key);
        async {
            // A fenced L1 cannot show this instance the winner's fill: load as if the lease
            // were won (single-flight still coalesces this process's readers).
            let token = match ahead.lease {
                Lease::Won(token) | Lease::Ours(token) => Some(token),
                _ if self.l1_fenced(self.l1.of(&key.stored()).0) => Some(String::new()),
                Lease::Lost => None,
                Lease::Unasked => self.lease(key).await,
            };
            if let Some(token) = token {
                return self
                    .load_locked(key, loader, (ahead.seen, ahead.epoch), &token)
                    .await;
            }
            // Someone else is loading: poll L1 for their fill, then load ourselves (without
            // filling: our read may be older than theirs). A poll asks for the lease too: it is
            // ours when its holder let it go without a fill L1 keeps (a fill refused by a newer
            // tombstone, a load that failed), or when another reader of this instance took it.
            self.metrics.lease_waits.fetch_add(1, Relaxed);
            self.reach(Goal::LeaseWaited);
            let deadline = Instant::now() + Duration::from_millis(self.cfg.lease_wait_ms);
            let mut pause = Duration::from_millis(2);
            while Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                let (found, lease) = self.read_l1_leasing(key).await;
                // Won: its holder let it go (Ours: another reader here holds it).
                let taken_over = matches!(lease, Lease::Won(_));
                if let Lease::Won(token) | Lease::Ours(token) = lease {
                    if taken_over {
                        self.reach(Goal::LeaseTakenOver);
                    }
                    return self
                        .load_locked(key, loader, (Seen::Unknown, None), &token)
                        .await;
                }
                match found {
                    Found::Fresh(row) | Found::Expiring(row) => {
                        self.metrics.l1.hits.fetch_add(1, Relaxed);
                        self.reach(Goal::LeaseWaitServedFill);
                        return Ok(Some(Got {
                            row,
                            source: Source::L1,
                            stale: false,
                            waited: true,
                        }));
                    }
                    Found::Absent => {
                        self.metrics.l1.hits.fetch_add(1, Relaxed);
                        return Ok(None);
                    }
                    Found::Stale(_) | Found::Miss | Found::Tombstone(_) => {}
                }
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            self.reach(Goal::LeaseWaitTimedOut);
            self.load_db(key, loader).await
        }
        .instrument(span)
        .await
    }

    /// Loads `key` under the lease `token` ("" for none) and fills both tiers at once, the L1
    /// fill releasing the lease in the same round trip; the L2 fill starts from `seen`, what the
    /// read saw in L2 under the ring's epoch `epoch` (`None`: L2 not read). The L2 fill is
    /// skipped if the ring has moved since ([`crate::Membership`]).
    pub(super) async fn load_locked<L, F>(
        &self,
        key: &Key,
        loader: &L,
        (seen, epoch): (Seen, Option<u64>),
        token: &str,
    ) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        // The epoch the database read began in: a fill under another is skipped.
        let (seen, epoch) = match epoch {
            Some(e) => (seen, e),
            None => (Seen::Unknown, self.l2.members.epoch()),
        };
        let got = self.load_db(key, loader).await;
        let row = match &got {
            Ok(got) => got.as_ref().map(|g| &g.row),
            Err(_) => None,
        };
        if got.is_ok() && (row.is_some() || self.cfg.negative_ttl_ms > 0) {
            // Boxed: the two fills held at once would double this frame in every read path
            // that can load (a debug build's read path is near a test thread's stack).
            Box::pin(futures_util::future::join(
                self.fill_l1(key, row, Some(token)),
                self.fill_l2(key, row, seen, epoch),
            ))
            .await;
        } else {
            self.release(key, token).await;
        }
        got
    }

    /// One database read under the concurrency limit.
    pub(super) async fn load_db<L, F>(&self, key: &Key, loader: &L) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let mut wait = Duration::from_millis(self.cfg.db_wait_ms_max);
        if let Some(rate) = &self.db_rate {
            match rate.admit(Instant::now(), wait) {
                Admit::Now => {}
                Admit::After(turn) => {
                    tokio::time::sleep(turn).await;
                    wait -= turn;
                }
                Admit::Refused => {
                    self.metrics.shed.fetch_add(1, Relaxed);
                    self.reach(Goal::DbShed);
                    return Err(Error::RateLimited {
                        wait_ms_max: self.cfg.db_wait_ms_max,
                        per_sec: rate.per_sec(),
                    });
                }
            }
        }
        let _slot = match tokio::time::timeout(wait, self.db_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                self.metrics.shed.fetch_add(1, Relaxed);
                self.reach(Goal::DbShed);
                return Err(Error::Shed {
                    waited_ms: self.cfg.db_wait_ms_max,
                    limit: self.cfg.db_concurrency_max,
                });
            }
        };
        let from = self.cfg.read_from;
        let start = Instant::now();
        let r = timed("postgres", self.cfg.db_timeout(), loader()).await;
        let took = start.elapsed();
        self.metrics.db.latency.record(took);
        if r.is_ok() {
            self.note_db_read(took);
        }
        let (tier, version, outcome) = match &r {
            Ok(row) => (
                if from == ReadFrom::Replica {
                    Tier::Replica
                } else {
                    Tier::Db
                },
                row.as_ref().map(|r| r.version),
                ActionOutcome::Ok,
            ),
            Err(_) => (Tier::Db, None, ActionOutcome::Failed),
        };
        self.emit(
            key.as_str(),
            Action::Load,
            tier,
            version,
            outcome,
            Some(start),
        );
        match r {
            Ok(row) => {
                self.metrics.db.hits.fetch_add(1, Relaxed);
                if row.is_none() {
                    self.metrics.db.misses.fetch_add(1, Relaxed);
                }
                let source = if from == ReadFrom::Replica {
                    Source::Replica
                } else {
                    Source::Db
                };
                Ok(row.map(|row| Got {
                    row,
                    source,
                    stale: false,
                    waited: false,
                }))
            }
            Err(e) => {
                self.metrics.db.errors.fetch_add(1, Relaxed);
                Err(Error::Db(e))
            }
        }
    }
}

/// What became of the lease a read asked for on its way down.
#[derive(Debug, Default)]
pub(super) enum Lease {
    /// Won: this token holds it, and the load's L1 fill releases it.
    Won(String),
    /// This instance held it already (another of its readers took it): this reader may load
    /// under it if it leads the load, and leaves it alone otherwise.
    Ours(String),
    /// Another reader holds it.
    Lost,
    /// Not asked for (the read took no lease on its way).
    #[default]
    Unasked,
}

impl Lease {
    /// The token of a lease this reader took, which its fill is to release.
    pub(super) fn won(&self) -> Option<&str> {
        match self {
            Lease::Won(token) => Some(token),
            _ => None,
        }
    }
}

/// What a read learned on its way down that its load uses: the lease its L1 read asked for,
/// what its L2 read saw on the key's node (a fill then skips a `gets`), and the newest
/// tombstone either tier held (0: none).
#[derive(Debug, Default)]
pub(super) struct Ahead {
    pub lease: Lease,
    pub seen: Seen,
    /// The ring's epoch when L2 was read (`None`: not read), which `seen` belongs to.
    pub epoch: Option<u64>,
    pub floor: u64,
}

#[cfg(test)]
mod tests;
