//! One run: a fresh QuickJS runtime and context, the script evaluated as an ES module,
//! and the run's own event loop (microtasks, timers, host replies) until the module has
//! settled and nothing it started is pending, or a limit ends it.
//!
//! Every way a run ends is decided here and nowhere else ([`Outcome`]); the run always
//! produces exactly one [`RunEnd`]. The runtime is dropped at the end of every run, so
//! nothing (globals, an interrupted or out-of-memory heap, abandoned futures) can leak
//! into the next one.
//!
//! Must not: reuse a runtime or context, call `AsyncRuntime::idle` (it prints to stdout
//! and blocks forever after a timeout), or block the thread outside of JS execution.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use protocol::{Outcome, RunEnd, ScriptError, StartRun, WorkerMessage};
use rquickjs::context::intrinsic;
use rquickjs::{AsyncContext, AsyncRuntime, Ctx, Module, Value, promise::PromiseState};

use crate::alloc::{CountingAllocator, MemStats};
use crate::cpu::CpuTimed;
use crate::engine::errors::{self, Thrown};
use crate::engine::{self, RunHost, Stop, http, modules, plugins, timers};

/// How long past its wall limit a run may take before the outer timeout drops it
/// (the interrupt handler and the event loop normally end it on time).
const GRACE: Duration = Duration::from_millis(250);

/// Standard ECMAScript only: QuickJS's full context minus the web extras `atob`/`btoa`,
/// `DOMException` and `performance` (not ECMAScript, and ~8% of a context's set-up).
type Intrinsics = (
    intrinsic::Date,
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Proxy,
    intrinsic::MapSet,
    intrinsic::TypedArrays,
    intrinsic::Promise,
    intrinsic::WeakRef,
);

/// How a run's JS side finished, before limits are mapped to outcomes.
enum Finish {
    Succeeded,
    Failed(ScriptError),
    Stopped(Stop),
}

/// Runs one script to its end and returns the frame that reports it.
pub(crate) async fn run(start: StartRun, host: Arc<RunHost>) -> RunEnd {
    let cpu_ns = Rc::new(Cell::new(0u64));
    let mem = MemStats::new(usize::try_from(start.limits.memory_bytes).unwrap_or(usize::MAX));
    let wall = Duration::from_millis(start.limits.wall_ms);
    let fut = tokio::time::timeout(wall + GRACE, execute(&start, &host, &mem));
    let finish = match CpuTimed::new(fut, cpu_ns.clone()).await {
        Ok(Ok(finish)) => finish,
        Ok(Err(setup)) => Finish::Failed(ScriptError {
            message: format!("InternalError: could not set up the script's runtime: {setup}"),
            stack: None,
        }),
        Err(_elapsed) => Finish::Stopped(Stop::TimedOut),
    };
    // A stop requested while the script was finishing still wins (cancel, timeout,
    // output flood), so the outcome names the limit rather than its side effect.
    let finish = match (finish, host.stop_reason()) {
        (Finish::Failed(_) | Finish::Succeeded, Some(stop)) => Finish::Stopped(stop),
        (f, _) => f,
    };
    let (outcome, error) = match finish {
        Finish::Succeeded => (Outcome::Succeeded, None),
        Finish::Failed(e) if mem.exhausted() => (Outcome::OutOfMemory, Some(e)),
        Finish::Failed(e) => (Outcome::Failed, Some(e)),
        Finish::Stopped(Stop::TimedOut) => (Outcome::TimedOut, None),
        Finish::Stopped(Stop::Cancelled) => (Outcome::Cancelled, None),
        Finish::Stopped(Stop::OutputLimit) => (Outcome::OutputLimit, None),
    };
    RunEnd {
        run_id: start.run_id,
        outcome,
        error,
        cpu_time_us: cpu_ns.get() / 1_000,
        peak_memory_bytes: mem.peak() as u64,
    }
}

/// Builds the run's runtime and drives the script. `Err` only for set-up failures.
async fn execute(
    start: &StartRun,
    host: &Arc<RunHost>,
    mem: &Rc<MemStats>,
) -> rquickjs::Result<Finish> {
    let rt = AsyncRuntime::new_with_alloc(CountingAllocator::new(mem.clone(), Some(host.clone())))?;
    rt.set_max_stack_size(usize::try_from(start.limits.stack_bytes).unwrap_or(usize::MAX))
        .await;
    let h = host.clone();
    rt.set_interrupt_handler(Some(Box::new(move || h.should_interrupt())))
        .await;
    let h = host.clone();
    rt.set_host_promise_rejection_tracker(Some(Box::new(
        move |ctx: Ctx<'_>, promise: Value<'_>, reason: Value<'_>, handled: bool| {
            h.rejection(identity(&promise), handled, || {
                errors::from_value(&ctx, &reason)
            });
            if !handled {
                h.wake.notify_one();
            }
        },
    )))
    .await;
    rt.set_loader(modules::ScriptModules, modules::ScriptModules)
        .await;
    let ctx = AsyncContext::custom::<Intrinsics>(&rt).await?;
    let finish = ctx
        .async_with(async |ctx| event_loop(ctx, start, host).await)
        .await;
    // `ctx` and `rt` drop here (in that order), freeing the run's whole heap.
    Ok(finish)
}

/// A promise's identity for the rejection tracker: its object pointer bits.
fn identity(v: &Value<'_>) -> u64 {
    // SAFETY: reads the payload of a JSValue without dereferencing it.
    unsafe { rquickjs::qjs::JS_VALUE_GET_PTR(v.as_raw()) as usize as u64 }
}

fn failed<'js>(ctx: &Ctx<'js>, host: &RunHost, err: rquickjs::Error) -> Finish {
    let thrown = errors::caught(ctx, err);
    if let Some(stop) = host.stop_reason() {
        return Finish::Stopped(stop);
    }
    if errors::is_uncatchable(&thrown) {
        // Interrupted without a recorded reason cannot happen; treat it as a timeout.
        return Finish::Stopped(Stop::TimedOut);
    }
    Finish::Failed(errors::script_error(ctx, &thrown))
}

/// Runs every queued microtask (promise job). Exceptions inside jobs only ever come
/// from interrupts and out-of-memory, which the caller sees through the host's stop
/// reason or the allocator.
fn drain_jobs(ctx: &Ctx<'_>, host: &RunHost) {
    while ctx.execute_pending_job() {
        if host.stop_reason().is_some() {
            return;
        }
    }
}

async fn event_loop<'js>(ctx: Ctx<'js>, start: &StartRun, host: &Arc<RunHost>) -> Finish {
    if let Err(e) = engine::install(&ctx, host.clone(), &start.job, &start.modules) {
        return failed(&ctx, host, e);
    }
    host.send(WorkerMessage::Started {
        run_id: start.run_id,
    });
    let promise = match Module::evaluate(ctx.clone(), modules::SCRIPT_NAME, start.script.as_str()) {
        Ok(p) => p,
        Err(e) => return failed(&ctx, host, e),
    };
    let module_id = identity(promise.as_value());
    let mut module_done = false;
    loop {
        drain_jobs(&ctx, host);
        if let Some(stop) = host.stop_reason() {
            return Finish::Stopped(stop);
        }
        if !module_done {
            match promise.state() {
                PromiseState::Pending => {}
                PromiseState::Resolved => module_done = true,
                PromiseState::Rejected => {
                    let reason = match promise.result::<Value<'js>>() {
                        Some(Err(e)) => errors::caught(&ctx, e),
                        _ => Thrown::Rust("the script's module was rejected".into()),
                    };
                    if errors::is_uncatchable(&reason) {
                        return Finish::Stopped(host.stop_reason().unwrap_or(Stop::TimedOut));
                    }
                    return Finish::Failed(errors::script_error(&ctx, &reason));
                }
            }
        }
        if let Some(e) = host.take_unhandled(module_id) {
            return Finish::Failed(e);
        }
        if let Some((call_id, result)) = host.pop_reply() {
            if let Err(e) = http::deliver(&ctx, call_id, result) {
                return failed(&ctx, host, e);
            }
            continue;
        }
        if let Some((id, reply)) = host.plugin_inbox.pop() {
            if let Err(e) = plugins::deliver(&ctx, id, reply) {
                return failed(&ctx, host, e);
            }
            continue;
        }
        let now = std::time::Instant::now();
        if now >= host.deadline {
            return Finish::Stopped(Stop::TimedOut);
        }
        match timers::fire_due(&ctx, now) {
            Ok(true) => {
                // Let other runs and the socket make progress between timer callbacks.
                tokio::task::consume_budget().await;
                continue;
            }
            Ok(false) => {}
            Err(e) => return failed(&ctx, host, e),
        }
        let next_timer = engine::run_cx(&ctx)
            .ok()
            .and_then(|cx| cx.timers.borrow().next_deadline());
        let waiting_on_host = http::has_pending(&ctx) || plugins::has_pending(&ctx);
        if next_timer.is_none() && !waiting_on_host {
            if module_done {
                return Finish::Succeeded;
            }
            return Finish::Failed(ScriptError {
                message: "Error: the script's top-level await can never settle \
                          (it waits on nothing: no timer, no request, no plugin call)"
                    .into(),
                stack: None,
            });
        }
        let wake_at = next_timer.map_or(host.deadline, |t| t.min(host.deadline));
        tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = host.wake.notified() => {}
        }
    }
}
