//! The seam between HTTP and the service: everything a route can ask of traitor.
//!
//! `supervisor` implements [`Backend`]; `web` only calls it. The backend speaks in
//! [`ServiceError`]s that name what went wrong; only this crate turns them into HTTP
//! status codes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::audit::{AuditPage, AuditQuery};
use crate::dto::*;
use crate::ops::Readiness;

/// What went wrong, in the service's words. `web` picks the status code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad input (400). `field` names the offending field when there is one.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// Unknown id (404).
    #[error("{0}")]
    NotFound(String),
    /// Duplicate id or concurrent change (409).
    #[error("{0}")]
    Conflict(String),
    /// Over a size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Not ready, shutting down, or cut off from the cluster (503).
    #[error("{0}")]
    Unavailable(String),
    /// A real fault (500). Logged by `web` with its whole chain.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Who asked for a change: the name of the API token the request presented, or
/// `local` for a client on this machine of a server without tokens. The auth middleware
/// sets it; the backend records it in the audit log with every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// A debug run in progress. Dropping it cancels the run.
pub struct DebugSession {
    /// Log events as they happen, then exactly one `End`.
    pub events: mpsc::Receiver<DebugEvent>,
    /// Cancels the run (e.g. when the client goes away).
    pub cancel: Box<dyn FnOnce() + Send>,
}

/// Every method that changes something takes the [`Actor`] who asked, and records the
/// change in the audit log where it makes it; a call that fails records nothing.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Creates a job (stopped unless `start`). `exec_type` comes from `?type=` or the
    /// body. Returns the job id.
    async fn create_job(
        &self,
        actor: &Actor,
        exec_type: Option<ExecType>,
        input: JobInput,
        start: bool,
    ) -> ServiceResult<String>;
    /// Applies the fields present in `patch`; the merged job is validated first.
    async fn update_job(&self, actor: &Actor, id: &str, patch: JobInput) -> ServiceResult<()>;
    async fn delete_job(&self, actor: &Actor, id: &str) -> ServiceResult<()>;
    async fn get_job(&self, id: &str) -> ServiceResult<JobView>;
    async fn list_jobs(&self, query: JobQuery) -> ServiceResult<JobPage>;
    /// Every job (`GET /api/jobList`).
    async fn all_jobs(&self) -> ServiceResult<Vec<JobView>>;
    async fn get_script(&self, id: &str) -> ServiceResult<ScriptView>;
    /// Saves a script as the job's next version, with an optional note.
    async fn set_script(
        &self,
        actor: &Actor,
        id: &str,
        script: String,
        note: Option<String>,
    ) -> ServiceResult<()>;
    /// Every saved version of the job's script, newest first, without sources.
    async fn script_versions(&self, id: &str) -> ServiceResult<Vec<ScriptVersionView>>;
    /// One version with its source.
    async fn script_version(&self, id: &str, version: u64) -> ServiceResult<ScriptVersionView>;
    /// Makes an old version current again, as a new version; returns its number.
    async fn rollback_script(
        &self,
        actor: &Actor,
        id: &str,
        version: u64,
        note: Option<String>,
    ) -> ServiceResult<u64>;
    /// What would fire in `[from, to]` (default: the next 24 h) and what a restart now
    /// would catch up.
    async fn plan(
        &self,
        id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> ServiceResult<PlanView>;
    /// Skips the job's occurrences until `until`.
    async fn pause(&self, actor: &Actor, id: &str, until: DateTime<Utc>) -> ServiceResult<()>;
    /// Ends a pause.
    async fn resume(&self, actor: &Actor, id: &str) -> ServiceResult<()>;
    /// Runs the occurrences of `[from, to]` that have not run, oldest first, under the
    /// job's overlap policy.
    async fn backfill(
        &self,
        actor: &Actor,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ServiceResult<BackfillView>;
    /// The occurrence ledger: one entry per occurrence with its attempts, newest first.
    async fn occurrences(
        &self,
        id: &str,
        before: Option<DateTime<Utc>>,
        limit: u64,
    ) -> ServiceResult<OccurrencePage>;
    /// Starts or stops a job; idempotent.
    async fn enable(&self, actor: &Actor, id: &str, enable: bool) -> ServiceResult<()>;
    /// Runs the job now as a manual occurrence, recorded in its history; returns the
    /// run id.
    async fn run_now(&self, actor: &Actor, id: &str) -> ServiceResult<String>;
    async fn list_runs(&self, job_id: &str, query: RunQuery) -> ServiceResult<RunPage>;
    async fn get_run(&self, run_id: &str) -> ServiceResult<RunDetail>;
    /// The next `count` fire times of `cron` in `timezone` after `after` (default now).
    async fn cron_preview(
        &self,
        cron: &str,
        timezone: Option<&str>,
        count: usize,
        after: Option<DateTime<Utc>>,
    ) -> ServiceResult<Vec<DateTime<Utc>>>;
    /// Starts a debug run on this node. Does not touch the job's state or history.
    async fn debug(&self, source: DebugSource) -> ServiceResult<DebugSession>;
    async fn health(&self) -> Health;
    /// The dashboard's numbers.
    async fn stats(&self) -> ServiceResult<Stats>;
    /// The live nodes, their heartbeat age and how many jobs each owns.
    async fn cluster(&self) -> ServiceResult<ClusterView>;
    /// `GET /metrics`: this node's numbers in the Prometheus text format 0.0.4.
    async fn metrics(&self) -> ServiceResult<String>;
    /// `GET /readyz`: whether this node can do its work now, check by check.
    async fn readiness(&self) -> Readiness;
    /// Creates or replaces a secret.
    async fn put_secret(&self, actor: &Actor, name: &str, value: String) -> ServiceResult<()>;
    /// Every secret's name, times and grants; never a value.
    async fn list_secrets(&self) -> ServiceResult<Vec<SecretView>>;
    /// Deletes a secret; `Conflict` while a job is granted it.
    async fn delete_secret(&self, actor: &Actor, name: &str) -> ServiceResult<()>;
    /// A job's key-value entries, by key.
    async fn kv_list(&self, job_id: &str) -> ServiceResult<Vec<KvEntryView>>;
    /// Deletes one key of a job's key-value store; `NotFound` if absent.
    async fn kv_delete(&self, actor: &Actor, job_id: &str, key: &str) -> ServiceResult<()>;
    /// A page of the audit log, newest first.
    async fn audit(&self, query: AuditQuery) -> ServiceResult<AuditPage>;
    /// Saves a shared module's next version (its first creates it).
    async fn put_module(
        &self,
        actor: &Actor,
        name: &str,
        source: String,
        note: Option<String>,
    ) -> ServiceResult<ModuleView>;
    /// Every shared module's current version, by name, without sources.
    async fn list_modules(&self) -> ServiceResult<Vec<ModuleView>>;
    /// One module with its source: the current version, or `version`.
    async fn get_module(&self, name: &str, version: Option<u64>) -> ServiceResult<ModuleView>;
    /// Every version of a module, newest first, without sources.
    async fn module_versions(&self, name: &str) -> ServiceResult<Vec<ModuleView>>;
    /// Makes an old version current again, as a new version.
    async fn rollback_module(
        &self,
        actor: &Actor,
        name: &str,
        version: u64,
        note: Option<String>,
    ) -> ServiceResult<ModuleView>;
    /// Deletes a module and all its versions.
    async fn delete_module(&self, actor: &Actor, name: &str) -> ServiceResult<()>;
}
