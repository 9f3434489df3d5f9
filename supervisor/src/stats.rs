//! Live run statistics for the dashboard: counts by outcome and fire lateness in
//! one-minute buckets for the last day, and the most recent failures.
//!
//! Kept in memory by the node that recorded the runs (querying history for them would
//! scan millions of rows at high fire rates); they start empty when the process starts.
//! Recording is one short lock per finished run. The same calls keep the totals since
//! start that `/metrics` reports ([`RunStats::totals`]). This module decides nothing and
//! stores nothing durable.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use web::dto::{MinuteStats, OutcomeCounts, RecentFailure};

use crate::metrics::{Histogram, HistogramSnapshot, LATENESS_BUCKETS_S};

const MINUTE_MS: i64 = 60_000;
const KEEP_MINUTES: usize = 24 * 60;
const KEEP_FAILURES: usize = 20;

/// Upper edges (ms) of the lateness buckets; the last bucket is open.
const EDGES_MS: [f64; 23] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0,
    300.0, 500.0, 750.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
const BUCKETS: usize = EDGES_MS.len() + 1;

#[derive(Clone, Copy, Default)]
struct Lateness {
    buckets: [u32; BUCKETS],
}

impl Lateness {
    fn record(&mut self, ms: f64) {
        let i = EDGES_MS
            .iter()
            .position(|e| ms <= *e)
            .unwrap_or(BUCKETS - 1);
        self.buckets[i] = self.buckets[i].saturating_add(1);
    }

    fn merge(&mut self, other: &Lateness) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The bucket edge at or above the `q` quantile; `None` when empty.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().map(|b| u64::from(*b)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += u64::from(*b);
            if seen >= rank {
                return Some(EDGES_MS.get(i).copied().unwrap_or(f64::INFINITY).min(1e9));
            }
        }
        None
    }
}

#[derive(Clone)]
struct Minute {
    start_ms: i64,
    runs: OutcomeCounts,
    lateness: Lateness,
}

#[derive(Default)]
struct Inner {
    minutes: VecDeque<Minute>,
    failures: VecDeque<RecentFailure>,
    /// By outcome, since start.
    totals: OutcomeCounts,
}

/// One finished occurrence, as the dashboard counts it.
pub struct Observed<'a> {
    pub outcome: &'a str,
    pub at_ms: i64,
    pub lateness_ms: Option<i64>,
    pub job_id: &'a str,
    pub job_name: &'a str,
    pub run_id: &'a str,
    pub message: Option<&'a str>,
}

pub struct RunStats {
    inner: Mutex<Inner>,
    /// Fire lateness since start, for `/metrics`.
    lateness: Histogram,
}

impl Default for RunStats {
    fn default() -> Self {
        RunStats {
            inner: Mutex::default(),
            lateness: Histogram::new(LATENESS_BUCKETS_S),
        }
    }
}

/// What `/metrics` reports: counts since the process started.
pub struct Totals {
    pub runs: OutcomeCounts,
    pub lateness: HistogramSnapshot,
}

fn bump(c: &mut OutcomeCounts, outcome: &str) {
    let slot = match outcome {
        "succeeded" => &mut c.succeeded,
        "failed" => &mut c.failed,
        "timed_out" => &mut c.timed_out,
        "out_of_memory" => &mut c.out_of_memory,
        "output_limit" => &mut c.output_limit,
        "crashed" => &mut c.crashed,
        "cancelled" => &mut c.cancelled,
        "skipped" => &mut c.skipped,
        "missed" => &mut c.missed,
        _ => return,
    };
    *slot += 1;
}

fn add(a: &mut OutcomeCounts, b: &OutcomeCounts) {
    a.succeeded += b.succeeded;
    a.failed += b.failed;
    a.timed_out += b.timed_out;
    a.out_of_memory += b.out_of_memory;
    a.output_limit += b.output_limit;
    a.crashed += b.crashed;
    a.cancelled += b.cancelled;
    a.skipped += b.skipped;
    a.missed += b.missed;
}

fn finished(c: &OutcomeCounts) -> u64 {
    c.succeeded
        + c.failed
        + c.timed_out
        + c.out_of_memory
        + c.output_limit
        + c.crashed
        + c.cancelled
}

fn dt(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// What [`RunStats::snapshot`] reports.
pub struct Snapshot {
    pub last_hour: OutcomeCounts,
    pub last_day: OutcomeCounts,
    pub success_rate_last_hour: Option<f64>,
    pub lateness_p50_ms: Option<f64>,
    pub lateness_p99_ms: Option<f64>,
    pub per_minute: Vec<MinuteStats>,
    pub recent_failures: Vec<RecentFailure>,
}

impl RunStats {
    pub fn record(&self, o: Observed<'_>) {
        let start = o.at_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        if let Some(l) = o.lateness_ms {
            self.lateness
                .observe(std::time::Duration::from_millis(l.max(0) as u64));
        }
        let mut g = self.inner.lock();
        bump(&mut g.totals, o.outcome);
        let idx = match g.minutes.iter().rposition(|m| m.start_ms == start) {
            Some(i) => i,
            None => {
                // Keep buckets ordered; an occurrence older than the newest bucket that
                // has no bucket of its own (rare) goes into the oldest one it fits after.
                let pos = g
                    .minutes
                    .iter()
                    .position(|m| m.start_ms > start)
                    .unwrap_or(g.minutes.len());
                g.minutes.insert(
                    pos,
                    Minute {
                        start_ms: start,
                        runs: OutcomeCounts::default(),
                        lateness: Lateness::default(),
                    },
                );
                while g.minutes.len() > KEEP_MINUTES {
                    g.minutes.pop_front();
                }
                g.minutes
                    .iter()
                    .position(|m| m.start_ms == start)
                    .unwrap_or(0)
            }
        };
        if let Some(m) = g.minutes.get_mut(idx) {
            bump(&mut m.runs, o.outcome);
            if let Some(l) = o.lateness_ms {
                m.lateness.record(l.max(0) as f64);
            }
        }
        let failed = !matches!(o.outcome, "succeeded" | "skipped" | "missed" | "running");
        if failed {
            g.failures.push_front(RecentFailure {
                job_id: o.job_id.to_owned(),
                name: o.job_name.to_owned(),
                run_id: o.run_id.to_owned(),
                outcome: o.outcome.to_owned(),
                at: dt(o.at_ms),
                message: o.message.map(str::to_owned),
            });
            g.failures.truncate(KEEP_FAILURES);
        }
    }

    pub fn totals(&self) -> Totals {
        Totals {
            runs: self.inner.lock().totals.clone(),
            lateness: self.lateness.snapshot(),
        }
    }

    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let g = self.inner.lock();
        let this_minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let hour_from = this_minute - 59 * MINUTE_MS;
        let day_from = this_minute - (KEEP_MINUTES as i64 - 1) * MINUTE_MS;
        let mut last_hour = OutcomeCounts::default();
        let mut last_day = OutcomeCounts::default();
        let mut hour_lat = Lateness::default();
        for m in g.minutes.iter() {
            if m.start_ms >= day_from {
                add(&mut last_day, &m.runs);
            }
            if m.start_ms >= hour_from {
                add(&mut last_hour, &m.runs);
                hour_lat.merge(&m.lateness);
            }
        }
        let per_minute = (0..60)
            .map(|i| {
                let at = hour_from + i * MINUTE_MS;
                match g.minutes.iter().find(|m| m.start_ms == at) {
                    Some(m) => MinuteStats {
                        at: dt(at),
                        runs: m.runs.clone(),
                        lateness_p50_ms: m.lateness.quantile(0.5),
                        lateness_p99_ms: m.lateness.quantile(0.99),
                    },
                    None => MinuteStats {
                        at: dt(at),
                        runs: OutcomeCounts::default(),
                        lateness_p50_ms: None,
                        lateness_p99_ms: None,
                    },
                }
            })
            .collect();
        let done = finished(&last_hour);
        Snapshot {
            success_rate_last_hour: (done > 0).then(|| last_hour.succeeded as f64 / done as f64),
            last_hour,
            last_day,
            lateness_p50_ms: hour_lat.quantile(0.5),
            lateness_p99_ms: hour_lat.quantile(0.99),
            per_minute,
            recent_failures: g.failures.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(outcome: &str, at_ms: i64, lateness: i64) -> Observed<'_> {
        Observed {
            outcome,
            at_ms,
            lateness_ms: Some(lateness),
            job_id: "j",
            job_name: "J",
            run_id: "r",
            message: Some("boom"),
        }
    }

    #[test]
    fn counts_and_rates_cover_the_last_hour_and_day() {
        let s = RunStats::default();
        let now = 10 * 86_400_000 + 30_000;
        s.record(obs("succeeded", now - 1_000, 2));
        s.record(obs("succeeded", now - 61_000, 3));
        s.record(obs("failed", now - 120_000, 40));
        s.record(obs("skipped", now - 120_000, 0));
        s.record(obs("succeeded", now - 2 * 3_600_000, 1));
        let snap = s.snapshot(now);
        assert_eq!(snap.last_hour.succeeded, 2);
        assert_eq!(snap.last_hour.failed, 1);
        assert_eq!(snap.last_hour.skipped, 1);
        assert_eq!(snap.last_day.succeeded, 3);
        assert_eq!(snap.success_rate_last_hour, Some(2.0 / 3.0));
        assert_eq!(snap.per_minute.len(), 60);
        assert_eq!(snap.per_minute[59].runs.succeeded, 1);
        assert_eq!(snap.recent_failures.len(), 1);
        assert_eq!(snap.recent_failures[0].message.as_deref(), Some("boom"));
        let totals = s.totals();
        assert_eq!(totals.runs.succeeded, 3);
        assert_eq!(totals.runs.skipped, 1);
        assert_eq!(totals.lateness.count, 5);
        assert_eq!(totals.lateness.buckets[0], (0.001, 2));
    }

    #[test]
    fn lateness_quantiles_come_from_buckets() {
        let s = RunStats::default();
        let now = 86_400_000;
        for _ in 0..98 {
            s.record(obs("succeeded", now, 1));
        }
        s.record(obs("succeeded", now, 40));
        s.record(obs("succeeded", now, 400));
        let snap = s.snapshot(now);
        assert_eq!(snap.lateness_p50_ms, Some(1.0));
        assert_eq!(snap.lateness_p99_ms, Some(50.0));
    }

    #[test]
    fn a_day_of_minutes_is_kept_and_no_more() {
        let s = RunStats::default();
        for i in 0..(KEEP_MINUTES as i64 + 100) {
            s.record(obs("succeeded", i * MINUTE_MS, 0));
        }
        assert_eq!(s.inner.lock().minutes.len(), KEEP_MINUTES);
    }
}
