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
    measure_with(name, seeds, Builtin::Versioned).0
}

/// [`measure`] with `strategy`, and how much the resident set grew over the runs after the first
/// (the first sets up what every run reuses), in bytes.
fn measure_with(name: &str, seeds: u64, strategy: Builtin) -> ((u64, u64, u64, f64), Option<u64>) {
    let sc = chaos::scenario::find(name).expect("a catalog scenario");
    MESSAGES.store(0, std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    let (mut ops, mut sim_ns, mut after_first) = (0u64, 0u64, None);
    for seed in 1..=seeds {
        let out = run(&sc, strategy, seed);
        ops += out.ops;
        sim_ns += out.sim_ns;
        if seed == 1 {
            after_first = resident_bytes();
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let msgs = MESSAGES.load(std::sync::atomic::Ordering::Relaxed);
    let grew = after_first
        .zip(resident_bytes())
        .map(|(a, b)| b.saturating_sub(a));
    ((ops, msgs, sim_ns, wall), grew)
}

/// This process's resident set (VmRSS), where /proc says.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// `cargo sim bench`: simulated ops and messages per wall second over `seeds` runs of
/// fill-race/versioned, beside [`echo`] with the same message count; then the time compression
/// of the busiest scenario (cold-start: 30 clients over 200 keys, two tiers refilled at once);
/// then how much memory runs keep after they end (durable: its invalidator waits to the end).
/// With `rate_only`, the first comparison alone.
pub fn bench(seeds: u64, explore_runs: usize, rate_only: bool) -> ExitCode {
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
        "  harness / echo message rate: {:.2} (goal >= 0.8; docs/PROFILE.md: where the rest goes)",
        (msgs as f64 / wall) / (echo_msgs as f64 / echo_wall)
    );
    if rate_only {
        return ExitCode::SUCCESS;
    }
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
    // Every run must give back what it took: a 200-seed matrix is 4200 runs in one process.
    let n = seeds.max(2);
    let (_, grew) = measure_with("fill-race", n, Builtin::Durable);
    match grew {
        Some(b) => println!(
            "memory: fill-race, strategy durable, {n} seeds: the resident set grew {:.1} MB over the {} runs after the first ({:.0} KB per run)",
            b as f64 / 1e6,
            n - 1,
            b as f64 / 1e3 / (n - 1) as f64
        ),
        None => println!("memory: no VmRSS in /proc/self/status here"),
    }
    exploration(explore_runs);
    ExitCode::SUCCESS
}

/// Coverage goals reached by `runs` runs of `durable` in each exploration mode, side by side,
/// scaled to 1,000 runs: how many goals any run reached, how many only a few did, and each goal.
fn exploration(runs: usize) {
    use crate::explore::{explore, per_goal, Mode};
    let per_1000 = |n: u64| n as f64 * 1000.0 / runs.max(1) as f64;
    let t = Instant::now();
    let modes: Vec<(Mode, std::collections::BTreeMap<aside::goal::Goal, u64>)> = Mode::ALL
        .iter()
        .map(|&m| (m, per_goal(&explore(m, Builtin::Durable, runs, 1, None))))
        .collect();
    println!(
        "exploration: {runs} runs of durable per mode from seed 1 ({:.0} s wall); coverage goals per 1,000 runs (`cargo sim explore`)",
        t.elapsed().as_secs_f64()
    );
    for (m, goals) in &modes {
        println!(
            "  {:<14} {:>2} of {} goals reached, {:>2} of them by fewer than 1 % of runs",
            m.name(),
            goals.len(),
            aside::goal::Goal::ALL.len(),
            goals.values().filter(|&&n| n * 100 < runs as u64).count()
        );
    }
    println!(
        "  {:<28} {:>8} {:>8} {:>14}",
        "goal", "random", "swarm", "swarm, guided"
    );
    for &g in aside::goal::Goal::ALL {
        let cells: Vec<String> = modes
            .iter()
            .map(|(_, goals)| format!("{:.0}", per_1000(goals.get(&g).copied().unwrap_or(0))))
            .collect();
        println!(
            "  {:<28} {:>8} {:>8} {:>14}",
            g.name(),
            cells[0],
            cells[1],
            cells[2]
        );
    }
}

/// A raw madsim request/response echo between two nodes: the ceiling for anything built on
/// madsim's network. Sends `per_run` round trips (two messages each) per seed; returns (wall
/// seconds, messages). Never inlined: `ci/profile.sh` counts the instructions spent inside it.
#[inline(never)]
pub fn echo(per_run: u64, seeds: u64) -> (f64, u64) {
    let t = std::time::Instant::now();
    let mut msgs = 0;
    let cfg = config(&chaos::scenario::find("fill-race").expect("default"));
    for seed in 1..=seeds {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, cfg.clone());
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
