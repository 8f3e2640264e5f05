//! Capture: invalidation from the database itself, for tables of your own. Declare, for an
//! existing table, the cache key(s) each row maps to (templates over its columns, such as
//! `posts:v1:{id}` and `listings:v1:{subreddit}:hot`); [`Postgres::capture`] installs a trigger
//! so that every INSERT, UPDATE and DELETE, by any client (your services, a migration, someone in
//! `psql`), bumps each key's version and appends an outbox row for it in the same transaction.
//! `durable`'s invalidators apply those rows as they apply the library's own, with the same Δ.
//!
//! * **Versions** live in `aside_key_versions`, one row per key; the trigger's
//!   `INSERT ... ON CONFLICT DO UPDATE` holds that row's lock until the transaction ends, so two
//!   transactions that change one key get versions in their commit order. A rolled-back
//!   transaction leaves neither a version nor an outbox row.
//! * **Loaders** read a row and its key's version in one statement, so in one snapshot:
//!   `SELECT aside_key_version('posts:v1:42'), body FROM posts WHERE id = 42`. No version column
//!   to keep.
//! * **Updates** that move a row from one key to another (a post changing subreddit) bump both
//!   the old key and the new one; a column that is NULL yields no key.
//! * **Installing** is idempotent (`CREATE OR REPLACE`, the trigger dropped and made again) and
//!   recorded in `aside_captures` with the templates and [`CAPTURE_FORMAT`];
//!   [`Postgres::uncapture`] removes the trigger and its function.
//!
//! Why a trigger and not logical decoding (pgoutput): a trigger runs in the writing transaction,
//! so the outbox row commits or rolls back with the write and its per-key version is ordered by
//! the row lock, with no replication slot to create, monitor and drop (a slot nobody reads holds
//! WAL until the disk fills), no `wal_level = logical` restart, and nothing to run beside the
//! database. The price is the trigger's work inside every write transaction (two small inserts
//! per key) and a schema change to install it; decoding would cost the writers nothing and see
//! tables nobody declared, at the price of the slot and a consumer that must never fall behind.

use super::postgres::Postgres;
use crate::tier::TierError;

/// The shape of what [`Postgres::capture`] installs, recorded with each capture (2: the outbox
/// row is appended by the schema's `aside_outbox_append`, which also notes the key for the
/// writer's `Written::siblings`).
pub const CAPTURE_FORMAT: i32 = 2;

/// What is installed once per database, whatever the tables: the versions and the function
/// loaders read them with.
const COMMON: &str = "
CREATE TABLE IF NOT EXISTS aside_key_versions (
    key     TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS aside_captures (
    table_name TEXT PRIMARY KEY,
    templates  TEXT[] NOT NULL,
    format     INT NOT NULL,
    installed  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION aside_key_version(k TEXT) RETURNS BIGINT
LANGUAGE sql STABLE AS $$ SELECT COALESCE((SELECT version FROM aside_key_versions WHERE key = k), 0) $$;
";

/// A table's capture: which cache keys each of its rows maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    table: String,
    templates: Vec<Template>,
}

/// One key template: literal text and `{column}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Column(String),
}

/// Why a capture cannot be installed, in one line naming the table, template or column.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capture: key template {template:?}: {why}")]
    Template { template: String, why: String },
    #[error("capture: table {table:?} does not exist (create it first, or check the schema search path)")]
    NoTable { table: String },
    #[error("capture: key template {template:?} names column {column:?}, which {table:?} does not have (its columns: {})", .columns.join(", "))]
    NoColumn {
        template: String,
        column: String,
        table: String,
        columns: Vec<String>,
    },
    #[error("capture: {0}")]
    Db(#[from] TierError),
}

impl Capture {
    /// The capture of `table` (as PostgreSQL names it: `posts`, `app.posts`), with no key yet.
    pub fn table(table: impl Into<String>) -> Capture {
        Capture {
            table: table.into(),
            templates: Vec::new(),
        }
    }

    /// Each row also maps to the key `template` makes of it: literal text and `{column}`
    /// placeholders, such as `posts:v1:{id}` or `listings:v1:{subreddit}:hot`.
    pub fn key(mut self, template: &str) -> Result<Capture, CaptureError> {
        self.templates.push(Template::parse(template)?);
        Ok(self)
    }

    /// The key `template` (by index) makes of a row whose columns are `values`: what the
    /// trigger computes, for tests and for callers that build the same keys.
    pub fn key_of(&self, template: usize, values: &[(&str, &str)]) -> Option<String> {
        let t = self.templates.get(template)?;
        let mut out = String::new();
        for p in &t.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Column(c) => out.push_str(values.iter().find(|(n, _)| n == c)?.1),
            }
        }
        Some(out)
    }

    /// The trigger function's name for this table.
    fn function(&self) -> String {
        let safe: String = self
            .table
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("aside_capture_{safe}")
    }

    /// The trigger function: every template over OLD (not for an INSERT) and NEW (not for a
    /// DELETE); each distinct key, in order, gets its next version and an outbox row.
    fn function_sql(&self) -> String {
        let over = |row: &str| {
            self.templates
                .iter()
                .map(|t| t.sql(row))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $aside$
DECLARE
    keys TEXT[] := '{{}}';
    k TEXT;
    v BIGINT;
BEGIN
    IF TG_OP <> 'INSERT' THEN keys := keys || ARRAY[{old}]; END IF;
    IF TG_OP <> 'DELETE' THEN keys := keys || ARRAY[{new}]; END IF;
    FOR k IN SELECT DISTINCT x FROM unnest(keys) AS x WHERE x IS NOT NULL ORDER BY x LOOP
        INSERT INTO aside_key_versions (key, version) VALUES (k, 1)
            ON CONFLICT (key) DO UPDATE SET version = aside_key_versions.version + 1
            RETURNING version INTO v;
        PERFORM aside_outbox_append(k, v);
    END LOOP;
    RETURN NULL;
END
$aside$;",
            f = self.function(),
            old = over("OLD"),
            new = over("NEW"),
        )
    }
}

impl Template {
    fn parse(text: &str) -> Result<Template, CaptureError> {
        let bad = |why: &str| CaptureError::Template {
            template: text.into(),
            why: why.into(),
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.into()));
                    rest = "";
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(bad("a '}' closes no '{'"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].into()));
                    }
                    let after = &rest[i + 1..];
                    let end = after
                        .find('}')
                        .ok_or_else(|| bad("a '{' is never closed"))?;
                    let column = &after[..end];
                    let ok = !column.is_empty()
                        && column
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !ok {
                        return Err(bad(&format!(
                            "{{{column}}} is not a column name (letters, digits, _)"
                        )));
                    }
                    parts.push(Part::Column(column.into()));
                    rest = &after[end + 1..];
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Column(_))) {
            return Err(bad(
                "it names no column: every row would map to one key (use {column})",
            ));
        }
        let literal: String = parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_str(),
                Part::Column(_) => "x",
            })
            .collect();
        crate::Key::parse(&literal).map_err(|e| {
            bad(&format!(
                "its keys would not be cache keys ({e}): use namespace:vN:{{column}}"
            ))
        })?;
        Ok(Template {
            text: text.into(),
            parts,
        })
    }

    /// The template over `row` (`OLD` or `NEW`) as a SQL expression; NULL when a column is.
    fn sql(&self, row: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => format!("'{}'", l.replace('\'', "''")),
                Part::Column(c) => format!("({row}.\"{c}\")::text"),
            })
            .collect::<Vec<_>>()
            .join(" || ")
    }

    fn columns(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c.as_str()),
            Part::Literal(_) => None,
        })
    }
}

impl Postgres {
    /// Installs `capture` (idempotent: installing it again replaces it): after this commits,
    /// every change to the table by any client writes its keys' outbox rows in its own
    /// transaction. The schema ([`Postgres::migrate`]) must exist.
    pub async fn capture(&self, capture: &Capture) -> Result<(), CaptureError> {
        if capture.templates.is_empty() {
            return Err(CaptureError::Template {
                template: String::new(),
                why: format!(
                    "{} has no key template: add one with Capture::key",
                    capture.table
                ),
            });
        }
        if capture.table.trim_matches('"') == "aside_rows" {
            return Err(CaptureError::Template {
                template: String::new(),
                why: "aside_rows is the library's own table and is captured already, by key".into(),
            });
        }
        let db = |e: sqlx::Error| CaptureError::Db(self.fail(e));
        let pool = self.primary();
        let oid: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
            .bind(&capture.table)
            .fetch_one(pool)
            .await
            .map_err(db)?;
        let Some(oid) = oid else {
            return Err(CaptureError::NoTable {
                table: capture.table.clone(),
            });
        };
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute
              WHERE attrelid = $1::bigint::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .bind(oid)
        .fetch_all(pool)
        .await
        .map_err(db)?;
        for t in &capture.templates {
            if let Some(missing) = t.columns().find(|c| !columns.iter().any(|x| x == c)) {
                return Err(CaptureError::NoColumn {
                    template: t.text.clone(),
                    column: missing.into(),
                    table: capture.table.clone(),
                    columns,
                });
            }
        }
        let table = quote_table(&capture.table);
        let mut tx = pool.begin().await.map_err(db)?;
        // One installer at a time per database: two at once would race on CREATE OR REPLACE.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aside_capture'))")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::raw_sql(COMMON).execute(&mut *tx).await.map_err(db)?;
        sqlx::raw_sql(&capture.function_sql())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let trigger = format!(
            "DROP TRIGGER IF EXISTS aside_capture ON {table};
             CREATE TRIGGER aside_capture AFTER INSERT OR UPDATE OR DELETE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION {}();",
            capture.function()
        );
        sqlx::raw_sql(&trigger)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let templates: Vec<&str> = capture.templates.iter().map(|t| t.text.as_str()).collect();
        sqlx::query(
            "INSERT INTO aside_captures (table_name, templates, format) VALUES ($1, $2, $3)
             ON CONFLICT (table_name) DO UPDATE
                 SET templates = EXCLUDED.templates, format = EXCLUDED.format, installed = now()",
        )
        .bind(&capture.table)
        .bind(&templates)
        .bind(CAPTURE_FORMAT)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Removes `table`'s capture (its trigger and function; the versions stay, so a capture
    /// installed again goes on from them). Removing one that is not installed does nothing.
    pub async fn uncapture(&self, table: &str) -> Result<(), CaptureError> {
        let db = |e: sqlx::Error| CaptureError::Db(self.fail(e));
        let c = Capture::table(table);
        let pool = self.primary();
        let exists: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
            .bind(table)
            .fetch_one(pool)
            .await
            .map_err(db)?;
        let mut tx = pool.begin().await.map_err(db)?;
        if exists.is_some() {
            let drop = format!(
                "DROP TRIGGER IF EXISTS aside_capture ON {}",
                quote_table(table)
            );
            sqlx::raw_sql(&drop).execute(&mut *tx).await.map_err(db)?;
        }
        sqlx::raw_sql(&format!("DROP FUNCTION IF EXISTS {}()", c.function()))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("DELETE FROM aside_captures WHERE table_name = $1")
            .bind(table)
            .execute(&mut *tx)
            .await
            .or_else(|e| match &e {
                // Nothing was ever captured here.
                sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => {
                    Ok(Default::default())
                }
                _ => Err(e),
            })
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }
}

/// `schema.table` or `table` with each part quoted as an identifier.
fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_into_literals_and_columns() {
        let c = Capture::table("posts")
            .key("posts:v1:{id}")
            .unwrap()
            .key("listings:v1:{subreddit}:hot")
            .unwrap();
        assert_eq!(c.key_of(0, &[("id", "42")]).as_deref(), Some("posts:v1:42"));
        assert_eq!(
            c.key_of(1, &[("subreddit", "rust")]).as_deref(),
            Some("listings:v1:rust:hot")
        );
        assert_eq!(c.key_of(1, &[("id", "1")]), None, "a column it lacks");
        assert_eq!(
            c.templates[1].sql("NEW"),
            "'listings:v1:' || (NEW.\"subreddit\")::text || ':hot'"
        );
        assert!(c
            .function_sql()
            .contains("ARRAY['posts:v1:' || (OLD.\"id\")::text, "));
    }

    #[test]
    fn bad_templates_are_one_line_naming_the_problem() {
        let e = |t: &str| Capture::table("t").key(t).unwrap_err().to_string();
        assert!(
            e("posts:v1:{id").contains("never closed"),
            "{}",
            e("posts:v1:{id")
        );
        assert!(e("posts:v1:id}").contains("closes no"));
        assert!(e("posts:v1:{}").contains("not a column name"));
        assert!(e("posts:v1:{id; drop table x}").contains("not a column name"));
        assert!(e("posts:v1:all").contains("names no column"));
        assert!(
            e("posts:{id}").contains("would not be cache keys"),
            "{}",
            e("posts:{id}")
        );
        for t in ["posts:v1:{id", "posts:{id}"] {
            assert_eq!(e(t).lines().count(), 1);
        }
    }

    #[test]
    fn tables_are_quoted_as_identifiers() {
        assert_eq!(quote_table("posts"), "\"posts\"");
        assert_eq!(quote_table("app.posts"), "\"app\".\"posts\"");
        assert_eq!(quote_table("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            Capture::table("app.posts").function(),
            "aside_capture_app_posts"
        );
    }
}
