//! The PostgreSQL store's namespace (one schema per cluster) and its migrations.
//!
//! Every cluster lives in its own schema, `traitor_<cluster>`, quoted wherever it is
//! named, so clusters sharing a database never see each other's rows. The schema
//! version is the single row of `<schema>.schema_version`. [`MIGRATIONS`] is an ordered,
//! append-only list: step `i` takes a schema from version `i` to `i + 1`. [`migrate`]
//! applies the missing steps and the version bump in one transaction under a
//! transaction-scoped advisory lock, so nodes starting together migrate once, one after
//! the other, and a crash mid-migration leaves the old version. A schema newer than
//! this build is refused, never touched.
//!
//! This module creates and migrates; it must not read or write jobs.

use anyhow::{Context, bail};
use tokio_postgres::Client;

/// Ordered schema steps; the schema version is the number of steps applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_policies.sql"),
    include_str!("migrations/0003_secrets_kv.sql"),
    include_str!("migrations/0004_modules.sql"),
    include_str!("migrations/0005_audit.sql"),
];

/// The schema version this build writes.
pub(super) fn latest_version() -> i32 {
    // The list is a handful of entries; the cast cannot truncate.
    MIGRATIONS.len() as i32
}

/// Prefix of every cluster schema.
const SCHEMA_PREFIX: &str = "traitor_";

/// PostgreSQL truncates identifiers longer than this many bytes, which could make two
/// clusters share a schema; longer names are refused instead.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The schema of a cluster: `traitor_<cluster>`, unquoted.
///
/// Cluster names are restricted to ASCII letters, digits, `_` and `-`, and kept exactly
/// (case and `-` included, the schema name being always quoted), so two different
/// cluster names never map to one schema.
pub(super) fn schema_name(cluster: &str) -> anyhow::Result<String> {
    if cluster.is_empty() {
        bail!("the cluster name is empty");
    }
    if let Some(c) = cluster
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        bail!(
            "the cluster name {cluster:?} contains {c:?}; use only ASCII letters, digits, \
             '_' and '-'"
        );
    }
    let schema = format!("{SCHEMA_PREFIX}{cluster}");
    if schema.len() > MAX_IDENTIFIER_BYTES {
        bail!(
            "the cluster name {cluster:?} is too long for PostgreSQL: at most {} characters",
            MAX_IDENTIFIER_BYTES - SCHEMA_PREFIX.len()
        );
    }
    Ok(schema)
}

/// `name` as a quoted SQL identifier (safe for any text).
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The advisory lock key of a schema's migrations: FNV-1a of its name, so each schema
/// has its own key (a collision only serializes two start-ups) without relying on
/// PostgreSQL's internal hash functions.
fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "traitor-migrate:".bytes().chain(schema.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// The schema version of `schema`, or `None` if it has no version table yet.
#[cfg(test)]
pub(super) async fn current_version(client: &Client, schema: &str) -> anyhow::Result<Option<i32>> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables \
             WHERE schemaname = $1 AND tablename = 'schema_version')",
            &[&schema],
        )
        .await
        .context("look for the schema version table")?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let sql = format!(
        "SELECT max(version) FROM {}.schema_version",
        quote_ident(schema)
    );
    let v: Option<i32> = client
        .query_one(&sql, &[])
        .await
        .context("read the schema version")?
        .try_get(0)?;
    Ok(Some(v.unwrap_or(0)))
}

/// Creates `schema` if needed and brings it to `target` (at most [`latest_version`]).
/// Refuses a schema whose version is newer than this build knows.
pub(super) async fn migrate(client: &mut Client, schema: &str, target: i32) -> anyhow::Result<()> {
    let latest = latest_version();
    let target = target.min(latest);
    let quoted = quote_ident(schema);
    let tx = client
        .transaction()
        .await
        .context("begin the migration transaction")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
        .await
        .context("take the migration lock")?;
    // CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database even when
    // the schema exists; look first so a role without it can use a prepared schema.
    let schema_exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .context("look for the cluster schema")?
        .try_get(0)?;
    if !schema_exists {
        tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .await
            .with_context(|| format!("create schema {quoted}"))?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO {quoted}; \
         CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"
    ))
    .await
    .context("create the schema version table")?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .context("read the schema version")?
        .try_get(0)?;
    if found > latest {
        bail!(
            "schema {quoted} has version {found}, but this build of traitor only knows \
             versions up to {latest}: it was written by a newer traitor; run that version"
        );
    }
    if found >= target {
        return tx.commit().await.context("end the migration transaction");
    }
    for (step, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(found as usize)
    {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migrate {quoted} to schema version {}", step + 1))?;
    }
    tx.batch_execute("DELETE FROM schema_version")
        .await
        .context("record the schema version")?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&target],
    )
    .await
    .context("record the schema version")?;
    tx.commit()
        .await
        .with_context(|| format!("commit the migration of {quoted} to version {target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_map_to_distinct_schemas() {
        assert_eq!(schema_name("default").expect("valid"), "traitor_default");
        assert_eq!(schema_name("Blue-1").expect("valid"), "traitor_Blue-1");
        assert_ne!(
            schema_name("a-b").expect("valid"),
            schema_name("a_b").expect("valid")
        );
        for bad in ["", "a b", "a;drop", "x\"y", "é", "a.b", "a\0"] {
            assert!(schema_name(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(schema_name(&"x".repeat(55)).is_ok());
        assert!(schema_name(&"x".repeat(56)).is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("traitor_a-b"), "\"traitor_a-b\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn lock_keys_differ_per_schema() {
        assert_ne!(lock_key("traitor_a"), lock_key("traitor_b"));
        assert_eq!(lock_key("traitor_a"), lock_key("traitor_a"));
    }
}
