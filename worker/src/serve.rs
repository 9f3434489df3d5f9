//! The worker's main loop over any byte stream: the handshake, then one reader that
//! decodes [`SupervisorMessage`]s, one writer that batches [`WorkerMessage`]s, and any
//! number of concurrent runs, all on one thread (a tokio `LocalSet`).
//!
//! Generic over `AsyncRead`/`AsyncWrite` so the whole exchange is testable in memory;
//! the binary hands it the fd-3 socket ([`crate::launch`]).
//!
//! Start-up order: `Hello` → `Welcome` → plugins loaded (they need the file system) →
//! QuickJS warmed up → sandbox applied → runs.
//!
//! Must not: panic on peer data (a malformed frame ends `serve` with an error), start
//! a run before the sandbox is in force, or write frames anywhere but the writer task.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use protocol::{
    FrameError, PROTOCOL_VERSION, RunId, StartRun, SupervisorMessage, WorkerMessage,
    read_frame_async, write_frame_async,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::LocalSet;

use crate::engine::{Outbox, RunHost};
use crate::plugin::Plugins;
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
type Runs = Rc<RefCell<HashMap<RunId, Rc<RunHost>>>>;

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

    let plugins = Rc::new(match &opts.plugin_dir {
        Some(dir) => Plugins::load_dir(dir),
        None => Plugins::default(),
    });
    crate::engine_warm_up();
    if sandbox.enabled() {
        sandbox::apply().map_err(ServeError::Sandbox)?;
    }

    let (out, rx) = mpsc::unbounded_channel();
    tokio::task::spawn_local(write_loop(writer, rx));
    let runs: Runs = Rc::new(RefCell::new(HashMap::new()));
    loop {
        let msg = match read_frame_async::<SupervisorMessage, _>(&mut reader).await? {
            Some(m) => m,
            None => return Ok(()),
        };
        match msg {
            SupervisorMessage::StartRun(start) => start_run(start, &runs, &out, &plugins),
            SupervisorMessage::HostReply {
                run_id,
                call_id,
                result,
            } => {
                if let Some(host) = runs.borrow().get(&run_id) {
                    host.push_reply(call_id, result);
                }
            }
            SupervisorMessage::Cancel { run_id } => {
                if let Some(host) = runs.borrow().get(&run_id) {
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

fn start_run(start: StartRun, runs: &Runs, out: &Outbox, plugins: &Rc<Plugins>) {
    let run_id = start.run_id;
    if runs.borrow().contains_key(&run_id) {
        eprintln!("traitor-worker: ignoring a second StartRun for live run {run_id}");
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(start.limits.wall_ms);
    let host = Rc::new(RunHost::new(
        run_id,
        out.clone(),
        start.limits.output_bytes,
        deadline,
        plugins.clone(),
    ));
    runs.borrow_mut().insert(run_id, host.clone());
    let runs = runs.clone();
    tokio::task::spawn_local(async move {
        let end = run::run(start, host.clone()).await;
        runs.borrow_mut().remove(&run_id);
        host.send(WorkerMessage::RunEnd(end));
    });
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
