//! A `clock` fault on Redis, model against server: the real Redis runs under the image's clock
//! shim (`ci/images/clock-shim.c`), moved as the containers' nemesis moves it; the model is asked
//! at the same skewed instants (`RedisModel::exec` takes the node's wall clock, which the
//! simulator skews per node). Keys must expire, or live on, alike.

use super::*;

/// The real master's clock: `JUMP_MS RATE_PERMILLE SINCE_MS` in the shim's file, or true time.
async fn skew_real(cluster: &Cluster, jump_ms: Option<i64>) {
    let script = match jump_ms {
        Some(j) => format!(
            "echo \"{j} 1000 $(date +%s%3N)\" > /tmp/aside-clock.tmp && mv /tmp/aside-clock.tmp /tmp/aside-clock"
        ),
        None => "rm -f /tmp/aside-clock".into(),
    };
    containers::docker::exec(&cluster.redis_master, &["sh", "-c", &script])
        .await
        .expect("docker exec");
    // The shim reads its file again at most every 10 ms: wait until TIME shows the skew.
    let want_ms = jump_ms.unwrap_or(0);
    let addr = cluster.redis_master.addr();
    for _ in 0..500 {
        let client = redis::Client::open(format!("redis://{addr}")).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
        let host_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        if (secs * 1000 + micros / 1000 - host_ms - want_ms).abs() < 1_000 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("redis-master's TIME never read {want_ms} ms off the host's clock");
}

fn model_set_px(m: &mut RedisModel, now_ms: u64, key: &str, px_ms: u64) {
    m.exec(
        now_ms,
        rd::Cmd::Set {
            key: key.into(),
            value: b"v".to_vec(),
            px_ms,
            cond: rd::Cond::Always,
        },
    );
}

fn model_get_at(m: &mut RedisModel, now_ms: u64, key: &str) -> String {
    match m.exec(now_ms, rd::Cmd::Get(key.into())) {
        rd::Reply::Bulk(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
        rd::Reply::Bulk(None) => "(nil)".into(),
        other => format!("{other:?}"),
    }
}

pub(super) async fn clock_conformance(cluster: &Cluster) {
    let addr = cluster.redis_master.addr();
    let mut m = RedisModel::default();
    // The model's clock: true time since the start (plus the skew the real server is under).
    let start = std::time::Instant::now();
    let at = |skew_ms: i64| (1_000_000 + start.elapsed().as_millis() as i64 + skew_ms) as u64;
    // Before the jump: a short TTL and a long one (the cache sets none without one).
    for (key, px_ms) in [("clock:short", 30_000u64), ("clock:long", 120_000)] {
        real_cmd(&addr, &["SET", key, "v", "PX", &px_ms.to_string()]).await;
        model_set_px(&mut m, at(0), key, px_ms);
    }
    // A minute ahead: the short TTL has passed, the long one has not.
    skew_real(cluster, Some(60_000)).await;
    for key in ["clock:short", "clock:long"] {
        assert_eq!(
            real_cmd(&addr, &["GET", key]).await,
            model_get_at(&mut m, at(60_000), key),
            "{key} a minute ahead"
        );
    }
    assert_eq!(real_cmd(&addr, &["GET", "clock:short"]).await, "(nil)");
    // A key set for 1 s at true time, then the clock a minute behind: it outlives its second...
    skew_real(cluster, None).await;
    real_cmd(&addr, &["SET", "clock:back", "v", "PX", "1000"]).await;
    model_set_px(&mut m, at(0), "clock:back", 1_000);
    skew_real(cluster, Some(-60_000)).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        real_cmd(&addr, &["GET", "clock:back"]).await,
        model_get_at(&mut m, at(-60_000), "clock:back"),
        "clock:back 1.2 s later, a minute behind"
    );
    assert_eq!(real_cmd(&addr, &["GET", "clock:back"]).await, "v");
    // ...and is gone at once when the clock is stepped back to true time.
    skew_real(cluster, None).await;
    assert_eq!(
        real_cmd(&addr, &["GET", "clock:back"]).await,
        model_get_at(&mut m, at(0), "clock:back"),
        "clock:back at true time"
    );
    assert_eq!(real_cmd(&addr, &["GET", "clock:back"]).await, "(nil)");
}
