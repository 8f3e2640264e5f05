//! The `half-open` fault in the simulator ([`chaos::fault::half_open`]): while it is on, a server
//! drops every request of its clients (the app nodes, the nemesis) unrun and unanswered, resends
//! included, and sends them no reply of a request it took before the fault began, then or later;
//! at the heal its end of their connections is gone, so a request first sent before the heal is
//! answered with a reset, and one first sent after it is served. The simulator has requests, not connections: a request first
//! sent after the heal runs, where a real client's request on a connection it kept through the
//! fault would be reset (docs/scenarios.md).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use madsim::time::Instant;

/// A server's `half-open` faults now: the nodes it spares (the cluster's servers) and how many
/// are on (overlapping ones end at the last heal).
struct Gone {
    spared: Vec<IpAddr>,
    on: u32,
}

thread_local! {
    /// Whether any `half-open` fault began in the run on this thread: until one does, every
    /// request on the simulator's inner loop is served without a look at the maps below.
    static ANY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Servers whose end of their clients' connections is gone now.
    static GONE: RefCell<BTreeMap<SocketAddr, Gone>> = Default::default();
    /// Per server, its last `half-open` heal and the nodes it spared: a request first sent
    /// before then travelled on a connection the server no longer knows.
    static FORGOT: RefCell<BTreeMap<SocketAddr, (Instant, Vec<IpAddr>)>> = Default::default();
    /// Requests each server dropped under its latest `half-open` fault in the run on this
    /// thread (counted from that fault's start, so a look sees this fault's drops alone).
    static DROPPED: RefCell<BTreeMap<SocketAddr, u64>> = Default::default();
    /// How many `half-open` faults began at each server in the run on this thread.
    static STARTS: RefCell<BTreeMap<SocketAddr, u64>> = Default::default();
}

/// From now on the server at `server` drops every request but those of nodes at `spared`
/// (`None`: the heal, after which it resets every request first sent before it).
pub fn half_open(server: SocketAddr, spared: Option<Vec<IpAddr>>) {
    match spared {
        Some(spared) => {
            let began = GONE.with(|g| {
                let mut g = g.borrow_mut();
                let gone = g.entry(server).or_insert(Gone { spared, on: 0 });
                gone.on += 1;
                gone.on == 1
            });
            if began {
                ANY.with(|a| a.set(true));
                STARTS.with(|s| *s.borrow_mut().entry(server).or_default() += 1);
                DROPPED.with(|d| d.borrow_mut().insert(server, 0));
            }
        }
        None => {
            let healed = GONE.with(|g| {
                let mut g = g.borrow_mut();
                let last = g.get_mut(&server).is_some_and(|gone| {
                    gone.on = gone.on.saturating_sub(1);
                    gone.on == 0
                });
                if last {
                    g.remove(&server).map(|gone| gone.spared)
                } else {
                    None
                }
            });
            if let Some(spared) = healed {
                FORGOT.with(|f| f.borrow_mut().insert(server, (Instant::now(), spared)));
            }
        }
    }
}

/// How many client requests the server at `at` dropped under its latest `half-open` fault.
pub fn dropped_at(at: SocketAddr) -> u64 {
    DROPPED.with(|d| d.borrow().get(&at).copied().unwrap_or(0))
}

/// What the server at `at` does with a request from `from` first sent at `first_sent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Serve,
    /// Dropped, unrun and unanswered (the fault is on); counted.
    Drop,
    /// Answered with a reset: it was first sent on a connection the server forgot at the heal.
    Reset,
}

pub(super) fn fate(at: SocketAddr, from: IpAddr, first_sent: Instant) -> Fate {
    if !ANY.with(|a| a.get()) {
        return Fate::Serve;
    }
    if is_gone(at, from) {
        DROPPED.with(|d| *d.borrow_mut().entry(at).or_default() += 1);
        return Fate::Drop;
    }
    let forgot = FORGOT.with(|f| {
        f.borrow()
            .get(&at)
            .is_some_and(|(healed, spared)| first_sent < *healed && !spared.contains(&from))
    });
    if forgot {
        Fate::Reset
    } else {
        Fate::Serve
    }
}

/// Is the server at `at`'s end of `to`'s connections gone now?
fn is_gone(at: SocketAddr, to: IpAddr) -> bool {
    GONE.with(|g| {
        g.borrow()
            .get(&at)
            .is_some_and(|gone| !gone.spared.contains(&to))
    })
}

/// How many `half-open` faults began at the server at `at` so far: noted when a request is taken,
/// for [`reply_lost`].
pub(super) fn starts(at: SocketAddr) -> u64 {
    if !ANY.with(|a| a.get()) {
        return 0;
    }
    STARTS.with(|s| s.borrow().get(&at).copied().unwrap_or(0))
}

/// Did the connection that brought `to`'s request die since the server at `at` took it (`taken`:
/// [`starts`] then)? Its reply then has nothing to go back on, whether the fault is still on or
/// healed since.
pub(super) fn reply_lost(at: SocketAddr, to: IpAddr, taken: u64) -> bool {
    if !ANY.with(|a| a.get()) {
        return false;
    }
    if is_gone(at, to) {
        return true;
    }
    starts(at) != taken
        && !FORGOT.with(|f| {
            f.borrow()
                .get(&at)
                .is_some_and(|(_, spared)| spared.contains(&to))
        })
}

/// Forgets every server's `half-open` faults, heals and counts (a run starts with this).
pub(super) fn reset() {
    ANY.with(|a| a.set(false));
    GONE.with(|g| g.borrow_mut().clear());
    FORGOT.with(|f| f.borrow_mut().clear());
    DROPPED.with(|d| d.borrow_mut().clear());
    STARTS.with(|s| s.borrow_mut().clear());
}
