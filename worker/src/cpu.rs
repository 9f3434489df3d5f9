//! Per-run CPU accounting: a run's CPU time is the thread CPU time spent inside polls
//! of that run's future (each run has a thread of its own; counting polls only keeps
//! the runtime's idle bookkeeping out of the figure).
//!
//! Must not: use process-wide clocks (other runs' time would be charged) or block.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// CPU time consumed by the calling thread, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always
    // supported on Linux. On failure `ts` stays zero, which only makes the figure 0.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Wraps a future and adds the thread CPU time (ns) of each of its polls to `total`.
pub(crate) struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    total: Rc<Cell<u64>>,
}

impl<F: Future> CpuTimed<F> {
    pub(crate) fn new(inner: F, total: Rc<Cell<u64>>) -> Self {
        Self {
            inner: Box::pin(inner),
            total,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let start = thread_cpu_ns();
        let res = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        self.total.set(self.total.get().saturating_add(spent));
        res
    }
}
