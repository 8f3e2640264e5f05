//! Messages between simulated nodes: request/response over madsim endpoints without
//! serialization (payloads are `Box<dyn Any>`) and without panics: a lost or late reply is a
//! timeout, never a crash of the simulation.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use aside::tier::TierError;
use madsim::net::Endpoint;
use madsim::time::Instant;

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

    pub async fn call<C: Send + Sync + 'static, R: Send + Sync + 'static>(
        &self,
        dst: SocketAddr,
        tag: u64,
        cmd: C,
        timeout: Duration,
    ) -> Result<R, TierError> {
        let reply_tag = self.seq.fetch_add(1, Relaxed);
        MESSAGES.fetch_add(1, Relaxed);
        let tier = match tag {
            TAG_REDIS => "redis",
            TAG_MEMCACHED => "memcached",
            TAG_PG => "postgres",
            _ => "sentinel",
        };
        if self
            .ep
            .send_to_raw(dst, tag, Box::new((reply_tag, cmd)))
            .await
            .is_err()
        {
            return Err(TierError::Unavailable {
                tier,
                detail: format!("{dst} unreachable"),
            });
        }
        // `Duration::MAX`: the caller enforces its own deadline (the cache times every tier
        // call), so no second timer goes on madsim's timer heap for every message.
        let reply = if timeout == Duration::MAX {
            Ok(self.ep.recv_from_raw(reply_tag).await)
        } else {
            madsim::time::timeout(timeout, self.ep.recv_from_raw(reply_tag)).await
        };
        match reply {
            Ok(Ok((payload, _))) => {
                payload
                    .downcast::<R>()
                    .map(|b| *b)
                    .map_err(|_| TierError::Refused {
                        tier,
                        detail: "reply of the wrong type".into(),
                    })
            }
            Ok(Err(e)) => Err(TierError::Unavailable {
                tier,
                detail: e.to_string(),
            }),
            Err(_) => Err(TierError::Timeout {
                tier,
                ms: timeout.as_millis() as u64,
            }),
        }
    }
}

thread_local! {
    /// Requests each server address answered in the run on this thread (madsim runs a whole
    /// simulation on the thread that calls `block_on`, so runs on other threads never mix in).
    static SERVED: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, u64>> =
        Default::default();
}

/// Forgets the counts of [`served`] (a run starts with this).
pub fn served_reset() {
    SERVED.with(|s| s.borrow_mut().clear());
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
    R: Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let handle = Arc::new(handle);
    for _ in 1..RECEIVERS {
        madsim::task::spawn(receive(ep.clone(), tag, handle.clone()));
    }
    receive(ep, tag, handle).await;
}

async fn receive<C, R, F, Fut>(ep: Endpoint, tag: u64, handle: Arc<F>)
where
    C: Send + Sync + 'static,
    R: Send + Sync + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    loop {
        let Ok((payload, from)) = ep.recv_from_raw(tag).await else {
            continue;
        };
        let Ok(b) = payload.downcast::<(u64, C)>() else {
            continue;
        };
        let (reply_tag, cmd) = *b;
        if let Ok(at) = ep.local_addr() {
            SERVED.with(|s| *s.borrow_mut().entry(at).or_default() += 1);
        }
        let (ep, handle) = (ep.clone(), handle.clone());
        madsim::task::spawn(async move {
            let reply = handle(cmd).await;
            MESSAGES.fetch_add(1, Relaxed);
            let _ = ep.send_to_raw(from, reply_tag, Box::new(reply)).await;
        });
    }
}

pub fn now_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
