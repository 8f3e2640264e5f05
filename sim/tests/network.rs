//! The scenario's network configuration is the one messages see.
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
