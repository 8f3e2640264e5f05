//! The quickstart: the whole cache from a TOML file, the library's own table, your own table
//! through `get_with` + `invalidate_version`, and the metrics.
//!
//! ```sh
//! cargo run --example quickstart -- aside.toml      # spans on stderr as they close; RUST_LOG=aside=debug for every one
//! ```
//!
//! `aside.toml` (every key is optional; `ASIDE_*` variables override, see the README):
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
//! strategy = "versioned"
//! ```
//!
//! The container test `containers/tests/quickstart.rs` runs this very file against the project's
//! Redis, Sentinel, memcached and PostgreSQL.

use aside::tier::{Row, TierError};
use aside::{backend, Key, Settings, Source};

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
    let settings = Settings::load(path.as_ref())?;
    // Connects to every server (naming the one that fails), migrates the schema (aside_rows and
    // aside_outbox), and with `durable` spawns the outbox invalidator.
    let cache = backend::connect(&settings, "quickstart").await?;

    // 1. The library's table: write through the cache (database first, then invalidation).
    let key = Key::new("posts", 1, "42")?;
    let written = cache.write(&key, b"hello, cache").await?;
    println!(
        "wrote {key} v{} (invalidated: {})",
        written.version, written.invalidated
    );
    for _ in 0..2 {
        let got = cache
            .get(&key)
            .await?
            .ok_or("the row just written is missing")?;
        println!(
            "read {key} v{} from {:?}: {}",
            got.row.version,
            got.source,
            String::from_utf8_lossy(&got.row.payload)
        );
    }

    // 2. Your own table: a version that only grows per key, bumped by every write.
    let pg = cache.store().primary();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS my_posts (
             id TEXT PRIMARY KEY, version BIGINT NOT NULL, body TEXT NOT NULL)",
    )
    .execute(pg)
    .await?;
    let id = "7";
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO my_posts (id, version, body) VALUES ($1, 1, $2)
         ON CONFLICT (id) DO UPDATE SET version = my_posts.version + 1, body = EXCLUDED.body
         RETURNING version",
    )
    .bind(id)
    .bind(format!(
        "my post, edited at {:?}",
        std::time::SystemTime::now()
    ))
    .fetch_one(pg)
    .await?;
    let key = Key::new("my_posts", 1, id)?;
    // After writing your table: a tombstone of the new version in both tiers.
    let invalidated = cache.invalidate_version(&key, Some(version as u64)).await;
    println!("wrote my_posts {id} v{version} (invalidated: {invalidated})");
    // Reading it: the loader returns the row and its version (None when absent).
    let load = || async {
        sqlx::query_as::<_, (i64, String)>("SELECT version, body FROM my_posts WHERE id = $1")
            .bind(id)
            .fetch_optional(pg)
            .await
            .map(|r| {
                r.map(|(v, body)| Row {
                    version: v as u64,
                    payload: body.into_bytes(),
                })
            })
            .map_err(|e| TierError::Refused {
                tier: "postgres",
                detail: e.to_string(),
            })
    };
    let first = cache
        .get_with(&key, load)
        .await?
        .ok_or("my post is missing")?;
    let second = cache
        .get_with(&key, load)
        .await?
        .ok_or("my post is missing")?;
    println!(
        "read my_posts {id} v{} from {:?}, then from {:?}",
        first.row.version, first.source, second.source
    );
    if second.source == Source::Db {
        return Err("the second read of my post missed both caches".into());
    }

    // 3. What the instance did: a table, or JSON (serde) to ship elsewhere.
    println!("{}", cache.metrics().snapshot());
    Ok(())
}
