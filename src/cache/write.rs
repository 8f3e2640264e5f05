//! The write path: the database first, then invalidation of both tiers through the strategy
//! (pattern invalidation is `pattern.rs`).

use super::*;

/// How many times a grouped key's invalidation follows its group's generation moving on.
const GENERATION_RECHECKS_MAX: usize = 3;

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// Writes to the database, then invalidates both tiers through the strategy.
    pub async fn write(&self, key: &Key, payload: &[u8]) -> Result<Written, Error> {
        let span = tracing::info_span!("aside.write", key = %key, version = tracing::field::Empty);
        async {
            let written = timed(
                "postgres",
                self.cfg.db_timeout(),
                self.store.write(key.as_str(), payload),
            )
            .await;
            let committed = match written {
                Ok(c) => c,
                // The server said no (a constraint, a missing schema), or the write never left
                // an exhausted pool: nothing committed.
                Err(e) if e.changed_nothing() => return Err(Error::Db(e)),
                Err(e) => {
                    // No answer in time, or the connection died under the request (a server
                    // that restarted after it committed and before its reply went out): the
                    // commit may have happened. Invalidate at whatever version the primary
                    // holds now, so a write we cannot confirm does not leave the old value
                    // cached for a TTL (`pg-restart` found one that did).
                    let now = timed(
                        "postgres",
                        self.cfg.db_timeout(),
                        self.store.read(key.as_str(), ReadFrom::Primary),
                    )
                    .await;
                    self.invalidate_version(key, now.ok().flatten().map(|r| r.version))
                        .await;
                    return Err(Error::Db(e));
                }
            };
            let version = committed.version;
            tracing::Span::current().record("version", version);
            self.wrote(key.as_str(), version);
            // The transaction's other keys too: the replica guard must not serve this instance
            // an older version of a sibling it has just written.
            for (k, v) in &committed.siblings {
                self.wrote(k, *v);
            }
            let mut invalidated = self.invalidate_version(key, Some(version)).await;
            // And each of them at the version the transaction gave it: the writer reads its own
            // write of every key the transaction changed, not only of the one it named (a
            // listing transaction's siblings held by memcached, which no SCAN reaches, stayed
            // old until durable's invalidator came: swarm seed 4).
            let siblings = if self.mutated(Mutant::NoSiblingInvalidation) {
                &[][..]
            } else {
                &committed.siblings[..]
            };
            for (k, v) in siblings {
                match Key::parse(k) {
                    Ok(sibling) => {
                        invalidated &= self.invalidate_version(&sibling, Some(*v)).await;
                    }
                    Err(e) => {
                        warn!(key = %k, error = %e, "a sibling the transaction changed is no key: not invalidated");
                        invalidated = false;
                    }
                }
            }
            Ok(Written {
                version,
                invalidated,
                siblings: committed.siblings,
            })
        }
        .instrument(span)
        .await
    }

    /// Drops `key` from both tiers (no version known). True when both tiers confirmed.
    pub async fn invalidate(&self, key: &Key) -> bool {
        self.invalidate_version(key, None).await
    }

    /// Invalidates `key` after you wrote `version` of it yourself (your own table, read through
    /// [`CacheAside::get_with`]): with a versioned strategy both tiers get a tombstone that
    /// refuses fills older than `version`, so a load begun before your write cannot put the old
    /// row back. `None` deletes, as [`CacheAside::invalidate`]. True when both tiers confirmed;
    /// false leaves the old value until its TTL, or until your next write's invalidation lands
    /// (the outbox invalidator of `durable` covers [`CacheAside::write`], every change to
    /// `aside_rows` and every change to a table you capture: `crate::backend::capture`).
    ///
    /// A key of a grouped namespace is invalidated in its group's current generation; when that
    /// generation cannot be read (L1, L2 and the database all failing), nothing is invalidated
    /// and the result is false.
    pub async fn invalidate_version(&self, key: &Key, version: Option<u64>) -> bool {
        let span = tracing::info_span!("aside.invalidate", key = %key, version = ?version);
        let done = async {
            match self.resolve(key).await {
                Ok(stored) if stored == *key => self.invalidate_tiers(&stored, version).await,
                // A grouped key: invalidated in its group's generation, and again in the next
                // one should the generation move meanwhile (a reader who learned the new one may
                // have begun its load before this write committed).
                Ok(mut stored) => {
                    let mut done = self.invalidate_tiers(&stored, version).await;
                    for _ in 0..GENERATION_RECHECKS_MAX {
                        match self.resolve(key).await {
                            Ok(now) if now != stored => stored = now,
                            _ => break,
                        }
                        done &= self.invalidate_tiers(&stored, version).await;
                    }
                    done
                }
                Err(e) => {
                    warn!(key = %key, error = %e, "invalidation skipped: the group's generation cannot be read");
                    // Neither tier was invalidated: fence both (`durable`) until the
                    // invalidator has applied the write.
                    let cause = TierError::Unavailable {
                        tier: "redis",
                        detail: e.to_string(),
                    };
                    self.l1_failed(self.l1.of(key.as_str()).0, &cause);
                    for n in self.l2_owners(key).0 {
                        self.l2_failed(n, &cause);
                    }
                    false
                }
            }
        }
        .instrument(span)
        .await;
        // L0 last: a read that began during the invalidation may have read the old value from
        // a tier not yet invalidated; it may not put it into L0 now, nor keep it there.
        if let Some(hot) = &self.hot {
            hot.forget(key.as_str());
        }
        done
    }

    async fn invalidate_tiers(&self, key: &Key, version: Option<u64>) -> bool {
        // Reads from now on load afresh rather than join a load begun before this write.
        if !self.mutated(Mutant::NoFlightClose) {
            self.flights.close(&key.stored());
        }
        let version = version.filter(|_| !self.mutated(Mutant::NoTombstone));
        let tomb_ms = self.cfg.tombstone_ttl_ms;
        let started = self.clock();
        let stored = key.stored();
        let (shard, l1) = self.l1.of(&stored);
        let l1 = self
            .on_l1(
                shard,
                self.strategy.invalidate_l1(l1, &stored, version, tomb_ms),
            )
            .await;
        self.emit_invalidation(key.as_str(), Tier::L1, version, &l1, started, None);
        let l2 = self.invalidate_l2(key, version).await;
        if let Err(e) = &l1 {
            self.reach(Goal::InvalidationFailed);
            self.l1_failed(shard, e);
        }
        for (r, m) in [(&l1, &self.metrics.l1), (&l2, &self.metrics.l2)] {
            if r.is_ok() {
                m.invalidations.fetch_add(1, Relaxed);
            }
        }
        if let Err(e) = l1.as_ref().and(l2.as_ref()) {
            warn!(key = %key, error = %e, "invalidation incomplete: the cache may serve the old version until its TTL");
        }
        l1.is_ok() && l2.is_ok()
    }

    /// Invalidates `key` on every node that owns it (one, unless the ring is changing), each
    /// failure fencing its node; the first failure is the answer.
    pub(super) async fn invalidate_l2(&self, key: &Key, version: Option<u64>) -> TierResult<()> {
        let (owners, mk) = self.l2_owners(key);
        let tomb_s = Self::secs(self.cfg.tombstone_ttl_ms);
        let mut answer = Ok(());
        if owners.len() > 1 {
            self.reach(Goal::InvalidatedOldOwner);
        }
        for n in owners {
            let node = &self.l2.nodes[n];
            let call = self.on_l2(n, self.strategy.invalidate_l2(node, &mk, version, tomb_s));
            answer = answer.and(
                self.l2_node_invalidated(key.as_str(), n, version, call)
                    .await,
            );
        }
        answer
    }

    /// One memcached node's part of an invalidation of `key` (`call`: the strategy's
    /// invalidation or repair on node `n`), told in the history; a failure is the node's.
    pub(super) async fn l2_node_invalidated(
        &self,
        key: &str,
        n: usize,
        version: Option<u64>,
        call: impl Future<Output = TierResult<()>>,
    ) -> TierResult<()> {
        let started = self.clock();
        let r = call.await;
        self.emit_invalidation(key, Tier::L2, version, &r, started, Some(n));
        if let Err(e) = &r {
            self.reach(Goal::InvalidationFailed);
            self.l2_failed(n, e);
        }
        r
    }

    /// An invalidation of `tier` answered `r`; `l2_node`: the memcached node it went to.
    pub(super) fn emit_invalidation(
        &self,
        key: &str,
        tier: Tier,
        version: Option<u64>,
        r: &TierResult<()>,
        started: Option<Instant>,
        l2_node: Option<usize>,
    ) {
        // A server's deliberate no (`NOREPLICAS` from a master cut off from its replicas) is
        // told apart from a timeout or a lost connection, which may have taken effect.
        let outcome = match r {
            Ok(()) => ActionOutcome::Ok,
            Err(TierError::Refused { .. }) => ActionOutcome::Refused,
            Err(_) => ActionOutcome::Failed,
        };
        self.emit_on(
            key,
            Action::Invalidate,
            tier,
            version,
            outcome,
            started,
            l2_node,
        );
    }
}
