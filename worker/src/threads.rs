//! The threads runs execute on: one run per thread at a time, each thread with a
//! current-thread tokio runtime (timers only) that it keeps for its next run. A run
//! goes to an idle thread, or to a new one when none is idle; a thread idle for
//! [`IDLE_EXIT`] ends. Starting a thread and building its runtime cost more than a
//! small run itself, so they are paid once per thread, not once per run.
//!
//! Must not: run two runs on one thread at once (a run that keeps its CPU busy would
//! hold up the other), or block the caller of [`RunThreads::submit`].

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a thread waits for another run before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// One run's work, handed the thread's runtime, or `None` if the thread could not
/// build one (the job must then report its run as failed).
pub(crate) type Job = Box<dyn FnOnce(Option<&tokio::runtime::Runtime>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job and not yet promised one.
    idle: usize,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// The worker's run threads. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RunThreads {
    shared: Arc<Shared>,
    /// Stack size of every thread: the runs' stack limit plus room for Rust frames.
    stack_bytes: usize,
}

impl RunThreads {
    pub(crate) fn new(stack_bytes: usize) -> Self {
        Self {
            shared: Arc::default(),
            stack_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` on an idle thread, or on a new one. `Err` (with the job back) if no
    /// thread could be started.
    pub(crate) fn submit(&self, job: Job) -> Result<(), (Job, std::io::Error)> {
        {
            let mut q = self.lock();
            if q.idle > 0 {
                q.idle -= 1;
                q.jobs.push_back(job);
                drop(q);
                self.shared.ready.notify_one();
                return Ok(());
            }
        }
        // The job travels in a slot the thread empties, so that a failed spawn can
        // hand it back.
        let slot = Arc::new(Mutex::new(Some(job)));
        let theirs = slot.clone();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("run".into())
            .stack_size(self.stack_bytes)
            .spawn(move || {
                let first = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
                serve_jobs(&shared, first);
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                let job = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                match job {
                    Some(job) => Err((job, e)),
                    None => Ok(()), // cannot happen: the thread never started
                }
            }
        }
    }
}

/// A thread's life: its first job, then whatever comes while it is idle.
fn serve_jobs(shared: &Shared, first: Option<Job>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Without a runtime this thread can run nothing: its job reports that, and
            // the thread ends instead of waiting for more.
            eprintln!("traitor-worker: cannot build a run thread's runtime: {e}");
            if let Some(job) = first {
                job(None);
            }
            return;
        }
    };
    if let Some(job) = first {
        job(Some(&rt));
    }
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.idle += 1;
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    // The submitter already took this thread off the idle count.
                    break Some(job);
                }
                let (guard, timeout) = shared
                    .ready
                    .wait_timeout(q, IDLE_EXIT)
                    .unwrap_or_else(|e| e.into_inner());
                q = guard;
                if timeout.timed_out() && q.jobs.is_empty() {
                    q.idle -= 1;
                    break None;
                }
            }
        };
        match job {
            Some(job) => job(Some(&rt)),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_thread_is_reused_for_the_next_job_and_busy_ones_are_not_shared() {
        let threads = RunThreads::new(256 * 1024);
        let (tx, rx) = mpsc::channel();
        // Each job says when it starts and, after `hold`, that it ended.
        let job = |name: &'static str, hold: Duration| -> Job {
            let tx = tx.clone();
            Box::new(move |_rt| {
                let me = std::thread::current().id();
                let _ = tx.send((name, "start", me));
                std::thread::sleep(hold);
                let _ = tx.send((name, "end", me));
            })
        };
        let wait_idle = |n: usize| {
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while threads.lock().idle != n {
                assert!(std::time::Instant::now() < until, "never {n} idle");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let submit = |j: Job| threads.submit(j).map_err(|(_, e)| e).expect("submit");

        submit(job("first", Duration::ZERO));
        let (_, _, first) = rx.recv().expect("first started");
        rx.recv().expect("first ended");
        // One thread, waiting for work: the next job must go to it.
        wait_idle(1);
        submit(job("slow", Duration::from_secs(2)));
        let (_, _, slow) = rx.recv().expect("slow started");
        assert_eq!(slow, first, "the idle thread was reused");
        // While it is busy, a job gets a thread of its own, and starts at once.
        submit(job("quick", Duration::ZERO));
        let (name, what, quick) = rx.recv().expect("next event");
        assert_eq!((name, what), ("quick", "start"), "quick waited for slow");
        assert_ne!(quick, slow, "a busy thread was given a second job");
    }
}
