//! Runs in progress per job, so that the scheduler can reach them: `replace` cancels
//! them, a stop or delete forbids their further attempts.
//!
//! Registration happens synchronously when a fire is dispatched, before its task runs,
//! so a stop that is answered after a dispatch always reaches that run.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// One occurrence in progress (all its attempts).
#[derive(Debug, Default)]
pub struct ActiveRun {
    /// No further attempt may start (the job was stopped, deleted or replaced).
    pub stop: CancellationToken,
    /// The attempt in progress must be cancelled (`replace`).
    pub kill: CancellationToken,
}

#[derive(Debug, Default)]
pub struct ActiveRuns {
    by_job: Mutex<HashMap<Arc<str>, Vec<Arc<ActiveRun>>>>,
}

impl ActiveRuns {
    pub fn register(&self, job: &Arc<str>) -> Arc<ActiveRun> {
        let run = Arc::new(ActiveRun::default());
        self.by_job
            .lock()
            .entry(job.clone())
            .or_default()
            .push(run.clone());
        run
    }

    pub fn unregister(&self, job: &Arc<str>, run: &Arc<ActiveRun>) {
        let mut map = self.by_job.lock();
        if let Some(runs) = map.get_mut(job) {
            runs.retain(|r| !Arc::ptr_eq(r, run));
            if runs.is_empty() {
                map.remove(job);
            }
        }
    }

    /// No further attempts for the job's runs in progress.
    pub fn stop_retries(&self, job: &str) {
        if let Some(runs) = self.by_job.lock().get(job) {
            for r in runs {
                r.stop.cancel();
            }
        }
    }

    /// Cancels the job's runs in progress and their retries.
    pub fn cancel(&self, job: &str) {
        if let Some(runs) = self.by_job.lock().get(job) {
            for r in runs {
                r.stop.cancel();
                r.kill.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_cancel_reach_only_the_jobs_runs_in_progress() {
        let active = ActiveRuns::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let ra = active.register(&a);
        let rb = active.register(&b);
        active.stop_retries("a");
        assert!(ra.stop.is_cancelled() && !ra.kill.is_cancelled());
        assert!(!rb.stop.is_cancelled());
        active.cancel("b");
        assert!(rb.stop.is_cancelled() && rb.kill.is_cancelled());
        active.unregister(&a, &ra);
        active.unregister(&b, &rb);
        assert!(active.by_job.lock().is_empty());
    }
}
