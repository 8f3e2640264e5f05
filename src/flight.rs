//! Per-process single-flight: concurrent misses of one key run one load; the others wait for its
//! result. If the leader is cancelled, its waiters get an error rather than hanging.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// What a waiter receives when its leader went away without an answer.
pub trait Abandoned {
    fn abandoned() -> Self;
}

pub struct Flights<T> {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<T>>>>,
    /// Waiters a single flight may gather before new callers run their own load.
    waiters_max: usize,
}

/// Removes the flight and answers its waiters, also when the leader's future is dropped.
struct Leader<'a, T: Clone + Abandoned> {
    flights: &'a Flights<T>,
    key: &'a str,
    done: bool,
}

impl<T: Clone + Abandoned> Leader<'_, T> {
    fn finish(&mut self, value: &T) {
        self.done = true;
        for w in self.flights.take(self.key) {
            let _ = w.send(value.clone());
        }
    }
}

impl<T: Clone + Abandoned> Drop for Leader<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            for w in self.flights.take(self.key) {
                let _ = w.send(T::abandoned());
            }
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
            waiting: Mutex::new(HashMap::new()),
            waiters_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<T>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, key: &str) -> Vec<oneshot::Sender<T>> {
        self.lock().remove(key).unwrap_or_default()
    }

    /// Runs `load` unless a load of `key` is already in flight, in which case waits for it.
    pub async fn run<F: Future<Output = T>>(
        &self,
        key: &str,
        load: impl FnOnce() -> F,
    ) -> (T, Role) {
        enum Join<T> {
            Follow(oneshot::Receiver<T>),
            Lead,
            /// The flight is full: load alone, without touching the flight (its leader owns it).
            Alone,
        }
        let join = {
            let mut w = self.lock();
            match w.get_mut(key) {
                Some(waiters) if waiters.len() < self.waiters_max => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Join::Follow(rx)
                }
                Some(_) => Join::Alone,
                None => {
                    w.insert(key.to_string(), Vec::new());
                    Join::Lead
                }
            }
        };
        match join {
            Join::Follow(rx) => (rx.await.unwrap_or_else(|_| T::abandoned()), Role::Follower),
            Join::Alone => (load().await, Role::Leader),
            Join::Lead => {
                let mut leader = Leader {
                    flights: self,
                    key,
                    done: false,
                };
                let value = load().await;
                leader.finish(&value);
                (value, Role::Leader)
            }
        }
    }

    pub fn in_flight(&self) -> usize {
        self.lock().len()
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
}
