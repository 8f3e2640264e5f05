//! The container nemesis against real servers: every fault kind it can apply is observed taking
//! effect and healed (each server answers again, the iptables rules and the settings are gone);
//! latency, which needs the proxies that only app nodes in containers go through, is never
//! observed with the app nodes in this process, so the history's `fault-effect` verdict fails on
//! it rather than passing; through the proxies it is observed and healed. The proxies' own
//! `reset` and `stall` are in `proxy_faults.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use invariants::Invariant;

use aside::tier::Store as _;
use aside::{Builtin, CacheConfig, Key};
use chaos::fault::shape::Shape;
use chaos::fault::{Fault, Kind, Side, Target};
use chaos::nemesis::run_plan;
use chaos::plan::{Plan, Step};
use chaos::record::Recorder;
use containers::nemesis::{ask, DockerNemesis};
use containers::{Cluster, ClusterSpec};
use invariants::history::{Header, FORMAT};

fn step(at_ms: u64, for_ms: u64, kind: Kind, target: impl Into<Side>) -> Step {
    Step {
        at_ms,
        for_ms,
        fault: Fault::new(kind, target),
    }
}

fn clock(jump_ms: i32, rate_permille: u16) -> Kind {
    Kind::Clock {
        jump_ms,
        rate_permille,
    }
}

/// A partition of the Redis quorum into `shape`: the master and sentinel-1 first, the replica
/// fourth (a bridge cuts the master from the replica, a ring the master from sentinel-2).
fn shaped(shape: Shape) -> Kind {
    Kind::Shaped {
        shape,
        nodes: [
            Target::RedisMaster(0),
            Target::Sentinel(0),
            Target::Sentinel(1),
            Target::RedisReplica(0),
            Target::Sentinel(2),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_kind_takes_effect_on_real_servers_and_heals() {
    let cluster = Cluster::start(ClusterSpec {
        memcached_spares: 1,
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    let plan = Plan::new(vec![
        step(0, 1_000, Kind::Kill, Target::Memcached(2)),
        step(1_500, 800, Kind::Pause, Target::Memcached(0)),
        step(
            3_000,
            800,
            Kind::Partition {
                peers: Side::Sentinels,
                one_way: false,
            },
            Target::RedisMaster(0),
        ),
        step(
            4_500,
            800,
            Kind::Partition {
                peers: Side::Memcached,
                one_way: true,
            },
            Side::Apps,
        ),
        step(6_000, 500, Kind::Flush, Side::Memcached),
        step(
            7_000,
            1_000,
            Kind::MemoryLimit { kib: 64 },
            Target::RedisMaster(0),
        ),
        step(
            8_500,
            2_500,
            Kind::ReplicaLag { lag_ms: 2_000 },
            Target::PgReplica,
        ),
        step(11_500, 1_000, Kind::Loss { per_mille: 300 }, Side::Network),
        step(13_000, 500, Kind::Latency { one_way_ms: 50 }, Side::Network),
        step(14_000, 800, Kind::Ring { join: true }, Target::Memcached(3)),
        step(
            15_000,
            800,
            Kind::Ring { join: false },
            Target::Memcached(1),
        ),
        step(
            16_500,
            1_500,
            Kind::MemoryLimit { kib: 2 },
            Target::Memcached(0),
        ),
        step(18_500, 800, shaped(Shape::Bridge), Side::Network),
        step(20_000, 800, shaped(Shape::MajoritiesRing), Side::Network),
        step(21_500, 800, clock(60_000, 1000), Target::RedisMaster(0)),
        step(22_500, 800, clock(-30_000, 1000), Target::App(0)),
        step(23_500, 1_500, clock(0, 3000), Target::RedisReplica(0)),
        step(
            25_500,
            1_000,
            Kind::Duplicate { per_mille: 200 },
            Side::Network,
        ),
    ]);

    // Traffic, so that evictions and replication lag have something to show: writes through the
    // library (PostgreSQL and its replica) and plain SETs filling Redis.
    let cache = cluster
        .library(Builtin::Versioned, CacheConfig::default(), "app-1")
        .await
        .expect("library");
    // The writer's instance is the app node whose ring the ring faults change, and whose clock
    // the app's clock fault moves.
    let ring = cache.l2().membership();
    let wall = cache.wall_clock().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let master = cluster.redis_master.addr();
        tokio::spawn(async move {
            let client = redis::Client::open(format!("redis://{master}")).unwrap();
            let filler = vec![b'x'; 512];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = Key::new("posts", 1, &format!("{}", i % 50)).unwrap();
                let _ = tokio::time::timeout(Duration::from_secs(1), cache.write(&k, b"")).await;
                if let Ok(Ok(mut c)) = tokio::time::timeout(
                    Duration::from_millis(300),
                    client.get_multiplexed_async_connection(),
                )
                .await
                {
                    let _: Result<Result<(), _>, _> = tokio::time::timeout(
                        Duration::from_millis(300),
                        redis::cmd("SET")
                            .arg(format!("filler:{}", i % 400))
                            .arg(&filler)
                            .query_async(&mut c),
                    )
                    .await;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let rec = Recorder::start();
    let rings = containers::rings::Rings::InProcess(vec![ring]);
    let clocks = containers::clocks::Clocks::InProcess(vec![wall]);
    let mut nemesis =
        DockerNemesis::new(&cluster, &[], None, rings, clocks, &plan).expect("nemesis");
    run_plan(&mut nemesis, &plan, &rec).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let mut config = invariants::Bounds::default().to_config();
    config.insert("faults".into(), plan.to_json());
    let history = rec.finish(&Header {
        format: FORMAT,
        world: "containers".into(),
        scenario: "nemesis-self-test".into(),
        strategy: "versioned".into(),
        seed: 0,
        commit: "test".into(),
        config,
    });
    let text = String::from_utf8(history).unwrap();
    let observed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"action\":\"observed\""))
        .collect();
    println!("{}", observed.join("\n"));
    for kind in [
        "kill",
        "pause",
        "partition",
        "flush",
        "memory-limit",
        "replica-lag",
        "loss",
        "ring",
        "clock",
        "duplicate",
    ] {
        let n = observed
            .iter()
            .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")))
            .count();
        let want = match kind {
            // Two of one side from another, a bridge and a majorities ring.
            "partition" => 4,
            "ring" | "memory-limit" => 2,
            // Redis ahead, the app node behind, the replica running fast.
            "clock" => 3,
            _ => 1,
        };
        assert_eq!(
            n,
            want,
            "{kind} observed {n} times:\n{}",
            observed.join("\n")
        );
    }
    assert!(!observed.iter().any(|l| l.contains("\"kind\":\"latency\"")));
    let report = invariants::check_str(&text, &[]).unwrap();
    let v = report.verdict(Invariant::FaultEffect).unwrap();
    assert!(
        v.fails() && v.summary.contains("latency"),
        "latency without proxies cannot be applied and must fail the run: {}",
        v.summary
    );

    // Healed: every server answers again, from the host and across the former cut.
    let mut servers = vec![
        (Target::RedisMaster(0), cluster.redis_master.addr()),
        (Target::PgPrimary, cluster.pg_primary.addr()),
    ];
    servers.extend(
        cluster
            .memcached
            .iter()
            .enumerate()
            .map(|(i, n)| (Target::Memcached(i as u8), n.addr())),
    );
    servers.extend(
        cluster
            .sentinels
            .iter()
            .enumerate()
            .map(|(i, n)| (Target::Sentinel(i as u8), n.addr())),
    );
    for (t, addr) in servers {
        let mut ok = Err(String::new());
        for _ in 0..50 {
            ok = ask(t, addr.parse().unwrap(), Duration::from_millis(500)).await;
            if ok.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ok.is_ok(), "{} ({addr}) after the heals: {ok:?}", t.name());
    }
    // No partition, loss or copying rule is left in any server's namespace.
    let replicas = cluster
        .redis_replica
        .iter()
        .chain(cluster.pg_replica.iter());
    for n in (cluster.sentinels.iter())
        .chain(&cluster.memcached)
        .chain([&cluster.redis_master, &cluster.pg_primary])
        .chain(replicas)
    {
        let rules = std::process::Command::new("docker")
            .args(["exec", "-u", "root", n.container.id(), "sh", "-c"])
            .arg("iptables -S; iptables -t mangle -S")
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        assert!(
            !rules.contains("DROP") && !rules.contains("TEE"),
            "{}: rules left behind:\n{rules}",
            n.name
        );
    }
    let mut c = redis::Client::open(format!("redis://{}", cluster.redis_master.addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let maxmemory: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(maxmemory[1], "0");
    // The clocks are back to true time: each Redis node's TIME within a second of the host's.
    for n in [&cluster.redis_master]
        .into_iter()
        .chain(cluster.redis_replica.iter())
    {
        let mut c = redis::Client::open(format!("redis://{}", n.addr()))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            secs.abs_diff(host) <= 1,
            "{} reads {secs}, the host {host}",
            n.name
        );
    }
    let mc = aside::backend::Memcached::new(cluster.memcached[0].addr(), 1);
    assert_eq!(
        mc.stat("limit_maxbytes").await.unwrap(),
        64 << 20,
        "memcached-1 has its boot limit back"
    );
    let delay = std::process::Command::new("docker")
        .args(["exec", "-u", "root"])
        .arg(cluster.pg_replica.as_ref().unwrap().container.id())
        .args(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atqc"])
        .arg("SHOW recovery_min_apply_delay")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&delay.stdout).trim(), "0");
}

/// `kill` of the PostgreSQL primary (`pg-restart`): observed, and the restarted container comes
/// back from its data directory with every write it acknowledged; the library's pool replaces
/// the connections the restart killed, and writes and reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_postgresql_primary_restarts_with_what_it_acknowledged() {
    let cluster = Cluster::start(ClusterSpec::one_of_each())
        .await
        .expect("cluster");
    let cache = cluster
        .library(Builtin::Versioned, CacheConfig::default(), "app-1")
        .await
        .expect("library");
    let k = |i: u32| Key::new("posts", 1, &i.to_string()).unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push((k(i), cache.write(&k(i), b"before").await.unwrap().version));
    }

    let plan = Plan::new(vec![step(0, 1_000, Kind::Kill, Target::PgPrimary)]);
    let rec = Recorder::start();
    let mut nemesis = DockerNemesis::new(
        &cluster,
        &[],
        None,
        containers::rings::Rings::InProcess(Vec::new()),
        containers::clocks::Clocks::InProcess(Vec::new()),
        &plan,
    )
    .expect("nemesis");
    run_plan(&mut nemesis, &plan, &rec).await;
    let history = String::from_utf8(rec.finish(&Header {
        format: FORMAT,
        world: "containers".into(),
        scenario: "pg-kill-self-test".into(),
        strategy: "versioned".into(),
        seed: 0,
        commit: "test".into(),
        config: invariants::Bounds::default().to_config(),
    }))
    .unwrap();
    assert!(
        history
            .lines()
            .any(|l| l.contains("\"action\":\"observed\"") && l.contains("pg-primary")),
        "the kill was not observed:\n{history}"
    );

    // Back: the first write through the library after the restart may meet a connection the
    // restart killed (an error, and the pool replaces it); within a deadline one succeeds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        match cache.write(&k(100), b"after").await {
            Ok(w) => break w,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "PostgreSQL never came back after its restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(after.version, 1);
    for (key, version) in acked {
        let row = cache
            .store()
            .read(key.as_str(), aside::tier::ReadFrom::Primary)
            .await
            .unwrap()
            .expect("an acknowledged row survives the restart");
        assert_eq!(row.version, version, "{key}");
        let got = cache.get(&key).await.unwrap().unwrap();
        assert_eq!(got.row.version, version, "{key} read through the cache");
    }
}

/// A latency fault through the proxies: a round trip through a proxy takes the fault's one-way
/// latency twice (there and back) while it is on, on a connection opened before it, and the
/// heal takes it away, fault after fault. A slow-queries fault holds PostgreSQL's replies only:
/// a hello to it takes the added time, one to Redis does not, and the heal takes it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_through_the_proxies_delays_round_trips_until_the_heal() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::start(ClusterSpec::one_of_each())
        .await
        .expect("cluster");
    let master: std::net::SocketAddr = cluster.redis_master.addr().parse().unwrap();
    let pg: std::net::SocketAddr = cluster.pg_primary.addr().parse().unwrap();
    let proxies = containers::proxy::Proxies::start(
        cluster.gateway().expect("gateway"),
        &[
            ("redis-master".to_string(), master),
            ("pg-primary".to_string(), pg),
        ],
    )
    .await
    .expect("proxies");
    let (_, front) = proxies.front_of(master).expect("a proxy for the master");
    // One connection through the proxy, kept open across the fault.
    let mut conn = tokio::net::TcpStream::connect(front)
        .await
        .expect("connect");
    async fn ping(conn: &mut tokio::net::TcpStream) -> Duration {
        let began = std::time::Instant::now();
        conn.write_all(b"PING\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"+PONG\r\n");
        began.elapsed()
    }
    let before = ping(&mut conn).await;
    // Three faults and heals on the same connection: noxious, which this proxy replaced, lost
    // every toxic change after the first on an open connection now and then.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        proxies.latency(Some(60)).await.expect("toxic on");
        let during = ping(&mut conn).await;
        proxies.latency(None).await.expect("toxic off");
        let after = ping(&mut conn).await;
        rounds.push((during, after));
    }
    let mut fresh = tokio::net::TcpStream::connect(front)
        .await
        .expect("connect");
    let fresh = ping(&mut fresh).await;
    println!(
        "round trips: before {before:?}, (during, after) {rounds:?}, new connection {fresh:?}"
    );
    for (during, after) in rounds {
        assert!(during >= Duration::from_millis(120), "{during:?}");
        assert!(
            after < Duration::from_millis(120),
            "healed on the open connection: {after:?}"
        );
    }
    assert!(
        fresh < Duration::from_millis(120),
        "healed on a new connection: {fresh:?}"
    );

    let (_, pg_front) = proxies.front_of(pg).expect("a proxy for the primary");
    let hello = |t, front| async move {
        let began = std::time::Instant::now();
        ask(t, front, Duration::from_secs(5)).await.expect("hello");
        began.elapsed()
    };
    proxies.slow_replies(pg, Some(150)).expect("slow on");
    let (pg_slow, redis_then) = (
        hello(Target::PgPrimary, pg_front).await,
        ping(&mut conn).await,
    );
    proxies.slow_replies(pg, None).expect("slow off");
    let pg_healed = hello(Target::PgPrimary, pg_front).await;
    println!(
        "slow queries: postgres {pg_slow:?}, redis meanwhile {redis_then:?}, healed {pg_healed:?}"
    );
    assert!(pg_slow >= Duration::from_millis(150), "{pg_slow:?}");
    assert!(redis_then < Duration::from_millis(150), "{redis_then:?}");
    assert!(pg_healed < Duration::from_millis(150), "{pg_healed:?}");
}
