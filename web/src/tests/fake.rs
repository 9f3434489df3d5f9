//! An in-memory [`Backend`] for the HTTP tests: enough behaviour to see each route's
//! mapping (ids, not-found, conflict, faults), and a record of what the routes passed in.
//! It implements no scheduling rule and must not grow into a second backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::{Notify, mpsc};

use crate::audit::{AuditCursor, AuditEntryView, AuditPage, AuditQuery};
use crate::backend::{Actor, Backend, DebugSession, ServiceError, ServiceResult};
use crate::dto::*;
use crate::ops::{Readiness, ReadinessCheck};

/// What `cron_preview` was given: cron, time zone, count, after.
pub type Preview = (String, Option<String>, usize, Option<DateTime<Utc>>);

/// What the last call of a kind was given.
#[derive(Default)]
pub struct Calls {
    pub create: Option<(Option<ExecType>, JobInput, bool)>,
    pub jobs: Option<JobQuery>,
    pub runs: Option<(String, RunQuery)>,
    pub enable: Option<(String, bool)>,
    pub update: Option<(String, JobInput)>,
    pub preview: Option<Preview>,
    /// What the last scheduling-control call was: route name and its arguments.
    pub control: Option<String>,
    /// `"<method> <actor>"` of every call that changes something, in order.
    pub actors: Vec<String>,
    pub audit: Option<AuditQuery>,
}

#[derive(Default)]
pub struct Fake {
    jobs: Mutex<BTreeMap<String, (JobView, String)>>,
    next_id: AtomicU64,
    pub calls: Mutex<Calls>,
    pub degraded: AtomicBool,
    /// Set when a debug run's `cancel` was called.
    pub cancelled: Arc<AtomicBool>,
}

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0)
        .single()
        .expect("a valid instant")
}

impl Fake {
    pub fn new() -> Arc<Self> {
        Arc::new(Fake::default())
    }

    fn lock_jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (JobView, String)>> {
        self.jobs.lock().expect("fake jobs lock")
    }

    pub fn calls(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().expect("fake calls lock")
    }

    fn by(&self, method: &str, actor: &Actor) {
        self.calls().actors.push(format!("{method} {}", actor.0));
    }

    fn view(id: &str, exec_type: ExecType, input: &JobInput) -> JobView {
        JobView {
            job_id: id.to_owned(),
            name: input.name.clone().unwrap_or_default(),
            description: input.description.clone().unwrap_or_default(),
            exec_type,
            cron: input.cron.clone().unwrap_or_default(),
            exec_at: input.exec_at,
            timezone: "UTC".into(),
            state: JobState::Stopped,
            last_exec_time: None,
            last_outcome: None,
            next_exec_time: None,
            created_at: t0(),
            updated_at: t0(),
            time_limit_ms: 30_000,
            memory_limit_mb: 64,
            overlap: "skip".into(),
            max_concurrent: 1,
            misfire: "run_once".into(),
            misfire_window_s: 60,
            max_catch_up: 10,
            retries: 0,
            retry_backoff_ms: 1000,
            retry_max_backoff_ms: 60_000,
            jitter_s: 0,
            paused_until: None,
            script_version: 1,
            script_note: String::new(),
            secrets: Vec::new(),
            version: 1,
        }
    }

    fn missing(id: &str) -> ServiceError {
        ServiceError::NotFound(format!("no job with id {id:?}"))
    }

    fn version_view(version: u64, script: Option<String>) -> ScriptVersionView {
        ScriptVersionView {
            version,
            note: "created".into(),
            created_at: t0(),
            bytes: script.as_ref().map_or(0, |s| s.len() as u64),
            current: true,
            script,
        }
    }

    fn run_view(id: &str) -> RunView {
        RunView {
            run_id: id.to_owned(),
            occurrence_id: "j@0".into(),
            attempt: 1,
            script_version: Some(1),
            duplicates: 0,
            job_id: "j".into(),
            trigger: Trigger::Manual,
            scheduled_at: t0(),
            started_at: Some(t0()),
            ended_at: Some(t0()),
            outcome: "succeeded".into(),
            lateness_ms: Some(1),
            duration_ms: Some(2),
            node: "n1".into(),
            error: None,
            cpu_time_us: None,
            peak_memory_bytes: None,
        }
    }
}

#[async_trait]
impl Backend for Fake {
    async fn create_job(
        &self,
        actor: &Actor,
        exec_type: Option<ExecType>,
        input: JobInput,
        start: bool,
    ) -> ServiceResult<String> {
        self.by("create_job", actor);
        self.calls().create = Some((exec_type, input.clone(), start));
        let exec_type = exec_type
            .or(input.exec_type)
            .ok_or_else(|| ServiceError::invalid("execType", "is required"))?;
        if input.name.as_deref().unwrap_or_default().is_empty() {
            return Err(ServiceError::invalid("name", "is required"));
        }
        if input.name.as_deref() == Some("explode") {
            return Err(ServiceError::Internal(anyhow::anyhow!(
                "store write failed: /secret/path"
            )));
        }
        let id = match &input.job_id {
            Some(id) => id.clone(),
            None => format!("job-{}", self.next_id.fetch_add(1, Ordering::SeqCst)),
        };
        let mut jobs = self.lock_jobs();
        if jobs.contains_key(&id) {
            return Err(ServiceError::Conflict(format!("job {id:?} already exists")));
        }
        let mut view = Fake::view(&id, exec_type, &input);
        if start {
            view.state = JobState::Running;
        }
        jobs.insert(id.clone(), (view, input.script.unwrap_or_default()));
        Ok(id)
    }

    async fn update_job(&self, actor: &Actor, id: &str, patch: JobInput) -> ServiceResult<()> {
        self.by("update_job", actor);
        self.calls().update = Some((id.to_owned(), patch.clone()));
        let mut jobs = self.lock_jobs();
        let (view, _) = jobs.get_mut(id).ok_or_else(|| Fake::missing(id))?;
        if let Some(name) = patch.name {
            view.name = name;
        }
        Ok(())
    }

    async fn delete_job(&self, actor: &Actor, id: &str) -> ServiceResult<()> {
        self.by("delete_job", actor);
        self.lock_jobs()
            .remove(id)
            .map(drop)
            .ok_or_else(|| Fake::missing(id))
    }

    async fn get_job(&self, id: &str) -> ServiceResult<JobView> {
        self.lock_jobs()
            .get(id)
            .map(|(v, _)| v.clone())
            .ok_or_else(|| Fake::missing(id))
    }

    async fn list_jobs(&self, query: JobQuery) -> ServiceResult<JobPage> {
        self.calls().jobs = Some(query.clone());
        let items: Vec<JobView> = self.lock_jobs().values().map(|(v, _)| v.clone()).collect();
        Ok(JobPage {
            total: items.len() as u64,
            items,
            offset: query.offset,
            limit: query.limit,
        })
    }

    async fn all_jobs(&self) -> ServiceResult<Vec<JobView>> {
        Ok(self.lock_jobs().values().map(|(v, _)| v.clone()).collect())
    }

    async fn get_script(&self, id: &str) -> ServiceResult<ScriptView> {
        self.lock_jobs()
            .get(id)
            .map(|(_, s)| ScriptView {
                job_id: id.to_owned(),
                script: s.clone(),
            })
            .ok_or_else(|| Fake::missing(id))
    }

    async fn script_versions(&self, id: &str) -> ServiceResult<Vec<ScriptVersionView>> {
        self.get_job(id).await?;
        Ok(vec![Fake::version_view(1, None)])
    }

    async fn script_version(&self, id: &str, version: u64) -> ServiceResult<ScriptVersionView> {
        let script = self.get_script(id).await?.script;
        if version != 1 {
            return Err(ServiceError::NotFound(format!("no version {version}")));
        }
        Ok(Fake::version_view(1, Some(script)))
    }

    async fn rollback_script(
        &self,
        actor: &Actor,
        id: &str,
        version: u64,
        note: Option<String>,
    ) -> ServiceResult<u64> {
        self.by("rollback_script", actor);
        self.get_job(id).await?;
        self.calls().control = Some(format!("rollback {id} {version} {note:?}"));
        Ok(version + 1)
    }

    async fn plan(
        &self,
        id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> ServiceResult<PlanView> {
        self.get_job(id).await?;
        self.calls().control = Some(format!("plan {id} {from:?} {to:?}"));
        Ok(PlanView {
            job_id: id.to_owned(),
            state: JobState::Running,
            from: from.unwrap_or_else(t0),
            to: to.unwrap_or_else(t0),
            fires: vec![t0()],
            paused_fires: 0,
            truncated: false,
            paused_until: None,
            catch_up: CatchUpView {
                since: t0(),
                policy: "run_once".into(),
                window_s: 60,
                missed: Vec::new(),
                more_missed: false,
                run: Vec::new(),
            },
        })
    }

    async fn pause(&self, actor: &Actor, id: &str, until: DateTime<Utc>) -> ServiceResult<()> {
        self.by("pause", actor);
        self.get_job(id).await?;
        self.calls().control = Some(format!("pause {id} {}", until.timestamp_millis()));
        Ok(())
    }

    async fn resume(&self, actor: &Actor, id: &str) -> ServiceResult<()> {
        self.by("resume", actor);
        self.get_job(id).await?;
        self.calls().control = Some(format!("resume {id}"));
        Ok(())
    }

    async fn backfill(
        &self,
        actor: &Actor,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ServiceResult<BackfillView> {
        self.by("backfill", actor);
        self.get_job(id).await?;
        self.calls().control = Some(format!(
            "backfill {id} {} {}",
            from.timestamp_millis(),
            to.timestamp_millis()
        ));
        Ok(BackfillView {
            queued: vec![from],
            suppressed: Vec::new(),
            truncated: false,
        })
    }

    async fn occurrences(
        &self,
        id: &str,
        before: Option<DateTime<Utc>>,
        limit: u64,
    ) -> ServiceResult<OccurrencePage> {
        self.get_job(id).await?;
        self.calls().control = Some(format!("occurrences {id} {before:?} {limit}"));
        let run = Fake::run_view("r1");
        Ok(OccurrencePage {
            items: vec![OccurrenceView {
                occurrence_id: run.occurrence_id.clone(),
                scheduled_at: run.scheduled_at,
                trigger: run.trigger,
                outcome: run.outcome.clone(),
                duplicates: 0,
                attempts: vec![run],
            }],
            next_before: None,
        })
    }

    async fn set_script(
        &self,
        actor: &Actor,
        id: &str,
        script: String,
        _note: Option<String>,
    ) -> ServiceResult<()> {
        self.by("set_script", actor);
        let mut jobs = self.lock_jobs();
        let (_, s) = jobs.get_mut(id).ok_or_else(|| Fake::missing(id))?;
        *s = script;
        Ok(())
    }

    async fn enable(&self, actor: &Actor, id: &str, enable: bool) -> ServiceResult<()> {
        self.by("enable", actor);
        self.calls().enable = Some((id.to_owned(), enable));
        let mut jobs = self.lock_jobs();
        let (view, _) = jobs.get_mut(id).ok_or_else(|| Fake::missing(id))?;
        view.state = if enable {
            JobState::Running
        } else {
            JobState::Stopped
        };
        Ok(())
    }

    async fn run_now(&self, actor: &Actor, id: &str) -> ServiceResult<String> {
        self.by("run_now", actor);
        self.get_job(id).await?;
        Ok(format!("run-of-{id}"))
    }

    async fn list_runs(&self, job_id: &str, query: RunQuery) -> ServiceResult<RunPage> {
        self.calls().runs = Some((job_id.to_owned(), query));
        self.get_job(job_id).await?;
        Ok(RunPage {
            items: vec![Fake::run_view("r1")],
            next_before: None,
        })
    }

    async fn get_run(&self, run_id: &str) -> ServiceResult<RunDetail> {
        if run_id != "r1" {
            return Err(ServiceError::NotFound(format!("no run {run_id:?}")));
        }
        Ok(RunDetail {
            run: Fake::run_view(run_id),
            log: vec![LogLine {
                seq: 0,
                level: "log".into(),
                text: "hi".into(),
                at: t0(),
            }],
            log_truncated: false,
        })
    }

    async fn cron_preview(
        &self,
        cron: &str,
        timezone: Option<&str>,
        count: usize,
        after: Option<DateTime<Utc>>,
    ) -> ServiceResult<Vec<DateTime<Utc>>> {
        self.calls().preview = Some((cron.to_owned(), timezone.map(str::to_owned), count, after));
        if cron == "nonsense" {
            return Err(ServiceError::invalid("cron", "not a cron expression"));
        }
        Ok((0..count as i64)
            .map(|i| t0() + chrono::Duration::minutes(i))
            .collect())
    }

    async fn debug(&self, source: DebugSource) -> ServiceResult<DebugSession> {
        let (tx, rx) = mpsc::channel(16);
        let log = |seq: u32, text: &str| DebugEvent::Log {
            seq,
            level: "log".into(),
            text: text.to_owned(),
            at: t0(),
        };
        let stop = Arc::new(Notify::new());
        let cancelled = self.cancelled.clone();
        let cancel_stop = stop.clone();
        let cancel: Box<dyn FnOnce() + Send> = Box::new(move || {
            cancelled.store(true, Ordering::SeqCst);
            cancel_stop.notify_one();
        });
        let events = match source {
            DebugSource::Stored { job_id } if job_id == "hang" => {
                tokio::spawn(async move {
                    let _ = tx.send(log(0, "started")).await;
                    // Runs until cancelled, holding the channel open.
                    stop.notified().await;
                    drop(tx);
                });
                return Ok(DebugSession { events: rx, cancel });
            }
            DebugSource::Stored { job_id } => {
                if !self.lock_jobs().contains_key(&job_id) {
                    return Err(Fake::missing(&job_id));
                }
                vec![
                    log(0, "hello"),
                    log(1, "world"),
                    DebugEvent::End {
                        outcome: "failed".into(),
                        error: Some(ErrorView {
                            message: "Error: boom".into(),
                            stack: Some("    at job.js:3".into()),
                        }),
                        duration_ms: 5,
                    },
                ]
            }
            DebugSource::Draft { script, .. } => vec![
                log(0, &script),
                DebugEvent::End {
                    outcome: "succeeded".into(),
                    error: None,
                    duration_ms: 1,
                },
            ],
        };
        tokio::spawn(async move {
            for event in events {
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        Ok(DebugSession { events: rx, cancel })
    }

    async fn stats(&self) -> ServiceResult<Stats> {
        let jobs = 0;
        Ok(Stats {
            jobs_total: jobs,
            jobs_running: 0,
            jobs_stopped: jobs,
            runs_last_hour: OutcomeCounts::default(),
            runs_last_day: OutcomeCounts::default(),
            success_rate_last_hour: None,
            lateness_p50_ms: None,
            lateness_p99_ms: None,
            per_minute: vec![],
            upcoming: vec![],
            recent_failures: vec![],
            nodes: vec![],
            workers_alive: 2,
            workers_busy: 0,
            runs_in_flight: 0,
            runs_queued: 0,
            started_at: Utc::now(),
        })
    }

    async fn put_secret(&self, actor: &Actor, _name: &str, _value: String) -> ServiceResult<()> {
        self.by("put_secret", actor);
        Ok(())
    }

    async fn list_secrets(&self) -> ServiceResult<Vec<SecretView>> {
        Ok(Vec::new())
    }

    async fn delete_secret(&self, actor: &Actor, name: &str) -> ServiceResult<()> {
        self.by("delete_secret", actor);
        Err(ServiceError::NotFound(format!("no secret named {name}")))
    }

    async fn kv_list(&self, _job_id: &str) -> ServiceResult<Vec<KvEntryView>> {
        Ok(Vec::new())
    }

    async fn kv_delete(&self, actor: &Actor, _job_id: &str, key: &str) -> ServiceResult<()> {
        self.by("kv_delete", actor);
        Err(ServiceError::NotFound(format!("no key {key}")))
    }

    /// One entry that echoes the filters; a full page (limit 1) has a cursor.
    async fn audit(&self, query: AuditQuery) -> ServiceResult<AuditPage> {
        self.calls().audit = Some(query.clone());
        let entry = AuditEntryView {
            id: "e1".into(),
            at: t0(),
            actor: query.actor.clone().unwrap_or_else(|| "ci".into()),
            node: "n1".into(),
            action: query.action.clone().unwrap_or_else(|| "job.update".into()),
            target: query.target.clone().unwrap_or_else(|| "job-0".into()),
            detail: serde_json::json!({ "changes": {} }),
        };
        let next_before = (query.limit == 1).then(|| {
            AuditCursor {
                at_ms: entry.at.timestamp_millis(),
                id: entry.id.clone(),
            }
            .to_string()
        });
        Ok(AuditPage {
            items: vec![entry],
            next_before,
        })
    }

    async fn put_module(
        &self,
        actor: &Actor,
        name: &str,
        source: String,
        note: Option<String>,
    ) -> ServiceResult<ModuleView> {
        self.by("put_module", actor);
        self.calls().control = Some(format!("put_module {name} {note:?}"));
        Ok(ModuleView {
            name: name.to_owned(),
            version: 1,
            note: note.unwrap_or_default(),
            bytes: source.len() as u64,
            created_at: Some(t0()),
            updated_at: t0(),
            current: true,
            source: None,
        })
    }

    async fn list_modules(&self) -> ServiceResult<Vec<ModuleView>> {
        Ok(Vec::new())
    }

    async fn get_module(&self, name: &str, version: Option<u64>) -> ServiceResult<ModuleView> {
        Err(ServiceError::NotFound(format!(
            "no module {name} (version {version:?})"
        )))
    }

    async fn module_versions(&self, name: &str) -> ServiceResult<Vec<ModuleView>> {
        Err(ServiceError::NotFound(format!("no module {name}")))
    }

    async fn rollback_module(
        &self,
        actor: &Actor,
        name: &str,
        version: u64,
        note: Option<String>,
    ) -> ServiceResult<ModuleView> {
        self.by("rollback_module", actor);
        self.calls().control = Some(format!("rollback_module {name} {version} {note:?}"));
        Err(ServiceError::NotFound(format!("no module {name}")))
    }

    async fn delete_module(&self, actor: &Actor, name: &str) -> ServiceResult<()> {
        self.by("delete_module", actor);
        Err(ServiceError::NotFound(format!("no module {name}")))
    }

    async fn cluster(&self) -> ServiceResult<ClusterView> {
        Ok(ClusterView {
            mode: "std".into(),
            cluster: "default".into(),
            node: "n1".into(),
            healthy: true,
            problem: None,
            nodes: vec![],
        })
    }

    async fn metrics(&self) -> ServiceResult<String> {
        Ok("# HELP traitor_up Fake.\n# TYPE traitor_up gauge\ntraitor_up 1\n".into())
    }

    async fn readiness(&self) -> Readiness {
        let degraded = self.degraded.load(Ordering::SeqCst);
        Readiness::from_checks(vec![
            ReadinessCheck {
                name: "store".into(),
                ready: true,
                detail: None,
            },
            ReadinessCheck {
                name: "workers".into(),
                ready: !degraded,
                detail: degraded.then(|| "no worker process is alive".into()),
            },
        ])
    }

    async fn health(&self) -> Health {
        let degraded = self.degraded.load(Ordering::SeqCst);
        Health {
            status: if degraded { "degraded" } else { "ok" }.into(),
            mode: "std".into(),
            node: "n1".into(),
            version: "0.1.0".into(),
            workers_alive: if degraded { 0 } else { 2 },
            workers_configured: 2,
            jobs_scheduled: 0,
            problems: if degraded {
                vec!["no live workers".into()]
            } else {
                vec![]
            },
        }
    }
}
