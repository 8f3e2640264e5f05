//! Fills: what a read puts into L1 and L2 on its way back (the envelope with its version and
//! TTL), through the strategy's versioned script or `add`/`cas`, and what each tier answered.

use super::*;
use crate::tier::{Release, Seen};

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// What a fill stores, its version and its TTL in the tier (`ttl_ms`: the tier's TTL for a
    /// row): the row, or (None) that the database has none, for `negative_ttl_ms`.
    pub(super) fn entry(&self, key: &Key, row: Option<&Row>, ttl_ms: u64) -> (Vec<u8>, u64, u64) {
        let Some(row) = row else {
            let absent = Entry::Absent { version: 0 };
            return (
                envelope::encode(key.as_str(), &absent),
                0,
                self.cfg.negative_ttl_ms,
            );
        };
        let swr = self.cfg.stale_while_revalidate_ms;
        let fresh_until_ms = if swr > 0 || self.cfg.early_refresh_beta > 0.0 {
            self.wall.now_ms() + ttl_ms
        } else {
            0
        };
        let value = Entry::Value {
            version: row.version,
            fresh_until_ms,
            payload: row.payload.clone(),
        };
        (
            envelope::encode(key.as_str(), &value),
            row.version,
            ttl_ms + swr,
        )
    }

    /// A fill of `tier` answered `r`; `l2_node`: the memcached node it went to.
    pub(super) fn emit_fill(
        &self,
        key: &str,
        tier: Tier,
        version: u64,
        r: &TierResult<bool>,
        started: Option<Instant>,
        l2_node: Option<usize>,
    ) {
        let outcome = match r {
            Ok(true) => ActionOutcome::Ok,
            Ok(false) => ActionOutcome::Refused,
            Err(_) => ActionOutcome::Failed,
        };
        self.emit_on(
            key,
            Action::Fill,
            tier,
            Some(version),
            outcome,
            started,
            l2_node,
        );
    }

    /// A fill of `tier` (L1 or L2, on memcached node `l2_node`) answered `r`: told to the
    /// events sink and counted; a refusal (the tier holds a newer version) is a coverage goal.
    fn fill_answered(
        &self,
        key: &Key,
        tier: Tier,
        version: u64,
        r: &TierResult<bool>,
        started: Option<Instant>,
        l2_node: Option<usize>,
    ) {
        self.emit_fill(key.as_str(), tier, version, r, started, l2_node);
        let (m, refused) = match tier {
            Tier::L1 => (&self.metrics.l1, Goal::L1FillRefused),
            _ => (&self.metrics.l2, Goal::L2FillRefused),
        };
        match r {
            Ok(true) => drop(m.fills.fetch_add(1, Relaxed)),
            Ok(false) => {
                m.fill_rejections.fetch_add(1, Relaxed);
                self.reach(refused);
            }
            Err(e) => debug!(key = %key, tier = tier.as_str(), error = %e, "fill failed"),
        }
    }

    /// Fills L1 with `row`, or (None) with the database's "no such row"; with `token`, releases
    /// the lease this reader holds in the same round trip.
    pub(super) async fn fill_l1(&self, key: &Key, row: Option<&Row>, token: Option<&str>) {
        let _ = self.fill_l1_answer_releasing(key, row, token).await;
    }

    /// [`CacheAside::fill_l1`], with L1's answer: stored, refused (it holds a newer version),
    /// or the error. An entry over the item limit is not sent (`Ok(false)`).
    pub(super) async fn fill_l1_answer(&self, key: &Key, row: Option<&Row>) -> TierResult<bool> {
        self.fill_l1_answer_releasing(key, row, None).await
    }

    async fn fill_l1_answer_releasing(
        &self,
        key: &Key,
        row: Option<&Row>,
        token: Option<&str>,
    ) -> TierResult<bool> {
        let token = token.filter(|t| !t.is_empty());
        let (e, version, hard_ttl) = self.entry(key, row, self.l1_ttl_ms(key));
        if e.len() > self.cfg.l1_item_bytes_max {
            self.metrics.l1.oversized.fetch_add(1, Relaxed);
            if let Some(token) = token {
                self.release(key, token).await;
            }
            return Ok(false);
        }
        let started = self.clock();
        let stored = key.stored();
        let (shard, l1) = self.l1.of(&stored);
        let fill = async {
            if self.mutated(Mutant::NoL1VersionCheck) {
                // Boxed: test machinery adds nothing to the read path's frame.
                return Box::pin(async {
                    let r = l1.set(&stored, &e, hard_ttl, SetCond::Always).await;
                    if let Some(token) = token {
                        self.release(key, token).await;
                    }
                    r
                })
                .await;
            }
            match token {
                Some(token) => {
                    let lease_key = Self::lease_key(key);
                    let lease = Release {
                        lease_key: &lease_key,
                        token,
                        linger_ms: self.cfg.lease_linger_ms,
                    };
                    self.strategy
                        .fill_l1_releasing(l1, &stored, &e, version, hard_ttl, lease)
                        .await
                }
                None => {
                    self.strategy
                        .fill_l1(l1, &stored, &e, version, hard_ttl)
                        .await
                }
            }
        };
        let r = self.on_l1(shard, fill).await;
        self.fill_answered(key, Tier::L1, version, &r, started, None);
        r
    }

    /// Fills the owning memcached node with `row`, or (None) with "no such row", starting from
    /// what the read saw there (`seen`); not at all if the ring has moved on from `epoch`, the
    /// one the read began in.
    pub(super) async fn fill_l2(&self, key: &Key, row: Option<&Row>, seen: Seen, epoch: u64) {
        let (n, mk, now) = self.l2_slot(key);
        if epoch != now {
            // The ring moved while the row was read: the node it would go to may be one that
            // a write the read raced did not invalidate.
            let version = row.map_or(0, |r| r.version);
            self.emit_fill(
                key.as_str(),
                Tier::L2,
                version,
                &Ok(false),
                self.clock(),
                Some(n),
            );
            self.metrics.l2.fill_rejections.fetch_add(1, Relaxed);
            self.reach(Goal::L2FillRingMoved);
            return;
        }
        let _ = self.fill_l2_node(key, n, &mk, row, seen).await;
    }

    /// Fills `row` into the node that owns `key` and tombstones it, at `row`'s version, on the
    /// nodes of a ring being changed to or left ([`CacheAside::l2_owners`]), with each node's
    /// answer. For a group's generation, by which the group's entries on its node are read: a
    /// node a change left must not hand back an older generation if the ring moves back, and a
    /// tombstone, unlike a value, lives no longer than the ring it was sent under is
    /// invalidated.
    pub(super) async fn fill_l2_owners(
        &self,
        key: &Key,
        row: &Row,
    ) -> Vec<(usize, TierResult<bool>)> {
        let (owners, mk) = self.l2_owners(key);
        let tomb_s = Self::secs(self.cfg.tombstone_ttl_ms);
        let mut out = Vec::with_capacity(owners.len());
        for (i, n) in owners.into_iter().enumerate() {
            let r = if i == 0 {
                self.fill_l2_node(key, n, &mk, Some(row), Seen::Unknown)
                    .await
            } else {
                let node = &self.l2.nodes[n];
                let v = Some(row.version);
                let r = self
                    .on_l2(n, self.strategy.invalidate_l2(node, &mk, v, tomb_s))
                    .await;
                self.emit_invalidation(key.as_str(), Tier::L2, v, &r, self.clock(), Some(n));
                r.map(|()| true)
            };
            out.push((n, r));
        }
        out
    }

    /// Fills node `n` (where `key` is stored as `mk`) through the strategy, from `seen`.
    async fn fill_l2_node(
        &self,
        key: &Key,
        n: usize,
        mk: &str,
        row: Option<&Row>,
        seen: Seen,
    ) -> TierResult<bool> {
        let (e, version, hard_ttl) = self.entry(key, row, self.l2_ttl_ms(key));
        if e.len() > self.cfg.l2_item_bytes_max {
            // Over memcached's item limit: skip L2, never an error to the caller.
            self.metrics.l2.oversized.fetch_add(1, Relaxed);
            return Ok(false);
        }
        let ttl_s = Self::secs(hard_ttl);
        let started = self.clock();
        let node = &self.l2.nodes[n];
        let r = if self.mutated(Mutant::NoL2Cas) {
            // Boxed: test machinery adds nothing to the read path's frame.
            Box::pin(self.on_l2(n, async { node.set(mk, &e, ttl_s).await.map(|()| true) })).await
        } else {
            self.on_l2(
                n,
                self.strategy
                    .fill_l2_after(node, mk, &e, version, ttl_s, seen),
            )
            .await
        };
        self.fill_answered(key, Tier::L2, version, &r, started, Some(n));
        r
    }
}
