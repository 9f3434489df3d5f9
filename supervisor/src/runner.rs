//! Dispatch: turns a fire of the scheduler into a run in the worker pool and a record
//! in the run history.
//!
//! The runner loads the script (through a small cache keyed by job version), writes a
//! `running` record, submits the run, collects its console output up to the stored cap,
//! writes the final record and tells the scheduler the job is free again. It makes no
//! scheduling decisions and never blocks the scheduler: every run is its own task.

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
use crate::scheduler::{Dispatch, Fire, JobMeta, SchedulerHandle, now_ms};
use crate::stats::{Observed, RunStats};
use crate::store::Store;

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
}

impl Runner {
    pub fn new(p: RunnerParts) -> Self {
        Runner(Arc::new(Inner {
            pool: p.pool,
            store: p.store,
            history: p.history,
            scheduler: OnceLock::new(),
            scripts: ScriptCache::default(),
            node: p.node,
            base_limits: p.base_limits,
            exhausted: p.exhausted,
            tasks: TaskTracker::new(),
            stats: p.stats,
            gate: p.gate,
        }))
    }

    /// Completes the cycle runner → scheduler; call once, right after spawning it.
    pub fn attach(&self, scheduler: SchedulerHandle) {
        let _ = self.0.scheduler.set(scheduler);
    }

    /// Runs a job now, outside its schedule. Returns the run id.
    pub fn run_manual(&self, meta: Arc<JobMeta>) -> String {
        let run_id = new_run_id();
        let fire = Fire {
            meta,
            scheduled_ms: now_ms(),
            trigger: Trigger::Manual,
        };
        self.spawn_run(run_id.clone(), fire, false, false);
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
        Limits {
            wall_ms: meta.time_limit_ms,
            memory_bytes: meta.memory_limit_mb.saturating_mul(1024 * 1024),
            ..self.0.base_limits
        }
    }

    /// `counted`: the scheduler counts this run for the overlap rule and must hear when
    /// it is over. `claimed`: the occurrence must be claimed first (scheduled runs).
    fn spawn_run(&self, run_id: String, fire: Fire, counted: bool, claimed: bool) {
        let inner = self.0.clone();
        let limits = self.limits_for(&fire.meta);
        self.0.tasks.spawn(async move {
            let id = fire.meta.id.clone();
            if !claimed || inner.gate.claim(id.clone(), fire.scheduled_ms).await {
                run_one(&inner, run_id, fire, limits).await;
            }
            if counted && let Some(s) = inner.scheduler.get() {
                s.finished(id);
            }
        });
    }

    /// Records occurrences that did not run (skipped, missed), each once cluster-wide.
    fn record(&self, meta: &Arc<JobMeta>, scheduled_ms: Vec<i64>, outcome: &'static str) {
        let inner = self.0.clone();
        let meta = meta.clone();
        self.0.tasks.spawn(async move {
            for t in scheduled_ms {
                if !inner.gate.claim(meta.id.clone(), t).await {
                    continue;
                }
                let rec = RunRecord {
                    outcome: outcome.to_owned(),
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
        if !self.0.gate.owns(&fire.meta.id) {
            // Another node's occurrence: free the job at once for the overlap rule.
            if let Some(s) = self.0.scheduler.get() {
                s.finished(fire.meta.id.clone());
            }
            return;
        }
        self.spawn_run(new_run_id(), fire, true, true);
    }

    fn skipped(&self, meta: &Arc<JobMeta>, scheduled_ms: i64) {
        if self.0.gate.owns(&meta.id) {
            tracing::info!(job = %meta.id, scheduled_ms, "occurrence skipped: the previous run is still going");
            self.record(meta, vec![scheduled_ms], outcome::SKIPPED);
        }
    }

    fn missed(&self, meta: &Arc<JobMeta>, scheduled_ms: &[i64]) {
        if self.0.gate.owns(&meta.id) {
            tracing::info!(job = %meta.id, count = scheduled_ms.len(), "occurrences missed");
            self.record(meta, scheduled_ms.to_vec(), outcome::MISSED);
        }
    }

    fn exhausted(&self, meta: &Arc<JobMeta>) {
        // Only the owner stops a job: a node that merely saw a delay job's instant
        // pass must leave it for the owner (or, if the owner died, its successor's
        // catch-up).
        if self.0.gate.owns(&meta.id) {
            let _ = self.0.exhausted.send(meta.clone());
        }
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
        node: node.to_owned(),
        error_message: None,
        error_stack: None,
        cpu_time_us: None,
        peak_memory_bytes: None,
        log: Vec::new(),
        log_truncated: false,
    }
}

pub fn job_context(meta: &JobMeta, scheduled_ms: i64, attempt: u32) -> JobContext {
    JobContext {
        job_id: meta.id.to_string(),
        job_name: meta.name.clone(),
        scheduled_at_ms: scheduled_ms,
        occurrence_id: format!("{}@{}", meta.id, scheduled_ms),
        attempt,
    }
}

async fn run_one(inner: &Inner, run_id: String, fire: Fire, limits: Limits) {
    let meta = &fire.meta;
    let mut rec = blank_record(run_id, meta, fire.scheduled_ms, fire.trigger, &inner.node);
    let script = match inner.scripts.get(&*inner.store, meta).await {
        Ok(Some(s)) => s,
        Ok(None) => return, // deleted between the fire and now
        Err(e) => {
            tracing::error!(job = %meta.id, error = %e, "could not load the script of a run");
            rec.outcome = protocol::Outcome::Failed.as_str().to_owned();
            rec.ended_at_ms = Some(now_ms());
            rec.error_message = Some(format!("could not load the script: {e}"));
            observe(&inner.stats, &rec, &meta.name);
            inner.history.record(rec);
            return;
        }
    };
    inner.history.record(rec.clone());
    let mut handle = inner.pool.submit(RunRequest {
        script: script.to_string(),
        limits,
        job: job_context(meta, fire.scheduled_ms, 1),
    });
    let mut log = LogCollector::default();
    while let Some(ev) = handle.next_event().await {
        match ev {
            RunEvent::Started { at } => rec.started_at_ms = Some(system_ms(at)),
            RunEvent::Console(line) => log.push(line),
            RunEvent::End(r) => {
                rec.outcome = r.outcome.as_str().to_owned();
                rec.started_at_ms = r.started_at.map(system_ms).or(rec.started_at_ms);
                rec.ended_at_ms = Some(system_ms(r.ended_at));
                rec.cpu_time_us = Some(r.cpu_time_us);
                rec.peak_memory_bytes = Some(r.peak_memory_bytes);
                if let Some(e) = r.error {
                    rec.error_message = Some(e.message);
                    rec.error_stack = e.stack;
                }
                break;
            }
        }
    }
    (rec.log, rec.log_truncated) = log.finish();
    observe(&inner.stats, &rec, &meta.name);
    inner.history.record(rec);
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

/// Keeps console lines up to the stored cap.
#[derive(Default)]
pub struct LogCollector {
    lines: Vec<LogLine>,
    bytes: usize,
    truncated: bool,
}

impl LogCollector {
    pub fn push(&mut self, line: protocol::ConsoleLine) {
        if self.truncated {
            return;
        }
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
