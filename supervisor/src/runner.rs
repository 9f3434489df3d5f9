//! Dispatch: turns a fire of the scheduler into runs in the worker pool and records in
//! the run history — the occurrence ledger.
//!
//! For each occurrence the runner claims it (cluster), refuses a duplicate of one the
//! ledger says already ran, loads the script (through a small cache keyed by job
//! version), then runs attempts: each writes a `running` record, is submitted to the
//! pool, has its console output collected up to the stored cap and writes its final
//! record; a failed attempt is retried under the job's retry policy. When the occurrence
//! is over it tells the scheduler the job is free again. It makes no scheduling
//! decisions and never blocks the scheduler: every occurrence is its own task.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use protocol::{JobContext, Limits};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::history::HistoryTx;
use crate::job::{LogLine, RunRecord, Trigger, outcome};
use crate::pool::{Pool, RunEvent, RunRequest};
use crate::scheduler::{Dispatch, Fire, JobMeta, SchedulerHandle, SkipReason, now_ms};
use crate::stats::{Observed, RunStats};
use crate::store::{RunListQuery, Store};

mod active;
mod backoff;

use active::{ActiveRun, ActiveRuns};

/// Console output kept with a run in history.
pub const MAX_STORED_LOG_BYTES: usize = 64 * 1024;
pub const MAX_STORED_LOG_LINES: usize = 2_000;
/// Scripts held in memory between runs.
const SCRIPT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Whether this node may act on an occurrence. Standalone: always ([`OpenGate`]).
/// Cluster: only the owner, and only once it has claimed the occurrence.
pub trait FireGate: Send + Sync + 'static {
    /// Cheap and synchronous: this node owns the job on its current view.
    fn owns(&self, job_id: &str) -> bool;
    /// Claims `(job, instant)` cluster-wide; true for exactly one caller.
    fn claim(
        &self,
        job_id: Arc<str>,
        instant_ms: i64,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>>;
}

/// The gate of a single process: it owns everything and every claim is its own.
pub struct OpenGate;

impl FireGate for OpenGate {
    fn owns(&self, _job_id: &str) -> bool {
        true
    }
    fn claim(
        &self,
        _job_id: Arc<str>,
        _instant_ms: i64,
    ) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        Box::pin(std::future::ready(true))
    }
}

#[derive(Clone)]
pub struct Runner(Arc<Inner>);

struct Inner {
    pool: Pool,
    store: Arc<dyn Store>,
    history: HistoryTx,
    scheduler: OnceLock<SchedulerHandle>,
    scripts: ScriptCache,
    node: String,
    /// Per-run limits the job does not set.
    base_limits: Limits,
    exhausted: mpsc::UnboundedSender<Arc<JobMeta>>,
    tasks: TaskTracker,
    stats: Arc<RunStats>,
    gate: Arc<dyn FireGate>,
    active: ActiveRuns,
    vault: Arc<crate::secrets::Vault>,
    modules: crate::modules::Resolver,
}

/// Everything a [`Runner`] is built from.
pub struct RunnerParts {
    pub pool: Pool,
    pub store: Arc<dyn Store>,
    pub history: HistoryTx,
    /// This node's name, recorded with every run.
    pub node: String,
    /// Per-run limits the job does not set.
    pub base_limits: Limits,
    /// Jobs with no further occurrence go here, to be marked stopped.
    pub exhausted: mpsc::UnboundedSender<Arc<JobMeta>>,
    pub stats: Arc<RunStats>,
    pub gate: Arc<dyn FireGate>,
    /// Decrypts the secrets granted to a job for its runs.
    pub vault: Arc<crate::secrets::Vault>,
}

impl Runner {
    pub fn new(p: RunnerParts) -> Self {
        Runner(Arc::new(Inner {
            pool: p.pool,
            store: p.store.clone(),
            history: p.history,
            scheduler: OnceLock::new(),
            scripts: ScriptCache::default(),
            node: p.node,
            base_limits: p.base_limits,
            exhausted: p.exhausted,
            tasks: TaskTracker::new(),
            stats: p.stats,
            gate: p.gate,
            active: ActiveRuns::default(),
            vault: p.vault,
            modules: crate::modules::Resolver::new(p.store.clone()),
        }))
    }

    /// Finds the shared modules of a script (for debug runs, which do not go through
    /// the runner).
    pub fn modules(&self) -> &crate::modules::Resolver {
        &self.0.modules
    }

    /// Completes the cycle runner → scheduler; call once, right after spawning it.
    pub fn attach(&self, scheduler: SchedulerHandle) {
        let _ = self.0.scheduler.set(scheduler);
    }

    /// Runs a job now, outside its schedule, as an occurrence of its own (attempts and
    /// retries included). Returns the run id of its first attempt.
    pub fn run_manual(&self, meta: Arc<JobMeta>) -> String {
        let run_id = new_run_id();
        let fire = Fire {
            meta,
            scheduled_ms: now_ms(),
            trigger: Trigger::Manual,
        };
        self.spawn_run(run_id.clone(), fire, false);
        run_id
    }

    /// Puts the script of a job version that was just stored and scheduled into the
    /// script cache, so that its first fire does not read the store (a delay job
    /// fires once: without this, every one of its fires is a cache miss).
    pub fn warm_script(&self, id: &str, version: u64, script: &str) {
        self.0.scripts.put(id.into(), version, script.into());
    }

    /// Drops any cached script of a job (its id was reused by a new job).
    pub fn forget_script(&self, id: &str) {
        self.0.scripts.forget(id);
    }

    /// Waits for every run in progress to end (the pool's shutdown bounds this).
    pub async fn wait_idle(&self) {
        self.0.tasks.close();
        self.0.tasks.wait().await;
    }

    pub fn limits_for(&self, meta: &JobMeta) -> Limits {
        limits_of(&self.0.base_limits, meta)
    }

    /// `counted`: the scheduler counts this run for the overlap rule and must hear when
    /// it is over; such runs are claimed first (cluster-wide exactly once).
    fn spawn_run(&self, run_id: String, fire: Fire, counted: bool) {
        let inner = self.0.clone();
        // Registered before the task runs, so a stop answered after this dispatch
        // reaches it.
        let active = inner.active.register(&fire.meta.id);
        self.0.tasks.spawn(async move {
            let id = fire.meta.id.clone();
            let claim_key = match fire.trigger {
                // A backfill runs an occurrence whose miss was itself claimed.
                Trigger::Backfill => format!("{id}#backfill").into(),
                _ => id.clone(),
            };
            if !counted || inner.gate.claim(claim_key, fire.scheduled_ms).await {
                run_occurrence(&inner, run_id, &fire, &active).await;
            }
            inner.active.unregister(&id, &active);
            if counted && let Some(s) = inner.scheduler.get() {
                s.finished(id);
            }
        });
    }

    /// Records occurrences that did not run (skipped, missed), each once cluster-wide.
    fn record(
        &self,
        meta: &Arc<JobMeta>,
        scheduled_ms: Vec<i64>,
        outcome: &'static str,
        why: Option<String>,
    ) {
        let inner = self.0.clone();
        let meta = meta.clone();
        self.0.tasks.spawn(async move {
            for t in scheduled_ms {
                if !inner.gate.claim(meta.id.clone(), t).await {
                    continue;
                }
                // Claims do not survive a Redis restart: an occurrence that ran before
                // one must not be recorded missed by a node catching up after it.
                if outcome == outcome::MISSED
                    && records_at(&inner, &meta.id, t)
                        .await
                        .iter()
                        .any(RunRecord::ran_its_occurrence)
                {
                    continue;
                }
                let rec = RunRecord {
                    outcome: outcome.to_owned(),
                    error_message: why.clone(),
                    ..blank_record(new_run_id(), &meta, t, Trigger::Schedule, &inner.node)
                };
                observe(&inner.stats, &rec, &meta.name);
                inner.history.record(rec);
            }
        });
    }
}

impl Dispatch for Runner {
    fn start(&self, fire: Fire) {
        // A backfill was asked of this node and runs here; scheduled occurrences run
        // on their owner.
        if fire.trigger != Trigger::Backfill && !self.0.gate.owns(&fire.meta.id) {
            // Another node's occurrence: free the job at once for the overlap rule.
            if let Some(s) = self.0.scheduler.get() {
                s.finished(fire.meta.id.clone());
            }
            return;
        }
        self.spawn_run(new_run_id(), fire, true);
    }

    fn skipped(&self, meta: &Arc<JobMeta>, scheduled_ms: i64, reason: SkipReason) {
        if self.0.gate.owns(&meta.id) {
            let why = match reason {
                SkipReason::Overlap => format!(
                    "skipped: the previous run was still going (overlap policy {})",
                    meta.overlap.as_str()
                ),
                SkipReason::Paused { until_ms } => format!(
                    "skipped: the job is paused until {}",
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(until_ms)
                        .unwrap_or_default()
                        .to_rfc3339()
                ),
            };
            tracing::info!(job = %meta.id, scheduled_ms, reason = %why, "occurrence skipped");
            self.record(meta, vec![scheduled_ms], outcome::SKIPPED, Some(why));
        }
    }

    fn missed(&self, meta: &Arc<JobMeta>, scheduled_ms: &[i64]) {
        if self.0.gate.owns(&meta.id) {
            tracing::info!(job = %meta.id, count = scheduled_ms.len(), "occurrences missed");
            self.record(meta, scheduled_ms.to_vec(), outcome::MISSED, None);
        }
    }

    fn exhausted(&self, meta: &Arc<JobMeta>) {
        // Only the owner stops a job: a node that merely saw a delay job's instant
        // pass must leave it for the owner (or, if the owner died, its successor's
        // catch-up).
        if self.0.gate.owns(&meta.id) {
            // The job stays started until its last occurrence is over, retries
            // included: stopping it earlier would cancel those retries.
            let inner = self.0.clone();
            let meta = meta.clone();
            self.0.tasks.spawn(async move {
                inner.active.wait_idle(&meta.id).await;
                let _ = inner.exhausted.send(meta);
            });
        }
    }

    fn cancel_running(&self, id: &Arc<str>) {
        tracing::info!(job = %id, "cancelling the running run: a new occurrence replaces it");
        self.0.active.cancel(id);
    }

    fn unscheduled(&self, id: &Arc<str>) {
        self.0.active.stop_retries(id);
    }
}

pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn blank_record(
    run_id: String,
    meta: &JobMeta,
    scheduled_ms: i64,
    trigger: Trigger,
    node: &str,
) -> RunRecord {
    RunRecord {
        run_id,
        job_id: meta.id.to_string(),
        trigger,
        scheduled_at_ms: scheduled_ms,
        started_at_ms: None,
        ended_at_ms: None,
        outcome: outcome::RUNNING.to_owned(),
        attempt: 1,
        script_version: Some(meta.script_version),
        duplicates: 0,
        node: node.to_owned(),
        error_message: None,
        error_stack: None,
        cpu_time_us: None,
        peak_memory_bytes: None,
        log: Vec::new(),
        log_truncated: false,
    }
}

/// The limits of one run of `meta`: the job's own over the pool's.
fn limits_of(base: &Limits, meta: &JobMeta) -> Limits {
    Limits {
        wall_ms: meta.time_limit_ms,
        memory_bytes: meta.memory_limit_mb.saturating_mul(1024 * 1024),
        ..*base
    }
}

pub fn job_context(
    meta: &JobMeta,
    scheduled_ms: i64,
    trigger: Trigger,
    attempt: u32,
) -> JobContext {
    JobContext {
        job_id: meta.id.to_string(),
        job_name: meta.name.clone(),
        scheduled_at_ms: scheduled_ms,
        occurrence_id: crate::job::occurrence_id(&meta.id, scheduled_ms, trigger),
        attempt,
        secrets: protocol::SecretValues::default(),
    }
}

/// What the ledger already holds for an occurrence about to run.
enum Ledger {
    /// Nothing: a fresh record.
    Fresh,
    /// A `missed` or `skipped` record this run takes the place of (same run id).
    Replaces(String),
    /// It already ran: this is a duplicate.
    Ran,
}

/// Looks up a caught-up or backfilled occurrence in the ledger. Scheduled occurrences
/// skip this: the claim alone makes them exactly-once.
async fn ledger_entry(inner: &Inner, fire: &Fire) -> Ledger {
    if !matches!(fire.trigger, Trigger::Misfire | Trigger::Backfill) {
        return Ledger::Fresh;
    }
    let mut replaces = None;
    for r in records_at(inner, &fire.meta.id, fire.scheduled_ms)
        .await
        .iter()
        .filter(|r| r.trigger != Trigger::Manual)
    {
        if r.ran_its_occurrence() {
            return Ledger::Ran;
        }
        replaces.get_or_insert_with(|| r.run_id.clone());
    }
    replaces.map_or(Ledger::Fresh, Ledger::Replaces)
}

/// The ledger's records of one instant of a job; none if the store cannot answer (the
/// caller then acts as if the occurrence had no record).
async fn records_at(inner: &Inner, job_id: &str, scheduled_ms: i64) -> Vec<RunRecord> {
    let query = RunListQuery {
        outcome: None,
        before_ms: Some(scheduled_ms + 1),
        since_ms: Some(scheduled_ms),
        limit: 50,
    };
    inner
        .store
        .list_runs(job_id, &query)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(job = %job_id, error = %e, "could not read the ledger");
            Vec::new()
        })
}

/// One occurrence: its attempts, retried under the job's policy until one does not
/// fail, the retries run out, or the job is stopped.
async fn run_occurrence(inner: &Inner, run_id: String, fire: &Fire, active: &ActiveRun) {
    let meta = &fire.meta;
    let mut run_id = match ledger_entry(inner, fire).await {
        Ledger::Fresh => run_id,
        Ledger::Replaces(existing) => existing,
        Ledger::Ran => {
            tracing::info!(job = %meta.id, scheduled_ms = fire.scheduled_ms, trigger = fire.trigger.as_str(), "occurrence already ran; duplicate suppressed");
            if let Err(e) = inner
                .store
                .note_duplicate(&meta.id, fire.scheduled_ms)
                .await
            {
                tracing::warn!(job = %meta.id, error = %e, "could not count a suppressed duplicate");
            }
            return;
        }
    };
    let mut attempt = 1;
    loop {
        if active.stop.is_cancelled() {
            tracing::info!(job = %meta.id, attempt, "the job was stopped; no further attempt");
            return;
        }
        let Some(outcome) = run_attempt(inner, run_id, fire, attempt, active).await else {
            return;
        };
        if !backoff::is_retryable(&outcome) || attempt > meta.retry.max_retries {
            return;
        }
        let wait = backoff::delay(&meta.retry, attempt, backoff::random_factor());
        tracing::info!(job = %meta.id, attempt, outcome, wait_ms = wait.as_millis() as u64, "attempt failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = active.stop.cancelled() => {
                tracing::info!(job = %meta.id, attempt, "the job was stopped; retries abandoned");
                return;
            }
        }
        attempt += 1;
        run_id = new_run_id();
    }
}

/// What a run needs besides its script: the job's secrets and the shared modules the
/// script loads. `Err` is the message the run fails with.
async fn load_for_run<S>(
    inner: &Inner,
    meta: &JobMeta,
    script: S,
) -> Result<(S, crate::secrets::RunSecrets, Vec<protocol::SharedModule>), String>
where
    S: std::ops::Deref<Target = str>,
{
    let secrets = inner
        .vault
        .for_run(&meta.id, &meta.secrets)
        .await
        .map_err(|e| format!("could not load the job's secrets: {e:#}"))?;
    let modules = inner
        .modules
        .for_script(&script)
        .await
        .map_err(|e| format!("could not load the script's shared modules: {e:#}"))?;
    Ok((script, secrets, modules))
}

/// One attempt; returns its outcome, or `None` if the job is gone.
async fn run_attempt(
    inner: &Inner,
    run_id: String,
    fire: &Fire,
    attempt: u32,
    active: &ActiveRun,
) -> Option<String> {
    let meta = &fire.meta;
    let mut rec = RunRecord {
        attempt,
        ..blank_record(run_id, meta, fire.scheduled_ms, fire.trigger, &inner.node)
    };
    let loaded = match inner.scripts.get(&*inner.store, meta).await {
        Ok(Some(s)) => load_for_run(inner, meta, s).await,
        Ok(None) => return None, // deleted between the fire and now
        Err(e) => Err(format!("could not load the script: {e}")),
    };
    let (script, secrets, modules) = match loaded {
        Ok(v) => v,
        Err(message) => {
            tracing::error!(job = %meta.id, error = %message, "a run could not start");
            rec.outcome = protocol::Outcome::Failed.as_str().to_owned();
            rec.ended_at_ms = Some(now_ms());
            rec.error_message = Some(message);
            observe(&inner.stats, &rec, &meta.name);
            let outcome = rec.outcome.clone();
            inner.history.record(rec);
            return Some(outcome);
        }
    };
    inner.history.record(rec.clone());
    let mut job = job_context(meta, fire.scheduled_ms, fire.trigger, attempt);
    job.secrets = secrets.values;
    let mut handle = inner.pool.submit(RunRequest {
        script: script.to_string(),
        limits: limits_of(&inner.base_limits, meta),
        job,
        modules,
    });
    let canceller = handle.canceller();
    let mut cancel_sent = false;
    let mut log = LogCollector::masking(secrets.masker.clone());
    loop {
        let ev = tokio::select! {
            ev = handle.next_event() => ev,
            _ = active.kill.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                canceller.cancel();
                continue;
            }
        };
        let Some(ev) = ev else { break };
        match ev {
            RunEvent::Started { at } => {
                // A run in progress shows when it started (the history writer folds
                // this into the final record when both are in one batch).
                rec.started_at_ms = Some(system_ms(at));
                inner.history.record(rec.clone());
            }
            RunEvent::Console(line) => log.push(line),
            RunEvent::End(r) => {
                rec.outcome = r.outcome.as_str().to_owned();
                rec.started_at_ms = r.started_at.map(system_ms).or(rec.started_at_ms);
                rec.ended_at_ms = Some(system_ms(r.ended_at));
                rec.cpu_time_us = Some(r.cpu_time_us);
                rec.peak_memory_bytes = Some(r.peak_memory_bytes);
                if let Some(e) = r.error {
                    rec.error_message = Some(secrets.masker.mask(&e.message));
                    rec.error_stack = e.stack.map(|s| secrets.masker.mask(&s));
                }
                if cancel_sent && rec.outcome == protocol::Outcome::Cancelled.as_str() {
                    rec.error_message =
                        Some("cancelled: a newer occurrence replaced this run".to_owned());
                }
                break;
            }
        }
    }
    (rec.log, rec.log_truncated) = log.finish();
    observe(&inner.stats, &rec, &meta.name);
    let outcome = rec.outcome.clone();
    inner.history.record(rec);
    Some(outcome)
}

fn observe(stats: &RunStats, rec: &RunRecord, job_name: &str) {
    stats.record(Observed {
        outcome: &rec.outcome,
        at_ms: rec.started_at_ms.unwrap_or(rec.scheduled_at_ms),
        lateness_ms: rec.started_at_ms.map(|s| s - rec.scheduled_at_ms),
        job_id: &rec.job_id,
        job_name,
        run_id: &rec.run_id,
        message: rec.error_message.as_deref(),
    });
}

pub fn system_ms(t: std::time::SystemTime) -> i64 {
    chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis()
}

/// Keeps console lines up to the stored cap, secrets masked.
#[derive(Default)]
pub struct LogCollector {
    lines: Vec<LogLine>,
    bytes: usize,
    truncated: bool,
    masker: crate::secrets::Masker,
}

impl LogCollector {
    /// A collector that masks the values of `masker` in every line.
    pub fn masking(masker: crate::secrets::Masker) -> Self {
        LogCollector {
            masker,
            ..LogCollector::default()
        }
    }

    pub fn push(&mut self, mut line: protocol::ConsoleLine) {
        if self.truncated {
            return;
        }
        self.masker.mask_in_place(&mut line.text);
        if self.lines.len() >= MAX_STORED_LOG_LINES
            || self.bytes + line.text.len() > MAX_STORED_LOG_BYTES
        {
            self.truncated = true;
            return;
        }
        self.bytes += line.text.len();
        self.lines.push(LogLine {
            seq: line.seq,
            level: line.level.as_str().to_owned(),
            text: line.text,
            at_ms: line.at_ms,
        });
    }

    pub fn finish(self) -> (Vec<LogLine>, bool) {
        (self.lines, self.truncated)
    }
}

/// Scripts by job, valid for one job version.
#[derive(Default)]
struct ScriptCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<Arc<str>, (u64, Arc<str>)>,
    bytes: usize,
}

impl ScriptCache {
    /// Holds `script` as the one of version `version` of job `id`, as if it had just
    /// been loaded from the store.
    fn put(&self, id: Arc<str>, version: u64, script: Arc<str>) {
        let mut c = self.inner.lock();
        if c.bytes + script.len() > SCRIPT_CACHE_BYTES {
            c.map.clear();
            c.bytes = 0;
        }
        c.bytes += script.len();
        if let Some((_, old)) = c.map.insert(id, (version, script)) {
            c.bytes -= old.len();
        }
    }

    fn forget(&self, id: &str) {
        let mut c = self.inner.lock();
        if let Some((_, old)) = c.map.remove(id) {
            c.bytes -= old.len();
        }
    }

    async fn get(&self, store: &dyn Store, meta: &JobMeta) -> anyhow::Result<Option<Arc<str>>> {
        if let Some((v, s)) = self.inner.lock().map.get(&meta.id)
            && *v == meta.version
        {
            return Ok(Some(s.clone()));
        }
        let Some(script) = store.get_script(&meta.id).await? else {
            return Ok(None);
        };
        let script: Arc<str> = script.into();
        self.put(meta.id.clone(), meta.version, script.clone());
        Ok(Some(script))
    }
}
