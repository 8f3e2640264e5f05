//! Per-process single-flight: concurrent misses of one key run one load; the others wait for its
//! result. If the leader is cancelled, its waiters get an error rather than hanging. A write
//! closes the key's flight ([`Flights::close`]): callers that come after it start a load of
//! their own instead of joining one that began before the write (its result may be the old row,
//! and serving it to a reader after its own write would break read-your-writes; BUGGIFY's slow
//! fills in the simulator found exactly that).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What a waiter receives when its leader went away without an answer.
pub trait Abandoned {
    fn abandoned() -> Self;
}

/// One flight's waiters, shared by the map (while the flight is open) and its leader.
type Waiters<T> = Arc<Mutex<Vec<oneshot::Sender<T>>>>;

pub struct Flights<T> {
    open: Mutex<HashMap<String, Waiters<T>>>,
    /// Waiters a single flight may gather before new callers run their own load.
    waiters_max: usize,
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Closes its flight and answers its waiters, also when the leader's future is dropped.
struct Leader<'a, T: Clone + Abandoned> {
    flights: &'a Flights<T>,
    key: &'a str,
    waiters: Waiters<T>,
    done: bool,
}

impl<T: Clone + Abandoned> Leader<'_, T> {
    fn answer(&mut self, value: impl Fn() -> T) {
        self.done = true;
        self.flights.close_own(self.key, &self.waiters);
        for w in std::mem::take(&mut *lock(&self.waiters)) {
            let _ = w.send(value());
        }
    }
}

impl<T: Clone + Abandoned> Drop for Leader<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.answer(T::abandoned);
        }
    }
}

/// How a call was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl<T: Clone + Abandoned> Flights<T> {
    pub fn new(waiters_max: usize) -> Self {
        Flights {
            open: Mutex::new(HashMap::new()),
            waiters_max,
        }
    }

    /// Removes `key`'s open flight if it is still `own` (a closed flight's leader must not take
    /// the flight a later caller opened).
    fn close_own(&self, key: &str, own: &Waiters<T>) {
        let mut open = lock(&self.open);
        if open.get(key).is_some_and(|w| Arc::ptr_eq(w, own)) {
            open.remove(key);
        }
    }

    /// Closes `key`'s flight to newcomers: its waiters still get its leader's result, and the
    /// next caller starts a new load.
    pub fn close(&self, key: &str) {
        lock(&self.open).remove(key);
    }

    /// Runs `load` unless a load of `key` is already in flight, in which case waits for it.
    pub async fn run<F: Future<Output = T>>(
        &self,
        key: &str,
        load: impl FnOnce() -> F,
    ) -> (T, Role) {
        enum Join<T> {
            Follow(oneshot::Receiver<T>),
            Lead(Waiters<T>),
            /// The flight is full: load alone, without touching the flight (its leader owns it).
            Alone,
        }
        let join = {
            let mut open = lock(&self.open);
            match open.get(key) {
                Some(waiters) => {
                    let mut w = lock(waiters);
                    if w.len() < self.waiters_max {
                        let (tx, rx) = oneshot::channel();
                        w.push(tx);
                        Join::Follow(rx)
                    } else {
                        Join::Alone
                    }
                }
                None => {
                    let waiters = Waiters::default();
                    open.insert(key.to_string(), waiters.clone());
                    Join::Lead(waiters)
                }
            }
        };
        match join {
            Join::Follow(rx) => (rx.await.unwrap_or_else(|_| T::abandoned()), Role::Follower),
            Join::Alone => (load().await, Role::Leader),
            Join::Lead(waiters) => {
                let mut leader = Leader {
                    flights: self,
                    key,
                    waiters,
                    done: false,
                };
                let value = load().await;
                leader.answer(|| value.clone());
                (value, Role::Leader)
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        lock(&self.open).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct V(u32);
    impl Abandoned for V {
        fn abandoned() -> Self {
            V(u32::MAX)
        }
    }

    #[tokio::test]
    async fn concurrent_loads_of_one_key_run_once() {
        let f = Arc::new(Flights::<V>::new(1000));
        let loads = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (f, loads) = (f.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                f.run("k", || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    V(7)
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, role) = t.await.unwrap();
            assert_eq!(v, V(7));
            leaders += u32::from(role == Role::Leader);
        }
        assert_eq!((loads.load(Ordering::SeqCst), leaders), (1, 1));
        assert_eq!(f.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_its_waiters() {
        let f = Arc::new(Flights::<V>::new(1000));
        let f2 = f.clone();
        let leader = tokio::spawn(async move {
            f2.run("k", || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                V(1)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let f3 = f.clone();
        let follower = tokio::spawn(async move { f3.run("k", || async { V(2) }).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        leader.abort();
        let (v, role) = follower.await.unwrap();
        assert_eq!((v, role), (V::abandoned(), Role::Follower));
        assert_eq!(f.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_overflowing_caller_loads_alone_and_leaves_the_flight_alone() {
        let f = Arc::new(Flights::<V>::new(1));
        let f2 = f.clone();
        let leader = tokio::spawn(async move {
            f2.run("k", || async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                V(1)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let f3 = f.clone();
        let follower = tokio::spawn(async move { f3.run("k", || async { V(2) }).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        // The flight is full (one waiter): this caller loads alone, and being cancelled it must
        // not abandon the flight's waiter.
        let f4 = f.clone();
        let alone = tokio::spawn(async move {
            f4.run("k", || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                V(3)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        alone.abort();
        assert_eq!(follower.await.unwrap(), (V(1), Role::Follower));
        assert_eq!(leader.await.unwrap(), (V(1), Role::Leader));
    }

    #[tokio::test]
    async fn a_closed_flight_answers_its_waiters_and_newcomers_load_again() {
        // Wide margins (tens of ms between steps, hundreds per load): a loaded machine may run a
        // spawned task late.
        let f = Arc::new(Flights::<V>::new(1000));
        let slow = |f: Arc<Flights<V>>, v: u32, ms: u64| {
            tokio::spawn(async move {
                f.run("k", || async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    V(v)
                })
                .await
            })
        };
        let step = || tokio::time::sleep(Duration::from_millis(50));
        let old = slow(f.clone(), 1, 400);
        step().await;
        let before = slow(f.clone(), 9, 0);
        step().await;
        // A write commits here: later readers must not get the load that began before it.
        f.close("k");
        let after = slow(f.clone(), 2, 800);
        step().await;
        let after_too = slow(f.clone(), 9, 0);
        assert_eq!(before.await.unwrap(), (V(1), Role::Follower));
        assert_eq!(old.await.unwrap(), (V(1), Role::Leader));
        // The old leader finished first and left the new flight open.
        assert_eq!(f.in_flight(), 1);
        assert_eq!(after_too.await.unwrap(), (V(2), Role::Follower));
        assert_eq!(after.await.unwrap(), (V(2), Role::Leader));
        assert_eq!(f.in_flight(), 0);
    }
}
