//! Store latency: [`TimedStore`] wraps any [`Store`] and times every call into a
//! histogram per call ([`StoreLatency`]), failed calls included.
//!
//! It delegates and measures only: it must not retry, cache or change an answer.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{Histogram, HistogramSnapshot, STORE_BUCKETS_S};
use crate::job::{Job, RunRecord, ScriptVersion};
use crate::store::{
    AuditEntry, AuditListQuery, AuditStore, JobListQuery, KvCaps, KvSet, KvStore, ModuleMeta,
    ModuleStore, ModuleVersion, RunListQuery, SecretMeta, SecretStore, Store, StoreResult,
};

/// The store calls that are timed, in the order they are reported.
pub const OPS: &[&str] = &[
    "create_job",
    "update_job",
    "delete_job",
    "get_job",
    "get_script",
    "list_jobs",
    "enabled_jobs",
    "count_jobs",
    "record_runs",
    "list_runs",
    "get_run",
    "recent_runs",
    "prune_runs",
    "append_audit",
    "list_audit",
    "prune_audit",
];

/// One histogram per entry of [`OPS`].
#[derive(Debug)]
pub struct StoreLatency {
    by_op: Vec<Histogram>,
}

impl Default for StoreLatency {
    fn default() -> Self {
        StoreLatency {
            by_op: OPS
                .iter()
                .map(|_| Histogram::new(STORE_BUCKETS_S))
                .collect(),
        }
    }
}

impl StoreLatency {
    fn observe(&self, op: &str, started: Instant) {
        if let Some(h) = OPS
            .iter()
            .position(|o| *o == op)
            .and_then(|i| self.by_op.get(i))
        {
            h.observe(started.elapsed());
        }
    }

    /// (call, histogram) for every call in [`OPS`].
    pub fn snapshot(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        OPS.iter()
            .copied()
            .zip(self.by_op.iter().map(Histogram::snapshot))
            .collect()
    }
}

/// A store whose every call is timed.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    latency: Arc<StoreLatency>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>, latency: Arc<StoreLatency>) -> Self {
        TimedStore { inner, latency }
    }
}

/// Times one delegated call.
macro_rules! timed {
    ($self:ident, $op:ident ( $($arg:expr),* )) => {
        timed!($self, stringify!($op), $op($($arg),*))
    };
    ($self:ident, $name:expr, $op:ident ( $($arg:expr),* )) => {{
        let started = Instant::now();
        let r = $self.inner.$op($($arg),*).await;
        $self.latency.observe($name, started);
        r
    }};
}

#[async_trait]
impl Store for TimedStore {
    async fn create_job_audited(
        &self,
        job: &Job,
        script: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        timed!(self, "create_job", create_job_audited(job, script, audit))
    }

    async fn update_job_audited(
        &self,
        job: &Job,
        script: Option<&str>,
        expected_version: u64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        timed!(
            self,
            "update_job",
            update_job_audited(job, script, expected_version, audit)
        )
    }

    async fn delete_job_audited(&self, id: &str, audit: Option<&AuditEntry>) -> StoreResult<bool> {
        timed!(self, "delete_job", delete_job_audited(id, audit))
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        timed!(self, get_job(id))
    }

    async fn get_script(&self, id: &str) -> StoreResult<Option<String>> {
        timed!(self, get_script(id))
    }

    async fn list_jobs(&self, query: &JobListQuery) -> StoreResult<(Vec<Job>, u64)> {
        timed!(self, list_jobs(query))
    }

    async fn enabled_jobs_page(&self, after: Option<&str>, limit: u64) -> StoreResult<Vec<Job>> {
        timed!(self, enabled_jobs_page(after, limit))
    }

    async fn enabled_versions_page(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<(String, u64)>> {
        timed!(self, enabled_versions_page(after, limit))
    }

    async fn count_jobs(&self) -> StoreResult<(u64, u64)> {
        timed!(self, count_jobs())
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> StoreResult<()> {
        timed!(self, record_runs(runs))
    }

    async fn list_runs(&self, job_id: &str, query: &RunListQuery) -> StoreResult<Vec<RunRecord>> {
        timed!(self, list_runs(job_id, query))
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        timed!(self, get_run(run_id))
    }

    async fn list_script_versions(&self, job_id: &str) -> StoreResult<Vec<ScriptVersion>> {
        timed!(self, list_script_versions(job_id))
    }

    async fn get_script_version(
        &self,
        job_id: &str,
        version: u64,
    ) -> StoreResult<Option<ScriptVersion>> {
        timed!(self, get_script_version(job_id, version))
    }

    async fn note_duplicate(&self, job_id: &str, scheduled_ms: i64) -> StoreResult<bool> {
        timed!(self, note_duplicate(job_id, scheduled_ms))
    }

    async fn recent_runs(&self, since_ms: i64, limit: u64) -> StoreResult<Vec<RunRecord>> {
        timed!(self, recent_runs(since_ms, limit))
    }

    async fn prune_runs(&self, keep_per_job: u32, older_than_ms: i64) -> StoreResult<u64> {
        timed!(self, prune_runs(keep_per_job, older_than_ms))
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

#[async_trait]
impl SecretStore for TimedStore {
    async fn put_secret_audited(
        &self,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        timed!(
            self,
            "put_secret",
            put_secret_audited(name, sealed, now_ms, audit)
        )
    }
    async fn list_secrets(&self) -> StoreResult<Vec<SecretMeta>> {
        timed!(self, list_secrets())
    }
    async fn sealed_secrets(&self, names: &[String]) -> StoreResult<Vec<(String, Vec<u8>)>> {
        timed!(self, sealed_secrets(names))
    }
    async fn delete_secret_audited(
        &self,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        timed!(self, "delete_secret", delete_secret_audited(name, audit))
    }
}

#[async_trait]
impl KvStore for TimedStore {
    async fn kv_get(&self, job_id: &str, key: &str) -> StoreResult<Option<String>> {
        timed!(self, kv_get(job_id, key))
    }
    async fn kv_set(
        &self,
        job_id: &str,
        key: &str,
        value_json: &str,
        caps: KvCaps,
    ) -> StoreResult<KvSet> {
        timed!(self, kv_set(job_id, key, value_json, caps))
    }
    async fn kv_delete_audited(
        &self,
        job_id: &str,
        key: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        timed!(self, "kv_delete", kv_delete_audited(job_id, key, audit))
    }
    async fn kv_list(&self, job_id: &str) -> StoreResult<Vec<(String, String)>> {
        timed!(self, kv_list(job_id))
    }
}

#[async_trait]
impl AuditStore for TimedStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        timed!(self, append_audit(entry))
    }
    async fn list_audit(&self, query: &AuditListQuery) -> StoreResult<Vec<AuditEntry>> {
        timed!(self, list_audit(query))
    }
    async fn prune_audit(&self, keep: u64, older_than_ms: i64) -> StoreResult<u64> {
        timed!(self, prune_audit(keep, older_than_ms))
    }
}

#[async_trait]
impl ModuleStore for TimedStore {
    async fn put_module(
        &self,
        name: &str,
        source: &str,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        timed!(self, put_module(name, source, note, now_ms))
    }
    async fn list_modules(&self) -> StoreResult<Vec<ModuleMeta>> {
        timed!(self, list_modules())
    }
    async fn module_heads(&self, names: &[String]) -> StoreResult<Vec<(String, u64)>> {
        timed!(self, module_heads(names))
    }
    async fn list_module_versions(&self, name: &str) -> StoreResult<Vec<ModuleVersion>> {
        timed!(self, list_module_versions(name))
    }
    async fn get_module_version(
        &self,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<ModuleVersion>> {
        timed!(self, get_module_version(name, version))
    }
    async fn delete_module(&self, name: &str) -> StoreResult<bool> {
        timed!(self, delete_module(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn every_call_is_timed_under_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let latency = Arc::new(StoreLatency::default());
        let store = TimedStore::new(Arc::new(inner), latency.clone());
        assert!(store.get_job("nope").await.expect("get").is_none());
        store.count_jobs().await.expect("count");
        store.count_jobs().await.expect("count");
        let snap: std::collections::HashMap<_, _> = latency.snapshot().into_iter().collect();
        assert_eq!(snap["get_job"].count, 1);
        assert_eq!(snap["count_jobs"].count, 2);
        assert_eq!(snap["create_job"].count, 0);
        assert_eq!(snap.len(), OPS.len());

        // The audited writes count under the plain names: they are the same calls.
        let job = crate::store::conformance::sample_job("j");
        store.create_job(&job, "s").await.expect("create");
        store.create_job_audited(&job, "s", None).await.ok();
        let mut next = job.clone();
        next.version += 1;
        store
            .update_job_audited(&next, None, job.version, None)
            .await
            .expect("update");
        store.delete_job_audited("j", None).await.expect("delete");
        let snap: std::collections::HashMap<_, _> = latency.snapshot().into_iter().collect();
        let counts = ["create_job", "update_job", "delete_job"].map(|op| snap[op].count);
        assert_eq!(counts, [2, 1, 1]);
        store.close().await;
    }
}
