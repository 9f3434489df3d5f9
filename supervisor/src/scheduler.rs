//! The timing wheel: holds the next occurrence of every scheduled job and fires each at
//! its instant — never early, never twice — applying the overlap and misfire rules.
//!
//! One task owns all scheduling state and reacts to one closed set of events
//! ([`Command`]s and expired timers), so every way the schedule can change is visible
//! in [`SchedulerTask::handle`]. Timers live in tokio-util's `DelayQueue`, a
//! hierarchical timing wheel with millisecond slots.
//!
//! The scheduler does not run scripts, read the store or write history: it tells a
//! [`Dispatch`] what to start, skip or record as missed, and hears back through
//! [`SchedulerHandle::finished`] when a run is over. A `remove` that has been answered
//! guarantees the scheduler will not start that job again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::job::{OverlapPolicy, RetryPolicy, Trigger};

mod catch_up;
mod plan;
mod slots;

pub use catch_up::{CatchUp, MAX_MISSED_RECORDS, MisfireRule, catch_up};
pub use plan::{Plan, jitter_offset_ms};
pub use slots::Pending;
use slots::{Admit, Slots};

/// What the run of a job needs to know; shared by all its fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMeta {
    pub id: Arc<str>,
    pub name: String,
    pub version: u64,
    pub script_version: u64,
    pub time_limit_ms: u64,
    pub memory_limit_mb: u64,
    pub overlap: OverlapPolicy,
    /// `Allow`: how many runs may go at once.
    pub max_concurrent: u32,
    pub retry: RetryPolicy,
    /// Names of the secrets granted to the job (what its runs get).
    pub secrets: Vec<String>,
}

/// A job as the scheduler holds it.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    pub meta: Arc<JobMeta>,
    pub plan: Plan,
    /// Catch up occurrences after this instant (ms) that have passed: at start-up, the
    /// last occurrence handled before the process went down. `None` schedules from now.
    pub catch_up_since_ms: Option<i64>,
    /// The misfire policy, window and pause.
    pub misfire: MisfireRule,
}

/// One occurrence to start.
#[derive(Debug, Clone)]
pub struct Fire {
    pub meta: Arc<JobMeta>,
    pub scheduled_ms: i64,
    pub trigger: Trigger,
}

impl From<Pending> for Fire {
    fn from(p: Pending) -> Self {
        Fire {
            meta: p.meta,
            scheduled_ms: p.scheduled_ms,
            trigger: p.trigger,
        }
    }
}

/// Why an occurrence did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The overlap policy said no: the previous run was still going.
    Overlap,
    /// The job is paused until this instant (ms).
    Paused { until_ms: i64 },
}

/// The scheduler's view of the rest of the service.
pub trait Dispatch: Send + Sync + 'static {
    /// Start a run. Must not block; must eventually lead to
    /// [`SchedulerHandle::finished`] for `fire.meta.id`.
    fn start(&self, fire: Fire);
    /// An occurrence came due and was not run.
    fn skipped(&self, meta: &Arc<JobMeta>, scheduled_ms: i64, reason: SkipReason);
    /// Occurrences missed while nothing was scheduling the job.
    fn missed(&self, meta: &Arc<JobMeta>, scheduled_ms: &[i64]);
    /// The job has no further occurrence (a delay job that fired, or a cron whose years
    /// have all passed): it should read `state: 0`.
    fn exhausted(&self, meta: &Arc<JobMeta>);
    /// `replace`: cancel the job's runs in progress (a new one is starting).
    fn cancel_running(&self, id: &Arc<str>);
    /// The job was unscheduled (stopped, deleted, no longer owned): its runs in
    /// progress must not start another attempt. Called before `remove` answers.
    fn unscheduled(&self, id: &Arc<str>);
}

/// If the scheduler finds itself this far behind an occurrence (a stalled process, a
/// suspended VM), the occurrences in between are treated as missed, not fired in a burst.
const STALL_TOLERANCE_MS: i64 = 1_000;

enum Command {
    Upsert(JobSchedule, oneshot::Sender<Option<i64>>),
    UpsertMany(Vec<JobSchedule>, oneshot::Sender<()>),
    Remove(Arc<str>, oneshot::Sender<()>),
    Finished(Arc<str>),
    Backfill(Vec<Pending>, oneshot::Sender<()>),
    Next(Arc<str>, oneshot::Sender<Option<i64>>),
    Upcoming(usize, oneshot::Sender<Vec<(Arc<JobMeta>, i64)>>),
    Versions(oneshot::Sender<Vec<(Arc<str>, u64)>>),
    Shutdown(oneshot::Sender<()>),
}

/// Cheap to clone; every method is safe to call from any task.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Command>,
    scheduled: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("the scheduler has stopped")]
pub struct SchedulerStopped;

impl SchedulerHandle {
    /// Schedules (or reschedules) a job; answers its next occurrence once the change is
    /// in force. `None`: nothing left to fire (the job was handed to `exhausted`).
    pub async fn upsert(&self, job: JobSchedule) -> Result<Option<i64>, SchedulerStopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Upsert(job, tx))?;
        rx.await.map_err(|_| SchedulerStopped)
    }

    /// Schedules many jobs in one message (start-up loads a million this way).
    pub async fn upsert_many(&self, jobs: Vec<JobSchedule>) -> Result<(), SchedulerStopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::UpsertMany(jobs, tx))?;
        rx.await.map_err(|_| SchedulerStopped)
    }

    /// Unschedules a job. Once this returns, the scheduler will not start it again.
    pub async fn remove(&self, id: &str) -> Result<(), SchedulerStopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Remove(id.into(), tx))?;
        rx.await.map_err(|_| SchedulerStopped)
    }

    /// Queues past occurrences of one job to run in order, one slot at a time under
    /// the job's overlap policy; answered once they are queued.
    pub async fn backfill(&self, items: Vec<Pending>) -> Result<(), SchedulerStopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Backfill(items, tx))?;
        rx.await.map_err(|_| SchedulerStopped)
    }

    /// A run started by [`Dispatch::start`] is over.
    pub fn finished(&self, id: Arc<str>) {
        let _ = self.send(Command::Finished(id));
    }

    /// The next occurrence the wheel holds for a job.
    pub async fn next_of(&self, id: &str) -> Option<i64> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Next(id.into(), tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// The `n` soonest occurrences in the wheel, soonest first.
    pub async fn upcoming(&self, n: usize) -> Vec<(Arc<JobMeta>, i64)> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Upcoming(n, tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Every job in the wheel with the version it was scheduled at.
    pub async fn versions(&self) -> Vec<(Arc<str>, u64)> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Versions(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Stops firing; answered when the scheduler task has ended.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// How many jobs the wheel holds.
    pub fn scheduled(&self) -> u64 {
        self.scheduled.load(Ordering::Relaxed)
    }

    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    fn send(&self, cmd: Command) -> Result<(), SchedulerStopped> {
        self.tx.send(cmd).map_err(|_| SchedulerStopped)
    }
}

struct Entry {
    job: JobSchedule,
    next_ms: i64,
    key: delay_queue::Key,
}

struct SchedulerTask<D> {
    dispatch: D,
    entries: HashMap<Arc<str>, Entry>,
    /// Runs in progress and waiting occurrences per job (the overlap rule).
    slots: HashMap<Arc<str>, Slots>,
    wheel: DelayQueue<Arc<str>>,
    scheduled: Arc<AtomicU64>,
}

/// Starts the scheduler task on the current runtime.
pub fn spawn<D: Dispatch>(dispatch: D) -> (SchedulerHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let scheduled = Arc::new(AtomicU64::new(0));
    let task = SchedulerTask {
        dispatch,
        entries: HashMap::new(),
        slots: HashMap::new(),
        wheel: DelayQueue::new(),
        scheduled: scheduled.clone(),
    };
    let join = tokio::spawn(task.run(rx));
    (SchedulerHandle { tx, scheduled }, join)
}

/// Wall-clock now, Unix ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The tokio instant at which the wall clock will read `at_ms` (or now, if passed).
fn instant_for(at_ms: i64) -> Instant {
    let wait = at_ms.saturating_sub(now_ms()).max(0) as u64;
    Instant::now() + Duration::from_millis(wait)
}

impl<D: Dispatch> SchedulerTask<D> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                biased;
                Some(expired) = std::future::poll_fn(|cx| self.wheel.poll_expired(cx)), if !self.wheel.is_empty() => {
                    self.fire(expired.into_inner());
                }
                cmd = rx.recv() => match cmd {
                    Some(Command::Shutdown(ack)) => {
                        tracing::info!(scheduled = self.entries.len(), "scheduler stopped");
                        let _ = ack.send(());
                        return;
                    }
                    Some(cmd) => self.handle(cmd),
                    None => return,
                },
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Upsert(job, ack) => {
                let next = self.upsert(job);
                let _ = ack.send(next);
            }
            Command::UpsertMany(jobs, ack) => {
                for job in jobs {
                    self.upsert(job);
                }
                let _ = ack.send(());
            }
            Command::Remove(id, ack) => {
                self.unschedule(&id);
                let _ = ack.send(());
            }
            Command::Finished(id) => {
                let next = match self.slots.get_mut(&id) {
                    Some(s) => s.finished(),
                    None => Vec::new(),
                };
                for p in next {
                    self.dispatch.start(p.into());
                }
                if self.slots.get(&id).is_some_and(Slots::is_idle) {
                    self.slots.remove(&id);
                }
            }
            Command::Backfill(items, ack) => {
                if let Some(first) = items.first() {
                    let id = first.meta.id.clone();
                    self.push_backlog(id, items);
                }
                let _ = ack.send(());
            }
            Command::Next(id, ack) => {
                let _ = ack.send(self.entries.get(&id).map(|e| e.next_ms));
            }
            Command::Versions(ack) => {
                let _ = ack.send(
                    self.entries
                        .iter()
                        .map(|(id, e)| (id.clone(), e.job.meta.version))
                        .collect(),
                );
            }
            Command::Upcoming(n, ack) => {
                // A bounded max-heap keeps the n soonest in one pass.
                let mut heap: std::collections::BinaryHeap<(i64, &Arc<str>)> =
                    std::collections::BinaryHeap::with_capacity(n + 1);
                for (id, e) in &self.entries {
                    heap.push((e.next_ms, id));
                    if heap.len() > n {
                        heap.pop();
                    }
                }
                let mut out: Vec<(Arc<JobMeta>, i64)> = heap
                    .into_iter()
                    .filter_map(|(t, id)| self.entries.get(id).map(|e| (e.job.meta.clone(), t)))
                    .collect();
                out.sort_by_key(|(_, t)| *t);
                let _ = ack.send(out);
            }
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
        self.scheduled
            .store(self.entries.len() as u64, Ordering::Relaxed);
    }

    /// Takes the job off the wheel only (an upsert replaces it next).
    fn remove(&mut self, id: &str) {
        if let Some(old) = self.entries.remove(id) {
            self.wheel.remove(&old.key);
        }
    }

    /// The job is no longer scheduled here: off the wheel, its waiting occurrences
    /// forgotten, and its runs in progress told not to retry.
    fn unschedule(&mut self, id: &Arc<str>) {
        self.remove(id);
        if let Some(s) = self.slots.get_mut(id) {
            let dropped = s.clear_waiting();
            if !dropped.is_empty() {
                tracing::info!(job = %id, dropped = dropped.len(), "waiting occurrences dropped: the job was unscheduled");
            }
            if s.is_idle() {
                self.slots.remove(id);
            }
        }
        self.dispatch.unscheduled(id);
    }

    fn upsert(&mut self, job: JobSchedule) -> Option<i64> {
        let id = job.meta.id.clone();
        self.remove(&id);
        let now = now_ms();
        if let Some(since) = job.catch_up_since_ms {
            let c = catch_up(&job.plan, since, now, &job.misfire);
            self.apply_catch_up(&job.meta, c);
        }
        match job.plan.next_after(now) {
            Some(next_ms) => {
                let key = self.wheel.insert_at(id.clone(), instant_for(next_ms));
                self.entries.insert(id, Entry { job, next_ms, key });
                Some(next_ms)
            }
            None => {
                self.dispatch.exhausted(&job.meta);
                None
            }
        }
    }

    /// Records the missed occurrences and queues the ones to run, in order.
    fn apply_catch_up(&mut self, meta: &Arc<JobMeta>, c: CatchUp) {
        if c.more_missed {
            tracing::warn!(
                job = %meta.id,
                recorded = c.missed.len(),
                "many occurrences missed; only the most recent are recorded"
            );
        }
        if !c.missed.is_empty() {
            self.dispatch.missed(meta, &c.missed);
        }
        if !c.run.is_empty() {
            let items: Vec<Pending> = c
                .run
                .into_iter()
                .map(|t| Pending {
                    meta: meta.clone(),
                    scheduled_ms: t,
                    trigger: Trigger::Misfire,
                })
                .collect();
            self.push_backlog(meta.id.clone(), items);
        }
    }

    /// Queues past occurrences of one job and starts those its slots allow now.
    fn push_backlog(&mut self, id: Arc<str>, items: Vec<Pending>) {
        let start = self.slots.entry(id).or_default().push_backlog(items);
        for p in start {
            self.dispatch.start(p.into());
        }
    }

    /// An occurrence is due: the pause, then the overlap policy decide.
    fn admit(&mut self, job: &JobSchedule, scheduled_ms: i64) {
        let meta = &job.meta;
        if let Some(until_ms) = job.misfire.paused_until_ms
            && scheduled_ms < until_ms
        {
            self.dispatch
                .skipped(meta, scheduled_ms, SkipReason::Paused { until_ms });
            return;
        }
        let p = Pending {
            meta: meta.clone(),
            scheduled_ms,
            trigger: Trigger::Schedule,
        };
        match self.slots.entry(meta.id.clone()).or_default().admit(p) {
            Admit::Start(p) => self.dispatch.start(p.into()),
            Admit::Replace(p) => {
                self.dispatch.cancel_running(&meta.id);
                self.dispatch.start(p.into());
            }
            Admit::Skip(p) => self
                .dispatch
                .skipped(&p.meta, p.scheduled_ms, SkipReason::Overlap),
            Admit::Queued => {}
        }
    }

    fn fire(&mut self, id: Arc<str>) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let scheduled_ms = entry.next_ms;
        let now = now_ms();
        if now < scheduled_ms {
            // The monotonic timer ran ahead of the wall clock (e.g. an NTP step):
            // never fire early, wait for the wall clock to reach the instant.
            entry.key = self.wheel.insert_at(id, instant_for(scheduled_ms));
            return;
        }
        let job = entry.job.clone();
        self.admit(&job, scheduled_ms);
        let next = match job.plan.next_after(scheduled_ms) {
            Some(n) if n <= now - STALL_TOLERANCE_MS => {
                // We are far behind: the occurrences up to now were missed.
                let c = catch_up(&job.plan, scheduled_ms, now, &job.misfire);
                self.apply_catch_up(&job.meta, c);
                job.plan.next_after(now)
            }
            other => other,
        };
        match next {
            Some(next_ms) => {
                let key = self.wheel.insert_at(id.clone(), instant_for(next_ms));
                if let Some(e) = self.entries.get_mut(&id) {
                    e.next_ms = next_ms;
                    e.key = key;
                }
            }
            None => {
                self.entries.remove(&id);
                self.dispatch.exhausted(&job.meta);
            }
        }
        self.scheduled
            .store(self.entries.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::Schedule;
    use parking_lot::Mutex;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Start(String, i64, Trigger),
        Skip(String, i64),
        Paused(String, i64),
        Cancel(String),
        Missed(String, Vec<i64>),
        Exhausted(String),
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Ev>>>);

    impl Dispatch for Recorder {
        fn start(&self, f: Fire) {
            self.0
                .lock()
                .push(Ev::Start(f.meta.id.to_string(), f.scheduled_ms, f.trigger));
        }
        fn skipped(&self, m: &Arc<JobMeta>, s: i64, reason: SkipReason) {
            let ev = match reason {
                SkipReason::Overlap => Ev::Skip(m.id.to_string(), s),
                SkipReason::Paused { .. } => Ev::Paused(m.id.to_string(), s),
            };
            self.0.lock().push(ev);
        }
        fn cancel_running(&self, id: &Arc<str>) {
            self.0.lock().push(Ev::Cancel(id.to_string()));
        }
        fn unscheduled(&self, _id: &Arc<str>) {}
        fn missed(&self, m: &Arc<JobMeta>, s: &[i64]) {
            self.0.lock().push(Ev::Missed(m.id.to_string(), s.to_vec()));
        }
        fn exhausted(&self, m: &Arc<JobMeta>) {
            self.0.lock().push(Ev::Exhausted(m.id.to_string()));
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<Ev> {
            std::mem::take(&mut *self.0.lock())
        }
    }

    fn meta_with(id: &str, overlap: OverlapPolicy) -> Arc<JobMeta> {
        Arc::new(JobMeta {
            id: id.into(),
            name: id.into(),
            version: 1,
            script_version: 1,
            time_limit_ms: 1000,
            memory_limit_mb: 16,
            overlap,
            max_concurrent: 2,
            retry: RetryPolicy::default(),
            secrets: Vec::new(),
        })
    }

    fn meta(id: &str) -> Arc<JobMeta> {
        meta_with(id, OverlapPolicy::Skip)
    }

    fn cron_job(id: &str, expr: &str) -> JobSchedule {
        JobSchedule {
            meta: meta(id),
            plan: Plan::cron(Schedule::parse(expr, "UTC").unwrap()),
            catch_up_since_ms: None,
            misfire: MisfireRule::default(),
        }
    }

    // These run on real (not paused) time: the wheel compares against the wall clock,
    // which paused tokio time does not move.
    #[tokio::test]
    async fn a_job_fires_at_its_instants_never_early() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let next = h
            .upsert(cron_job("a", "@every 200ms"))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        h.shutdown().await;
        let evs = rec.take();
        // Every occurrence is either started or skipped (overlap), exactly once.
        let starts: Vec<i64> = evs
            .iter()
            .filter_map(|e| match e {
                Ev::Start(_, t, Trigger::Schedule) | Ev::Skip(_, t) => Some(*t),
                _ => None,
            })
            .collect();
        assert!(starts.len() >= 3, "{evs:?}");
        assert_eq!(starts[0], next);
        for w in starts.windows(2) {
            assert_eq!(w[1] - w[0], 200, "every occurrence once: {starts:?}");
        }
        // Only the first start found the job idle; the rest were skipped because
        // nobody reported the first run finished.
        assert!(evs.iter().any(|e| matches!(e, Ev::Skip(..))));
    }

    #[tokio::test]
    async fn overlap_skips_while_running_and_resumes_after_finished() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        h.upsert(cron_job("a", "@every 100ms")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        h.finished("a".into());
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.shutdown().await;
        let evs = rec.take();
        let kinds: Vec<&str> = evs
            .iter()
            .map(|e| match e {
                Ev::Start(..) => "start",
                Ev::Skip(..) => "skip",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds.first(), Some(&"start"), "{evs:?}");
        assert!(kinds.contains(&"skip"), "{evs:?}");
        assert_eq!(
            kinds.iter().filter(|k| **k == "start").count(),
            2,
            "a second start only after finished: {evs:?}"
        );
    }

    #[tokio::test]
    async fn after_remove_answers_nothing_fires() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        h.upsert(cron_job("a", "@every 100ms")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.remove("a").await.unwrap();
        let before = rec.take().len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(before >= 1);
        assert_eq!(rec.take(), vec![]);
        assert_eq!(h.scheduled(), 0);
    }

    #[tokio::test]
    async fn a_delay_job_fires_once_then_is_exhausted() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let at = now_ms() + 100;
        let job = JobSchedule {
            meta: meta("d"),
            plan: Plan::Once { at_ms: at },
            catch_up_since_ms: None,
            misfire: MisfireRule::default(),
        };
        assert_eq!(h.upsert(job).await.unwrap(), Some(at));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            rec.take(),
            vec![
                Ev::Start("d".into(), at, Trigger::Schedule),
                Ev::Exhausted("d".into())
            ]
        );
        assert_eq!(h.scheduled(), 0);
    }

    #[tokio::test]
    async fn upsert_with_catch_up_runs_the_recent_miss_now() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let now = now_ms();
        let mut job = cron_job("a", "@every 10s");
        job.catch_up_since_ms = Some(now - 25_000);
        h.upsert(job).await.unwrap();
        let evs = rec.take();
        let last = now.div_euclid(10_000) * 10_000;
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert!(matches!(&evs[0], Ev::Missed(_, m) if m.len() == 1 || m.len() == 2));
        assert_eq!(evs[1], Ev::Start("a".into(), last, Trigger::Misfire));
    }

    #[tokio::test]
    async fn replace_cancels_the_running_run_and_starts_the_new_one() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let mut job = cron_job("r", "@every 100ms");
        job.meta = meta_with("r", OverlapPolicy::Replace);
        h.upsert(job).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        h.shutdown().await;
        let evs = rec.take();
        let starts = evs.iter().filter(|e| matches!(e, Ev::Start(..))).count();
        let cancels = evs.iter().filter(|e| matches!(e, Ev::Cancel(..))).count();
        assert!(starts >= 2, "{evs:?}");
        assert_eq!(
            cancels,
            starts - 1,
            "every start after the first replaces: {evs:?}"
        );
        assert!(!evs.iter().any(|e| matches!(e, Ev::Skip(..))), "{evs:?}");
    }

    #[tokio::test]
    async fn occurrences_during_a_pause_are_skipped_and_later_ones_run() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let mut job = cron_job("p", "@every 100ms");
        let until = now_ms() + 250;
        job.misfire.paused_until_ms = Some(until);
        h.upsert(job).await.unwrap();
        tokio::time::sleep(Duration::from_millis(450)).await;
        h.shutdown().await;
        let evs = rec.take();
        for e in &evs {
            match e {
                Ev::Paused(_, t) => assert!(*t < until, "{evs:?}"),
                Ev::Start(_, t, _) | Ev::Skip(_, t) => assert!(*t >= until, "{evs:?}"),
                _ => {}
            }
        }
        assert!(evs.iter().any(|e| matches!(e, Ev::Paused(..))), "{evs:?}");
        assert!(evs.iter().any(|e| matches!(e, Ev::Start(..))), "{evs:?}");
    }

    #[tokio::test]
    async fn a_backfill_runs_its_occurrences_in_order_one_at_a_time() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let m = meta("b");
        let items = (1..=3)
            .map(|t| Pending {
                meta: m.clone(),
                scheduled_ms: t * 1000,
                trigger: Trigger::Backfill,
            })
            .collect();
        h.backfill(items).await.unwrap();
        assert_eq!(
            rec.take(),
            vec![Ev::Start("b".into(), 1000, Trigger::Backfill)]
        );
        h.finished("b".into());
        h.finished("b".into());
        // Let the scheduler task handle both messages.
        let _ = h.next_of("b").await;
        assert_eq!(
            rec.take(),
            vec![
                Ev::Start("b".into(), 2000, Trigger::Backfill),
                Ev::Start("b".into(), 3000, Trigger::Backfill)
            ]
        );
    }

    #[tokio::test]
    async fn a_stop_drops_waiting_occurrences() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let m = meta("s");
        let items = (1..=3)
            .map(|t| Pending {
                meta: m.clone(),
                scheduled_ms: t,
                trigger: Trigger::Backfill,
            })
            .collect();
        h.backfill(items).await.unwrap();
        h.remove("s").await.unwrap();
        h.finished("s".into());
        let _ = h.next_of("s").await;
        assert_eq!(
            rec.take(),
            vec![Ev::Start("s".into(), 1, Trigger::Backfill)]
        );
    }

    #[tokio::test]
    async fn an_expired_cron_is_exhausted_at_once() {
        let rec = Recorder::default();
        let (h, _j) = spawn(rec.clone());
        let next = h.upsert(cron_job("old", "0 0 0 1 1 ? 2020")).await.unwrap();
        assert_eq!(next, None);
        assert_eq!(rec.take(), vec![Ev::Exhausted("old".into())]);
    }
}
