//! The service: every operation of the API, implemented over the store, the scheduler,
//! the runner and the pool ([`web::Backend`]).
//!
//! Changes to one job are serialised by a striped lock, validated in full before
//! anything is written, stored first and scheduled second, so an answered request is
//! both durable and in force. Each change made through the API is recorded in the
//! audit log where it is made, with the caller's [`Actor`] ([`audit`]). This module
//! knows nothing of HTTP: it answers in
//! [`ServiceError`]s that say what is wrong, and `web` picks status codes.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc};
use web::audit::{AuditPage, AuditQuery};
use web::dto::{self, *};
use web::{Actor, Backend, DebugSession, ServiceError, ServiceResult};

use crate::cluster::{Cluster, OwnershipChange};
use crate::cron::{Schedule, parse_timezone};
use crate::job::{Job, LastRun, MisfirePolicy, OverlapPolicy, RetryPolicy, RunRecord, Trigger};
use crate::pool::{Pool, RunEvent, RunRequest};
use crate::runner::{Runner, job_context, system_ms};
use crate::scheduler::{
    JobMeta, JobSchedule, MisfireRule, Plan, SchedulerHandle, jitter_offset_ms, now_ms,
};
use crate::stats::RunStats;
use crate::store::{
    AuditEntry, ENABLED_PAGE, JobListQuery, JobOrder, RunListQuery, Store, StoreError,
    VERSIONS_PAGE,
};

mod audit;
mod control;
mod modules;
mod policy;
mod secrets;

/// Bounds on what a user can store (contract §7).
pub mod limits {
    pub const MAX_NAME_CHARS: usize = 200;
    pub const MAX_DESCRIPTION_CHARS: usize = 4_000;
    pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
    pub const MAX_JOB_ID_CHARS: usize = 128;
    /// A delay job's `execAt` must be at least this far ahead when created or started.
    pub const MIN_DELAY_MS: i64 = 5_000;
    pub const MIN_TIME_LIMIT_MS: u64 = 10;
    pub const MAX_TIME_LIMIT_MS: u64 = 24 * 3_600_000;
    pub const MAX_MEMORY_LIMIT_MB: u64 = 512;
    pub const DEFAULT_MISFIRE_WINDOW_S: u32 = 60;
}
use limits::*;

/// Defaults for fields a job does not set.
#[derive(Debug, Clone)]
pub struct JobDefaults {
    pub time_limit_ms: u64,
    pub memory_limit_mb: u64,
}

pub struct Service {
    store: Arc<dyn Store>,
    scheduler: SchedulerHandle,
    runner: Runner,
    pool: Pool,
    defaults: JobDefaults,
    node: String,
    mode: &'static str,
    locks: Vec<Mutex<()>>,
    stats: Arc<RunStats>,
    started_at: DateTime<Utc>,
    /// Cluster mode only: announcements, ownership, membership.
    cluster: Option<Cluster>,
    /// What `/metrics` reports beyond the run statistics.
    metrics: Arc<crate::metrics::Metrics>,
    /// Secrets: sealing, listing, opening for runs.
    vault: Arc<crate::secrets::Vault>,
}

/// Where a reload's catch-up starts.
#[derive(Debug, Clone, Copy)]
pub enum CatchUpFrom {
    /// No catch-up: the change itself happened now.
    Nothing,
    /// After the job's last handled occurrence, but no further back than this (ms).
    Lookback(i64),
    /// After this instant (Unix ms).
    Since(i64),
}

/// How far back a node looks for occurrences that nobody ran when it gains jobs (a node
/// died, Redis came back). Longer than any takeover; claims keep it exactly-once.
pub const TAKEOVER_LOOKBACK_MS: i64 = 60_000;

const LOCK_STRIPES: usize = 256;

/// How long the exhausted-job handler gathers jobs that ran out before stopping them
/// together (see [`Service::handle_exhausted`]).
const EXHAUSTED_GATHER: std::time::Duration = std::time::Duration::from_millis(50);

/// Everything a [`Service`] is built from.
pub struct ServiceParts {
    pub store: Arc<dyn Store>,
    pub scheduler: SchedulerHandle,
    pub runner: Runner,
    pub pool: Pool,
    pub defaults: JobDefaults,
    pub node: String,
    /// `std` or `multi`.
    pub mode: &'static str,
    pub stats: Arc<RunStats>,
    pub cluster: Option<Cluster>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub vault: Arc<crate::secrets::Vault>,
}

impl Service {
    pub fn new(p: ServiceParts) -> Self {
        Service {
            store: p.store,
            scheduler: p.scheduler,
            runner: p.runner,
            pool: p.pool,
            defaults: p.defaults,
            node: p.node,
            mode: p.mode,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            stats: p.stats,
            started_at: Utc::now(),
            cluster: p.cluster,
            metrics: p.metrics,
            vault: p.vault,
        }
    }

    /// What `/metrics` and `/readyz` look at.
    fn ops(&self) -> crate::ops::Ops<'_> {
        crate::ops::Ops {
            store: &self.store,
            scheduler: &self.scheduler,
            pool: &self.pool,
            stats: &self.stats,
            cluster: self.cluster.as_ref(),
            metrics: &self.metrics,
            mode: self.mode,
            node: &self.node,
        }
    }

    fn lock_for(&self, id: &str) -> &Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        &self.locks[(h.finish() as usize) % LOCK_STRIPES]
    }

    /// Schedules every enabled job at start-up, applying the misfire rule to the
    /// occurrences missed while the service was down. Returns how many were scheduled.
    ///
    /// Jobs are read a page at a time ([`ENABLED_PAGE`] by id) and each page is in the
    /// wheel before the next is read, so memory holds the wheel plus one page, never
    /// every stored job at once.
    pub async fn schedule_all(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .enabled_jobs_page(after.as_deref(), ENABLED_PAGE)
                .await?;
            let last_page = (page.len() as u64) < ENABLED_PAGE;
            n += page.len();
            let mut batch = Vec::with_capacity(page.len());
            for job in &page {
                match schedule_of(job, Some(job_since(job))) {
                    Ok(s) => batch.push(s),
                    Err(e) => {
                        tracing::error!(job = %job.id, field = e.0, error = %e.1, "a stored job cannot be scheduled; leaving it unscheduled");
                    }
                }
            }
            after = page.into_iter().last().map(|j| j.id);
            self.scheduler.upsert_many(batch).await?;
            if last_page {
                return Ok(n);
            }
        }
    }

    /// Marks jobs with no further occurrence as stopped (`state: 0`), unless they were
    /// changed since the scheduler saw them.
    ///
    /// Off the fire path, and batched: jobs that ran out within [`EXHAUSTED_GATHER`]
    /// of each other are stopped together, their reads running side by side on the
    /// read pool and their updates reaching the store's writer together, so that the
    /// writer commits them in one group instead of one commit per delay job.
    pub async fn handle_exhausted(&self, mut rx: mpsc::UnboundedReceiver<Arc<JobMeta>>) {
        const BATCH: usize = 512;
        let mut metas = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut metas, BATCH).await > 0 {
            tokio::time::sleep(EXHAUSTED_GATHER).await;
            while metas.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => metas.push(m),
                    Err(_) => break,
                }
            }
            futures_util::future::join_all(metas.drain(..).map(|m| self.stop_exhausted(m))).await;
        }
    }

    async fn stop_exhausted(&self, meta: Arc<JobMeta>) {
        let _guard = self.lock_for(&meta.id).lock().await;
        let job = match self.store.get_job(&meta.id).await {
            Ok(Some(j)) if j.version == meta.version && j.enabled => j,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(job = %meta.id, error = %e, "could not stop a finished job");
                return;
            }
        };
        let mut stopped = job.clone();
        stopped.enabled = false;
        stopped.version += 1;
        stopped.updated_at_ms = now_ms();
        match self.store.update_job(&stopped, None, job.version).await {
            Ok(()) => self.announce(&stopped.id, stopped.version),
            Err(e) => {
                tracing::error!(job = %meta.id, error = %e, "could not stop a finished job")
            }
        }
    }

    fn view(&self, job: &Job) -> JobView {
        view_of(job, now_ms())
    }

    /// Every live node with the number of scheduled jobs it owns.
    async fn node_stats(&self) -> Vec<NodeStats> {
        let Some(c) = &self.cluster else {
            return vec![NodeStats {
                node: self.node.clone(),
                heartbeat_age_ms: 0,
                jobs_owned: self.scheduler.scheduled(),
                is_self: true,
            }];
        };
        let ring = c.ring();
        let mut owned: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for (id, _) in self.scheduler.versions().await {
            if let Some(o) = ring.owner(&id) {
                *owned.entry(o.to_owned()).or_default() += 1;
            }
        }
        c.members()
            .into_iter()
            .map(|m| NodeStats {
                jobs_owned: owned.get(&m.node).copied().unwrap_or(0),
                is_self: m.node == c.node(),
                heartbeat_age_ms: m.age_ms,
                node: m.node,
            })
            .collect()
    }

    async fn load(&self, id: &str) -> ServiceResult<Job> {
        self.store
            .get_job(id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| not_found(id))
    }

    /// Writes a changed job with its audit entry (in one transaction) and brings the
    /// schedule in line with it.
    async fn save(
        &self,
        job: &Job,
        script: Option<&str>,
        expected: u64,
        entry: AuditEntry,
    ) -> ServiceResult<()> {
        self.store
            .update_job_audited(job, script, expected, Some(&entry))
            .await
            .map_err(store_err)?;
        self.announce(&job.id, job.version);
        self.apply_schedule(job).await
    }

    fn announce(&self, id: &str, version: u64) {
        if let Some(c) = &self.cluster {
            c.announce(id, version);
        }
    }

    /// Brings this node's schedule of one job in line with the store (after an
    /// announcement, a reconcile or a takeover), catching up, claimed, the occurrences
    /// nobody ran as `catch_up` says.
    pub async fn reload(&self, id: &str, catch_up: CatchUpFrom) {
        let _guard = self.lock_for(id).lock().await;
        let job = match self.store.get_job(id).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not reload a job; will retry at the next reconcile");
                return;
            }
        };
        let result = match job {
            Some(job) if job.enabled => {
                let since = match catch_up {
                    CatchUpFrom::Nothing => None,
                    CatchUpFrom::Lookback(l) => Some(job_since(&job).max(now_ms() - l)),
                    CatchUpFrom::Since(t) => Some(t),
                };
                match schedule_of(&job, since) {
                    Ok(s) => self.scheduler.upsert(s).await.map(|_| ()),
                    Err(e) => {
                        tracing::error!(job = %id, field = e.0, error = %e.1, "a stored job cannot be scheduled");
                        self.scheduler.remove(id).await
                    }
                }
            }
            Some(_) => self.scheduler.remove(id).await,
            None => {
                self.metrics.egress.forget(id);
                self.scheduler.remove(id).await
            }
        };
        if result.is_err() {
            tracing::warn!(job = %id, "the scheduler has stopped; reload dropped");
        }
    }

    /// Compares the wheel with the store and reloads every job that differs: what a
    /// lost announcement leaves behind. Returns how many were reloaded.
    ///
    /// Reads only `(id, version)` of the enabled jobs, a page at a time. A change that
    /// lands during the walk may make a job look stale; reloading it is harmless (a
    /// reload reads the job again), and one it hides is found by the next reconcile.
    pub async fn reconcile(&self) -> anyhow::Result<usize> {
        let mut wheel: std::collections::HashMap<Arc<str>, u64> =
            self.scheduler.versions().await.into_iter().collect();
        let mut stale: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .enabled_versions_page(after.as_deref(), VERSIONS_PAGE)
                .await?;
            let last_page = (page.len() as u64) < VERSIONS_PAGE;
            for (id, version) in &page {
                // What is left in `wheel` afterwards is scheduled but not enabled.
                if wheel.remove(id.as_str()).is_none_or(|v| v < *version) {
                    stale.push(id.clone());
                }
            }
            after = page.into_iter().last().map(|(id, _)| id);
            if last_page {
                break;
            }
        }
        stale.extend(wheel.into_keys().map(|id| id.to_string()));
        for id in &stale {
            self.reload(id, CatchUpFrom::Lookback(TAKEOVER_LOOKBACK_MS))
                .await;
        }
        Ok(stale.len())
    }

    /// This node gained jobs (a node left, or this node came back): reload them with a
    /// catch-up of what nobody ran meanwhile.
    pub async fn take_over(&self, change: &OwnershipChange) -> anyhow::Result<usize> {
        let Some(cluster) = &self.cluster else {
            return Ok(0);
        };
        let me = cluster.node();
        // (id, last handled, last change) of each gained job, read a page at a time.
        let mut gained: Vec<(String, i64, i64)> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .enabled_jobs_page(after.as_deref(), ENABLED_PAGE)
                .await?;
            let last_page = (page.len() as u64) < ENABLED_PAGE;
            after = page.last().map(|j| j.id.clone());
            gained.extend(
                page.into_iter()
                    .filter(|j| {
                        change.after.owner(&j.id) == Some(me)
                            && change.before.as_ref().and_then(|r| r.owner(&j.id)) != Some(me)
                    })
                    .map(|j| {
                        let since = job_since(&j);
                        (j.id, since, j.updated_at_ms)
                    }),
            );
            if last_page {
                break;
            }
        }
        // What the store said was handled *before* this takeover began; on-time fires
        // of the gained jobs resume at once and move it forward while we work.
        let floor = now_ms() - TAKEOVER_LOOKBACK_MS;
        for (id, handled, updated_at_ms) in &gained {
            // Never before the job's own last change: it did not exist (or did not
            // fire) then.
            let gap_start = change.gap_start_ms.max(*updated_at_ms);
            let since = (*handled).min(gap_start).max(floor);
            self.reload(id, CatchUpFrom::Since(since)).await;
        }
        Ok(gained.len())
    }

    async fn apply_schedule(&self, job: &Job) -> ServiceResult<()> {
        let stopped = || ServiceError::Unavailable("the scheduler has stopped".into());
        if job.enabled {
            let s = schedule_of(job, None).map_err(|e| ServiceError::invalid(e.0, e.1))?;
            self.scheduler.upsert(s).await.map_err(|_| stopped())?;
        } else {
            self.scheduler
                .remove(&job.id)
                .await
                .map_err(|_| stopped())?;
        }
        Ok(())
    }

    fn new_job(&self, id: String, exec_type: ExecType, mut input: JobInput) -> ServiceResult<Job> {
        let script_note = input
            .script_note
            .clone()
            .unwrap_or_else(|| "created".to_owned());
        policy::check_note(&script_note)?;
        let now = now_ms();
        let job = Job {
            id,
            name: input.name.take().unwrap_or_default(),
            description: input.description.take().unwrap_or_default(),
            exec_type,
            cron: input.cron.take().unwrap_or_default(),
            exec_at_ms: input.exec_at,
            timezone: input.timezone.take().unwrap_or_else(|| "UTC".into()),
            enabled: false,
            time_limit_ms: input.time_limit_ms.unwrap_or(self.defaults.time_limit_ms),
            memory_limit_mb: input
                .memory_limit_mb
                .unwrap_or(self.defaults.memory_limit_mb),
            overlap: OverlapPolicy::Skip,
            misfire: MisfirePolicy::RunOnce,
            misfire_window_s: DEFAULT_MISFIRE_WINDOW_S,
            max_concurrent: 1,
            max_catch_up: policy::DEFAULT_MAX_CATCH_UP,
            retry: RetryPolicy::default(),
            jitter_s: 0,
            paused_until_ms: None,
            script_version: 1,
            script_note,
            secrets: input.secrets.take().unwrap_or_default(),
            version: 1,
            created_at_ms: now,
            updated_at_ms: now,
            last: LastRun::default(),
        };
        let mut job = job;
        policy::apply(&mut job, &input)?;
        Ok(job)
    }
}

/// The instant after which a job's occurrences have not been handled: its last handled
/// occurrence, or its last change, whichever is later.
fn job_since(job: &Job) -> i64 {
    job.last
        .scheduled_at_ms
        .unwrap_or(job.updated_at_ms)
        .max(job.updated_at_ms)
}

/// Field-level validation of a whole job. `starting`: it is (or will be) scheduled, so
/// it must have a future occurrence.
pub fn validate(job: &Job, script: Option<&str>, starting: bool) -> ServiceResult<()> {
    for (field, text) in [
        ("name", job.name.as_str()),
        ("description", job.description.as_str()),
        ("cron", job.cron.as_str()),
        ("timezone", job.timezone.as_str()),
    ] {
        check_no_nul(field, text)?;
    }
    if job.name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::invalid(
            "name",
            format!("name is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if job.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ServiceError::invalid(
            "description",
            format!("description is longer than {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if let Some(s) = script {
        check_script(s)?;
    }
    if !(MIN_TIME_LIMIT_MS..=MAX_TIME_LIMIT_MS).contains(&job.time_limit_ms) {
        return Err(ServiceError::invalid(
            "timeLimitMs",
            format!("timeLimitMs must be between {MIN_TIME_LIMIT_MS} and {MAX_TIME_LIMIT_MS}"),
        ));
    }
    if !(1..=MAX_MEMORY_LIMIT_MB).contains(&job.memory_limit_mb) {
        return Err(ServiceError::invalid(
            "memoryLimitMb",
            format!("memoryLimitMb must be between 1 and {MAX_MEMORY_LIMIT_MB}"),
        ));
    }
    parse_timezone(&job.timezone).map_err(|e| ServiceError::invalid("timezone", e.0))?;
    policy::validate(job)?;
    match job.exec_type {
        ExecType::Timing => {
            if job.cron.trim().is_empty() {
                return Err(ServiceError::invalid(
                    "cron",
                    "a timing job needs a cron expression",
                ));
            }
            let s = Schedule::parse(&job.cron, &job.timezone)
                .map_err(|e| ServiceError::invalid("cron", e.0))?;
            if starting && s.next_after(now_ms()).is_none() {
                return Err(ServiceError::invalid(
                    "cron",
                    format!("cron {:?} has no future occurrence", job.cron),
                ));
            }
        }
        ExecType::Delay => {
            let Some(at) = job.exec_at_ms else {
                return Err(ServiceError::invalid(
                    "execAt",
                    "a delay job needs execAt (a Unix timestamp)",
                ));
            };
            if starting && at < now_ms() + MIN_DELAY_MS {
                return Err(ServiceError::invalid(
                    "execAt",
                    format!(
                        "execAt must be at least {} s in the future",
                        MIN_DELAY_MS / 1000
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// NUL characters are refused everywhere: no store can keep them in text (PostgreSQL
/// rejects them), and no sensible job needs one.
fn check_no_nul(field: &str, text: &str) -> ServiceResult<()> {
    if text.contains('\0') {
        return Err(ServiceError::invalid(
            field,
            format!("{field} contains a NUL character"),
        ));
    }
    Ok(())
}

fn check_script(s: &str) -> ServiceResult<()> {
    check_no_nul("script", s)?;
    if s.len() > MAX_SCRIPT_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "script is {} bytes; the limit is {MAX_SCRIPT_BYTES}",
            s.len()
        )));
    }
    Ok(())
}

fn check_job_id(id: &str) -> ServiceResult<()> {
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_JOB_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "jobId",
            format!("jobId must be 1 to {MAX_JOB_ID_CHARS} characters of A-Z a-z 0-9 - _ . :"),
        ))
    }
}

/// What the scheduler needs to hold a job. Errors carry (field, message).
pub fn schedule_of(
    job: &Job,
    catch_up_since_ms: Option<i64>,
) -> Result<JobSchedule, (&'static str, String)> {
    Ok(JobSchedule {
        meta: Arc::new(meta_of(job)),
        plan: plan_of(job)?,
        catch_up_since_ms,
        misfire: misfire_rule_of(job),
    })
}

/// The instants a job fires at, its jitter applied.
pub fn plan_of(job: &Job) -> Result<Plan, (&'static str, String)> {
    Ok(match job.exec_type {
        ExecType::Timing => Plan::Cron {
            schedule: Schedule::parse(&job.cron, &job.timezone).map_err(|e| ("cron", e.0))?,
            offset_ms: jitter_offset_ms(&job.id, job.jitter_s),
        },
        ExecType::Delay => Plan::Once {
            at_ms: job
                .exec_at_ms
                .ok_or(("execAt", "a delay job needs execAt".to_string()))?,
        },
    })
}

pub fn misfire_rule_of(job: &Job) -> MisfireRule {
    MisfireRule {
        policy: job.misfire,
        window_ms: i64::from(job.misfire_window_s) * 1000,
        max_catch_up: job.max_catch_up,
        paused_until_ms: job.paused_until_ms,
    }
}

pub fn meta_of(job: &Job) -> JobMeta {
    JobMeta {
        id: job.id.as_str().into(),
        name: job.name.clone(),
        version: job.version,
        script_version: job.script_version,
        time_limit_ms: job.time_limit_ms,
        memory_limit_mb: job.memory_limit_mb,
        overlap: job.overlap,
        max_concurrent: job.max_concurrent,
        retry: job.retry,
        secrets: job.secrets.clone(),
    }
}

fn ms_to_dt(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// The next instant a job will fire, as far as its definition says.
pub fn next_exec_ms(job: &Job, now: i64) -> Option<i64> {
    if !job.enabled {
        return None;
    }
    let plan = plan_of(job).ok()?;
    // Occurrences during a pause are skipped, not executed.
    let after = job.paused_until_ms.map_or(now, |p| now.max(p - 1));
    plan.next_after(after)
}

pub fn view_of(job: &Job, now: i64) -> JobView {
    JobView {
        job_id: job.id.clone(),
        name: job.name.clone(),
        description: job.description.clone(),
        exec_type: job.exec_type,
        cron: job.cron.clone(),
        exec_at: job.exec_at_ms,
        timezone: job.timezone.clone(),
        state: if job.enabled {
            JobState::Running
        } else {
            JobState::Stopped
        },
        last_exec_time: job.last.started_at_ms.map(ms_to_dt),
        last_outcome: job.last.outcome.clone(),
        next_exec_time: next_exec_ms(job, now).map(ms_to_dt),
        created_at: ms_to_dt(job.created_at_ms),
        updated_at: ms_to_dt(job.updated_at_ms),
        time_limit_ms: job.time_limit_ms,
        memory_limit_mb: job.memory_limit_mb,
        overlap: job.overlap.as_str().to_owned(),
        max_concurrent: job.max_concurrent,
        misfire: job.misfire.as_str().to_owned(),
        misfire_window_s: job.misfire_window_s,
        max_catch_up: job.max_catch_up,
        retries: job.retry.max_retries,
        retry_backoff_ms: job.retry.backoff_ms,
        retry_max_backoff_ms: job.retry.max_backoff_ms,
        jitter_s: job.jitter_s,
        paused_until: job.paused_until_ms.filter(|p| *p > now).map(ms_to_dt),
        script_version: job.script_version,
        script_note: job.script_note.clone(),
        secrets: job.secrets.clone(),
        version: job.version,
    }
}

pub fn run_view(r: &RunRecord) -> RunView {
    RunView {
        run_id: r.run_id.clone(),
        job_id: r.job_id.clone(),
        occurrence_id: crate::job::occurrence_id(&r.job_id, r.scheduled_at_ms, r.trigger),
        attempt: r.attempt,
        script_version: r.script_version,
        duplicates: r.duplicates,
        trigger: r.trigger,
        scheduled_at: ms_to_dt(r.scheduled_at_ms),
        started_at: r.started_at_ms.map(ms_to_dt),
        ended_at: r.ended_at_ms.map(ms_to_dt),
        outcome: r.outcome.clone(),
        lateness_ms: r.started_at_ms.map(|s| s - r.scheduled_at_ms),
        duration_ms: match (r.started_at_ms, r.ended_at_ms) {
            (Some(s), Some(e)) => Some(e - s),
            _ => None,
        },
        node: r.node.clone(),
        error: r.error_message.as_ref().map(|m| ErrorView {
            message: m.clone(),
            stack: r.error_stack.clone(),
        }),
        cpu_time_us: r.cpu_time_us,
        peak_memory_bytes: r.peak_memory_bytes,
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("no job with id {id:?}"))
}

fn store_err(e: StoreError) -> ServiceError {
    match e {
        StoreError::Duplicate(id) => {
            ServiceError::Conflict(format!("a job with id {id:?} already exists"))
        }
        StoreError::NotFound(id) => not_found(&id),
        StoreError::VersionConflict { id, .. } => ServiceError::Conflict(format!(
            "job {id:?} was changed by another request at the same time; retry"
        )),
        StoreError::Unavailable(e) => {
            ServiceError::Unavailable(format!("store unavailable: {e:#}"))
        }
        StoreError::Other(e) => ServiceError::Internal(e),
    }
}

/// Applies the fields present in `patch` to `job`.
fn merge(job: &mut Job, patch: JobInput) -> ServiceResult<()> {
    policy::apply(job, &patch)?;
    if let Some(v) = patch.name {
        job.name = v;
    }
    if let Some(v) = patch.description {
        job.description = v;
    }
    if let Some(v) = patch.exec_type {
        job.exec_type = v;
    }
    if let Some(v) = patch.cron {
        job.cron = v;
    }
    if let Some(v) = patch.exec_at {
        job.exec_at_ms = Some(v);
    }
    if let Some(v) = patch.timezone {
        job.timezone = v;
    }
    if let Some(v) = patch.time_limit_ms {
        job.time_limit_ms = v;
    }
    if let Some(v) = patch.memory_limit_mb {
        job.memory_limit_mb = v;
    }
    if let Some(v) = patch.secrets {
        job.secrets = v;
    }
    Ok(())
}

#[async_trait]
impl Backend for Service {
    async fn create_job(
        &self,
        actor: &Actor,
        exec_type: Option<ExecType>,
        mut input: JobInput,
        start: bool,
    ) -> ServiceResult<String> {
        let exec_type = exec_type.or(input.exec_type).ok_or_else(|| {
            ServiceError::invalid(
                "type",
                "say which kind of job: ?type=timing|delay, or execType 0|1 in the body",
            )
        })?;
        let id = match input.job_id.take() {
            Some(id) => {
                check_job_id(&id)?;
                id
            }
            // Time-ordered (v7): new ids land at the right edge of the stores' id
            // indexes instead of random leaves, so a group commit writes a few shared
            // index pages rather than one page per create.
            None => uuid::Uuid::now_v7().to_string(),
        };
        let script = input.script.take().unwrap_or_default();
        let mut job = self.new_job(id, exec_type, input)?;
        secrets::check_grants(self, &mut job.secrets).await?;
        // Contract: execAt is checked at creation too, not only at start.
        let delay_ahead = job.exec_type == ExecType::Delay;
        validate(&job, Some(&script), start || delay_ahead)?;
        job.enabled = start;
        let _guard = self.lock_for(&job.id).lock().await;
        let entry = self.audit_entry(
            actor,
            "job.create",
            &job.id,
            audit::job_created(&job, &script),
        );
        self.store
            .create_job_audited(&job, &script, Some(&entry))
            .await
            .map_err(store_err)?;
        self.announce(&job.id, job.version);
        if start {
            self.apply_schedule(&job).await?;
            self.runner.warm_script(&job.id, job.version, &script);
        } else {
            // A deleted job of the same id may have left its version 1 cached.
            self.runner.forget_script(&job.id);
        }
        // Debug, not info: the audit log already records every create with who made
        // it, and a line per create cost ~4 % of the HTTP threads' time under a stream
        // of creates (stderr is unbuffered: one write(2) per line).
        tracing::debug!(job = %job.id, start, "job created");
        Ok(job.id)
    }

    async fn update_job(&self, actor: &Actor, id: &str, mut patch: JobInput) -> ServiceResult<()> {
        let script = patch.script.take();
        if let Some(s) = &script {
            check_script(s)?;
        }
        let _guard = self.lock_for(id).lock().await;
        let old = self.load(id).await?;
        let mut job = old.clone();
        let delay_changed = patch.exec_at.is_some() || patch.exec_type == Some(ExecType::Delay);
        let note = patch.script_note.clone();
        let grants_given = patch.secrets.is_some();
        merge(&mut job, patch)?;
        if grants_given {
            secrets::check_grants(self, &mut job.secrets).await?;
        }
        if script.is_some() {
            job.script_version = old.script_version + 1;
            job.script_note = note.unwrap_or_default();
            policy::check_note(&job.script_note)?;
        }
        let timing_changed = job.exec_type != old.exec_type
            || job.cron != old.cron
            || job.timezone != old.timezone
            || job.exec_at_ms != old.exec_at_ms
            || job.jitter_s != old.jitter_s;
        validate(
            &job,
            script.as_deref(),
            job.enabled && (timing_changed || delay_changed),
        )?;
        job.version = old.version + 1;
        job.updated_at_ms = now_ms();
        let detail = audit::job_changes(&old, &job, script.as_deref());
        let entry = self.audit_entry(actor, "job.update", id, detail);
        self.save(&job, script.as_deref(), old.version, entry)
            .await?;
        Ok(())
    }

    async fn delete_job(&self, actor: &Actor, id: &str) -> ServiceResult<()> {
        let _guard = self.lock_for(id).lock().await;
        // For the audit log: an id alone says little once the job is gone.
        let name = self
            .store
            .get_job(id)
            .await
            .map_err(store_err)?
            .map(|j| j.name);
        let entry = self.audit_entry(actor, "job.delete", id, serde_json::json!({ "name": name }));
        let existed = self
            .store
            .delete_job_audited(id, Some(&entry))
            .await
            .map_err(store_err)?;
        self.announce(id, u64::MAX);
        self.scheduler
            .remove(id)
            .await
            .map_err(|_| ServiceError::Unavailable("the scheduler has stopped".into()))?;
        if !existed {
            return Err(not_found(id));
        }
        self.metrics.egress.forget(id);
        tracing::info!(job = %id, "job deleted");
        Ok(())
    }

    async fn get_job(&self, id: &str) -> ServiceResult<JobView> {
        Ok(self.view(&self.load(id).await?))
    }

    async fn list_jobs(&self, q: JobQuery) -> ServiceResult<JobPage> {
        let limit = q.limit.clamp(1, 1000);
        let by_next = q.sort == JobSort::NextExecTime;
        let query = JobListQuery {
            search: q.search.filter(|s| !s.is_empty()),
            exec_type: q.exec_type,
            enabled: q.state.map(|s| s == JobState::Running),
            order: match q.sort {
                JobSort::CreatedAt | JobSort::NextExecTime => JobOrder::CreatedAt,
                JobSort::Name => JobOrder::Name,
                JobSort::UpdatedAt => JobOrder::UpdatedAt,
                JobSort::LastExecTime => JobOrder::LastExecTime,
            },
            descending: q.descending,
            offset: if by_next { 0 } else { q.offset },
            limit: if by_next { None } else { Some(limit) },
        };
        let (jobs, total) = self.store.list_jobs(&query).await.map_err(store_err)?;
        let now = now_ms();
        let mut items: Vec<JobView> = jobs.iter().map(|j| view_of(j, now)).collect();
        if by_next {
            // The next fire time is not stored, so this order is computed here; jobs
            // that will not fire sort last either way.
            items.sort_by(|a, b| match (a.next_exec_time, b.next_exec_time) {
                (Some(x), Some(y)) if q.descending => y.cmp(&x),
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            items = items
                .into_iter()
                .skip(q.offset as usize)
                .take(limit as usize)
                .collect();
        }
        Ok(JobPage {
            items,
            total,
            offset: q.offset,
            limit,
        })
    }

    async fn all_jobs(&self) -> ServiceResult<Vec<JobView>> {
        let (jobs, _) = self
            .store
            .list_jobs(&JobListQuery::default())
            .await
            .map_err(store_err)?;
        let now = now_ms();
        Ok(jobs.iter().map(|j| view_of(j, now)).collect())
    }

    async fn get_script(&self, id: &str) -> ServiceResult<ScriptView> {
        let script = self
            .store
            .get_script(id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| not_found(id))?;
        Ok(ScriptView {
            job_id: id.to_owned(),
            script,
        })
    }

    async fn set_script(
        &self,
        actor: &Actor,
        id: &str,
        script: String,
        note: Option<String>,
    ) -> ServiceResult<()> {
        check_script(&script)?;
        let note = note.unwrap_or_default();
        policy::check_note(&note)?;
        let _guard = self.lock_for(id).lock().await;
        let old = self.load(id).await?;
        let mut job = old.clone();
        job.script_version += 1;
        job.script_note = note;
        job.version += 1;
        job.updated_at_ms = now_ms();
        let detail = audit::job_changes(&old, &job, Some(&script));
        let entry = self.audit_entry(actor, "script.update", id, detail);
        self.save(&job, Some(&script), old.version, entry).await?;
        Ok(())
    }

    async fn script_versions(&self, id: &str) -> ServiceResult<Vec<ScriptVersionView>> {
        self.versions_of(id).await
    }

    async fn script_version(&self, id: &str, version: u64) -> ServiceResult<ScriptVersionView> {
        self.version_of(id, version).await
    }

    async fn rollback_script(
        &self,
        actor: &Actor,
        id: &str,
        version: u64,
        note: Option<String>,
    ) -> ServiceResult<u64> {
        self.rollback(actor, id, version, note).await
    }

    async fn plan(
        &self,
        id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> ServiceResult<PlanView> {
        self.plan_window(id, from, to).await
    }

    async fn pause(&self, actor: &Actor, id: &str, until: DateTime<Utc>) -> ServiceResult<()> {
        self.set_pause(actor, id, Some(until.timestamp_millis()))
            .await
    }

    async fn resume(&self, actor: &Actor, id: &str) -> ServiceResult<()> {
        self.set_pause(actor, id, None).await
    }

    async fn backfill(
        &self,
        actor: &Actor,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ServiceResult<BackfillView> {
        self.backfill_range(actor, id, from, to).await
    }

    async fn occurrences(
        &self,
        id: &str,
        before: Option<DateTime<Utc>>,
        limit: u64,
    ) -> ServiceResult<OccurrencePage> {
        self.ledger(id, before, limit).await
    }

    async fn enable(&self, actor: &Actor, id: &str, enable: bool) -> ServiceResult<()> {
        let _guard = self.lock_for(id).lock().await;
        let old = self.load(id).await?;
        if old.enabled == enable {
            // Idempotent; make sure the schedule agrees with the store all the same.
            return self.apply_schedule(&old).await;
        }
        let mut job = old.clone();
        job.enabled = enable;
        if enable {
            validate(&job, None, true)?;
        }
        job.version += 1;
        job.updated_at_ms = now_ms();
        let action = if enable { "job.enable" } else { "job.disable" };
        let entry = self.audit_entry(actor, action, id, audit::job_changes(&old, &job, None));
        self.save(&job, None, old.version, entry).await?;
        tracing::info!(job = %id, enable, "job state changed");
        Ok(())
    }

    async fn run_now(&self, actor: &Actor, id: &str) -> ServiceResult<String> {
        let job = self.load(id).await?;
        let run_id = self.runner.run_manual(Arc::new(meta_of(&job)));
        let detail = serde_json::json!({ "runId": run_id, "scriptVersion": job.script_version });
        self.record(actor, "job.run", id, detail).await;
        Ok(run_id)
    }

    async fn list_runs(&self, job_id: &str, q: RunQuery) -> ServiceResult<RunPage> {
        let limit = q.limit.clamp(1, 1000);
        self.load(job_id).await?;
        let mut query = RunListQuery {
            outcome: q.outcome,
            before_ms: q.before.map(|d| d.timestamp_millis()),
            since_ms: None,
            limit,
        };
        let mut runs = self
            .store
            .list_runs(job_id, &query)
            .await
            .map_err(store_err)?;
        let full = runs.len() as u64 == limit;
        let last_ms = runs.last().map(|r| r.scheduled_at_ms);
        if let (true, Some(last_ms)) = (full, last_ms) {
            // The next page starts strictly before the last instant, so this one must
            // hold every run of that instant (the attempts of one occurrence share it):
            // it may end up longer than `limit`.
            runs.retain(|r| r.scheduled_at_ms != last_ms);
            query.since_ms = Some(last_ms);
            query.before_ms = Some(last_ms.saturating_add(1));
            query.limit = 1000;
            let group = self
                .store
                .list_runs(job_id, &query)
                .await
                .map_err(store_err)?;
            runs.extend(group);
        }
        let next_before = if full { last_ms.map(ms_to_dt) } else { None };
        Ok(RunPage {
            items: runs.iter().map(run_view).collect(),
            next_before,
        })
    }

    async fn get_run(&self, run_id: &str) -> ServiceResult<RunDetail> {
        let r = self
            .store
            .get_run(run_id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| ServiceError::NotFound(format!("no run with id {run_id:?}")))?;
        Ok(RunDetail {
            run: run_view(&r),
            log: r
                .log
                .iter()
                .map(|l| dto::LogLine {
                    seq: l.seq,
                    level: l.level.clone(),
                    text: l.text.clone(),
                    at: ms_to_dt(l.at_ms),
                })
                .collect(),
            log_truncated: r.log_truncated,
        })
    }

    async fn cron_preview(
        &self,
        cron: &str,
        timezone: Option<&str>,
        count: usize,
        after: Option<DateTime<Utc>>,
    ) -> ServiceResult<Vec<DateTime<Utc>>> {
        let tz = timezone.unwrap_or("UTC");
        parse_timezone(tz).map_err(|e| ServiceError::invalid("timezone", e.0))?;
        let s = Schedule::parse(cron, tz).map_err(|e| ServiceError::invalid("cron", e.0))?;
        let after = after.map(|d| d.timestamp_millis()).unwrap_or_else(now_ms);
        Ok(s.upcoming(after, count.clamp(1, 100)))
    }

    async fn debug(&self, source: DebugSource) -> ServiceResult<DebugSession> {
        let (job_id, script) = match source {
            DebugSource::Stored { job_id } => {
                let s = self.get_script(&job_id).await?.script;
                (Some(job_id), s)
            }
            DebugSource::Draft { job_id, script } => {
                check_script(&script)?;
                (job_id, script)
            }
        };
        let meta = match &job_id {
            Some(id) => meta_of(&self.load(id).await?),
            None => JobMeta {
                id: "debug".into(),
                name: "debug".into(),
                version: 0,
                script_version: 0,
                time_limit_ms: self.defaults.time_limit_ms,
                memory_limit_mb: self.defaults.memory_limit_mb,
                overlap: OverlapPolicy::Skip,
                max_concurrent: 1,
                retry: RetryPolicy::default(),
                secrets: Vec::new(),
            },
        };
        // A saved job's debug run gets its secrets (a draft without a job none).
        let secrets = self
            .vault
            .for_run(&meta.id, &meta.secrets)
            .await
            .map_err(|e| ServiceError::Conflict(format!("{e:#}")))?;
        let masker = secrets.masker;
        let modules = self
            .runner
            .modules()
            .for_script(&script)
            .await
            .map_err(|e| {
                if e.is::<crate::modules::TooManyModules>() {
                    ServiceError::Conflict(format!("{e:#}"))
                } else {
                    ServiceError::Unavailable(format!("could not load the shared modules: {e:#}"))
                }
            })?;
        let mut job = job_context(&meta, 0, Trigger::Manual, 1);
        job.secrets = secrets.values;
        let started = Instant::now();
        let mut handle = self.pool.submit(RunRequest {
            script,
            limits: self.runner.limits_for(&meta),
            job,
            modules,
        });
        let canceller = handle.canceller();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Some(ev) = handle.next_event().await {
                let out = match ev {
                    RunEvent::Started { .. } => continue,
                    RunEvent::Console(l) => DebugEvent::Log {
                        seq: l.seq,
                        level: l.level.as_str().to_owned(),
                        text: masker.mask(&l.text),
                        at: ms_to_dt(l.at_ms),
                    },
                    RunEvent::End(r) => DebugEvent::End {
                        outcome: r.outcome.as_str().to_owned(),
                        error: r.error.map(|e| ErrorView {
                            message: masker.mask(&e.message),
                            stack: e.stack.map(|s| masker.mask(&s)),
                        }),
                        duration_ms: match r.started_at {
                            Some(s) => system_ms(r.ended_at) - system_ms(s),
                            None => started.elapsed().as_millis() as i64,
                        },
                    },
                };
                let end = matches!(out, DebugEvent::End { .. });
                if tx.send(out).await.is_err() || end {
                    break;
                }
            }
        });
        Ok(DebugSession {
            events: rx,
            cancel: Box::new(move || canceller.cancel()),
        })
    }

    async fn health(&self) -> Health {
        let stats = self.pool.stats();
        let mut problems = Vec::new();
        if stats.workers_alive == 0 {
            problems.push("no worker process is alive".to_owned());
        }
        if !self.scheduler.is_alive() {
            problems.push("the scheduler has stopped".to_owned());
        }
        if let Some(c) = &self.cluster
            && let Some(p) = c.problem()
        {
            problems.push(format!("not firing: {p}"));
        }
        Health {
            status: if problems.is_empty() {
                "ok"
            } else {
                "degraded"
            }
            .to_owned(),
            mode: self.mode.to_owned(),
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            workers_alive: stats.workers_alive,
            workers_configured: stats.workers,
            jobs_scheduled: self.scheduler.scheduled(),
            problems,
        }
    }

    async fn stats(&self) -> ServiceResult<Stats> {
        let (stopped, running) = self.store.count_jobs().await.map_err(store_err)?;
        let now = now_ms();
        let snap = self.stats.snapshot(now);
        let pool = self.pool.stats();
        let upcoming = self
            .scheduler
            .upcoming(10)
            .await
            .into_iter()
            .map(|(m, at)| UpcomingRun {
                job_id: m.id.to_string(),
                name: m.name.clone(),
                at: ms_to_dt(at),
            })
            .collect();
        Ok(Stats {
            jobs_total: stopped + running,
            jobs_running: running,
            jobs_stopped: stopped,
            runs_last_hour: snap.last_hour,
            runs_last_day: snap.last_day,
            success_rate_last_hour: snap.success_rate_last_hour,
            lateness_p50_ms: snap.lateness_p50_ms,
            lateness_p99_ms: snap.lateness_p99_ms,
            per_minute: snap.per_minute,
            upcoming,
            recent_failures: snap.recent_failures,
            nodes: self.node_stats().await,
            workers_alive: pool.workers_alive,
            workers_busy: pool.workers_busy,
            runs_in_flight: pool.runs_in_flight,
            runs_queued: pool.runs_queued,
            started_at: self.started_at,
        })
    }

    async fn metrics(&self) -> ServiceResult<String> {
        Ok(self.ops().metrics_text().await)
    }

    async fn readiness(&self) -> web::Readiness {
        self.ops().readiness().await
    }

    async fn put_secret(&self, actor: &Actor, name: &str, value: String) -> ServiceResult<()> {
        secrets::put(self, actor, name, value).await
    }

    async fn list_secrets(&self) -> ServiceResult<Vec<SecretView>> {
        secrets::list(self).await
    }

    async fn delete_secret(&self, actor: &Actor, name: &str) -> ServiceResult<()> {
        secrets::delete(self, actor, name).await
    }

    async fn kv_list(&self, job_id: &str) -> ServiceResult<Vec<KvEntryView>> {
        secrets::kv_list(self, job_id).await
    }

    async fn kv_delete(&self, actor: &Actor, job_id: &str, key: &str) -> ServiceResult<()> {
        secrets::kv_delete(self, actor, job_id, key).await
    }

    async fn audit(&self, query: AuditQuery) -> ServiceResult<AuditPage> {
        self.audit_page(query).await
    }

    async fn put_module(
        &self,
        actor: &Actor,
        name: &str,
        source: String,
        note: Option<String>,
    ) -> ServiceResult<ModuleView> {
        let saved = modules::put(self, name, source, note).await?;
        let detail = audit::module_saved(&saved);
        self.record(actor, "module.put", name, detail).await;
        Ok(saved)
    }

    async fn list_modules(&self) -> ServiceResult<Vec<ModuleView>> {
        modules::list(self).await
    }

    async fn get_module(&self, name: &str, version: Option<u64>) -> ServiceResult<ModuleView> {
        modules::get(self, name, version).await
    }

    async fn module_versions(&self, name: &str) -> ServiceResult<Vec<ModuleView>> {
        modules::versions(self, name).await
    }

    async fn rollback_module(
        &self,
        actor: &Actor,
        name: &str,
        version: u64,
        note: Option<String>,
    ) -> ServiceResult<ModuleView> {
        let saved = modules::rollback(self, name, version, note).await?;
        let mut detail = audit::module_saved(&saved);
        detail["restored"] = serde_json::json!(version);
        self.record(actor, "module.rollback", name, detail).await;
        Ok(saved)
    }

    async fn delete_module(&self, actor: &Actor, name: &str) -> ServiceResult<()> {
        modules::delete(self, name).await?;
        self.record(actor, "module.delete", name, serde_json::json!({}))
            .await;
        Ok(())
    }

    async fn cluster(&self) -> ServiceResult<ClusterView> {
        Ok(ClusterView {
            mode: self.mode.to_owned(),
            cluster: self
                .cluster
                .as_ref()
                .map(|c| c.cluster_name().to_owned())
                .unwrap_or_default(),
            node: self.node.clone(),
            healthy: self.cluster.as_ref().is_none_or(|c| c.healthy()),
            problem: self.cluster.as_ref().and_then(|c| c.problem()),
            nodes: self.node_stats().await,
        })
    }
}
