//! The embedded SQLite store of standalone mode (`<data_dir>/traitor.db`).
//!
//! Layout: one writer thread owns the only connection that writes, and commits writes
//! in groups ([`writer`]), answering groups of job creates from a redo log
//! (`traitor.db-redo`, [`redo`]); a checkpointer thread moves committed WAL frames into the
//! database file off the commit path ([`checkpoint`]); reads use a small pool of
//! read-only connections inside `spawn_blocking`. The schema is versioned and migrated
//! at open ([`schema`]).
//!
//! # Durability
//!
//! A write is answered `Ok` only once it is durable: the transaction holding it has
//! committed or, for job creates, its record is in the redo log ([`redo`]), the
//! transaction committing within milliseconds (and before any read that follows). The
//! database runs in WAL mode. With the default options (`synchronous=NORMAL`) a commit
//! has handed its WAL frames to the kernel with `write(2)` before it returns but has
//! not fsynced them, so:
//!
//! - an acknowledged write survives `kill -9`, a panic or an OOM kill of the process
//!   (the data is in the OS page cache, and the next open recovers it from the WAL
//!   and applies what the redo log holds above its high-water mark);
//! - after a power loss or kernel crash the most recent commits and redo records may be
//!   lost; the database is not corrupted.
//!
//! With [`SqliteOptions::fsync`] (`synchronous=FULL`) every group commit also fsyncs the
//! WAL before answering, so acknowledged writes survive power loss too, at the cost of
//! one fsync per group (group commit keeps that cheap per write). Creates are then
//! committed per group too: the redo log is not fsynced.
//!
//! This module must not validate or schedule jobs (the service does), and nothing
//! outside the writer thread may write to the database.

mod audit;
mod checkpoint;
mod extras;
mod modules;
mod redo;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
mod redo_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use tokio::sync::{Semaphore, oneshot};

use self::rows::{
    JOB_COLUMNS, RUN_COLUMNS, VERSION_COLUMNS, read_job, read_run, read_script_version,
};
use self::writer::{Op, Reply, Request, db_err};
use super::{AuditEntry, JobListQuery, JobOrder, RunListQuery, Store, StoreError, StoreResult};
use crate::job::{Job, RunRecord, ScriptVersion};

/// Read-only connections kept open for reads.
const READERS: usize = 4;

/// Options of [`SqliteStore::open_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions {
    /// fsync the WAL at every commit (`synchronous=FULL`): acknowledged writes then
    /// survive power loss, not only the death of the process. Off by default.
    pub fsync: bool,
}

/// The embedded store. Cheap to share behind an `Arc`; see the module docs.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<WriterHandle>>,
    readers: Arc<ReadPool>,
    /// Set while answered creates wait for their commit (see [`redo`]).
    unseen: Arc<AtomicBool>,
}

struct WriterHandle {
    tx: writer::Sender,
    thread: JoinHandle<()>,
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

impl ReadPool {
    fn open_conn(&self) -> anyhow::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("open {} for reading", self.path.display()))?;
        schema::configure_reader(&conn)?;
        Ok(conn)
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database at `path`
    /// with default options, migrating its schema to this build's version.
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    pub fn open_with(path: &Path, options: SqliteOptions) -> anyhow::Result<SqliteStore> {
        let mut conn = open_writer(path, options, schema::latest_version())?;
        let redo = redo::Redo::open(&mut conn, path)?;
        let unseen = redo.unseen.clone();
        let checkpointer = checkpoint::Checkpointer::start(path)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let defer = !options.fsync;
        let thread = std::thread::Builder::new()
            .name("traitor-sqlite-writer".into())
            .spawn(move || writer::run(conn, rx, checkpointer, redo, defer))
            .context("start the SQLite writer thread")?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new(Some(WriterHandle { tx, thread })),
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::with_capacity(READERS)),
                permits: Arc::new(Semaphore::new(READERS)),
                closed: AtomicBool::new(false),
            }),
            unseen,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands a write to the writer thread and waits for its commit.
    async fn write(&self, op: Op) -> StoreResult<Reply> {
        let (reply, answer) = oneshot::channel();
        {
            let guard = self.writer.lock();
            let Some(w) = guard.as_ref() else {
                return Err(StoreError::Unavailable(anyhow!("the store is closed")));
            };
            w.tx.send(Request { op, reply })
                .map_err(|_| StoreError::Unavailable(anyhow!("the store writer has stopped")))?;
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable(anyhow!("the store writer stopped mid-write")))?
    }

    /// Runs `f` on a pooled read-only connection in a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        if pool.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(anyhow!("the store is closed")));
        }
        // A create answered before this read began may not be committed yet: have it
        // committed first, so that a read sees every write answered before it.
        if self.unseen.load(Ordering::Acquire) {
            self.write(Op::Flush).await?;
        }
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable(anyhow!("the store is closed")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = pool.idle.lock().pop();
            let conn = match pooled {
                Some(c) => c,
                None => pool.open_conn().map_err(StoreError::Unavailable)?,
            };
            let res = f(&conn).map_err(db_err);
            if !pool.closed.load(Ordering::Acquire) {
                pool.idle.lock().push(conn);
            }
            res
        })
        .await
        .map_err(|e| StoreError::Other(anyhow!("store read task failed: {e}")))?
    }
}

/// Opens the read-write connection, creating the file, and migrates to `target`.
fn open_writer(path: &Path, options: SqliteOptions, target: u32) -> anyhow::Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create data directory {}", dir.display()))?;
    }
    let mut conn =
        Connection::open(path).with_context(|| format!("open database {}", path.display()))?;
    schema::configure_writer(&conn, options.fsync)
        .with_context(|| format!("configure database {}", path.display()))?;
    schema::migrate(&mut conn, target)
        .with_context(|| format!("migrate database {}", path.display()))?;
    Ok(conn)
}

fn limit_i64(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

/// `%`, `_` and the escape character itself taken literally in a LIKE pattern.
fn like_contains(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The WHERE clause and parameters of a job list query.
fn job_filter(q: &JobListQuery) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = q.search.as_deref().filter(|s| !s.is_empty()) {
        clauses.push(
            "(id LIKE ?1 ESCAPE '\\' OR name LIKE ?1 ESCAPE '\\' \
             OR description LIKE ?1 ESCAPE '\\')"
                .replace("?1", &format!("?{}", args.len() + 1)),
        );
        args.push(Value::Text(like_contains(s)));
    }
    if let Some(t) = q.exec_type {
        clauses.push(format!("exec_type = ?{}", args.len() + 1));
        args.push(Value::Integer(i64::from(t.code())));
    }
    if let Some(e) = q.enabled {
        clauses.push(format!("enabled = ?{}", args.len() + 1));
        args.push(Value::Integer(i64::from(e)));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

fn job_order(order: JobOrder, descending: bool) -> String {
    let dir = if descending { "DESC" } else { "ASC" };
    match order {
        JobOrder::CreatedAt => format!("created_at_ms {dir}, id {dir}"),
        JobOrder::Name => format!("name {dir}, id {dir}"),
        JobOrder::UpdatedAt => format!("updated_at_ms {dir}, id {dir}"),
        // Jobs that never ran come last in both directions.
        JobOrder::LastExecTime => {
            format!("last_started_ms IS NULL, last_started_ms {dir}, id {dir}")
        }
    }
}

fn collect_jobs(
    stmt: &mut rusqlite::Statement<'_>,
    args: impl rusqlite::Params,
) -> anyhow::Result<Vec<Job>> {
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read_job(row)?);
    }
    Ok(out)
}

fn collect_runs(
    stmt: &mut rusqlite::Statement<'_>,
    args: impl rusqlite::Params,
) -> anyhow::Result<Vec<RunRecord>> {
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(read_run(row, false)?);
    }
    Ok(out)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_job_audited(
        &self,
        job: &Job,
        script: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        self.write(Op::Create {
            job: job.clone(),
            script: script.to_owned(),
            audit: audit.cloned(),
        })
        .await
        .map(|_| ())
    }

    async fn update_job_audited(
        &self,
        job: &Job,
        script: Option<&str>,
        expected_version: u64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        self.write(Op::Update {
            job: job.clone(),
            script: script.map(str::to_owned),
            expected: expected_version,
            audit: audit.cloned(),
        })
        .await
        .map(|_| ())
    }

    async fn delete_job_audited(&self, id: &str, audit: Option<&AuditEntry>) -> StoreResult<bool> {
        let op = Op::Delete {
            id: id.to_owned(),
            audit: audit.cloned(),
        };
        match self.write(op).await? {
            Reply::Deleted(d) => Ok(d),
            _ => Err(StoreError::Other(anyhow!(
                "delete job: unexpected writer reply"
            ))),
        }
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
                .context("prepare get job")?;
            let mut rows = stmt.query([&id]).context("get job")?;
            match rows.next().context("get job")? {
                Some(row) => Ok(Some(read_job(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn get_script(&self, id: &str) -> StoreResult<Option<String>> {
        let id = id.to_owned();
        self.read(move |conn| {
            // The current script is the version the job names (schema version 6).
            conn.prepare_cached(
                "SELECT v.source FROM jobs AS j JOIN script_versions AS v \
                 ON v.job_id = j.id AND v.version = j.script_version WHERE j.id = ?1",
            )
            .context("prepare get script")?
            .query_row([&id], |r| r.get(0))
            .optional()
            .context("get script")
        })
        .await
    }

    async fn list_jobs(&self, query: &JobListQuery) -> StoreResult<(Vec<Job>, u64)> {
        let (filter, mut args) = job_filter(query);
        let order = job_order(query.order, query.descending);
        let limit = limit_i64(query.limit);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // One snapshot for the page and the count.
            let tx = conn.unchecked_transaction().context("begin list jobs")?;
            let total: i64 = tx
                .prepare_cached(&format!("SELECT COUNT(*) FROM jobs {filter}"))
                .context("prepare count jobs")?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))
                .context("count jobs")?;
            let n = args.len();
            args.push(Value::Integer(limit));
            args.push(Value::Integer(offset));
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs {filter} ORDER BY {order} LIMIT ?{} OFFSET ?{}",
                n + 1,
                n + 2
            );
            let mut stmt = tx.prepare_cached(&sql).context("prepare list jobs")?;
            let jobs =
                collect_jobs(&mut stmt, params_from_iter(args.iter())).context("list jobs")?;
            drop(stmt);
            tx.finish().context("end list jobs")?;
            Ok((jobs, u64::try_from(total).unwrap_or(0)))
        })
        .await
    }

    async fn enabled_jobs_page(&self, after: Option<&str>, limit: u64) -> StoreResult<Vec<Job>> {
        let after = after.map(str::to_owned);
        let limit = limit_i64(Some(limit));
        self.read(move |conn| {
            // Walks the partial index of enabled jobs' ids from where the last page
            // ended (no OFFSET): one lookup per row into the table.
            let mut stmt = match &after {
                Some(_) => conn.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id > ?1 AND enabled = 1 \
                     ORDER BY id LIMIT ?2"
                )),
                None => conn.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE id >= '' AND ?1 IS NULL AND enabled = 1 \
                     ORDER BY id LIMIT ?2"
                )),
            }
            .context("prepare enabled jobs")?;
            collect_jobs(&mut stmt, params![after, limit]).context("read enabled jobs")
        })
        .await
    }

    async fn enabled_versions_page(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<(String, u64)>> {
        let after = after.map(str::to_owned);
        let limit = limit_i64(Some(limit));
        self.read(move |conn| {
            let mut stmt = match &after {
                Some(_) => conn.prepare_cached(
                    "SELECT id, version FROM jobs WHERE id > ?1 AND enabled = 1 \
                     ORDER BY id LIMIT ?2",
                ),
                None => conn.prepare_cached(
                    "SELECT id, version FROM jobs WHERE id >= '' AND ?1 IS NULL AND enabled = 1 \
                     ORDER BY id LIMIT ?2",
                ),
            }
            .context("prepare enabled versions")?;
            let mut rows = stmt
                .query(params![after, limit])
                .context("read enabled versions")?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().context("read enabled versions")? {
                let id: String = row.get(0)?;
                let version: i64 = row.get(1)?;
                let version = u64::try_from(version)
                    .with_context(|| format!("job {id}: stored version {version} is negative"))?;
                out.push((id, version));
            }
            Ok(out)
        })
        .await
    }

    async fn count_jobs(&self) -> StoreResult<(u64, u64)> {
        self.read(move |conn| {
            // Each count walks an index: the total the smallest one of `jobs`, the
            // enabled the partial index of enabled jobs (migration 0007).
            let (total, on): (u64, u64) = conn
                .prepare_cached(
                    "SELECT (SELECT COUNT(*) FROM jobs), \
                     (SELECT COUNT(*) FROM jobs WHERE enabled = 1)",
                )
                .context("prepare count jobs")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .context("count jobs")?;
            Ok((total.saturating_sub(on), on))
        })
        .await
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> StoreResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        self.write(Op::Record {
            runs: runs.to_vec(),
        })
        .await
        .map(|_| ())
    }

    async fn list_script_versions(&self, job_id: &str) -> StoreResult<Vec<ScriptVersion>> {
        let job_id = job_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS} FROM script_versions WHERE job_id = ?1 \
                     ORDER BY version DESC"
                ))
                .context("prepare list script versions")?;
            let mut rows = stmt.query([&job_id]).context("list script versions")?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().context("list script versions")? {
                out.push(read_script_version(row, false)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_script_version(
        &self,
        job_id: &str,
        version: u64,
    ) -> StoreResult<Option<ScriptVersion>> {
        let Ok(version) = i64::try_from(version) else {
            // Never stored: the column is a signed 64-bit integer.
            return Ok(None);
        };
        let job_id = job_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {VERSION_COLUMNS}, source FROM script_versions \
                     WHERE job_id = ?1 AND version = ?2"
                ))
                .context("prepare get script version")?;
            let mut rows = stmt
                .query(params![job_id, version])
                .context("get script version")?;
            match rows.next().context("get script version")? {
                Some(row) => Ok(Some(read_script_version(row, true)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn note_duplicate(&self, job_id: &str, scheduled_ms: i64) -> StoreResult<bool> {
        match self
            .write(Op::NoteDuplicate {
                job_id: job_id.to_owned(),
                scheduled_ms,
            })
            .await?
        {
            Reply::Noted(found) => Ok(found),
            _ => Err(StoreError::Other(anyhow!(
                "note duplicate: unexpected writer reply"
            ))),
        }
    }

    async fn list_runs(&self, job_id: &str, query: &RunListQuery) -> StoreResult<Vec<RunRecord>> {
        let job_id = job_id.to_owned();
        let outcome = query.outcome.clone();
        let before = query.before_ms;
        let since = query.since_ms;
        let limit = limit_i64(Some(query.limit));
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ?1 \
                     AND (?2 IS NULL OR outcome = ?2) AND (?3 IS NULL OR scheduled_at_ms < ?3) \
                     AND (?5 IS NULL OR scheduled_at_ms >= ?5) \
                     ORDER BY scheduled_at_ms DESC, run_id DESC LIMIT ?4"
                ))
                .context("prepare list runs")?;
            collect_runs(&mut stmt, params![job_id, outcome, before, limit, since])
                .context("list runs")
        })
        .await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let run_id = run_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS}, log FROM runs WHERE run_id = ?1"
                ))
                .context("prepare get run")?;
            let mut rows = stmt.query([&run_id]).context("get run")?;
            match rows.next().context("get run")? {
                Some(row) => Ok(Some(read_run(row, true)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn recent_runs(&self, since_ms: i64, limit: u64) -> StoreResult<Vec<RunRecord>> {
        let limit = limit_i64(Some(limit));
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE scheduled_at_ms >= ?1 \
                     ORDER BY scheduled_at_ms DESC, run_id DESC LIMIT ?2"
                ))
                .context("prepare recent runs")?;
            collect_runs(&mut stmt, params![since_ms, limit]).context("recent runs")
        })
        .await
    }

    async fn prune_runs(&self, keep_per_job: u32, older_than_ms: i64) -> StoreResult<u64> {
        let mut total = 0;
        // In chunks, each its own request, so other writes interleave with a big prune.
        loop {
            match self.write(Op::PruneOld { older_than_ms }).await? {
                Reply::Pruned { deleted, .. } => {
                    total += deleted;
                    if deleted < writer::PRUNE_CHUNK {
                        break;
                    }
                }
                _ => {
                    return Err(StoreError::Other(anyhow!(
                        "prune runs: unexpected writer reply"
                    )));
                }
            }
        }
        let mut after_id = None;
        loop {
            match self
                .write(Op::PruneKeep {
                    keep: keep_per_job,
                    after_id,
                })
                .await?
            {
                Reply::Pruned { deleted, next } => {
                    total += deleted;
                    match next {
                        Some(next) => after_id = next,
                        None => break,
                    }
                }
                _ => {
                    return Err(StoreError::Other(anyhow!(
                        "prune runs: unexpected writer reply"
                    )));
                }
            }
        }
        Ok(total)
    }

    async fn close(&self) {
        let handle = self.writer.lock().take();
        self.readers.closed.store(true, Ordering::Release);
        self.readers.idle.lock().clear();
        let Some(WriterHandle { tx, thread }) = handle else {
            return;
        };
        // Without a sender the writer drains what is queued, checkpoints and returns.
        drop(tx);
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!("the SQLite writer thread panicked"),
            Err(e) => tracing::error!(error = %e, "join the SQLite writer thread"),
        }
    }
}
