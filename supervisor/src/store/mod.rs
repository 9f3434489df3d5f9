//! Storage of jobs, scripts (and every saved version of them) and run history behind
//! one trait, [`Store`], that every backend implements: the embedded SQLite store of
//! standalone mode, and the cluster stores (PostgreSQL, MongoDB).
//!
//! A store validates nothing about jobs (the service does) and schedules nothing. Its
//! promise: a write that returned `Ok` survives `kill -9` of the process right after.
//! Every backend must pass the suite in [`conformance`].

mod audit;
pub mod conformance;
pub mod mongo;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

use crate::job::{ExecType, Job, RunRecord, ScriptVersion};

pub use audit::{AuditEntry, AuditListQuery};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a job with id {0} already exists")]
    Duplicate(String),
    #[error("no job with id {0}")]
    NotFound(String),
    /// The job changed since it was read (optimistic concurrency).
    #[error("job {id} was changed concurrently (expected version {expected})")]
    VersionConflict { id: String, expected: u64 },
    #[error("store unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error("store error: {0:#}")]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Rows per page when the service walks every enabled job (start-up, takeover): big
/// enough that a page costs little per row, small enough that one page of full jobs
/// is a few MiB.
pub const ENABLED_PAGE: u64 = 10_000;

/// Rows per page of `(id, version)` pairs (a reconcile): ~50 bytes each.
pub const VERSIONS_PAGE: u64 = 50_000;

/// Sort keys a store can order jobs by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JobOrder {
    #[default]
    CreatedAt,
    Name,
    UpdatedAt,
    LastExecTime,
}

#[derive(Debug, Clone, Default)]
pub struct JobListQuery {
    /// Case-insensitive substring of id, name or description.
    pub search: Option<String>,
    pub exec_type: Option<ExecType>,
    pub enabled: Option<bool>,
    pub order: JobOrder,
    pub descending: bool,
    pub offset: u64,
    /// `None`: all matching jobs.
    pub limit: Option<u64>,
}

/// A secret without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub name: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Limits of one job's key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCaps {
    pub max_keys: u64,
    /// Bytes of keys plus values.
    pub max_total_bytes: u64,
}

impl Default for KvCaps {
    fn default() -> Self {
        KvCaps {
            max_keys: 1000,
            max_total_bytes: 1024 * 1024,
        }
    }
}

/// A shared module's current version, without its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMeta {
    pub name: String,
    pub version: u64,
    /// The current version's note and size.
    pub note: String,
    pub bytes: u64,
    /// When the module was first saved, and when its current version was.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One saved version of a shared module (immutable once written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleVersion {
    pub name: String,
    pub version: u64,
    pub note: String,
    pub bytes: u64,
    pub created_at_ms: i64,
    /// `None` in lists.
    pub source: Option<String>,
}

/// What [`Store::kv_set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSet {
    Stored,
    /// A new key would exceed `max_keys`; nothing changed.
    TooManyKeys,
    /// The job's keys and values would exceed `max_total_bytes`; nothing changed.
    TooLarge,
}

/// Grants as one column: names joined by commas (a name never holds one).
pub fn join_grants(names: &[String]) -> String {
    names.join(",")
}

/// The inverse of [`join_grants`]; refuses what a valid name cannot be.
pub fn split_grants(text: &str) -> anyhow::Result<Vec<String>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|n| {
            if crate::secrets::valid_name(n) {
                Ok(n.to_owned())
            } else {
                Err(anyhow::anyhow!(
                    "stored secret grant {n:?} is not a valid name"
                ))
            }
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct RunListQuery {
    pub outcome: Option<String>,
    /// Only runs scheduled strictly before this instant (ms).
    pub before_ms: Option<i64>,
    /// Only runs scheduled at or after this instant (ms).
    pub since_ms: Option<i64>,
    pub limit: u64,
}

#[async_trait]
pub trait Store: SecretStore + KvStore + AuditStore + ModuleStore + Send + Sync + 'static {
    /// Stores a new job and its script, which becomes script version
    /// `job.script_version` with note `job.script_note`. `Duplicate` if the id exists.
    ///
    /// With `audit`, the entry is stored in the same transaction: both or neither (the
    /// MongoDB store, which has no transactions, appends it right after; see there).
    async fn create_job_audited(
        &self,
        job: &Job,
        script: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()>;

    /// Replaces the job row (all fields but `created_at_ms` and `last`), and the script
    /// when given, if the stored version is `expected_version`; the caller has already
    /// bumped `job.version`. A given script is also kept as the immutable script version
    /// `job.script_version` (note `job.script_note`, time `job.updated_at_ms`); the
    /// caller has bumped that too. `NotFound`, `VersionConflict`. `audit` as for
    /// [`Store::create_job_audited`]: stored only if the update is.
    async fn update_job_audited(
        &self,
        job: &Job,
        script: Option<&str>,
        expected_version: u64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()>;

    /// Deletes the job, its script and its history. `Ok(false)` if it did not exist.
    /// `audit` as for [`Store::create_job_audited`]: stored only if a job was deleted.
    async fn delete_job_audited(&self, id: &str, audit: Option<&AuditEntry>) -> StoreResult<bool>;

    /// [`Store::create_job_audited`] without an audit entry.
    async fn create_job(&self, job: &Job, script: &str) -> StoreResult<()> {
        self.create_job_audited(job, script, None).await
    }

    /// [`Store::update_job_audited`] without an audit entry.
    async fn update_job(
        &self,
        job: &Job,
        script: Option<&str>,
        expected_version: u64,
    ) -> StoreResult<()> {
        self.update_job_audited(job, script, expected_version, None)
            .await
    }

    /// [`Store::delete_job_audited`] without an audit entry.
    async fn delete_job(&self, id: &str) -> StoreResult<bool> {
        self.delete_job_audited(id, None).await
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>>;

    async fn get_script(&self, id: &str) -> StoreResult<Option<String>>;

    /// A page of jobs and the number of jobs matching the filter.
    async fn list_jobs(&self, query: &JobListQuery) -> StoreResult<(Vec<Job>, u64)>;

    /// One page of the jobs whose `enabled` is true, by id ascending (byte order):
    /// at most `limit` jobs with ids greater than `after` (from the first if `None`).
    /// Start-up and takeovers walk these pages (keyset pagination on id) so that a
    /// million jobs never sit in memory at once; a short page is the last one. Pages
    /// are separate reads, not one snapshot.
    async fn enabled_jobs_page(&self, after: Option<&str>, limit: u64) -> StoreResult<Vec<Job>>;

    /// Like [`Store::enabled_jobs_page`] but only `(id, version)`: what a reconcile
    /// compares with the wheel, without reading or decoding whole rows.
    async fn enabled_versions_page(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<(String, u64)>>;

    /// Every job whose `enabled` is true, read page by page. Holds them all in memory:
    /// for tests and small stores; the service walks pages instead.
    async fn enabled_jobs(&self) -> StoreResult<Vec<Job>> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map(|j: &Job| j.id.clone());
            let page = self
                .enabled_jobs_page(after.as_deref(), ENABLED_PAGE)
                .await?;
            let last_page = (page.len() as u64) < ENABLED_PAGE;
            all.extend(page);
            if last_page {
                return Ok(all);
            }
        }
    }

    /// Counts of jobs by `enabled` (false, true).
    async fn count_jobs(&self) -> StoreResult<(u64, u64)>;

    /// Inserts or replaces run records by `run_id`, all in one transaction, and folds
    /// them into their jobs' [`crate::job::LastRun`] (never moving it backwards). A
    /// replaced record keeps the greater of its stored and its new `duplicates`, so a
    /// [`Store::note_duplicate`] between two records of a run is not lost.
    /// Records of jobs that no longer exist are dropped silently.
    async fn record_runs(&self, runs: &[RunRecord]) -> StoreResult<()>;

    /// Every saved version of a job's script, newest first, without their sources.
    /// Empty if the job does not exist.
    async fn list_script_versions(&self, job_id: &str) -> StoreResult<Vec<ScriptVersion>>;

    /// One version of a job's script, with its source.
    async fn get_script_version(
        &self,
        job_id: &str,
        version: u64,
    ) -> StoreResult<Option<ScriptVersion>>;

    /// Counts one suppressed duplicate on the newest record of the occurrence
    /// `(job_id, scheduled_ms)` that is not a manual run. `Ok(false)` if there is none.
    async fn note_duplicate(&self, job_id: &str, scheduled_ms: i64) -> StoreResult<bool>;

    /// Newest first (by scheduled instant, then run id), without their logs.
    async fn list_runs(&self, job_id: &str, query: &RunListQuery) -> StoreResult<Vec<RunRecord>>;

    /// One run with its log.
    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>>;

    /// Runs whose scheduled instant is at or after `since_ms`, all jobs, without logs,
    /// newest first, at most `limit` (for the dashboard).
    async fn recent_runs(&self, since_ms: i64, limit: u64) -> StoreResult<Vec<RunRecord>>;

    /// Deletes all but the newest `keep_per_job` runs of each job, and every run
    /// scheduled before `older_than_ms`. Returns how many were deleted.
    async fn prune_runs(&self, keep_per_job: u32, older_than_ms: i64) -> StoreResult<u64>;

    /// Stop accepting writes, finish the ones in flight, close.
    async fn close(&self);
}

/// Sealed secrets, by name (issue 7). Values are encrypted before they reach a store.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or replaces the secret `name` with its sealed (encrypted) value; a
    /// replaced secret keeps its `created_at_ms`. `audit` as for
    /// [`Store::create_job_audited`].
    async fn put_secret_audited(
        &self,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()>;

    /// [`SecretStore::put_secret_audited`] without an audit entry.
    async fn put_secret(&self, name: &str, sealed: &[u8], now_ms: i64) -> StoreResult<()> {
        self.put_secret_audited(name, sealed, now_ms, None).await
    }

    /// Every secret's name and times, by name, never a value.
    async fn list_secrets(&self) -> StoreResult<Vec<SecretMeta>>;

    /// The sealed values of the named secrets that exist, by name.
    async fn sealed_secrets(&self, names: &[String]) -> StoreResult<Vec<(String, Vec<u8>)>>;

    /// Deletes the secret. `Ok(false)` if it did not exist. Grants are not touched (the
    /// service refuses to delete a granted secret). `audit` is stored only if a secret
    /// was deleted, in the same transaction.
    async fn delete_secret_audited(
        &self,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool>;

    /// [`SecretStore::delete_secret_audited`] without an audit entry.
    async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        self.delete_secret_audited(name, None).await
    }
}

/// Each job's small key-value state (issue 7): JSON text under a key, capped.
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The job's value under `key` (JSON text).
    async fn kv_get(&self, job_id: &str, key: &str) -> StoreResult<Option<String>>;

    /// Stores `value_json` under `key` unless that would break `caps`; checked and
    /// written in one transaction. `NotFound` if the job does not exist.
    async fn kv_set(
        &self,
        job_id: &str,
        key: &str,
        value_json: &str,
        caps: KvCaps,
    ) -> StoreResult<KvSet>;

    /// Deletes `key`. `Ok(false)` if it was not there. `audit` is stored only if a key
    /// was deleted, in the same transaction.
    async fn kv_delete_audited(
        &self,
        job_id: &str,
        key: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool>;

    /// [`KvStore::kv_delete_audited`] without an audit entry.
    async fn kv_delete(&self, job_id: &str, key: &str) -> StoreResult<bool> {
        self.kv_delete_audited(job_id, key, None).await
    }

    /// Every key of the job and its value, by key.
    async fn kv_list(&self, job_id: &str) -> StoreResult<Vec<(String, String)>>;
}

/// The audit log (see [`audit`]). Job writes store their entries through
/// [`Store::create_job_audited`] and its siblings, in their own transaction.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry to the audit log. An entry whose id is stored already changes
    /// nothing (so a retried append is harmless).
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()>;

    /// The audit entries matching `query`, newest first (by `at_ms`, then id), at most
    /// `query.limit`.
    async fn list_audit(&self, query: &AuditListQuery) -> StoreResult<Vec<AuditEntry>>;

    /// Deletes the audit entries made before `older_than_ms`, and all but the newest
    /// `keep`. Returns how many were deleted.
    async fn prune_audit(&self, keep: u64, older_than_ms: i64) -> StoreResult<u64>;
}

/// Shared modules: immutable numbered versions of JavaScript libraries (issue 7).
#[async_trait]
pub trait ModuleStore: Send + Sync {
    /// Saves `source` as the next version of the shared module `name` (1 for a new
    /// module) and makes it current, in one transaction; returns its number. Two
    /// concurrent saves get two different numbers.
    async fn put_module(
        &self,
        name: &str,
        source: &str,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<u64>;

    /// Every shared module's current version, by name.
    async fn list_modules(&self) -> StoreResult<Vec<ModuleMeta>>;

    /// The current version numbers of those of `names` that exist, by name: what a run
    /// checks before it uses its cached sources.
    async fn module_heads(&self, names: &[String]) -> StoreResult<Vec<(String, u64)>>;

    /// Every saved version of a module, newest first, without sources. Empty if the
    /// module does not exist.
    async fn list_module_versions(&self, name: &str) -> StoreResult<Vec<ModuleVersion>>;

    /// One version of a module, with its source.
    async fn get_module_version(
        &self,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<ModuleVersion>>;

    /// Deletes the module and all its versions. `Ok(false)` if it did not exist.
    async fn delete_module(&self, name: &str) -> StoreResult<bool>;
}
