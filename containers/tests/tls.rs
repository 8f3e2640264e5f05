//! TLS to PostgreSQL (the `tls` feature, on by default): the library connects with
//! `sslmode=verify-full` against the server's certificate (made for its address), its session is encrypted by the server's
//! own account (`pg_stat_ssl`), and a certificate it cannot verify is refused, naming the server.

use aside::backend::Postgres;
use aside::tier::{ReadFrom, Store};
use containers::cluster::PG_TLS_CA;
use containers::{Cluster, ClusterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verified_against_the_servers_certificate() {
    let cluster = Cluster::start(ClusterSpec {
        redis_replica: false,
        sentinels: 0,
        memcached: 1,
        pg_replica: false,
        pg_tls: true,
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    let cert = cluster.pg_primary.sh(&format!("cat {PG_TLS_CA}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("server.pem");
    std::fs::write(&root, cert).unwrap();

    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.pg_url(),
        root.display()
    );
    let pg = Postgres::connect(&url, None, 2).await.expect("TLS connect");
    pg.migrate().await.unwrap();
    let v = pg.write("posts:v1:tls", b"over tls").await.unwrap().version;
    let row = pg
        .read("posts:v1:tls", ReadFrom::Primary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.version, row.payload.as_slice()), (v, &b"over tls"[..]));
    let (ssl, version): (bool, Option<String>) =
        sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(pg.primary())
            .await
            .unwrap();
    println!("pg_stat_ssl: ssl {ssl}, {version:?}");
    assert!(ssl, "the server says the session is not encrypted");

    // A root that did not sign the server's certificate: refused, the server named.
    let other = dir.path().join("other.pem");
    std::fs::write(&other, cluster.pg_primary.unrelated_root().unwrap()).unwrap();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.pg_url(),
        other.display()
    );
    let e = Postgres::connect(&url, None, 1)
        .await
        .err()
        .expect("an unverifiable certificate")
        .to_string();
    println!("wrong root: {e}");
    assert!(e.contains(&cluster.pg_primary.addr()), "{e}");
}
