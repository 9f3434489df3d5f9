//! Group commit of job creates: concurrent `create_job` calls share statements.
//!
//! Creates are queued to one task. Up to [`GROUPS_IN_FLIGHT`] groups commit at once;
//! when a slot is free, the task takes everything queued (up to [`MAX_BATCH`] requests
//! or [`MAX_BATCH_BYTES`] of scripts) as the next group. Under light load a create
//! therefore goes alone and at once (the plain single-row statement); under load, the
//! creates that queued while the slots were busy go together. A group inserts its jobs,
//! their scripts and those scripts' first versions with ONE auto-committed statement (a
//! data-modifying `WITH`), then answers each request: `Ok` for the ids inserted,
//! `Duplicate` for the others. An answer is never sent before the statement that makes
//! it durable has returned. If a group fails for a reason other than the database being
//! unavailable, its requests are retried one by one, so one bad job does not fail its
//! neighbours.
//!
//! Only creates go through here: they are the one write that arrives in bursts (imports,
//! API clients). This module does no reads for callers.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::anyhow;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;

use super::audit::{AuditParams, audit_clause};
use super::rows::{JOB_COLUMNS, JobParams};
use super::{Ctx, Inner, closed};
use crate::job::Job;
use crate::store::{AuditEntry, StoreError, StoreResult};

/// Most creates committed by one statement.
const MAX_BATCH: usize = 512;
/// Rough bound on the scripts one statement carries.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Groups committing at once. Under light load each create goes alone, without waiting
/// for another's commit; once this many are in flight, the next group collects
/// everything that queued meanwhile. Less than the pool size, so reads still get
/// connections.
const GROUPS_IN_FLIGHT: usize = 8;

pub(super) struct Request {
    job: Job,
    script: String,
    audit: Option<AuditEntry>,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// Where creates go: straight to the database while a slot is free, else to the queue.
#[derive(Clone)]
pub(super) struct Queue {
    tx: mpsc::UnboundedSender<Request>,
    /// Groups (or lone creates) committing now; at most [`GROUPS_IN_FLIGHT`].
    slots: Arc<Semaphore>,
}

/// The running writer task.
pub(super) struct Handle {
    queue: Queue,
    task: JoinHandle<()>,
}

impl Handle {
    pub(super) fn queue(&self) -> Queue {
        self.queue.clone()
    }

    /// Lets the task drain what is queued, and waits for it.
    pub(super) async fn stop(self) {
        drop(self.queue);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the PostgreSQL writer task failed");
        }
    }
}

pub(super) fn spawn(inner: Arc<Inner>) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    let task = tokio::spawn(run(inner, rx, slots.clone()));
    Handle {
        queue: Queue { tx, slots },
        task,
    }
}

/// Creates a job: at once on a free slot, else queued for the next group; returns
/// after the commit.
pub(super) async fn create(
    q: &Queue,
    inner: &Inner,
    job: &Job,
    script: &str,
    audit: Option<&AuditEntry>,
) -> StoreResult<()> {
    // A free slot has no queued request waiting for it (the semaphore hands released
    // permits to waiters first), so going ahead here takes nobody's turn.
    if let Ok(_slot) = q.slots.try_acquire() {
        return inner.create_one(job, script, audit).await;
    }
    let (reply, answer) = oneshot::channel();
    q.tx.send(Request {
        job: job.clone(),
        script: script.to_owned(),
        audit: audit.cloned(),
        reply,
    })
    .map_err(|_| closed())?;
    answer
        .await
        .map_err(|_| StoreError::Unavailable(anyhow!("the PostgreSQL writer stopped mid-write")))?
}

async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Request>, slots: Arc<Semaphore>) {
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: what queues meanwhile joins this group.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut bytes = first.script.len();
        let mut batch = Vec::with_capacity(8);
        batch.push(first);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += req.script.len();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            commit_group(&inner, batch).await;
            drop(slot);
        });
    }
    // Every group in flight has answered once all slots are free again.
    let _ = slots.acquire_many(GROUPS_IN_FLIGHT as u32).await;
}

async fn commit_group(inner: &Inner, mut batch: Vec<Request>) {
    if batch.len() == 1 {
        for req in batch.drain(..) {
            let res = inner
                .create_one(&req.job, &req.script, req.audit.as_ref())
                .await;
            // The caller may have given up waiting; the write stands regardless.
            let _ = req.reply.send(res);
        }
        return;
    }
    // The first request of an id takes part; later ones with the same id are
    // duplicates of it whatever happens.
    let leader: Vec<bool> = {
        let mut seen = HashSet::with_capacity(batch.len());
        batch
            .iter()
            .map(|r| seen.insert(r.job.id.as_str()))
            .collect()
    };
    let result = inner
        .create_many(
            batch
                .iter()
                .zip(&leader)
                .filter(|(_, l)| **l)
                .map(|(r, _)| (&r.job, r.script.as_str(), r.audit.as_ref())),
        )
        .await;
    match result {
        Ok(inserted) => {
            let inserted: HashSet<String> = inserted.into_iter().collect();
            for (req, leader) in batch.drain(..).zip(leader) {
                let res = if leader && inserted.contains(&req.job.id) {
                    Ok(())
                } else {
                    Err(StoreError::Duplicate(req.job.id.clone()))
                };
                let _ = req.reply.send(res);
            }
        }
        Err(StoreError::Unavailable(e)) => {
            let msg = format!("{e:#}");
            for req in batch.drain(..) {
                let _ = req
                    .reply
                    .send(Err(StoreError::Unavailable(anyhow!("{msg}"))));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, n = batch.len(), "a group of creates failed; retrying one by one");
            for req in batch.drain(..) {
                let res = inner
                    .create_one(&req.job, &req.script, req.audit.as_ref())
                    .await;
                let _ = req.reply.send(res);
            }
        }
    }
}

impl Inner {
    /// Inserts one job, its script and that script as its first version with one
    /// statement. `Duplicate` if the id exists.
    pub(super) async fn create_one(
        &self,
        job: &Job,
        script: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        let params = JobParams::new(job).ctx("create job")?;
        let client = self.client().await?;
        // $15 created_at_ms, $27 script_version, $28 script_note, $29 secrets, $30 the
        // script, $31..$37 the audit entry (all null without one).
        let stmt = client
            .prepare_cached(&self.sql(&format!(
                "WITH j AS (INSERT INTO {{s}}.jobs ({JOB_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29) \
                 ON CONFLICT (id) DO NOTHING RETURNING id), \
                 v AS (INSERT INTO {{s}}.script_versions \
                   (job_id, version, source, note, created_at_ms) \
                   SELECT id, $27, $30, $28, $15 FROM j), \
                 {} \
                 INSERT INTO {{s}}.scripts (job_id, source) SELECT id, $30 FROM j",
                audit_clause("j", 31)
            )))
            .await
            .ctx("prepare insert job")?;
        let audit = AuditParams::of(audit);
        let mut args: Vec<&(dyn ToSql + Sync)> = params.all().to_vec();
        args.push(&script);
        args.extend(audit.params());
        let inserted = client.execute(&stmt, &args).await.ctx("insert job")?;
        if inserted == 0 {
            return Err(StoreError::Duplicate(job.id.clone()));
        }
        Ok(())
    }

    /// Inserts jobs with distinct ids, their scripts and those scripts as their first
    /// versions with one statement, skipping ids that exist. Returns the ids inserted.
    async fn create_many<'a>(
        &self,
        jobs: impl Iterator<Item = (&'a Job, &'a str, Option<&'a AuditEntry>)>,
    ) -> StoreResult<Vec<String>> {
        // In id order, so two groups in flight never wait on each other's ids crosswise.
        let mut jobs: Vec<(&Job, &str, Option<&AuditEntry>)> = jobs.collect();
        jobs.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
        let mut cols = JobColumns::default();
        for (job, script, audit) in jobs {
            cols.push(job, script, audit).ctx("create jobs")?;
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql(&format!(
                "WITH j AS (INSERT INTO {{s}}.jobs ({JOB_COLUMNS}) \
                   SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::smallint[], \
                     $5::text[], $6::bigint[], $7::text[], $8::boolean[], $9::bigint[], \
                     $10::bigint[], $11::text[], $12::text[], $13::bigint[], $14::bigint[], \
                     $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::text[], \
                     $20::bigint[], $21::bigint[], $22::bigint[], $23::bigint[], $24::bigint[], \
                     $25::bigint[], $26::bigint[], $27::bigint[], $28::text[], $29::text[]) \
                   ON CONFLICT (id) DO NOTHING RETURNING id), \
                 s AS (INSERT INTO {{s}}.scripts (job_id, source) \
                   SELECT u.id, u.source FROM UNNEST($1::text[], $30::text[]) AS u(id, source) \
                   JOIN j ON j.id = u.id), \
                 v AS (INSERT INTO {{s}}.script_versions \
                   (job_id, version, source, note, created_at_ms) \
                   SELECT u.id, u.version, u.source, u.note, u.created \
                   FROM UNNEST($1::text[], $27::bigint[], $30::text[], $28::text[], \
                     $15::bigint[]) AS u(id, version, source, note, created) \
                   JOIN j ON j.id = u.id), \
                 a AS (INSERT INTO {{s}}.audit (id, at_ms, actor, node, action, target, detail) \
                   SELECT u.aid, u.at, u.actor, u.node, u.action, u.target, u.detail \
                   FROM UNNEST($1::text[], $31::text[], $32::bigint[], $33::text[], \
                     $34::text[], $35::text[], $36::text[], $37::text[]) \
                     AS u(id, aid, at, actor, node, action, target, detail) \
                   JOIN j ON j.id = u.id WHERE u.aid IS NOT NULL ON CONFLICT (id) DO NOTHING) \
                 SELECT id FROM j"
            )))
            .await
            .ctx("prepare insert jobs")?;
        let rows = client
            .query(&stmt, &cols.params())
            .await
            .ctx("insert jobs")?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()
            .ctx("read inserted ids")
    }
}

/// Column arrays of a group of jobs, for one `UNNEST` insert.
#[derive(Default)]
struct JobColumns<'a> {
    id: Vec<&'a str>,
    name: Vec<&'a str>,
    description: Vec<&'a str>,
    exec_type: Vec<i16>,
    cron: Vec<&'a str>,
    exec_at_ms: Vec<Option<i64>>,
    timezone: Vec<&'a str>,
    enabled: Vec<bool>,
    time_limit_ms: Vec<i64>,
    memory_limit_mb: Vec<i64>,
    overlap: Vec<&'static str>,
    misfire: Vec<&'static str>,
    misfire_window_s: Vec<i64>,
    version: Vec<i64>,
    created_at_ms: Vec<i64>,
    updated_at_ms: Vec<i64>,
    last_scheduled_ms: Vec<Option<i64>>,
    last_started_ms: Vec<Option<i64>>,
    last_outcome: Vec<Option<&'a str>>,
    max_concurrent: Vec<i64>,
    max_catch_up: Vec<i64>,
    retry_max_retries: Vec<i64>,
    retry_backoff_ms: Vec<i64>,
    retry_max_backoff_ms: Vec<i64>,
    jitter_s: Vec<i64>,
    paused_until_ms: Vec<Option<i64>>,
    script_version: Vec<i64>,
    script_note: Vec<&'a str>,
    secrets: Vec<String>,
    script: Vec<&'a str>,
    audit: AuditColumns<'a>,
}

impl<'a> JobColumns<'a> {
    fn push(
        &mut self,
        job: &'a Job,
        script: &'a str,
        audit: Option<&'a AuditEntry>,
    ) -> anyhow::Result<()> {
        let p = JobParams::new(job)?;
        self.id.push(&job.id);
        self.name.push(&job.name);
        self.description.push(&job.description);
        self.exec_type.push(p.exec_type);
        self.cron.push(&job.cron);
        self.exec_at_ms.push(job.exec_at_ms);
        self.timezone.push(&job.timezone);
        self.enabled.push(job.enabled);
        self.time_limit_ms.push(p.time_limit_ms);
        self.memory_limit_mb.push(p.memory_limit_mb);
        self.overlap.push(p.overlap);
        self.misfire.push(p.misfire);
        self.misfire_window_s.push(p.misfire_window_s);
        self.version.push(p.version);
        self.created_at_ms.push(job.created_at_ms);
        self.updated_at_ms.push(job.updated_at_ms);
        self.last_scheduled_ms.push(job.last.scheduled_at_ms);
        self.last_started_ms.push(job.last.started_at_ms);
        self.last_outcome.push(job.last.outcome.as_deref());
        self.max_concurrent.push(p.max_concurrent);
        self.max_catch_up.push(p.max_catch_up);
        self.retry_max_retries.push(p.retry_max_retries);
        self.retry_backoff_ms.push(p.retry_backoff_ms);
        self.retry_max_backoff_ms.push(p.retry_max_backoff_ms);
        self.jitter_s.push(p.jitter_s);
        self.paused_until_ms.push(job.paused_until_ms);
        self.script_version.push(p.script_version);
        self.script_note.push(&job.script_note);
        self.secrets.push(p.grants);
        self.script.push(script);
        self.audit.push(audit);
        Ok(())
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![
            &self.id,
            &self.name,
            &self.description,
            &self.exec_type,
            &self.cron,
            &self.exec_at_ms,
            &self.timezone,
            &self.enabled,
            &self.time_limit_ms,
            &self.memory_limit_mb,
            &self.overlap,
            &self.misfire,
            &self.misfire_window_s,
            &self.version,
            &self.created_at_ms,
            &self.updated_at_ms,
            &self.last_scheduled_ms,
            &self.last_started_ms,
            &self.last_outcome,
            &self.max_concurrent,
            &self.max_catch_up,
            &self.retry_max_retries,
            &self.retry_backoff_ms,
            &self.retry_max_backoff_ms,
            &self.jitter_s,
            &self.paused_until_ms,
            &self.script_version,
            &self.script_note,
            &self.secrets,
            &self.script,
        ];
        all.extend(self.audit.params());
        all
    }
}

/// A group's audit entries as column arrays `$31..$37`, one row per job.
#[derive(Default)]
struct AuditColumns<'a> {
    id: Vec<Option<&'a str>>,
    at_ms: Vec<Option<i64>>,
    actor: Vec<Option<&'a str>>,
    node: Vec<Option<&'a str>>,
    action: Vec<Option<&'a str>>,
    target: Vec<Option<&'a str>>,
    detail: Vec<Option<&'a str>>,
}

impl<'a> AuditColumns<'a> {
    fn push(&mut self, e: Option<&'a AuditEntry>) {
        let p = AuditParams::of(e);
        self.id.push(p.id);
        self.at_ms.push(p.at_ms);
        self.actor.push(p.actor);
        self.node.push(p.node);
        self.action.push(p.action);
        self.target.push(p.target);
        self.detail.push(p.detail);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.id,
            &self.at_ms,
            &self.actor,
            &self.node,
            &self.action,
            &self.target,
            &self.detail,
        ]
    }
}
