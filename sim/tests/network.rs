//! The scenario's network configuration is the one messages see, and the network's copies of
//! requests are absorbed.
#![cfg(madsim)]

use std::net::SocketAddr;
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

/// Under a `duplicate` fault that copies every request, each request still runs once: the server
/// drops the copies of requests it took (counted as absorbed), as TCP hands a segment over once.
#[test]
fn a_copied_request_runs_once_and_its_copy_is_absorbed() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    const CALLS: u64 = 100;
    let sc = chaos::scenario::find("fill-race").unwrap();
    let rt = Runtime::with_seed_and_config(1, sim::run::config(&sc));
    let server: SocketAddr = "10.9.0.1:7".parse().unwrap();
    let (runs, absorbed) = rt.block_on(async move {
        sim::net::served_reset();
        let h = Handle::current();
        let runs = Arc::new(AtomicU64::new(0));
        let counted = runs.clone();
        h.create_node().ip(server.ip()).build().spawn(async move {
            let ep = Endpoint::bind(server).await.unwrap();
            sim::net::serve(ep, sim::net::TAG_REDIS, move |n: u64| {
                counted.fetch_add(1, SeqCst);
                async move { n + 1 }
            })
            .await
        });
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
