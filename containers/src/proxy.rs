//! Latency between the app nodes and the servers, through a latency proxy of our own: one proxy
//! per server in the runner's process, listening on the cluster network's gateway address. The
//! app nodes run in containers of their own, and a DNAT rule in each one's nat table
//! ([`Proxies::dnat_rules`], added before the app node opens any connection) sends its
//! connections for `server:port` to the server's proxy instead: transparent to the clients, so
//! the master address a Sentinel reports still goes through the proxy.
//!
//! A latency fault sets one figure that every proxy reads per chunk: a chunk read from either
//! side is delivered `one_way_ms` after it was read, and never before a chunk read earlier, so a
//! round trip between an app node and any server takes twice the fault's one-way latency longer.
//! The heal sets it back to zero. Connections already open see both at once, because nothing is
//! re-created. (We used noxious, the Rust port of Toxiproxy, before: it re-creates a
//! connection's links on every toxic change, and the task that watched the old links removes the
//! new ones from its table when it ends, so a later change, the heal included, sometimes never
//! reached a connection already open; `containers/tests/nemesis.rs` caught a round trip still
//! delayed after the heal.)
//!
//! The simulator's latency fault delays every link, server to server too (replication, the
//! Sentinels); here only the app nodes' links are delayed.
//!
//! A slow-queries fault sets a figure of one proxy's own, read per chunk of the server's
//! replies only: each reply of that PostgreSQL server reaches the app nodes `reply_ms` later,
//! so every query they send takes that much longer, and replication is untouched (as in the
//! simulator, which slows the app nodes' queries and not the replica's log reads).
//!
//! A stall fault sets a flag of one proxy's own, read per chunk a client sends: while it is on, the
//! chunk waits in the proxy (connections are still accepted, and a new connection's handshake
//! waits like any request), and the heal lets the held chunks go on in order, so the server runs
//! late what its clients gave up on (Toxiproxy's `timeout` with no timeout).
//!
//! A reset fault sets a flag of one proxy's own, read per chunk of the server's replies: while it
//! is on, the proxy resets the client's connection (`SO_LINGER` 0, then close: an RST, no FIN)
//! instead of delivering the reply, so the command ran and its client sees ECONNRESET
//! (Toxiproxy's `reset_peer`). Connections opened while it is on are accepted and reset at their
//! first reply, which for PostgreSQL and Redis is the handshake's: a client that reconnects
//! during the fault runs no command until the heal (the simulator's servers, which have no
//! handshake, run each request before they reset it).
//!
//! A half-open fault ends the server's side of every connection open while it is on, without a
//! FIN: the proxy drops what either side sends on such a connection (counting the clients'
//! chunks) and at the heal resets it (`SO_LINGER` 0, then close), as a server that forgot a
//! connection answers its next segment. Whether a connection is one of them is read from one
//! value per proxy, the fault's state and the number of its heals so far: a fault on now, or a
//! heal since the connection was accepted.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::Error;

/// The most bytes one read takes from a socket (one chunk, delivered whole).
const CHUNK: usize = 16 * 1024;
/// Chunks one direction of a connection may hold in flight before it stops reading.
const IN_FLIGHT: usize = 1024;

struct Proxy {
    name: String,
    /// Where the app nodes' connections for `upstream` are sent.
    listen: SocketAddr,
    upstream: SocketAddr,
    /// What this server's replies wait on top of `one_way_ms` (a slow-queries fault), in ms.
    reply_ms: Arc<AtomicU32>,
    /// Whether a reply resets its client's connection instead (a reset fault).
    reset: Arc<AtomicBool>,
    /// Whether what clients send is held, not passed on (while a stall fault is on), and how
    /// many are (overlapping ones end at the last heal).
    stall: watch::Sender<bool>,
    stalls: std::sync::Mutex<u32>,
    /// Connections whose next request waits on the stall now.
    held: Arc<AtomicU64>,
    /// Whether a half-open fault is on, and its heals so far; how many are on (overlapping ones
    /// end at the last heal).
    half_open: watch::Sender<HalfOpen>,
    half_opens: std::sync::Mutex<u32>,
    /// Chunks clients sent on connections a half-open fault ended, dropped.
    dropped: Arc<AtomicU64>,
}

/// A proxy's half-open faults: whether one is on, and how many heals there were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HalfOpen {
    on: bool,
    heals: u64,
}

/// Whether a half-open fault ended one connection: the proxy's faults now, and as they were
/// when the connection was accepted.
#[derive(Clone)]
struct Forgotten {
    gone: watch::Receiver<HalfOpen>,
    born: HalfOpen,
}

impl Forgotten {
    /// A fault on now, or a heal since the accept: the server's end is gone.
    fn now(&self) -> bool {
        let h = *self.gone.borrow();
        h.on || h.heals > self.born.heals
    }
}

/// The proxies of one run; dropping them stops every proxy and closes every connection.
pub struct Proxies {
    proxies: Vec<Proxy>,
    /// The one-way latency every proxy adds now, in milliseconds (0: none).
    one_way_ms: Arc<AtomicU32>,
    /// Sends `true` when the proxies are dropped: accept loops and connections end.
    stop: watch::Sender<bool>,
}

impl Proxies {
    /// Starts a proxy on `gateway` for each `(name, server)`.
    pub async fn start(
        gateway: IpAddr,
        servers: &[(String, SocketAddr)],
    ) -> Result<Proxies, Error> {
        let (stop, _) = watch::channel(false);
        let one_way_ms = Arc::new(AtomicU32::new(0));
        let mut proxies = Vec::new();
        for (name, upstream) in servers {
            let listener = TcpListener::bind((gateway, 0)).await.map_err(|e| {
                Error::Docker(format!("no port on {gateway} for the {name} proxy: {e}"))
            })?;
            let listen = listener
                .local_addr()
                .map_err(|e| Error::Docker(format!("the {name} proxy's address: {e}")))?;
            let reply_ms = Arc::new(AtomicU32::new(0));
            let reset = Arc::new(AtomicBool::new(false));
            let (stall, stalled) = watch::channel(false);
            let held = Arc::new(AtomicU64::new(0));
            let (half_open, gone) = watch::channel(HalfOpen::default());
            let dropped = Arc::new(AtomicU64::new(0));
            tokio::spawn(accept(
                listener,
                *upstream,
                Delays {
                    one_way_ms: one_way_ms.clone(),
                    reply_ms: reply_ms.clone(),
                    reset: reset.clone(),
                    stalled,
                    held: held.clone(),
                    gone,
                    dropped: dropped.clone(),
                },
                stop.subscribe(),
            ));
            proxies.push(Proxy {
                name: name.clone(),
                listen,
                upstream: *upstream,
                reply_ms,
                reset,
                stall,
                stalls: std::sync::Mutex::new(0),
                held,
                half_open,
                half_opens: std::sync::Mutex::new(0),
                dropped,
            });
        }
        Ok(Proxies {
            proxies,
            one_way_ms,
            stop,
        })
    }

    /// iptables arguments (nat table, OUTPUT) that send an app node's connections for each
    /// server to its proxy.
    pub fn dnat_rules(&self) -> Vec<Vec<String>> {
        self.proxies
            .iter()
            .map(|p| {
                [
                    "-t",
                    "nat",
                    "-A",
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "-d",
                    &p.upstream.ip().to_string(),
                    "--dport",
                    &p.upstream.port().to_string(),
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &p.listen.to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
            .collect()
    }

    /// The proxy in front of `upstream`, to time a round trip through it.
    pub fn front_of(&self, upstream: SocketAddr) -> Option<(String, SocketAddr)> {
        self.proxies
            .iter()
            .find(|p| p.upstream == upstream)
            .map(|p| (p.name.clone(), p.listen))
    }

    /// Adds `one_way_ms` of latency to both directions of every proxy (`None`: removes it), on
    /// every connection, open or new, from the next chunk read on.
    pub async fn latency(&self, one_way_ms: Option<u32>) -> Result<(), Error> {
        self.one_way_ms
            .store(one_way_ms.unwrap_or(0), Ordering::SeqCst);
        Ok(())
    }

    /// Holds every reply of the server at `upstream` `reply_ms` longer (`None`: no longer), on
    /// every connection, open or new, from the next chunk read on.
    pub fn slow_replies(&self, upstream: SocketAddr, reply_ms: Option<u32>) -> Result<(), Error> {
        let p = self.of(upstream)?;
        p.reply_ms.store(reply_ms.unwrap_or(0), Ordering::SeqCst);
        Ok(())
    }

    /// With `on`, the next reply of the server at `upstream` on every connection, open or new,
    /// resets that connection instead of reaching the client; without, replies go through.
    pub fn reset_replies(&self, upstream: SocketAddr, on: bool) -> Result<(), Error> {
        self.of(upstream)?.reset.store(on, Ordering::SeqCst);
        Ok(())
    }

    /// With `on`, what clients send the server at `upstream` on every connection, open or new,
    /// is held in the proxy (connections are still accepted); without, the held chunks go on,
    /// in order, and so does what follows.
    pub fn stall(&self, upstream: SocketAddr, on: bool) -> Result<(), Error> {
        let p = self.of(upstream)?;
        let mut stalls = p.stalls.lock().unwrap_or_else(|e| e.into_inner());
        *stalls = if on {
            *stalls + 1
        } else {
            stalls.saturating_sub(1)
        };
        p.stall.send_replace(*stalls > 0);
        Ok(())
    }

    /// How many connections to the server at `upstream` have a request waiting in its proxy on
    /// a stall now (a connection's later chunks queue behind its first).
    pub fn held(&self, upstream: SocketAddr) -> Result<u64, Error> {
        Ok(self.of(upstream)?.held.load(Ordering::SeqCst))
    }

    /// With `on`, the server at `upstream`'s end of every connection open now or opened while
    /// the fault is on is gone: what either side sends on one is dropped. Without (at the last
    /// of overlapping faults' heals), each of those connections is reset; new ones are served.
    pub fn half_open(&self, upstream: SocketAddr, on: bool) -> Result<(), Error> {
        let p = self.of(upstream)?;
        let mut n = p.half_opens.lock().unwrap_or_else(|e| e.into_inner());
        let was = *n > 0;
        *n = if on { *n + 1 } else { n.saturating_sub(1) };
        let now = *n > 0;
        if now && !was {
            // A look counts this fault's drops alone.
            p.dropped.store(0, Ordering::SeqCst);
        }
        p.half_open.send_modify(|h| {
            h.on = now;
            if was && !now {
                h.heals += 1;
            }
        });
        Ok(())
    }

    /// How many chunks clients sent the server at `upstream` its latest half-open fault dropped.
    pub fn dropped(&self, upstream: SocketAddr) -> Result<u64, Error> {
        Ok(self.of(upstream)?.dropped.load(Ordering::SeqCst))
    }

    /// The proxy in front of `upstream`.
    fn of(&self, upstream: SocketAddr) -> Result<&Proxy, Error> {
        (self.proxies.iter())
            .find(|p| p.upstream == upstream)
            .ok_or_else(|| Error::Docker(format!("no proxy in front of {upstream}")))
    }
}

/// What one proxy's chunks wait: the network's latency both ways, and its server's replies
/// their own; whether its server's replies reset their connections instead; and whether what
/// clients send is held (`true` while a stall is on).
#[derive(Clone)]
struct Delays {
    one_way_ms: Arc<AtomicU32>,
    reply_ms: Arc<AtomicU32>,
    reset: Arc<AtomicBool>,
    stalled: watch::Receiver<bool>,
    held: Arc<AtomicU64>,
    /// The proxy's half-open faults, and the clients' chunks they dropped.
    gone: watch::Receiver<HalfOpen>,
    dropped: Arc<AtomicU64>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One proxy's accept loop: each connection is paired with one to `upstream`.
async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    delays: Delays,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => {
                    tracing::warn!(%upstream, "proxy accept: {e}");
                    continue;
                }
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let delays = delays.clone();
        let stop = stop.clone();
        // The half-open faults as they were at the accept (not after the connection upstream: one
        // accepted during a fault is one of its connections, however long that connect takes).
        let forgotten = Forgotten {
            born: *delays.gone.borrow(),
            gone: delays.gone.clone(),
        };
        tokio::spawn(async move {
            // A server that refuses the connection closes the client's at once, as it would
            // have refused the client.
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = pump(
                client_read,
                server_write,
                delays.one_way_ms.clone(),
                Direction::Requests(delays.stalled, delays.held, delays.dropped),
                forgotten.clone(),
            );
            let down = pump(
                server_read,
                client_write,
                delays.one_way_ms,
                Direction::Replies(delays.reply_ms, delays.reset),
                forgotten,
            );
            tokio::pin!(up, down);
            // Both directions to their ends; a reset (a reply's, or a half-open fault's heal)
            // ends the connection at once, and dropping the client's read half (in `up`)
            // closes its socket with the RST.
            let both = async {
                tokio::select! {
                    ended = &mut down => if ended == Ended::Closed { (&mut up).await; },
                    _ = &mut up => { (&mut down).await; }
                }
            };
            let mut stop = stop;
            tokio::select! {
                _ = both => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}

/// How one direction of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// An end of stream passed on, or an error on either side.
    Closed,
    /// A server's reply reset its client's connection (a reset fault), or a half-open fault it
    /// lived through healed: the caller must drop the client's read half at once, which sends
    /// the RST.
    Reset,
}

/// Resets the client's connection `to` writes to: `SO_LINGER` 0 and no FIN, so the socket's
/// close, when its read half is dropped, sends an RST.
fn abort(to: OwnedWriteHalf) {
    if let Err(e) = to.as_ref().set_zero_linger() {
        tracing::warn!("proxy reset: SO_LINGER 0: {e}");
    }
    to.forget();
}

/// One held request, counted for as long as it lives.
struct Counted<'a>(&'a AtomicU64);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicU64) -> Counted<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which way a [`pump`] carries chunks, and what acts on that way alone.
enum Direction {
    /// A client's requests, held while the receiver reads `true` (a stall), counted while held,
    /// and counted in the last when a half-open fault drops them.
    Requests(watch::Receiver<bool>, Arc<AtomicU64>, Arc<AtomicU64>),
    /// A server's replies: their extra milliseconds (a slow-queries fault) and the reset flag.
    Replies(Arc<AtomicU32>, Arc<AtomicBool>),
}

/// One direction of a connection: every chunk read is written `one_way_ms` (plus, for a
/// server's replies, their extra milliseconds; both as they were when the chunk was read)
/// later, in order. An end of stream is passed on after the chunks before it; an error on either
/// side ends this direction. A server's reply due while the reset flag is on resets the
/// client's connection instead ([`Ended::Reset`]); a client's request due while a stall is on
/// waits for its heal. A chunk due once a half-open fault ended the connection is dropped, and
/// that fault's heal resets the client's connection (the server's replies' direction holds it).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    one_way_ms: Arc<AtomicU32>,
    way: Direction,
    forgotten: Forgotten,
) -> Ended {
    let (extra_ms, reset, mut stalled, dropped) = match way {
        Direction::Requests(stalled, held, dropped) => {
            (None, None, Some((stalled, held)), Some(dropped))
        }
        Direction::Replies(extra_ms, reset) => (Some(extra_ms), Some(reset), None, None),
    };
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let extra = extra_ms.as_ref().map_or(0, |e| e.load(Ordering::SeqCst));
                    let delay = u64::from(one_way_ms.load(Ordering::SeqCst) + extra);
                    let due = Instant::now() + Duration::from_millis(delay);
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    // The heal of a half-open fault this connection lived through: the replies' direction resets
    // the client's connection then. (A closed sender, the proxies dropped, never heals.)
    let mut heals = forgotten.gone.clone();
    let born = forgotten.born;
    let resets_at_heal = reset.is_some();
    let healed = async move {
        if !resets_at_heal || heals.wait_for(|h| h.heals > born.heals).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let write = async move {
        tokio::pin!(healed);
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                () = &mut healed => {
                    abort(to);
                    return Ended::Reset;
                }
            };
            let Some((due, chunk)) = next else {
                // The server closed its end: a connection a half-open fault ended hears nothing
                // of it (no FIN), and is reset at the heal like the others.
                if resets_at_heal && forgotten.now() {
                    healed.await;
                    abort(to);
                    return Ended::Reset;
                }
                break;
            };
            // Only a chunk still due later waits on the timer: tokio's timer rounds a deadline
            // up to its next millisecond tick, so sleeping until "now" held every chunk up to a
            // millisecond each way with no fault on, and put the L1-hit p99 of every
            // latency-spike run over its bound.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if let Some((stalled, held)) = stalled.as_mut() {
                if *stalled.borrow() && !forgotten.now() {
                    // Counted while it waits, also when the connection is dropped meanwhile.
                    let _held = Counted::new(held);
                    // A closed sender (the proxies dropped) ends the wait too.
                    let _ = stalled.wait_for(|on| !*on).await;
                }
            }
            // After a stall's wait too: a half-open fault that began meanwhile drops it.
            if forgotten.now() {
                if let Some(d) = &dropped {
                    d.fetch_add(1, Ordering::SeqCst);
                }
                continue;
            }
            if reset.as_ref().is_some_and(|r| r.load(Ordering::SeqCst)) {
                abort(to);
                return Ended::Reset;
            }
            if to.write_all(&chunk).await.is_err() {
                return Ended::Closed;
            }
        }
        let _ = to.shutdown().await;
        Ended::Closed
    };
    tokio::pin!(write);
    // The write side may end first (a reset, a client gone): what is left to read is dropped.
    tokio::select! {
        biased;
        ended = &mut write => ended,
        () = read => write.await,
    }
}
