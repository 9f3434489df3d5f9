//! The job model: what a job is, independent of how it is stored or shown.
//!
//! A [`Job`] never carries its script (scripts can be large and are loaded only when a
//! run starts). Times are Unix milliseconds. This module validates nothing about cron
//! syntax itself; [`crate::cron`] does.

pub use web::dto::ExecType;

/// What happens when an occurrence comes due while the job's previous run still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlapPolicy {
    /// Runs may overlap, up to the job's `max_concurrent`; beyond it, skipped.
    Allow,
    /// The new occurrence is skipped and recorded as `skipped` (the default).
    #[default]
    Skip,
    /// At most one occurrence waits and starts when the running one ends; any further
    /// occurrence while one waits is skipped.
    QueueOne,
    /// The running run is cancelled and the new occurrence starts.
    Replace,
}

impl OverlapPolicy {
    pub const ALL: [OverlapPolicy; 4] = [
        OverlapPolicy::Allow,
        OverlapPolicy::Skip,
        OverlapPolicy::QueueOne,
        OverlapPolicy::Replace,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Allow => "allow",
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::QueueOne => "queue_one",
            OverlapPolicy::Replace => "replace",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What happens to occurrences missed while no process was scheduling the job (down,
/// or no node owned it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MisfirePolicy {
    /// Every missed occurrence is recorded as `missed`; none runs.
    Skip,
    /// Missed occurrences are recorded as `missed`; the most recent runs once if it is
    /// younger than the job's misfire window (the default).
    #[default]
    RunOnce,
    /// Every missed occurrence younger than the window runs, oldest first, one after
    /// the other, at most `max_catch_up` of them; older ones are recorded as `missed`.
    RunAll,
}

impl MisfirePolicy {
    pub const ALL: [MisfirePolicy; 3] = [
        MisfirePolicy::Skip,
        MisfirePolicy::RunOnce,
        MisfirePolicy::RunAll,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::Skip => "skip",
            MisfirePolicy::RunOnce => "run_once",
            MisfirePolicy::RunAll => "run_all",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Retries of a failed run: attempt `n + 1` starts after
/// `min(max_backoff_ms, backoff_ms * 2^(n-1))`, scaled by a random factor in [0.5, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first; 0 disables retries.
    pub max_retries: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
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
    /// `Allow`: how many runs may go at once.
    pub max_concurrent: u32,
    /// `RunAll`: how many missed occurrences are run at most.
    pub max_catch_up: u32,
    pub retry: RetryPolicy,
    /// Each occurrence starts this job's stable offset within `[0, jitter_s)` seconds
    /// after its cron instant; 0 disables.
    pub jitter_s: u32,
    /// Occurrences before this instant (ms) are skipped, recorded as `skipped`.
    pub paused_until_ms: Option<i64>,
    /// Number of the current script version (1 for the script given at creation);
    /// every save of a script makes the next one.
    pub script_version: u64,
    /// The note of the current script version.
    pub script_note: String,
    /// Names of the secrets granted to the job (the script's `secrets.NAME`), sorted,
    /// without duplicates.
    pub secrets: Vec<String>,
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
    /// 1 for the first attempt of an occurrence, 2 for its first retry, ...
    pub attempt: u32,
    /// The script version the run executed; `None` if it never loaded one.
    pub script_version: Option<u64>,
    /// How many times another attempt to run this occurrence was suppressed as a
    /// duplicate (a second node, a backfill of an occurrence that already ran).
    pub duplicates: u32,
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

impl RunRecord {
    /// This record says its occurrence of the schedule happened (ran, in any outcome):
    /// not a miss, not a skip, and not a manual run (an occurrence of its own). A
    /// caught-up or backfilled occurrence with such a record is a duplicate.
    pub fn ran_its_occurrence(&self) -> bool {
        self.trigger != Trigger::Manual
            && self.outcome != outcome::MISSED
            && self.outcome != outcome::SKIPPED
    }
}

/// The stable id of an occurrence: what scripts see as `job.occurrenceId`, an
/// idempotency key for the outside world. Manual runs are occurrences of their own.
pub fn occurrence_id(job_id: &str, scheduled_ms: i64, trigger: Trigger) -> String {
    match trigger {
        Trigger::Manual => format!("{job_id}@manual-{scheduled_ms}"),
        _ => format!("{job_id}@{scheduled_ms}"),
    }
}

/// One saved version of a job's script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptVersion {
    pub version: u64,
    pub note: String,
    pub created_at_ms: i64,
    /// Length of the source in bytes.
    pub bytes: u64,
    /// The source; `None` in listings.
    pub source: Option<String>,
}

/// Outcomes that are not worker outcomes.
pub mod outcome {
    pub const RUNNING: &str = "running";
    pub const SKIPPED: &str = "skipped";
    pub const MISSED: &str = "missed";
}
