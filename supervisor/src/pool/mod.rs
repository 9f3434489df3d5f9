//! The worker pool: runs scripts in sandboxed `traitor-worker` processes.
//!
//! Shape (each piece in its own module):
//! - [`spawn`]: a dedicated spawner thread starts workers so they cannot outlive us.
//! - [`handshake`]: `Hello`/`Welcome`; a worker with another protocol version is refused.
//! - [`session`]: one task per live worker owns its socket, its in-flight runs and its
//!   watchdog (batched writes, one read for many frames, one timer tick per worker).
//! - [`run`]: each run's event stream to its [`RunHandle`].
//! - this module: the public API, the queue, dispatch to the least-loaded worker, the
//!   per-slot restart loop with backoff, and ordered shutdown.
//!
//! Invariants:
//! - Every submitted run gets exactly one [`RunEvent::End`], whatever happens to its
//!   worker or to the pool.
//! - The pool never runs JavaScript and never trusts a worker: a malformed frame, a
//!   wrong protocol version or a hang past the time limit costs that worker its life,
//!   never the supervisor's.
//! - Only the dispatch decision takes the pool lock (a short critical section per
//!   submit and per batch of ended runs); messages of a run never touch it.
//!
//! This module must not know about jobs, storage or HTTP clients (host calls go
//! through [`crate::hostcall::HostCalls`]).

mod handshake;
mod run;
mod session;
mod spawn;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use parking_lot::Mutex;
use protocol::Outcome;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::PoolArgs;
use crate::hostcall::HostCalls;

use run::{NOT_ASSIGNED, RunShared, RunSink};
pub use run::{RunCanceller, RunEvent, RunHandle, RunResult};
use session::Cmd;

/// A worker that stayed up this long is healthy again: its restart backoff resets.
const STABLE_UPTIME: Duration = Duration::from_secs(30);
/// The first delay of the restart backoff (the first restart is immediate).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest delay of the restart backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How the pool is run.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of worker processes.
    pub workers: usize,
    /// Absolute path of `traitor-worker`.
    pub worker_bin: PathBuf,
    /// `RLIMIT_AS` of each worker process.
    pub rlimit_as_bytes: u64,
    /// The plugin directory handed to every worker (absolute); `None`: no plugins.
    /// The pool only passes the path on: workers load plugins, the supervisor never.
    pub plugin_dir: Option<PathBuf>,
    /// After a run's time limit (or a cancel), how long its worker gets to stop it
    /// before the worker is killed from outside. Also the bound of each shutdown step.
    pub kill_grace: Duration,
    /// Most runs one worker holds at once; more wait in the pool's queue.
    pub max_runs_per_worker: usize,
    /// How long a new worker has to say hello.
    pub handshake_timeout: Duration,
    /// How often each busy worker's deadlines are checked.
    pub watchdog_tick: Duration,
}

impl PoolConfig {
    /// Defaults for everything but the worker binary.
    pub fn new(worker_bin: PathBuf) -> Self {
        PoolConfig {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            worker_bin,
            rlimit_as_bytes: 1024 * 1024 * 1024,
            plugin_dir: None,
            kill_grace: Duration::from_secs(1),
            max_runs_per_worker: 64,
            handshake_timeout: Duration::from_secs(5),
            watchdog_tick: Duration::from_millis(50),
        }
    }

    pub fn from_args(args: &PoolArgs) -> anyhow::Result<Self> {
        let bin = match &args.worker_bin {
            Some(p) => p.clone(),
            None => spawn::default_worker_bin().context("find the traitor-worker binary")?,
        };
        let bin = spawn::absolute(&bin)
            .with_context(|| format!("resolve the worker path {}", bin.display()))?;
        let mut cfg = PoolConfig::new(bin);
        if let Some(n) = args.workers {
            anyhow::ensure!(n >= 1, "--workers must be at least 1");
            cfg.workers = n;
        }
        anyhow::ensure!(
            args.max_runs_per_worker >= 1,
            "--max-runs-per-worker must be at least 1"
        );
        cfg.rlimit_as_bytes = args.worker_memory_mb.saturating_mul(1024 * 1024);
        cfg.plugin_dir = match &args.plugin_dir {
            Some(d) => Some(
                spawn::absolute(d)
                    .with_context(|| format!("resolve the plugin directory {}", d.display()))?,
            ),
            None => std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".traitor").join("plugin")),
        };
        cfg.kill_grace = Duration::from_millis(args.kill_grace_ms);
        cfg.max_runs_per_worker = args.max_runs_per_worker;
        Ok(cfg)
    }
}

/// One script to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub script: String,
    pub limits: protocol::Limits,
    pub job: protocol::JobContext,
    /// The shared modules the script may load (see `crate::modules`).
    pub modules: Vec<protocol::SharedModule>,
}

/// A snapshot of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Configured number of workers.
    pub workers: usize,
    /// Workers that finished their handshake and have not died.
    pub workers_alive: usize,
    /// Live workers holding at least one run.
    pub workers_busy: usize,
    /// Runs sent to a worker and not yet ended.
    pub runs_in_flight: usize,
    /// Runs waiting for a worker.
    pub runs_queued: usize,
    /// Workers started again after one died.
    pub restarts_total: u64,
    /// Pids of the live workers, by slot.
    pub worker_pids: Vec<u32>,
}

/// The worker pool. Cheap to clone; all clones are the same pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Dropped with the last `Pool` clone: tells the slot tasks to stop their workers.
struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.closing.cancel();
    }
}

/// What the slot and session tasks share with the API.
pub(crate) struct Shared {
    cfg: PoolConfig,
    host: Arc<dyn HostCalls>,
    state: Mutex<State>,
    next_run_id: AtomicU64,
    spawner: spawn::Spawner,
    /// Cancelled when the pool stops for good: slots stop restarting, sessions send
    /// `Shutdown` to their workers.
    closing: CancellationToken,
    /// Notified when the last in-flight run ends while the pool is not accepting.
    drained: Notify,
    /// The slot tasks, awaited by `shutdown`.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The dispatch state, under `Shared::state`.
struct State {
    /// One entry per configured worker; `None` while that worker is down.
    slots: Vec<Option<Live>>,
    /// Runs waiting for a worker, oldest first.
    queue: VecDeque<PendingRun>,
    /// False from the start of `shutdown` on.
    accepting: bool,
    /// Runs handed to a session and not yet ended.
    in_flight: usize,
    restarts: u64,
}

/// A live worker, as dispatch sees it.
struct Live {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Runs sent to this worker and not yet ended.
    load: usize,
    pid: u32,
}

/// A run with its request, not yet sent to a worker.
pub(crate) struct PendingRun {
    sink: RunSink,
    req: RunRequest,
}

impl State {
    /// Sends queued runs to the least-loaded live workers that have room.
    fn dispatch(&mut self, cap: usize) {
        while !self.queue.is_empty() {
            let Some(slot) = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|l| (i, l.load)))
                .filter(|&(_, load)| load < cap)
                .min_by_key(|&(_, load)| load)
                .map(|(i, _)| i)
            else {
                return;
            };
            let Some(p) = self.queue.pop_front() else {
                return;
            };
            let Some(live) = self.slots[slot].as_mut() else {
                return;
            };
            p.sink.shared().assigned.store(slot, Ordering::Relaxed);
            match live.tx.send(Cmd::Start(p)) {
                Ok(()) => {
                    live.load += 1;
                    self.in_flight += 1;
                }
                Err(mpsc::error::SendError(cmd)) => {
                    // The session is gone without unregistering (it cannot, but be safe).
                    self.slots[slot] = None;
                    if let Cmd::Start(p) = cmd {
                        p.sink
                            .shared()
                            .assigned
                            .store(NOT_ASSIGNED, Ordering::Relaxed);
                        self.queue.push_front(p);
                    }
                }
            }
        }
    }
}

impl Shared {
    /// A session reports `n` runs ended: frees their places and dispatches.
    fn release(&self, slot: usize, n: usize) {
        let mut st = self.state.lock();
        if let Some(live) = st.slots[slot].as_mut() {
            live.load = live.load.saturating_sub(n);
        }
        st.in_flight = st.in_flight.saturating_sub(n);
        st.dispatch(self.cfg.max_runs_per_worker);
        if st.in_flight == 0 && !st.accepting {
            self.drained.notify_waiters();
        }
    }

    /// A session's worker is up: make it available.
    fn register(&self, slot: usize, tx: mpsc::UnboundedSender<Cmd>, pid: u32) {
        let mut st = self.state.lock();
        st.slots[slot] = Some(Live { tx, load: 0, pid });
        st.dispatch(self.cfg.max_runs_per_worker);
    }

    /// A session's worker is gone: no more runs are sent to it.
    fn unregister(&self, slot: usize) {
        self.state.lock().slots[slot] = None;
    }

    /// Runs that were sent to a session but never reached its worker go back to the
    /// front of the queue, in their order.
    fn requeue(&self, undelivered: Vec<PendingRun>) {
        let mut st = self.state.lock();
        st.in_flight = st.in_flight.saturating_sub(undelivered.len());
        for p in undelivered.into_iter().rev() {
            p.sink
                .shared()
                .assigned
                .store(NOT_ASSIGNED, Ordering::Relaxed);
            st.queue.push_front(p);
        }
        st.dispatch(self.cfg.max_runs_per_worker);
        if st.in_flight == 0 && !st.accepting {
            self.drained.notify_waiters();
        }
    }

    /// Cancels one run, wherever it is.
    pub(crate) fn cancel(&self, run: &RunShared) {
        let mut st = self.state.lock();
        if let Some(pos) = st.queue.iter().position(|p| p.sink.run_id() == run.run_id) {
            let p = st.queue.remove(pos);
            drop(st);
            if let Some(p) = p {
                p.sink
                    .end_with(Outcome::Cancelled, "cancelled before a worker started it");
            }
            return;
        }
        let slot = run.assigned.load(Ordering::Relaxed);
        if let Some(Some(live)) = st.slots.get(slot) {
            // Unknown (already ended) runs are ignored by the session.
            let _ = live.tx.send(Cmd::Cancel(run.run_id));
        }
    }

    async fn wait_drained(&self, until: tokio::time::Instant) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.lock().in_flight == 0 {
                return;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    }
}

impl Pool {
    /// Starts `cfg.workers` workers and waits for their handshakes. Fails (and stops
    /// whatever did start) if any worker cannot be started or is refused.
    pub async fn start(cfg: PoolConfig, host: Arc<dyn HostCalls>) -> anyhow::Result<Pool> {
        anyhow::ensure!(cfg.workers >= 1, "a pool needs at least one worker");
        anyhow::ensure!(
            cfg.max_runs_per_worker >= 1,
            "a worker must be allowed at least one run"
        );
        let spawner = spawn::Spawner::start(tokio::runtime::Handle::current())
            .context("start the worker spawner thread")?;
        let n = cfg.workers;
        let shared = Arc::new(Shared {
            cfg,
            host,
            state: Mutex::new(State {
                slots: (0..n).map(|_| None).collect(),
                queue: VecDeque::new(),
                accepting: true,
                in_flight: 0,
                restarts: 0,
            }),
            next_run_id: AtomicU64::new(1),
            spawner,
            closing: CancellationToken::new(),
            drained: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let mut ready = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for slot in 0..n {
            let (tx, rx) = oneshot::channel();
            tasks.push(tokio::spawn(slot_main(shared.clone(), slot, tx)));
            ready.push(rx);
        }
        *shared.tasks.lock() = tasks;
        let pool = Pool {
            inner: Arc::new(Inner { shared }),
        };
        let mut first_err = None;
        for rx in ready {
            let r = rx
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker slot ended during start")));
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            pool.shutdown(Duration::ZERO).await;
            return Err(e);
        }
        Ok(pool)
    }

    /// Queues a run; it starts on the least-loaded worker with room. Never blocks.
    /// After `shutdown` has begun, the run ends `Cancelled` at once.
    pub fn submit(&self, req: RunRequest) -> RunHandle {
        let shared = &self.inner.shared;
        let run_id = shared.next_run_id.fetch_add(1, Ordering::Relaxed);
        let (sink, handle) = run::channel(run_id, Arc::downgrade(shared));
        let mut st = shared.state.lock();
        if !st.accepting {
            drop(st);
            sink.end_with(
                Outcome::Cancelled,
                "the worker pool is shutting down; the run was not started",
            );
            return handle;
        }
        st.queue.push_back(PendingRun { sink, req });
        st.dispatch(shared.cfg.max_runs_per_worker);
        handle
    }

    /// Ordered shutdown: stop accepting runs (queued ones end `Cancelled`), let
    /// running runs finish until `deadline`, cancel the rest (they get `kill_grace`),
    /// then send every worker `Shutdown` and kill what has not exited after another
    /// `kill_grace`. Every run has ended when this returns. Calling it again is cheap.
    pub async fn shutdown(&self, deadline: Duration) {
        let shared = &self.inner.shared;
        let until = tokio::time::Instant::now() + deadline;
        let queued = {
            let mut st = shared.state.lock();
            st.accepting = false;
            std::mem::take(&mut st.queue)
        };
        for p in queued {
            p.sink.end_with(
                Outcome::Cancelled,
                "the worker pool shut down before this run started",
            );
        }
        shared.wait_drained(until).await;
        let cancelled = {
            let st = shared.state.lock();
            let mut any = false;
            for live in st.slots.iter().flatten() {
                any |= live.load > 0 && live.tx.send(Cmd::CancelAll).is_ok();
            }
            any
        };
        if cancelled {
            shared
                .wait_drained(tokio::time::Instant::now() + shared.cfg.kill_grace)
                .await;
        }
        shared.closing.cancel();
        let tasks = std::mem::take(&mut *shared.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
        // Runs a dying session put back into the queue after the first sweep.
        let queued = std::mem::take(&mut shared.state.lock().queue);
        for p in queued {
            p.sink.end_with(
                Outcome::Cancelled,
                "the worker pool shut down before this run started",
            );
        }
    }

    pub fn stats(&self) -> PoolStats {
        let shared = &self.inner.shared;
        let st = shared.state.lock();
        let live = || st.slots.iter().flatten();
        PoolStats {
            workers: st.slots.len(),
            workers_alive: live().count(),
            workers_busy: live().filter(|l| l.load > 0).count(),
            runs_in_flight: st.in_flight,
            runs_queued: st.queue.len(),
            restarts_total: st.restarts,
            worker_pids: live().map(|l| l.pid).collect(),
        }
    }

    /// The configuration the pool runs with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.shared.cfg
    }
}

/// Keeps one worker slot filled: start, serve until the worker dies, restart with
/// backoff. Reports the first start's outcome on `ready`; if that fails, gives up.
async fn slot_main(shared: Arc<Shared>, slot: usize, ready: oneshot::Sender<anyhow::Result<()>>) {
    let mut ready = Some(ready);
    let mut quick_failures: u32 = 0;
    loop {
        if shared.closing.is_cancelled() {
            break;
        }
        let began = Instant::now();
        match session::launch(&shared, slot).await {
            Ok(conn) => {
                // Registered (and taking runs) before `Pool::start` returns.
                let session = session::Session::new(shared.clone(), slot, conn);
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
                session.run().await;
                if began.elapsed() >= STABLE_UPTIME {
                    quick_failures = 0;
                }
            }
            Err(e) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                tracing::error!(worker = slot, "{e:#}");
            }
        }
        if shared.closing.is_cancelled() {
            break;
        }
        quick_failures += 1;
        let delay = backoff(quick_failures);
        shared.state.lock().restarts += 1;
        if !delay.is_zero() {
            tracing::warn!(
                worker = slot,
                ?delay,
                "worker keeps failing; restarting it after a pause"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.closing.cancelled() => break,
        }
    }
}

/// Restart delay after `n` consecutive quick failures: 0, 100 ms, 200 ms, … 10 s.
fn backoff(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(n - 2).unwrap_or(u32::MAX);
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_zero_to_ten_seconds() {
        let got: Vec<u64> = (1..=10).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [0, 100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        assert_eq!(backoff(500), BACKOFF_MAX);
    }
}
