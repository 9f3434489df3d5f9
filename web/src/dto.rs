//! The JSON shapes of the API, exactly as `CONTRACT.md` §2 names them, and the typed
//! values the routes hand to the [`crate::Backend`].
//!
//! Lenient inputs the seed accepted (`execAt` and `execType` as numbers or numeric
//! strings, seconds or milliseconds) are normalised here, at the edge, so that the
//! backend only ever sees milliseconds and a typed [`ExecType`]. Semantic checks (is the
//! cron valid, is `execAt` far enough ahead) belong to the backend, not to this module.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, de};
use utoipa::ToSchema;

/// `0` timing (cron), `1` delay (once at `execAt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecType {
    Timing,
    Delay,
}

impl ExecType {
    pub fn code(self) -> u8 {
        match self {
            ExecType::Timing => 0,
            ExecType::Delay => 1,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(ExecType::Timing),
            1 => Some(ExecType::Delay),
            _ => None,
        }
    }

    /// `timing` / `delay`, case-insensitive, as the `?type=` query parameter.
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("timing") {
            Some(ExecType::Timing)
        } else if name.eq_ignore_ascii_case("delay") {
            Some(ExecType::Delay)
        } else {
            None
        }
    }
}

impl Serialize for ExecType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for ExecType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = lenient_i64(d)?;
        ExecType::from_code(n)
            .ok_or_else(|| de::Error::custom(format!("must be 0 (timing) or 1 (delay), not {n}")))
    }
}

/// The OpenAPI schema of an enum sent as a small integer (the derive would say string).
fn int_enum_schema(
    description: &str,
    values: [u8; 2],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

impl utoipa::PartialSchema for ExecType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        int_enum_schema("`0` timing (cron), `1` delay (once at `execAt`)", [0, 1])
    }
}

impl ToSchema for ExecType {}

/// Accepts `12`, `"12"` and `12.0`; refuses anything else with a readable message.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Int(i64),
        Float(f64),
        Str(String),
    }
    match NumOrStr::deserialize(d).map_err(|_| de::Error::custom("must be a number"))? {
        NumOrStr::Int(n) => Ok(n),
        NumOrStr::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        NumOrStr::Float(f) => Err(de::Error::custom(format!(
            "must be a whole number, not {f}"
        ))),
        NumOrStr::Str(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| de::Error::custom(format!("must be a number, not {s:?}"))),
    }
}

/// Unix timestamps below 10^11 are seconds, larger ones milliseconds (contract §2).
pub fn timestamp_to_ms(ts: i64) -> i64 {
    if ts.abs() < 100_000_000_000 {
        ts.saturating_mul(1000)
    } else {
        ts
    }
}

fn lenient_timestamp_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "lenient_opt_i64")] Option<i64>);
    Ok(Wrap::deserialize(d)?.0.map(timestamp_to_ms))
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Maybe {
        Null(()),
        Value(serde_json::Value),
    }
    match Maybe::deserialize(d)? {
        Maybe::Null(()) => Ok(None),
        Maybe::Value(v) => lenient_i64(v).map(Some).map_err(de::Error::custom),
    }
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match lenient_opt_i64(d)? {
        None => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        Some(n) => Err(de::Error::custom(format!("must not be negative, not {n}"))),
    }
}

/// The body of `POST /api/job`, `POST /api/run` and (all fields optional) `PUT /api/job`.
///
/// Absent and `null` mean "not given". Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobInput {
    /// Optional caller-chosen id on create; a duplicate is 409.
    pub job_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `0`/`1`, number or numeric string. On create, `?type=` wins if both are given.
    pub exec_type: Option<ExecType>,
    /// Cron expression (timing jobs): 5, 6 (seconds first) or 7 fields, or a macro.
    pub cron: Option<String>,
    /// Unix timestamp (delay jobs), seconds or milliseconds, number or numeric string.
    #[serde(default, deserialize_with = "lenient_timestamp_ms")]
    #[schema(value_type = Option<i64>)]
    pub exec_at: Option<i64>,
    /// IANA time zone of the cron expression; default `UTC`.
    pub timezone: Option<String>,
    pub script: Option<String>,
    /// Wall-clock limit of one run, milliseconds.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub time_limit_ms: Option<u64>,
    /// QuickJS heap limit of one run, MiB.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub memory_limit_mb: Option<u64>,
    /// When an occurrence comes due while a run still goes: `allow` (up to
    /// `maxConcurrent` at once), `skip` (default), `queue_one` (at most one waits),
    /// `replace` (the running one is cancelled).
    pub overlap: Option<String>,
    /// `overlap: allow`: runs at once, 1 to 100; default 1.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub max_concurrent: Option<u64>,
    /// Occurrences missed while down or unowned: `skip`, `run_once` (default: the most
    /// recent, if within the window), `run_all` (up to `maxCatchUp` within the window).
    pub misfire: Option<String>,
    /// How old a missed occurrence may be and still run, seconds; default 60.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub misfire_window_s: Option<u64>,
    /// `misfire: run_all`: how many missed occurrences run at most, 1 to 1000; default 10.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub max_catch_up: Option<u64>,
    /// Retries of a failed, timed-out, out-of-memory or crashed run, 0 to 20; default 0.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub retries: Option<u64>,
    /// Wait before the first retry, ms; doubles per retry, with jitter; default 1000.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub retry_backoff_ms: Option<u64>,
    /// Cap of the wait between retries, ms; default 60000.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub retry_max_backoff_ms: Option<u64>,
    /// Spread: each occurrence starts this job's stable offset within `[0, jitterS)`
    /// seconds after its cron instant; 0 to 3600, default 0. Timing jobs only.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    #[schema(value_type = Option<u64>)]
    pub jitter_s: Option<u64>,
    /// A note kept with the script version this request saves.
    pub script_note: Option<String>,
    /// Names of the secrets granted to the job (readable as `secrets.NAME`); each must
    /// exist. Replaces the job's grants when given.
    pub secrets: Option<Vec<String>>,
}

/// `0` stopped, `1` running (scheduled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Stopped,
    Running,
}

impl Serialize for JobState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            JobState::Stopped => 0,
            JobState::Running => 1,
        })
    }
}

impl utoipa::PartialSchema for JobState {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        int_enum_schema("`0` stopped, `1` running (scheduled)", [0, 1])
    }
}

impl ToSchema for JobState {}

/// A job as the API shows it: never its script.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: String,
    pub name: String,
    pub description: String,
    pub exec_type: ExecType,
    /// Empty for delay jobs.
    pub cron: String,
    /// Milliseconds; `null` for timing jobs.
    pub exec_at: Option<i64>,
    pub timezone: String,
    pub state: JobState,
    pub last_exec_time: Option<DateTime<Utc>>,
    /// Outcome of the last finished run (`succeeded`, `failed`, …).
    pub last_outcome: Option<String>,
    pub next_exec_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub time_limit_ms: u64,
    pub memory_limit_mb: u64,
    /// What happens when an occurrence comes due while the previous run still runs.
    pub overlap: String,
    pub max_concurrent: u32,
    /// What happens to occurrences missed while the service was down.
    pub misfire: String,
    pub misfire_window_s: u32,
    pub max_catch_up: u32,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
    pub jitter_s: u32,
    /// Occurrences before this instant are skipped; `null` when not paused.
    pub paused_until: Option<DateTime<Utc>>,
    /// The current script version (1 at creation, +1 per save or rollback).
    pub script_version: u64,
    pub script_note: String,
    /// Names of the secrets granted to the job (never their values).
    pub secrets: Vec<String>,
    /// Bumped by every change; used by cluster nodes to discard stale updates.
    pub version: u64,
}

/// Body of `PUT /api/secret`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SecretInput {
    /// The value, at most 64 KiB. Stored encrypted; never returned by the API.
    pub value: Option<String>,
}

/// A secret as the API shows it: never its value.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretView {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Ids of the jobs it is granted to.
    pub jobs: Vec<String>,
}

/// Body of `PUT /api/module`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ModuleInput {
    /// JavaScript, at most 1 MiB: an ES module (`export …`) or CommonJS
    /// (`module.exports = …`).
    pub source: Option<String>,
    /// What changed; kept with the version.
    pub note: Option<String>,
}

/// A shared module: its current version (with the source when one module is asked
/// for), or one of its versions.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleView {
    pub name: String,
    pub version: u64,
    pub note: String,
    /// Length of the source in bytes.
    pub bytes: u64,
    /// When the module was first saved (absent for a single old version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// When this version was saved.
    pub updated_at: DateTime<Utc>,
    /// This is the module's current version.
    pub current: bool,
    /// The source; absent in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One entry of a job's key-value store.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KvEntryView {
    pub key: String,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// Sort keys of `GET /api/jobs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobSort {
    #[default]
    CreatedAt,
    Name,
    NextExecTime,
    LastExecTime,
    UpdatedAt,
}

/// Query of `GET /api/jobs`.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    /// Case-insensitive substring of name, description or id.
    pub search: Option<String>,
    pub exec_type: Option<ExecType>,
    pub state: Option<JobState>,
    pub sort: JobSort,
    pub descending: bool,
    pub offset: u64,
    /// 1..=1000.
    pub limit: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub items: Vec<JobView>,
    /// Jobs matching the filter, all pages together.
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptView {
    pub job_id: String,
    pub script: String,
}

/// Why a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An occurrence of the schedule, on time.
    Schedule,
    /// Caught up at start-up under the misfire rule.
    Misfire,
    /// Run now, from the API or UI: an occurrence of its own.
    Manual,
    /// A past occurrence run on request (`POST /api/job/backfill`).
    Backfill,
}

impl Trigger {
    /// The stored and serialised name: `schedule`, `misfire`, `manual`, `backfill`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Misfire => "misfire",
            Trigger::Manual => "manual",
            Trigger::Backfill => "backfill",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "schedule" => Some(Trigger::Schedule),
            "misfire" => Some(Trigger::Misfire),
            "manual" => Some(Trigger::Manual),
            "backfill" => Some(Trigger::Backfill),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorView {
    pub message: String,
    pub stack: Option<String>,
}

/// One occurrence in a job's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: String,
    pub job_id: String,
    /// `jobId@scheduledMs` (`jobId@manual-ms` for a manual run): the same for every
    /// attempt of an occurrence, and what the script saw as `job.occurrenceId`.
    pub occurrence_id: String,
    /// 1, then 2, 3, … for retries of the same occurrence.
    pub attempt: u32,
    /// The script version the run executed.
    pub script_version: Option<u64>,
    /// Further attempts to run this occurrence that were suppressed as duplicates.
    pub duplicates: u32,
    pub trigger: Trigger,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `running`, a worker outcome (`succeeded`, `failed`, `timed_out`, `out_of_memory`,
    /// `output_limit`, `crashed`, `cancelled`), or `skipped` / `missed`.
    pub outcome: String,
    /// Start minus scheduled instant, milliseconds.
    pub lateness_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub node: String,
    pub error: Option<ErrorView>,
    pub cpu_time_us: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub seq: u32,
    pub level: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    pub log: Vec<LogLine>,
    /// True when the console output was longer than the stored cap.
    pub log_truncated: bool,
}

/// Query of `GET /api/job/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub outcome: Option<String>,
    /// Only runs scheduled strictly before this instant (for paging backwards).
    pub before: Option<DateTime<Utc>>,
    /// 1..=1000.
    pub limit: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPage {
    pub items: Vec<RunView>,
    /// Pass as `before` to get the next (older) page; `null` at the end. A page holds
    /// every run of its oldest instant (the attempts of an occurrence share one), so it
    /// may be longer than `limit`.
    pub next_before: Option<DateTime<Utc>>,
}

/// What a debug run executes.
#[derive(Debug, Clone)]
pub enum DebugSource {
    /// The job's stored script.
    Stored { job_id: String },
    /// An unsaved draft, optionally in the context of a job (its name and limits).
    Draft {
        job_id: Option<String>,
        script: String,
    },
}

/// One event of a debug run, in order; `End` is always last.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum DebugEvent {
    #[serde(rename_all = "camelCase")]
    Log {
        seq: u32,
        level: String,
        text: String,
        at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    End {
        outcome: String,
        error: Option<ErrorView>,
        duration_ms: i64,
    },
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, or `degraded` with the reasons in `problems`.
    pub status: String,
    pub mode: String,
    pub node: String,
    pub version: String,
    pub workers_alive: usize,
    pub workers_configured: usize,
    pub jobs_scheduled: u64,
    pub problems: Vec<String>,
}

/// Counts of runs by outcome.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub out_of_memory: u64,
    pub output_limit: u64,
    pub crashed: u64,
    pub cancelled: u64,
    pub skipped: u64,
    pub missed: u64,
}

/// One minute of the dashboard's charts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinuteStats {
    pub at: DateTime<Utc>,
    pub runs: OutcomeCounts,
    /// Fire lateness of the runs started in this minute, milliseconds (bucketed).
    pub lateness_p50_ms: Option<f64>,
    pub lateness_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpcomingRun {
    pub job_id: String,
    pub name: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentFailure {
    pub job_id: String,
    pub name: String,
    pub run_id: String,
    pub outcome: String,
    pub at: DateTime<Utc>,
    pub message: Option<String>,
}

/// A node of the cluster (one entry in standalone mode).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node: String,
    /// Milliseconds since its last heartbeat (0 for this node).
    pub heartbeat_age_ms: u64,
    pub jobs_owned: u64,
    pub is_self: bool,
}

/// The cluster as this node sees it (`GET /api/cluster`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// `std` or `multi`.
    pub mode: String,
    pub cluster: String,
    pub node: String,
    /// False while this node cannot reach Redis or is not in the live set: it fires
    /// nothing then.
    pub healthy: bool,
    pub problem: Option<String>,
    pub nodes: Vec<NodeStats>,
}

/// The dashboard (`GET /api/stats`). Run counts and lateness are kept by this node since
/// it started, in one-minute buckets.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub jobs_total: u64,
    pub jobs_running: u64,
    pub jobs_stopped: u64,
    pub runs_last_hour: OutcomeCounts,
    pub runs_last_day: OutcomeCounts,
    /// Succeeded / finished runs in the last hour; `null` with no runs.
    pub success_rate_last_hour: Option<f64>,
    pub lateness_p50_ms: Option<f64>,
    pub lateness_p99_ms: Option<f64>,
    /// The last 60 minutes, oldest first.
    pub per_minute: Vec<MinuteStats>,
    pub upcoming: Vec<UpcomingRun>,
    pub recent_failures: Vec<RecentFailure>,
    pub nodes: Vec<NodeStats>,
    pub workers_alive: usize,
    pub workers_busy: usize,
    pub runs_in_flight: usize,
    pub runs_queued: usize,
    pub started_at: DateTime<Utc>,
}

/// One saved version of a job's script.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScriptVersionView {
    pub version: u64,
    pub note: String,
    pub created_at: DateTime<Utc>,
    /// Length of the source in bytes.
    pub bytes: u64,
    /// This is the job's current script.
    pub current: bool,
    /// The source; absent in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// Body of `POST /api/job/rollback` (optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackInput {
    /// Note of the new version; default "rollback to version N".
    pub note: Option<String>,
}

/// What a restart now would do about a job's missed occurrences.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatchUpView {
    /// Occurrences after this instant count as not handled.
    pub since: DateTime<Utc>,
    pub policy: String,
    pub window_s: u32,
    /// Would be recorded as missed (the newest 100 at most), oldest first.
    pub missed: Vec<DateTime<Utc>>,
    /// More missed occurrences exist than listed.
    pub more_missed: bool,
    /// Would run, oldest first.
    pub run: Vec<DateTime<Utc>>,
}

/// `GET /api/job/plan`: what would fire in a window, and what a restart would catch up.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub job_id: String,
    pub state: JobState,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Fire instants in `[from, to]` (jitter applied), at most 1000.
    pub fires: Vec<DateTime<Utc>>,
    /// Of `fires`, those a pause would skip.
    pub paused_fires: usize,
    pub truncated: bool,
    pub paused_until: Option<DateTime<Utc>>,
    pub catch_up: CatchUpView,
}

/// `POST /api/job/backfill`: what was queued and what was already in the ledger.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillView {
    /// Queued to run in this order.
    pub queued: Vec<DateTime<Utc>>,
    /// Already ran: not run again (suppressed as duplicates).
    pub suppressed: Vec<DateTime<Utc>>,
    /// The range held more than 1000 occurrences; only the first 1000 were considered.
    pub truncated: bool,
}

/// One occurrence in the ledger with all its attempts, newest attempt first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OccurrenceView {
    pub occurrence_id: String,
    pub scheduled_at: DateTime<Utc>,
    pub trigger: Trigger,
    /// The outcome of its latest attempt (`skipped` and `missed` included).
    pub outcome: String,
    pub duplicates: u32,
    pub attempts: Vec<RunView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OccurrencePage {
    pub items: Vec<OccurrenceView>,
    /// Pass as `before` for the next (older) page; `null` at the end.
    pub next_before: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_at_in_seconds_becomes_milliseconds() {
        let a: JobInput = serde_json::from_str(r#"{"execAt":"1672502400"}"#).expect("valid input");
        let b: JobInput = serde_json::from_str(r#"{"execAt":1672502400000}"#).expect("valid input");
        assert_eq!(a.exec_at, Some(1_672_502_400_000));
        assert_eq!(b.exec_at, Some(1_672_502_400_000));
    }

    #[test]
    fn exec_type_reads_numbers_and_numeric_strings() {
        let a: JobInput = serde_json::from_str(r#"{"execType":"1"}"#).expect("valid input");
        let b: JobInput = serde_json::from_str(r#"{"execType":0}"#).expect("valid input");
        assert_eq!(a.exec_type, Some(ExecType::Delay));
        assert_eq!(b.exec_type, Some(ExecType::Timing));
        assert!(serde_json::from_str::<JobInput>(r#"{"execType":"2"}"#).is_err());
        assert!(serde_json::from_str::<JobInput>(r#"{"execType":true}"#).is_err());
    }

    #[test]
    fn wrong_types_are_refused_and_nulls_are_absent() {
        assert!(serde_json::from_str::<JobInput>(r#"{"name":5}"#).is_err());
        assert!(serde_json::from_str::<JobInput>(r#"{"execAt":"soon"}"#).is_err());
        let j: JobInput = serde_json::from_str(r#"{"execAt":null,"x":1}"#).expect("valid input");
        assert_eq!(j.exec_at, None);
    }
}
