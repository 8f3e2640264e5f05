//! The simulator's speed, measured beside a raw madsim echo in the same process (the machine is
//! noisy: only the ratio means much).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aside::Builtin;
use madsim::net::Endpoint;
use madsim::runtime::Handle;
use madsim::time::sleep;

use crate::net::{ip, serve, Rpc, MESSAGES};
use crate::run::{config, run};

/// What `seeds` runs of one scenario cost: (ops, messages, simulated ns, wall seconds).
fn measure(name: &str, seeds: u64) -> (u64, u64, u64, f64) {
    let sc = chaos::scenario::find(name).expect("a catalog scenario");
    MESSAGES.store(0, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let (mut ops, mut sim_ns) = (0u64, 0u64);
    for seed in 1..=seeds {
        let out = run(&sc, Builtin::Versioned, seed);
        ops += out.ops;
        sim_ns += out.sim_ns;
    }
    let wall = t.elapsed().as_secs_f64();
    let msgs = MESSAGES.load(std::sync::atomic::Ordering::Relaxed);
    (ops, msgs, sim_ns, wall)
}

/// `cargo sim bench`: simulated ops and messages per wall second over `seeds` runs of
/// fill-race/versioned, beside [`echo`] with the same message count; then the time compression
/// of the busiest scenario (cold-start: 30 clients over 200 keys, two tiers refilled at once).
pub fn bench(seeds: u64) -> ExitCode {
    let (ops, msgs, sim_ns, wall) = measure("fill-race", seeds);
    let (echo_wall, echo_msgs) = echo(msgs / seeds.max(1), seeds);
    println!("cargo sim bench: scenario fill-race, strategy versioned, {seeds} seeds, one process");
    println!("  harness:    {ops} ops, {msgs} messages in {wall:.2} s wall: {:.0} ops/s, {:.0} messages/s", ops as f64 / wall, msgs as f64 / wall);
    println!(
        "  compression: {:.1} simulated s per wall s",
        sim_ns as f64 / 1e9 / wall
    );
    println!(
        "  raw echo:   {echo_msgs} messages in {echo_wall:.2} s wall: {:.0} messages/s",
        echo_msgs as f64 / echo_wall
    );
    println!(
        "  harness / echo message rate: {:.2} (target >= 0.5)",
        (msgs as f64 / wall) / (echo_msgs as f64 / echo_wall)
    );
    let (ops, msgs, sim_ns, wall) = measure("cold-start", seeds);
    println!("busiest scenario: cold-start, strategy versioned, {seeds} seeds");
    println!(
        "  harness:    {ops} ops, {msgs} messages in {wall:.2} s wall: {:.0} ops/s, {:.0} messages/s",
        ops as f64 / wall,
        msgs as f64 / wall
    );
    println!(
        "  compression: {:.1} simulated s per wall s",
        sim_ns as f64 / 1e9 / wall
    );
    ExitCode::SUCCESS
}

/// A raw madsim request/response echo between two nodes: the ceiling for anything built on
/// madsim's network. Sends `per_run` round trips (two messages each) per seed; returns (wall
/// seconds, messages).
pub fn echo(per_run: u64, seeds: u64) -> (f64, u64) {
    let t = std::time::Instant::now();
    let mut msgs = 0;
    for seed in 1..=seeds {
        let rt = madsim::runtime::Runtime::with_seed_and_config(
            seed,
            config(&chaos::scenario::find("fill-race").expect("default")),
        );
        msgs += rt.block_on(async move {
            let h = Handle::current();
            let server = SocketAddr::new(ip(9, 1), 7);
            h.create_node()
                .name("echo-server")
                .ip(server.ip())
                .build()
                .spawn(async move {
                    let ep = Endpoint::bind(server).await.expect("bind");
                    serve(ep, 1, |x: u64| async move { x }).await;
                });
            let client = h.create_node().name("echo-client").ip(ip(9, 2)).build();
            client
                .spawn(async move {
                    sleep(Duration::from_millis(10)).await;
                    let rpc = Rpc::bind(ip(9, 2)).await;
                    // As many concurrent callers as the harness has clients.
                    let tasks: Vec<_> = (0..12u64)
                        .map(|c| {
                            let rpc = rpc.clone();
                            madsim::task::spawn(async move {
                                for i in 0..per_run / 2 / 12 {
                                    let _: Result<u64, _> =
                                        rpc.call(server, 1, i + c, Duration::from_secs(1)).await;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                    per_run / 2 / 12 * 12 * 2
                })
                .await
                .unwrap_or(0)
        });
    }
    (t.elapsed().as_secs_f64(), msgs)
}
