//! The proxies' own faults against a real Redis: a `reset` replaces a reply with a TCP reset
//! after the command ran, a `stall` holds a command unanswered and unrun until the heal, a
//! `half-open` drops it unrun and resets its connection at the heal; each is then run as a plan
//! by the container nemesis, which must observe it.

use std::time::Duration;

use chaos::fault::{Fault, Kind, Target};
use chaos::nemesis::run_plan;
use chaos::plan::{Plan, Step};
use chaos::record::Recorder;
use containers::nemesis::DockerNemesis;
use containers::{Cluster, ClusterSpec};
use invariants::history::{Header, FORMAT};
use invariants::Invariant;

/// `reset` through the proxies: while it is on, a command sent on a connection opened before it
/// runs (the key is set) and its client's connection is reset instead of answered, and so is a
/// connection opened during it; after the heal a new connection is answered. Then the same
/// fault run as a plan by the nemesis, with the proxies: its `observed` line names the reset.
/// `stall` likewise: a command sent during it is neither answered nor run until the heal, and
/// then both. `half-open`: a command sent during it on a connection opened before it is neither
/// answered nor run, then or after the heal, which resets that connection; a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_runs_the_command_a_stall_runs_it_late_and_a_half_open_connection_never() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::start(ClusterSpec::one_of_each())
        .await
        .expect("cluster");
    let master: std::net::SocketAddr = cluster.redis_master.addr().parse().unwrap();
    let proxies = containers::proxy::Proxies::start(
        cluster.gateway().expect("gateway"),
        &[("redis-master".to_string(), master)],
    )
    .await
    .expect("proxies");
    let (_, front) = proxies.front_of(master).expect("a proxy for the master");
    /// Sends `cmd` on `conn` and reads its answer, as bytes or the error.
    async fn say(conn: &mut tokio::net::TcpStream, cmd: &[u8]) -> std::io::Result<Vec<u8>> {
        conn.write_all(cmd).await?;
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }
    let reset = |r: &std::io::Result<Vec<u8>>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    let mut open = tokio::net::TcpStream::connect(front).await.unwrap();
    assert_eq!(say(&mut open, b"PING\r\n").await.unwrap(), b"+PONG\r\n");

    proxies.reset_replies(master, true).expect("reset on");
    let set = say(&mut open, b"SET aside:nemesis:reset ran\r\n").await;
    let mut during = tokio::net::TcpStream::connect(front).await.unwrap();
    let ping = say(&mut during, b"PING\r\n").await;
    proxies.reset_replies(master, false).expect("reset off");
    let mut after = tokio::net::TcpStream::connect(front).await.unwrap();
    let healed = say(&mut after, b"PING\r\n").await;
    println!(
        "reset: SET on an open connection {set:?}, PING on a new one {ping:?}, healed {healed:?}"
    );
    assert!(reset(&set), "{set:?}");
    assert!(reset(&ping), "{ping:?}");
    assert_eq!(healed.unwrap(), b"+PONG\r\n");
    let mut c = redis::Client::open(format!("redis://{master}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let held: Option<String> = redis::cmd("GET")
        .arg("aside:nemesis:reset")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(held.as_deref(), Some("ran"), "the reset command ran");

    let observed = observed_through(&cluster, &proxies, Kind::Reset).await;
    assert!(observed.contains("answered by a reset"), "{observed}");
    let mut healed = tokio::net::TcpStream::connect(front).await.unwrap();
    assert_eq!(say(&mut healed, b"PING\r\n").await.unwrap(), b"+PONG\r\n");

    // A stall: the connection is accepted and the SET taken, unanswered and not run; at the heal
    // it runs, late, and its answer comes on the same connection.
    proxies.stall(master, true).expect("stall on");
    let mut taken = tokio::net::TcpStream::connect(front).await.unwrap();
    taken
        .write_all(b"SET aside:nemesis:stall late\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let during = tokio::time::timeout(Duration::from_millis(300), taken.read(&mut buf)).await;
    assert!(during.is_err(), "answered during the stall: {during:?}");
    let before: Option<String> = redis::cmd("GET")
        .arg("aside:nemesis:stall")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(before, None, "the held SET ran during the stall");
    proxies.stall(master, false).expect("stall off");
    let n = taken.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"+OK\r\n");
    let after: Option<String> = redis::cmd("GET")
        .arg("aside:nemesis:stall")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        after.as_deref(),
        Some("late"),
        "the held SET ran at the heal"
    );
    let observed = observed_through(&cluster, &proxies, Kind::Stall).await;
    assert!(observed.contains("taken and not answered"), "{observed}");
    let mut healed = tokio::net::TcpStream::connect(front).await.unwrap();
    assert_eq!(say(&mut healed, b"PING\r\n").await.unwrap(), b"+PONG\r\n");

    // A half-open connection: the SET is dropped, never answered nor run; the heal resets the
    // connection it was sent on, and a new connection is served.
    let mut gone = tokio::net::TcpStream::connect(front).await.unwrap();
    assert_eq!(say(&mut gone, b"PING\r\n").await.unwrap(), b"+PONG\r\n");
    proxies.half_open(master, true).expect("half-open on");
    gone.write_all(b"SET aside:nemesis:half-open ran\r\n")
        .await
        .unwrap();
    let during = tokio::time::timeout(Duration::from_millis(300), gone.read(&mut buf)).await;
    assert!(during.is_err(), "answered while half-open: {during:?}");
    assert!(proxies.dropped(master).unwrap() >= 1, "the SET is counted");
    proxies.half_open(master, false).expect("half-open healed");
    let at_heal = tokio::time::timeout(Duration::from_secs(5), gone.read(&mut buf))
        .await
        .expect("the heal ends the connection");
    assert!(
        matches!(&at_heal, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{at_heal:?}"
    );
    let never: Option<String> = redis::cmd("GET")
        .arg("aside:nemesis:half-open")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(never, None, "the dropped SET ran");
    let mut after = tokio::net::TcpStream::connect(front).await.unwrap();
    assert_eq!(say(&mut after, b"PING\r\n").await.unwrap(), b"+PONG\r\n");
    let observed = observed_through(&cluster, &proxies, Kind::HalfOpen).await;
    assert!(observed.contains("dropped"), "{observed}");
}

/// Runs a one-second `kind` fault on the master through `proxies` and returns its one
/// `observed` line; the run's `fault-effect` verdict must pass.
async fn observed_through(
    cluster: &Cluster,
    proxies: &containers::proxy::Proxies,
    kind: Kind,
) -> String {
    let plan = Plan::new(vec![Step {
        at_ms: 0,
        for_ms: 1_000,
        fault: Fault::new(kind, Target::RedisMaster(0)),
    }]);
    let rings = containers::rings::Rings::InProcess(Vec::new());
    let clocks = containers::clocks::Clocks::InProcess(Vec::new());
    let mut nemesis =
        DockerNemesis::new(cluster, &[], Some(proxies), rings, clocks, &plan).expect("nemesis");
    let rec = Recorder::start();
    run_plan(&mut nemesis, &plan, &rec).await;
    let mut config = invariants::Bounds::default().to_config();
    config.insert("faults".into(), plan.to_json());
    let history = rec.finish(&Header {
        format: FORMAT,
        world: "containers".into(),
        scenario: format!("nemesis-{}", kind.name()),
        strategy: "versioned".into(),
        seed: 0,
        commit: "test".into(),
        config,
    });
    let text = String::from_utf8(history).unwrap();
    let observed: Vec<&str> = (text.lines())
        .filter(|l| l.contains("\"action\":\"observed\""))
        .collect();
    println!("{}", observed.join("\n"));
    assert_eq!(observed.len(), 1, "{text}");
    let report = invariants::check_str(&text, &[]).unwrap();
    let v = report.verdict(Invariant::FaultEffect).unwrap();
    assert!(!v.fails(), "{}", v.summary);
    observed[0].to_string()
}
