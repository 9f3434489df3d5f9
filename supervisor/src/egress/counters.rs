//! Counts of scripts' HTTP requests, allowed and denied, in total and per job, for
//! `/metrics`. Written by the host-call path, read by the metrics renderer.
//!
//! Per-job counts are kept for at most [`MAX_JOBS`] jobs (label cardinality); requests of
//! further jobs still count in the totals; a deleted job's counts are dropped. This
//! module counts only: it decides nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Most jobs with counts of their own.
pub const MAX_JOBS: usize = 10_000;

/// Requests of one job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobEgress {
    pub allowed: u64,
    pub denied: u64,
}

#[derive(Debug, Default)]
pub struct EgressCounters {
    allowed: AtomicU64,
    denied: AtomicU64,
    per_job: Mutex<HashMap<String, JobEgress>>,
}

impl EgressCounters {
    /// Counts one request of `job_id` that the policy allowed or denied.
    pub fn record(&self, job_id: &str, allowed: bool) {
        let total = if allowed { &self.allowed } else { &self.denied };
        total.fetch_add(1, Ordering::Relaxed);
        let bump = |e: &mut JobEgress| {
            if allowed {
                e.allowed += 1;
            } else {
                e.denied += 1;
            }
        };
        let mut jobs = self.per_job.lock();
        if let Some(e) = jobs.get_mut(job_id) {
            bump(e);
        } else if jobs.len() < MAX_JOBS {
            let mut e = JobEgress::default();
            bump(&mut e);
            jobs.insert(job_id.to_owned(), e);
        }
    }

    /// Drops a deleted job's counts (its label leaves `/metrics`, and its place goes to
    /// another job).
    pub fn forget(&self, job_id: &str) {
        self.per_job.lock().remove(job_id);
    }

    /// (allowed, denied) since start.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.allowed.load(Ordering::Relaxed),
            self.denied.load(Ordering::Relaxed),
        )
    }

    /// Every job's counts, sorted by job id.
    pub fn per_job(&self) -> Vec<(String, JobEgress)> {
        let mut v: Vec<_> = self
            .per_job
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
