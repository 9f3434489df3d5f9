//! The worker's main loop over any byte stream: the handshake, then one reader that
//! decodes [`SupervisorMessage`]s and one writer that batches [`WorkerMessage`]s, on
//! the main thread (a tokio `LocalSet`), and any number of concurrent runs, each on a
//! thread of its own ([`crate::threads`]): a script that keeps its CPU busy cannot hold
//! up the others, nor the console lines they stream (the kernel shares the CPUs among
//! the threads).
//!
//! Generic over `AsyncRead`/`AsyncWrite` so the whole exchange is testable in memory;
//! the binary hands it the fd-3 socket ([`crate::launch`]).
//!
//! Start-up order: `Hello` → `Welcome` → plugins loaded (they need the file system) →
//! QuickJS warmed up → sandbox applied → runs.
//!
//! Must not: panic on peer data (a malformed frame ends `serve` with an error), start
//! a run before the sandbox is in force, or write frames anywhere but the writer task
//! (runs queue theirs on its channel).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::{
    FrameError, Outcome, PROTOCOL_VERSION, RunEnd, RunId, ScriptError, StartRun, SupervisorMessage,
    WorkerMessage, read_frame_async, write_frame_async,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::LocalSet;

use crate::engine::{Outbox, RunHost};
use crate::plugin::Plugins;
use crate::threads::{Job, RunThreads};
use crate::{run, sandbox};

/// Whether to lock the process down with seccomp after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// Apply the seccomp filter (the real worker).
    Seccomp,
    /// Run unsandboxed: in-process tests only.
    Disabled,
}

impl Sandbox {
    fn enabled(self) -> bool {
        matches!(self, Sandbox::Seccomp)
    }
}

/// How [`serve_with`] sets the worker up.
#[derive(Debug, Clone)]
pub struct Options {
    pub sandbox: Sandbox,
    /// The plugin directory (absolute); `None` loads no plugin.
    pub plugin_dir: Option<PathBuf>,
}

/// Why [`serve`] stopped before a clean end.
#[derive(Debug)]
pub enum ServeError {
    /// The supervisor did not answer `Hello` with a matching `Welcome`.
    Handshake(String),
    /// The seccomp filter could not be applied; no script may run.
    Sandbox(String),
    /// A frame could not be read or decoded.
    Frame(FrameError),
    /// The supervisor broke the protocol (e.g. a second `Welcome`).
    Protocol(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Handshake(m) => write!(f, "handshake failed: {m}"),
            ServeError::Sandbox(m) => write!(f, "could not apply the sandbox: {m}"),
            ServeError::Frame(e) => write!(f, "protocol: {e}"),
            ServeError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<FrameError> for ServeError {
    fn from(e: FrameError) -> Self {
        ServeError::Frame(e)
    }
}

impl ServeError {
    /// The process exit status for this error (see `docs/protocol.md`).
    pub fn exit_code(&self) -> i32 {
        match self {
            ServeError::Handshake(_) => 3,
            ServeError::Sandbox(_) => 4,
            ServeError::Frame(_) | ServeError::Protocol(_) => 1,
        }
    }
}

/// The live runs, by id: how replies and cancels find their run.
type Runs = Arc<Mutex<HashMap<RunId, Arc<RunHost>>>>;

fn lock(runs: &Runs) -> MutexGuard<'_, HashMap<RunId, Arc<RunHost>>> {
    runs.lock().unwrap_or_else(|e| e.into_inner())
}

/// Speaks the worker side of the protocol until `Shutdown` or end of stream (`Ok`), or
/// a broken stream (`Err`). Runs its own `LocalSet`, so it needs only a current-thread
/// tokio runtime with time and I/O enabled.
pub async fn serve<R, W>(reader: R, writer: W, sandbox: Sandbox) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let opts = Options {
        sandbox,
        plugin_dir: None,
    };
    serve_with(reader, writer, opts).await
}

/// [`serve`] with every option (plugins).
pub async fn serve_with<R, W>(reader: R, writer: W, opts: Options) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    LocalSet::new()
        .run_until(serve_local(reader, writer, opts))
        .await
}

async fn serve_local<R, W>(reader: R, mut writer: W, opts: Options) -> Result<(), ServeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let sandbox = opts.sandbox;
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    write_frame_async(
        &mut writer,
        &WorkerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            sandboxed: sandbox.enabled(),
        },
    )
    .await?;
    writer.flush().await.map_err(FrameError::from)?;
    match read_frame_async::<SupervisorMessage, _>(&mut reader).await {
        Ok(Some(SupervisorMessage::Welcome { protocol_version }))
            if protocol_version == PROTOCOL_VERSION => {}
        Ok(Some(SupervisorMessage::Welcome { protocol_version })) => {
            return Err(ServeError::Handshake(format!(
                "supervisor speaks protocol {protocol_version}, this worker {PROTOCOL_VERSION}"
            )));
        }
        Ok(Some(other)) => {
            return Err(ServeError::Handshake(format!(
                "expected Welcome, got {}",
                message_name(&other)
            )));
        }
        Ok(None) => {
            return Err(ServeError::Handshake(
                "connection closed before Welcome".into(),
            ));
        }
        Err(e) => return Err(ServeError::Handshake(e.to_string())),
    }

    let plugins = Arc::new(match &opts.plugin_dir {
        Some(dir) => Plugins::load_dir(dir),
        None => Plugins::default(),
    });
    crate::engine_warm_up();
    if sandbox.enabled() {
        sandbox::apply().map_err(ServeError::Sandbox)?;
    }

    let (out, rx) = mpsc::unbounded_channel();
    tokio::task::spawn_local(write_loop(writer, rx));
    let runs: Runs = Arc::new(Mutex::new(HashMap::new()));
    let threads = RunThreads::new(THREAD_STACK);
    loop {
        let msg = match read_frame_async::<SupervisorMessage, _>(&mut reader).await? {
            Some(m) => m,
            None => return Ok(()),
        };
        match msg {
            SupervisorMessage::StartRun(start) => {
                start_run(start, &runs, &out, &plugins, &threads);
            }
            SupervisorMessage::HostReply {
                run_id,
                call_id,
                result,
            } => {
                if let Some(host) = lock(&runs).get(&run_id) {
                    host.push_reply(call_id, result);
                }
            }
            SupervisorMessage::Cancel { run_id } => {
                if let Some(host) = lock(&runs).get(&run_id) {
                    host.stop(crate::engine::Stop::Cancelled);
                }
            }
            SupervisorMessage::Shutdown => return Ok(()),
            SupervisorMessage::Welcome { .. } => {
                return Err(ServeError::Protocol("a second Welcome".into()));
            }
        }
    }
}

fn message_name(m: &SupervisorMessage) -> &'static str {
    match m {
        SupervisorMessage::Welcome { .. } => "Welcome",
        SupervisorMessage::StartRun(_) => "StartRun",
        SupervisorMessage::HostReply { .. } => "HostReply",
        SupervisorMessage::Cancel { .. } => "Cancel",
        SupervisorMessage::Shutdown => "Shutdown",
    }
}

/// The largest stack limit a script gets (`Limits::stack_bytes` is capped to it).
const MAX_SCRIPT_STACK: u64 = 1024 * 1024;
/// A run thread's stack: the script's largest plus room for the Rust frames around it.
const THREAD_STACK: usize = 2 * 1024 * 1024;

fn start_run(
    mut start: StartRun,
    runs: &Runs,
    out: &Outbox,
    plugins: &Arc<Plugins>,
    threads: &RunThreads,
) {
    let run_id = start.run_id;
    if lock(runs).contains_key(&run_id) {
        eprintln!("traitor-worker: ignoring a second StartRun for live run {run_id}");
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(start.limits.wall_ms);
    let host = Arc::new(RunHost::new(
        run_id,
        out.clone(),
        start.limits.output_bytes,
        deadline,
        plugins.clone(),
    ));
    lock(runs).insert(run_id, host.clone());
    start.limits.stack_bytes = start.limits.stack_bytes.min(MAX_SCRIPT_STACK);
    let (thread_runs, thread_host) = (runs.clone(), host.clone());
    let job: Job = Box::new(move |rt| {
        let end = match rt {
            Some(rt) => rt.block_on(run::run(start, thread_host.clone())),
            None => not_started(run_id, "the run's thread has no runtime"),
        };
        lock(&thread_runs).remove(&run_id);
        thread_host.send(WorkerMessage::RunEnd(end));
    });
    if let Err((_job, e)) = threads.submit(job) {
        lock(runs).remove(&run_id);
        host.send(WorkerMessage::RunEnd(not_started(
            run_id,
            &format!("could not start a thread for the run: {e}"),
        )));
    }
}

fn not_started(run_id: RunId, why: &str) -> RunEnd {
    RunEnd {
        run_id,
        outcome: Outcome::Failed,
        error: Some(ScriptError {
            message: format!("InternalError: {why}"),
            stack: None,
        }),
        cpu_time_us: 0,
        peak_memory_bytes: 0,
    }
}

/// Writes every queued frame, then flushes once: one syscall for a burst of frames.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<WorkerMessage>,
) {
    const BATCH: usize = 256 * 1024;
    let mut buf = Vec::with_capacity(16 * 1024);
    while let Some(first) = rx.recv().await {
        push_frame(&mut buf, &first);
        while buf.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => push_frame(&mut buf, &m),
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            // The supervisor is gone; the reader sees the end of the stream too.
            return;
        }
        buf.clear();
    }
}

fn push_frame(buf: &mut Vec<u8>, m: &WorkerMessage) {
    match protocol::encode(m) {
        Ok(frame) => buf.extend_from_slice(&frame),
        Err(e) => eprintln!("traitor-worker: dropping an outgoing frame: {e}"),
    }
}
