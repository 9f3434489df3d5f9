//! The job model: what a job is, independent of how it is stored or shown.
//!
//! A [`Job`] never carries its script (scripts can be large and are loaded only when a
//! run starts). Times are Unix milliseconds. This module validates nothing about cron
//! syntax itself; [`crate::cron`] does.

pub use web::dto::ExecType;

/// What happens when an occurrence comes due while the job's previous run still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapPolicy {
    /// The new occurrence is skipped and recorded as `skipped`.
    Skip,
}

impl OverlapPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Skip => "skip",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "skip" => Some(OverlapPolicy::Skip),
            _ => None,
        }
    }
}

/// What happens to occurrences missed while no process was scheduling the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MisfirePolicy {
    /// Missed occurrences are recorded as `missed`; the most recent runs once at
    /// start-up if it is younger than the job's misfire window.
    RunOnce,
}

impl MisfirePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::RunOnce => "run_once",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "run_once" => Some(MisfirePolicy::RunOnce),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub description: String,
    pub exec_type: ExecType,
    /// The cron expression of a timing job; empty for delay jobs.
    pub cron: String,
    /// The instant of a delay job; `None` for timing jobs.
    pub exec_at_ms: Option<i64>,
    /// IANA zone the cron expression is evaluated in.
    pub timezone: String,
    /// `state: 1` (scheduled) when true.
    pub enabled: bool,
    pub time_limit_ms: u64,
    pub memory_limit_mb: u64,
    pub overlap: OverlapPolicy,
    pub misfire: MisfirePolicy,
    /// Occurrences older than this at start-up are not caught up, seconds.
    pub misfire_window_s: u32,
    /// Bumped by every change of the job or its script.
    pub version: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Facts about the latest run, kept on the job so lists can show and sort by them.
    pub last: LastRun,
}

/// The latest occurrence handled for a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastRun {
    /// Scheduled instant of the most recent occurrence handled (run, skipped or
    /// missed): the misfire rule counts missed occurrences from here.
    pub scheduled_at_ms: Option<i64>,
    /// Start of the most recent run that actually started.
    pub started_at_ms: Option<i64>,
    /// Outcome of the most recent finished run.
    pub outcome: Option<String>,
}

/// Why a run happened.
pub use web::dto::Trigger;

/// One occurrence of a job, as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Sortable (UUID v7).
    pub run_id: String,
    pub job_id: String,
    pub trigger: Trigger,
    pub scheduled_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// `running`, a worker outcome, `skipped` or `missed`.
    pub outcome: String,
    pub node: String,
    pub error_message: Option<String>,
    pub error_stack: Option<String>,
    pub cpu_time_us: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
    /// Console output, capped; see `log_truncated`.
    pub log: Vec<LogLine>,
    pub log_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub seq: u32,
    /// `log`, `info`, `warn`, `error`, `debug`.
    pub level: String,
    pub text: String,
    pub at_ms: i64,
}

/// Outcomes that are not worker outcomes.
pub mod outcome {
    pub const RUNNING: &str = "running";
    pub const SKIPPED: &str = "skipped";
    pub const MISSED: &str = "missed";
}
