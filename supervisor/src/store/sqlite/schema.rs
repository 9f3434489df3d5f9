//! The schema of the SQLite store and its migrations, and the connection settings.
//!
//! The schema version is `PRAGMA user_version`. [`MIGRATIONS`] is an ordered list:
//! step `i` takes a database from version `i` to `i + 1`, and runs in one transaction
//! together with the version bump, so a crash mid-migration leaves the old version.
//! Steps are append-only: never edit a released one, add a new step instead.
//! A database newer than this build is refused, never touched.

use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, TransactionBehavior};

/// Ordered schema steps; the schema version is the number of steps applied.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_policies.sql"),
    include_str!("migrations/0003_secrets_kv.sql"),
    include_str!("migrations/0004_modules.sql"),
    include_str!("migrations/0005_audit.sql"),
    include_str!("migrations/0006_one_script_tree.sql"),
    include_str!("migrations/0007_fewer_create_trees.sql"),
    include_str!("migrations/0008_redo_log.sql"),
];

/// The schema version this build writes.
pub(super) fn latest_version() -> u32 {
    // The list is a handful of entries; the cast cannot truncate.
    MIGRATIONS.len() as u32
}

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the single read-write connection (the writer thread's).
pub(super) fn configure_writer(conn: &Connection, fsync: bool) -> anyhow::Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .context("switch to WAL mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("the database refused WAL mode (journal_mode is {mode})");
    }
    // NORMAL: a commit has written its WAL frames with write(2) before it returns, so
    // it survives the death of the process; only FULL also fsyncs them at every commit.
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })
        .context("set synchronous")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .context("enable foreign keys")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("set busy timeout")?;
    // 32 MiB: under a stream of creates the writer inserts into random leaves of the
    // id, name and script-key indexes; with 4 MiB it read most of them back with
    // pread (from the WAL or the file) at every group.
    conn.pragma_update(None, "cache_size", -32_768)
        .context("set cache size")?;
    // Checkpoints run on their own thread (see `checkpoint`); this threshold (40 MiB
    // of WAL) is only a safety net should that thread fall behind.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)
        .context("set WAL autocheckpoint")?;
    // Keep the WAL file from staying huge after a burst once it has been checkpointed.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .context("set journal size limit")?;
    Ok(())
}

/// Settings of a read-only connection of the read pool.
pub(super) fn configure_reader(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("set busy timeout")?;
    conn.pragma_update(None, "cache_size", -16_384)
        .context("set cache size")?;
    // No mmap: the database file grows at every checkpoint, and each read transaction
    // that sees a larger file unmapped and remapped it (TLB shoot-downs, page faults;
    // ~20 % of the supervisor's CPU under 1,000 fires/s). Plain reads through the page
    // cache are cheaper here, and the mapping no longer counts in the RSS.
    conn.pragma_update(None, "mmap_size", 0)
        .context("set mmap size")?;
    Ok(())
}

/// The schema version of the database.
pub(super) fn current_version(conn: &Connection) -> anyhow::Result<u32> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .context("read schema version")?;
    u32::try_from(v).with_context(|| format!("schema version {v} is not a valid version"))
}

/// Brings the database to `target` (at most [`latest_version`]), one transaction per
/// step. Refuses a database whose version is newer than this build knows.
pub(super) fn migrate(conn: &mut Connection, target: u32) -> anyhow::Result<()> {
    let latest = latest_version();
    let target = target.min(latest);
    let found = current_version(conn)?;
    if found > latest {
        bail!(
            "the database has schema version {found}, but this build of traitor only knows \
             versions up to {latest}: it was written by a newer traitor; run that version \
             or restore a backup"
        );
    }
    for (step, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(found as usize)
    {
        let next = step + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .with_context(|| format!("begin migration to schema version {next}"))?;
        // Another process may have migrated while we waited for the lock.
        if current_version(&tx)? as usize > step {
            continue;
        }
        tx.execute_batch(sql)
            .with_context(|| format!("migrate to schema version {next}"))?;
        tx.pragma_update(None, "user_version", next as i64)
            .with_context(|| format!("record schema version {next}"))?;
        tx.commit()
            .with_context(|| format!("commit migration to schema version {next}"))?;
    }
    Ok(())
}
