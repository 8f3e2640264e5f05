//! The quickstart: the whole cache from a TOML file; a table of your own, captured, so writes by
//! plain SQL from anywhere are invalidated for you; typed values; a pattern invalidation of a
//! group of keys without SCAN; the metrics.
//!
//! ```sh
//! cargo run -q -p aside-cli -- servers --out aside.toml   # the servers, until Ctrl-C (another shell)
//! cargo run --example quickstart -- aside.toml            # spans on stderr as they close; RUST_LOG=aside=debug for every one
//! ```
//!
//! `aside.toml` (what `aside servers` writes; every key is optional and `ASIDE_*` variables
//! override, see docs/library.md):
//!
//! ```toml
//! [redis]
//! sentinels = ["127.0.0.1:26379"]   # empty: `url` directly
//! master_name = "mymaster"
//! [memcached]
//! nodes = ["127.0.0.1:11211", "127.0.0.1:11212"]
//! [postgres]
//! url = "postgres://postgres@127.0.0.1:5432/postgres"
//! [cache]
//! strategy = "durable"              # its outbox invalidator applies captured writes
//! ```
//!
//! The container test `containers/tests/quickstart.rs` runs this very file against the project's
//! Redis, Sentinels, memcached and PostgreSQL.

use std::time::{Duration, Instant};

use aside::backend::Capture;
use aside::tier::{Row, TierError};
use aside::{backend, Key, Settings, Source};

/// A value of your own, cached as is (`write_as` / `get_as`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Post {
    title: String,
    score: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The library's spans, each printed as it closes with its time (on stderr): get, write and
    // invalidate at info, every load and tier call at debug (RUST_LOG=aside=debug).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "aside=info".into()),
        )
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "aside.toml".into());
    let mut settings = Settings::load(path.as_ref())?;
    // Listings come in groups, one per subreddit (`listings:v1:r/rust:hot`, `...:new`): a whole
    // group is invalidated at once by bumping its generation (part 3). Also a setting:
    // `grouped_namespaces = ["listings"]` under [cache], or ASIDE_CACHE_GROUPED_NAMESPACES.
    settings.cache.grouped_namespaces.push("listings".into());
    // Connects to every server (naming the one that fails), migrates the schema (aside_rows and
    // aside_outbox), and with `durable` spawns the outbox invalidator.
    let cache = backend::connect(&settings, "quickstart").await?;

    // 1. Your own table, captured: every INSERT, UPDATE and DELETE to it, by anyone, writes
    //    its keys' outbox rows in the same transaction; `durable`'s invalidator applies them.
    let pg = cache.store();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS users (id INT PRIMARY KEY, name TEXT NOT NULL);
         INSERT INTO users VALUES (1, 'ada') ON CONFLICT (id) DO UPDATE SET name = 'ada'",
    )
    .execute(pg.primary())
    .await?;
    pg.capture(&Capture::table("users").key("users:v1:{id}")?)
        .await?;
    let key = Key::new("users", 1, "1")?;
    // The loader reads the row and its key's version in one statement: no version column.
    let load = || async {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT aside_key_version($1), name FROM users WHERE id = 1",
        )
        .bind(key.to_string())
        .fetch_optional(pg.primary())
        .await
        .map(|r| {
            r.map(|(version, name)| Row {
                version: version as u64,
                payload: name.into_bytes(),
            })
        })
        .map_err(|e| TierError::Refused {
            tier: "postgres",
            detail: e.to_string(),
        })
    };
    let name = |row: &Row| String::from_utf8_lossy(&row.payload).into_owned();
    for _ in 0..2 {
        let got = cache
            .get_with(&key, load)
            .await?
            .ok_or("user 1 is missing")?;
        println!("read {key} from {:?}: {}", got.source, name(&got.row));
    }
    // A write by plain SQL, as another service or someone in psql would make it.
    sqlx::query("UPDATE users SET name = 'ada lovelace' WHERE id = 1")
        .execute(pg.primary())
        .await?;
    let began = Instant::now();
    let fresh = loop {
        let got = cache
            .get_with(&key, load)
            .await?
            .ok_or("user 1 is missing")?;
        if name(&got.row) == "ada lovelace" {
            break got;
        }
        if began.elapsed() > Duration::from_secs(5) {
            return Err(
                "the UPDATE was not invalidated within 5 s: is the strategy durable?".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "after an UPDATE by plain SQL: read {key} from {:?}: {}",
        fresh.source,
        name(&fresh.row)
    );
    eprintln!("(served fresh {:?} after the UPDATE)", began.elapsed());

    // 2. Typed values: any serde type, written through the library's own table.
    let key = Key::new("posts", 1, "42")?;
    let post = Post {
        title: "hello, cache".into(),
        score: 1,
    };
    let written = cache.write_as(&key, &post).await?;
    println!(
        "wrote {key} v{} (invalidated: {})",
        written.version, written.invalidated
    );
    // The first read loads it; later ones are served from L1. (durable's invalidator applies
    // every write's outbox row, this instance's own too, so one more miss may come first.)
    let began = Instant::now();
    let mut printed = None;
    loop {
        let got = cache
            .get_as::<Post>(&key)
            .await?
            .ok_or("the post just written is missing")?;
        if got.version != written.version {
            return Err("read a version other than the one written".into());
        }
        if printed.is_none() || (got.source == Source::L1 && printed != Some(Source::L1)) {
            println!(
                "read {key} v{} from {:?}: {:?}",
                got.version, got.source, got.value
            );
            printed = Some(got.source);
        }
        if got.source == Source::L1 {
            break;
        }
        if began.elapsed() > Duration::from_secs(5) {
            return Err("the post was not served from L1 within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 3. Pattern invalidation without SCAN: every listing of r/rust at once, in both tiers, in
    //    one database write and one invalidation whatever the number of keys.
    let hot = Key::new("listings", 1, "r/rust:hot")?;
    for sort in ["hot", "new", "top"] {
        let k = Key::new("listings", 1, &format!("r/rust:{sort}"))?;
        cache.write(&k, format!("{sort} posts").as_bytes()).await?;
        cache.get(&k).await?;
    }
    let began = Instant::now();
    while cache
        .get(&hot)
        .await?
        .ok_or("the listing is missing")?
        .source
        != Source::L1
    {
        if began.elapsed() > Duration::from_secs(5) {
            return Err("the listing was not served from L1 within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("read {hot} from L1");
    match cache.invalidate_prefix("listings", 1, "r/rust:").await? {
        aside::Invalidated::Generation { confirmed, .. } => println!(
            "invalidated every listings:v1:r/rust: key by a generation bump (confirmed: {confirmed})"
        ),
        other => return Err(format!("expected a generation bump, got {other:?}").into()),
    }
    let got = cache.get(&hot).await?.ok_or("the listing is missing")?;
    println!("read {hot} from {:?}", got.source);

    // 4. What the instance did: the endpoint a Prometheus server scrapes (the production
    // design's alerts are deploy/prometheus/aside-alerts.yml), and a table (or JSON, serde).
    let endpoint = aside::metrics::endpoint::Endpoint::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/metrics", endpoint.local_addr()?);
    let metrics = cache.metrics().clone();
    tokio::spawn(endpoint.serve(move || metrics.snapshot().prometheus()));
    println!("metrics at {url}");
    let scraped = scrape(&url).await?;
    let status = scraped.lines().next().unwrap_or("no answer");
    let families = scraped.lines().filter(|l| l.starts_with("# TYPE")).count();
    println!("scraped /metrics: {status}, {families} metric families of OpenMetrics text");
    println!("{}", cache.metrics().snapshot());
    Ok(())
}

/// One `GET` of `url` (`http://host:port/path`), as a Prometheus server's scrape sends it: the
/// whole response, head and body.
async fn scrape(url: &str) -> Result<String, Box<dyn std::error::Error>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/openmetrics-text\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
