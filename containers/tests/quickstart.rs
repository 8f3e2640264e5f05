//! The README's quickstart as a new user runs it: `examples/quickstart.rs` against the project's
//! Redis (master, replica, three Sentinels), two memcached nodes and PostgreSQL, configured by a
//! TOML file; and the errors a new user meets first, each naming the server and the fix.

use std::process::Command;
use std::time::{Duration, Instant};

use aside::backend::{connect, Postgres};
use aside::tier::{ReadFrom, Store};
use aside::Settings;
use containers::{Cluster, ClusterSpec};

/// The lines of the first fenced block after `marker` in the README.
fn readme_block(marker: &str) -> Vec<&'static str> {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let after = &readme[readme.find(marker).expect("the README section")..];
    let start = after.find("```\n").expect("a block") + 4;
    let body = &after[start..start + after[start..].find("```").unwrap()];
    body.lines().collect()
}

/// The example binary `cargo test` built beside this test's (target/<profile>/examples/).
fn quickstart_binary() -> std::path::PathBuf {
    let me = std::env::current_exe().expect("this test's path");
    let profile_dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --example quickstart` (cargo test builds it)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_runs_as_the_readme_says_and_first_errors_name_the_server() {
    let cluster = Cluster::start(ClusterSpec {
        memcached: 2,
        pg_replica: false,
        ..ClusterSpec::default()
    })
    .await
    .expect("cluster");
    // What `aside servers` writes for a cluster: Redis through its Sentinels, `durable`.
    let toml = cluster.addrs().toml("durable");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aside.toml");
    std::fs::write(&path, &toml).unwrap();

    // Before the schema exists, a read says what is missing and how to create it.
    let bare = Postgres::connect(&cluster.pg_url(), None, 1).await.unwrap();
    let missing = bare
        .read("posts:v1:1", ReadFrom::Primary)
        .await
        .unwrap_err()
        .to_string();
    println!("before the schema: {missing}");
    let pg = cluster.pg_primary.ip.to_string();
    let readme_errors: Vec<String> = readme_block("**Errors name the server.**")
        .into_iter()
        .map(|l| l.replace("<pg>", &pg))
        .collect();
    assert_eq!(readme_errors[0], missing, "the README's first error line");
    assert!(
        missing.contains(&cluster.pg_primary.addr()) && missing.contains("Postgres::migrate"),
        "{missing}"
    );

    // The example, as the README runs it (with ASIDE_SCENARIO set: another program's ASIDE_*
    // variable is no error).
    let out = Command::new(quickstart_binary())
        .arg(&path)
        .env("ASIDE_SCENARIO", "not-the-library's")
        .env("RUST_LOG", "aside=info")
        .output()
        .expect("run the quickstart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the quickstart failed");
    for line in readme_block("It prints what each read was served from") {
        assert!(stdout.contains(line), "the README shows {line:?}");
    }
    // RUST_LOG=aside=info shows the library's spans as they close (on stderr, apart from
    // the example's own lines): a write, its invalidation, a read and where it was served.
    let stderr = String::from_utf8_lossy(&out.stderr);
    for span in ["aside.write", "aside.invalidate", "aside.get"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(span) && l.contains("close")),
            "no closed {span} span on stderr"
        );
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("aside.get") && l.contains("source") && l.contains("l1")),
        "a read's span names its source"
    );

    // The same file builds the cache here too.
    let settings = Settings::load(&path).unwrap();
    let cache = connect(&settings, "test").await.unwrap();
    #[derive(serde::Deserialize)]
    struct Post {
        title: String,
    }
    let got = cache
        .get_as::<Post>(&aside::Key::new("posts", 1, "42").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.value.title, "hello, cache");

    // A wrong PostgreSQL port: named at once, not after the pool's 5 s wait.
    let mut wrong = settings.clone();
    wrong.postgres.url = format!(
        "postgres://postgres:secret@{}:1/postgres",
        cluster.pg_primary.ip
    );
    let began = Instant::now();
    let e = connect(&wrong, "test")
        .await
        .err()
        .expect("port 1")
        .to_string();
    println!("a wrong PostgreSQL port: {e}");
    assert_eq!(readme_errors[1], e, "the README's second error line");
    assert!(
        e.contains(&format!("{}:1/postgres", cluster.pg_primary.ip)) && !e.contains("secret"),
        "{e}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );
    // A memcached node that is not there: named.
    let mut wrong = settings.clone();
    wrong
        .memcached
        .nodes
        .push(format!("{}:1", cluster.pg_primary.ip));
    let e = connect(&wrong, "test")
        .await
        .err()
        .expect("port 1")
        .to_string();
    println!("a memcached node that is not there: {e}");
    assert_eq!(readme_errors[2], e, "the README's third error line");
    assert!(e.contains(&format!("{}:1", cluster.pg_primary.ip)), "{e}");
}
