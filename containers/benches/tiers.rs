//! `cargo bench -p containers`: the library against real servers, side by side in one run.
//!
//! 1. L1 hit path: `aside get` of a warm key vs a raw redis-rs GET on the same connection,
//!    interleaved call by call (target: within 1.10x at p50).
//! 2. Miss path: round trips and sequential steps per cold read, counted by wrapping every
//!    tier, beside the same strategy sent one command at a time; and what sqlx's
//!    ping before every acquire would add to each database call, beside the library's pool
//!    (which pings only a connection idle for `PING_IF_IDLE_FOR`), interleaved.
//! 3. Throughput: 64 concurrent tasks of `aside get` vs `redis-benchmark -c 64 -t get`.
//! 4. `durable` beside `versioned`: write p50 and L1-hit p50, interleaved call by call, with
//!    `durable`'s outbox invalidator running.
//! 5. The chaos runner's latency proxy with no fault on: a Redis PING round trip direct vs
//!    through the proxy, interleaved (the hop every app node of `aside chaos` pays).
//! 6. Typed values' codec (`write_as`/`get_as`: MessagePack with field names) beside JSON: bytes
//!    per value and encode+decode time, interleaved (no servers).
//!
//! 7. Pattern invalidation of one group of 10 and of 10,000 keys cached in both tiers: the
//!    generation bump (a grouped namespace) beside SCAN (a namespace that is not): round trips
//!    and time, and a sample of the keys read afterwards to show they really went.
//!
//! Prints figures; never fails on speed. `--quick` for a smoke run.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aside::backend::{Memcached, Postgres, Redis};
use aside::{Builtin, CacheAside, CacheConfig, Key, Pool, RedisLike, Ring, Strategy};
use containers::{Cluster, ClusterSpec};

#[path = "tiers/counted.rs"]
mod counted;
use counted::{counted, Counted, OneByOne, Stepwise, Tally};

#[path = "tiers/codec.rs"]
mod codec;
use codec::codec_figures;

fn pct(mut v: Vec<Duration>, q: f64) -> Duration {
    v.sort();
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The bench on a thread and workers with room for a debug build's futures: the test command's
/// smoke run (`ci/benchmarks.sh --quick`) builds it with `--profile dev`, whose futures
/// overflowed the main thread's 8 MiB.
fn main() {
    const STACK_BYTES: usize = 256 << 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(STACK_BYTES)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    std::thread::Builder::new()
        .name("bench".into())
        .stack_size(STACK_BYTES)
        .spawn(move || runtime.block_on(bench()))
        .expect("the bench's thread")
        .join()
        .expect("the bench ended without a panic");
}

async fn bench() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 2_000 } else { 20_000 };
    codec_figures(n);
    let spec = ClusterSpec {
        redis_replica: false,
        sentinels: 0,
        memcached: 3,
        pg_replica: false,
        ..ClusterSpec::default()
    };
    let cluster = Cluster::start(spec).await.unwrap_or_else(|e| {
        eprintln!("bench: {e}");
        std::process::exit(2)
    });
    let cfg = CacheConfig::default().validate().unwrap();
    let redis = Redis::direct(
        &format!("redis://{}", cluster.redis_master.addr()),
        cfg.l1_timeout(),
    )
    .await
    .unwrap();
    let addrs = cluster.memcached_addrs();
    let pg = Postgres::connect(&cluster.pg_url(), None, 16)
        .await
        .unwrap();
    pg.migrate().await.unwrap();
    let tally = Arc::new(Tally::default());
    let nodes = addrs
        .iter()
        .map(|a| counted(Memcached::new(a.clone(), 32), &tally, 1))
        .collect();
    let pool = Pool::new(Ring::new(&addrs).unwrap(), nodes, &cfg);
    let cache = Arc::new(CacheAside::new(
        counted(redis.clone(), &tally, 0),
        pool,
        counted(pg.clone(), &tally, 2),
        Builtin::Versioned,
        cfg.clone(),
        "bench",
    ));
    println!(
        "aside vs raw clients, real servers in containers ({n} ops per figure, 2 cores shared)\n"
    );

    // 1. L1 hit path, interleaved with raw GETs on the same connection.
    let k = Key::new("posts", 1, "warm").unwrap();
    cache.write(&k, &[b'x'; 200]).await.unwrap();
    cache.get(&k).await.unwrap();
    let mut conn = redis.connection().await.unwrap();
    let (mut ours, mut raw) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let g = cache.get(&k).await.unwrap().unwrap();
        ours.push(t.elapsed());
        assert_eq!(g.source, aside::Source::L1);
        let t = Instant::now();
        let _: Option<Vec<u8>> = redis::cmd("GET")
            .arg(k.as_str())
            .query_async(&mut conn)
            .await
            .unwrap();
        raw.push(t.elapsed());
    }
    let (p50a, p50r) = (pct(ours.clone(), 0.5), pct(raw.clone(), 0.5));
    println!("L1 hit path          p50      p99");
    println!(
        "  aside get          {:>8} {:>8}",
        us(p50a),
        us(pct(ours, 0.99))
    );
    println!(
        "  raw redis-rs GET   {:>8} {:>8}",
        us(p50r),
        us(pct(raw, 0.99))
    );
    println!(
        "  ratio at p50       {:.3}x (target <= 1.10x)\n",
        p50a.as_secs_f64() / p50r.as_secs_f64()
    );

    // 2. Round trips of one cold read, and of one write.
    miss_path_figures(&cache, &redis, &pg, &addrs, &cfg, &tally, n / 4).await;
    let cold = Key::new("posts", 1, "cold").unwrap();
    cache.write(&cold, b"cold").await.unwrap();
    let before = tally.calls().iter().sum::<u64>();
    cache.write(&cold, b"again").await.unwrap();
    println!(
        "write: {} round trips (DB statement, L1 tombstone script, L2 gets+cas)\n",
        tally.calls().iter().sum::<u64>() - before
    );

    // 2b. What sqlx's ping before every acquire costs each database call: a pool that pings
    // (sqlx's default) beside this library's (a ping only after PING_IF_IDLE_FOR idle), one
    // connection each, the same read interleaved.
    let pinged = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.pg_url())
        .await
        .unwrap();
    let ours = Postgres::connect(&cluster.pg_url(), None, 1).await.unwrap();
    let read = "SELECT version, payload FROM aside_rows WHERE key = $1";
    let (mut bypass, mut pinging) = (Vec::with_capacity(n / 4), Vec::with_capacity(n / 4));
    for _ in 0..n / 4 {
        for (pool, into) in [(ours.primary(), &mut bypass), (&pinged, &mut pinging)] {
            let t = Instant::now();
            sqlx::query(read)
                .bind(cold.as_str())
                .fetch_optional(pool)
                .await
                .unwrap();
            into.push(t.elapsed());
        }
    }
    let (b50, p50) = (pct(bypass.clone(), 0.5), pct(pinging.clone(), 0.5));
    println!(
        "a pooled database read ({} each, interleaved)              p50      p99",
        n / 4
    );
    let ours_label = format!(
        "aside: ping only after {} ms idle",
        aside::backend::PING_IF_IDLE_FOR.as_millis()
    );
    println!(
        "  {ours_label:<43} {:>8} {:>8}",
        us(b50),
        us(pct(bypass, 0.99))
    );
    println!(
        "  {:<43} {:>8} {:>8}",
        "sqlx's default: ping before every acquire",
        us(p50),
        us(pct(pinging, 0.99))
    );
    println!(
        "  the ping's cost per database call at p50: {} ({:.2}x)\n",
        us(p50.saturating_sub(b50)),
        p50.as_secs_f64() / b50.as_secs_f64()
    );

    // 3. Throughput, 64 tasks, warm keys, vs redis-benchmark.
    let keys: Vec<Key> = (0..1000)
        .map(|i| Key::new("posts", 1, &format!("t{i}")).unwrap())
        .collect();
    for k in &keys {
        cache.write(k, &[b'y'; 100]).await.unwrap();
        cache.get(k).await.unwrap();
    }
    let total = n as u64 * 10;
    let done = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(keys);
    let t = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (cache, done, keys) = (cache.clone(), done.clone(), keys.clone());
            tokio::spawn(async move {
                let mut j = i;
                while done.fetch_add(1, Relaxed) < total {
                    cache.get(&keys[j % keys.len()]).await.unwrap();
                    j += 64;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let ours = total as f64 / t.elapsed().as_secs_f64();
    let ip = cluster.redis_master.ip.to_string();
    let nreq = total.to_string();
    let args = [
        "-h",
        ip.as_str(),
        "-p",
        "6379",
        "-c",
        "64",
        "-n",
        nreq.as_str(),
        "-t",
        "get",
        "-d",
        "200",
        "-q",
    ];
    let (out, where_) = match std::process::Command::new("redis-benchmark")
        .args(args)
        .output()
    {
        Ok(o) => (o, "host"),
        Err(_) => {
            let id = cluster.redis_master.container.id().to_string();
            let mut full = vec!["exec", id.as_str(), "redis-benchmark"];
            full.extend(args);
            (
                std::process::Command::new("docker")
                    .args(&full)
                    .output()
                    .expect("docker exec"),
                "inside the container (install redis-tools for the host figure)",
            )
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs = text
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())
        .unwrap_or(0.0);
    println!("throughput, 64 concurrent tasks     ops/s");
    println!("  aside get (warm, 1000 keys)       {ours:>10.0}");
    println!("  redis-benchmark GET -c 64         {theirs:>10.0}   ({where_})");
    println!(
        "  aside / redis-benchmark           {:.2}",
        ours / theirs.max(1.0)
    );

    // 4. durable beside versioned, on the same servers and connections, interleaved.
    let strategy_cache = |b: Builtin, name: &str| {
        let nodes = addrs
            .iter()
            .map(|a| Memcached::new(a.clone(), 32))
            .collect();
        let pool = Pool::new(Ring::new(&addrs).unwrap(), nodes, &cfg);
        Arc::new(CacheAside::new(
            redis.clone(),
            pool,
            pg.clone(),
            b,
            cfg.clone(),
            name,
        ))
    };
    let versioned = strategy_cache(Builtin::Versioned, "bench-versioned");
    let durable = strategy_cache(Builtin::Durable, "bench-durable");
    let invalidator = tokio::spawn(durable.invalidator().expect("durable runs an invalidator"));
    let m = n / 10;
    let (mut wv, mut wd, mut hv, mut hd) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..m {
        let kv = Key::new("posts", 1, &format!("v{}", i % 100)).unwrap();
        let kd = Key::new("posts", 1, &format!("d{}", i % 100)).unwrap();
        let t = Instant::now();
        versioned.write(&kv, &[b'z'; 200]).await.unwrap();
        wv.push(t.elapsed());
        let t = Instant::now();
        durable.write(&kd, &[b'z'; 200]).await.unwrap();
        wd.push(t.elapsed());
        versioned.get(&kv).await.unwrap();
        durable.get(&kd).await.unwrap();
        let t = Instant::now();
        let g = versioned.get(&kv).await.unwrap().unwrap();
        hv.push(t.elapsed());
        assert_eq!(g.source, aside::Source::L1);
        let t = Instant::now();
        let g = durable.get(&kd).await.unwrap().unwrap();
        let took = t.elapsed();
        // A hit on L1, unless a fence (a failed tier call) sent the read on: counted below.
        if g.source == aside::Source::L1 {
            hd.push(took);
        }
    }
    invalidator.abort();
    println!("\ndurable beside versioned ({m} writes and {m} L1 hits each, interleaved; durable's invalidator running)");
    println!("                     versioned   durable     ratio");
    let row = |what: &str, v: Vec<Duration>, d: Vec<Duration>| {
        if v.is_empty() || d.is_empty() {
            println!("  {what:<18} no samples");
            return;
        }
        let (a, b) = (pct(v, 0.5), pct(d, 0.5));
        println!(
            "  {what:<18} {:>9} {:>9}   {:.2}x",
            us(a),
            us(b),
            b.as_secs_f64() / a.as_secs_f64()
        );
    };
    let durable_hits = hd.len();
    row("write p50", wv, wd);
    row("L1-hit p50", hv, hd);
    println!(
        "  durable: {durable_hits} of {m} reads after a write were L1 hits; {} outbox rows pending at the end; {} reads skipped a fenced tier",
        durable.outbox_pending(),
        durable.metrics().l1.fenced.load(Relaxed) + durable.metrics().l2.fenced.load(Relaxed)
    );

    // 5. The latency proxy's own hop, fault off: PING direct and through the proxy, interleaved.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let master: std::net::SocketAddr = cluster.redis_master.addr().parse().unwrap();
    let proxies = containers::proxy::Proxies::start(
        cluster.gateway().unwrap(),
        &[("redis-master".to_string(), master)],
    )
    .await
    .unwrap();
    let (_, front) = proxies.front_of(master).unwrap();
    let mut direct = tokio::net::TcpStream::connect(master).await.unwrap();
    let mut proxied = tokio::net::TcpStream::connect(front).await.unwrap();
    direct.set_nodelay(true).unwrap();
    proxied.set_nodelay(true).unwrap();
    async fn ping(conn: &mut tokio::net::TcpStream) -> Duration {
        let t = Instant::now();
        conn.write_all(b"PING\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        let got = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..got], b"+PONG\r\n");
        t.elapsed()
    }
    let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        d.push(ping(&mut direct).await);
        p.push(ping(&mut proxied).await);
    }
    println!("\nlatency proxy, no fault ({n} PINGs each, interleaved)   p50       p99");
    for (what, v) in [("direct", d.clone()), ("through the proxy", p.clone())] {
        println!(
            "  {what:<40} {:>9} {:>9}",
            us(pct(v.clone(), 0.5)),
            us(pct(v, 0.99))
        );
    }
    println!(
        "  hop at p99: {:.2}x direct",
        pct(p, 0.99).as_secs_f64() / pct(d, 0.99).as_secs_f64()
    );

    pattern_figures(&redis, &pg, &addrs, &cfg).await;
}

type Bench = CacheAside<Counted<Arc<Redis>>, Counted<Memcached>, Counted<Postgres>, Builtin>;

/// One cold read of `key` (a row no tier holds): its round trips per tier, its sequential
/// steps, and how long it took.
async fn cold_read<R: RedisLike, St: Strategy>(
    cache: &CacheAside<R, Counted<Memcached>, Counted<Postgres>, St>,
    tally: &Tally,
    key: &Key,
) -> ([u64; 3], u64, Duration) {
    let (calls, steps) = (tally.calls(), tally.steps());
    let t = Instant::now();
    let got = cache.get(key).await.unwrap().unwrap();
    let took = t.elapsed();
    assert_eq!(got.source, aside::Source::Db, "{key} was not cold");
    let after = tally.calls();
    let per_tier = [0, 1, 2].map(|i| after[i] - calls[i]);
    (per_tier, tally.steps() - steps, took)
}

/// Section 2: the miss path as `versioned` sends it (the lease with the L1 read, the L2 fill
/// from the read's own `gets`, the L1 fill releasing the lease, both fills at once) beside the
/// same strategy sent one command at a time (the trait's defaults), cold reads interleaved.
async fn miss_path_figures(
    fused: &Bench,
    redis: &Arc<Redis>,
    pg: &Postgres,
    addrs: &[String],
    cfg: &CacheConfig,
    tally: &Arc<Tally>,
    n: usize,
) {
    let nodes = addrs
        .iter()
        .map(|a| counted(Memcached::new(a.clone(), 32), tally, 1))
        .collect();
    let stepwise = CacheAside::new(
        // Counted inside: each command the trait's defaults send is a round trip of its own.
        OneByOne(counted(redis.clone(), tally, 0)),
        Pool::new(Ring::new(addrs).unwrap(), nodes, cfg),
        counted(pg.clone(), tally, 2),
        Stepwise,
        cfg.clone(),
        "bench-stepwise",
    );
    sqlx::query(
        "INSERT INTO aside_rows (key, version, payload)
         SELECT 'posts:v1:cold-' || i, 1, 'x' FROM generate_series(1, $1) i ON CONFLICT DO NOTHING",
    )
    .bind(2 * n as i32)
    .execute(pg.primary())
    .await
    .unwrap();
    let (mut ours, mut theirs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut shape_ours, mut shape_theirs) = (None, None);
    for i in 0..n {
        let key = |j: usize| Key::new("posts", 1, &format!("cold-{}", 2 * i + j + 1)).unwrap();
        let (calls, steps, took) = cold_read(fused, tally, &key(0)).await;
        shape_ours.get_or_insert((calls, steps));
        ours.push(took);
        let (calls, steps, took) = cold_read(&stepwise, tally, &key(1)).await;
        shape_theirs.get_or_insert((calls, steps));
        theirs.push(took);
    }
    println!("miss path, one cold read        round trips  (redis, memcached, postgres)  sequential      p50      p99");
    for (what, shape, took) in [
        ("versioned", shape_ours, ours),
        ("one command at a time", shape_theirs, theirs),
    ] {
        let ([r, m, p], steps) = shape.expect("n > 0");
        println!(
            "  {what:<26} {:>12}  ({r}, {m}, {p}){:>22} {:>8} {:>8}",
            r + m + p,
            steps,
            us(pct(took.clone(), 0.5)),
            us(pct(took, 0.99))
        );
    }
    println!(
        "  versioned: L1 get_or_lease; L2 gets; DB read; L1 fill+release beside L2 add\n  \
         one at a time (the trait's defaults): L1 GET and SET NX; L2 gets; DB read; L1 fill and release beside L2 gets and add"
    );
}

/// Reads every key once, 32 at a time: each is filled into both tiers.
async fn warm(cache: &Arc<Bench>, keys: &[Key]) {
    let (keys, next) = (Arc::new(keys.to_vec()), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (cache, keys, next) = (cache.clone(), keys.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Relaxed) as usize;
                    let Some(k) = keys.get(i) else { break };
                    cache.get(k).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Section 7: a generation bump beside SCAN, over groups of 10 and 10,000 cached keys.
async fn pattern_figures(redis: &Arc<Redis>, pg: &Postgres, addrs: &[String], cfg: &CacheConfig) {
    let trips = Arc::new(Tally::default());
    let cfg = CacheConfig {
        grouped_namespaces: vec!["listings".into()],
        ..cfg.clone()
    }
    .validate()
    .unwrap();
    let nodes = addrs
        .iter()
        .map(|a| counted(Memcached::new(a.clone(), 32), &trips, 1))
        .collect();
    let cache = Arc::new(CacheAside::new(
        counted(redis.clone(), &trips, 0),
        Pool::new(Ring::new(addrs).unwrap(), nodes, &cfg),
        counted(pg.clone(), &trips, 2),
        Builtin::Versioned,
        cfg,
        "bench-pattern",
    ));
    println!("\npattern invalidation of one group, every key cached in both tiers   round trips       time");
    for keys_n in [10usize, 10_000] {
        for (ns, what) in [
            ("listings", "generation bump"),
            ("scanned", "SCAN, not grouped"),
        ] {
            let group = format!("g{keys_n}:");
            sqlx::query(
                "INSERT INTO aside_rows (key, version, payload)
                 SELECT $1 || i, 1, 'x' FROM generate_series(1, $2) i ON CONFLICT DO NOTHING",
            )
            .bind(format!("{ns}:v1:{group}"))
            .bind(keys_n as i32)
            .execute(pg.primary())
            .await
            .unwrap();
            let keys: Vec<Key> = (1..=keys_n)
                .map(|i| Key::new(ns, 1, &format!("{group}{i}")).unwrap())
                .collect();
            warm(&cache, &keys).await;
            let before: u64 = trips.calls().iter().sum();
            let t = Instant::now();
            let done = cache.invalidate_prefix(ns, 1, &group).await.unwrap();
            let took = t.elapsed();
            let used = trips.calls().iter().sum::<u64>() - before;
            for k in keys.iter().step_by((keys_n / 10).max(1)) {
                let got = cache.get(k).await.unwrap().unwrap();
                assert_eq!(
                    got.source,
                    aside::Source::Db,
                    "{what}: {k} was still cached"
                );
            }
            println!(
                "  {keys_n:>6} keys, {what:<20} {:>28} {:>10}   ({done:?})",
                used,
                format!("{:.2} ms", took.as_secs_f64() * 1e3)
            );
        }
    }
}
