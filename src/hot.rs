//! Hot keys (the production design's Twitter 2018 incident: one viral key overwhelms the node
//! that holds it): which keys this instance reads most, found in bounded memory, and an
//! in-process L0 that serves them for a short TTL, so a hot key costs its cache servers one read
//! per `l0_ttl_ms` per instance instead of one per read.
//!
//! * **Detection** is space-saving (Metwally, Agrawal and El Abbadi, ICDT 2005) over windows of
//!   [`WINDOW`]: at most `hot_keys_max` counters; a key not counted takes the smallest counter's
//!   place and inherits its count as its possible overcount. A key is hot when its count less that
//!   overcount (reads it certainly had this window) reaches the threshold, or it was hot in the
//!   window before, so a hot key stays hot across a window's end.
//! * **L0** holds at most `hot_keys_max` rows, only of hot keys, each until `l0_ttl_ms` after it
//!   was read from a tier. A write through this instance drops its key at once; another
//!   instance's write is seen when the entry expires (or, with `durable`, when this instance's
//!   invalidator applies it). So L0 adds `l0_ttl_ms` to the staleness a strategy states.
//! * **No stale refill.** A read that began before a write (or an invalidation) of its key may
//!   not put what it read into L0: each key hashes to one of [`WRITE_SLOTS`] counters that every
//!   local write bumps, and a read offers its row only if its slot did not move while it ran.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::tier::Row;

/// The window reads are counted over.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Counters of local writes, by a hash of the key: see the module's "no stale refill".
const WRITE_SLOTS: usize = 1024;

/// The hot-key detector and L0 of one cache instance.
pub struct HotKeys {
    ttl: Duration,
    reads_min: u64,
    keys_max: usize,
    state: Mutex<State>,
    writes: Box<[AtomicU64]>,
    /// Bumped by an invalidation of many keys at once (a pattern): every read in flight then
    /// offers nothing.
    writes_all: AtomicU64,
    /// False only for the test machinery's `no-l0-ticket` mutant ([`crate::mutant`]).
    check_writes: bool,
}

#[derive(Default)]
struct State {
    window_start: Option<Instant>,
    counters: HashMap<String, Counter>,
    l0: HashMap<String, Held>,
}

#[derive(Clone, Copy, Default)]
struct Counter {
    count: u64,
    /// How much of `count` may belong to the keys this counter counted before.
    over: u64,
    was_hot: bool,
}

impl Counter {
    fn hot(&self, reads_min: u64) -> bool {
        self.was_hot || self.count - self.over >= reads_min
    }
}

struct Held {
    row: Row,
    until: Instant,
}

/// What became of a row offered to L0 ([`HotKeys::offer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Put into L0.
    Put,
    /// The key is not hot.
    NotHot,
    /// A write of the key began while the row was read: it may be older than that write.
    Written,
    /// L0 holds a newer version.
    Older,
}

impl Offer {
    /// Whether the row was put into L0.
    pub fn put(self) -> bool {
        self == Offer::Put
    }
}

/// What a read learned before it went to the tiers: whether its key is hot, and the write
/// counters it must find unchanged to offer its row ([`HotKeys::offer`]).
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    hot: bool,
    writes: u64,
    writes_all: u64,
}

impl HotKeys {
    /// `ttl_ms`: how long L0 serves a row; `reads_min`: reads per [`WINDOW`] that make a key
    /// hot; `keys_max`: counters and L0 rows at most.
    pub fn new(ttl_ms: u64, reads_min: u64, keys_max: usize) -> Self {
        HotKeys {
            ttl: Duration::from_millis(ttl_ms),
            reads_min: reads_min.max(1),
            keys_max: keys_max.max(1),
            state: Mutex::default(),
            writes: (0..WRITE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            writes_all: AtomicU64::new(0),
            check_writes: true,
        }
    }

    /// Whether an offer checks the writes since its ticket (always, but for the test
    /// machinery's `no-l0-ticket` mutant).
    pub fn checking_writes(mut self, check: bool) -> Self {
        self.check_writes = check;
        self
    }

    fn written_since(&self, key: &str, ticket: Ticket) -> bool {
        self.check_writes
            && (self.slot(key).load(Relaxed) != ticket.writes
                || self.writes_all.load(Relaxed) != ticket.writes_all)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere never leaves the counts unusable: they are estimates anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, key: &str) -> &AtomicU64 {
        &self.writes[(crate::cache::fnv1a(key) % WRITE_SLOTS as u64) as usize]
    }

    /// Counts a read of `key` at `now`: L0's row if it holds a live one, else the ticket the
    /// read offers its row with.
    pub fn read(&self, key: &str, now: Instant) -> Result<Row, Ticket> {
        let ticket = |hot| Ticket {
            hot,
            writes: self.slot(key).load(Relaxed),
            writes_all: self.writes_all.load(Relaxed),
        };
        let mut s = self.lock();
        let hot = self.count(&mut s, key, now);
        match s.l0.get(key) {
            Some(h) if h.until > now => return Ok(h.row.clone()),
            Some(_) => drop(s.l0.remove(key)),
            None => {}
        }
        drop(s);
        Err(ticket(hot))
    }

    /// One read of `key` into the counters; whether `key` is hot now.
    fn count(&self, s: &mut State, key: &str, now: Instant) -> bool {
        match s.window_start {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {}
            _ => {
                // A new window: what was hot by this window's own reads stays hot for the next,
                // counted afresh; the rest is forgotten.
                let reads_min = self.reads_min;
                s.counters.retain(|_, c| c.count - c.over >= reads_min);
                for c in s.counters.values_mut() {
                    *c = Counter {
                        was_hot: true,
                        ..Counter::default()
                    };
                }
                s.window_start = Some(now);
            }
        }
        if !s.counters.contains_key(key) && s.counters.len() >= self.keys_max {
            // Space-saving: the smallest counter (one that was not hot first) makes room, and
            // its count is what the newcomer may have been overcounted by.
            let (victim, smallest) = s
                .counters
                .iter()
                .min_by(|a, b| (a.1.was_hot, a.1.count, a.0).cmp(&(b.1.was_hot, b.1.count, b.0)))
                .map(|(k, c)| (k.clone(), *c))
                .expect("the counters are full");
            s.counters.remove(&victim);
            s.counters.insert(
                key.to_owned(),
                Counter {
                    count: smallest.count,
                    over: smallest.count,
                    was_hot: false,
                },
            );
        }
        let c = s.counters.entry(key.to_owned()).or_default();
        c.count += 1;
        c.hot(self.reads_min)
    }

    /// Puts `row`, read from a tier at `now` by the read that took `ticket`, into L0 when its
    /// key is hot and no write of it began since the ticket was taken; says which.
    pub fn offer(&self, key: &str, row: &Row, ticket: Ticket, now: Instant) -> Offer {
        if !ticket.hot {
            return Offer::NotHot;
        }
        if self.written_since(key, ticket) {
            return Offer::Written;
        }
        let mut s = self.lock();
        // Checked again under the lock: a write bumps its slot before it takes the lock.
        if self.written_since(key, ticket) {
            return Offer::Written;
        }
        if let Some(h) = s.l0.get(key) {
            if h.row.version > row.version {
                return Offer::Older;
            }
        }
        if !s.l0.contains_key(key) && s.l0.len() >= self.keys_max {
            s.l0.retain(|_, h| h.until > now);
            if s.l0.len() >= self.keys_max {
                // Still full of live rows: the one that expires first makes room.
                let first =
                    s.l0.iter()
                        .min_by(|a, b| (a.1.until, a.0).cmp(&(b.1.until, b.0)))
                        .map(|(k, _)| k.clone())
                        .expect("L0 is full");
                s.l0.remove(&first);
            }
        }
        s.l0.insert(
            key.to_owned(),
            Held {
                row: row.clone(),
                until: now + self.ttl,
            },
        );
        Offer::Put
    }

    /// A write or invalidation of `key` through this instance: L0 drops it, and no read begun
    /// before now may put it back.
    pub fn forget(&self, key: &str) {
        self.slot(key).fetch_add(1, Relaxed);
        self.lock().l0.remove(key);
    }

    /// An invalidation of many keys at once: L0 is emptied, and no read begun before now may
    /// put anything back.
    pub fn forget_all(&self) {
        self.writes_all.fetch_add(1, Relaxed);
        self.lock().l0.clear();
    }

    /// Rows L0 holds (live or not yet swept).
    pub fn held(&self) -> usize {
        self.lock().l0.len()
    }

    /// Keys counted now.
    pub fn counted(&self) -> usize {
        self.lock().counters.len()
    }
}

#[cfg(test)]
mod tests;
