//! The PostgreSQL cluster store (`--store postgres://…`).
//!
//! Layout: a small pool of connections ([`deadpool_postgres`], statements prepared once
//! per connection) shared by every call; each cluster gets its own schema,
//! `traitor_<cluster>`, created and migrated at connect ([`schema`]), and every
//! statement names its tables through that quoted schema, so clusters sharing a
//! database never see each other's rows. Job creates go straight to the database while
//! few are committing, and queue to be committed in groups, one statement each, under
//! load ([`writer`]), much like the SQLite store's writer thread.
//!
//! Connections are plain TCP (`NoTls`): use it on a trusted network or through a local
//! TLS tunnel. A URL asking for TLS (`sslmode=require`) fails to connect rather than
//! silently going without.
//!
//! # Durability
//!
//! A write is answered `Ok` only after the `COMMIT` (or the single auto-committed
//! statement) holding it has returned. With PostgreSQL's default `synchronous_commit =
//! on` that commit is in the server's flushed WAL, so it survives the death of this
//! process and of the database server. Connection loss, a closed pool or a server that
//! refuses work is [`StoreError::Unavailable`], never a panic.
//!
//! This module must not validate or schedule jobs (the service does), and must not touch
//! any schema but its cluster's.

mod audit;
mod extras;
mod modules;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
pub(super) mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls};

use self::rows::{
    JOB_COLUMNS, JobParams, RUN_COLUMNS, VERSION_COLUMNS, encode_log, is_finished, lossy, read_job,
    read_run, read_script_version, storable, to_i64,
};
use super::{AuditEntry, JobListQuery, JobOrder, RunListQuery, Store, StoreError, StoreResult};
use crate::job::{Job, RunRecord, ScriptVersion, Trigger};

/// Connections kept by one store.
const POOL_SIZE: usize = 10;
/// How long a call waits for a free connection before the store counts as down.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Bound on opening one connection, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Unacknowledged data older than this on a connection means the server is gone, unless
/// the URL sets `tcp_user_timeout`.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most runs one prune statement deletes.
const PRUNE_CHUNK: i64 = 5_000;
/// Jobs whose histories one count-prune statement looks at.
const PRUNE_JOB_PAGE: i64 = 500;
/// Most run records one upsert statement carries.
const RECORD_CHUNK: usize = 500;
/// Calls in flight are counted with permits of this semaphore; `close` takes them all.
const MAX_IN_FLIGHT: u32 = 1 << 20;

/// The PostgreSQL store of one cluster. Cheap to share behind an `Arc`; see the module
/// docs.
pub struct PostgresStore {
    inner: Arc<Inner>,
    writer: Mutex<Option<writer::Handle>>,
}

/// What the store and its writer task share.
struct Inner {
    pool: Pool,
    /// The cluster's schema, quoted, ready to prefix table names.
    schema: String,
    /// Set by `close`; every call checks it first.
    closed: AtomicBool,
    /// One permit per call in flight, so `close` can wait for them.
    in_flight: Semaphore,
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a `key=value`
    /// string), creates the schema of `cluster` if needed and migrates it to this
    /// build's version.
    pub async fn connect(url: &str, cluster: &str) -> anyhow::Result<PostgresStore> {
        Self::connect_with(url, cluster, schema::latest_version()).await
    }

    async fn connect_with(url: &str, cluster: &str, target: i32) -> anyhow::Result<Self> {
        let schema_name = schema::schema_name(cluster)?;
        let mut config = tokio_postgres::Config::from_str(url)
            .context("parse the PostgreSQL URL")
            .map_err(|e| anyhow!("{e:#}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            // Lets an operator tell the clusters' sessions apart in pg_stat_activity.
            config.application_name(format!("traitor {cluster}"));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("build the PostgreSQL connection pool")?;
        {
            let mut client = pool
                .get()
                .await
                .map_err(|e| anyhow!("connect to PostgreSQL: {}", pool_error_text(&e)))?;
            schema::migrate(&mut client, &schema_name, target)
                .await
                .with_context(|| format!("prepare the schema of cluster {cluster:?}"))?;
        }
        let inner = Arc::new(Inner {
            pool,
            schema: schema::quote_ident(&schema_name),
            closed: AtomicBool::new(false),
            in_flight: Semaphore::new(MAX_IN_FLIGHT as usize),
        });
        let writer = writer::spawn(inner.clone());
        Ok(PostgresStore {
            inner,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The quoted schema this store works in.
    #[cfg(test)]
    fn schema(&self) -> &str {
        &self.inner.schema
    }
}

impl Inner {
    /// Admits one call: `Unavailable` once the store is closed. The permit is held
    /// until the call returns.
    fn enter(&self) -> StoreResult<SemaphorePermit<'_>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        self.in_flight.try_acquire().map_err(|_| closed())
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            StoreError::Unavailable(anyhow!(
                "get a PostgreSQL connection: {}",
                pool_error_text(&e)
            ))
        })
    }

    /// `template` with `{s}` replaced by the quoted schema.
    fn sql(&self, template: &str) -> String {
        template.replace("{s}", &self.schema)
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable(anyhow!("the store is closed"))
}

fn pool_error_text(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => {
            // The driver's message alone says little ("error connecting to server").
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
        PoolError::Timeout(t) => format!("timed out ({t:?})"),
        PoolError::Closed => "the pool is closed".to_owned(),
        PoolError::NoRuntimeSpecified => "no runtime specified".to_owned(),
        PoolError::PostCreateHook(e) => format!("{e}"),
    }
}

/// Whether an error means the database cannot be reached or cannot take work (the
/// cluster treats it as "store down") rather than something about this request.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        let c = code.code();
        // 08: connection exception; 53: insufficient resources; 57P: operator
        // intervention (shutdown, cannot connect now); 58: system error (I/O); 25006: a
        // read-only transaction (a standby after a fail-over).
        return c.starts_with("08")
            || c.starts_with("53")
            || c.starts_with("57P")
            || c.starts_with("58")
            || c == "25006";
    }
    e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || e.to_string().starts_with("timeout")
}

/// Whether `e` is a unique violation of the named constraint.
fn is_violation_of(e: &tokio_postgres::Error, constraint: &str) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint)
    })
}

/// Turns a driver error into a [`StoreError`] with context.
fn pg_err(e: tokio_postgres::Error, what: &'static str) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(anyhow::Error::new(e).context(what))
    } else {
        StoreError::Other(anyhow::Error::new(e).context(what))
    }
}

trait Ctx<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T>;
}

impl<T> Ctx<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, what: &'static str) -> StoreResult<T> {
        self.map_err(|e| pg_err(e, what))
    }
}

impl<T> Ctx<T> for anyhow::Result<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T> {
        self.map_err(|e| StoreError::Other(e.context(what)))
    }
}

/// The keyset condition of a page of enabled jobs: `$1` is the last id of the previous
/// page, or NULL (and unused but typed) for the first page.
fn after_clause(after: Option<&str>) -> &'static str {
    match after {
        Some(_) => "id > $1",
        None => "$1::text IS NULL",
    }
}

fn limit_i64(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// `%`, `_` and the escape character `\` taken literally in a LIKE pattern.
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

type Param = Box<dyn ToSql + Sync + Send>;

/// The WHERE clause and parameters of a job list query.
fn job_filter(q: &JobListQuery) -> (String, Vec<Param>) {
    let mut clauses = Vec::new();
    let mut args: Vec<Param> = Vec::new();
    if let Some(s) = q.search.as_deref().filter(|s| !s.is_empty()) {
        let n = args.len() + 1;
        // Case folding by the database's own locale (the columns sort in "C").
        clauses.push(format!(
            "(id COLLATE \"default\" ILIKE ${n} OR name COLLATE \"default\" ILIKE ${n} \
             OR description ILIKE ${n})"
        ));
        args.push(Box::new(like_contains(s)));
    }
    if let Some(t) = q.exec_type {
        clauses.push(format!("exec_type = ${}", args.len() + 1));
        args.push(Box::new(i16::from(t.code())));
    }
    if let Some(e) = q.enabled {
        clauses.push(format!("enabled = ${}", args.len() + 1));
        args.push(Box::new(e));
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
        JobOrder::LastExecTime => format!("last_started_ms {dir} NULLS LAST, id {dir}"),
    }
}

fn param_refs(args: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The `last_*` facts one `record_runs` call brings to one job.
struct Fold<'a> {
    scheduled: i64,
    started: Option<i64>,
    /// The newest finished record: (start or schedule, run id, outcome).
    finished: Option<(i64, &'a str, &'a str)>,
}

fn folds<'a>(runs: &[&'a RunRecord]) -> BTreeMap<String, Fold<'a>> {
    let mut out: BTreeMap<String, Fold<'a>> = BTreeMap::new();
    for r in runs {
        let f = out.entry(r.job_id.clone()).or_insert(Fold {
            scheduled: r.scheduled_at_ms,
            started: None,
            finished: None,
        });
        f.scheduled = f.scheduled.max(r.scheduled_at_ms);
        f.started = f.started.max(r.started_at_ms);
        if is_finished(&r.outcome) {
            let key = (
                r.started_at_ms.unwrap_or(r.scheduled_at_ms),
                r.run_id.as_str(),
                r.outcome.as_str(),
            );
            if f.finished
                .is_none_or(|(at, id, _)| (at, id) <= (key.0, key.1))
            {
                f.finished = Some(key);
            }
        }
    }
    out
}

/// Column arrays of a chunk of run records, for one `UNNEST` upsert.
#[derive(Default)]
struct RunColumns {
    run_id: Vec<String>,
    job_id: Vec<String>,
    trigger: Vec<&'static str>,
    scheduled: Vec<i64>,
    started: Vec<Option<i64>>,
    ended: Vec<Option<i64>>,
    outcome: Vec<String>,
    node: Vec<String>,
    error_message: Vec<Option<String>>,
    error_stack: Vec<Option<String>>,
    cpu: Vec<Option<i64>>,
    mem: Vec<Option<i64>>,
    log: Vec<String>,
    truncated: Vec<bool>,
    attempt: Vec<i64>,
    script_version: Vec<Option<i64>>,
    duplicates: Vec<i64>,
}

impl RunColumns {
    fn push(&mut self, r: &RunRecord) -> anyhow::Result<()> {
        self.run_id.push(lossy(&r.run_id).into_owned());
        self.job_id.push(r.job_id.clone());
        self.trigger.push(r.trigger.as_str());
        self.scheduled.push(r.scheduled_at_ms);
        self.started.push(r.started_at_ms);
        self.ended.push(r.ended_at_ms);
        self.outcome.push(lossy(&r.outcome).into_owned());
        self.node.push(lossy(&r.node).into_owned());
        self.error_message
            .push(r.error_message.as_deref().map(|m| lossy(m).into_owned()));
        self.error_stack
            .push(r.error_stack.as_deref().map(|m| lossy(m).into_owned()));
        self.cpu.push(
            r.cpu_time_us
                .map(|v| to_i64(v, "cpu_time_us"))
                .transpose()?,
        );
        self.mem.push(
            r.peak_memory_bytes
                .map(|v| to_i64(v, "peak_memory_bytes"))
                .transpose()?,
        );
        self.log.push(encode_log(&r.log)?);
        self.truncated.push(r.log_truncated);
        self.attempt.push(i64::from(r.attempt));
        self.script_version.push(
            r.script_version
                .map(|v| to_i64(v, "script_version"))
                .transpose()?,
        );
        self.duplicates.push(i64::from(r.duplicates));
        Ok(())
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 17] {
        [
            &self.run_id,
            &self.job_id,
            &self.trigger,
            &self.scheduled,
            &self.started,
            &self.ended,
            &self.outcome,
            &self.node,
            &self.error_message,
            &self.error_stack,
            &self.cpu,
            &self.mem,
            &self.log,
            &self.truncated,
            &self.attempt,
            &self.script_version,
            &self.duplicates,
        ]
    }
}

/// Replaces every column of a run but `duplicates`, which only grows: `note_duplicate`
/// may have counted one since the record was made.
const UPSERT_RUNS: &str = "INSERT INTO {s}.runs AS r (run_id, job_id, trigger_kind, \
     scheduled_at_ms, started_at_ms, ended_at_ms, outcome, node, error_message, error_stack, \
     cpu_time_us, peak_memory_bytes, log, log_truncated, attempt, script_version, duplicates) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
       $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], \
       $12::bigint[], $13::text[], $14::boolean[], $15::bigint[], $16::bigint[], \
       $17::bigint[]) \
     ON CONFLICT (run_id) DO UPDATE SET job_id = excluded.job_id, \
     trigger_kind = excluded.trigger_kind, scheduled_at_ms = excluded.scheduled_at_ms, \
     started_at_ms = excluded.started_at_ms, ended_at_ms = excluded.ended_at_ms, \
     outcome = excluded.outcome, node = excluded.node, \
     error_message = excluded.error_message, error_stack = excluded.error_stack, \
     cpu_time_us = excluded.cpu_time_us, peak_memory_bytes = excluded.peak_memory_bytes, \
     log = excluded.log, log_truncated = excluded.log_truncated, \
     attempt = excluded.attempt, script_version = excluded.script_version, \
     duplicates = GREATEST(r.duplicates, excluded.duplicates)";

/// Folds per-job facts into `jobs`, never moving them backwards. `GREATEST` ignores
/// NULLs; the outcome moves only to a record at least as new (start, then run id) as
/// the one it came from.
const FOLD_RUNS: &str = "UPDATE {s}.jobs AS j SET \
     last_scheduled_ms = GREATEST(j.last_scheduled_ms, f.sched), \
     last_started_ms = GREATEST(j.last_started_ms, f.started), \
     last_outcome = CASE WHEN {newer} THEN f.outcome ELSE j.last_outcome END, \
     last_outcome_at_ms = CASE WHEN {newer} THEN f.at ELSE j.last_outcome_at_ms END, \
     last_outcome_run_id = CASE WHEN {newer} THEN f.run_id ELSE j.last_outcome_run_id END \
     FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], \
       $6::text[]) AS f(id, sched, started, outcome, at, run_id) \
     WHERE j.id = f.id";

const NEWER_OUTCOME: &str = "(f.at IS NOT NULL AND (j.last_outcome_at_ms IS NULL \
     OR j.last_outcome_at_ms < f.at \
     OR (j.last_outcome_at_ms = f.at AND j.last_outcome_run_id <= f.run_id COLLATE \"C\")))";

impl Inner {
    async fn record_runs(&self, runs: &[RunRecord]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.ctx("begin record runs")?;
        // Lock the jobs the records belong to, in id order (so concurrent calls cannot
        // deadlock): a concurrent delete waits for this commit, and records of jobs
        // that are gone are dropped here instead of failing the foreign key.
        let mut ids: Vec<&str> = runs.iter().map(|r| r.job_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let stmt = tx
            .prepare_cached(&self.sql(
                "SELECT id FROM {s}.jobs WHERE id = ANY($1::text[]) ORDER BY id \
                 FOR NO KEY UPDATE",
            ))
            .await
            .ctx("prepare lock jobs of runs")?;
        let known: HashSet<String> = tx
            .query(&stmt, &[&ids])
            .await
            .ctx("lock jobs of runs")?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()
            .ctx("read ids of jobs")?;
        let kept: Vec<&RunRecord> = runs.iter().filter(|r| known.contains(&r.job_id)).collect();
        if kept.is_empty() {
            return tx.commit().await.ctx("commit record runs");
        }
        // One row per run id (the last record of it wins, as if applied in order): an
        // upsert cannot touch the same row twice.
        let mut last_of: HashMap<&str, usize> = HashMap::with_capacity(kept.len());
        for (i, r) in kept.iter().enumerate() {
            last_of.insert(r.run_id.as_str(), i);
        }
        let upsert = tx
            .prepare_cached(&self.sql(UPSERT_RUNS))
            .await
            .ctx("prepare upsert runs")?;
        let unique: Vec<&RunRecord> = kept
            .iter()
            .enumerate()
            .filter(|(i, r)| last_of.get(r.run_id.as_str()) == Some(i))
            .map(|(_, r)| *r)
            .collect();
        for chunk in unique.chunks(RECORD_CHUNK) {
            let mut cols = RunColumns::default();
            for r in chunk {
                cols.push(r).ctx("encode run record")?;
            }
            tx.execute(&upsert, &cols.params())
                .await
                .ctx("upsert runs")?;
        }
        let folds = folds(&kept);
        let (mut id, mut sched, mut started, mut out, mut at, mut run_id) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (job, f) in &folds {
            id.push(job.as_str());
            sched.push(f.scheduled);
            started.push(f.started);
            out.push(f.finished.map(|(_, _, o)| lossy(o).into_owned()));
            at.push(f.finished.map(|(a, _, _)| a));
            run_id.push(f.finished.map(|(_, r, _)| lossy(r).into_owned()));
        }
        let fold = tx
            .prepare_cached(&self.sql(FOLD_RUNS).replace("{newer}", NEWER_OUTCOME))
            .await
            .ctx("prepare fold runs")?;
        tx.execute(&fold, &[&id, &sched, &started, &out, &at, &run_id])
            .await
            .ctx("fold runs into jobs")?;
        tx.commit().await.ctx("commit record runs")
    }

    /// Deletes up to [`PRUNE_CHUNK`] runs scheduled before the cutoff.
    async fn prune_old(&self, older_than_ms: i64) -> StoreResult<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql(
                "DELETE FROM {s}.runs WHERE run_id IN \
                 (SELECT run_id FROM {s}.runs WHERE scheduled_at_ms < $1 LIMIT $2)",
            ))
            .await
            .ctx("prepare prune old runs")?;
        client
            .execute(&stmt, &[&older_than_ms, &PRUNE_CHUNK])
            .await
            .ctx("prune old runs")
    }

    /// Deletes up to [`PRUNE_CHUNK`] runs beyond the newest `keep` of each job whose id
    /// is in the page after `after_id`. Returns the count and where to go on (`None`:
    /// finished).
    async fn prune_keep(
        &self,
        keep: u32,
        after_id: Option<&str>,
    ) -> StoreResult<(u64, Option<Option<String>>)> {
        let client = self.client().await?;
        let page = client
            .prepare_cached(&self.sql(
                "SELECT max(id) FROM (SELECT id FROM {s}.jobs \
                 WHERE $1::text IS NULL OR id > $1 ORDER BY id LIMIT $2) AS page",
            ))
            .await
            .ctx("prepare page jobs to prune")?;
        let last: Option<String> = client
            .query_one(&page, &[&after_id, &PRUNE_JOB_PAGE])
            .await
            .ctx("page jobs to prune")?
            .try_get(0)
            .ctx("page jobs to prune")?;
        let Some(last) = last else {
            return Ok((0, None));
        };
        let stmt = client
            .prepare_cached(&self.sql(
                "DELETE FROM {s}.runs WHERE run_id IN ( \
                   SELECT run_id FROM ( \
                     SELECT run_id, row_number() OVER ( \
                       PARTITION BY job_id ORDER BY scheduled_at_ms DESC, run_id DESC) AS rn \
                     FROM {s}.runs WHERE ($1::text IS NULL OR job_id > $1) AND job_id <= $2 \
                   ) AS ranked WHERE rn > $3 LIMIT $4)",
            ))
            .await
            .ctx("prepare prune runs by count")?;
        let n = client
            .execute(&stmt, &[&after_id, &last, &i64::from(keep), &PRUNE_CHUNK])
            .await
            .ctx("prune runs by count")?;
        // A full chunk may have left more in this page: look at it again.
        let next = if n >= PRUNE_CHUNK as u64 {
            after_id.map(str::to_owned)
        } else {
            Some(last)
        };
        Ok((n, Some(next)))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_job_audited(
        &self,
        job: &Job,
        script: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        let _permit = self.inner.enter()?;
        JobParams::new(job).ctx("create job")?;
        storable(script, "script").ctx("create job")?;
        let queue = self
            .writer
            .lock()
            .as_ref()
            .map(writer::Handle::queue)
            .ok_or_else(closed)?;
        writer::create(&queue, &self.inner, job, script, audit).await
    }

    async fn update_job_audited(
        &self,
        job: &Job,
        script: Option<&str>,
        expected_version: u64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        let _permit = self.inner.enter()?;
        let params = JobParams::new(job).ctx("update job")?;
        if let Some(s) = script {
            storable(s, "script").ctx("update job")?;
        }
        let expected = to_i64(expected_version, "expected version").ctx("update job")?;
        let inner = &self.inner;
        let client = inner.client().await?;
        // One statement: the row, the script, its new version and the audit entry change
        // together or not at all. A version saved before fails the statement on the
        // primary key.
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "WITH u AS (UPDATE {{s}}.jobs SET name = $2, description = $3, exec_type = $4, \
                   cron = $5, exec_at_ms = $6, timezone = $7, enabled = $8, \
                   time_limit_ms = $9, memory_limit_mb = $10, overlap = $11, misfire = $12, \
                   misfire_window_s = $13, version = $14, updated_at_ms = $15, \
                   max_concurrent = $16, max_catch_up = $17, retry_max_retries = $18, \
                   retry_backoff_ms = $19, retry_max_backoff_ms = $20, jitter_s = $21, \
                   paused_until_ms = $22, script_version = $23, script_note = $24, \
                   secrets = $25 \
                   WHERE id = $1 AND version = $26 RETURNING id), \
                 s AS (INSERT INTO {{s}}.scripts (job_id, source) \
                   SELECT id, $27::text FROM u WHERE $27::text IS NOT NULL \
                   ON CONFLICT (job_id) DO UPDATE SET source = excluded.source), \
                 v AS (INSERT INTO {{s}}.script_versions \
                   (job_id, version, source, note, created_at_ms) \
                   SELECT id, $23, $27::text, $24, $15 FROM u WHERE $27::text IS NOT NULL), \
                 {} \
                 SELECT count(*) FROM u",
                audit::audit_clause("u", 28)
            )))
            .await
            .ctx("prepare update job")?;
        let mut args: Vec<&(dyn ToSql + Sync)> = params.for_update().to_vec();
        let audit = audit::AuditParams::of(audit);
        args.push(&expected);
        args.push(&script);
        args.extend(audit.params());
        let changed: i64 = match client.query_one(&stmt, &args).await {
            Ok(row) => row.try_get(0).ctx("update job")?,
            Err(e) if is_violation_of(&e, "script_versions_pkey") => {
                return Err(StoreError::VersionConflict {
                    id: job.id.clone(),
                    expected: expected_version,
                });
            }
            Err(e) => return Err(pg_err(e, "update job")),
        };
        if changed > 0 {
            return Ok(());
        }
        let exists = client
            .prepare_cached(&inner.sql("SELECT 1 FROM {s}.jobs WHERE id = $1"))
            .await
            .ctx("prepare find job")?;
        let exists = client
            .query_opt(&exists, &[&job.id])
            .await
            .ctx("find job")?
            .is_some();
        Err(if exists {
            StoreError::VersionConflict {
                id: job.id.clone(),
                expected: expected_version,
            }
        } else {
            StoreError::NotFound(job.id.clone())
        })
    }

    async fn delete_job_audited(&self, id: &str, audit: Option<&AuditEntry>) -> StoreResult<bool> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        // The script, its versions and the history go by ON DELETE CASCADE; the audit
        // entry is stored only if a job went.
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "WITH d AS (DELETE FROM {{s}}.jobs WHERE id = $1 RETURNING id), {} \
                 SELECT count(*) FROM d",
                audit::audit_clause("d", 2)
            )))
            .await
            .ctx("prepare delete job")?;
        audit::deleted(&client, &stmt, &[&id], audit, "delete job").await
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT {JOB_COLUMNS} FROM {{s}}.jobs WHERE id = $1"
            )))
            .await
            .ctx("prepare get job")?;
        match client.query_opt(&stmt, &[&id]).await.ctx("get job")? {
            Some(row) => Ok(Some(read_job(&row).ctx("get job")?)),
            None => Ok(None),
        }
    }

    async fn get_script(&self, id: &str) -> StoreResult<Option<String>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql("SELECT source FROM {s}.scripts WHERE job_id = $1"))
            .await
            .ctx("prepare get script")?;
        match client.query_opt(&stmt, &[&id]).await.ctx("get script")? {
            Some(row) => Ok(Some(row.try_get(0).ctx("read script")?)),
            None => Ok(None),
        }
    }

    async fn list_jobs(&self, query: &JobListQuery) -> StoreResult<(Vec<Job>, u64)> {
        let _permit = self.inner.enter()?;
        if query.search.as_deref().is_some_and(|s| s.contains('\0')) {
            // No stored text can contain one.
            return Ok((Vec::new(), 0));
        }
        let inner = &self.inner;
        let (filter, mut args) = job_filter(query);
        let order = job_order(query.order, query.descending);
        let mut client = inner.client().await?;
        // One snapshot for the page and the count.
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .ctx("begin list jobs")?;
        let count = tx
            .prepare_cached(&inner.sql(&format!("SELECT count(*) FROM {{s}}.jobs {filter}")))
            .await
            .ctx("prepare count jobs")?;
        let total: i64 = tx
            .query_one(&count, &param_refs(&args))
            .await
            .ctx("count jobs")?
            .try_get(0)
            .ctx("count jobs")?;
        let n = args.len();
        args.push(Box::new(query.limit.map(limit_i64)));
        args.push(Box::new(limit_i64(query.offset)));
        let page = tx
            .prepare_cached(&inner.sql(&format!(
                "SELECT {JOB_COLUMNS} FROM {{s}}.jobs {filter} ORDER BY {order} \
                 LIMIT ${}::bigint OFFSET ${}::bigint",
                n + 1,
                n + 2
            )))
            .await
            .ctx("prepare list jobs")?;
        let rows = tx.query(&page, &param_refs(&args)).await.ctx("list jobs")?;
        tx.commit().await.ctx("end list jobs")?;
        let jobs = rows
            .iter()
            .map(read_job)
            .collect::<anyhow::Result<Vec<_>>>()
            .ctx("list jobs")?;
        Ok((jobs, u64::try_from(total).unwrap_or(0)))
    }

    async fn enabled_jobs_page(&self, after: Option<&str>, limit: u64) -> StoreResult<Vec<Job>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        // Keyset on the primary key (COLLATE "C": byte order, as the other stores). Two
        // statements, not `$1 IS NULL OR id > $1`: a generic plan of that would scan
        // the index from the start for every page.
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT {JOB_COLUMNS} FROM {{s}}.jobs WHERE enabled AND {} \
                 ORDER BY id LIMIT $2::bigint",
                after_clause(after)
            )))
            .await
            .ctx("prepare enabled jobs")?;
        let rows = client
            .query(&stmt, &[&after, &limit_i64(limit)])
            .await
            .ctx("read enabled jobs")?;
        rows.iter()
            .map(read_job)
            .collect::<anyhow::Result<Vec<_>>>()
            .ctx("read enabled jobs")
    }

    async fn enabled_versions_page(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<(String, u64)>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT id, version FROM {{s}}.jobs WHERE enabled AND {} \
                 ORDER BY id LIMIT $2::bigint",
                after_clause(after)
            )))
            .await
            .ctx("prepare enabled versions")?;
        let rows = client
            .query(&stmt, &[&after, &limit_i64(limit)])
            .await
            .ctx("read enabled versions")?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let version: i64 = row.try_get(1)?;
                let version = u64::try_from(version)
                    .with_context(|| format!("job {id}: stored version {version} is negative"))?;
                Ok((id, version))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .ctx("read enabled versions")
    }

    async fn count_jobs(&self) -> StoreResult<(u64, u64)> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql("SELECT enabled, count(*) FROM {s}.jobs GROUP BY enabled"))
            .await
            .ctx("prepare count jobs")?;
        let (mut off, mut on) = (0u64, 0u64);
        for row in client.query(&stmt, &[]).await.ctx("count jobs")? {
            let enabled: bool = row.try_get(0).ctx("count jobs")?;
            let n: i64 = row.try_get(1).ctx("count jobs")?;
            let n = u64::try_from(n).unwrap_or(0);
            if enabled {
                on += n;
            } else {
                off += n;
            }
        }
        Ok((off, on))
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> StoreResult<()> {
        let _permit = self.inner.enter()?;
        if runs.is_empty() {
            return Ok(());
        }
        self.inner.record_runs(runs).await
    }

    async fn list_script_versions(&self, job_id: &str) -> StoreResult<Vec<ScriptVersion>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT {VERSION_COLUMNS} FROM {{s}}.script_versions WHERE job_id = $1 \
                 ORDER BY version DESC"
            )))
            .await
            .ctx("prepare list script versions")?;
        let rows = client
            .query(&stmt, &[&job_id])
            .await
            .ctx("list script versions")?;
        rows.iter()
            .map(|r| read_script_version(r, false))
            .collect::<anyhow::Result<_>>()
            .ctx("list script versions")
    }

    async fn get_script_version(
        &self,
        job_id: &str,
        version: u64,
    ) -> StoreResult<Option<ScriptVersion>> {
        let _permit = self.inner.enter()?;
        let Ok(version) = i64::try_from(version) else {
            // Never stored: the column is a signed 64-bit integer.
            return Ok(None);
        };
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT {VERSION_COLUMNS}, source FROM {{s}}.script_versions \
                 WHERE job_id = $1 AND version = $2"
            )))
            .await
            .ctx("prepare get script version")?;
        match client
            .query_opt(&stmt, &[&job_id, &version])
            .await
            .ctx("get script version")?
        {
            Some(row) => Ok(Some(
                read_script_version(&row, true).ctx("get script version")?,
            )),
            None => Ok(None),
        }
    }

    async fn note_duplicate(&self, job_id: &str, scheduled_ms: i64) -> StoreResult<bool> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        // Run ids are UUID v7: the greatest is the newest record.
        let stmt = client
            .prepare_cached(&inner.sql(
                "UPDATE {s}.runs SET duplicates = duplicates + 1 WHERE run_id = \
                 (SELECT run_id FROM {s}.runs WHERE job_id = $1 AND scheduled_at_ms = $2 \
                  AND trigger_kind <> $3 ORDER BY run_id DESC LIMIT 1)",
            ))
            .await
            .ctx("prepare note duplicate")?;
        let n = client
            .execute(&stmt, &[&job_id, &scheduled_ms, &Trigger::Manual.as_str()])
            .await
            .ctx("note duplicate")?;
        Ok(n > 0)
    }

    async fn list_runs(&self, job_id: &str, query: &RunListQuery) -> StoreResult<Vec<RunRecord>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE job_id = $1 \
                 AND ($2::text IS NULL OR outcome = $2) \
                 AND ($3::bigint IS NULL OR scheduled_at_ms < $3) \
                 AND ($5::bigint IS NULL OR scheduled_at_ms >= $5) \
                 ORDER BY scheduled_at_ms DESC, run_id DESC LIMIT $4"
            )))
            .await
            .ctx("prepare list runs")?;
        let outcome = query.outcome.as_deref().map(lossy);
        let rows = client
            .query(
                &stmt,
                &[
                    &job_id,
                    &outcome,
                    &query.before_ms,
                    &limit_i64(query.limit),
                    &query.since_ms,
                ],
            )
            .await
            .ctx("list runs")?;
        rows.iter()
            .map(|r| read_run(r, false))
            .collect::<anyhow::Result<_>>()
            .ctx("list runs")
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT {RUN_COLUMNS}, log FROM {{s}}.runs WHERE run_id = $1"
            )))
            .await
            .ctx("prepare get run")?;
        match client.query_opt(&stmt, &[&run_id]).await.ctx("get run")? {
            Some(row) => Ok(Some(read_run(&row, true).ctx("get run")?)),
            None => Ok(None),
        }
    }

    async fn recent_runs(&self, since_ms: i64, limit: u64) -> StoreResult<Vec<RunRecord>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT {RUN_COLUMNS} FROM {{s}}.runs WHERE scheduled_at_ms >= $1 \
                 ORDER BY scheduled_at_ms DESC, run_id DESC LIMIT $2"
            )))
            .await
            .ctx("prepare recent runs")?;
        let rows = client
            .query(&stmt, &[&since_ms, &limit_i64(limit)])
            .await
            .ctx("recent runs")?;
        rows.iter()
            .map(|r| read_run(r, false))
            .collect::<anyhow::Result<_>>()
            .ctx("recent runs")
    }

    async fn prune_runs(&self, keep_per_job: u32, older_than_ms: i64) -> StoreResult<u64> {
        let _permit = self.inner.enter()?;
        let mut total = 0;
        // In chunks, each its own statement, so a big prune never holds locks for long.
        loop {
            let deleted = self.inner.prune_old(older_than_ms).await?;
            total += deleted;
            if deleted < PRUNE_CHUNK as u64 {
                break;
            }
        }
        let mut after_id = None;
        loop {
            let (deleted, next) = self
                .inner
                .prune_keep(keep_per_job, after_id.as_deref())
                .await?;
            total += deleted;
            match next {
                Some(next) => after_id = next,
                None => break,
            }
        }
        Ok(total)
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Calls in flight finish (including creates queued for the writer, which hold
        // their permits until answered); new ones are refused.
        match self.inner.in_flight.acquire_many(MAX_IN_FLIGHT).await {
            Ok(permits) => permits.forget(),
            Err(_) => return,
        }
        let writer = self.writer.lock().take();
        if let Some(w) = writer {
            w.stop().await;
        }
        self.inner.in_flight.close();
        self.inner.pool.close();
    }
}
