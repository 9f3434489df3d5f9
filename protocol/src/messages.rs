//! The messages. Each variant says which protocol version added it.
//!
//! Identifiers: a [`RunId`] is chosen by the supervisor and unique for the life of the
//! supervisor process; a host call's `call_id` is chosen by the worker and unique within
//! its run.

use bincode::{Decode, Encode};

/// Identifies one run (one execution of one script) across both processes.
pub type RunId = u64;

/// Supervisor → worker.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum SupervisorMessage {
    /// v1. Answer to [`WorkerMessage::Hello`]: the worker may start taking runs.
    Welcome {
        /// The supervisor's protocol version (equal to the worker's, or the supervisor
        /// would have closed the connection instead).
        protocol_version: u32,
    },
    /// v1. Start a run. The worker answers with [`WorkerMessage::Started`], any number
    /// of console lines and host calls, and exactly one [`WorkerMessage::RunEnd`].
    StartRun(StartRun),
    /// v1. The answer to a [`WorkerMessage::HostCall`].
    HostReply {
        run_id: RunId,
        call_id: u32,
        result: Result<HostResponse, String>,
    },
    /// v1. Stop a run as soon as possible; it ends with [`Outcome::Cancelled`].
    /// Unknown or finished run ids are ignored.
    Cancel { run_id: RunId },
    /// v1. Finish nothing, exit now (cleanly, status 0).
    Shutdown,
}

/// Worker → supervisor.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub enum WorkerMessage {
    /// v1. The first frame a worker sends, before it reads anything.
    Hello {
        protocol_version: u32,
        /// The worker binary's crate version, for error messages only.
        worker_version: String,
        pid: u32,
        /// Whether the seccomp filter is in force (false only where the kernel cannot
        /// do it, which the supervisor logs loudly).
        sandboxed: bool,
    },
    /// v1. The script of `run_id` has begun executing.
    Started { run_id: RunId },
    /// v1. One `console.*` call, already formatted.
    Console(ConsoleLine),
    /// v1. The script asks the supervisor to do something the worker cannot (it has no
    /// network). Answered by [`SupervisorMessage::HostReply`].
    HostCall {
        run_id: RunId,
        call_id: u32,
        call: HostCall,
    },
    /// v1. The run is over; no more frames for `run_id` follow.
    RunEnd(RunEnd),
}

/// Everything a worker needs to run one script.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub struct StartRun {
    pub run_id: RunId,
    /// JavaScript source, evaluated as an ES module (top-level `await` works).
    pub script: String,
    pub limits: Limits,
    pub job: JobContext,
    /// v3. The shared modules the script may `require` or `import`, resolved by the
    /// supervisor (the script's and the modules' own literal specifiers, transitively).
    /// A specifier not listed here is not found.
    pub modules: Vec<SharedModule>,
}

/// v3. One shared module as a run sees it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SharedModule {
    /// The specifier as scripts write it: `name`, or `name@N` for a pinned version.
    pub specifier: String,
    /// The version this source is.
    pub version: u64,
    /// JavaScript: an ES module if it has an `import`/`export` statement, else CommonJS
    /// (`module.exports`).
    pub source: String,
}

/// Per-run limits. The worker enforces them itself; the supervisor enforces the wall
/// limit again from outside by killing the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Limits {
    /// Wall-clock time for the whole run, timers and host calls included.
    pub wall_ms: u64,
    /// QuickJS heap limit for this run's runtime.
    pub memory_bytes: u64,
    /// Total bytes of console text; beyond it the run ends with [`Outcome::OutputLimit`].
    pub output_bytes: u64,
    /// QuickJS stack limit.
    pub stack_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall_ms: 60_000,
            memory_bytes: 64 * 1024 * 1024,
            output_bytes: 1024 * 1024,
            stack_bytes: 512 * 1024,
        }
    }
}

/// What the script can see about the job it belongs to (the global `job`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct JobContext {
    pub job_id: String,
    pub job_name: String,
    /// The occurrence's scheduled instant, Unix milliseconds (0 for a debug run).
    pub scheduled_at_ms: i64,
    /// `job id + scheduled instant`: stable across retries and nodes.
    pub occurrence_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// v2. The secrets granted to the job, decrypted (the global `secrets`). Empty for
    /// drafts. Its `Debug` prints names only.
    pub secrets: SecretValues,
}

/// v2. `(name, value)` pairs of a run's granted secrets. `Debug` never shows values.
#[derive(Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct SecretValues(pub Vec<(String, String)>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}=***")))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum ConsoleLevel {
    Log,
    Info,
    Warn,
    Error,
    Debug,
}

impl ConsoleLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleLevel::Log => "log",
            ConsoleLevel::Info => "info",
            ConsoleLevel::Warn => "warn",
            ConsoleLevel::Error => "error",
            ConsoleLevel::Debug => "debug",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ConsoleLine {
    pub run_id: RunId,
    /// 0, 1, 2, … within the run, with no gaps.
    pub seq: u32,
    pub level: ConsoleLevel,
    pub text: String,
    /// Wall-clock time of the call, Unix milliseconds.
    pub at_ms: i64,
}

/// A request the supervisor performs on the script's behalf.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum HostCall {
    /// v1. An HTTP request (`fetch`, `require('http').get`).
    Http(HttpRequest),
    /// v2. The job's key-value store (`kv.get/set/delete`).
    Kv(KvCall),
}

/// v2. One operation on the running job's key-value store. Values are JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum KvCall {
    Get { key: String },
    Set { key: String, value_json: String },
    Delete { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum HostResponse {
    Http(HttpResponse),
    /// v2. The answer to a [`KvCall`]: the value (JSON text) for `Get`, `None` if the
    /// key is absent; `None` for `Set`; for `Delete`, `Some("true")` if the key existed.
    Kv(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct HttpResponse {
    pub status: u16,
    /// E.g. `200 OK`, as the seed's `Status` field.
    pub status_text: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Every way a run can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Outcome {
    Succeeded,
    /// An uncaught error or a rejected promise; see [`RunEnd::error`].
    Failed,
    TimedOut,
    OutOfMemory,
    OutputLimit,
    /// The worker died while holding the run (set by the supervisor, never sent).
    Crashed,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::OutOfMemory => "out_of_memory",
            Outcome::OutputLimit => "output_limit",
            Outcome::Crashed => "crashed",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "succeeded" => Outcome::Succeeded,
            "failed" => Outcome::Failed,
            "timed_out" => Outcome::TimedOut,
            "out_of_memory" => Outcome::OutOfMemory,
            "output_limit" => Outcome::OutputLimit,
            "crashed" => Outcome::Crashed,
            "cancelled" => Outcome::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ScriptError {
    pub message: String,
    pub stack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RunEnd {
    pub run_id: RunId,
    pub outcome: Outcome,
    pub error: Option<ScriptError>,
    /// CPU time the worker's thread spent on this run, microseconds.
    pub cpu_time_us: u64,
    /// Peak QuickJS heap of this run's runtime, bytes.
    pub peak_memory_bytes: u64,
}
