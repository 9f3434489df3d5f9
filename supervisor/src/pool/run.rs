//! One run's event stream: the pool side ([`RunSink`]) pushes, the caller's side
//! ([`RunHandle`]) pulls.
//!
//! This is a tiny single-producer, single-consumer channel built for the pool's hot
//! path: one allocation per run (the shared `Arc`, plus its queue on first use), one
//! uncontended lock per event, no task. It guarantees the pool's central promise:
//! **every run gets exactly one [`RunEvent::End`]**. A sink that is dropped without
//! having ended its run (the pool was dropped, a task was aborted) sends a `Crashed`
//! end from its `Drop`.
//!
//! It must not block, and it must not keep events nobody will read: once the handle is
//! dropped the sink discards everything.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Weak};
use std::task::{Poll, Waker};
use std::time::SystemTime;

use parking_lot::Mutex;
use protocol::{ConsoleLine, Outcome, RunId, ScriptError};

use super::Shared;

/// Something that happened to a run, in order: at most one `Started`, any number of
/// `Console` lines, then exactly one `End`.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The worker began executing the script (the supervisor's clock at the moment the
    /// worker's `Started` frame was read).
    Started { at: SystemTime },
    /// One `console.*` call, formatted by the worker.
    Console(ConsoleLine),
    /// The run is over. Always the last event.
    End(RunResult),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub run_id: RunId,
    pub outcome: Outcome,
    /// Why it did not succeed: the script's uncaught error, or what the pool saw (a
    /// worker crash, a kill at the time limit, a shutdown).
    pub error: Option<ScriptError>,
    /// CPU time the worker spent on the run (0 if the worker never reported it).
    pub cpu_time_us: u64,
    /// Peak QuickJS heap of the run (0 if the worker never reported it).
    pub peak_memory_bytes: u64,
    /// When the worker began the script; `None` if it never did.
    pub started_at: Option<SystemTime>,
    pub ended_at: SystemTime,
    /// The worker process that held the run; `None` if it was never dispatched.
    pub worker_pid: Option<u32>,
}

/// `RunShared::assigned` before the run is dispatched.
pub(crate) const NOT_ASSIGNED: usize = usize::MAX;

/// The state both ends of one run share.
pub(crate) struct RunShared {
    pub(crate) run_id: RunId,
    /// Slot index of the worker the run was last dispatched to, or [`NOT_ASSIGNED`].
    /// Only written under the pool's state lock, so a reader holding that lock sees a
    /// value consistent with the queue.
    pub(crate) assigned: AtomicUsize,
    chan: Mutex<Chan>,
}

struct Chan {
    events: VecDeque<RunEvent>,
    /// The handle's task, parked in `next_event`.
    waker: Option<Waker>,
    /// False once the handle is dropped: events are discarded from then on.
    listening: bool,
}

impl RunShared {
    /// Queues an event; returns the handle's waker if it was waiting.
    #[must_use = "the returned waker must be woken"]
    fn push(&self, ev: RunEvent) -> Option<Waker> {
        let mut c = self.chan.lock();
        if !c.listening {
            return None;
        }
        c.events.push_back(ev);
        c.waker.take()
    }
}

/// Handles to wake once a batch of events has been queued: a handle that gets
/// `Started`, a line and `End` in one read is woken once, not three times.
#[derive(Default)]
pub(crate) struct Wakes(Vec<Waker>);

impl Wakes {
    fn add(&mut self, w: Option<Waker>) {
        if let Some(w) = w {
            self.0.push(w);
        }
    }

    pub(crate) fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            w.wake();
        }
    }
}

/// The producing end, owned by whoever holds the run: the pool's queue, then one
/// worker session.
pub(crate) struct RunSink {
    shared: Arc<RunShared>,
    started_at: Option<SystemTime>,
    worker_pid: Option<u32>,
    ended: bool,
}

impl RunSink {
    pub(crate) fn run_id(&self) -> RunId {
        self.shared.run_id
    }

    pub(crate) fn shared(&self) -> &Arc<RunShared> {
        &self.shared
    }

    pub(crate) fn set_worker_pid(&mut self, pid: u32) {
        self.worker_pid = Some(pid);
    }

    pub(crate) fn started(&mut self, wakes: &mut Wakes) {
        let at = SystemTime::now();
        self.started_at = Some(at);
        wakes.add(self.shared.push(RunEvent::Started { at }));
    }

    pub(crate) fn console(&self, line: ConsoleLine, wakes: &mut Wakes) {
        wakes.add(self.shared.push(RunEvent::Console(line)));
    }

    /// Ends the run with what the worker reported.
    pub(crate) fn end(
        mut self,
        outcome: Outcome,
        error: Option<ScriptError>,
        cpu_time_us: u64,
        peak_memory_bytes: u64,
        wakes: &mut Wakes,
    ) {
        wakes.add(self.finish(outcome, error, cpu_time_us, peak_memory_bytes));
    }

    /// Ends the run for a reason the pool saw (crash, kill, shutdown, cancel in queue).
    pub(crate) fn end_with(mut self, outcome: Outcome, message: impl Into<String>) {
        let error = ScriptError {
            message: message.into(),
            stack: None,
        };
        if let Some(w) = self.finish(outcome, Some(error), 0, 0) {
            w.wake();
        }
    }

    #[must_use = "the returned waker must be woken"]
    fn finish(
        &mut self,
        outcome: Outcome,
        error: Option<ScriptError>,
        cpu_time_us: u64,
        peak_memory_bytes: u64,
    ) -> Option<Waker> {
        if self.ended {
            return None;
        }
        self.ended = true;
        self.shared.push(RunEvent::End(RunResult {
            run_id: self.shared.run_id,
            outcome,
            error,
            cpu_time_us,
            peak_memory_bytes,
            started_at: self.started_at,
            ended_at: SystemTime::now(),
            worker_pid: self.worker_pid,
        }))
    }
}

impl Drop for RunSink {
    fn drop(&mut self) {
        if !self.ended {
            let error = ScriptError {
                message: "the worker pool was dropped while it held this run".into(),
                stack: None,
            };
            if let Some(w) = self.finish(Outcome::Crashed, Some(error), 0, 0) {
                w.wake();
            }
        }
    }
}

/// Creates both ends of a new run.
pub(crate) fn channel(run_id: RunId, pool: Weak<Shared>) -> (RunSink, RunHandle) {
    let shared = Arc::new(RunShared {
        run_id,
        assigned: AtomicUsize::new(NOT_ASSIGNED),
        chan: Mutex::new(Chan {
            events: VecDeque::new(),
            waker: None,
            listening: true,
        }),
    });
    let sink = RunSink {
        shared: shared.clone(),
        started_at: None,
        worker_pid: None,
        ended: false,
    };
    let handle = RunHandle {
        shared,
        pool,
        done: false,
    };
    (sink, handle)
}

/// The caller's end of one run: its events, in order, ending with exactly one
/// [`RunEvent::End`].
///
/// Dropping a handle does **not** cancel the run: a scheduled run keeps going when
/// whoever watched it goes away (a debug client disconnecting, say), and its events are
/// discarded. Use [`RunHandle::canceller`] to stop a run.
pub struct RunHandle {
    shared: Arc<RunShared>,
    pool: Weak<Shared>,
    /// The `End` has been handed out; `next_event` answers `None` from now on.
    done: bool,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("run_id", &self.shared.run_id)
            .field("done", &self.done)
            .finish()
    }
}

impl RunHandle {
    pub fn run_id(&self) -> RunId {
        self.shared.run_id
    }

    /// The next event, or `None` after the `End` has been returned.
    pub async fn next_event(&mut self) -> Option<RunEvent> {
        if self.done {
            return None;
        }
        let ev = poll_fn(|cx| {
            let mut c = self.shared.chan.lock();
            match c.events.pop_front() {
                Some(ev) => Poll::Ready(ev),
                None => {
                    match &c.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => c.waker = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await;
        if matches!(ev, RunEvent::End(_)) {
            self.done = true;
        }
        Some(ev)
    }

    /// A cloneable way to cancel this run from elsewhere.
    pub fn canceller(&self) -> RunCanceller {
        RunCanceller {
            shared: self.shared.clone(),
            pool: self.pool.clone(),
        }
    }

    /// Waits for the end of the run, returning its console lines and its result.
    pub async fn finish(mut self) -> (Vec<ConsoleLine>, RunResult) {
        let mut lines = Vec::new();
        while let Some(ev) = self.next_event().await {
            match ev {
                RunEvent::Started { .. } => {}
                RunEvent::Console(l) => lines.push(l),
                RunEvent::End(r) => return (lines, r),
            }
        }
        // Unreachable while the sink keeps its promise; answer rather than panic.
        let r = RunResult {
            run_id: self.shared.run_id,
            outcome: Outcome::Crashed,
            error: Some(ScriptError {
                message: "the run's end was already taken from this handle".into(),
                stack: None,
            }),
            cpu_time_us: 0,
            peak_memory_bytes: 0,
            started_at: None,
            ended_at: SystemTime::now(),
            worker_pid: None,
        };
        (lines, r)
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        let mut c = self.shared.chan.lock();
        c.listening = false;
        c.events = VecDeque::new();
        c.waker = None;
    }
}

/// Cancels one run. Cheap to clone; cancelling a run that has ended does nothing.
#[derive(Clone)]
pub struct RunCanceller {
    shared: Arc<RunShared>,
    pool: Weak<Shared>,
}

impl std::fmt::Debug for RunCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCanceller")
            .field("run_id", &self.shared.run_id)
            .finish()
    }
}

impl RunCanceller {
    pub fn run_id(&self) -> RunId {
        self.shared.run_id
    }

    /// Asks for the run to stop. A queued run ends `Cancelled` at once; a running one
    /// is cancelled by its worker and ends `Cancelled` shortly after.
    pub fn cancel(&self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.cancel(&self.shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(run_id: RunId, seq: u32, text: &str) -> ConsoleLine {
        ConsoleLine {
            run_id,
            seq,
            level: protocol::ConsoleLevel::Log,
            text: text.into(),
            at_ms: 0,
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_end_once() {
        let (mut sink, mut h) = channel(7, Weak::new());
        let mut w = Wakes::default();
        sink.set_worker_pid(42);
        sink.started(&mut w);
        sink.console(line(7, 0, "a"), &mut w);
        sink.console(line(7, 1, "b"), &mut w);
        sink.end(Outcome::Succeeded, None, 5, 6, &mut w);
        w.wake_all();
        assert!(matches!(
            h.next_event().await,
            Some(RunEvent::Started { .. })
        ));
        let (lines, r) = h.finish().await;
        assert_eq!(
            lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.worker_pid, Some(42));
        assert!(r.started_at.is_some());
        assert_eq!((r.cpu_time_us, r.peak_memory_bytes), (5, 6));
    }

    #[tokio::test]
    async fn a_dropped_sink_still_ends_the_run() {
        let (sink, h) = channel(1, Weak::new());
        drop(sink);
        let (_, r) = h.finish().await;
        assert_eq!(r.outcome, Outcome::Crashed);
        assert!(r.started_at.is_none());
    }

    #[tokio::test]
    async fn next_event_is_none_after_the_end() {
        let (sink, mut h) = channel(1, Weak::new());
        sink.end_with(Outcome::Cancelled, "x");
        assert!(matches!(h.next_event().await, Some(RunEvent::End(_))));
        assert!(h.next_event().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_handle_is_woken() {
        let (sink, h) = channel(3, Weak::new());
        let t = tokio::spawn(h.finish());
        tokio::task::yield_now().await;
        let mut w = Wakes::default();
        sink.console(line(3, 0, "late"), &mut w);
        sink.end(Outcome::Succeeded, None, 0, 0, &mut w);
        assert_eq!(w.0.len(), 1, "one wake for a batch");
        w.wake_all();
        let (lines, r) = t.await.unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(r.outcome, Outcome::Succeeded);
    }

    #[test]
    fn events_for_a_dropped_handle_are_discarded() {
        let (sink, h) = channel(1, Weak::new());
        let shared = sink.shared().clone();
        drop(h);
        let mut w = Wakes::default();
        for i in 0..100 {
            sink.console(line(1, i, "x"), &mut w);
        }
        assert!(w.0.is_empty());
        assert!(shared.chan.lock().events.is_empty());
    }
}
