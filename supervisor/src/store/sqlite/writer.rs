//! The writer thread: the only owner of the read-write connection, committing queued
//! requests in groups.
//!
//! Every write of the store becomes a [`Request`] on a channel. The thread takes all
//! that is queued (up to [`MAX_BATCH`] requests or [`MAX_BATCH_BYTES`] of payload) and
//! runs them in one transaction such that a failing request (a duplicate id, say)
//! changes nothing and does not fail its neighbours (see [`Writer::run_group`]). A group
//! is answered only once it is durable:
//!
//! - a group made only of job creates, once its records are in the redo log
//!   ([`super::redo`]); the transaction stays open and commits within
//!   [`super::redo::COMMIT_AFTER`], or as soon as a read or another kind of write
//!   comes, so that every page it writes to the WAL carries many creates;
//! - any other group, once the transaction holding it (and any creates before it) has
//!   committed.
//!
//! Work per request is bounded (pruning comes in chunks, see [`PRUNE_CHUNK`]) so that no
//! request holds the writer for long. This module does not read for callers: reads go
//! through the read pool, which first asks for a commit (an [`Op::Flush`]) while
//! answered creates are not yet committed.

use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use anyhow::{Context, anyhow};
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use tokio::sync::oneshot;

use super::checkpoint::Checkpointer;
use super::redo::{Batch, Redo, Stmt};
use super::rows::{JOB_COLUMNS, encode_log, opt_to_i64, to_i64};
use crate::job::{Job, RunRecord, Trigger, outcome};
use crate::store::{AuditEntry, StoreError, StoreResult};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Rough payload bound of one transaction (scripts can be large).
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Most runs one prune request deletes.
pub(super) const PRUNE_CHUNK: u64 = 5_000;
/// Jobs whose histories one count-prune request looks at.
const PRUNE_JOB_PAGE: u64 = 500;

/// One write and the way back to its caller.
pub(super) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<StoreResult<Reply>>,
}

pub(super) enum Op {
    /// The audit entries of job writes are stored with them, in their transaction.
    Create {
        job: Job,
        script: String,
        audit: Option<AuditEntry>,
    },
    Update {
        job: Job,
        script: Option<String>,
        expected: u64,
        audit: Option<AuditEntry>,
    },
    Delete {
        id: String,
        audit: Option<AuditEntry>,
    },
    Record {
        runs: Vec<RunRecord>,
    },
    /// Counts a suppressed duplicate on the newest non-manual record of an occurrence.
    NoteDuplicate {
        job_id: String,
        scheduled_ms: i64,
    },
    /// Deletes up to [`PRUNE_CHUNK`] runs scheduled before the cutoff.
    PruneOld {
        older_than_ms: i64,
    },
    /// Deletes up to [`PRUNE_CHUNK`] runs beyond the newest `keep` of the jobs in the
    /// page of ids after `after_id`.
    PruneKeep {
        keep: u32,
        after_id: Option<String>,
    },
    /// Secrets and kv (see [`super::extras`]).
    Extra(super::extras::ExtraOp),
    /// The audit log (see [`super::audit`]).
    Audit(super::audit::AuditOp),
    Module(super::modules::ModuleOp),
    /// Changes nothing: makes the writer commit what it has answered, so that a read
    /// that comes after sees it.
    Flush,
}

impl Op {
    fn payload_bytes(&self) -> usize {
        match self {
            Op::Create { script, audit, .. } => script.len() + 512 + audit_bytes(audit),
            Op::Update { script, audit, .. } => {
                script.as_ref().map_or(0, String::len) + 512 + audit_bytes(audit)
            }
            Op::Record { runs } => runs
                .iter()
                .map(|r| 256 + r.log.iter().map(|l| l.text.len() + 32).sum::<usize>())
                .sum(),
            Op::Delete { audit, .. } => 64 + audit_bytes(audit),
            Op::NoteDuplicate { .. } | Op::PruneOld { .. } | Op::PruneKeep { .. } => 64,
            Op::Extra(op) => op.payload_bytes(),
            Op::Audit(op) => op.payload_bytes(),
            Op::Module(op) => op.payload_bytes(),
            Op::Flush => 0,
        }
    }
}

pub(super) fn audit_bytes(audit: &Option<AuditEntry>) -> usize {
    audit.as_ref().map_or(0, super::audit::entry_bytes)
}

pub(super) enum Reply {
    Done,
    Deleted(bool),
    /// Whether a record was found to count a duplicate on.
    Noted(bool),
    /// Runs deleted, and where a count-prune continues (`None`: finished).
    Pruned {
        deleted: u64,
        next: Option<Option<String>>,
    },
    /// What a kv set did.
    KvSet(crate::store::KvSet),
    /// The version a module save wrote.
    Version(u64),
}

pub(super) type Sender = mpsc::Sender<Request>;

/// Runs until every sender is gone and the queue is drained, commits, then
/// checkpoints the WAL. `defer`: answer groups of creates from the redo log (off with
/// `synchronous=FULL`, whose promise the log does not keep).
pub(super) fn run(
    conn: Connection,
    rx: mpsc::Receiver<Request>,
    checkpointer: Checkpointer,
    redo: Redo,
    defer: bool,
) {
    let mut w = Writer {
        conn,
        redo,
        defer,
        open: false,
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let due = w.redo.due();
        // Checked before waiting, not only when the wait times out: under a steady
        // stream of creates the queue is never empty when the commit falls due.
        if due.is_some_and(|at| at <= Instant::now()) {
            w.settle();
            checkpointer.dirty.store(true, Ordering::Release);
            continue;
        }
        let first = match due {
            None => match rx.recv() {
                Ok(req) => req,
                Err(_) => break,
            },
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(req) => req,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let mut bytes = first.op.payload_bytes();
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += req.op.payload_bytes();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        w.commit_group(&mut batch);
        checkpointer.dirty.store(true, Ordering::Release);
    }
    w.settle();
    if w.redo.pending_seq().is_some() {
        tracing::error!(
            "answered creates could not be committed; they stay in the redo log and are \
             applied at the next start"
        );
    }
    checkpointer.stop();
    if let Err(e) = w
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    {
        tracing::warn!(error = %e, "checkpoint the SQLite WAL at close");
    }
    if let Err((_, e)) = w.conn.close() {
        tracing::warn!(error = %e, "close the SQLite writer connection");
    }
}

/// The writer thread's state: its connection, the redo log, and whether a transaction
/// is open (it then holds every group since the last commit).
struct Writer {
    conn: Connection,
    redo: Redo,
    defer: bool,
    open: bool,
}

impl Writer {
    /// Applies a group of requests and answers each once the group is durable.
    fn commit_group(&mut self, batch: &mut Vec<Request>) {
        let only = |f: fn(&Op) -> bool| batch.iter().all(|r| f(&r.op));
        if only(|op| matches!(op, Op::Flush)) && !self.open && !self.redo.is_stranded() {
            // Nothing answered is waiting for a commit.
            let done = batch.iter().map(|_| Ok(Reply::Done)).collect();
            answer(batch, done);
            return;
        }
        let defer = self.defer && only(|op| matches!(op, Op::Create { .. }));
        let mut results: Vec<StoreResult<Reply>> = Vec::with_capacity(batch.len());
        let mut log = self.redo.batch();
        if let Err(e) = self.run_group(batch, &mut results, defer.then_some(&mut log)) {
            fail(batch, &e);
            return;
        }
        if defer {
            match self.redo.append(&log) {
                Ok(()) if self.redo.pending_seq().is_some() => {
                    answer(batch, results);
                    if self.redo.full() {
                        self.settle();
                    }
                    return;
                }
                // Every create of the group failed and nothing is pending: commit the
                // empty transaction rather than hold it open.
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "write the redo log; committing instead"),
            }
        }
        match self.commit() {
            Ok(()) => answer(batch, results),
            Err(e) => fail(batch, &e),
        }
    }

    /// Runs the group inside the open transaction, opening one if needed.
    ///
    /// Fast path: the requests run one after the other with no savepoint (a savepoint
    /// copies every page a request touches, and in a transaction holding many groups
    /// that is most of the writer's time). That is safe because every request detects
    /// its expected failures (`Duplicate`, `NotFound`, `VersionConflict`) before it
    /// changes anything. Any other error may leave a request half-applied: then the
    /// transaction is rolled back, the answered creates it held are applied again from
    /// memory, and the group runs again with a savepoint per request, where a failing
    /// request is undone alone and its neighbours stay.
    fn run_group(
        &mut self,
        batch: &[Request],
        results: &mut Vec<StoreResult<Reply>>,
        mut log: Option<&mut Batch>,
    ) -> anyhow::Result<()> {
        self.begin()?;
        if apply_all(&self.conn, batch, results, false, log.as_deref_mut())? {
            return Ok(());
        }
        results.clear();
        if let Some(log) = log.as_deref_mut() {
            log.clear();
        }
        self.abort();
        self.begin()?;
        apply_all(&self.conn, batch, results, true, log)
            .map(|_| ())
            .inspect_err(|_| self.abort())
    }

    /// Makes sure a transaction is open and holds every answered create.
    fn begin(&mut self) -> anyhow::Result<()> {
        if self.redo.is_stranded() {
            return self.restore();
        }
        if !self.open {
            self.exec("BEGIN IMMEDIATE")?;
            self.open = true;
        }
        Ok(())
    }

    fn exec(&self, sql: &str) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(sql)?
            .execute([])
            .with_context(|| sql.to_owned())?;
        Ok(())
    }

    /// Rolls back the open transaction. Answered creates it held are still in the redo
    /// log and in memory: they are applied again before anything else.
    fn abort(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "roll back a group transaction");
        }
        self.open = false;
        self.redo.strand();
    }

    /// Commits the open transaction with the redo log's high-water mark.
    fn commit(&mut self) -> anyhow::Result<()> {
        if !self.open {
            return Ok(());
        }
        let done = match self.redo.pending_seq() {
            Some(seq) => super::redo::set_applied(&self.conn, seq)
                .context("store the redo high-water mark")
                .and_then(|()| self.exec("COMMIT")),
            None => self.exec("COMMIT"),
        };
        match done {
            Ok(()) => {
                self.open = false;
                self.redo.committed();
                Ok(())
            }
            Err(e) => {
                self.abort();
                Err(e.context("commit group transaction"))
            }
        }
    }

    /// Opens a transaction and applies the answered creates of one whose commit
    /// failed.
    fn restore(&mut self) -> anyhow::Result<()> {
        let res = self
            .exec("BEGIN IMMEDIATE")
            .and_then(|()| self.redo.reapply(&self.conn));
        match res {
            Ok(()) => {
                self.open = true;
                Ok(())
            }
            Err(e) => {
                self.abort();
                Err(e.context("apply answered creates again after a failed commit"))
            }
        }
    }

    /// Commits what is answered and waiting, now (its time has come, or the writer is
    /// closing). On failure the answered creates stay in the redo log and the writer
    /// tries again later.
    fn settle(&mut self) {
        let res = if self.redo.is_stranded() {
            self.restore()
        } else {
            Ok(())
        };
        if let Err(e) = res.and_then(|()| self.commit()) {
            tracing::error!(error = %format!("{e:#}"), "commit answered creates; will retry");
            self.redo.retry_later();
        }
    }
}

fn answer(batch: &mut Vec<Request>, results: Vec<StoreResult<Reply>>) {
    for (req, res) in batch.drain(..).zip(results) {
        // The caller may have given up waiting; the write stands regardless.
        let _ = req.reply.send(res);
    }
}

/// Fails every request of a group of which nothing was kept.
fn fail(batch: &mut Vec<Request>, e: &anyhow::Error) {
    let msg = format!("{e:#}");
    let unavailable = is_unavailable(e);
    for req in batch.drain(..) {
        let err = anyhow!("{msg}");
        let _ = req.reply.send(Err(if unavailable {
            StoreError::Unavailable(err)
        } else {
            StoreError::Other(err)
        }));
    }
}

/// Whether a request's error guarantees it changed nothing.
fn changed_nothing(res: &StoreResult<Reply>) -> bool {
    matches!(
        res,
        Ok(_)
            | Err(StoreError::Duplicate(_))
            | Err(StoreError::NotFound(_))
            | Err(StoreError::VersionConflict { .. })
    )
}

/// Runs the group's requests in order. `Ok(false)`: without savepoints, a request
/// failed in a way that may have left it half-applied; the caller rolls the group back.
fn apply_all(
    conn: &Connection,
    batch: &[Request],
    results: &mut Vec<StoreResult<Reply>>,
    savepoints: bool,
    mut log: Option<&mut Batch>,
) -> anyhow::Result<bool> {
    for req in batch {
        if !savepoints {
            let res = apply(conn, &req.op, log.as_deref_mut());
            if !changed_nothing(&res) {
                return Ok(false);
            }
            results.push(res);
            continue;
        }
        conn.prepare_cached("SAVEPOINT req")?
            .execute([])
            .context("open savepoint")?;
        // A request's record is the last thing it writes: a failed one left none.
        let res = apply(conn, &req.op, log.as_deref_mut());
        if res.is_err() {
            conn.prepare_cached("ROLLBACK TO req")?
                .execute([])
                .context("roll back a failed request")?;
        }
        conn.prepare_cached("RELEASE req")?
            .execute([])
            .context("release savepoint")?;
        results.push(res);
    }
    Ok(true)
}

/// Whether an error means the database cannot be written at all (full disk, I/O
/// error, locked by another process) rather than something about this request.
fn is_unavailable(e: &anyhow::Error) -> bool {
    use rusqlite::ErrorCode::*;
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>()
                .and_then(rusqlite::Error::sqlite_error_code),
            Some(
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | ReadOnly
                    | NotADatabase
                    | DatabaseCorrupt
                    | OutOfMemory
            )
        )
    })
}

/// Turns a database error into a [`StoreError`] with context.
pub(super) fn db_err(e: anyhow::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(e)
    } else {
        StoreError::Other(e)
    }
}

pub(super) trait Ctx<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T> {
        self.map_err(|e| db_err(anyhow::Error::new(e).context(what)))
    }
}

impl<T> Ctx<T> for anyhow::Result<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T> {
        self.map_err(|e| db_err(e.context(what)))
    }
}

/// Runs one request. A create also adds its record to `log`, when given, once all of
/// it has run.
fn apply(conn: &Connection, op: &Op, log: Option<&mut Batch>) -> StoreResult<Reply> {
    match op {
        Op::Create { job, script, audit } => {
            create(conn, job, script, audit.as_ref(), log)?;
            Ok(Reply::Done)
        }
        Op::Update {
            job,
            script,
            expected,
            audit,
        } => {
            update(conn, job, script.as_deref(), *expected)?;
            append_audit(conn, audit.as_ref())?;
            Ok(Reply::Done)
        }
        Op::Delete { id, audit } => {
            let deleted = delete(conn, id)?;
            if deleted {
                append_audit(conn, audit.as_ref())?;
            }
            Ok(Reply::Deleted(deleted))
        }
        Op::Record { runs } => record(conn, runs).map(|()| Reply::Done),
        Op::NoteDuplicate {
            job_id,
            scheduled_ms,
        } => note_duplicate(conn, job_id, *scheduled_ms).map(Reply::Noted),
        Op::PruneOld { older_than_ms } => prune_old(conn, *older_than_ms),
        Op::PruneKeep { keep, after_id } => prune_keep(conn, *keep, after_id.as_deref()),
        Op::Extra(op) => super::extras::apply(conn, op),
        Op::Audit(op) => super::audit::apply(conn, op),
        Op::Module(op) => super::modules::apply(conn, op),
        Op::Flush => Ok(Reply::Done),
    }
}

/// Stores a change's audit entry, in the change's transaction. An error here is not one
/// of the expected ones, so the group is replayed with savepoints and the change is
/// undone with its entry (see [`commit_group`]).
pub(super) fn append_audit(conn: &Connection, audit: Option<&AuditEntry>) -> StoreResult<()> {
    match audit {
        Some(e) => super::audit::append(conn, e),
        None => Ok(()),
    }
}

/// The insert of a new job (built once: `prepare_cached` finds it by its text).
static INSERT_JOB: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
         ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29) \
         ON CONFLICT (id) DO NOTHING"
    )
});

pub(super) fn insert_job_sql() -> &'static str {
    &INSERT_JOB
}

pub(super) const INSERT_SCRIPT_VERSION: &str = "INSERT INTO script_versions (job_id, version, source, note, created_at_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

pub(super) fn create(
    conn: &Connection,
    job: &Job,
    script: &str,
    audit: Option<&AuditEntry>,
    log: Option<&mut Batch>,
) -> StoreResult<()> {
    let time_limit = to_i64(job.time_limit_ms, "time_limit_ms").ctx("insert job")?;
    let memory_limit = to_i64(job.memory_limit_mb, "memory_limit_mb").ctx("insert job")?;
    let version = to_i64(job.version, "version").ctx("insert job")?;
    let backoff = to_i64(job.retry.backoff_ms, "retry backoff_ms").ctx("insert job")?;
    let max_backoff = to_i64(job.retry.max_backoff_ms, "retry max_backoff_ms").ctx("insert job")?;
    let script_version = to_i64(job.script_version, "script_version").ctx("insert job")?;
    let exec_type = job.exec_type.code();
    let secrets = crate::store::join_grants(&job.secrets);
    let job_params: [&dyn ToSql; 29] = [
        &job.id,
        &job.name,
        &job.description,
        &exec_type,
        &job.cron,
        &job.exec_at_ms,
        &job.timezone,
        &job.enabled,
        &time_limit,
        &memory_limit,
        &job.overlap.as_str(),
        &job.misfire.as_str(),
        &job.misfire_window_s,
        &version,
        &job.created_at_ms,
        &job.updated_at_ms,
        &job.last.scheduled_at_ms,
        &job.last.started_at_ms,
        &job.last.outcome,
        &job.max_concurrent,
        &job.max_catch_up,
        &job.retry.max_retries,
        &backoff,
        &max_backoff,
        &job.jitter_s,
        &job.paused_until_ms,
        &script_version,
        &job.script_note,
        &secrets,
    ];
    let inserted = conn
        .prepare_cached(&INSERT_JOB)
        .ctx("prepare insert job")?
        .execute(&job_params[..])
        .ctx("insert job")?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(job.id.clone()));
    }
    // A new job has no versions (they go with a deleted job of the same id).
    let version_params = version_args(job, &script_version, &script, &job.created_at_ms);
    insert_version(conn, &version_params)?;
    let audit_params = audit.map(super::audit::append_args);
    if let Some(p) = &audit_params {
        super::audit::append_params(conn, p)?;
    }
    if let Some(log) = log {
        let mut stmts: Vec<(Stmt, &[&dyn ToSql])> = vec![
            (Stmt::InsertJob, &job_params[..]),
            (Stmt::InsertScriptVersion, &version_params[..]),
        ];
        if let Some(p) = &audit_params {
            stmts.push((Stmt::AppendAudit, &p[..]));
        }
        log.record(&stmts).ctx("write the create's redo record")?;
    }
    Ok(())
}

/// The parameters of [`INSERT_SCRIPT_VERSION`]: `script` as version `script_version`
/// of the job's script, saved at `at_ms`.
fn version_args<'a>(
    job: &'a Job,
    script_version: &'a i64,
    script: &'a &'a str,
    at_ms: &'a i64,
) -> [&'a dyn ToSql; 5] {
    [&job.id, script_version, script, &job.script_note, at_ms]
}

/// Keeps a script version: the job's current script from the moment
/// `jobs.script_version` names it.
fn insert_version(conn: &Connection, args: &[&dyn ToSql; 5]) -> StoreResult<()> {
    conn.prepare_cached(INSERT_SCRIPT_VERSION)
        .ctx("prepare insert script version")?
        .execute(&args[..])
        .ctx("insert script version")?;
    Ok(())
}

fn update(conn: &Connection, job: &Job, script: Option<&str>, expected: u64) -> StoreResult<()> {
    let expected_i = to_i64(expected, "expected version").ctx("update job")?;
    let script_version = to_i64(job.script_version, "script_version").ctx("update job")?;
    // Looked at before anything changes (see `commit_group`): a script version is saved
    // once, so a second save under its number lost a race.
    if script.is_some() {
        let taken = conn
            .prepare_cached("SELECT 1 FROM script_versions WHERE job_id = ?1 AND version = ?2")
            .ctx("prepare find script version")?
            .query_row(params![job.id, script_version], |_| Ok(()))
            .optional()
            .ctx("find script version")?
            .is_some();
        if taken {
            return Err(StoreError::VersionConflict {
                id: job.id.clone(),
                expected,
            });
        }
    }
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET name = ?2, description = ?3, exec_type = ?4, cron = ?5, \
             exec_at_ms = ?6, timezone = ?7, enabled = ?8, time_limit_ms = ?9, \
             memory_limit_mb = ?10, overlap = ?11, misfire = ?12, misfire_window_s = ?13, \
             version = ?14, updated_at_ms = ?15, max_concurrent = ?17, max_catch_up = ?18, \
             retry_max_retries = ?19, retry_backoff_ms = ?20, retry_max_backoff_ms = ?21, \
             jitter_s = ?22, paused_until_ms = ?23, script_version = ?24, script_note = ?25, \
             secrets = ?26 WHERE id = ?1 AND version = ?16",
        )
        .ctx("prepare update job")?
        .execute(params![
            job.id,
            job.name,
            job.description,
            job.exec_type.code(),
            job.cron,
            job.exec_at_ms,
            job.timezone,
            job.enabled,
            to_i64(job.time_limit_ms, "time_limit_ms").ctx("update job")?,
            to_i64(job.memory_limit_mb, "memory_limit_mb").ctx("update job")?,
            job.overlap.as_str(),
            job.misfire.as_str(),
            job.misfire_window_s,
            to_i64(job.version, "version").ctx("update job")?,
            job.updated_at_ms,
            expected_i,
            job.max_concurrent,
            job.max_catch_up,
            job.retry.max_retries,
            to_i64(job.retry.backoff_ms, "retry backoff_ms").ctx("update job")?,
            to_i64(job.retry.max_backoff_ms, "retry max_backoff_ms").ctx("update job")?,
            job.jitter_s,
            job.paused_until_ms,
            script_version,
            job.script_note,
            crate::store::join_grants(&job.secrets),
        ])
        .ctx("update job")?;
    if changed == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
            .ctx("prepare find job")?
            .query_row([&job.id], |_| Ok(()))
            .optional()
            .ctx("find job")?
            .is_some();
        return Err(if exists {
            StoreError::VersionConflict {
                id: job.id.clone(),
                expected,
            }
        } else {
            StoreError::NotFound(job.id.clone())
        });
    }
    if let Some(script) = script {
        insert_version(
            conn,
            &version_args(job, &script_version, &script, &job.updated_at_ms),
        )?;
    }
    Ok(())
}

fn delete(conn: &Connection, id: &str) -> StoreResult<bool> {
    // The script, its versions and the history go by ON DELETE CASCADE.
    let n = conn
        .prepare_cached("DELETE FROM jobs WHERE id = ?1")
        .ctx("prepare delete job")?
        .execute([id])
        .ctx("delete job")?;
    Ok(n > 0)
}

/// Whether a record counts for `last.outcome`: a run that ended, not a placeholder.
pub(super) fn is_finished(outcome_text: &str) -> bool {
    !matches!(
        outcome_text,
        outcome::RUNNING | outcome::SKIPPED | outcome::MISSED
    )
}

fn record(conn: &Connection, runs: &[RunRecord]) -> StoreResult<()> {
    let mut exists = conn
        .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
        .ctx("prepare find job")?;
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO runs (run_id, job_id, trigger_kind, scheduled_at_ms, started_at_ms, \
             ended_at_ms, outcome, node, error_message, error_stack, cpu_time_us, \
             peak_memory_bytes, log, log_truncated, attempt, script_version, duplicates) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
             ON CONFLICT (run_id) DO UPDATE SET job_id = excluded.job_id, \
             trigger_kind = excluded.trigger_kind, scheduled_at_ms = excluded.scheduled_at_ms, \
             started_at_ms = excluded.started_at_ms, ended_at_ms = excluded.ended_at_ms, \
             outcome = excluded.outcome, node = excluded.node, \
             error_message = excluded.error_message, error_stack = excluded.error_stack, \
             cpu_time_us = excluded.cpu_time_us, peak_memory_bytes = excluded.peak_memory_bytes, \
             log = excluded.log, log_truncated = excluded.log_truncated, \
             attempt = excluded.attempt, script_version = excluded.script_version, \
             duplicates = max(duplicates, excluded.duplicates)",
        )
        .ctx("prepare upsert run")?;
    let mut fold_times = conn
        .prepare_cached(
            "UPDATE jobs SET \
             last_scheduled_ms = CASE WHEN last_scheduled_ms IS NULL OR last_scheduled_ms < ?2 \
                                      THEN ?2 ELSE last_scheduled_ms END, \
             last_started_ms = CASE WHEN ?3 IS NOT NULL \
                                         AND (last_started_ms IS NULL OR last_started_ms < ?3) \
                                    THEN ?3 ELSE last_started_ms END \
             WHERE id = ?1",
        )
        .ctx("prepare fold run times")?;
    let mut fold_outcome = conn
        .prepare_cached(
            "UPDATE jobs SET last_outcome = ?2, last_outcome_at_ms = ?3, last_outcome_run_id = ?4 \
             WHERE id = ?1 AND (last_outcome_at_ms IS NULL OR last_outcome_at_ms < ?3 \
                                OR (last_outcome_at_ms = ?3 AND last_outcome_run_id <= ?4))",
        )
        .ctx("prepare fold run outcome")?;
    for run in runs {
        let known = exists
            .query_row([&run.job_id], |_| Ok(()))
            .optional()
            .ctx("find job of run")?
            .is_some();
        if !known {
            // The job was deleted while the run was under way.
            continue;
        }
        upsert
            .execute(params![
                run.run_id,
                run.job_id,
                run.trigger.as_str(),
                run.scheduled_at_ms,
                run.started_at_ms,
                run.ended_at_ms,
                run.outcome,
                run.node,
                run.error_message,
                run.error_stack,
                opt_to_i64(run.cpu_time_us, "cpu_time_us").ctx("upsert run")?,
                opt_to_i64(run.peak_memory_bytes, "peak_memory_bytes").ctx("upsert run")?,
                encode_log(&run.log).ctx("upsert run")?,
                run.log_truncated,
                run.attempt,
                opt_to_i64(run.script_version, "script_version").ctx("upsert run")?,
                run.duplicates,
            ])
            .ctx("upsert run")?;
        fold_times
            .execute(params![run.job_id, run.scheduled_at_ms, run.started_at_ms])
            .ctx("fold run times into job")?;
        if is_finished(&run.outcome) {
            let at = run.started_at_ms.unwrap_or(run.scheduled_at_ms);
            fold_outcome
                .execute(params![run.job_id, run.outcome, at, run.run_id])
                .ctx("fold run outcome into job")?;
        }
    }
    Ok(())
}

fn note_duplicate(conn: &Connection, job_id: &str, scheduled_ms: i64) -> StoreResult<bool> {
    // Run ids are UUID v7: the greatest is the newest record.
    let n = conn
        .prepare_cached(
            "UPDATE runs SET duplicates = duplicates + 1 WHERE run_id = \
             (SELECT run_id FROM runs WHERE job_id = ?1 AND scheduled_at_ms = ?2 \
              AND trigger_kind <> ?3 ORDER BY run_id DESC LIMIT 1)",
        )
        .ctx("prepare note duplicate")?
        .execute(params![job_id, scheduled_ms, Trigger::Manual.as_str()])
        .ctx("note duplicate")?;
    Ok(n > 0)
}

fn chunk_i64() -> i64 {
    // A small constant; the cast cannot truncate.
    PRUNE_CHUNK as i64
}

fn prune_old(conn: &Connection, older_than_ms: i64) -> StoreResult<Reply> {
    let n = conn
        .prepare_cached(
            "DELETE FROM runs WHERE rowid IN \
             (SELECT rowid FROM runs WHERE scheduled_at_ms < ?1 LIMIT ?2)",
        )
        .ctx("prepare prune old runs")?
        .execute(params![older_than_ms, chunk_i64()])
        .ctx("prune old runs")?;
    Ok(Reply::Pruned {
        deleted: n as u64,
        next: None,
    })
}

fn prune_keep(conn: &Connection, keep: u32, after_id: Option<&str>) -> StoreResult<Reply> {
    // The page of jobs this request looks at: ids in (after_id, last].
    let last: Option<String> = conn
        .prepare_cached(
            "SELECT max(id) FROM \
             (SELECT id FROM jobs WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2)",
        )
        .ctx("prepare page jobs to prune")?
        .query_row(params![after_id, PRUNE_JOB_PAGE as i64], |r| r.get(0))
        .ctx("page jobs to prune")?;
    let Some(last) = last else {
        return Ok(Reply::Pruned {
            deleted: 0,
            next: None,
        });
    };
    let n = conn
        .prepare_cached(
            "DELETE FROM runs WHERE rowid IN ( \
               SELECT rid FROM ( \
                 SELECT rowid AS rid, ROW_NUMBER() OVER ( \
                   PARTITION BY job_id ORDER BY scheduled_at_ms DESC, run_id DESC) AS rn \
                 FROM runs WHERE (?1 IS NULL OR job_id > ?1) AND job_id <= ?2) \
               WHERE rn > ?3 LIMIT ?4)",
        )
        .ctx("prepare prune runs by count")?
        .execute(params![after_id, last, keep, chunk_i64()])
        .ctx("prune runs by count")? as u64;
    // A full chunk may have left more in this page: look at it again.
    let next = if n >= PRUNE_CHUNK {
        after_id.map(str::to_owned)
    } else {
        Some(last)
    };
    Ok(Reply::Pruned {
        deleted: n,
        next: Some(next),
    })
}
