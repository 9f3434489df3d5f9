//! Mapping between MongoDB documents and the model: field names, enum texts, integer
//! ranges, script versions, the search pattern.
//!
//! Everything read from the database is checked: a missing field, an unknown enum
//! text, a negative count or a value of the wrong BSON type is an error naming the
//! document, never a panic and never a default. The one exception are the fields that
//! schema version 2 added (the job's policies and script version, the run's attempt
//! and duplicates): documents written before it lack them, and they read as missing
//! columns do in the SQL stores, with a new job's defaults. Integers are written as
//! 64-bit and read as 32- or 64-bit, so documents touched by other tools still read.

use anyhow::{Context, anyhow, bail};
use mongodb::bson::{Bson, Document, doc};

use crate::job::{
    ExecType, Job, LastRun, LogLine, MisfirePolicy, OverlapPolicy, RetryPolicy, RunRecord,
    ScriptVersion, Trigger, outcome,
};

/// Whether a record counts for `last.outcome`: a run that ended, not a placeholder.
pub(super) fn is_finished(outcome_text: &str) -> bool {
    !matches!(
        outcome_text,
        outcome::RUNNING | outcome::SKIPPED | outcome::MISSED
    )
}

pub(super) fn to_i64(v: u64, what: &str) -> anyhow::Result<i64> {
    i64::try_from(v).with_context(|| format!("{what} {v} is too large to store"))
}

fn to_u64(v: i64, what: &str) -> anyhow::Result<u64> {
    u64::try_from(v).with_context(|| format!("stored {what} {v} is negative"))
}

fn to_u32(v: i64, what: &str) -> anyhow::Result<u32> {
    u32::try_from(v).with_context(|| format!("stored {what} {v} is out of range"))
}

fn opt_to_i64(v: Option<u64>, what: &str) -> anyhow::Result<Bson> {
    Ok(match v {
        Some(v) => Bson::Int64(to_i64(v, what)?),
        None => Bson::Null,
    })
}

fn opt_i64(v: Option<i64>) -> Bson {
    v.map_or(Bson::Null, Bson::Int64)
}

fn opt_str(v: Option<&str>) -> Bson {
    v.map_or(Bson::Null, |s| Bson::String(s.to_owned()))
}

/// The fields an update of a job replaces (all but `_id`, `created_at_ms`, `last_*`).
pub(super) fn job_update_fields(job: &Job) -> anyhow::Result<Document> {
    Ok(doc! {
        "name": &job.name,
        "description": &job.description,
        "exec_type": i32::from(job.exec_type.code()),
        "cron": &job.cron,
        "exec_at_ms": opt_i64(job.exec_at_ms),
        "timezone": &job.timezone,
        "enabled": job.enabled,
        "time_limit_ms": to_i64(job.time_limit_ms, "time_limit_ms")?,
        "memory_limit_mb": to_i64(job.memory_limit_mb, "memory_limit_mb")?,
        "overlap": job.overlap.as_str(),
        "misfire": job.misfire.as_str(),
        "misfire_window_s": i64::from(job.misfire_window_s),
        "version": to_i64(job.version, "version")?,
        "updated_at_ms": job.updated_at_ms,
        "max_concurrent": i64::from(job.max_concurrent),
        "max_catch_up": i64::from(job.max_catch_up),
        "retry_max_retries": i64::from(job.retry.max_retries),
        "retry_backoff_ms": to_i64(job.retry.backoff_ms, "retry backoff_ms")?,
        "retry_max_backoff_ms": to_i64(job.retry.max_backoff_ms, "retry max_backoff_ms")?,
        "jitter_s": i64::from(job.jitter_s),
        "paused_until_ms": opt_i64(job.paused_until_ms),
        "script_version": to_i64(job.script_version, "script_version")?,
        "script_note": &job.script_note,
        "secrets": crate::store::join_grants(&job.secrets),
    })
}

/// A whole job document, pointing at its script revision.
pub(super) fn job_doc(job: &Job, script_rev: &str) -> anyhow::Result<Document> {
    let mut d = doc! { "_id": &job.id };
    d.extend(job_update_fields(job)?);
    d.extend(doc! {
        "created_at_ms": job.created_at_ms,
        "last_scheduled_ms": opt_i64(job.last.scheduled_at_ms),
        "last_started_ms": opt_i64(job.last.started_at_ms),
        "last_outcome": opt_str(job.last.outcome.as_deref()),
        // Ordering key of the run `last_outcome` came from; see `record_runs`.
        "last_outcome_at_ms": Bson::Null,
        "last_outcome_run_id": Bson::Null,
        "script_rev": script_rev,
    });
    Ok(d)
}

/// A run document as a first upsert stores it; `_id` is the run id.
#[cfg(test)]
pub(super) fn run_doc(run: &RunRecord) -> anyhow::Result<Document> {
    let mut d = run_fields(run)?;
    d.insert("duplicates", i64::from(run.duplicates));
    Ok(d)
}

/// The upsert of a run: every field but `duplicates` replaced, `duplicates` only ever
/// raised (`note_duplicate` may have counted one since the record was made).
pub(super) fn run_upsert(run: &RunRecord) -> anyhow::Result<Document> {
    let mut set = run_fields(run)?;
    set.remove("_id");
    Ok(doc! {
        "$set": set,
        "$max": { "duplicates": i64::from(run.duplicates) },
    })
}

fn run_fields(run: &RunRecord) -> anyhow::Result<Document> {
    let log: Vec<Bson> = run
        .log
        .iter()
        .map(|l| {
            Bson::Document(doc! {
                "seq": i64::from(l.seq),
                "level": &l.level,
                "text": &l.text,
                "at_ms": l.at_ms,
            })
        })
        .collect();
    Ok(doc! {
        "_id": &run.run_id,
        "job_id": &run.job_id,
        "trigger": run.trigger.as_str(),
        "scheduled_at_ms": run.scheduled_at_ms,
        "started_at_ms": opt_i64(run.started_at_ms),
        "ended_at_ms": opt_i64(run.ended_at_ms),
        "outcome": &run.outcome,
        "node": &run.node,
        "error_message": opt_str(run.error_message.as_deref()),
        "error_stack": opt_str(run.error_stack.as_deref()),
        "cpu_time_us": opt_to_i64(run.cpu_time_us, "cpu_time_us")?,
        "peak_memory_bytes": opt_to_i64(run.peak_memory_bytes, "peak_memory_bytes")?,
        "log": log,
        "log_truncated": run.log_truncated,
        "attempt": i64::from(run.attempt),
        "script_version": opt_to_i64(run.script_version, "script_version")?,
    })
}

fn field<'a>(d: &'a Document, key: &str) -> anyhow::Result<&'a Bson> {
    d.get(key).ok_or_else(|| anyhow!("field {key} is missing"))
}

pub(super) fn string(d: &Document, key: &str) -> anyhow::Result<String> {
    match field(d, key)? {
        Bson::String(s) => Ok(s.clone()),
        other => bail!("field {key} is {:?}, not a string", other.element_type()),
    }
}

fn opt_string(d: &Document, key: &str) -> anyhow::Result<Option<String>> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("field {key} is {:?}, not a string", other.element_type()),
    }
}

fn boolean(d: &Document, key: &str) -> anyhow::Result<bool> {
    match field(d, key)? {
        Bson::Boolean(b) => Ok(*b),
        other => bail!("field {key} is {:?}, not a boolean", other.element_type()),
    }
}

fn as_int(v: &Bson, key: &str) -> anyhow::Result<i64> {
    match v {
        Bson::Int64(i) => Ok(*i),
        Bson::Int32(i) => Ok(i64::from(*i)),
        other => bail!("field {key} is {:?}, not an integer", other.element_type()),
    }
}

pub(super) fn int(d: &Document, key: &str) -> anyhow::Result<i64> {
    as_int(field(d, key)?, key)
}

fn opt_int(d: &Document, key: &str) -> anyhow::Result<Option<i64>> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => as_int(v, key).map(Some),
    }
}

/// A field schema version 2 added: `default` when the document predates it.
fn int_since_v2(d: &Document, key: &str, default: i64) -> anyhow::Result<i64> {
    match d.get(key) {
        None => Ok(default),
        Some(v) => as_int(v, key),
    }
}

fn string_since_v2(d: &Document, key: &str) -> anyhow::Result<String> {
    match d.get(key) {
        None => Ok(String::new()),
        Some(_) => string(d, key),
    }
}

/// Reads a job document.
pub(super) fn read_job(d: &Document) -> anyhow::Result<Job> {
    let id = string(d, "_id").context("read job id")?;
    read_job_fields(d, &id).with_context(|| format!("read job {id}"))
}

fn read_job_fields(d: &Document, id: &str) -> anyhow::Result<Job> {
    let exec_type = int(d, "exec_type")?;
    let exec_type =
        ExecType::from_code(exec_type).ok_or_else(|| anyhow!("unknown exec_type {exec_type}"))?;
    let overlap = string(d, "overlap")?;
    let overlap =
        OverlapPolicy::parse(&overlap).ok_or_else(|| anyhow!("unknown overlap {overlap:?}"))?;
    let misfire = string(d, "misfire")?;
    let misfire =
        MisfirePolicy::parse(&misfire).ok_or_else(|| anyhow!("unknown misfire {misfire:?}"))?;
    let misfire_window_s = int(d, "misfire_window_s")?;
    let misfire_window_s = u32::try_from(misfire_window_s)
        .with_context(|| format!("stored misfire_window_s {misfire_window_s} is out of range"))?;
    Ok(Job {
        id: id.to_owned(),
        name: string(d, "name")?,
        description: string(d, "description")?,
        exec_type,
        cron: string(d, "cron")?,
        exec_at_ms: opt_int(d, "exec_at_ms")?,
        timezone: string(d, "timezone")?,
        enabled: boolean(d, "enabled")?,
        time_limit_ms: to_u64(int(d, "time_limit_ms")?, "time_limit_ms")?,
        memory_limit_mb: to_u64(int(d, "memory_limit_mb")?, "memory_limit_mb")?,
        overlap,
        misfire,
        misfire_window_s,
        max_concurrent: to_u32(int_since_v2(d, "max_concurrent", 1)?, "max_concurrent")?,
        max_catch_up: to_u32(int_since_v2(d, "max_catch_up", 10)?, "max_catch_up")?,
        retry: RetryPolicy {
            max_retries: to_u32(
                int_since_v2(d, "retry_max_retries", 0)?,
                "retry_max_retries",
            )?,
            backoff_ms: to_u64(
                int_since_v2(d, "retry_backoff_ms", 1_000)?,
                "retry_backoff_ms",
            )?,
            max_backoff_ms: to_u64(
                int_since_v2(d, "retry_max_backoff_ms", 60_000)?,
                "retry_max_backoff_ms",
            )?,
        },
        jitter_s: to_u32(int_since_v2(d, "jitter_s", 0)?, "jitter_s")?,
        paused_until_ms: opt_int(d, "paused_until_ms")?,
        script_version: to_u64(int_since_v2(d, "script_version", 1)?, "script_version")?,
        script_note: string_since_v2(d, "script_note")?,
        secrets: crate::store::split_grants(&string_since_v2(d, "secrets")?)?,
        version: to_u64(int(d, "version")?, "version")?,
        created_at_ms: int(d, "created_at_ms")?,
        updated_at_ms: int(d, "updated_at_ms")?,
        last: LastRun {
            scheduled_at_ms: opt_int(d, "last_scheduled_ms")?,
            started_at_ms: opt_int(d, "last_started_ms")?,
            outcome: opt_string(d, "last_outcome")?,
        },
    })
}

/// Reads a run document; its log only if `with_log` (lists project it away).
pub(super) fn read_run(d: &Document, with_log: bool) -> anyhow::Result<RunRecord> {
    let run_id = string(d, "_id").context("read run id")?;
    read_run_fields(d, &run_id, with_log).with_context(|| format!("read run {run_id}"))
}

fn read_run_fields(d: &Document, run_id: &str, with_log: bool) -> anyhow::Result<RunRecord> {
    let trigger = string(d, "trigger")?;
    let trigger = Trigger::parse(&trigger).ok_or_else(|| anyhow!("unknown trigger {trigger:?}"))?;
    let log = if with_log {
        read_log(field(d, "log")?)?
    } else {
        Vec::new()
    };
    Ok(RunRecord {
        run_id: run_id.to_owned(),
        job_id: string(d, "job_id")?,
        trigger,
        scheduled_at_ms: int(d, "scheduled_at_ms")?,
        started_at_ms: opt_int(d, "started_at_ms")?,
        ended_at_ms: opt_int(d, "ended_at_ms")?,
        outcome: string(d, "outcome")?,
        attempt: to_u32(int_since_v2(d, "attempt", 1)?, "attempt")?,
        script_version: opt_int(d, "script_version")?
            .map(|v| to_u64(v, "script_version"))
            .transpose()?,
        duplicates: to_u32(int_since_v2(d, "duplicates", 0)?, "duplicates")?,
        node: string(d, "node")?,
        error_message: opt_string(d, "error_message")?,
        error_stack: opt_string(d, "error_stack")?,
        cpu_time_us: opt_int(d, "cpu_time_us")?
            .map(|v| to_u64(v, "cpu_time_us"))
            .transpose()?,
        peak_memory_bytes: opt_int(d, "peak_memory_bytes")?
            .map(|v| to_u64(v, "peak_memory_bytes"))
            .transpose()?,
        log,
        log_truncated: boolean(d, "log_truncated")?,
    })
}

/// A script version document: `(job_id, version)` is unique; `rev` is the script
/// revision the save wrote (what tells an abandoned save's version from a kept one).
pub(super) fn version_fields(
    job: &Job,
    source: &str,
    rev: &str,
    at_ms: i64,
) -> anyhow::Result<Document> {
    Ok(doc! {
        "job_id": &job.id,
        "version": to_i64(job.script_version, "script_version")?,
        "rev": rev,
        "source": source,
        "note": &job.script_note,
        "created_at_ms": at_ms,
    })
}

/// Reads a script version document: with its `source` if `with_source`, else with the
/// `bytes` a listing computed.
pub(super) fn read_script_version(
    d: &Document,
    with_source: bool,
) -> anyhow::Result<ScriptVersion> {
    let job_id = string(d, "job_id").context("read script version")?;
    let version = int(d, "version").context("read script version")?;
    read_version_fields(d, with_source)
        .with_context(|| format!("read version {version} of the script of job {job_id}"))
}

fn read_version_fields(d: &Document, with_source: bool) -> anyhow::Result<ScriptVersion> {
    let source = if with_source {
        Some(string(d, "source")?)
    } else {
        None
    };
    let bytes = match &source {
        Some(s) => s.len() as u64,
        None => to_u64(int(d, "bytes")?, "source length")?,
    };
    Ok(ScriptVersion {
        version: to_u64(int(d, "version")?, "version")?,
        note: string(d, "note")?,
        created_at_ms: int(d, "created_at_ms")?,
        bytes,
        source,
    })
}

fn read_log(v: &Bson) -> anyhow::Result<Vec<LogLine>> {
    let Bson::Array(lines) = v else {
        bail!("field log is {:?}, not an array", v.element_type());
    };
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let Bson::Document(l) = l else {
                bail!("log line {i} is {:?}, not a document", l.element_type());
            };
            let seq = int(l, "seq")?;
            Ok(LogLine {
                seq: u32::try_from(seq)
                    .with_context(|| format!("log line {i} has seq {seq} out of range"))?,
                level: string(l, "level")?,
                text: string(l, "text")?,
                at_ms: int(l, "at_ms")?,
            })
        })
        .collect()
}

/// A regular expression matching `needle` literally, anywhere: every ASCII character
/// that is not a letter or digit is escaped (in PCRE a backslash before such a
/// character always means the character itself), and NUL, which a pattern cannot
/// contain, is written `\x00`.
pub(super) fn literal_regex(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() * 2);
    for c in needle.chars() {
        if c == '\0' {
            p.push_str("\\x00");
        } else if c.is_ascii() && !c.is_ascii_alphanumeric() {
            p.push('\\');
            p.push(c);
        } else {
            p.push(c);
        }
    }
    p
}
