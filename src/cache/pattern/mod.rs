//! Pattern invalidation: a whole group at once by bumping its generation (versioned strategies,
//! grouped namespaces), or by SCANning Redis (everything else).
//!
//! **Generations.** In a namespace listed in `cache.grouped_namespaces`, a key's group is its id
//! up to the last `:` (`r/rust:` of `listings:v1:r/rust:hot`). The group's generation G is the
//! version of a key of its own, `aside-gen:v1:listings:v1:r/rust:`, kept in the database like
//! any row and cached like any key; the tiers hold each key of the group under `…#g<G>`. So:
//!
//! * an invalidation of the group is one database write (G + 1, with its outbox row) and one
//!   fill of G + 1 into each tier (a versioned fill: it refuses older generations as a tombstone
//!   would), whatever the number of keys: entries of older generations become unreachable at
//!   once, in memcached as in Redis, and expire by TTL;
//! * a read asks L1 for G and the key in G in one round trip (the `get_in_generation` script);
//!   only when L1 does not hold G does it load G first, like any key (from the primary), while
//!   it asks L2 for the key in the generations it guesses;
//! * a grouped key loads from the primary: a new generation holds no tombstones, so nothing there
//!   would refuse an old row from a lagging replica;
//! * a write invalidates the key in the generation it finds, and again in the next should a bump
//!   land meanwhile: a reader who learned the new generation may have begun loading before the
//!   write committed;
//! * a bump lost with a Redis master is a lost write like any other: the database still
//!   holds the new G, `durable` replays the bump's outbox row after the switch (and
//!   fences L1 until then), and since G only grows in the database an old generation's number is
//!   never reused for newer entries.
//!
//! Every key of a group lives on one memcached node, its generation key's ([`Key::route`] of
//! it), whatever the generation: a fence on a node covers every generation of the keys it holds,
//! and a read that reaches a key's node reaches its generation too.
//!
//! **SCAN** (namespaces without groups, and strategies without tombstones such as `naive`) costs
//! O(keys in Redis / scan_count) round trips per invalidation and reaches only what Redis holds:
//! a key held only in memcached keeps its old value (the `scan-gap` scenario's finding).

use super::*;

/// What a pattern invalidation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidated {
    /// The group's generation was bumped to `generation`: every key of the group at once.
    /// `confirmed`: both tiers acknowledged the new generation (or hold a newer one).
    Generation { generation: u64, confirmed: bool },
    /// SCAN found and invalidated `values` values in `round_trips` SCAN calls.
    Scanned { values: u64, round_trips: u64 },
}

impl<R: RedisLike, M: MemcachedLike, S: Store, St: Strategy> CacheAside<R, M, S, St> {
    /// The memcached node that owns `key` and the key as that node stores it. A key of a grouped
    /// namespace lives on its group's node, the node of the generation key, whatever its
    /// generation: a read that finds the key's node up finds the generation there too. The
    /// third: the ring's epoch ([`crate::Membership::epoch`]).
    pub(super) fn l2_slot(&self, key: &Key) -> (usize, String, u64) {
        let (n, epoch) = self.l2.members.owner(self.l2_route(key).as_bytes());
        (n, key.memcached(), epoch)
    }

    /// Every node `key` must be invalidated on (its owner first: a ring being moved to or
    /// recently left owns it too), and the key as they store it.
    pub(super) fn l2_owners(&self, key: &Key) -> (Vec<usize>, String) {
        let route = self.l2_route(key);
        let owners = if self.mutated(crate::mutant::Mutant::NoRingHistory) {
            vec![self.l2.members.owner(route.as_bytes()).0]
        } else {
            self.l2.members.owners(route.as_bytes())
        };
        (owners, key.memcached())
    }

    fn l2_route(&self, key: &Key) -> String {
        match self.generation_key_of(key) {
            Some(gen_key) => gen_key.route(),
            None => key.route(),
        }
    }

    /// The generation key of `key`'s group when this instance holds `key` under its group's
    /// generation (a grouped namespace under a strategy with generations), else `None`: the
    /// tiers then hold `key.in_generation(g)`, g being the generation key's version.
    pub fn generation_key_of(&self, key: &Key) -> Option<Key> {
        key.generation_key().filter(|_| self.grouped(key.prefix()))
    }

    /// The memcached node that owns `key` under the current ring (every generation of a
    /// grouped key lives on its group's node), for tools that read the servers directly.
    pub fn l2_node_of(&self, key: &Key) -> usize {
        self.l2.node_index(self.l2_route(key).as_bytes())
    }

    /// Whether `key`'s namespace is grouped under this instance's strategy.
    pub(super) fn grouped(&self, namespace_prefix: &str) -> bool {
        self.strategy.generations()
            && self.cfg.grouped_namespaces.iter().any(|ns| {
                namespace_prefix
                    .strip_prefix(ns.as_str())
                    .is_some_and(|r| r.starts_with(":v"))
            })
    }

    /// `key` as the tiers hold it: in its group's current generation, or unchanged outside any
    /// group.
    pub(super) async fn resolve(&self, key: &Key) -> Result<Key, Error> {
        if !self.grouped(key.prefix()) {
            return Ok(key.clone());
        }
        let Some(gen_key) = key.generation_key() else {
            return Ok(key.clone());
        };
        Ok(key.in_generation(self.generation(&gen_key).await?))
    }

    /// For a key of a grouped namespace: the key in its group's generation and what L1 holds for
    /// it, both from one round trip (`get_in_generation`), when L1 holds a readable generation.
    /// `None` sends the caller the long way ([`CacheAside::resolve`]): not grouped, L1 fenced or
    /// failing, the generation missing, a tombstone, past its freshness or corrupt.
    pub(super) async fn read_l1_grouped(&self, key: &Key) -> Option<(Key, Found)> {
        let (shard, l1) = self.l1.of(key.as_str());
        if !self.grouped(key.prefix()) || self.l1_fenced(shard) {
            return None;
        }
        let gen_key = key.generation_key()?;
        let switches = l1.master_switches();
        let got = self
            .on_l1(shard, l1.get_in_generation(gen_key.as_str(), key.as_str()))
            .await;
        // As in `read_l1`: an answer from a master the invalidator has not replayed onto yet.
        if self.repair.active() && l1.master_switches() != switches {
            return None;
        }
        let (g, v) = got.ok()?;
        let generation = match self.decode(&gen_key, &g?, &self.metrics.l1) {
            Ok(Found::Fresh(row) | Found::Expiring(row)) => row.version,
            Ok(Found::Absent) => 0,
            _ => return None,
        };
        self.saw_generation(&gen_key, generation);
        let stored = key.in_generation(generation);
        let found = match v {
            None => Found::Miss,
            Some(raw) => match self.decode(&stored, &raw, &self.metrics.l1) {
                Ok(f) => f,
                Err(()) => {
                    let _ = self
                        .on_l1(shard, l1.del(&[stored.stored().into_owned()]))
                        .await;
                    Found::Miss
                }
            },
        };
        Some((stored, found))
    }

    /// Bumps the generation `gen_key` holds: the database first (G + 1, and its outbox row),
    /// then the new generation written into both tiers ([`CacheAside::set_generation`]).
    async fn bump(&self, gen_key: &Key) -> Result<Invalidated, Error> {
        let db = self.cfg.db_timeout();
        let generation = match timed("postgres", db, self.store.write(gen_key.as_str(), b"")).await
        {
            Ok(c) => c.version,
            Err(e) if e.changed_nothing() => return Err(Error::Db(e)),
            Err(e) => {
                // No answer, or the connection died under the request: the commit may have
                // happened (as for a write). Set whatever the primary holds now.
                let now = timed(
                    "postgres",
                    db,
                    self.store.read(gen_key.as_str(), ReadFrom::Primary),
                );
                if let Ok(Some(row)) = now.await {
                    self.set_generation(gen_key, row.version).await;
                }
                return Err(Error::Db(e));
            }
        };
        self.saw_generation(gen_key, generation);
        self.reach(Goal::GenerationBumped);
        let confirmed = self.set_generation(gen_key, generation).await;
        self.metrics.l1.invalidations.fetch_add(1, Relaxed);
        Ok(Invalidated::Generation {
            generation,
            confirmed,
        })
    }

    /// Writes `generation` as the value of `gen_key` in both tiers: a versioned fill, which an
    /// older generation's fill can never overwrite, so it protects as a tombstone would, and
    /// readers find the new generation in one L1 round trip instead of each loading it. A tier
    /// that fails is fenced (`durable`: until the invalidator has applied the bump's outbox row,
    /// which does the same). True when both tiers answered.
    pub(super) async fn set_generation(&self, gen_key: &Key, generation: u64) -> bool {
        self.flights.close(gen_key.as_str());
        let row = Row {
            version: generation,
            payload: Vec::new(),
        };
        let l1 = self.fill_l1_answer(gen_key, Some(&row)).await;
        if let Err(e) = &l1 {
            self.l1_failed(self.l1.of(gen_key.as_str()).0, e);
        }
        let mut l2_ok = true;
        for (n, l2) in self.fill_l2_owners(gen_key, &row).await {
            if let Err(e) = &l2 {
                l2_ok = false;
                self.l2_failed(n, e);
            }
        }
        l1.is_ok() && l2_ok
    }

    /// A grouped key that L1 could not answer with its generation (L1 fenced, failing, or
    /// without the generation): the generation is learned the long way, and meanwhile L2 is
    /// asked for the key in the generation this process saw last for the group and in the one
    /// after it (guesses, each used only when the generation learned equals it), so an L2 hit
    /// costs one round trip, not two. Every generation of a key lives on the same node.
    pub(super) async fn get_grouped<L, F>(&self, key: &Key, loader: &L) -> Load
    where
        L: Fn() -> F + Sync,
        F: Future<Output = TierResult<Option<Row>>> + Send,
    {
        let Some(gen_key) = key.generation_key() else {
            return self.get_inner(key, loader).await;
        };
        // The generation seen last, and the next one (what a single bump since makes it).
        let guess = self.generation_seen(&gen_key);
        let started = self.clock();
        let guessed = [key.in_generation(guess), key.in_generation(guess + 1)];
        let (generation, l2_seen, l2_next) = futures_util::future::join3(
            self.generation(&gen_key),
            Box::pin(self.read_l2(&guessed[0])),
            Box::pin(self.read_l2(&guessed[1])),
        )
        .await;
        let stored = key.in_generation(generation?);
        for (guessed, (l2, seen, epoch)) in guessed.iter().zip([l2_seen, l2_next]) {
            if stored == *guessed && !matches!(l2, Found::Miss | Found::Tombstone(_)) {
                self.metrics.l1.misses.fetch_add(1, Relaxed);
                let ahead = Ahead {
                    seen,
                    epoch: Some(epoch),
                    floor: l2.floor(),
                    ..Ahead::default()
                };
                return self.get_after_l2(&stored, l2, ahead, started, loader).await;
            }
        }
        self.get_inner(&stored, loader).await
    }

    /// The slot of the generation this process saw last for `gen_key`'s group: a fixed table, so
    /// a collision only costs a wrong guess.
    fn generation_slot(&self, gen_key: &Key) -> &AtomicU64 {
        let h = gen_key
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        &self.generations_seen[(h % self.generations_seen.len() as u64) as usize]
    }

    fn generation_seen(&self, gen_key: &Key) -> u64 {
        self.generation_slot(gen_key).load(Relaxed)
    }

    fn saw_generation(&self, gen_key: &Key, generation: u64) {
        self.generation_slot(gen_key).store(generation, Relaxed);
    }

    /// The generation a generation key holds (0 before the first bump), read through the tiers
    /// like any key, from the primary on a miss: a lagging replica would hand out an old one.
    async fn generation(&self, gen_key: &Key) -> Result<u64, Error> {
        let loader = || async move { self.store.read(gen_key.as_str(), ReadFrom::Primary).await };
        // Boxed: the read path's future would otherwise hold a second read path inline.
        let got = Box::pin(self.get_inner(gen_key, &loader)).await?;
        let generation = got.map_or(0, |g| g.row.version);
        self.saw_generation(gen_key, generation);
        Ok(generation)
    }

    /// Invalidates every key of `namespace:vN:` whose id starts with `id_prefix` (user input:
    /// glob characters in it are escaped).
    ///
    /// In a grouped namespace under a versioned strategy, `id_prefix` must be a whole group (it
    /// ends with `:`, `r/rust:`); its generation is bumped (see the module's notes): one
    /// database write and one fill of each tier, whatever the number of keys. Anywhere else, SCAN:
    /// it returns every key that exists for the whole scan but may miss keys created during it,
    /// so a second full pass follows the first; values found are invalidated in both tiers
    /// through the strategy (versioned: a tombstone at the version found).
    pub async fn invalidate_prefix(
        &self,
        namespace: &str,
        schema_version: u32,
        id_prefix: &str,
    ) -> Result<Invalidated, Error> {
        let probe = Key::new(namespace, schema_version, id_prefix)?;
        if self.grouped(probe.prefix()) {
            let member = Key::new(namespace, schema_version, &format!("{id_prefix}x"))?;
            if member.group() != Some(id_prefix) {
                return Err(Error::Key(KeyError::NotAGroup {
                    namespace: namespace.to_string(),
                    prefix: id_prefix.to_string(),
                }));
            }
            let gen_key = member
                .generation_key()
                .ok_or_else(|| Error::Key(KeyError::Malformed(probe.as_str().to_string())))?;
            let span = tracing::info_span!("aside.invalidate_group", group = %probe);
            return self.bump(&gen_key).instrument(span).await;
        }
        let pattern = format!("{}*", escape_glob(probe.as_str()));
        // Every key of the namespace is on its class's shard.
        let (shard, l1) = self.l1.of(probe.as_str());
        let span = tracing::info_span!("aside.invalidate_prefix", pattern = %pattern);
        let done = async {
            let (mut values, mut round_trips) = (0, 0);
            for _pass in 0..2 {
                let mut cursor = 0;
                loop {
                    round_trips += 1;
                    let (next, keys) = self
                        .on_l1(shard, l1.scan(cursor, &pattern, self.cfg.scan_count))
                        .await
                        .map_err(Error::Scan)?;
                    let keys: Vec<String> = keys
                        .into_iter()
                        .filter(|k| !k.starts_with("aside:lease:"))
                        .collect();
                    for k in &keys {
                        values += u64::from(self.invalidate_found(k).await.map_err(Error::Scan)?);
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            self.metrics.l1.invalidations.fetch_add(values, Relaxed);
            Ok(Invalidated::Scanned {
                values,
                round_trips,
            })
        }
        .instrument(span)
        .await;
        // L0 after the tiers, done or not: a read begun meanwhile may have read an old value.
        if let Some(hot) = &self.hot {
            hot.forget_all();
        }
        done
    }

    /// Invalidates one key that a SCAN found, through the strategy, at the version it holds: a
    /// plain DEL would also delete a tombstone, and with it the protection against an older
    /// fill still in flight (the simulator found exactly that). Tombstones are left alone.
    /// True when a value was invalidated.
    pub(super) async fn invalidate_found(&self, k: &str) -> Result<bool, TierError> {
        let (shard, l1) = self.l1.of(k);
        let Ok(key) = Key::parse(k) else {
            return Ok(self.on_l1(shard, l1.del(&[k.to_string()])).await? > 0);
        };
        let version = match self.on_l1(shard, l1.get(k)).await? {
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
            .on_l1(shard, self.strategy.invalidate_l1(l1, k, version, tomb_ms))
            .await;
        self.emit_invalidation(k, Tier::L1, version, &l1, started, None);
        l1?;
        let _ = self.invalidate_l2(&key, version).await;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
