//! The overlap rule: per job, how many runs are going, which occurrence waits
//! (`queue_one`) and which past occurrences wait their turn (a `run_all` catch-up, a
//! backfill), and what to start when a run ends.
//!
//! Pure bookkeeping: it decides, the scheduler task acts.

use std::collections::VecDeque;
use std::sync::Arc;

use super::JobMeta;
use crate::job::{OverlapPolicy, Trigger};

/// An occurrence that has come due (or was asked for) and is not running yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub meta: Arc<JobMeta>,
    pub scheduled_ms: i64,
    pub trigger: Trigger,
}

/// What becomes of an occurrence that comes due.
#[derive(Debug)]
pub enum Admit {
    /// Start it now.
    Start(Pending),
    /// Cancel the job's running runs, then start it.
    Replace(Pending),
    /// Not run: the previous run is still going (or one already waits).
    Skip(Pending),
    /// Waits for the running run to end (`queue_one`).
    Queued,
}

/// One job's runs in progress and waiting occurrences.
#[derive(Debug, Default)]
pub struct Slots {
    running: u32,
    /// The occurrence `queue_one` holds back.
    queued: Option<Pending>,
    /// Past occurrences to run one after the other (catch-up, backfill).
    backlog: VecDeque<Pending>,
}

/// How many runs of the job may go at once.
fn cap(meta: &JobMeta) -> u32 {
    match meta.overlap {
        OverlapPolicy::Allow => meta.max_concurrent.max(1),
        _ => 1,
    }
}

impl Slots {
    #[cfg(test)]
    pub fn running(&self) -> u32 {
        self.running
    }

    /// Nothing running and nothing waiting: the entry can go.
    pub fn is_idle(&self) -> bool {
        self.running == 0 && self.queued.is_none() && self.backlog.is_empty()
    }

    /// Applies the job's overlap policy to an occurrence that is due now.
    pub fn admit(&mut self, p: Pending) -> Admit {
        if self.running < cap(&p.meta) {
            self.running += 1;
            return Admit::Start(p);
        }
        match p.meta.overlap {
            OverlapPolicy::Allow | OverlapPolicy::Skip => Admit::Skip(p),
            OverlapPolicy::QueueOne if self.queued.is_none() => {
                self.queued = Some(p);
                Admit::Queued
            }
            OverlapPolicy::QueueOne => Admit::Skip(p),
            OverlapPolicy::Replace => {
                self.running += 1;
                Admit::Replace(p)
            }
        }
    }

    /// Past occurrences to run in order as slots free up; returns those that can start
    /// now.
    pub fn push_backlog(&mut self, items: impl IntoIterator<Item = Pending>) -> Vec<Pending> {
        self.backlog.extend(items);
        self.startable()
    }

    /// A run ended; returns what starts in its place.
    pub fn finished(&mut self) -> Vec<Pending> {
        self.running = self.running.saturating_sub(1);
        self.startable()
    }

    /// Forgets every waiting occurrence (the job was stopped or deleted); returns them.
    pub fn clear_waiting(&mut self) -> Vec<Pending> {
        let mut out: Vec<Pending> = self.queued.take().into_iter().collect();
        out.extend(self.backlog.drain(..));
        out
    }

    fn startable(&mut self) -> Vec<Pending> {
        let mut out = Vec::new();
        while let Some(next) = self.queued.as_ref().or(self.backlog.front()) {
            if self.running >= cap(&next.meta) {
                break;
            }
            let next = match self.queued.take() {
                Some(q) => q,
                None => match self.backlog.pop_front() {
                    Some(b) => b,
                    None => break,
                },
            };
            self.running += 1;
            out.push(next);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::RetryPolicy;

    fn pending(overlap: OverlapPolicy, max: u32, t: i64) -> Pending {
        Pending {
            meta: Arc::new(JobMeta {
                id: "j".into(),
                name: "j".into(),
                version: 1,
                script_version: 1,
                time_limit_ms: 1000,
                memory_limit_mb: 16,
                overlap,
                max_concurrent: max,
                retry: RetryPolicy::default(),
                secrets: Vec::new(),
            }),
            scheduled_ms: t,
            trigger: Trigger::Schedule,
        }
    }

    fn times(v: &[Pending]) -> Vec<i64> {
        v.iter().map(|p| p.scheduled_ms).collect()
    }

    #[test]
    fn skip_starts_one_and_skips_while_it_runs() {
        let mut s = Slots::default();
        assert!(matches!(
            s.admit(pending(OverlapPolicy::Skip, 1, 1)),
            Admit::Start(_)
        ));
        assert!(matches!(
            s.admit(pending(OverlapPolicy::Skip, 1, 2)),
            Admit::Skip(_)
        ));
        assert!(s.finished().is_empty());
        assert!(s.is_idle());
        assert!(matches!(
            s.admit(pending(OverlapPolicy::Skip, 1, 3)),
            Admit::Start(_)
        ));
    }

    #[test]
    fn allow_overlaps_up_to_the_cap() {
        let mut s = Slots::default();
        for t in 0..3 {
            assert!(matches!(
                s.admit(pending(OverlapPolicy::Allow, 3, t)),
                Admit::Start(_)
            ));
        }
        assert!(matches!(
            s.admit(pending(OverlapPolicy::Allow, 3, 3)),
            Admit::Skip(_)
        ));
        assert_eq!(s.running(), 3);
    }

    #[test]
    fn queue_one_holds_one_and_skips_the_rest_then_starts_it_when_free() {
        let mut s = Slots::default();
        assert!(matches!(
            s.admit(pending(OverlapPolicy::QueueOne, 1, 1)),
            Admit::Start(_)
        ));
        assert!(matches!(
            s.admit(pending(OverlapPolicy::QueueOne, 1, 2)),
            Admit::Queued
        ));
        assert!(
            matches!(s.admit(pending(OverlapPolicy::QueueOne, 1, 3)), Admit::Skip(p) if p.scheduled_ms == 3)
        );
        assert_eq!(times(&s.finished()), vec![2]);
        assert_eq!(s.running(), 1);
        assert!(s.finished().is_empty());
        assert!(s.is_idle());
    }

    #[test]
    fn replace_always_starts_and_counts_the_dying_run_until_it_ends() {
        let mut s = Slots::default();
        assert!(matches!(
            s.admit(pending(OverlapPolicy::Replace, 1, 1)),
            Admit::Start(_)
        ));
        assert!(matches!(
            s.admit(pending(OverlapPolicy::Replace, 1, 2)),
            Admit::Replace(_)
        ));
        assert_eq!(s.running(), 2);
        s.finished();
        assert_eq!(s.running(), 1);
    }

    #[test]
    fn a_backlog_runs_one_after_the_other_in_order() {
        let mut s = Slots::default();
        let started = s.push_backlog((1..=3).map(|t| pending(OverlapPolicy::Skip, 1, t)));
        assert_eq!(times(&started), vec![1]);
        assert_eq!(times(&s.finished()), vec![2]);
        assert_eq!(times(&s.finished()), vec![3]);
        assert!(s.finished().is_empty());
        assert!(s.is_idle());
    }

    #[test]
    fn a_stop_forgets_what_waits() {
        let mut s = Slots::default();
        s.push_backlog((1..=3).map(|t| pending(OverlapPolicy::Skip, 1, t)));
        assert_eq!(times(&s.clear_waiting()), vec![2, 3]);
        assert!(s.finished().is_empty());
        assert!(s.is_idle());
    }
}
