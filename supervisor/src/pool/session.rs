//! One live worker: its socket, its in-flight runs and its watchdog, all owned by one
//! task.
//!
//! The task wakes for three things (plus shutdown): commands from the pool (start,
//! cancel, host-call answers), bytes from the worker, and — only while it holds runs —
//! a watchdog tick. Writes are batched: commands append encoded frames to one buffer,
//! which is flushed with non-blocking writes at the end of each wake-up, so a burst of
//! runs costs one syscall, not one per frame. Reads take whatever is available and
//! decode every complete frame in it. No per-run timer, task or lock: a run is an entry
//! in this task's map, and the pool's lock is taken once per batch of ended runs.
//!
//! The worker is not trusted. A frame that does not decode, is too long, or breaks the
//! protocol kills the worker; so does a run that is still going `kill_grace` after its
//! time limit (or after a cancel). When the worker is gone, every run it held ends here,
//! with a message that says what happened.
//!
//! A run's time counts from its dispatch until the worker reports `Started`, then from
//! that moment: a worker stuck in a builtin flushes nothing, so a run whose `Started`
//! never arrives must still be bounded. A worker runs its scripts on one thread, so a
//! CPU-bound script delays the others on that worker, and they may time out behind it;
//! the pool says which run overran when it kills a worker.
//!
//! This module must not decide where runs go (the pool does) and must not block.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use protocol::{
    MAX_FRAME_LEN, Outcome, RunEnd, RunId, ScriptError, StartRun, SupervisorMessage, WorkerMessage,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::handshake::{self, HandshakeError, Hello};
use super::run::Wakes;
use super::spawn::{self, SpawnSpec, WorkerProcess};
use super::{PendingRun, RunRequest, Shared};
use crate::hostcall::RunContextInfo;

/// What the pool tells a session.
pub(crate) enum Cmd {
    /// Send this run to the worker.
    Start(PendingRun),
    /// The caller cancelled this run.
    Cancel(RunId),
    /// Shutdown: cancel every run this worker holds.
    CancelAll,
    /// A host call finished.
    HostReply {
        run_id: RunId,
        call_id: u32,
        result: Result<protocol::HostResponse, String>,
    },
}

/// How much is read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Commands handled per wake-up before the socket gets a turn.
const CMD_BATCH: usize = 256;
/// Host calls one run may have in progress; more are refused at once.
const MAX_HOST_CALLS_PER_RUN: usize = 64;

/// A worker that passed its handshake.
pub(crate) struct Connected {
    process: WorkerProcess,
    stream: UnixStream,
    hello: Hello,
}

/// Spawns a worker for `slot` and does the handshake.
pub(crate) async fn launch(shared: &Shared, slot: usize) -> anyhow::Result<Connected> {
    let bin = &shared.cfg.worker_bin;
    let spawned = shared
        .spawner
        .spawn(SpawnSpec {
            bin: bin.clone(),
            rlimit_as_bytes: shared.cfg.rlimit_as_bytes,
            plugin_dir: shared.cfg.plugin_dir.clone(),
        })
        .await
        .with_context(|| format!("spawn worker {}", bin.display()))?;
    let spawn::Spawned {
        mut process,
        mut stream,
        stderr,
    } = spawned;
    let pid = process.pid();
    if let Some(e) = stderr {
        spawn::forward_stderr(e, slot, pid);
    }
    match handshake::handshake(&mut stream, shared.cfg.handshake_timeout).await {
        Ok(hello) => {
            if !hello.sandboxed {
                tracing::warn!(
                    target: "traitor::sandbox",
                    worker = slot,
                    pid,
                    "WORKER IS NOT SANDBOXED: the kernel refused its seccomp filter, so \
                     scripts run without the syscall allowlist (rlimits still apply)"
                );
            }
            tracing::debug!(worker = slot, pid, version = %hello.worker_version, "worker ready");
            Ok(Connected {
                process,
                stream,
                hello,
            })
        }
        Err(e) => {
            let exited = matches!(e, HandshakeError::Closed | HandshakeError::Frame(_));
            if !exited {
                process.kill();
            }
            let status = process.wait_or_kill(shared.cfg.kill_grace).await;
            let mut msg = format!("worker {pid} ({}) was refused: {e}", bin.display());
            if exited {
                msg.push_str(&format!("; it exited: {}", spawn::describe_exit(status)));
            }
            Err(anyhow::anyhow!(msg))
        }
    }
}

/// One run the worker holds.
struct InFlight {
    sink: super::RunSink,
    limits: protocol::Limits,
    dispatched: Instant,
    started: Option<Instant>,
    job_id: String,
    /// A `Cancel` frame went out for this run.
    cancel_sent: bool,
    /// The caller (or shutdown) cancelled it; set with `cancel_deadline`.
    user_cancelled: bool,
    /// When a cancelled run must have ended, or its worker is killed.
    cancel_deadline: Option<Instant>,
    /// The pool cancelled it because its time limit passed: a `Cancelled` end from the
    /// worker is reported as `TimedOut`.
    deadline_cancelled: bool,
    /// Host calls in progress, aborted when the run ends.
    calls: Vec<AbortHandle>,
}

/// Why a session ended.
enum Death {
    /// The worker closed its socket.
    Eof,
    Io(io::Error),
    /// A frame that does not decode or breaks the protocol.
    Violation(String),
    /// Runs still going `kill_grace` after their time limit (or after a cancel).
    Overdue(Vec<(RunId, Outcome)>),
    /// The pool is shutting down.
    Closing,
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    slot: usize,
    pid: u32,
    process: WorkerProcess,
    stream: UnixStream,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    /// Given to host-call tasks for their answers.
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    runs: HashMap<RunId, InFlight>,
    inbuf: Vec<u8>,
    /// Start of the undecoded bytes in `inbuf`.
    rpos: usize,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    wpos: usize,
    /// Runs ended since the pool was last told.
    ended: usize,
    /// Frames for runs this worker does not hold (logged once, then counted).
    unknown_frames: u64,
    /// Run handles to wake at the end of this wake-up.
    wakes: Wakes,
}

impl Session {
    /// Registers the worker with the pool: it takes runs from now on.
    pub(crate) fn new(shared: Arc<Shared>, slot: usize, conn: Connected) -> Session {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let pid = conn.process.pid();
        if conn.hello.pid != pid {
            tracing::debug!(
                worker = slot,
                pid,
                hello_pid = conn.hello.pid,
                "worker reports another pid"
            );
        }
        shared.register(slot, cmd_tx.clone(), pid);
        Session {
            shared,
            slot,
            pid,
            process: conn.process,
            stream: conn.stream,
            cmd_rx,
            cmd_tx,
            runs: HashMap::new(),
            inbuf: Vec::with_capacity(READ_CHUNK),
            rpos: 0,
            out: Vec::with_capacity(READ_CHUNK),
            wpos: 0,
            ended: 0,
            unknown_frames: 0,
            wakes: Wakes::default(),
        }
    }

    /// Serves the worker until it dies or the pool closes, then ends its runs.
    pub(crate) async fn run(mut self) {
        let death = self.serve().await;
        self.die(death).await;
    }

    async fn serve(&mut self) -> Death {
        let mut tick = tokio::time::interval(self.shared.cfg.watchdog_tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Free the places of ended runs before waking their handles: whoever
            // awaits a result must find the pool's counts already settled.
            if self.ended > 0 {
                self.shared.release(self.slot, self.ended);
                self.ended = 0;
            }
            self.wakes.wake_all();
            if let Err(e) = self.flush() {
                return io_death(e);
            }
            tokio::select! {
                _ = self.shared.closing.cancelled() => return Death::Closing,
                cmd = self.cmd_rx.recv() => {
                    // We hold a sender ourselves, so the channel never closes.
                    let Some(cmd) = cmd else { return Death::Closing };
                    self.on_cmd(cmd);
                    for _ in 1..CMD_BATCH {
                        match self.cmd_rx.try_recv() {
                            Ok(cmd) => self.on_cmd(cmd),
                            Err(_) => break,
                        }
                    }
                }
                r = self.stream.readable() => {
                    if let Err(e) = r {
                        return Death::Io(e);
                    }
                    if let Err(d) = self.read() {
                        return d;
                    }
                }
                r = self.stream.writable(), if self.wpos < self.out.len() => {
                    if let Err(e) = r {
                        return Death::Io(e);
                    }
                }
                _ = tick.tick(), if !self.runs.is_empty() => {
                    if let Some(d) = self.watchdog() {
                        return d;
                    }
                }
            }
        }
    }

    /// Appends one frame to the output buffer.
    fn send(&mut self, msg: &SupervisorMessage) -> Result<(), protocol::FrameError> {
        self.out.extend_from_slice(&protocol::encode(msg)?);
        Ok(())
    }

    /// Writes as much of the output buffer as the socket takes without blocking.
    fn flush(&mut self) -> io::Result<()> {
        while self.wpos < self.out.len() {
            match self.stream.try_write(&self.out[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.wpos = 0;
        if self.out.capacity() > 4 * READ_CHUNK {
            self.out = Vec::with_capacity(READ_CHUNK);
        }
        Ok(())
    }

    /// Reads what is available and handles every complete frame. `Err` means the
    /// session is over.
    fn read(&mut self) -> Result<(), Death> {
        if self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 4 {
            self.inbuf.reserve(READ_CHUNK);
        }
        match self.stream.try_read_buf(&mut self.inbuf) {
            Ok(0) => return Err(Death::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(io_death(e)),
        }
        loop {
            let avail = &self.inbuf[self.rpos..];
            let Some(prefix) = avail.first_chunk::<4>() else {
                break;
            };
            let len = u32::from_le_bytes(*prefix) as usize;
            if len > MAX_FRAME_LEN {
                return Err(Death::Violation(format!(
                    "a frame of {len} bytes, over the maximum of {MAX_FRAME_LEN}"
                )));
            }
            if avail.len() < 4 + len {
                let missing = 4 + len - avail.len();
                self.inbuf.reserve(missing);
                break;
            }
            let msg = protocol::decode::<WorkerMessage>(&avail[4..4 + len])
                .map_err(|e| Death::Violation(e.to_string()))?;
            self.rpos += 4 + len;
            self.on_msg(msg)?;
        }
        if self.rpos == self.inbuf.len() {
            self.inbuf.clear();
            self.rpos = 0;
            if self.inbuf.capacity() > 4 * READ_CHUNK {
                self.inbuf = Vec::with_capacity(READ_CHUNK);
            }
        } else if self.rpos >= READ_CHUNK {
            self.inbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        Ok(())
    }

    fn on_msg(&mut self, msg: WorkerMessage) -> Result<(), Death> {
        match msg {
            WorkerMessage::Hello { .. } => {
                return Err(Death::Violation("a second hello".into()));
            }
            WorkerMessage::Started { run_id } => match self.runs.get_mut(&run_id) {
                Some(r) if r.started.is_none() => {
                    r.started = Some(Instant::now());
                    r.sink.started(&mut self.wakes);
                }
                Some(_) => {}
                None => self.unknown_run(run_id, "Started"),
            },
            WorkerMessage::Console(line) => match self.runs.get(&line.run_id) {
                Some(r) => r.sink.console(line, &mut self.wakes),
                None => self.unknown_run(line.run_id, "Console"),
            },
            WorkerMessage::HostCall {
                run_id,
                call_id,
                call,
            } => self.on_host_call(run_id, call_id, call),
            WorkerMessage::RunEnd(end) => match self.runs.remove(&end.run_id) {
                Some(r) => self.finish(r, end),
                None => self.unknown_run(end.run_id, "RunEnd"),
            },
        }
        Ok(())
    }

    /// A frame about a run the worker does not hold: a worker bug, not worth its life
    /// (and its other runs), but not worth a log line each either.
    fn unknown_run(&mut self, run_id: RunId, what: &str) {
        self.unknown_frames += 1;
        if self.unknown_frames == 1 {
            tracing::warn!(
                worker = self.slot,
                pid = self.pid,
                run_id,
                "worker sent {what} for a run it does not hold; ignored (further such \
                 frames are counted, not logged)"
            );
        }
    }

    fn finish(&mut self, r: InFlight, end: RunEnd) {
        let (outcome, error) =
            if end.outcome == Outcome::Cancelled && r.deadline_cancelled && !r.user_cancelled {
                (Outcome::TimedOut, None)
            } else {
                (end.outcome, end.error)
            };
        let error = match (outcome, error) {
            (Outcome::Succeeded, e) => e,
            (o, None) => Some(ScriptError {
                message: default_message(o, &r.limits),
                stack: None,
            }),
            (_, e) => e,
        };
        for c in &r.calls {
            c.abort();
        }
        r.sink.end(
            outcome,
            error,
            end.cpu_time_us,
            end.peak_memory_bytes,
            &mut self.wakes,
        );
        self.ended += 1;
    }

    fn on_host_call(&mut self, run_id: RunId, call_id: u32, call: protocol::HostCall) {
        let Some(r) = self.runs.get_mut(&run_id) else {
            self.unknown_run(run_id, "HostCall");
            return;
        };
        r.calls.retain(|c| !c.is_finished());
        if r.calls.len() >= MAX_HOST_CALLS_PER_RUN {
            let result = Err(format!(
                "too many requests in progress (at most {MAX_HOST_CALLS_PER_RUN} per run)"
            ));
            let _ = self.send(&SupervisorMessage::HostReply {
                run_id,
                call_id,
                result,
            });
            return;
        }
        let info = RunContextInfo {
            run_id,
            job_id: r.job_id.clone(),
            worker_pid: self.pid,
        };
        let fut = self.shared.host.call(&info, call);
        let tx = self.cmd_tx.clone();
        let task = tokio::spawn(async move {
            let result = fut.await;
            // The session may be gone; then the answer has nobody to go to.
            let _ = tx.send(Cmd::HostReply {
                run_id,
                call_id,
                result,
            });
        });
        r.calls.push(task.abort_handle());
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start(p) => self.start(p),
            Cmd::Cancel(run_id) => self.cancel(run_id),
            Cmd::CancelAll => {
                let ids: Vec<RunId> = self.runs.keys().copied().collect();
                for id in ids {
                    self.cancel(id);
                }
            }
            Cmd::HostReply {
                run_id,
                call_id,
                result,
            } => {
                if !self.runs.contains_key(&run_id) {
                    return; // The run has ended: the answer is dropped.
                }
                let msg = SupervisorMessage::HostReply {
                    run_id,
                    call_id,
                    result,
                };
                if let Err(e) = self.send(&msg) {
                    let msg = SupervisorMessage::HostReply {
                        run_id,
                        call_id,
                        result: Err(format!("the response cannot be passed to the script: {e}")),
                    };
                    if let Err(e) = self.send(&msg) {
                        tracing::error!(run_id, "encode a host reply: {e}");
                    }
                }
            }
        }
    }

    fn start(&mut self, p: PendingRun) {
        let PendingRun { mut sink, req } = p;
        sink.set_worker_pid(self.pid);
        let run_id = sink.run_id();
        let RunRequest {
            script,
            limits,
            job,
            modules,
        } = req;
        let msg = SupervisorMessage::StartRun(StartRun {
            run_id,
            script,
            limits,
            job,
            modules,
        });
        if let Err(e) = self.send(&msg) {
            sink.end_with(
                Outcome::Failed,
                format!("the run could not be sent to a worker: {e}"),
            );
            self.ended += 1;
            return;
        }
        let job_id = match msg {
            SupervisorMessage::StartRun(s) => s.job.job_id,
            _ => String::new(),
        };
        self.runs.insert(
            run_id,
            InFlight {
                sink,
                limits,
                dispatched: Instant::now(),
                started: None,
                job_id,
                cancel_sent: false,
                user_cancelled: false,
                cancel_deadline: None,
                deadline_cancelled: false,
                calls: Vec::new(),
            },
        );
    }

    fn cancel(&mut self, run_id: RunId) {
        let grace = self.shared.cfg.kill_grace;
        let Some(r) = self.runs.get_mut(&run_id) else {
            return;
        };
        if !r.user_cancelled {
            r.user_cancelled = true;
            r.cancel_deadline = Instant::now().checked_add(grace);
        }
        if !r.cancel_sent {
            r.cancel_sent = true;
            let _ = self.send(&SupervisorMessage::Cancel { run_id });
        }
    }

    /// Cancels runs past their time limit; reports runs past limit + grace.
    fn watchdog(&mut self) -> Option<Death> {
        let now = Instant::now();
        let grace = self.shared.cfg.kill_grace;
        let mut overdue = Vec::new();
        let mut cancel = Vec::new();
        for (&id, r) in &mut self.runs {
            if r.cancel_deadline.is_some_and(|d| now >= d) {
                overdue.push((id, Outcome::Cancelled));
                continue;
            }
            let base = r.started.unwrap_or(r.dispatched);
            let Some(deadline) = base.checked_add(Duration::from_millis(r.limits.wall_ms)) else {
                continue;
            };
            if deadline.checked_add(grace).is_some_and(|kill| now >= kill) {
                overdue.push((id, Outcome::TimedOut));
            } else if now >= deadline && !r.deadline_cancelled {
                r.deadline_cancelled = true;
                if !r.cancel_sent {
                    r.cancel_sent = true;
                    cancel.push(id);
                }
            }
        }
        for run_id in cancel {
            let _ = self.send(&SupervisorMessage::Cancel { run_id });
        }
        if overdue.is_empty() {
            None
        } else {
            Some(Death::Overdue(overdue))
        }
    }

    /// Makes sure the worker is gone, hands undelivered runs back to the pool and ends
    /// every run the worker held, saying why.
    async fn die(mut self, death: Death) {
        self.wakes.wake_all();
        let pid = self.pid;
        let grace = self.shared.cfg.kill_grace;
        // No new runs for this worker from now on; runs still in our channel never
        // reached it and go back to the front of the queue.
        self.shared.unregister(self.slot);
        let mut undelivered = Vec::new();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            if let Cmd::Start(p) = cmd {
                undelivered.push(p);
            }
        }
        self.shared.requeue(undelivered);

        let status = match &death {
            Death::Closing => {
                let _ = self.send(&SupervisorMessage::Shutdown);
                let pending = self.out.split_off(self.wpos);
                let _ = tokio::time::timeout(grace, self.stream.write_all(&pending)).await;
                self.process.wait_or_kill(grace).await
            }
            Death::Eof | Death::Io(_) => self.process.wait_or_kill(grace).await,
            Death::Violation(_) | Death::Overdue(_) => {
                self.process.kill();
                self.process.wait_or_kill(grace).await
            }
        };
        let exit = spawn::describe_exit(status);
        let slot = self.slot;
        let n = self.runs.len();
        if self.unknown_frames > 1 {
            tracing::warn!(
                worker = slot,
                pid,
                "worker sent {} frames for runs it did not hold",
                self.unknown_frames
            );
        }
        let (default_outcome, default_msg) = match &death {
            Death::Closing => {
                tracing::debug!(worker = slot, pid, "worker stopped: {exit}");
                (
                    Outcome::Cancelled,
                    "the worker pool shut down before this run ended".to_string(),
                )
            }
            Death::Eof => {
                tracing::error!(worker = slot, pid, runs = n, "worker exited: {exit}");
                (Outcome::Crashed, format!("worker {pid} exited: {exit}"))
            }
            Death::Io(e) => {
                tracing::error!(
                    worker = slot,
                    pid,
                    runs = n,
                    "worker connection failed: {e}; {exit}"
                );
                (
                    Outcome::Crashed,
                    format!("worker {pid}'s connection failed ({e}); it exited: {exit}"),
                )
            }
            Death::Violation(what) => {
                tracing::error!(
                    worker = slot,
                    pid,
                    runs = n,
                    "worker sent {what}; killed it"
                );
                (
                    Outcome::Crashed,
                    format!("worker {pid} sent a malformed frame ({what}) and was killed"),
                )
            }
            Death::Overdue(list) => {
                let ids: Vec<String> = list.iter().map(|(id, _)| id.to_string()).collect();
                let ids = ids.join(", ");
                tracing::warn!(
                    worker = slot,
                    pid,
                    runs = n,
                    "run(s) {ids} did not stop {grace:?} after their time limit or cancel; killed the worker"
                );
                (
                    Outcome::Crashed,
                    format!(
                        "worker {pid} was killed because run {ids} exceeded its time limit \
                         (or ignored a cancel); this run was lost with it"
                    ),
                )
            }
        };
        let runs = std::mem::take(&mut self.runs);
        // As in `serve`: the counts settle before any handle learns its run ended.
        self.shared
            .release(self.slot, runs.len() + std::mem::take(&mut self.ended));
        for (id, r) in runs {
            for c in &r.calls {
                c.abort();
            }
            let overdue = match &death {
                Death::Overdue(list) => list.iter().find(|(o, _)| *o == id).map(|(_, oc)| *oc),
                _ => None,
            };
            match overdue {
                Some(Outcome::TimedOut) => r.sink.end_with(
                    Outcome::TimedOut,
                    format!(
                        "{}; the script did not stop within {grace:?}, so its worker {pid} \
                         was killed",
                        default_message(Outcome::TimedOut, &r.limits)
                    ),
                ),
                Some(oc) => r.sink.end_with(
                    oc,
                    format!(
                        "cancelled; the script did not stop within {grace:?}, so its worker \
                         {pid} was killed"
                    ),
                ),
                None => r.sink.end_with(default_outcome, default_msg.clone()),
            }
        }
    }
}

/// A socket error: a worker that went away is an end of stream (its exit status says
/// more than `Broken pipe`); anything else is reported as it is.
fn io_death(e: io::Error) -> Death {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Death::Eof,
        _ => Death::Io(e),
    }
}

/// What to tell the caller when the worker ends a run unsuccessfully without saying why.
fn default_message(outcome: Outcome, limits: &protocol::Limits) -> String {
    match outcome {
        Outcome::TimedOut => format!("time limit of {} ms exceeded", limits.wall_ms),
        Outcome::OutOfMemory => format!(
            "memory limit of {} exceeded",
            human_bytes(limits.memory_bytes)
        ),
        Outcome::OutputLimit => format!(
            "output limit of {} exceeded",
            human_bytes(limits.output_bytes)
        ),
        Outcome::Cancelled => "cancelled".into(),
        Outcome::Failed => "the script failed without an error message".into(),
        Outcome::Crashed => "the worker reported a crash".into(),
        Outcome::Succeeded => String::new(),
    }
}

/// `64 MiB`, `1 KiB`, `1000 bytes`.
fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_endings_get_a_message_naming_the_limit() {
        let limits = protocol::Limits {
            wall_ms: 300,
            memory_bytes: 64 * 1024 * 1024,
            output_bytes: 1000,
            stack_bytes: 0,
        };
        assert_eq!(
            default_message(Outcome::TimedOut, &limits),
            "time limit of 300 ms exceeded"
        );
        assert_eq!(
            default_message(Outcome::OutOfMemory, &limits),
            "memory limit of 64 MiB exceeded"
        );
        assert_eq!(
            default_message(Outcome::OutputLimit, &limits),
            "output limit of 1000 bytes exceeded"
        );
    }
}
