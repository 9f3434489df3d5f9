//! Mapping between PostgreSQL rows and the model: column lists, parameters, enum texts,
//! integer ranges, the log encoding, script versions.
//!
//! Everything read from the database is checked: an unknown enum text, a negative count
//! or malformed log JSON is an error naming the row, never a panic and never a default.
//! Text going in is checked for NUL characters, which PostgreSQL cannot store in `text`.

use std::borrow::Cow;

use anyhow::{Context, anyhow, bail};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::job::{
    ExecType, Job, LastRun, LogLine, MisfirePolicy, OverlapPolicy, RetryPolicy, RunRecord,
    ScriptVersion, Trigger, outcome,
};

/// Columns of `jobs` in the order [`read_job`] expects and [`JobParams`] binds.
pub(super) const JOB_COLUMNS: &str = "id, name, description, exec_type, cron, exec_at_ms, \
     timezone, enabled, time_limit_ms, memory_limit_mb, overlap, misfire, misfire_window_s, \
     version, created_at_ms, updated_at_ms, last_scheduled_ms, last_started_ms, last_outcome, \
     max_concurrent, max_catch_up, retry_max_retries, retry_backoff_ms, retry_max_backoff_ms, \
     jitter_s, paused_until_ms, script_version, script_note, secrets";

/// Columns of `runs` but the log, in the order [`read_run`] expects.
pub(super) const RUN_COLUMNS: &str = "run_id, job_id, trigger_kind, scheduled_at_ms, \
     started_at_ms, ended_at_ms, outcome, node, error_message, error_stack, cpu_time_us, \
     peak_memory_bytes, log_truncated, attempt, script_version, duplicates";

/// Columns of `script_versions` in the order [`read_script_version`] expects: the
/// source's length in bytes instead of the source (listings), or also the source.
pub(super) const VERSION_COLUMNS: &str = "job_id, version, note, created_at_ms, \
     octet_length(source)::bigint";

/// Whether a record counts for `last.outcome`: a run that ended, not a placeholder.
pub(super) fn is_finished(outcome_text: &str) -> bool {
    !matches!(
        outcome_text,
        outcome::RUNNING | outcome::SKIPPED | outcome::MISSED
    )
}

/// A `u64` of the model as a `bigint`.
pub(super) fn to_i64(v: u64, what: &str) -> anyhow::Result<i64> {
    i64::try_from(v).with_context(|| format!("{what} {v} is too large to store"))
}

fn to_u64(v: i64, what: &str) -> anyhow::Result<u64> {
    u64::try_from(v).with_context(|| format!("stored {what} {v} is negative"))
}

fn to_u32(v: i64, what: &str) -> anyhow::Result<u32> {
    u32::try_from(v).with_context(|| format!("stored {what} {v} is out of range"))
}

/// Refuses text PostgreSQL cannot store (a NUL character), naming the field.
pub(super) fn storable<'a>(text: &'a str, what: &str) -> anyhow::Result<&'a str> {
    if text.contains('\0') {
        bail!("the {what} contains a NUL character, which PostgreSQL cannot store");
    }
    Ok(text)
}

/// Text of a run record made storable: NUL characters become U+FFFD. History is
/// recorded, not validated, and one odd byte must not lose a whole batch of records.
pub(super) fn lossy(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The parameters `$1..$28` of a job row, in [`JOB_COLUMNS`] order, converted and
/// checked.
pub(super) struct JobParams<'a> {
    job: &'a Job,
    pub(super) exec_type: i16,
    pub(super) time_limit_ms: i64,
    pub(super) memory_limit_mb: i64,
    pub(super) misfire_window_s: i64,
    pub(super) version: i64,
    pub(super) overlap: &'static str,
    pub(super) misfire: &'static str,
    pub(super) max_concurrent: i64,
    pub(super) max_catch_up: i64,
    pub(super) retry_max_retries: i64,
    pub(super) retry_backoff_ms: i64,
    pub(super) retry_max_backoff_ms: i64,
    pub(super) jitter_s: i64,
    pub(super) script_version: i64,
    /// The granted secrets' names, comma-joined.
    pub(super) grants: String,
}

impl<'a> JobParams<'a> {
    pub(super) fn new(job: &'a Job) -> anyhow::Result<Self> {
        storable(&job.id, "job id")?;
        storable(&job.name, "job name")?;
        storable(&job.description, "job description")?;
        storable(&job.cron, "cron expression")?;
        storable(&job.timezone, "time zone")?;
        storable(&job.script_note, "script note")?;
        if let Some(o) = &job.last.outcome {
            storable(o, "last outcome")?;
        }
        Ok(JobParams {
            job,
            exec_type: i16::from(job.exec_type.code()),
            time_limit_ms: to_i64(job.time_limit_ms, "time_limit_ms")?,
            memory_limit_mb: to_i64(job.memory_limit_mb, "memory_limit_mb")?,
            misfire_window_s: i64::from(job.misfire_window_s),
            version: to_i64(job.version, "version")?,
            overlap: job.overlap.as_str(),
            misfire: job.misfire.as_str(),
            max_concurrent: i64::from(job.max_concurrent),
            max_catch_up: i64::from(job.max_catch_up),
            retry_max_retries: i64::from(job.retry.max_retries),
            retry_backoff_ms: to_i64(job.retry.backoff_ms, "retry backoff_ms")?,
            retry_max_backoff_ms: to_i64(job.retry.max_backoff_ms, "retry max_backoff_ms")?,
            jitter_s: i64::from(job.jitter_s),
            script_version: to_i64(job.script_version, "script_version")?,
            grants: crate::store::join_grants(&job.secrets),
        })
    }

    /// All 29 columns, for an insert.
    pub(super) fn all(&self) -> [&(dyn ToSql + Sync); 29] {
        let j = self.job;
        [
            &j.id,
            &j.name,
            &j.description,
            &self.exec_type,
            &j.cron,
            &j.exec_at_ms,
            &j.timezone,
            &j.enabled,
            &self.time_limit_ms,
            &self.memory_limit_mb,
            &self.overlap,
            &self.misfire,
            &self.misfire_window_s,
            &self.version,
            &j.created_at_ms,
            &j.updated_at_ms,
            &j.last.scheduled_at_ms,
            &j.last.started_at_ms,
            &j.last.outcome,
            &self.max_concurrent,
            &self.max_catch_up,
            &self.retry_max_retries,
            &self.retry_backoff_ms,
            &self.retry_max_backoff_ms,
            &self.jitter_s,
            &j.paused_until_ms,
            &self.script_version,
            &j.script_note,
            &self.grants,
        ]
    }

    /// The columns an update replaces (`$1` id to `$15` updated_at_ms, then `$16`
    /// max_concurrent to `$24` script_note, `$25` secrets; see
    /// [`super::PostgresStore::update_job`]).
    pub(super) fn for_update(&self) -> [&(dyn ToSql + Sync); 25] {
        let j = self.job;
        [
            &j.id,
            &j.name,
            &j.description,
            &self.exec_type,
            &j.cron,
            &j.exec_at_ms,
            &j.timezone,
            &j.enabled,
            &self.time_limit_ms,
            &self.memory_limit_mb,
            &self.overlap,
            &self.misfire,
            &self.misfire_window_s,
            &self.version,
            &j.updated_at_ms,
            &self.max_concurrent,
            &self.max_catch_up,
            &self.retry_max_retries,
            &self.retry_backoff_ms,
            &self.retry_max_backoff_ms,
            &self.jitter_s,
            &j.paused_until_ms,
            &self.script_version,
            &j.script_note,
            &self.grants,
        ]
    }
}

/// Reads a row selected with [`JOB_COLUMNS`].
pub(super) fn read_job(row: &Row) -> anyhow::Result<Job> {
    let id: String = row.try_get(0).context("read job id")?;
    read_job_fields(row, &id).with_context(|| format!("read job {id}"))
}

fn read_job_fields(row: &Row, id: &str) -> anyhow::Result<Job> {
    let exec_type: i16 = row.try_get(3)?;
    let exec_type = ExecType::from_code(i64::from(exec_type))
        .ok_or_else(|| anyhow!("unknown exec_type {exec_type}"))?;
    let overlap: &str = row.try_get(10)?;
    let overlap =
        OverlapPolicy::parse(overlap).ok_or_else(|| anyhow!("unknown overlap {overlap:?}"))?;
    let misfire: &str = row.try_get(11)?;
    let misfire =
        MisfirePolicy::parse(misfire).ok_or_else(|| anyhow!("unknown misfire {misfire:?}"))?;
    let misfire_window_s: i64 = row.try_get(12)?;
    let misfire_window_s = u32::try_from(misfire_window_s)
        .with_context(|| format!("stored misfire_window_s {misfire_window_s} is out of range"))?;
    Ok(Job {
        id: id.to_owned(),
        name: row.try_get(1)?,
        description: row.try_get(2)?,
        exec_type,
        cron: row.try_get(4)?,
        exec_at_ms: row.try_get(5)?,
        timezone: row.try_get(6)?,
        enabled: row.try_get(7)?,
        time_limit_ms: to_u64(row.try_get(8)?, "time_limit_ms")?,
        memory_limit_mb: to_u64(row.try_get(9)?, "memory_limit_mb")?,
        overlap,
        misfire,
        misfire_window_s,
        max_concurrent: to_u32(row.try_get(19)?, "max_concurrent")?,
        max_catch_up: to_u32(row.try_get(20)?, "max_catch_up")?,
        retry: RetryPolicy {
            max_retries: to_u32(row.try_get(21)?, "retry_max_retries")?,
            backoff_ms: to_u64(row.try_get(22)?, "retry_backoff_ms")?,
            max_backoff_ms: to_u64(row.try_get(23)?, "retry_max_backoff_ms")?,
        },
        jitter_s: to_u32(row.try_get(24)?, "jitter_s")?,
        paused_until_ms: row.try_get(25)?,
        script_version: to_u64(row.try_get(26)?, "script_version")?,
        script_note: row.try_get(27)?,
        secrets: crate::store::split_grants(&row.try_get::<_, String>(28)?)?,
        version: to_u64(row.try_get(13)?, "version")?,
        created_at_ms: row.try_get(14)?,
        updated_at_ms: row.try_get(15)?,
        last: LastRun {
            scheduled_at_ms: row.try_get(16)?,
            started_at_ms: row.try_get(17)?,
            outcome: row.try_get(18)?,
        },
    })
}

/// Reads a row selected with [`RUN_COLUMNS`], plus the log in column 16 if `with_log`.
pub(super) fn read_run(row: &Row, with_log: bool) -> anyhow::Result<RunRecord> {
    let run_id: String = row.try_get(0).context("read run id")?;
    read_run_fields(row, &run_id, with_log).with_context(|| format!("read run {run_id}"))
}

fn read_run_fields(row: &Row, run_id: &str, with_log: bool) -> anyhow::Result<RunRecord> {
    let trigger: &str = row.try_get(2)?;
    let trigger = Trigger::parse(trigger).ok_or_else(|| anyhow!("unknown trigger {trigger:?}"))?;
    let cpu: Option<i64> = row.try_get(10)?;
    let mem: Option<i64> = row.try_get(11)?;
    let script_version: Option<i64> = row.try_get(14)?;
    let log = if with_log {
        decode_log(row.try_get(16)?)?
    } else {
        Vec::new()
    };
    Ok(RunRecord {
        run_id: run_id.to_owned(),
        job_id: row.try_get(1)?,
        trigger,
        scheduled_at_ms: row.try_get(3)?,
        started_at_ms: row.try_get(4)?,
        ended_at_ms: row.try_get(5)?,
        outcome: row.try_get(6)?,
        attempt: to_u32(row.try_get(13)?, "attempt")?,
        script_version: script_version
            .map(|v| to_u64(v, "script_version"))
            .transpose()?,
        duplicates: to_u32(row.try_get(15)?, "duplicates")?,
        node: row.try_get(7)?,
        error_message: row.try_get(8)?,
        error_stack: row.try_get(9)?,
        cpu_time_us: cpu.map(|v| to_u64(v, "cpu_time_us")).transpose()?,
        peak_memory_bytes: mem.map(|v| to_u64(v, "peak_memory_bytes")).transpose()?,
        log,
        log_truncated: row.try_get(12)?,
    })
}

/// Reads a row selected with [`VERSION_COLUMNS`], plus the source in column 5 if
/// `with_source`.
pub(super) fn read_script_version(row: &Row, with_source: bool) -> anyhow::Result<ScriptVersion> {
    let job_id: String = row.try_get(0).context("read script version")?;
    let version: i64 = row.try_get(1).context("read script version")?;
    read_version_fields(row, with_source)
        .with_context(|| format!("read version {version} of the script of job {job_id}"))
}

fn read_version_fields(row: &Row, with_source: bool) -> anyhow::Result<ScriptVersion> {
    Ok(ScriptVersion {
        version: to_u64(row.try_get(1)?, "version")?,
        note: row.try_get(2)?,
        created_at_ms: row.try_get(3)?,
        bytes: to_u64(row.try_get(4)?, "source length")?,
        source: if with_source {
            Some(row.try_get(5)?)
        } else {
            None
        },
    })
}

/// The log as a compact JSON array of `[seq, level, text, at_ms]` (the SQLite store's
/// encoding). JSON escapes a NUL character, so any log text can be stored.
pub(super) fn encode_log(log: &[LogLine]) -> anyhow::Result<String> {
    let rows: Vec<(u32, &str, &str, i64)> = log
        .iter()
        .map(|l| (l.seq, l.level.as_str(), l.text.as_str(), l.at_ms))
        .collect();
    serde_json::to_string(&rows).context("encode log")
}

fn decode_log(json: &str) -> anyhow::Result<Vec<LogLine>> {
    let rows: Vec<(u32, String, String, i64)> =
        serde_json::from_str(json).context("decode stored log")?;
    Ok(rows
        .into_iter()
        .map(|(seq, level, text, at_ms)| LogLine {
            seq,
            level,
            text,
            at_ms,
        })
        .collect())
}
