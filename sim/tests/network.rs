//! The scenario's network configuration is the one messages see, and the network's copies of
//! requests are absorbed.
#![cfg(madsim)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use madsim::net::Endpoint;
use madsim::runtime::{Handle, Runtime};
use madsim::time::Instant;

#[test]
fn round_trips_take_the_configured_latency() {
    let sc = chaos::scenario::find("fill-race").unwrap();
    let rt = Runtime::with_seed_and_config(1, sim::run::config(&sc));
    let rtts: Vec<Duration> = rt.block_on(async {
        let h = Handle::current();
        let a: SocketAddr = "10.9.0.1:7".parse().unwrap();
        let b: SocketAddr = "10.9.0.2:7".parse().unwrap();
        h.create_node().ip(a.ip()).build().spawn(async move {
            let ep = Endpoint::bind(a).await.unwrap();
            loop {
                let (p, from) = ep.recv_from_raw(1).await.unwrap();
                ep.send_to_raw(from, 2, p).await.unwrap();
            }
        });
        h.create_node()
            .ip(b.ip())
            .build()
            .spawn(async move {
                madsim::time::sleep(Duration::from_millis(10)).await;
                let ep = Endpoint::bind(b).await.unwrap();
                let mut out = Vec::new();
                for i in 0..200u64 {
                    let t = Instant::now();
                    ep.send_to_raw(a, 1, Box::new(i)).await.unwrap();
                    ep.recv_from_raw(2).await.unwrap();
                    out.push(t.elapsed());
                }
                out
            })
            .await
            .unwrap()
    });
    // madsim sleeps at least 1 ms when a message is sent and when it is received.
    let floor = Duration::from_millis(4);
    let (lo, hi) = (
        floor + Duration::from_micros(sc.net_latency_us.0 * 2),
        floor + Duration::from_micros(sc.net_latency_us.1 * 2),
    );
    let min = *rtts.iter().min().unwrap();
    let max = *rtts.iter().max().unwrap();
    assert!(
        min >= lo && max <= hi + Duration::from_micros(50),
        "round trips {min:?}..{max:?}, configured {lo:?}..{hi:?}"
    );
}

/// A server at `at` answering `n` with `n + 1`, `slow_ms` later for `n == slow`; the count of
/// requests it ran.
fn counting_server(h: &Handle, at: SocketAddr, slow: u64, slow_ms: u64) -> Arc<AtomicU64> {
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    h.create_node().ip(at.ip()).build().spawn(async move {
        let ep = Endpoint::bind(at).await.unwrap();
        sim::net::serve(ep, sim::net::TAG_REDIS, move |n: u64| {
            counted.fetch_add(1, SeqCst);
            async move {
                if n == slow {
                    madsim::time::sleep(Duration::from_millis(slow_ms)).await;
                }
                n + 1
            }
        })
        .await
    });
    runs
}

/// Under a `duplicate` fault that copies every request, each request still runs once: the server
/// drops the copies of requests it took (counted as absorbed), as TCP hands a segment over once.
#[test]
fn a_copied_request_runs_once_and_its_copy_is_absorbed() {
    const CALLS: u64 = 100;
    let sc = chaos::scenario::find("fill-race").unwrap();
    let rt = Runtime::with_seed_and_config(1, sim::run::config(&sc));
    let server: SocketAddr = "10.9.0.1:7".parse().unwrap();
    let (runs, absorbed) = rt.block_on(async move {
        sim::net::served_reset();
        let h = Handle::current();
        let runs = counting_server(&h, server, u64::MAX, 0);
        let client = "10.9.0.2".parse().unwrap();
        h.create_node()
            .ip(client)
            .build()
            .spawn(async move {
                madsim::time::sleep(Duration::from_millis(10)).await;
                sim::net::duplicate_requests(1000);
                let rpc = sim::net::Rpc::bind(client).await;
                for i in 0..CALLS {
                    let timeout = Duration::from_secs(1);
                    let r: u64 = rpc
                        .call(server, sim::net::TAG_REDIS, i, timeout)
                        .await
                        .unwrap();
                    assert_eq!(r, i + 1);
                }
                // The last copies are up to 50 ms behind their originals.
                madsim::time::sleep(Duration::from_millis(200)).await;
            })
            .await
            .unwrap();
        (runs.load(SeqCst), sim::net::copies_absorbed(server))
    });
    assert_eq!(runs, CALLS, "a request ran twice");
    // A copy that overtakes its original runs it, and the original counts as a resend.
    assert!(
        absorbed > CALLS / 2 && absorbed <= CALLS,
        "{absorbed} of {CALLS} copies absorbed"
    );
}

/// Under a `half-open` fault a server drops its clients' requests unrun and unanswered (resends
/// too) and its replies to requests it took before; the nodes it spares are served. After the
/// heal a request first sent before it is answered with a reset, and a new one is served.
#[test]
fn a_half_open_server_drops_requests_and_resets_them_after_the_heal() {
    use aside::tier::TierError;
    const SLOW: u64 = 99;
    let sc = chaos::scenario::find("fill-race").unwrap();
    let rt = Runtime::with_seed_and_config(1, sim::run::config(&sc));
    let server: SocketAddr = "10.9.0.1:7".parse().unwrap();
    let (client, spared) = ("10.9.0.2".parse().unwrap(), "10.9.0.3".parse().unwrap());
    let runs = rt.block_on(async move {
        sim::net::served_reset();
        let h = Handle::current();
        let runs = counting_server(&h, server, SLOW, 300);
        let call = move |rpc: &sim::net::Rpc, n: u64, timeout_ms: u64| {
            let rpc = rpc.clone();
            async move {
                let timeout = Duration::from_millis(timeout_ms);
                rpc.call::<u64, u64>(server, sim::net::TAG_REDIS, n, timeout)
                    .await
            }
        };
        // A spared node, served in the middle of the fault (from about 0.1 s to 2.5 s below).
        let other = h.create_node().ip(spared).build().spawn(async move {
            madsim::time::sleep(Duration::from_millis(1500)).await;
            call(&sim::net::Rpc::bind(spared).await, 3, 1000).await
        });
        h.create_node()
            .ip(client)
            .build()
            .spawn(async move {
                madsim::time::sleep(Duration::from_millis(10)).await;
                let rpc = sim::net::Rpc::bind(client).await;
                assert_eq!(call(&rpc, 1, 1000).await.unwrap(), 2);
                // Taken, then the fault: it runs, and its reply is dropped.
                let slow = madsim::task::spawn(call(&rpc, SLOW, 1000));
                madsim::time::sleep(Duration::from_millis(100)).await;
                sim::net::half_open(server, Some(vec![spared]));
                let late = slow.await.unwrap();
                assert!(matches!(late, Err(TierError::Timeout { .. })), "{late:?}");
                let dropped = sim::net::dropped_at(server);
                assert!(dropped >= 1, "the slow call's resends are dropped");
                assert!(matches!(
                    call(&rpc, 2, 1000).await,
                    Err(TierError::Timeout { .. })
                ));
                assert!(
                    sim::net::dropped_at(server) >= dropped + 3,
                    "sent at 0, 200, 600 ms"
                );
                // First sent during the fault, resent after the heal: reset, never run.
                let across = madsim::task::spawn(call(&rpc, 4, 3000));
                madsim::time::sleep(Duration::from_millis(500)).await;
                sim::net::half_open(server, None);
                let e = across.await.unwrap().unwrap_err().to_string();
                assert!(e.contains("half-open"), "{e}");
                assert_eq!(call(&rpc, 5, 1000).await.unwrap(), 6, "sent after the heal");
            })
            .await
            .unwrap();
        assert_eq!(other.await.unwrap().unwrap(), 4, "a spared node");
        runs.load(SeqCst)
    });
    // 1, the slow one, the spared node's 3 and 5: the dropped and the reset ones never ran.
    assert_eq!(runs, 4);
}

/// A request the server took before a `half-open` fault and answered after its heal: the reply
/// is dropped (the client's end of that connection is gone), and the client's resend after the
/// heal is reset, as a real client's next segment on a dead connection is. It ran once.
#[test]
fn a_reply_to_a_request_taken_before_a_half_open_is_lost_even_after_the_heal() {
    const SLOW: u64 = 99;
    let sc = chaos::scenario::find("fill-race").unwrap();
    let rt = Runtime::with_seed_and_config(1, sim::run::config(&sc));
    let server: SocketAddr = "10.9.0.1:7".parse().unwrap();
    let client: SocketAddr = "10.9.0.2:0".parse().unwrap();
    let runs = rt.block_on(async move {
        sim::net::served_reset();
        let h = Handle::current();
        // Its reply comes at about 130 ms: after the heal (110 ms), before the first resend
        // (the retransmission timeout is 200 ms).
        let runs = counting_server(&h, server, SLOW, 120);
        h.create_node()
            .ip(client.ip())
            .build()
            .spawn(async move {
                madsim::time::sleep(Duration::from_millis(10)).await;
                let rpc = sim::net::Rpc::bind(client.ip()).await;
                let slow = madsim::task::spawn({
                    let rpc = rpc.clone();
                    async move {
                        let timeout = Duration::from_millis(3000);
                        rpc.call::<u64, u64>(server, sim::net::TAG_REDIS, SLOW, timeout)
                            .await
                    }
                });
                // Taken; the fault begins and heals while it runs.
                madsim::time::sleep(Duration::from_millis(50)).await;
                sim::net::half_open(server, Some(Vec::new()));
                madsim::time::sleep(Duration::from_millis(50)).await;
                sim::net::half_open(server, None);
                let e = slow.await.unwrap().unwrap_err().to_string();
                assert!(e.contains("half-open"), "{e}");
            })
            .await
            .unwrap();
        runs.load(SeqCst)
    });
    assert_eq!(runs, 1, "the slow request ran once");
}
