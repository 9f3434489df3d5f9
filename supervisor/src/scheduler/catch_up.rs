//! The misfire rule: what to do about occurrences that passed while nothing scheduled
//! the job (the process was down, no node owned it, the process stalled).
//!
//! Pure: given the plan, the instant after which occurrences were handled, now and the
//! job's rule, it answers which occurrences to record as missed and which to run.

use super::plan::Plan;
use crate::job::MisfirePolicy;

/// Never record more than this many individual misses per catch-up; the rest are
/// counted in a log line. A job firing every second that was down for a day would
/// otherwise write 86,400 history rows at start-up.
pub const MAX_MISSED_RECORDS: usize = 100;

/// A job's misfire settings, as the scheduler applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MisfireRule {
    pub policy: MisfirePolicy,
    /// How old a missed occurrence may be and still run.
    pub window_ms: i64,
    /// `RunAll`: how many run at most.
    pub max_catch_up: u32,
    /// Occurrences before this instant (a pause) never run.
    pub paused_until_ms: Option<i64>,
}

impl Default for MisfireRule {
    fn default() -> Self {
        MisfireRule {
            policy: MisfirePolicy::RunOnce,
            window_ms: 60_000,
            max_catch_up: 10,
            paused_until_ms: None,
        }
    }
}

/// What to do about the occurrences of a plan in `(since, now]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Recorded as missed (the most recent [`MAX_MISSED_RECORDS`] at most), oldest first.
    pub missed: Vec<i64>,
    /// True when older missed occurrences exist beyond the ones listed.
    pub more_missed: bool,
    /// To run now, oldest first.
    pub run: Vec<i64>,
}

/// Walks backwards from `now_ms`, so that the cost is bounded by the number of records
/// kept, not by the length of the outage.
pub fn catch_up(plan: &Plan, since_ms: i64, now_ms: i64, rule: &MisfireRule) -> CatchUp {
    let max_run = match rule.policy {
        MisfirePolicy::Skip => 0,
        MisfirePolicy::RunOnce => 1,
        MisfirePolicy::RunAll => rule.max_catch_up as usize,
    };
    let mut out = CatchUp::default();
    let mut passed = Vec::new(); // newest first
    let mut t = now_ms;
    while let Some(p) = plan.prev_at_or_before(t) {
        if p <= since_ms {
            break;
        }
        if passed.len() > MAX_MISSED_RECORDS + max_run {
            out.more_missed = true;
            break;
        }
        passed.push(p);
        t = p - 1;
    }
    let runnable =
        |p: i64| now_ms - p < rule.window_ms && rule.paused_until_ms.is_none_or(|until| p >= until);
    // Runnable occurrences are the newest ones (the window is a suffix of time), so
    // they are a prefix of `passed`.
    let n_run = passed
        .iter()
        .take(max_run)
        .take_while(|p| runnable(**p))
        .count();
    out.run = passed.drain(..n_run).rev().collect();
    if passed.len() > MAX_MISSED_RECORDS {
        passed.truncate(MAX_MISSED_RECORDS);
        out.more_missed = true;
    }
    passed.reverse();
    out.missed = passed;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::Schedule;

    fn every(s: &str) -> Plan {
        Plan::cron(Schedule::parse(s, "UTC").unwrap())
    }

    fn rule(policy: MisfirePolicy, window_ms: i64) -> MisfireRule {
        MisfireRule {
            policy,
            window_ms,
            ..MisfireRule::default()
        }
    }

    #[test]
    fn run_once_runs_the_most_recent_within_the_window_and_records_the_rest() {
        let plan = every("@every 10s");
        let c = catch_up(&plan, 0, 35_000, &rule(MisfirePolicy::RunOnce, 60_000));
        assert_eq!(c.missed, vec![10_000, 20_000]);
        assert_eq!(c.run, vec![30_000]);
        let stale = catch_up(&plan, 0, 95_000, &rule(MisfirePolicy::RunOnce, 3_000));
        assert_eq!(stale.run, Vec::<i64>::new());
        assert_eq!(stale.missed.len(), 9);
    }

    #[test]
    fn skip_runs_nothing_and_records_everything() {
        let c = catch_up(
            &every("@every 10s"),
            0,
            35_000,
            &rule(MisfirePolicy::Skip, 60_000),
        );
        assert_eq!(c.missed, vec![10_000, 20_000, 30_000]);
        assert!(c.run.is_empty());
    }

    #[test]
    fn run_all_runs_the_window_oldest_first_bounded_by_the_count() {
        let plan = every("@every 10s");
        let all = MisfireRule {
            max_catch_up: 3,
            ..rule(MisfirePolicy::RunAll, 45_000)
        };
        // Passed: 10..=90 s; the window (now - p < 45 s) holds 60, 70, 80, 90; three run.
        let c = catch_up(&plan, 0, 95_000, &all);
        assert_eq!(c.run, vec![70_000, 80_000, 90_000]);
        assert_eq!(
            c.missed,
            vec![10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
        );
    }

    #[test]
    fn occurrences_during_a_pause_never_run() {
        let plan = every("@every 10s");
        let paused = MisfireRule {
            paused_until_ms: Some(31_000),
            ..rule(MisfirePolicy::RunOnce, 60_000)
        };
        let c = catch_up(&plan, 0, 35_000, &paused);
        assert!(c.run.is_empty());
        assert_eq!(c.missed, vec![10_000, 20_000, 30_000]);
    }

    #[test]
    fn a_long_outage_costs_only_the_records_kept() {
        let plan = every("@every 1s");
        let c = catch_up(&plan, 0, 86_400_000, &rule(MisfirePolicy::RunOnce, 60_000));
        assert_eq!(c.run, vec![86_400_000]);
        assert_eq!(c.missed.len(), MAX_MISSED_RECORDS);
        assert_eq!(c.missed.last(), Some(&86_399_000));
        assert_eq!(
            c.missed.first(),
            Some(&(86_400_000 - 1000 * MAX_MISSED_RECORDS as i64))
        );
        assert!(c.more_missed);
    }

    #[test]
    fn a_delay_job_that_already_ran_is_nothing() {
        let plan = Plan::Once { at_ms: 10_000 };
        let r = rule(MisfirePolicy::RunOnce, 60_000);
        assert_eq!(catch_up(&plan, 10_000, 20_000, &r), CatchUp::default());
        assert_eq!(catch_up(&plan, 5_000, 20_000, &r).run, vec![10_000]);
    }
}
