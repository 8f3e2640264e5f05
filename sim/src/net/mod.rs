//! Messages between simulated nodes: request/response over madsim endpoints without
//! serialization (payloads are `Box<dyn Any>`) and without panics: a lost or late reply is a
//! timeout, never a crash of the simulation.
//!
//! madsim delivers datagrams: a message on a lossy or cut link is gone. The servers the harness
//! models speak TCP, which resends a segment until it is acknowledged. So a call resends its
//! request after [`RTO`] (Linux's minimum retransmission timeout) until a reply comes or its
//! deadline passes, doubling the wait after each resend as TCP does, and a server answers a
//! request it has seen again with the reply it cached (or not at all while it is still working
//! on it), never running it twice: what TCP gives a client whose segment or whose reply was
//! lost. A call whose deadline is shorter than the RTO
//! (a 100 ms Redis call) is never resent, as over TCP. A request first sent before its server
//! (re)started is answered with a reset ([`Reset`]): the connection it travelled on died with
//! the old process, so TCP gives the client an error, not a second run of the request. While a
//! `reset` fault is on a server ([`reset_replies`]), it answers each client's request (not
//! another server's) with a reset after running it: a connection that died mid-command. While a
//! `stall` is on one ([`stall_requests`]), it takes each client's request and runs it only at
//! the heal. While a `duplicate` fault is on ([`duplicate_requests`]), a share of the requests
//! every call sends arrives twice ([`copies`]). While a `half-open` fault is on one
//! ([`half_open()`]), it drops its clients' requests and its replies to them, and after the heal
//! resets a request first sent before it ([`half_open`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use aside::goal::Goal;
use aside::tier::TierError;
use madsim::net::Endpoint;
use madsim::time::Instant;

mod copies;
mod half_open;
use copies::{absorbed, send_request};
pub use copies::{copies_absorbed, duplicate_requests, duplicating_per_mille};
use half_open::Fate;
pub use half_open::{dropped_at, half_open};

pub const TAG_REDIS: u64 = 1;
pub const TAG_MEMCACHED: u64 = 2;
pub const TAG_PG: u64 = 3;
pub const TAG_SENTINEL: u64 = 4;
pub const TAG_REPL: u64 = 5;
/// Response tags start here, per endpoint.
pub const TAG_REPLY_BASE: u64 = 1 << 32;

pub fn ip(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
}

/// The foreign writer's node: it writes to the PostgreSQL primary straight, as against real
/// servers, where it does not pass the proxies a `reset` fault acts in.
pub fn foreign_writer_ip() -> IpAddr {
    ip(4, 150)
}

/// How long a call waits for a reply before it resends its request (TCP's minimum RTO on Linux).
pub const RTO: Duration = Duration::from_millis(200);

/// How long a server keeps a reply to answer a resent request: longer than any call's deadline.
const REPLY_KEPT: Duration = Duration::from_secs(5);

/// A server's answer in place of its reply: TCP's reset of the connection the request came on,
/// and why (the server restarted since, or a `reset` fault).
#[derive(Clone, Copy)]
struct Reset(&'static str);

/// A message as madsim carries it.
type Payload = Box<dyn std::any::Any + Send + Sync>;

/// Why a restarted server resets a request sent to its earlier run.
const RESTARTED: &str = "it restarted";
/// Why a server under a `reset` fault resets a client's request.
const RESET_FAULT: &str = "mid-command: the server ran it";
/// Why a server resets a request first sent before a `half-open` fault's heal.
const FORGOTTEN: &str = "its connection was half-open: the server forgot it";

/// Counts every message the harness sends, for `cargo sim bench`.
pub static MESSAGES: AtomicU64 = AtomicU64::new(0);

/// Request/response over a madsim endpoint.
#[derive(Clone)]
pub struct Rpc {
    ep: Endpoint,
    seq: Arc<AtomicU64>,
}

impl Rpc {
    pub async fn bind(at: IpAddr) -> Rpc {
        let ep = Endpoint::bind(SocketAddr::new(at, 0))
            .await
            .expect("bind in the simulator");
        Rpc {
            ep,
            seq: Arc::new(AtomicU64::new(TAG_REPLY_BASE)),
        }
    }

    pub async fn call<C: Clone + Send + Sync + 'static, R: Send + Sync + 'static>(
        &self,
        dst: SocketAddr,
        tag: u64,
        cmd: C,
        timeout: Duration,
    ) -> Result<R, TierError> {
        let reply_tag = self.seq.fetch_add(1, Relaxed);
        let tier = match tag {
            TAG_REDIS => "redis",
            TAG_MEMCACHED => "memcached",
            TAG_PG => "postgres",
            _ => "sentinel",
        };
        // `Duration::MAX`: the caller enforces its own deadline (the cache times every tier
        // call) and drops this future when it passes.
        let first_sent = Instant::now();
        let deadline = (timeout != Duration::MAX).then(|| first_sent + timeout);
        let mut rto = RTO;
        loop {
            let request =
                |copy: bool| Box::new((reply_tag, first_sent, copy, cmd.clone())) as Payload;
            if send_request(&self.ep, dst, tag, request).await.is_err() {
                return Err(TierError::Unavailable {
                    tier,
                    detail: format!("{dst} unreachable"),
                });
            }
            let wait = deadline.map_or(rto, |d| {
                rto.min(d.saturating_duration_since(Instant::now()))
            });
            // TCP backs off: each resend waits twice as long as the last.
            rto *= 2;
            match madsim::time::timeout(wait, self.ep.recv_from_raw(reply_tag)).await {
                Ok(Ok((payload, _))) => {
                    return match payload.downcast::<R>() {
                        Ok(b) => Ok(*b),
                        Err(p) => match p.downcast::<Reset>() {
                            Ok(reset) => Err(TierError::Unavailable {
                                tier,
                                detail: format!("{dst}: connection reset by peer ({})", reset.0),
                            }),
                            Err(_) => Err(TierError::Refused {
                                tier,
                                detail: "reply of the wrong type".into(),
                            }),
                        },
                    }
                }
                Ok(Err(e)) => {
                    return Err(TierError::Unavailable {
                        tier,
                        detail: e.to_string(),
                    })
                }
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(TierError::Timeout {
                        tier,
                        ms: timeout.as_millis() as u64,
                    })
                }
                // The request or its reply was lost, or is slow: resend, as TCP would.
                Err(_) => {}
            }
        }
    }
}

/// What a server remembers of the requests it received: the reply to each, once sent, for
/// [`REPLY_KEPT`], so a resent request is answered again and never run twice.
struct Seen<R> {
    replies: std::collections::HashMap<(SocketAddr, u64), Option<R>>,
    order: std::collections::VecDeque<(Instant, (SocketAddr, u64))>,
}

impl<R> Seen<R> {
    fn new() -> Self {
        Seen {
            replies: Default::default(),
            order: Default::default(),
        }
    }

    /// Forgets replies kept longer than [`REPLY_KEPT`]; a request still running (held by a
    /// `stall`, say) is kept, so a resend of it is never run a second time.
    fn forget_old(&mut self) {
        let now = Instant::now();
        while let Some(&(at, key)) = self.order.front() {
            if now.duration_since(at) < REPLY_KEPT {
                break;
            }
            self.order.pop_front();
            if matches!(self.replies.get(&key), Some(None)) {
                self.order.push_back((now, key));
            } else {
                self.replies.remove(&key);
            }
        }
    }
}

thread_local! {
    /// Requests each server address answered in the run on this thread (madsim runs a whole
    /// simulation on the thread that calls `block_on`, so runs on other threads never mix in).
    static SERVED: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, u64>> =
        Default::default();
}

thread_local! {
    /// How many times each server address began serving in the run on this thread: a second
    /// start is a restart.
    static BOOTS: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, u32>> =
        Default::default();
}

thread_local! {
    /// Coverage goals the servers reached in the run on this thread: per goal and server
    /// address, how often and when first.
    static GOALS: std::cell::RefCell<std::collections::BTreeMap<(Goal, SocketAddr), (u64, Instant)>> =
        Default::default();
}

thread_local! {
    /// Every role a Redis node took in the run on this thread, in order: (when, node, master?).
    static ROLES: std::cell::RefCell<Vec<(Instant, SocketAddr, bool)>> = Default::default();
}

/// The Redis node at `at` is now a master (or a replica): at its boot, or told by a Sentinel.
pub fn role_taken(at: SocketAddr, master: bool) {
    ROLES.with(|r| r.borrow_mut().push((Instant::now(), at, master)));
}

/// The roles the Redis nodes took since [`served_reset`], in order.
pub fn roles_taken() -> Vec<(Instant, SocketAddr, bool)> {
    ROLES.with(|r| r.borrow().clone())
}

thread_local! {
    /// Servers whose replies to clients are resets while a `reset` fault is on: each server's
    /// address, and the addresses of the nodes it still answers (the cluster's servers).
    static RESETTING: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, Vec<IpAddr>>> =
        Default::default();
}

/// From now on the server at `server` answers every request with a reset after running it,
/// but those of nodes at `spared` (`None`: it answers everyone again).
pub fn reset_replies(server: SocketAddr, spared: Option<Vec<IpAddr>>) {
    RESETTING.with(|r| match spared {
        Some(s) => drop(r.borrow_mut().insert(server, s)),
        None => drop(r.borrow_mut().remove(&server)),
    });
}

/// Does the server at `at` answer `to` with a reset now?
fn resets(at: SocketAddr, to: IpAddr) -> bool {
    RESETTING.with(|r| {
        r.borrow()
            .get(&at)
            .is_some_and(|spared| !spared.contains(&to))
    })
}

thread_local! {
    /// Servers holding their clients' requests while a `stall` fault is on: per address, the
    /// nodes they still answer (the cluster's servers), what the held requests wait on, and how
    /// many stalls are on (overlapping ones end at the last heal).
    static STALLED: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, Stall>> =
        Default::default();
}

/// A `stall` on one server: the nodes it still answers, a sender per held request in the order
/// they were taken (fired at the heal in that order), and how many stalls are on. Not a tokio
/// `watch`: its receivers wait on one of eight `Notify`s picked by a thread-local RNG, so the
/// order held requests woke at the heal depended on the runs before on the thread.
type Stall = (Vec<IpAddr>, Vec<tokio::sync::oneshot::Sender<()>>, u32);

/// From now on the server at `server` takes every request but those of nodes at `spared` and
/// holds it unanswered (`None`: it runs what it held and serves everyone again).
pub fn stall_requests(server: SocketAddr, spared: Option<Vec<IpAddr>>) {
    STALLED.with(|s| {
        let mut s = s.borrow_mut();
        match spared {
            Some(spared) => {
                let on = s.entry(server).or_insert_with(|| (spared, Vec::new(), 0));
                on.2 += 1;
            }
            None => {
                let last = s.get_mut(&server).is_some_and(|on| {
                    on.2 = on.2.saturating_sub(1);
                    on.2 == 0
                });
                if last {
                    if let Some((_, held, _)) = s.remove(&server) {
                        for h in held {
                            let _ = h.send(());
                        }
                    }
                }
            }
        }
    });
}

thread_local! {
    /// Requests each server holds now under a `stall`.
    static HELD: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, u64>> =
        Default::default();
}

/// How many requests the server at `at` holds now under a `stall`.
pub fn held_at(at: SocketAddr) -> u64 {
    HELD.with(|h| h.borrow().get(&at).copied().unwrap_or(0))
}

/// One request held at a server, counted in [`HELD`] for as long as it lives: a task dropped
/// while it waits (its node killed) uncounts itself.
struct Held(SocketAddr);

impl Held {
    fn new(at: SocketAddr) -> Held {
        HELD.with(|h| *h.borrow_mut().entry(at).or_default() += 1);
        Held(at)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|h| {
            if let Some(n) = h.borrow_mut().get_mut(&self.0) {
                *n = n.saturating_sub(1);
            }
        });
    }
}

/// While a `stall` holds `from`'s requests at `at`: what a request waits on until the heal.
fn held(at: SocketAddr, from: IpAddr) -> Option<tokio::sync::oneshot::Receiver<()>> {
    STALLED.with(|s| {
        let mut s = s.borrow_mut();
        let (spared, held, _) = s.get_mut(&at)?;
        if spared.contains(&from) {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        held.push(tx);
        Some(rx)
    })
}

thread_local! {
    /// Servers whose wall clocks a `clock` fault moved: per address, the true time (ms since the
    /// epoch) it was moved at, the jump and the rate ([`aside::wall::skewed_ms`]).
    static SKEWED: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, (u64, i64, u32)>> =
        Default::default();
}

/// The server at `at`'s wall clock jumps `jump_ms` and runs at `rate_permille` / 1000 of true
/// speed from now on (`None`: true time again).
pub fn skew_clock(at: SocketAddr, skew: Option<(i32, u16)>) {
    SKEWED.with(|k| match skew {
        Some((jump_ms, rate_permille)) => drop(k.borrow_mut().insert(
            at,
            (
                aside::wall::true_now_ms(),
                i64::from(jump_ms),
                u32::from(rate_permille),
            ),
        )),
        None => drop(k.borrow_mut().remove(&at)),
    });
}

/// What the server at `at`'s wall clock reads now, ms since the epoch.
pub fn server_clock_ms(at: SocketAddr) -> u64 {
    let now = aside::wall::true_now_ms();
    SKEWED.with(|k| match k.borrow().get(&at) {
        Some(&(since_ms, jump_ms, rate_permille)) => {
            aside::wall::skewed_ms(now, since_ms, jump_ms, rate_permille)
        }
        None => now,
    })
}

/// Sends a reply (or a reset) to `to` under its call's `reply_tag`, counted in [`MESSAGES`].
async fn send_reply(ep: &Endpoint, to: SocketAddr, reply_tag: u64, reply: Payload) {
    MESSAGES.fetch_add(1, Relaxed);
    let _ = ep.send_to_raw(to, reply_tag, reply).await;
}

/// Forgets the counts of [`served`], of servers' starts, of [`goals`], of [`copies_absorbed`] and
/// of [`dropped_at`], the roles taken, every `reset`, `stall`, `half-open` and `clock` fault's
/// servers and a `duplicate` fault's share (a run starts with this).
pub fn served_reset() {
    SERVED.with(|s| s.borrow_mut().clear());
    STALLED.with(|s| s.borrow_mut().clear());
    HELD.with(|h| h.borrow_mut().clear());
    SKEWED.with(|k| k.borrow_mut().clear());
    RESETTING.with(|r| r.borrow_mut().clear());
    copies::reset();
    half_open::reset();
    BOOTS.with(|b| b.borrow_mut().clear());
    GOALS.with(|g| g.borrow_mut().clear());
    ROLES.with(|r| r.borrow_mut().clear());
    let _ = aside::goal::take_here();
}

/// The server at `at` reached `goal` now.
pub fn reached(at: SocketAddr, goal: Goal) {
    GOALS.with(|g| {
        g.borrow_mut()
            .entry((goal, at))
            .or_insert((0, Instant::now()))
            .0 += 1
    });
}

/// The goals the models marked ([`aside::goal::reach_here`]) since the last collection, as
/// reached by the server at `at`: called after each request a server answers, and by a server
/// that runs its model outside a request (a replica applying its master's stream, a resync).
pub fn collect_goals(at: SocketAddr) {
    for goal in aside::goal::take_here() {
        reached(at, goal);
    }
}

/// Goals the servers reached since [`served_reset`]: (goal, server, times, first).
pub fn goals() -> Vec<(Goal, SocketAddr, u64, Instant)> {
    GOALS.with(|g| {
        g.borrow()
            .iter()
            .map(|(&(goal, at), &(n, first))| (goal, at, n, first))
            .collect()
    })
}

/// Requests answered per server address since [`served_reset`].
pub fn served() -> std::collections::BTreeMap<SocketAddr, u64> {
    SERVED.with(|s| s.borrow().clone())
}

/// Receive loops per server: madsim sleeps at least 1 ms in every receive, so one loop would
/// cap a server at 1000 messages per second of simulated time and queue everything behind it.
const RECEIVERS: usize = 64;

/// Serves requests of type `C` on `tag` with `handle`, replying asynchronously.
pub async fn serve<C, R, F, Fut>(ep: Endpoint, tag: u64, handle: F)
where
    C: Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let handle = Arc::new(handle);
    let seen = Arc::new(std::sync::Mutex::new(Seen::new()));
    // A restart of the server: requests first sent before it went to the earlier process.
    // (Its first start resets nothing: a request that reached it before it served is the
    // client's connect racing the boot, which the cluster's start already waits out.)
    let booted = ep.local_addr().ok().and_then(|at| {
        let restarts = BOOTS.with(|b| {
            let mut b = b.borrow_mut();
            let n = b.entry(at).or_insert(0);
            *n += 1;
            *n - 1
        });
        (restarts > 0).then(Instant::now)
    });
    for _ in 1..RECEIVERS {
        madsim::task::spawn(receive(
            ep.clone(),
            tag,
            handle.clone(),
            seen.clone(),
            booted,
        ));
    }
    receive(ep, tag, handle, seen, booted).await;
}

async fn receive<C, R, F, Fut>(
    ep: Endpoint,
    tag: u64,
    handle: Arc<F>,
    seen: Arc<std::sync::Mutex<Seen<R>>>,
    booted: Option<Instant>,
) where
    C: Send + Sync + 'static,
    R: Clone + Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    // The server's own address, for its counts: asked once, not per request.
    let at = ep.local_addr().ok();
    loop {
        let Ok((payload, from)) = ep.recv_from_raw(tag).await else {
            continue;
        };
        let Ok(b) = payload.downcast::<(u64, Instant, bool, C)>() else {
            continue;
        };
        let (reply_tag, first_sent, copy, cmd) = *b;
        // A `half-open` fault on: dropped; after its heal, a request sent before it: reset.
        match at.map_or(Fate::Serve, |at| half_open::fate(at, from.ip(), first_sent)) {
            Fate::Serve => {}
            Fate::Drop => continue,
            Fate::Reset => {
                let ep = ep.clone();
                madsim::task::spawn(async move {
                    send_reply(&ep, from, reply_tag, Box::new(Reset(FORGOTTEN))).await;
                });
                continue;
            }
        }
        if booted.is_some_and(|b| first_sent < b) {
            let ep = ep.clone();
            madsim::task::spawn(async move {
                send_reply(&ep, from, reply_tag, Box::new(Reset(RESTARTED))).await;
            });
            continue;
        }
        // A copy older than the server's memory of requests may be of one it ran and forgot
        // (its node paused while the copy waited): dropped, as TCP drops a segment outside its
        // window. A resend that old is run: only the network makes copies.
        if copy && Instant::now().duration_since(first_sent) >= REPLY_KEPT {
            if let Some(at) = at {
                absorbed(at);
            }
            continue;
        }
        let key = (from, reply_tag);
        {
            let mut s = seen.lock().unwrap();
            s.forget_old();
            let again = s.replies.get(&key);
            // A copy of a request taken already: TCP hands a segment to the server once.
            if copy && again.is_some() {
                if let Some(at) = at {
                    absorbed(at);
                }
                continue;
            }
            match again {
                // A resent request (or the original of a copy that came first): answer it
                // again, or not yet.
                Some(Some(reply)) => {
                    let (ep, answer) = (ep.clone(), answer(at, from, reply.clone()));
                    madsim::task::spawn(async move {
                        send_reply(&ep, from, reply_tag, answer).await;
                    });
                    continue;
                }
                Some(None) => continue,
                None => {
                    s.replies.insert(key, None);
                    s.order.push_back((Instant::now(), key));
                }
            }
        }
        if let Some(at) = at {
            SERVED.with(|s| *s.borrow_mut().entry(at).or_default() += 1);
        }
        let (ep, handle, seen) = (ep.clone(), handle.clone(), seen.clone());
        let stalled = at.and_then(|at| held(at, from.ip()));
        let taken = at.map_or(0, half_open::starts);
        madsim::task::spawn(async move {
            // Taken, not run, until the stall's heal (a dropped sender, a new run, frees it too).
            if let (Some(stalled), Some(at)) = (stalled, at) {
                let _held = Held::new(at);
                let _ = stalled.await;
            }
            let reply = handle(cmd).await;
            if let Some(at) = at {
                collect_goals(at);
            }
            if let Some(r) = seen.lock().unwrap().replies.get_mut(&key) {
                *r = Some(reply.clone());
            }
            // A `half-open` fault began since it was taken: its reply has no connection to go
            // back on.
            if at.is_some_and(|at| half_open::reply_lost(at, from.ip(), taken)) {
                return;
            }
            send_reply(&ep, from, reply_tag, answer(at, from, reply)).await;
        });
    }
}

/// What the server at `at` sends `to` for `reply`: the reply, or a reset while a `reset` fault
/// is on it and does not spare `to`.
fn answer<R: Send + Sync + 'static>(at: Option<SocketAddr>, to: SocketAddr, reply: R) -> Payload {
    if at.is_some_and(|at| resets(at, to.ip())) {
        Box::new(Reset(RESET_FAULT))
    } else {
        Box::new(reply)
    }
}

pub fn now_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
