//! The write path: the database first, then invalidation of both tiers through the strategy
//! (one key, or every key under a prefix).

use super::*;

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
                Err(e @ TierError::Timeout { .. }) => {
                    // The commit may have happened: invalidate at whatever version the primary
                    // holds now, so a write we cannot confirm does not leave the old value
                    // cached for a TTL.
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
                Err(e) => return Err(Error::Db(e)),
            };
            let version = committed.version;
            tracing::Span::current().record("version", version);
            self.wrote(key.as_str(), version);
            let invalidated = self.invalidate_version(key, Some(version)).await;
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
    /// (the outbox invalidator of `durable` covers only writes made through
    /// [`CacheAside::write`]).
    pub async fn invalidate_version(&self, key: &Key, version: Option<u64>) -> bool {
        let span = tracing::info_span!("aside.invalidate", key = %key, version = ?version);
        self.invalidate_tiers(key, version).instrument(span).await
    }

    async fn invalidate_tiers(&self, key: &Key, version: Option<u64>) -> bool {
        // Reads from now on load afresh rather than join a load begun before this write.
        self.flights.close(key.as_str());
        let tomb_ms = self.cfg.tombstone_ttl_ms;
        let started = self.clock();
        let l1 = self
            .on_l1(
                self.strategy
                    .invalidate_l1(&self.l1, key.as_str(), version, tomb_ms),
            )
            .await;
        self.emit_invalidation(key.as_str(), Tier::L1, version, &l1, started);
        let mk = key.memcached();
        let n = self.l2.ring.node_index(mk.as_bytes());
        let started = self.clock();
        let l2 = self
            .on_l2(
                n,
                self.strategy
                    .invalidate_l2(&self.l2.nodes[n], &mk, version, Self::secs(tomb_ms)),
            )
            .await;
        self.emit_invalidation(key.as_str(), Tier::L2, version, &l2, started);
        if let Err(e) = &l1 {
            self.tier_failed(None, e);
        }
        if let Err(e) = &l2 {
            self.tier_failed(Some(n), e);
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

    pub(super) fn emit_invalidation(
        &self,
        key: &str,
        tier: Tier,
        version: Option<u64>,
        r: &TierResult<()>,
        started: Option<Instant>,
    ) {
        // A server's deliberate no (`NOREPLICAS` from a master cut off from its replicas) is
        // told apart from a timeout or a lost connection, which may have taken effect.
        let outcome = match r {
            Ok(()) => ActionOutcome::Ok,
            Err(TierError::Refused { .. }) => ActionOutcome::Refused,
            Err(_) => ActionOutcome::Failed,
        };
        self.emit(key, Action::Invalidate, tier, version, outcome, started);
    }

    /// Invalidates one key that a SCAN found, through the strategy, at the version it holds: a
    /// plain DEL would also delete a tombstone, and with it the protection against an older
    /// fill still in flight (the simulator found exactly that). Tombstones are left alone.
    /// True when a value was invalidated.
    pub(super) async fn invalidate_found(&self, k: &str) -> Result<bool, TierError> {
        let Ok(key) = Key::parse(k) else {
            return Ok(self.on_l1(self.l1.del(&[k.to_string()])).await? > 0);
        };
        let version = match self.on_l1(self.l1.get(k)).await? {
            None => return Ok(false),
            Some(raw) => match envelope::decode(k, &raw) {
                Ok(Entry::Tombstone { .. } | Entry::Absent { .. }) => return Ok(false),
                Ok(Entry::Value { version, .. }) => Some(version),
                Err(_) => None,
            },
        };
        // As for a write's own key: later reads load afresh.
        self.flights.close(k);
        let tomb_ms = self.cfg.tombstone_ttl_ms;
        let started = self.clock();
        let l1 = self
            .on_l1(self.strategy.invalidate_l1(&self.l1, k, version, tomb_ms))
            .await;
        self.emit_invalidation(k, Tier::L1, version, &l1, started);
        l1?;
        let mk = key.memcached();
        let n = self.l2.ring.node_index(mk.as_bytes());
        let started = self.clock();
        let l2 = self
            .strategy
            .invalidate_l2(&self.l2.nodes[n], &mk, version, Self::secs(tomb_ms));
        let l2 = self.on_l2(n, l2).await;
        self.emit_invalidation(k, Tier::L2, version, &l2, started);
        Ok(true)
    }

    /// Invalidates every key of `namespace:vN:` whose id starts with `id_prefix` (user input:
    /// glob characters in it are escaped). SCAN returns every key that exists for the whole scan
    /// but may miss keys created during it, so a second full pass follows the first; values found
    /// are invalidated in both tiers through the strategy (versioned: a tombstone at the version
    /// found). Returns how many values were invalidated.
    pub async fn invalidate_prefix(
        &self,
        namespace: &str,
        schema_version: u32,
        id_prefix: &str,
    ) -> Result<u64, TierError> {
        let probe =
            Key::new(namespace, schema_version, id_prefix).map_err(|e| TierError::Refused {
                tier: "redis",
                detail: e.to_string(),
            })?;
        let pattern = format!("{}*", escape_glob(probe.as_str()));
        let span = tracing::info_span!("aside.invalidate_prefix", pattern = %pattern);
        async {
            let mut deleted = 0;
            for _pass in 0..2 {
                let mut cursor = 0;
                loop {
                    let (next, keys) = self
                        .on_l1(self.l1.scan(cursor, &pattern, self.cfg.scan_count))
                        .await?;
                    let keys: Vec<String> = keys
                        .into_iter()
                        .filter(|k| !k.starts_with("aside:lease:"))
                        .collect();
                    for k in &keys {
                        deleted += u64::from(self.invalidate_found(k).await?);
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            self.metrics.l1.invalidations.fetch_add(deleted, Relaxed);
            Ok(deleted)
        }
        .instrument(span)
        .await
    }
}
