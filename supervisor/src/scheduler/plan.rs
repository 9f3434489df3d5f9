//! What makes a job fire, as instants: a cron schedule shifted by the job's jitter
//! offset, or the one instant of a delay job.
//!
//! Pure functions of time; nothing here reads a clock.

use crate::cron::Schedule;

/// What makes a job fire.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Every instant of `schedule`, each `offset_ms` later (the job's jitter).
    Cron { schedule: Schedule, offset_ms: i64 },
    /// A delay job: once, at this instant (ms).
    Once { at_ms: i64 },
}

impl Plan {
    pub fn cron(schedule: Schedule) -> Self {
        Plan::Cron {
            schedule,
            offset_ms: 0,
        }
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match self {
            Plan::Cron {
                schedule,
                offset_ms,
            } => schedule
                .next_after(t.saturating_sub(*offset_ms))
                .map(|n| n + offset_ms),
            Plan::Once { at_ms } => (*at_ms > t).then_some(*at_ms),
        }
    }

    /// The last occurrence at or before `t`.
    pub fn prev_at_or_before(&self, t: i64) -> Option<i64> {
        match self {
            Plan::Cron {
                schedule,
                offset_ms,
            } => schedule
                .prev_at_or_before(t.saturating_sub(*offset_ms))
                .map(|p| p + offset_ms),
            Plan::Once { at_ms } => (*at_ms <= t).then_some(*at_ms),
        }
    }

    /// The occurrences in `[from, to]`, oldest first, at most `cap`; the flag says
    /// whether more exist in the window.
    pub fn between(&self, from: i64, to: i64, cap: usize) -> (Vec<i64>, bool) {
        let mut out = Vec::new();
        let mut t = from.saturating_sub(1);
        while let Some(n) = self.next_after(t) {
            if n > to {
                return (out, false);
            }
            if out.len() == cap {
                return (out, true);
            }
            out.push(n);
            t = n;
        }
        (out, false)
    }
}

/// The stable offset, in `[0, jitter_s)` seconds, at which a job starts after each of its
/// cron instants: the same job always gets the same offset, different jobs spread out.
pub fn jitter_offset_ms(job_id: &str, jitter_s: u32) -> i64 {
    if jitter_s == 0 {
        return 0;
    }
    // FNV-1a: stable across processes and builds (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % (u64::from(jitter_s) * 1000)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_shifts_every_instant_and_is_stable_per_job() {
        let a = jitter_offset_ms("job-a", 30);
        assert_eq!(a, jitter_offset_ms("job-a", 30));
        assert!((0..30_000).contains(&a));
        assert_eq!(jitter_offset_ms("job-a", 0), 0);
        let spread: std::collections::HashSet<i64> = (0..100)
            .map(|i| jitter_offset_ms(&format!("job-{i}"), 60) / 1000)
            .collect();
        assert!(
            spread.len() > 30,
            "offsets spread over the window: {spread:?}"
        );

        let plan = Plan::Cron {
            schedule: Schedule::parse("@every 10s", "UTC").unwrap(),
            offset_ms: 2_500,
        };
        assert_eq!(plan.next_after(0), Some(2_500));
        assert_eq!(plan.next_after(2_500), Some(12_500));
        assert_eq!(plan.prev_at_or_before(12_499), Some(2_500));
        assert_eq!(plan.prev_at_or_before(12_500), Some(12_500));
    }

    /// A daily 02:30 job across both daylight-saving changes of a year: exactly one
    /// occurrence on every local day — at 03:00 on the day 02:30 does not exist, at the
    /// first 02:30 on the day it exists twice.
    #[test]
    fn a_daily_0230_job_runs_once_every_day_across_daylight_saving_changes() {
        use chrono::TimeZone;
        for tz in ["Europe/Berlin", "America/New_York"] {
            let plan = Plan::cron(Schedule::parse("30 2 * * *", tz).unwrap());
            let zone: chrono_tz::Tz = tz.parse().unwrap();
            let from = chrono::Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
            let to = chrono::Utc.with_ymd_and_hms(2027, 4, 30, 0, 0, 0).unwrap();
            let (fires, _) = plan.between(from.timestamp_millis(), to.timestamp_millis(), 1_000);
            let days: Vec<chrono::NaiveDate> = fires
                .iter()
                .map(|ms| {
                    chrono::Utc
                        .timestamp_millis_opt(*ms)
                        .unwrap()
                        .with_timezone(&zone)
                        .date_naive()
                })
                .collect();
            let unique: std::collections::BTreeSet<_> = days.iter().collect();
            assert_eq!(unique.len(), days.len(), "{tz}: a day ran twice");
            let first = days[0];
            let last = days[days.len() - 1];
            assert_eq!(
                (last - first).num_days() + 1,
                days.len() as i64,
                "{tz}: a day was skipped"
            );
            // The spring-forward day runs at 03:00 local, every other day at 02:30.
            for ms in &fires {
                let local = chrono::Utc
                    .timestamp_millis_opt(*ms)
                    .unwrap()
                    .with_timezone(&zone)
                    .format("%H:%M")
                    .to_string();
                assert!(local == "02:30" || local == "03:00", "{tz}: {local}");
            }
            let at_three = fires
                .iter()
                .filter(|ms| {
                    chrono::Utc
                        .timestamp_millis_opt(**ms)
                        .unwrap()
                        .with_timezone(&zone)
                        .format("%H:%M")
                        .to_string()
                        == "03:00"
                })
                .count();
            assert_eq!(
                at_three, 1,
                "{tz}: only the spring-forward day moves to 03:00"
            );
        }
    }

    #[test]
    fn between_lists_a_window_inclusively_and_says_when_capped() {
        let plan = Plan::cron(Schedule::parse("@every 10s", "UTC").unwrap());
        assert_eq!(
            plan.between(10_000, 40_000, 10),
            (vec![10_000, 20_000, 30_000, 40_000], false)
        );
        assert_eq!(
            plan.between(10_000, 40_000, 2),
            (vec![10_000, 20_000], true)
        );
        let once = Plan::Once { at_ms: 15_000 };
        assert_eq!(once.between(0, 20_000, 10), (vec![15_000], false));
        assert_eq!(once.between(16_000, 20_000, 10), (vec![], false));
    }
}
