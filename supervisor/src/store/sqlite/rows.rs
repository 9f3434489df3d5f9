//! Mapping between rows and the model: column lists, enum texts, integer ranges, the
//! log encoding, script versions.
//!
//! Everything read from disk is checked: an unknown enum text, a negative count or
//! malformed log JSON is an error naming the row, never a panic and never a default.

use anyhow::{Context, anyhow, bail};
use rusqlite::Row;
use rusqlite::types::ValueRef;

use crate::job::{
    ExecType, Job, LastRun, LogLine, MisfirePolicy, OverlapPolicy, RetryPolicy, RunRecord,
    ScriptVersion, Trigger,
};

/// Columns of `jobs` in the order [`read_job`] expects.
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
     octet_length(source)";

/// A `u64` of the model as an SQLite integer.
pub(super) fn to_i64(v: u64, what: &str) -> anyhow::Result<i64> {
    i64::try_from(v).with_context(|| format!("{what} {v} is too large to store"))
}

pub(super) fn opt_to_i64(v: Option<u64>, what: &str) -> anyhow::Result<Option<i64>> {
    v.map(|v| to_i64(v, what)).transpose()
}

fn to_u64(v: i64, what: &str) -> anyhow::Result<u64> {
    u64::try_from(v).with_context(|| format!("stored {what} {v} is negative"))
}

fn to_u32(v: i64, what: &str) -> anyhow::Result<u32> {
    u32::try_from(v).with_context(|| format!("stored {what} {v} is out of range"))
}

/// A text column without copying it.
fn text<'a>(row: &'a Row<'_>, idx: usize) -> anyhow::Result<&'a str> {
    match row.get_ref(idx)? {
        ValueRef::Text(b) => std::str::from_utf8(b).context("stored text is not UTF-8"),
        other => bail!(
            "expected text in column {idx}, found {:?}",
            other.data_type()
        ),
    }
}

/// Reads a row selected with [`JOB_COLUMNS`].
pub(super) fn read_job(row: &Row<'_>) -> anyhow::Result<Job> {
    let id: String = row.get(0)?;
    read_job_fields(row, &id).with_context(|| format!("read job {id}"))
}

fn read_job_fields(row: &Row<'_>, id: &str) -> anyhow::Result<Job> {
    let exec_type: i64 = row.get(3)?;
    let exec_type =
        ExecType::from_code(exec_type).ok_or_else(|| anyhow!("unknown exec_type {exec_type}"))?;
    let overlap = text(row, 10)?;
    let overlap =
        OverlapPolicy::parse(overlap).ok_or_else(|| anyhow!("unknown overlap {overlap:?}"))?;
    let misfire = text(row, 11)?;
    let misfire =
        MisfirePolicy::parse(misfire).ok_or_else(|| anyhow!("unknown misfire {misfire:?}"))?;
    let misfire_window_s: i64 = row.get(12)?;
    let misfire_window_s = u32::try_from(misfire_window_s)
        .with_context(|| format!("stored misfire_window_s {misfire_window_s} is out of range"))?;
    let enabled: i64 = row.get(7)?;
    Ok(Job {
        id: id.to_owned(),
        name: row.get(1)?,
        description: row.get(2)?,
        exec_type,
        cron: row.get(4)?,
        exec_at_ms: row.get(5)?,
        timezone: row.get(6)?,
        enabled: enabled != 0,
        time_limit_ms: to_u64(row.get(8)?, "time_limit_ms")?,
        memory_limit_mb: to_u64(row.get(9)?, "memory_limit_mb")?,
        overlap,
        misfire,
        misfire_window_s,
        max_concurrent: to_u32(row.get(19)?, "max_concurrent")?,
        max_catch_up: to_u32(row.get(20)?, "max_catch_up")?,
        retry: RetryPolicy {
            max_retries: to_u32(row.get(21)?, "retry_max_retries")?,
            backoff_ms: to_u64(row.get(22)?, "retry_backoff_ms")?,
            max_backoff_ms: to_u64(row.get(23)?, "retry_max_backoff_ms")?,
        },
        jitter_s: to_u32(row.get(24)?, "jitter_s")?,
        paused_until_ms: row.get(25)?,
        script_version: to_u64(row.get(26)?, "script_version")?,
        script_note: row.get(27)?,
        secrets: crate::store::split_grants(text(row, 28)?)?,
        version: to_u64(row.get(13)?, "version")?,
        created_at_ms: row.get(14)?,
        updated_at_ms: row.get(15)?,
        last: LastRun {
            scheduled_at_ms: row.get(16)?,
            started_at_ms: row.get(17)?,
            outcome: row.get(18)?,
        },
    })
}

/// Reads a row selected with [`RUN_COLUMNS`], plus the log in column 16 if `with_log`.
pub(super) fn read_run(row: &Row<'_>, with_log: bool) -> anyhow::Result<RunRecord> {
    let run_id: String = row.get(0)?;
    read_run_fields(row, &run_id, with_log).with_context(|| format!("read run {run_id}"))
}

fn read_run_fields(row: &Row<'_>, run_id: &str, with_log: bool) -> anyhow::Result<RunRecord> {
    let trigger = text(row, 2)?;
    let trigger = Trigger::parse(trigger).ok_or_else(|| anyhow!("unknown trigger {trigger:?}"))?;
    let cpu: Option<i64> = row.get(10)?;
    let mem: Option<i64> = row.get(11)?;
    let truncated: i64 = row.get(12)?;
    let script_version: Option<i64> = row.get(14)?;
    let log = if with_log {
        decode_log(text(row, 16)?)?
    } else {
        Vec::new()
    };
    Ok(RunRecord {
        run_id: run_id.to_owned(),
        job_id: row.get(1)?,
        trigger,
        scheduled_at_ms: row.get(3)?,
        started_at_ms: row.get(4)?,
        ended_at_ms: row.get(5)?,
        outcome: row.get(6)?,
        attempt: to_u32(row.get(13)?, "attempt")?,
        script_version: script_version
            .map(|v| to_u64(v, "script_version"))
            .transpose()?,
        duplicates: to_u32(row.get(15)?, "duplicates")?,
        node: row.get(7)?,
        error_message: row.get(8)?,
        error_stack: row.get(9)?,
        cpu_time_us: cpu.map(|v| to_u64(v, "cpu_time_us")).transpose()?,
        peak_memory_bytes: mem.map(|v| to_u64(v, "peak_memory_bytes")).transpose()?,
        log,
        log_truncated: truncated != 0,
    })
}

/// Reads a row selected with [`VERSION_COLUMNS`], plus the source in column 5 if
/// `with_source`.
pub(super) fn read_script_version(
    row: &Row<'_>,
    with_source: bool,
) -> anyhow::Result<ScriptVersion> {
    let job_id: String = row.get(0)?;
    let version: i64 = row.get(1)?;
    read_version_fields(row, with_source)
        .with_context(|| format!("read version {version} of the script of job {job_id}"))
}

fn read_version_fields(row: &Row<'_>, with_source: bool) -> anyhow::Result<ScriptVersion> {
    Ok(ScriptVersion {
        version: to_u64(row.get(1)?, "version")?,
        note: row.get(2)?,
        created_at_ms: row.get(3)?,
        bytes: to_u64(row.get(4)?, "source length")?,
        source: if with_source { Some(row.get(5)?) } else { None },
    })
}

/// The log as a compact JSON array of `[seq, level, text, at_ms]`.
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
