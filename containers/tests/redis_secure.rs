//! Redis and its Sentinels over TLS, with ACL users, as a new user configures them
//! (`redis.tls`, `redis.tls_ca`, `redis.username`, `redis.password`, `redis.sentinel_*`): the
//! cache built by `aside::backend::connect` finds the master through the Sentinels, writes and
//! reads through it, follows a failover over the same TLS and logins, and each wrong setting
//! fails naming the server and the cause.

use std::time::Duration;

use aside::{Settings, Source};
use containers::cluster::{REDIS_PASSWORD, REDIS_USER};
use containers::{Cluster, ClusterSpec};

fn settings(cluster: &Cluster, ca: &std::path::Path, password: &str, extra: &str) -> Settings {
    let list = |v: Vec<String>| {
        v.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "[redis]\nsentinels = [{}]\nmaster_name = \"mymaster\"\nusername = \"{REDIS_USER}\"\npassword = \"{password}\"\nsentinel_username = \"{REDIS_USER}\"\nsentinel_password = \"{REDIS_PASSWORD}\"\ntls = true\ntls_ca = {:?}\n{extra}[memcached]\nnodes = [{}]\n[postgres]\nurl = {:?}\n[cache]\nbreaker_cooldown_ms = 200\n",
        list(cluster.sentinel_addrs()),
        ca.display().to_string(),
        list(cluster.memcached_addrs()),
        cluster.pg_url(),
    );
    Settings::from_toml(&text, []).expect("the settings parse")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_sentinels_over_tls_with_acl_users() {
    let cluster = Cluster::start(ClusterSpec {
        redis_secure: true,
        memcached: 1,
        pg_replica: false,
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cluster.redis_access.tls_ca.as_ref().unwrap()).unwrap();

    // The settings' `Debug` never prints a password.
    let good = settings(&cluster, &ca, REDIS_PASSWORD, "");
    assert!(!format!("{good:?}").contains(REDIS_PASSWORD));

    let cache = aside::backend::connect(&good, "tls-1")
        .await
        .expect("the cache over TLS, logged in");
    let k = aside::Key::new("posts", 1, "tls").unwrap();
    assert!(cache.write(&k, b"v1").await.unwrap().invalidated);
    assert_eq!(cache.get(&k).await.unwrap().unwrap().source, Source::Db);
    assert_eq!(
        cache.get(&k).await.unwrap().unwrap().source,
        Source::L1,
        "filled and served by the TLS master"
    );
    let master = cluster.redis_master.addr();
    assert_eq!(cache.l1().master().await.as_deref(), Some(master.as_str()));

    // No plain port: a client without TLS is not answered.
    let plain = aside::backend::Redis::direct(&format!("redis://{master}"), Duration::from_secs(1))
        .await
        .err()
        .expect("the plain port is closed")
        .to_string();
    println!("without TLS: {plain}");
    assert!(plain.contains(&master), "{plain}");

    // A wrong password: the master is named, and Redis's own words say why.
    let e = aside::backend::connect(&settings(&cluster, &ca, "wrong", ""), "tls-2")
        .await
        .err()
        .expect("a wrong password")
        .to_string();
    println!("wrong password: {e}");
    assert!(
        e.contains(&master) && e.contains("(check redis.username and redis.password)"),
        "{e}"
    );

    // No password at all, straight at the master: refused at connect, naming the master and the
    // settings, never a cache whose every L1 call then fails with NOAUTH.
    let direct = format!(
        "[redis]\nurl = \"rediss://{master}\"\ntls_ca = {:?}\n[memcached]\nnodes = [{:?}]\n[postgres]\nurl = {:?}\n",
        ca.display().to_string(),
        cluster.memcached_addrs()[0],
        cluster.pg_url(),
    );
    let direct = Settings::from_toml(&direct, []).expect("the settings parse");
    let e = aside::backend::connect(&direct, "tls-4")
        .await
        .err()
        .expect("no password")
        .to_string();
    println!("no password: {e}");
    assert!(
        e.contains(&master) && e.contains("(check redis.username and redis.password)"),
        "{e}"
    );

    // A root that did not sign the servers' certificates: each Sentinel is named, the
    // certificate refused.
    let wrong_ca = dir.path().join("other.pem");
    std::fs::write(&wrong_ca, cluster.redis_master.unrelated_root().unwrap()).unwrap();
    let e = aside::backend::connect(&settings(&cluster, &wrong_ca, REDIS_PASSWORD, ""), "tls-3")
        .await
        .err()
        .expect("an unknown issuer")
        .to_string();
    println!("wrong CA: {e}");
    assert!(
        e.contains(&cluster.sentinels[0].addr())
            && e.contains("UnknownIssuer")
            && e.contains("(check redis.tls_ca"),
        "{e}"
    );

    // A failover: the Sentinels, over TLS and logged in, promote the replica; the cache follows
    // it (the switch noticed through the Sentinels' TLS pub/sub or their answers) and writes
    // and fills there.
    cluster.redis_master.stop().await.unwrap();
    let replica = cluster.redis_replica.as_ref().unwrap().addr();
    let mut followed = false;
    for i in 0..150 {
        let w = cache.write(&k, format!("v{}", i + 2).as_bytes()).await;
        if w.is_ok_and(|w| w.invalidated)
            && cache.l1().master().await.as_deref() == Some(replica.as_str())
        {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        followed,
        "the cache did not follow the failover within 30 s"
    );
    let g = cache.get(&k).await.unwrap().unwrap();
    assert_eq!(
        cache.get(&k).await.unwrap().unwrap().row.version,
        g.row.version
    );
    assert_eq!(cache.get(&k).await.unwrap().unwrap().source, Source::L1);
}
