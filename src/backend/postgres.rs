//! PostgreSQL store over sqlx (runtime queries: no database at build time). Rows carry a version
//! the database assigns in the write transaction, and `aside_rows` is captured as a table of your
//! own would be ([`super::capture`]): a trigger appends an outbox row naming the key and version
//! in the same transaction, whoever writes (this library, another service, someone in `psql`),
//! so `durable`'s invalidators apply every change.
//!
//! * A writer that does not bump `version` gets it bumped (a BEFORE trigger: a new version is
//!   always above the old, so a fill of the old row is refused), and an INSERT without one gets 1.
//! * A row inserted at version 0 is one nobody has written yet (a harness's seed): no outbox row.
//! * A DELETE, or an UPDATE that renames a key, invalidates the old key at its version + 1. A
//!   key written again after a DELETE starts over at version 1, below that tombstone: its fills
//!   are refused, and its reads served by the database, until the tombstone's TTL has passed.
//! * [`Store::write`] is one statement (`aside_write`): one round trip, and it reports the other
//!   keys its transaction changed (through triggers of yours), which the trigger notes in a
//!   transaction-local setting.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Row as _};

use crate::tier::{Committed, OutboxRow, ReadFrom, Row, Store, TierError, TierResult};

const TIER: &str = "postgres";
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled connection idle this long is pinged before it is used (HikariCP's bypass window is
/// 500 ms); one used more recently is not (`containers/benches/tiers.rs` prints what the ping
/// costs per query).
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub const SCHEMA: &str = r#"
SELECT pg_advisory_xact_lock(hashtext('aside_migrate'));
CREATE TABLE IF NOT EXISTS aside_rows (
    key     TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    payload BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS aside_outbox (
    id         BIGSERIAL PRIMARY KEY,
    key        TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE aside_outbox ADD COLUMN IF NOT EXISTS done_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS aside_outbox_created_at ON aside_outbox (created_at);

CREATE OR REPLACE FUNCTION aside_outbox_append(k TEXT, v BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    seen TEXT := COALESCE(current_setting('aside.captured', true), '');
BEGIN
    INSERT INTO aside_outbox (key, version) VALUES (k, v);
    IF length(seen) < 4096 THEN
        PERFORM set_config('aside.captured', seen || k || chr(31) || v || chr(30), true);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION aside_rows_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := COALESCE(NEW.version, 1);
    ELSIF NEW.version <= OLD.version THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION aside_rows_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR NEW.key <> OLD.key) THEN
        PERFORM aside_outbox_append(OLD.key, OLD.version + 1);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.version > 0 THEN
        PERFORM aside_outbox_append(NEW.key, NEW.version);
    END IF;
    RETURN NULL;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = 'aside_rows'::regclass AND tgname = 'aside_bump_version') THEN
        CREATE TRIGGER aside_bump_version BEFORE INSERT OR UPDATE ON aside_rows
            FOR EACH ROW EXECUTE FUNCTION aside_rows_version();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = 'aside_rows'::regclass AND tgname = 'aside_capture') THEN
        CREATE TRIGGER aside_capture AFTER INSERT OR UPDATE OR DELETE ON aside_rows
            FOR EACH ROW EXECUTE FUNCTION aside_rows_capture();
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION aside_write(k TEXT, p BYTEA, OUT new_version BIGINT, OUT captured TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('aside.captured', '', true);
    INSERT INTO aside_rows AS r (key, version, payload) VALUES (k, 1, p)
        ON CONFLICT (key) DO UPDATE SET version = r.version + 1, payload = EXCLUDED.payload
        RETURNING r.version INTO new_version;
    captured := current_setting('aside.captured', true);
END
$$;
"#;
/// `host:port/database` of a connection URL, without the scheme, credentials or parameters: what
/// errors name.
pub fn server_of(url: &str) -> String {
    let bare = super::without_credentials(url);
    let rest = bare.split_once("://").map_or(bare.as_str(), |(_, r)| r);
    rest.split(['?', '#']).next().unwrap_or(rest).to_string()
}

/// A sqlx error as a tier error naming the server (`at`, without credentials) and, where the
/// cause has one, the fix.
fn map_err(at: &str, e: sqlx::Error) -> TierError {
    match e {
        // No connection came free or could be opened in time: say which pool, and the setting.
        sqlx::Error::PoolTimedOut => TierError::Unavailable {
            tier: TIER,
            detail: format!(
                "{at}: {e} (no connection of this server's pool came free, and none could be opened, within {} ms: if the server is up, raise postgres.pool_max or lower the load)",
                CONNECT_TIMEOUT.as_millis()
            ),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => TierError::Unavailable {
            tier: TIER,
            detail: format!("{at}: {e}"),
        },
        other => {
            let text = other.to_string();
            let hint = if text.contains("relation \"aside_") && text.contains("does not exist") {
                " (the schema is missing: run Postgres::migrate, or build the cache with \
                 aside::backend::connect, which does; it creates aside_rows and aside_outbox)"
            } else {
                ""
            };
            TierError::Refused {
                tier: TIER,
                detail: format!("{at}: {text}{hint}"),
            }
        }
    }
}

/// A primary and, optionally, its streaming replica.
#[derive(Clone)]
pub struct Postgres {
    primary: PgPool,
    replica: Option<PgPool>,
    /// `host:port/database` of each, for errors.
    primary_at: String,
    replica_at: String,
    /// Each pool's size, and how long a query waits for one of its connections.
    pool_max: u32,
    pool_wait: Duration,
}

impl Postgres {
    /// Connects to the primary (and the replica): one connection is opened at once, so a wrong
    /// address or password fails here, in words naming the server, not after the pool's wait.
    pub async fn connect(
        url: &str,
        replica_url: Option<&str>,
        pool_max: u32,
    ) -> TierResult<Postgres> {
        let wait = Duration::from_millis(crate::settings::PostgresSettings::default().pool_wait_ms);
        Postgres::connect_pool(url, replica_url, pool_max, wait).await
    }

    /// As [`Postgres::connect`], with how long a query may wait for a connection of a pool
    /// whose `pool_max` connections are all busy (`postgres.pool_wait_ms`) before it fails
    /// with [`TierError::Exhausted`], naming the pool; keep it under the cache's
    /// `db_timeout_ms`, or the cache's deadline says only that the database timed out.
    pub async fn connect_pool(
        url: &str,
        replica_url: Option<&str>,
        pool_max: u32,
        pool_wait: Duration,
    ) -> TierResult<Postgres> {
        async fn pool(url: &str, pool_max: u32, pool_wait: Duration) -> TierResult<PgPool> {
            let at = server_of(url);
            let opts: PgConnectOptions = url.parse().map_err(|e| TierError::Refused {
                tier: TIER,
                detail: format!("{at}: not a PostgreSQL URL: {e}"),
            })?;
            let first = PgConnection::connect_with(&opts);
            match tokio::time::timeout(CONNECT_TIMEOUT, first).await {
                Err(_) => {
                    return Err(TierError::Unavailable {
                        tier: TIER,
                        detail: format!(
                            "{at}: no connection within {} ms (is PostgreSQL listening there?)",
                            CONNECT_TIMEOUT.as_millis()
                        ),
                    })
                }
                Ok(Err(e)) => return Err(map_err(&at, e)),
                Ok(Ok(c)) => drop(c.close().await),
            }
            // Eager, as before: the pool's first connection is opened here, not inside the
            // first read (sqlx's connect, polled inside the read path, overflowed a debug test
            // thread's stack).
            PgPoolOptions::new()
                .max_connections(pool_max.max(1))
                .acquire_timeout(pool_wait)
                // sqlx pings every connection it hands out: one more round trip on every
                // query. A connection used within the last PING_IF_IDLE_FOR is alive as far
                // as a ping could tell; one idle longer (after a quiet spell, or a restart of
                // the server) is pinged, and a dead one replaced, before it is used.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IF_IDLE_FOR {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(opts)
                .await
                .map_err(|e| map_err(&at, e))
        }
        let primary = pool(url, pool_max, pool_wait).await?;
        let replica = match replica_url {
            Some(u) => Some(pool(u, pool_max, pool_wait).await?),
            None => None,
        };
        Ok(Postgres {
            primary,
            replica,
            primary_at: server_of(url),
            replica_at: replica_url.map(server_of).unwrap_or_default(),
            pool_max: pool_max.max(1),
            pool_wait,
        })
    }

    pub(super) fn fail(&self, e: sqlx::Error) -> TierError {
        self.fail_at(&self.primary_at, e)
    }

    /// An error of the pool of the server at `at`: an exhausted pool is named with its size
    /// and wait.
    fn fail_at(&self, at: &str, e: sqlx::Error) -> TierError {
        match e {
            sqlx::Error::PoolTimedOut => TierError::pool_exhausted(
                TIER,
                at,
                self.pool_max,
                self.pool_wait.as_millis() as u64,
            ),
            e => map_err(at, e),
        }
    }

    /// Creates the tables if they are missing.
    pub async fn migrate(&self) -> TierResult<()> {
        sqlx::raw_sql(SCHEMA)
            .execute(&self.primary)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Deletes outbox rows older than `keep` that an invalidator marked done (`durable`'s
    /// invalidators do, every `outbox_prune_every_ms`; keep at least the replay window).
    /// Returns how many were deleted.
    pub async fn prune_outbox(&self, keep: Duration) -> TierResult<u64> {
        let r = sqlx::query(
            "DELETE FROM aside_outbox WHERE done_at IS NOT NULL
               AND created_at < now() - $1 * interval '1 millisecond'",
        )
        .bind(keep.as_millis() as i64)
        .execute(&self.primary)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(r.rows_affected())
    }
}

/// The other keys a write's transaction changed, from what the outbox trigger noted in
/// `aside.captured` (a transaction-local setting: `key` 0x1f `version` 0x1e, each key once at its
/// last version, the first 4 KiB of them), in the order first changed.
fn siblings(own: &str, captured: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for entry in captured.split('\x1e') {
        let Some((k, v)) = entry.rsplit_once('\x1f') else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        if k == own {
            continue;
        }
        match out.iter_mut().find(|(seen, _)| seen == k) {
            Some(e) => e.1 = v,
            None => out.push((k.to_string(), v)),
        }
    }
    out
}

fn outbox_rows(rows: Vec<sqlx::postgres::PgRow>) -> Vec<OutboxRow> {
    rows.iter()
        .map(|r| OutboxRow {
            id: r.get::<i64, _>(0) as u64,
            key: r.get::<String, _>(1),
            version: r.get::<i64, _>(2) as u64,
        })
        .collect()
}

impl Store for Postgres {
    async fn read(&self, key: &str, from: ReadFrom) -> TierResult<Option<Row>> {
        let (pool, at) = match (from, &self.replica) {
            (ReadFrom::Replica, Some(r)) => (r, &self.replica_at),
            _ => (&self.primary, &self.primary_at),
        };
        let row = sqlx::query("SELECT version, payload FROM aside_rows WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await
            .map_err(|e| self.fail_at(at, e))?;
        Ok(row.map(|r| Row {
            version: r.get::<i64, _>(0) as u64,
            payload: r.get::<Vec<u8>, _>(1),
        }))
    }

    async fn write(&self, key: &str, payload: &[u8]) -> TierResult<Committed> {
        // One statement, so one round trip and one transaction: the row's trigger writes the
        // outbox row of every key the transaction changes, and says which.
        let row = sqlx::query("SELECT new_version, captured FROM aside_write($1, $2)")
            .bind(key)
            .bind(payload)
            .fetch_one(&self.primary)
            .await
            .map_err(|e| self.fail(e))?;
        let version = row.get::<i64, _>(0) as u64;
        let captured: Option<String> = row.get(1);
        Ok(Committed {
            version,
            siblings: siblings(key, captured.as_deref().unwrap_or("")),
        })
    }

    async fn outbox_after(&self, after_id: u64, limit: u32) -> TierResult<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, key, version FROM aside_outbox WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.primary)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(outbox_rows(rows))
    }

    async fn outbox_recent(&self, window_ms: u64, limit: u32) -> TierResult<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT id, key, version FROM aside_outbox
              WHERE created_at > now() - $1 * interval '1 millisecond' ORDER BY id LIMIT $2",
        )
        .bind(window_ms.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.primary)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(outbox_rows(rows))
    }

    async fn outbox_head(&self) -> TierResult<u64> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM aside_outbox")
            .fetch_one(&self.primary)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(head as u64)
    }

    async fn outbox_head_before(&self, age_ms: u64) -> TierResult<u64> {
        let head: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(id), 0) FROM aside_outbox
              WHERE created_at <= now() - $1 * interval '1 millisecond'",
        )
        .bind(age_ms.min(i64::MAX as u64) as i64)
        .fetch_one(&self.primary)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(head as u64)
    }

    async fn outbox_done(&self, ids: &[u64]) -> TierResult<()> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        sqlx::query(
            "UPDATE aside_outbox SET done_at = now() WHERE id = ANY($1) AND done_at IS NULL",
        )
        .bind(&ids)
        .execute(&self.primary)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }
    async fn outbox_undone(&self) -> TierResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM aside_outbox WHERE done_at IS NULL")
            .fetch_one(&self.primary)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(n as u64)
    }
    async fn outbox_prune(&self, keep_ms: u64) -> TierResult<u64> {
        self.prune_outbox(Duration::from_millis(keep_ms)).await
    }
}

#[cfg(test)]
mod tests {
    use super::siblings;

    #[test]
    fn siblings_are_the_other_keys_the_transaction_captured() {
        let c =
            "listings:v1:r/a:hot\x1f4\x1elistings:v1:r/a:new\x1f2\x1elistings:v1:r/a:new\x1f3\x1e";
        assert_eq!(
            siblings("listings:v1:r/a:hot", c),
            vec![("listings:v1:r/a:new".to_string(), 3)]
        );
        assert!(siblings("k", "").is_empty());
        // A truncated or damaged note is read as far as it goes.
        assert_eq!(siblings("x", "a\x1f1\x1eb\x1f").len(), 1);
    }

    #[test]
    fn an_exhausted_pool_names_its_server_and_the_settings_in_one_line() {
        let e = crate::TierError::pool_exhausted("postgres", "db.internal:5432/app", 16, 1000);
        assert!(e.changed_nothing() && !e.is_health(), "{e:?}");
        let e = e.to_string();
        for part in [
            "db.internal:5432/app",
            "postgres.pool_max",
            "16 at most",
            "within 1000 ms",
            "postgres.pool_wait_ms",
        ] {
            assert!(e.contains(part), "{e}");
        }
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn errors_name_the_server_without_credentials_or_parameters() {
        assert_eq!(
            super::server_of("postgres://app:s3cret@db.internal:5433/app?sslmode=require"),
            "db.internal:5433/app"
        );
        assert_eq!(super::server_of("postgres://db:5432/x"), "db:5432/x");
    }
}
