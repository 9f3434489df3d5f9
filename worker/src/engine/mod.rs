//! The JavaScript engine seam: everything that touches rquickjs lives under here, one
//! module per capability a script can see (llrt-style, each with an `init(ctx)`).
//!
//! - [`console`]: `console.*`, formatted in Rust by [`inspect`].
//! - [`timers`]: `setTimeout`/`setInterval` and their `clear*` twins.
//! - [`http`]: `fetch` and `require('http').get`, both brokered through the supervisor.
//! - [`modules`]: `require`, and the resolver/loader of `import`: `http`, plugins and
//!   shared modules, nothing else.
//! - [`plugins`]: a native plugin as a module, sync and async calls.
//! - [`shared`]: the shared modules sent with the run, CommonJS or ES.
//! - [`job`]: the read-only global `job`.
//! - [`secrets`]: the read-only global `secrets` (the job's granted secrets).
//! - [`kv`]: the global `kv`, the job's key-value store, brokered like `http`.
//! - [`errors`]: turning thrown values into [`protocol::ScriptError`]s.
//!
//! Per-run state that holds JS values lives in the runtime's userdata ([`RunCx`]), never
//! in Rust closures: the runtime frees userdata before it frees itself, so no JS object
//! can outlive its runtime (QuickJS aborts on leaked objects), whatever way a run ends.
//!
//! Must not: expose anything that reads the host (files, environment, processes,
//! sockets), or keep a JS value anywhere but in a run's own runtime.

pub(crate) mod console;
pub(crate) mod errors;
pub(crate) mod http;
pub(crate) mod inspect;
pub(crate) mod job;
pub(crate) mod kv;
pub(crate) mod modules;
pub(crate) mod plugins;
pub(crate) mod secrets;
pub(crate) mod shared;
pub(crate) mod timers;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use protocol::{
    ConsoleLevel, ConsoleLine, HostCall, HostResponse, JobContext, RunId, ScriptError,
    SharedModule, WorkerMessage,
};
use rquickjs::{Ctx, JsLifetime};
use tokio::sync::{Notify, mpsc};

/// Where a run's outgoing frames go (the serve loop's writer task).
pub(crate) type Outbox = mpsc::UnboundedSender<WorkerMessage>;

/// Why a run must stop now, whatever the script is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    TimedOut,
    Cancelled,
    OutputLimit,
}

impl Stop {
    fn code(self) -> u8 {
        match self {
            Stop::TimedOut => 1,
            Stop::Cancelled => 2,
            Stop::OutputLimit => 3,
        }
    }

    fn from_code(code: u8) -> Option<Stop> {
        match code {
            1 => Some(Stop::TimedOut),
            2 => Some(Stop::Cancelled),
            3 => Some(Stop::OutputLimit),
            _ => None,
        }
    }
}

/// A lock that a panic elsewhere cannot make unusable (the data is plain queues).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Rust side of one run: what the serve loop (on the worker's main thread), the
/// run's own thread, its interrupt handler and its native functions share. Holds no JS
/// values, so it may be captured anywhere.
pub(crate) struct RunHost {
    pub(crate) run_id: RunId,
    out: Outbox,
    /// Next console line's `seq`.
    seq: AtomicU32,
    /// Console text bytes sent so far, against `output_limit`.
    output_used: AtomicU64,
    output_limit: u64,
    /// [`Stop::code`], 0 while none; set once. The run's event loop and the interrupt
    /// handler obey it.
    stop: AtomicU8,
    /// The run's wall deadline.
    pub(crate) deadline: Instant,
    next_call_id: AtomicU32,
    /// Rejected promises nobody handled yet: (promise identity, error).
    unhandled: Mutex<Vec<(u64, ScriptError)>>,
    /// Host replies that arrived and are waiting for the run's event loop.
    replies: Mutex<VecDeque<(u32, Result<HostResponse, String>)>>,
    /// Wakes the run's event loop: a reply arrived, the run was cancelled, a plugin
    /// completed a call (from its own thread, hence `Arc`), …
    pub(crate) wake: Arc<Notify>,
    /// The worker's plugins.
    pub(crate) plugins: Arc<crate::plugin::Plugins>,
    /// Async plugin calls completed and not yet delivered.
    pub(crate) plugin_inbox: Arc<plugins::Inbox>,
}

impl RunHost {
    pub(crate) fn new(
        run_id: RunId,
        out: Outbox,
        output_limit: u64,
        deadline: Instant,
        plugins: Arc<crate::plugin::Plugins>,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        Self {
            run_id,
            out,
            seq: AtomicU32::new(0),
            output_used: AtomicU64::new(0),
            output_limit,
            stop: AtomicU8::new(0),
            deadline,
            next_call_id: AtomicU32::new(1),
            unhandled: Mutex::new(Vec::new()),
            replies: Mutex::new(VecDeque::new()),
            plugin_inbox: plugins::Inbox::new(wake.clone()),
            wake,
            plugins,
        }
    }

    pub(crate) fn send(&self, msg: WorkerMessage) {
        // The receiver only goes away when the worker is exiting.
        let _ = self.out.send(msg);
    }

    pub(crate) fn stop_reason(&self) -> Option<Stop> {
        Stop::from_code(self.stop.load(Ordering::Acquire))
    }

    /// Records why the run must end (the first reason wins) and wakes its loop.
    pub(crate) fn stop(&self, why: Stop) {
        let _ = self
            .stop
            .compare_exchange(0, why.code(), Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
    }

    /// The interrupt handler: true aborts the running JS with an uncatchable error.
    pub(crate) fn should_interrupt(&self) -> bool {
        if self.stop_reason().is_some() {
            return true;
        }
        if Instant::now() >= self.deadline {
            self.stop(Stop::TimedOut);
            return true;
        }
        false
    }

    /// Whether the run must stop, recording a timeout if the deadline has passed. Unlike
    /// [`RunHost::should_interrupt`] this is for the allocator: same rule.
    pub(crate) fn must_stop(&self) -> bool {
        self.should_interrupt()
    }

    /// Streams one console line, or returns false (and stops the run) when it would
    /// exceed the run's output limit.
    pub(crate) fn console(&self, level: ConsoleLevel, text: String) -> bool {
        if self.stop_reason().is_some() {
            return false;
        }
        // Only the run's own thread writes console lines: load-then-store is enough.
        let used = self
            .output_used
            .load(Ordering::Relaxed)
            .saturating_add(text.len() as u64);
        if used > self.output_limit {
            self.stop(Stop::OutputLimit);
            return false;
        }
        self.output_used.store(used, Ordering::Relaxed);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.send(WorkerMessage::Console(ConsoleLine {
            run_id: self.run_id,
            seq,
            level,
            text,
            at_ms: now_ms(),
        }));
        true
    }

    /// Console bytes this run may still send (formatting stops a little past it).
    pub(crate) fn output_left(&self) -> usize {
        usize::try_from(
            self.output_limit
                .saturating_sub(self.output_used.load(Ordering::Relaxed)),
        )
        .unwrap_or(usize::MAX)
    }

    /// Sends a host call and returns its id; the reply comes back through
    /// [`RunHost::push_reply`].
    pub(crate) fn host_call(&self, call: HostCall) -> u32 {
        let call_id = self.next_call_id.fetch_add(1, Ordering::Relaxed);
        self.send(WorkerMessage::HostCall {
            run_id: self.run_id,
            call_id,
            call,
        });
        call_id
    }

    pub(crate) fn push_reply(&self, call_id: u32, result: Result<HostResponse, String>) {
        lock(&self.replies).push_back((call_id, result));
        self.wake.notify_one();
    }

    pub(crate) fn pop_reply(&self) -> Option<(u32, Result<HostResponse, String>)> {
        lock(&self.replies).pop_front()
    }

    pub(crate) fn rejection(
        &self,
        promise: u64,
        handled: bool,
        error: impl FnOnce() -> ScriptError,
    ) {
        let mut list = lock(&self.unhandled);
        if handled {
            list.retain(|(p, _)| *p != promise);
        } else {
            list.push((promise, error()));
        }
    }

    /// The first unhandled rejection, ignoring `except` (the module's own promise).
    pub(crate) fn take_unhandled(&self, except: u64) -> Option<ScriptError> {
        let mut list = lock(&self.unhandled);
        let pos = list.iter().position(|(p, _)| *p != except)?;
        Some(list.swap_remove(pos).1)
    }
}

/// Wall-clock now, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Everything per run that holds JS values. Stored as the runtime's userdata.
pub(crate) struct RunCx<'js> {
    pub(crate) host: Arc<RunHost>,
    pub(crate) timers: RefCell<timers::Timers<'js>>,
    pub(crate) calls: RefCell<HashMap<u32, http::PendingCall<'js>>>,
    /// `require('http')`, built on first use and then shared with `import`.
    pub(crate) http_module: RefCell<Option<rquickjs::Object<'js>>>,
    /// Plugin modules required so far and async plugin calls in progress.
    pub(crate) plugins: plugins::State<'js>,
    /// The run's shared modules, and those evaluated so far.
    pub(crate) shared: shared::State<'js>,
}

// SAFETY: `RunCx<'js>` only holds `'js`-bound values through its type parameter, so
// changing the lifetime is changing that parameter.
unsafe impl<'js> JsLifetime<'js> for RunCx<'js> {
    type Changed<'to> = RunCx<'to>;
}

/// The run's [`RunCx`]; errors (it is always installed before any script runs).
pub(crate) fn run_cx<'a, 'js>(
    ctx: &'a Ctx<'js>,
) -> rquickjs::Result<rquickjs::runtime::UserDataGuard<'a, RunCx<'js>>> {
    ctx.userdata::<RunCx<'js>>()
        .ok_or_else(|| rquickjs::Exception::throw_internal(ctx, "traitor: run state missing"))
}

/// Installs the run's state and every global a script may use.
pub(crate) fn install<'js>(
    ctx: &Ctx<'js>,
    host: Arc<RunHost>,
    job: &JobContext,
    modules: &[SharedModule],
) -> rquickjs::Result<()> {
    let cx = RunCx {
        host,
        timers: RefCell::new(timers::Timers::default()),
        calls: RefCell::new(HashMap::new()),
        http_module: RefCell::new(None),
        plugins: plugins::State::default(),
        shared: shared::State::new(modules),
    };
    if ctx.store_userdata(cx).is_err() {
        return Err(rquickjs::Exception::throw_internal(
            ctx,
            "traitor: run state already in use",
        ));
    }
    let globals = ctx.globals();
    console::init(ctx, &globals)?;
    timers::init(ctx, &globals)?;
    http::init(ctx, &globals)?;
    modules::init(ctx, &globals)?;
    job::init(ctx, &globals, job)?;
    secrets::init(ctx, &globals, &job.secrets)?;
    kv::init(ctx, &globals)?;
    Ok(())
}
