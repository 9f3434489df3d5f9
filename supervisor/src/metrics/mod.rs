//! The counters behind `GET /metrics` that have no other home, and the Prometheus text
//! exposition (format 0.0.4) of everything the service counts.
//!
//! One [`Metrics`] is built at start-up and handed to whatever records into it (the
//! scripts' HTTP host, the timed store); there is no global registry. Run outcomes and
//! fire lateness live in [`crate::stats::RunStats`], the pool and cluster numbers in
//! their own modules: [`crate::ops`] gathers them all when a scrape comes in.
//!
//! Recording is lock-free (atomics). This module knows nothing about HTTP: it renders
//! text, `web` serves it.

pub mod store;
mod text;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use store::{StoreLatency, TimedStore};
pub use text::Exposition;

use crate::egress::EgressCounters;

/// Everything recorded for `/metrics` outside the run statistics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Scripts' HTTP requests, allowed and denied, per job.
    pub egress: Arc<EgressCounters>,
    /// Durations of store calls, by call.
    pub store: Arc<StoreLatency>,
}

/// Upper bounds (seconds) of the store latency buckets.
pub const STORE_BUCKETS_S: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds (seconds) of the fire lateness buckets.
pub const LATENESS_BUCKETS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A cumulative histogram of durations with fixed bucket bounds. Lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then the `+Inf` bucket; not cumulative.
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

/// A histogram as read at one moment: cumulative bucket counts.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations at or below it), ascending.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            buckets.push((*b, acc));
        }
        let inf = self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        HistogramSnapshot {
            buckets,
            count: acc + inf,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.01, 1), (0.1, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 3.105).abs() < 1e-9);
    }
}
