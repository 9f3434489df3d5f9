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
    /// Woken whenever a run is unregistered.
    ended: tokio::sync::Notify,
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
        drop(map);
        self.ended.notify_waiters();
    }

    /// Waits until the job has no run in progress (attempts and retries included).
    pub async fn wait_idle(&self, job: &str) {
        loop {
            let ended = self.ended.notified();
            if !self.by_job.lock().contains_key(job) {
                return;
            }
            ended.await;
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

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_run_of_the_job_ends() {
        let active = Arc::new(ActiveRuns::default());
        let a: Arc<str> = "a".into();
        let r1 = active.register(&a);
        let r2 = active.register(&a);
        let waiter = tokio::spawn({
            let active = active.clone();
            async move { active.wait_idle("a").await }
        });
        tokio::task::yield_now().await;
        active.unregister(&a, &r1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        active.unregister(&a, &r2);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        active.wait_idle("never-ran").await;
    }
}
