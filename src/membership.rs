//! Which of a pool's memcached nodes the Ketama ring is made of, changed while traffic runs (a
//! node added to take load, one removed for maintenance), and what keeps a moved key from coming
//! back stale.
//!
//! The danger is the move back. Remove node C: its keys now live on A and B, and writes
//! invalidate them there. C still holds the values it had. Add C back and its keys route to C
//! again, which serves the values from before the writes. The same happens to an added node once
//! it leaves. So a ring that stops being read from is still invalidated: every invalidation goes
//! to the key's owner under each ring an entry filled under can still be alive in, until the
//! longest lifetime an L2 item has (the L2 TTL with stale-while-revalidate, tombstones, negative
//! entries, rounded up to memcached's seconds) has passed since that ring was last read from.
//!
//! App instances learn of a change at different times. If one reads from the new ring while
//! another still invalidates only under the old one, a write can miss the copy that is read. So
//! a change has two steps, as mcrouter's migration routes do: [`Membership::stage`] on every
//! instance (reads stay on the old ring, invalidations go to both), then, once all have staged,
//! [`Membership::commit`] on each (reads move to the new ring; the old one is still invalidated).
//! A single instance can call [`Membership::change`], which does both.
//!
//! Each step moves an epoch. A miss that began its database read under one epoch and would fill
//! L2 under another does not fill: the owner it would fill may be one that the writes it raced
//! did not invalidate.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::ring::{Ring, RingError};

/// A ring over some of the pool's nodes, with each ring node's index in the pool.
#[derive(Debug)]
struct View {
    ring: Ring,
    pool_index: Vec<usize>,
}

impl View {
    fn owner(&self, route: &[u8]) -> usize {
        self.pool_index[self.ring.node_index(route)]
    }
}

#[derive(Debug)]
struct State {
    /// Every node of the pool, by its index there.
    names: Vec<String>,
    epoch: u64,
    /// The ring reads and fills route by.
    current: Arc<View>,
    /// A ring being moved to: invalidated, not yet read from.
    staged: Option<Arc<View>>,
    /// Rings no longer read from, invalidated until their instant.
    retired: Vec<(Arc<View>, Instant)>,
    /// How long a retired ring is still invalidated.
    retain: Duration,
}

/// A handle on a pool's ring membership: clone it out of the pool
/// ([`crate::Pool::membership`]) and call it from whatever learns of changes (a config watcher).
#[derive(Debug, Clone)]
pub struct Membership {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("memcached node {0:?} is not in the pool: add it with Pool::with_spare when the pool is built")]
    NotInPool(String),
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("no ring change is staged: call stage(members) on every instance first")]
    NothingStaged,
}

impl Membership {
    /// `names`: the pool's nodes by index; the ring is made of the first `members` of them.
    pub(crate) fn new(names: Vec<String>, members: usize, retain: Duration) -> Membership {
        let ring = Ring::new(&names[..members]).expect("the pool's ring was built from them");
        let current = Arc::new(View {
            ring,
            pool_index: (0..members).collect(),
        });
        Membership {
            state: Arc::new(Mutex::new(State {
                names,
                epoch: 0,
                current,
                staged: None,
                retired: Vec::new(),
                retain,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A node the pool has, added outside the ring.
    pub(crate) fn add_spare(&self, name: String) {
        self.lock().names.push(name);
    }

    /// First step of a change: the ring will be made of `members` (names as the pool has
    /// them). Reads stay on the current ring; invalidations go to both. Staging again replaces
    /// what was staged.
    pub fn stage<S: AsRef<str>>(&self, members: &[S]) -> Result<(), MembershipError> {
        let mut st = self.lock();
        let mut pool_index = Vec::with_capacity(members.len());
        for m in members {
            let m = m.as_ref();
            let i = (st.names.iter().position(|n| n == m))
                .ok_or_else(|| MembershipError::NotInPool(m.to_string()))?;
            pool_index.push(i);
        }
        let ring = Ring::new(members)?;
        st.staged = Some(Arc::new(View { ring, pool_index }));
        st.epoch += 1;
        Ok(())
    }

    /// Second step: reads and fills move to the staged ring; the one they leave is still
    /// invalidated for as long as anything filled under it can live.
    pub fn commit(&self) -> Result<(), MembershipError> {
        let mut st = self.lock();
        let staged = st.staged.take().ok_or(MembershipError::NothingStaged)?;
        let until = Instant::now() + st.retain;
        let old = std::mem::replace(&mut st.current, staged);
        st.retired.push((old, until));
        st.epoch += 1;
        Ok(())
    }

    /// [`Membership::stage`] and [`Membership::commit`] at once: for a change only this
    /// instance makes.
    pub fn change<S: AsRef<str>>(&self, members: &[S]) -> Result<(), MembershipError> {
        self.stage(members)?;
        self.commit()
    }

    /// The nodes reads route to now.
    pub fn members(&self) -> Vec<String> {
        self.lock().current.ring.nodes().to_vec()
    }

    /// Moves at every stage and commit.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// The pool index of the node `route` is read from and filled on, and the epoch.
    /// The name ("host:port") of the pool's node `n`.
    pub(crate) fn name(&self, n: usize) -> Option<String> {
        self.lock().names.get(n).cloned()
    }

    pub(crate) fn owner(&self, route: &[u8]) -> (usize, u64) {
        let st = self.lock();
        (st.current.owner(route), st.epoch)
    }

    /// Every node `route` must be invalidated on: its owner, then its owners under the staged
    /// ring and under each retired ring still within its time, each once.
    pub(crate) fn owners(&self, route: &[u8]) -> Vec<usize> {
        let mut st = self.lock();
        let now = Instant::now();
        st.retired.retain(|(_, until)| *until > now);
        let mut out = vec![st.current.owner(route)];
        let others = st.staged.iter().chain(st.retired.iter().map(|(v, _)| v));
        for v in others {
            let n = v.owner(route);
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
