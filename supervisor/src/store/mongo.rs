//! The MongoDB cluster store (`-mg mongodb://…`, as the seed's compose file).
//!
//! Layout: the database named in the URL (`traitor` when it names none) holds, for each
//! cluster, the collections `<cluster>_jobs`, `<cluster>_scripts`,
//! `<cluster>_script_versions`, `<cluster>_runs` and `<cluster>_meta` (the schema
//! version), plus `<cluster>_secrets`, `<cluster>_kv`, `<cluster>_modules`,
//! `<cluster>_module_versions` and `<cluster>_audit`, so clusters sharing a server
//! never see each other's documents. A job's
//! `_id` is its id and a run's `_id` its run id: the `_id` index is the unique index
//! that turns a second create into `Duplicate`; a unique index on `(job_id, version)`
//! does the same for script versions. Secondary indexes are created at connect, then
//! documents of an older schema version are upgraded (idempotently, so nodes starting
//! together may all do it). The driver is pinned below 3.9, the last line that
//! still talks to MongoDB 4.2 (the seed's server); 4.2 is also the oldest server this
//! store works with (it uses aggregation-pipeline updates and `$$NOW`).
//!
//! # No transactions
//!
//! A standalone server (the seed's) has no multi-document transactions, so every
//! promise of the [`Store`] trait is kept with single-document atomicity:
//!
//! - A job and its script change together: scripts are immutable revisions
//!   (`<cluster>_scripts`, `_id` a fresh id), written first, and the job document
//!   switches to a new revision in the same atomic update that checks and bumps its
//!   version. A revision that lost (duplicate id, stale version, crash) is never
//!   pointed at; revisions other than the current one are deleted once older than
//!   [`SCRIPT_GRACE_MS`] by the server's clock (so an update in flight never loses its
//!   revision), and all of a job's go with the job.
//! - Script versions follow the same rule: the version a save makes is written before
//!   the job update (the unique index refusing a number that is taken), and counts only
//!   once the job's `script_version` has reached it; reads never show a version above
//!   it. A save that lost deletes its version; one abandoned by a dead process is
//!   deleted when its number is saved again after [`SCRIPT_GRACE_MS`]. A create writes
//!   version 1 after the job (the job insert decides `Duplicate`), best effort.
//! - `record_runs` upserts each run by id, then folds the batch into each job with one
//!   pipeline update per job (monotonic `$max`, and a conditional switch of the
//!   outcome), then deletes the records of jobs deleted meanwhile. It is not atomic as
//!   a whole: after an error part of the batch may be stored, and calling it again
//!   with the same records is safe (upserts and folds are idempotent).
//!
//! # Durability
//!
//! Every write uses write concern `w: "majority", j: true`: it is answered only once a
//! majority of the replica set (the one server, when standalone) has it in its
//! on-disk journal, so an acknowledged write survives a crash of this process and of a
//! database node. Connection loss, server-selection timeouts and "not primary" errors
//! are [`StoreError::Unavailable`], never a panic.
//!
//! This module must not validate or schedule jobs (the service does), and must not touch
//! any collection but its cluster's.

mod audit;
mod docs;
mod extras;
mod modules;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, RETRYABLE_WRITE_ERROR, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, WriteConcern,
};
use mongodb::{Client, Collection, IndexModel};
use tokio::sync::{Semaphore, SemaphorePermit};

use self::docs::{
    int, is_finished, job_doc, job_update_fields, literal_regex, read_job, read_run,
    read_script_version, run_upsert, string, to_i64, version_fields,
};
use super::{JobListQuery, JobOrder, RunListQuery, Store, StoreError, StoreResult};
use crate::job::{Job, RunRecord, ScriptVersion, Trigger};

/// The database used when the URL names none.
const DEFAULT_DATABASE: &str = "traitor";
/// The schema version this build writes (the shape of the documents and indexes).
/// 2: the policies of issue 6, script versions, and the runs' attempt and duplicates.
const SCHEMA_VERSION: i64 = 2;
/// Longest cluster name: collection namespaces are limited (120 bytes on 4.2).
const MAX_CLUSTER_LEN: usize = 64;
/// How long server selection may take before a call counts as "store down", unless the
/// URL sets `serverSelectionTimeoutMS`.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Script revisions no job points at are deleted once older than this; no update stays
/// in flight that long.
const SCRIPT_GRACE_MS: i64 = 10 * 60 * 1000;
/// Most runs one prune request deletes.
const PRUNE_CHUNK: i64 = 5_000;
/// Jobs whose histories one count-prune step looks at.
const PRUNE_JOB_PAGE: i64 = 500;
/// Run upserts of one `record_runs` call in flight at once.
const RECORD_CONCURRENCY: usize = 16;
/// Calls in flight are counted with permits of this semaphore; `close` takes them all.
const MAX_IN_FLIGHT: u32 = 1 << 20;
/// Server error codes that mean "cannot take work now" rather than "bad request":
/// host unreachable / not found, write concern failed, network timeout, shutdown in
/// progress, unsatisfiable write concern, primary stepped down, socket exception, not
/// writable primary, interrupted at shutdown / by a replica-set state change, not
/// primary (no secondary ok, or secondary).
const UNAVAILABLE_CODES: &[i32] = &[
    6, 7, 64, 89, 91, 100, 189, 9001, 10107, 11600, 11602, 13435, 13436,
];
/// The server's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;

/// The MongoDB store of one cluster. Cheap to share behind an `Arc`; see the module
/// docs.
pub struct MongoStore {
    client: Client,
    jobs: Collection<Document>,
    scripts: Collection<Document>,
    /// Every saved version of every job's script; `(job_id, version)` unique.
    versions: Collection<Document>,
    runs: Collection<Document>,
    /// Secrets (`_id` = name, sealed value) and per-job kv entries (issue 7; additive,
    /// so the schema version stays 2: old documents read as no grants).
    secrets: Collection<Document>,
    kv: Collection<Document>,
    /// The audit log (issue 7; additive too).
    audit: Collection<Document>,
    /// Shared modules: version counters and immutable versions (see `modules`).
    modules: Collection<Document>,
    module_versions: Collection<Document>,
    /// Set by `close`; every call checks it first.
    closed: AtomicBool,
    /// One permit per call in flight, so `close` can wait for them.
    in_flight: Semaphore,
}

/// The collection names of a cluster, checked: `<cluster>_jobs` and so on.
fn collection_prefix(cluster: &str) -> anyhow::Result<String> {
    if cluster.is_empty() {
        bail!("the cluster name is empty");
    }
    if let Some(c) = cluster
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        bail!(
            "the cluster name {cluster:?} contains {c:?}; use only ASCII letters, digits, \
             '_' and '-'"
        );
    }
    if cluster.len() > MAX_CLUSTER_LEN {
        bail!("the cluster name {cluster:?} is too long: at most {MAX_CLUSTER_LEN} characters");
    }
    Ok(format!("{cluster}_"))
}

impl MongoStore {
    /// Connects to the server at `url`, checks it answers, and prepares the collections
    /// of `cluster` (schema version, indexes) in the URL's database (`traitor` if none).
    pub async fn connect(url: &str, cluster: &str) -> anyhow::Result<MongoStore> {
        let options = ClientOptions::parse(url)
            .await
            .context("parse the MongoDB URL")?;
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        Self::connect_in(options, &database, cluster).await
    }

    async fn connect_in(
        mut options: ClientOptions,
        database: &str,
        cluster: &str,
    ) -> anyhow::Result<MongoStore> {
        let prefix = collection_prefix(cluster)?;
        if options.app_name.is_none() {
            // Lets an operator tell the clusters' connections apart in server logs.
            options.app_name = Some(format!("traitor {cluster}"));
        }
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
        }
        let client = Client::with_options(options).context("create the MongoDB client")?;
        let db = client.database(database);
        db.run_command(doc! { "ping": 1 })
            .await
            .with_context(|| format!("reach MongoDB (database {database})"))?;
        // Every write waits for a majority of the nodes to have it in their journal.
        let durable = CollectionOptions::builder()
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            )
            .build();
        let coll = |kind: &str| {
            db.collection_with_options::<Document>(&format!("{prefix}{kind}"), durable.clone())
        };
        let store = MongoStore {
            jobs: coll("jobs"),
            scripts: coll("scripts"),
            versions: coll("script_versions"),
            runs: coll("runs"),
            secrets: coll("secrets"),
            kv: coll("kv"),
            audit: coll("audit"),
            modules: coll("modules"),
            module_versions: coll("module_versions"),
            client: client.clone(),
            closed: AtomicBool::new(false),
            in_flight: Semaphore::new(MAX_IN_FLIGHT as usize),
        };
        let meta = coll("meta");
        refuse_newer_schema(&meta)
            .await
            .with_context(|| format!("check the schema of cluster {cluster:?}"))?;
        // Before the upgrade: it relies on the unique index of the versions.
        store
            .create_indexes()
            .await
            .with_context(|| format!("create the indexes of cluster {cluster:?}"))?;
        store
            .upgrade(&meta)
            .await
            .with_context(|| format!("upgrade the schema of cluster {cluster:?}"))?;
        Ok(store)
    }

    async fn create_indexes(&self) -> anyhow::Result<()> {
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        // `_id` (the job id, the run id) is unique by itself.
        self.jobs
            .create_indexes([
                index(doc! { "enabled": 1 }, "by_enabled"),
                index(doc! { "created_at_ms": 1, "_id": 1 }, "by_created"),
                index(doc! { "name": 1, "_id": 1 }, "by_name"),
                index(doc! { "updated_at_ms": 1, "_id": 1 }, "by_updated"),
                index(doc! { "last_started_ms": 1, "_id": 1 }, "by_last_started"),
            ])
            .await
            .context("index jobs")?;
        self.scripts
            .create_indexes([index(doc! { "job_id": 1 }, "by_job")])
            .await
            .context("index scripts")?;
        self.versions
            .create_indexes([IndexModel::builder()
                .keys(doc! { "job_id": 1, "version": 1 })
                .options(
                    IndexOptions::builder()
                        .name("by_job_version".to_owned())
                        .unique(true)
                        .build(),
                )
                .build()])
            .await
            .context("index script versions")?;
        self.runs
            .create_indexes([
                index(
                    doc! { "job_id": 1, "scheduled_at_ms": -1, "_id": -1 },
                    "by_job",
                ),
                index(doc! { "scheduled_at_ms": 1 }, "by_scheduled"),
            ])
            .await
            .context("index runs")?;
        self.kv
            .create_indexes([index(doc! { "job_id": 1, "key": 1 }, "by_job_key")])
            .await
            .context("index kv")?;
        self.audit
            .create_indexes([
                index(doc! { "at_ms": -1, "_id": -1 }, "by_time"),
                index(doc! { "target": 1, "at_ms": -1, "_id": -1 }, "by_target"),
            ])
            .await
            .context("index audit")?;
        self.module_versions
            .create_indexes([index(doc! { "name": 1, "version": -1 }, "by_name_version")])
            .await
            .context("index module versions")?;
        Ok(())
    }

    /// Admits one call: `Unavailable` once the store is closed. The permit is held
    /// until the call returns.
    fn enter(&self) -> StoreResult<SemaphorePermit<'_>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        self.in_flight.try_acquire().map_err(|_| closed())
    }
}

/// The schema version of the cluster's collections (0: none yet), refusing a newer one
/// than this build knows.
async fn refuse_newer_schema(meta: &Collection<Document>) -> anyhow::Result<i64> {
    let Some(found) = meta
        .find_one(doc! { "_id": "schema" })
        .await
        .context("read the schema version")?
    else {
        return Ok(0);
    };
    let version = int(&found, "version").context("read the schema version")?;
    if version > SCHEMA_VERSION {
        bail!(
            "the collections have schema version {version}, but this build of traitor \
             only knows versions up to {SCHEMA_VERSION}: they were written by a newer \
             traitor; run that version"
        );
    }
    Ok(version)
}

/// Records this build's schema version (never lowering it).
async fn record_schema(meta: &Collection<Document>) -> anyhow::Result<()> {
    let bump = doc! { "$max": { "version": SCHEMA_VERSION } };
    match meta
        .update_one(doc! { "_id": "schema" }, bump.clone())
        .upsert(true)
        .await
    {
        Ok(_) => Ok(()),
        // Two nodes inserted it at once; the document exists now.
        Err(e) if is_duplicate_key(&e) => meta
            .update_one(doc! { "_id": "schema" }, bump)
            .await
            .map(|_| ())
            .context("record the schema version"),
        Err(e) => Err(anyhow::Error::new(e).context("record the schema version")),
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable(anyhow!("the store is closed"))
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Whether an error means the database cannot be reached or cannot take work (the
/// cluster treats it as "store down") rather than something about this request.
fn is_unavailable(e: &mongodb::error::Error) -> bool {
    if e.contains_label(RETRYABLE_WRITE_ERROR) {
        return true;
    }
    match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Authentication { .. }
        | ErrorKind::Shutdown => true,
        // The write may be applied but is not known to be durable.
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        ErrorKind::Write(WriteFailure::WriteError(w)) => UNAVAILABLE_CODES.contains(&w.code),
        ErrorKind::Command(c) => UNAVAILABLE_CODES.contains(&c.code),
        _ => false,
    }
}

/// Turns a driver error into a [`StoreError`] with context.
fn mongo_err(e: mongodb::error::Error, what: &'static str) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(anyhow::Error::new(e).context(what))
    } else {
        StoreError::Other(anyhow::Error::new(e).context(what))
    }
}

trait Ctx<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T>;
}

impl<T> Ctx<T> for mongodb::error::Result<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T> {
        self.map_err(|e| mongo_err(e, what))
    }
}

impl<T> Ctx<T> for anyhow::Result<T> {
    fn ctx(self, what: &'static str) -> StoreResult<T> {
        self.map_err(|e| StoreError::Other(e.context(what)))
    }
}

/// A positive `limit` for the driver (0 means "no limit" there).
/// The filter of a page of enabled jobs after `after`.
fn enabled_after(after: Option<&str>) -> Document {
    match after {
        Some(a) => doc! { "enabled": true, "_id": { "$gt": a } },
        None => doc! { "enabled": true },
    }
}

fn limit_i64(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A fresh script revision id.
fn new_rev() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The filter of a job list query.
fn job_filter(q: &JobListQuery) -> Document {
    let mut filter = Document::new();
    if let Some(s) = q.search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = literal_regex(s);
        let like = || doc! { "$regex": pattern.clone(), "$options": "i" };
        filter.insert(
            "$or",
            vec![
                Bson::Document(doc! { "_id": like() }),
                Bson::Document(doc! { "name": like() }),
                Bson::Document(doc! { "description": like() }),
            ],
        );
    }
    if let Some(t) = q.exec_type {
        filter.insert("exec_type", i32::from(t.code()));
    }
    if let Some(e) = q.enabled {
        filter.insert("enabled", e);
    }
    filter
}

/// The sort of a job list query; `_never_ran` is computed in the pipeline for
/// [`JobOrder::LastExecTime`], whose never-run jobs come last in both directions.
fn job_sort(order: JobOrder, descending: bool) -> Document {
    let dir = if descending { -1 } else { 1 };
    match order {
        JobOrder::CreatedAt => doc! { "created_at_ms": dir, "_id": dir },
        JobOrder::Name => doc! { "name": dir, "_id": dir },
        JobOrder::UpdatedAt => doc! { "updated_at_ms": dir, "_id": dir },
        JobOrder::LastExecTime => {
            doc! { "_never_ran": 1, "last_started_ms": dir, "_id": dir }
        }
    }
}

/// The `last_*` facts one `record_runs` call brings to one job.
struct Fold<'a> {
    scheduled: i64,
    started: Option<i64>,
    /// The newest finished record: (start or schedule, run id, outcome).
    finished: Option<(i64, &'a str, &'a str)>,
}

fn folds<'a>(runs: &[&'a RunRecord]) -> BTreeMap<&'a str, Fold<'a>> {
    let mut out: BTreeMap<&'a str, Fold<'a>> = BTreeMap::new();
    for r in runs {
        let f = out.entry(r.job_id.as_str()).or_insert(Fold {
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

/// The pipeline update folding `f` into a job: `$max` of the times (aggregation `$max`
/// ignores nulls and missing fields), and the outcome switched only to a record at
/// least as new (start, then run id) as the one it came from. Every value from a record
/// is wrapped in `$literal`, so text starting with `$` is never read as a field path.
fn fold_update(f: &Fold<'_>) -> Vec<Document> {
    let mut set = doc! {
        "last_scheduled_ms": { "$max": ["$last_scheduled_ms", { "$literal": f.scheduled }] },
    };
    if let Some(started) = f.started {
        set.insert(
            "last_started_ms",
            doc! { "$max": ["$last_started_ms", { "$literal": started }] },
        );
    }
    if let Some((at, run_id, outcome)) = f.finished {
        let newer = doc! {
            "$or": [
                { "$eq": [{ "$ifNull": ["$last_outcome_at_ms", Bson::Null] }, Bson::Null] },
                { "$lt": ["$last_outcome_at_ms", { "$literal": at }] },
                { "$and": [
                    { "$eq": ["$last_outcome_at_ms", { "$literal": at }] },
                    { "$lte": ["$last_outcome_run_id", { "$literal": run_id }] },
                ] },
            ]
        };
        let pick = |new: Bson, old: &str| doc! { "$cond": [newer.clone(), new, old] };
        set.insert(
            "last_outcome",
            pick(doc! { "$literal": outcome }.into(), "$last_outcome"),
        );
        set.insert(
            "last_outcome_at_ms",
            pick(doc! { "$literal": at }.into(), "$last_outcome_at_ms"),
        );
        set.insert(
            "last_outcome_run_id",
            pick(doc! { "$literal": run_id }.into(), "$last_outcome_run_id"),
        );
    }
    vec![doc! { "$set": set }]
}

impl MongoStore {
    /// Brings documents written under an older schema version up to this build's, then
    /// records the version. Every step is idempotent: nodes starting together may all
    /// run it.
    async fn upgrade(&self, meta: &Collection<Document>) -> anyhow::Result<()> {
        if refuse_newer_schema(meta).await? < 2 {
            // Version 2: every job has its current script as a version. (The new fields
            // of jobs and runs read as their defaults where missing; see `docs`.)
            // Versions that exist are kept, so a job saved meanwhile loses nothing.
            self.jobs
                .aggregate([
                    doc! { "$lookup": {
                        "from": self.scripts.name(),
                        "localField": "script_rev",
                        "foreignField": "_id",
                        "as": "s",
                    } },
                    doc! { "$unwind": "$s" },
                    doc! { "$project": {
                        "_id": 0,
                        "job_id": "$_id",
                        "version": { "$ifNull": ["$script_version", 1i64] },
                        "rev": "$script_rev",
                        "source": "$s.source",
                        "note": { "$ifNull": ["$script_note", ""] },
                        // When the script was saved is not known; the job's last change
                        // is the closest instant that is.
                        "created_at_ms": "$updated_at_ms",
                    } },
                    doc! { "$merge": {
                        "into": self.versions.name(),
                        "on": ["job_id", "version"],
                        "whenMatched": "keepExisting",
                        "whenNotMatched": "insert",
                    } },
                ])
                .await
                .context("keep the current scripts as versions")?;
        }
        record_schema(meta).await
    }

    /// Inserts a script version unless one with its `(job_id, version)` exists
    /// (`Ok(false)`). Stamped with the server's clock, like revisions.
    async fn insert_version(&self, fields: Document) -> StoreResult<bool> {
        // The filter names the fresh revision, so it never matches and the upsert always
        // inserts: the unique index is what refuses a second version.
        let mut filter = fields.clone();
        filter.remove("source");
        filter.remove("note");
        filter.remove("created_at_ms");
        let res = self
            .versions
            .update_one(
                filter,
                doc! { "$set": fields, "$currentDate": { "at": true } },
            )
            .upsert(true)
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(mongo_err(e, "insert script version")),
        }
    }

    /// Saves `source` as the job's script version `job.script_version`, written before
    /// the job update that makes it count. `VersionConflict` if that version is saved
    /// already (or being saved).
    async fn save_version(
        &self,
        job: &Job,
        source: &str,
        rev: &str,
        expected: u64,
    ) -> StoreResult<()> {
        let fields = version_fields(job, source, rev, job.updated_at_ms).ctx("update job")?;
        if self.insert_version(fields.clone()).await? {
            return Ok(());
        }
        // Someone has the number. If the job has not reached it, that save never counted
        // (it failed, or its process died between its two writes) or is still under way;
        // once it is older than the grace period it is the former, and goes.
        let Some(current) = self.current_script_version(&job.id).await? else {
            return Err(StoreError::NotFound(job.id.clone()));
        };
        let number = to_i64(job.script_version, "script_version").ctx("update job")?;
        if current < number {
            let gone = self
                .versions
                .delete_one(doc! {
                    "job_id": &job.id,
                    "version": number,
                    "$expr": { "$lt": ["$at", { "$subtract": ["$$NOW", SCRIPT_GRACE_MS] }] },
                })
                .await
                .ctx("delete an abandoned script version")?
                .deleted_count;
            if gone > 0 && self.insert_version(fields).await? {
                return Ok(());
            }
        }
        Err(StoreError::VersionConflict {
            id: job.id.clone(),
            expected,
        })
    }

    /// The job's current script version; `None` if there is no such job. Versions above
    /// it are saves that did not (or not yet) count, and are never shown.
    async fn current_script_version(&self, job_id: &str) -> StoreResult<Option<i64>> {
        let Some(job) = self
            .jobs
            .find_one(doc! { "_id": job_id })
            .projection(doc! { "script_version": 1 })
            .await
            .ctx("get job of script versions")?
        else {
            return Ok(None);
        };
        // A job from before schema version 2 is at its first version.
        match job.get("script_version") {
            None => Ok(Some(1)),
            Some(_) => int(&job, "script_version")
                .map(Some)
                .ctx("read script version of job"),
        }
    }

    /// Writes a script revision (stamped with the server's clock).
    async fn put_script(&self, rev: &str, job_id: &str, source: &str) -> StoreResult<()> {
        self.scripts
            .update_one(
                doc! { "_id": rev },
                doc! {
                    "$set": { "job_id": job_id, "source": source },
                    "$currentDate": { "at": true },
                },
            )
            .upsert(true)
            .await
            .ctx("write script")?;
        Ok(())
    }

    /// Deletes the version a save that lost wrote; a failure only leaves a version that
    /// is never shown, and goes when the number is saved again after the grace period.
    async fn drop_version(&self, job_id: &str, version: u64, rev: &str) {
        let Ok(version) = i64::try_from(version) else {
            return;
        };
        let filter = doc! { "job_id": job_id, "version": version, "rev": rev };
        if let Err(e) = self.versions.delete_one(filter).await {
            tracing::warn!(error = %e, job = job_id, version, "delete an unused script version");
        }
    }

    /// Deletes a revision that lost; a failure only leaves garbage for the grace sweep.
    async fn drop_script(&self, rev: &str) {
        if let Err(e) = self.scripts.delete_one(doc! { "_id": rev }).await {
            tracing::warn!(error = %e, rev, "delete an unused script revision");
        }
    }

    /// Deletes a job's revisions other than `current` that are older than the grace
    /// period by the server's clock. Best effort.
    async fn sweep_scripts(&self, job_id: &str, current: &str) {
        let filter = doc! {
            "job_id": job_id,
            "_id": { "$ne": current },
            "$expr": { "$lt": ["$at", { "$subtract": ["$$NOW", SCRIPT_GRACE_MS] }] },
        };
        if let Err(e) = self.scripts.delete_many(filter).await {
            tracing::warn!(error = %e, job = job_id, "delete old script revisions");
        }
    }

    /// Deletes runs by id, at most one chunk. Returns how many went.
    async fn delete_runs(&self, ids: Vec<Bson>) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self
            .runs
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .ctx("delete runs")?
            .deleted_count)
    }

    /// Ids of at most [`PRUNE_CHUNK`] runs matching `filter`.
    async fn run_ids(&self, filter: Document) -> StoreResult<Vec<Bson>> {
        let docs: Vec<Document> = self
            .runs
            .find(filter)
            .projection(doc! { "_id": 1 })
            .limit(PRUNE_CHUNK)
            .await
            .ctx("find runs to prune")?
            .try_collect()
            .await
            .ctx("find runs to prune")?;
        docs.into_iter()
            .map(|d| {
                d.get("_id")
                    .cloned()
                    .ok_or_else(|| StoreError::Other(anyhow!("a run without _id")))
            })
            .collect()
    }

    /// Prunes one job's history to its newest `keep` runs, in chunks.
    async fn prune_job(&self, job_id: &str, keep: u32) -> StoreResult<u64> {
        let newest_first = doc! { "scheduled_at_ms": -1, "_id": -1 };
        // The newest run that goes: everything at or after it (in that order) goes too.
        let Some(boundary) = self
            .runs
            .find_one(doc! { "job_id": job_id })
            .sort(newest_first.clone())
            .skip(u64::from(keep))
            .projection(doc! { "_id": 1, "scheduled_at_ms": 1 })
            .await
            .ctx("find the oldest run to keep")?
        else {
            return Ok(0);
        };
        let at = int(&boundary, "scheduled_at_ms").ctx("read run")?;
        let id = string(&boundary, "_id").ctx("read run")?;
        let older = doc! {
            "job_id": job_id,
            "$or": [
                { "scheduled_at_ms": { "$lt": at } },
                { "scheduled_at_ms": at, "_id": { "$lte": &id } },
            ],
        };
        let mut total = 0;
        loop {
            let ids = self.run_ids(older.clone()).await?;
            let n = ids.len();
            total += self.delete_runs(ids).await?;
            if (n as i64) < PRUNE_CHUNK {
                return Ok(total);
            }
        }
    }
}

/// Job writes without their audit entries: the trait's methods add the entries.
impl MongoStore {
    async fn create_job_only(&self, job: &Job, script: &str) -> StoreResult<()> {
        let _permit = self.enter()?;
        let rev = new_rev();
        let doc = job_doc(job, &rev).ctx("create job")?;
        self.put_script(&rev, &job.id, script).await?;
        if let Err(e) = self.jobs.insert_one(doc).await {
            if is_duplicate_key(&e) {
                self.drop_script(&rev).await;
                return Err(StoreError::Duplicate(job.id.clone()));
            }
            // The insert may have been applied (a write concern error, a connection
            // lost after the write), so the revision stays: deleting it could leave the
            // job without its script. At worst it is garbage.
            return Err(mongo_err(e, "insert job"));
        }
        // A delete of an earlier job with this id that died half-way may have left its
        // history behind; the new job starts clean. Best effort: the job is stored.
        if let Err(e) = self.runs.delete_many(doc! { "job_id": &job.id }).await {
            tracing::warn!(error = %e, job = %job.id, "clear leftover runs of a new job");
        }
        // The first version, replacing one such a delete left. Best effort too: without
        // it the job still runs, only its history of scripts lacks the first entry.
        let fields = version_fields(job, script, &rev, job.created_at_ms).ctx("create job")?;
        let key = doc! {
            "job_id": &job.id,
            "version": to_i64(job.script_version, "script_version").ctx("create job")?,
        };
        if let Err(e) = self
            .versions
            .update_one(key, doc! { "$set": fields, "$currentDate": { "at": true } })
            .upsert(true)
            .await
        {
            tracing::warn!(error = %e, job = %job.id, "keep the first script version of a new job");
        }
        Ok(())
    }

    async fn update_job_only(
        &self,
        job: &Job,
        script: Option<&str>,
        expected_version: u64,
    ) -> StoreResult<()> {
        let _permit = self.enter()?;
        let mut set = job_update_fields(job).ctx("update job")?;
        let expected = to_i64(expected_version, "expected version").ctx("update job")?;
        let rev = script.map(|_| new_rev());
        if let (Some(rev), Some(source)) = (&rev, script) {
            self.put_script(rev, &job.id, source).await?;
            if let Err(e) = self.save_version(job, source, rev, expected_version).await {
                self.drop_script(rev).await;
                return Err(e);
            }
            set.insert("script_rev", rev.as_str());
        }
        // One atomic update: the fields, the version and the script revision together.
        let res = self
            .jobs
            .update_one(
                doc! { "_id": &job.id, "version": expected },
                doc! { "$set": set },
            )
            .await;
        let matched = match res {
            Ok(r) => r.matched_count > 0,
            // The update may have been applied (see create_job): the revision stays, and
            // the next update's sweep removes it if nothing points at it.
            Err(e) => return Err(mongo_err(e, "update job")),
        };
        if !matched {
            if let Some(rev) = &rev {
                self.drop_version(&job.id, job.script_version, rev).await;
                self.drop_script(rev).await;
            }
            let exists = self
                .jobs
                .find_one(doc! { "_id": &job.id })
                .projection(doc! { "_id": 1 })
                .await
                .ctx("find job")?
                .is_some();
            return Err(if exists {
                StoreError::VersionConflict {
                    id: job.id.clone(),
                    expected: expected_version,
                }
            } else {
                StoreError::NotFound(job.id.clone())
            });
        }
        if let Some(rev) = &rev {
            self.sweep_scripts(&job.id, rev).await;
        }
        Ok(())
    }

    async fn delete_job_only(&self, id: &str) -> StoreResult<bool> {
        let _permit = self.enter()?;
        let deleted = self
            .jobs
            .delete_one(doc! { "_id": id })
            .await
            .ctx("delete job")?
            .deleted_count;
        // Also when the job was already gone: whatever a half-done delete left.
        self.scripts
            .delete_many(doc! { "job_id": id })
            .await
            .ctx("delete scripts of job")?;
        self.versions
            .delete_many(doc! { "job_id": id })
            .await
            .ctx("delete script versions of job")?;
        self.runs
            .delete_many(doc! { "job_id": id })
            .await
            .ctx("delete runs of job")?;
        self.kv
            .delete_many(doc! { "job_id": id })
            .await
            .ctx("delete kv of job")?;
        Ok(deleted > 0)
    }

    /// Stores a change's audit entry right after the change. MongoDB is used here
    /// without transactions, so this is the one store where a change can stand without
    /// its entry (the process died between the two writes, or the append failed); a
    /// failed append is logged at error level with the whole entry.
    async fn audit_after(&self, audit: Option<&super::AuditEntry>) {
        let Some(e) = audit else { return };
        if let Err(err) = super::AuditStore::append_audit(self, e).await {
            tracing::error!(
                error = %err,
                actor = %e.actor,
                action = %e.action,
                target = %e.target,
                detail = %e.detail_json,
                "a change was made but its audit entry could not be stored"
            );
        }
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn list_script_versions(&self, job_id: &str) -> StoreResult<Vec<ScriptVersion>> {
        let _permit = self.enter()?;
        let Some(current) = self.current_script_version(job_id).await? else {
            return Ok(Vec::new());
        };
        let mut cursor = self
            .versions
            .aggregate([
                doc! { "$match": { "job_id": job_id, "version": { "$lte": current } } },
                doc! { "$sort": { "version": -1 } },
                doc! { "$project": {
                    "_id": 0,
                    "job_id": 1,
                    "version": 1,
                    "note": 1,
                    "created_at_ms": 1,
                    "bytes": { "$strLenBytes": "$source" },
                } },
            ])
            .await
            .ctx("list script versions")?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await.ctx("list script versions")? {
            out.push(read_script_version(&d, false).ctx("list script versions")?);
        }
        Ok(out)
    }

    async fn get_script_version(
        &self,
        job_id: &str,
        version: u64,
    ) -> StoreResult<Option<ScriptVersion>> {
        let _permit = self.enter()?;
        let Ok(version) = i64::try_from(version) else {
            // Never stored: versions are signed 64-bit integers.
            return Ok(None);
        };
        match self.current_script_version(job_id).await? {
            Some(current) if version <= current => {}
            _ => return Ok(None),
        }
        match self
            .versions
            .find_one(doc! { "job_id": job_id, "version": version })
            .await
            .ctx("get script version")?
        {
            Some(d) => Ok(Some(
                read_script_version(&d, true).ctx("get script version")?,
            )),
            None => Ok(None),
        }
    }

    async fn note_duplicate(&self, job_id: &str, scheduled_ms: i64) -> StoreResult<bool> {
        let _permit = self.enter()?;
        // Run ids are UUID v7 (and a run's `_id`): the greatest is the newest record.
        let found = self
            .runs
            .find_one_and_update(
                doc! {
                    "job_id": job_id,
                    "scheduled_at_ms": scheduled_ms,
                    "trigger": { "$ne": Trigger::Manual.as_str() },
                },
                doc! { "$inc": { "duplicates": 1i64 } },
            )
            .sort(doc! { "_id": -1 })
            .projection(doc! { "_id": 1 })
            .await
            .ctx("note duplicate")?;
        Ok(found.is_some())
    }

    async fn create_job_audited(
        &self,
        job: &Job,
        script: &str,
        audit: Option<&super::AuditEntry>,
    ) -> StoreResult<()> {
        self.create_job_only(job, script).await?;
        self.audit_after(audit).await;
        Ok(())
    }

    async fn update_job_audited(
        &self,
        job: &Job,
        script: Option<&str>,
        expected_version: u64,
        audit: Option<&super::AuditEntry>,
    ) -> StoreResult<()> {
        self.update_job_only(job, script, expected_version).await?;
        self.audit_after(audit).await;
        Ok(())
    }

    async fn delete_job_audited(
        &self,
        id: &str,
        audit: Option<&super::AuditEntry>,
    ) -> StoreResult<bool> {
        let deleted = self.delete_job_only(id).await?;
        if deleted {
            self.audit_after(audit).await;
        }
        Ok(deleted)
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        let _permit = self.enter()?;
        match self
            .jobs
            .find_one(doc! { "_id": id })
            .await
            .ctx("get job")?
        {
            Some(d) => Ok(Some(read_job(&d).ctx("get job")?)),
            None => Ok(None),
        }
    }

    async fn get_script(&self, id: &str) -> StoreResult<Option<String>> {
        let _permit = self.enter()?;
        // The job names its revision; an update may switch it (and sweep the old one)
        // between the two reads, so look again a few times.
        for _ in 0..3 {
            let Some(job) = self
                .jobs
                .find_one(doc! { "_id": id })
                .projection(doc! { "script_rev": 1 })
                .await
                .ctx("get job of script")?
            else {
                return Ok(None);
            };
            let rev = string(&job, "script_rev").ctx("read script revision")?;
            if let Some(s) = self
                .scripts
                .find_one(doc! { "_id": &rev, "job_id": id })
                .await
                .ctx("get script")?
            {
                return Ok(Some(string(&s, "source").ctx("read script")?));
            }
        }
        Err(StoreError::Other(anyhow!(
            "the script of job {id} is missing"
        )))
    }

    async fn list_jobs(&self, query: &JobListQuery) -> StoreResult<(Vec<Job>, u64)> {
        let _permit = self.enter()?;
        let filter = job_filter(query);
        let total = self
            .jobs
            .count_documents(filter.clone())
            .await
            .ctx("count jobs")?;
        if query.limit == Some(0) {
            return Ok((Vec::new(), total));
        }
        let mut pipeline = vec![doc! { "$match": filter }];
        if query.order == JobOrder::LastExecTime {
            pipeline.push(doc! { "$addFields": { "_never_ran": { "$cond": [
                { "$eq": [{ "$ifNull": ["$last_started_ms", Bson::Null] }, Bson::Null] }, 1, 0,
            ] } } });
        }
        pipeline.push(doc! { "$sort": job_sort(query.order, query.descending) });
        if query.offset > 0 {
            pipeline.push(doc! { "$skip": limit_i64(query.offset) });
        }
        if let Some(limit) = query.limit {
            pipeline.push(doc! { "$limit": limit_i64(limit) });
        }
        // A sort on the computed `_never_ran` cannot use an index; let a big one spill
        // to disk rather than fail at the in-memory limit.
        let mut cursor = self
            .jobs
            .aggregate(pipeline)
            .allow_disk_use(true)
            .await
            .ctx("list jobs")?;
        let mut jobs = Vec::new();
        while let Some(d) = cursor.try_next().await.ctx("list jobs")? {
            jobs.push(read_job(&d).ctx("list jobs")?);
        }
        Ok((jobs, total))
    }

    async fn enabled_jobs_page(&self, after: Option<&str>, limit: u64) -> StoreResult<Vec<Job>> {
        let _permit = self.enter()?;
        if limit == 0 {
            // A limit of 0 means none to MongoDB.
            return Ok(Vec::new());
        }
        // Keyset on `_id` (the job id; strings compare by bytes, as the other stores).
        let mut cursor = self
            .jobs
            .find(enabled_after(after))
            .sort(doc! { "_id": 1 })
            .limit(limit_i64(limit))
            .await
            .ctx("read enabled jobs")?;
        let mut jobs = Vec::new();
        while let Some(d) = cursor.try_next().await.ctx("read enabled jobs")? {
            jobs.push(read_job(&d).ctx("read enabled jobs")?);
        }
        Ok(jobs)
    }

    async fn enabled_versions_page(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<(String, u64)>> {
        let _permit = self.enter()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cursor = self
            .jobs
            .find(enabled_after(after))
            .projection(doc! { "_id": 1, "version": 1 })
            .sort(doc! { "_id": 1 })
            .limit(limit_i64(limit))
            .await
            .ctx("read enabled versions")?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await.ctx("read enabled versions")? {
            let id = string(&d, "_id").ctx("read enabled versions")?;
            let version = int(&d, "version").ctx("read enabled versions")?;
            let version = u64::try_from(version).map_err(|_| {
                StoreError::Other(anyhow!("job {id}: stored version {version} is negative"))
            })?;
            out.push((id, version));
        }
        Ok(out)
    }

    async fn count_jobs(&self) -> StoreResult<(u64, u64)> {
        let _permit = self.enter()?;
        let mut cursor = self
            .jobs
            .aggregate([doc! { "$group": { "_id": "$enabled", "n": { "$sum": 1 } } }])
            .await
            .ctx("count jobs")?;
        let (mut off, mut on) = (0u64, 0u64);
        while let Some(d) = cursor.try_next().await.ctx("count jobs")? {
            let n = u64::try_from(int(&d, "n").ctx("count jobs")?).unwrap_or(0);
            match d.get("_id") {
                Some(Bson::Boolean(true)) => on += n,
                Some(Bson::Boolean(false)) => off += n,
                other => {
                    return Err(StoreError::Other(anyhow!(
                        "count jobs: a job has enabled = {other:?}"
                    )));
                }
            }
        }
        Ok((off, on))
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> StoreResult<()> {
        let _permit = self.enter()?;
        if runs.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = runs
            .iter()
            .map(|r| r.job_id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let known = self.existing_jobs(&ids).await?;
        let kept: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| known.contains(r.job_id.as_str()))
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        // One write per run id (the last record of it wins, as if applied in order).
        let mut last_of: HashMap<&str, &RunRecord> = HashMap::with_capacity(kept.len());
        for r in &kept {
            last_of.insert(r.run_id.as_str(), r);
        }
        let mut docs = Vec::with_capacity(last_of.len());
        for r in last_of.values() {
            docs.push((r.run_id.clone(), run_upsert(r).ctx("encode run")?));
        }
        let runs_coll = &self.runs;
        futures_util::stream::iter(docs)
            .map(|(id, update): (String, Document)| async move {
                runs_coll
                    .update_one(doc! { "_id": id }, update)
                    .upsert(true)
                    .await
                    .ctx("upsert run")
            })
            .buffer_unordered(RECORD_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        for (job_id, f) in folds(&kept) {
            self.jobs
                .update_one(doc! { "_id": job_id }, fold_update(&f))
                .await
                .ctx("fold runs into job")?;
        }
        // A job deleted while this ran may have missed these runs in its delete: drop
        // them now. (If the delete comes after this check, it removes them itself.)
        let kept_ids: Vec<&str> = kept
            .iter()
            .map(|r| r.job_id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let still = self.existing_jobs(&kept_ids).await?;
        let gone: Vec<&str> = kept_ids
            .into_iter()
            .filter(|id| !still.contains(*id))
            .collect();
        if !gone.is_empty() {
            self.runs
                .delete_many(doc! { "job_id": { "$in": gone } })
                .await
                .ctx("drop runs of deleted jobs")?;
        }
        Ok(())
    }

    async fn list_runs(&self, job_id: &str, query: &RunListQuery) -> StoreResult<Vec<RunRecord>> {
        let _permit = self.enter()?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "job_id": job_id };
        if let Some(o) = &query.outcome {
            filter.insert("outcome", o.as_str());
        }
        let mut at = Document::new();
        if let Some(before) = query.before_ms {
            at.insert("$lt", before);
        }
        if let Some(since) = query.since_ms {
            at.insert("$gte", since);
        }
        if !at.is_empty() {
            filter.insert("scheduled_at_ms", at);
        }
        self.find_runs(filter, limit_i64(query.limit), "list runs")
            .await
    }

    async fn get_run(&self, run_id: &str) -> StoreResult<Option<RunRecord>> {
        let _permit = self.enter()?;
        match self
            .runs
            .find_one(doc! { "_id": run_id })
            .await
            .ctx("get run")?
        {
            Some(d) => Ok(Some(read_run(&d, true).ctx("get run")?)),
            None => Ok(None),
        }
    }

    async fn recent_runs(&self, since_ms: i64, limit: u64) -> StoreResult<Vec<RunRecord>> {
        let _permit = self.enter()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.find_runs(
            doc! { "scheduled_at_ms": { "$gte": since_ms } },
            limit_i64(limit),
            "recent runs",
        )
        .await
    }

    async fn prune_runs(&self, keep_per_job: u32, older_than_ms: i64) -> StoreResult<u64> {
        let _permit = self.enter()?;
        let mut total = 0;
        // By age, in chunks.
        loop {
            let ids = self
                .run_ids(doc! { "scheduled_at_ms": { "$lt": older_than_ms } })
                .await?;
            let n = ids.len();
            total += self.delete_runs(ids).await?;
            if (n as i64) < PRUNE_CHUNK {
                break;
            }
        }
        // By count: the jobs with more runs than kept, a page of job ids at a time.
        let mut after: Option<String> = None;
        loop {
            let mut page = doc! {};
            if let Some(after) = &after {
                page.insert("_id", doc! { "$gt": after.as_str() });
            }
            let ids: Vec<Document> = self
                .jobs
                .find(page)
                .projection(doc! { "_id": 1 })
                .sort(doc! { "_id": 1 })
                .limit(PRUNE_JOB_PAGE)
                .await
                .ctx("page jobs to prune")?
                .try_collect()
                .await
                .ctx("page jobs to prune")?;
            let Some(last) = ids.last() else { break };
            let last = string(last, "_id").ctx("read job id")?;
            let first = after.take();
            let mut range = doc! { "$lte": last.as_str() };
            if let Some(first) = &first {
                range.insert("$gt", first.as_str());
            }
            let mut crowded = self
                .runs
                .aggregate([
                    doc! { "$match": { "job_id": range } },
                    doc! { "$group": { "_id": "$job_id", "n": { "$sum": 1 } } },
                    doc! { "$match": { "n": { "$gt": i64::from(keep_per_job) } } },
                ])
                .await
                .ctx("count runs per job")?;
            let mut jobs = Vec::new();
            while let Some(d) = crowded.try_next().await.ctx("count runs per job")? {
                jobs.push(string(&d, "_id").ctx("read job id")?);
            }
            for job in jobs {
                total += self.prune_job(&job, keep_per_job).await?;
            }
            if (ids.len() as i64) < PRUNE_JOB_PAGE {
                break;
            }
            after = Some(last);
        }
        Ok(total)
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Calls in flight finish; new ones are refused.
        match self.in_flight.acquire_many(MAX_IN_FLIGHT).await {
            Ok(permits) => permits.forget(),
            Err(_) => return,
        }
        self.in_flight.close();
        self.client.clone().shutdown().await;
    }
}

impl MongoStore {
    /// Which of `ids` are jobs now.
    async fn existing_jobs(&self, ids: &[&str]) -> StoreResult<HashSet<String>> {
        let docs: Vec<Document> = self
            .jobs
            .find(doc! { "_id": { "$in": ids } })
            .projection(doc! { "_id": 1 })
            .await
            .ctx("find jobs of runs")?
            .try_collect()
            .await
            .ctx("find jobs of runs")?;
        docs.iter()
            .map(|d| string(d, "_id"))
            .collect::<anyhow::Result<_>>()
            .ctx("read job ids")
    }

    /// Runs matching `filter`, newest first, without their logs.
    async fn find_runs(
        &self,
        filter: Document,
        limit: i64,
        what: &'static str,
    ) -> StoreResult<Vec<RunRecord>> {
        let mut cursor = self
            .runs
            .find(filter)
            .sort(doc! { "scheduled_at_ms": -1, "_id": -1 })
            .limit(limit)
            .projection(doc! { "log": 0 })
            .await
            .ctx(what)?;
        let mut out = Vec::new();
        while let Some(d) = cursor.try_next().await.ctx(what)? {
            out.push(read_run(&d, false).ctx(what)?);
        }
        Ok(out)
    }
}
