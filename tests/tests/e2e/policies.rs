//! Scheduling policies end to end (issue 6), standalone: overlap (`skip`, `allow`,
//! `queue_one`, `replace`), misfire after a restart (`skip`, `run_once`, `run_all`),
//! retries with backoff, pause and resume, backfill, the plan, script versions and the
//! refusal of bad policy input — each against the real `traitor` and real workers, read
//! back through the run history and the occurrence ledger exactly as a user would.
//!
//! Timing comes from short cron periods and scripts that sleep; every assertion is on
//! exact counts and instants, so a policy that quietly does something else fails.

use std::time::Duration;

use serde_json::{Value, json};
use tests::server::{Server, now_ms};

/// One record of a job's run history (`RunView`), with instants in Unix ms.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub run_id: String,
    pub occurrence_id: String,
    pub attempt: u64,
    pub trigger: String,
    pub scheduled: i64,
    pub started: Option<i64>,
    pub ended: Option<i64>,
    pub outcome: String,
    pub error: String,
    pub script_version: Option<u64>,
    pub duplicates: u64,
    pub node: String,
}

pub(crate) fn ms_of(v: &Value) -> Option<i64> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp_millis())
}

impl Rec {
    pub(crate) fn from_json(v: &Value) -> Rec {
        Rec {
            run_id: v["runId"].as_str().unwrap_or_default().to_owned(),
            occurrence_id: v["occurrenceId"].as_str().unwrap_or_default().to_owned(),
            attempt: v["attempt"].as_u64().unwrap_or(0),
            trigger: v["trigger"].as_str().unwrap_or_default().to_owned(),
            scheduled: ms_of(&v["scheduledAt"]).unwrap_or_else(|| panic!("no scheduledAt: {v}")),
            started: ms_of(&v["startedAt"]),
            ended: ms_of(&v["endedAt"]),
            outcome: v["outcome"].as_str().unwrap_or_default().to_owned(),
            error: v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            script_version: v["scriptVersion"].as_u64(),
            duplicates: v["duplicates"].as_u64().unwrap_or(0),
            node: v["node"].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// An attempt that actually ran (not a `skipped` or `missed` entry).
    pub(crate) fn ran(&self) -> bool {
        self.outcome != "skipped" && self.outcome != "missed"
    }

    /// An attempt that ran and is over.
    pub(crate) fn done(&self) -> bool {
        self.ran() && self.outcome != "running"
    }
}

/// The whole history of a job, oldest occurrence first, attempts in order.
pub(crate) fn sorted(items: &Value) -> Vec<Rec> {
    let mut v: Vec<Rec> = items
        .as_array()
        .map(|a| a.iter().map(Rec::from_json).collect())
        .unwrap_or_default();
    v.sort_by_key(|r| (r.scheduled, r.attempt));
    v
}

async fn history(s: &Server, id: &str) -> Vec<Rec> {
    let (status, v) = s.get(&format!("/api/job/runs?id={id}&limit=1000")).await;
    assert_eq!(status, 200, "{v}");
    sorted(&v["data"]["items"])
}

/// The occurrence ledger, newest first.
async fn ledger(s: &Server, id: &str) -> Vec<Value> {
    let (status, v) = s
        .get(&format!("/api/job/occurrences?id={id}&limit=500"))
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"]["items"].as_array().cloned().unwrap_or_default()
}

/// The console lines of one run.
async fn log_of(s: &Server, run_id: &str) -> Vec<String> {
    let (status, v) = s.get(&format!("/api/job/run?id={run_id}")).await;
    assert_eq!(status, 200, "{v}");
    v["data"]["log"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| l["text"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the job's history satisfies `ok`, and returns it.
async fn wait_history(
    s: &Server,
    id: &str,
    timeout_s: u64,
    what: &str,
    ok: impl Fn(&[Rec]) -> bool,
) -> Vec<Rec> {
    let ok = &ok;
    s.eventually(Duration::from_secs(timeout_s), what, || async move {
        let h = history(s, id).await;
        ok(&h).then_some(h)
    })
    .await
}

fn done_count(h: &[Rec]) -> usize {
    h.iter().filter(|r| r.done()).count()
}

/// A script that prints when it starts, sleeps `ms`, and prints when it ends.
fn sleeper(ms: u64) -> String {
    format!(
        "console.log('start ' + job.scheduledAt); \
         await new Promise(r => setTimeout(r, {ms})); console.log('end');"
    )
}

async fn stop(s: &Server, id: &str) {
    let (status, v) = s
        .post(&format!("/api/enable?id={id}&enable=false"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
}

/// Creates a job without starting it (`POST /api/job`); returns its id.
async fn create_stopped(s: &Server, body: Value) -> String {
    let (status, v) = s.post("/api/job?type=timing", body).await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_str().unwrap().to_owned()
}

async fn trigger(s: &Server, id: &str) -> String {
    let (status, v) = s
        .post(&format!("/api/job/trigger?id={id}"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_str().unwrap().to_owned()
}

/// The largest number of runs going at one instant, from their start and end times (a
/// run without an end is still going).
pub(crate) fn max_concurrency(h: &[Rec]) -> usize {
    let spans: Vec<(i64, i64)> = h
        .iter()
        .filter(|r| r.ran())
        .filter_map(|r| r.started.map(|s| (s, r.ended.unwrap_or(i64::MAX))))
        .collect();
    spans
        .iter()
        .map(|(at, _)| spans.iter().filter(|(s, e)| s <= at && at < e).count())
        .max()
        .unwrap_or(0)
}

/// Every instant of a `period_ms` cron in `[from, to]` has exactly one first-attempt
/// record (ran, skipped or missed): nothing lost, nothing twice.
pub(crate) fn assert_each_instant_once(h: &[Rec], from: i64, to: i64, period_ms: i64) {
    let mut t = from;
    while t <= to {
        let n = h
            .iter()
            .filter(|r| r.scheduled == t && r.attempt == 1)
            .count();
        assert_eq!(n, 1, "the occurrence at {t} has {n} records: {h:#?}");
        t += period_ms;
    }
    for r in h.iter().filter(|r| (from..=to).contains(&r.scheduled)) {
        assert_eq!(
            r.scheduled.rem_euclid(period_ms),
            0,
            "a record off the schedule: {r:?}"
        );
    }
}

// ---- overlap ------------------------------------------------------------------------

#[tokio::test]
async fn overlap_skip_records_what_came_due_while_a_run_went_and_never_overlaps() {
    let s = Server::start().await;
    let id = s
        .run_job(
            json!({"name": "slow", "cron": "* * * * * *", "overlap": "skip",
                        "script": sleeper(2_500)}),
        )
        .await;
    let h = wait_history(&s, &id, 20, "two finished runs", |h| done_count(h) >= 2).await;
    stop(&s, &id).await;

    let ran: Vec<&Rec> = h.iter().filter(|r| r.done()).take(2).collect();
    let (a, b) = (ran[0], ran[1]);
    assert_eq!(a.outcome, "succeeded", "{a:?}");
    assert_eq!(b.outcome, "succeeded", "{b:?}");
    assert!(
        b.started.unwrap() >= a.ended.unwrap(),
        "the second run started before the first ended: {a:?} {b:?}"
    );
    let between: Vec<&Rec> = h
        .iter()
        .filter(|r| r.scheduled > a.scheduled && r.scheduled < b.scheduled)
        .collect();
    assert!(
        between.len() >= 2,
        "a 2.5 s run of a 1 s job skips at least two occurrences: {h:#?}"
    );
    for r in &between {
        assert_eq!(r.outcome, "skipped", "{r:?}");
        assert!(r.error.contains("overlap"), "the skip says why: {r:?}");
        assert!(
            r.started.is_none(),
            "a skipped occurrence never started: {r:?}"
        );
    }
    assert_each_instant_once(&h, a.scheduled, b.scheduled, 1_000);
    assert_eq!(max_concurrency(&h), 1, "{h:#?}");
}

#[tokio::test]
async fn overlap_allow_runs_up_to_max_concurrent_at_once_and_no_more() {
    let s = Server::start().await;
    let id = s
        .run_job(
            json!({"name": "wide", "cron": "* * * * * *", "overlap": "allow",
                        "maxConcurrent": 2, "script": sleeper(3_500)}),
        )
        .await;
    let h = wait_history(&s, &id, 25, "three finished runs", |h| done_count(h) >= 3).await;
    stop(&s, &id).await;

    assert_eq!(
        max_concurrency(&h),
        2,
        "two runs overlap, never three: {h:#?}"
    );
    let third = h.iter().filter(|r| r.done()).nth(2).unwrap().scheduled;
    let first = h[0].scheduled;
    assert_each_instant_once(&h, first, third, 1_000);
    let skipped: Vec<&Rec> = h
        .iter()
        .filter(|r| r.outcome == "skipped" && r.scheduled < third)
        .collect();
    assert!(
        !skipped.is_empty(),
        "with two 3.5 s runs going, the next second is skipped: {h:#?}"
    );
    assert!(
        skipped.iter().all(|r| r.error.contains("overlap")),
        "{skipped:#?}"
    );
    // The second occurrence did not wait for the first.
    assert_eq!(h[1].scheduled, h[0].scheduled + 1_000);
    assert!(h[1].ran(), "{h:#?}");
}

#[tokio::test]
async fn overlap_queue_one_starts_the_waiting_occurrence_right_after_the_run_ends() {
    let s = Server::start().await;
    let id = s
        .run_job(
            json!({"name": "queue", "cron": "* * * * * *", "overlap": "queue_one",
                        "script": sleeper(2_500)}),
        )
        .await;
    let h = wait_history(&s, &id, 25, "three finished runs", |h| done_count(h) >= 3).await;
    stop(&s, &id).await;

    let mut ran: Vec<&Rec> = h.iter().filter(|r| r.done()).take(3).collect();
    ran.sort_by_key(|r| r.started);
    // The occurrence that came due one second into the first run waited for it.
    assert_eq!(
        ran[1].scheduled,
        ran[0].scheduled + 1_000,
        "the queued run is the instant that came due while busy: {h:#?}"
    );
    for w in ran.windows(2) {
        let (prev, next) = (w[0], w[1]);
        let gap = next.started.unwrap() - prev.ended.unwrap();
        assert!(
            (0..=700).contains(&gap),
            "the queued run starts right after the previous one ends (gap {gap} ms): {prev:?} {next:?}"
        );
        assert!(
            next.scheduled < prev.ended.unwrap(),
            "it came due while the previous run went: {prev:?} {next:?}"
        );
        assert!(
            next.started.unwrap() - next.scheduled >= 1_000,
            "it waited its turn: {next:?}"
        );
    }
    // While the second run went, one more occurrence waited and the rest were skipped.
    let skipped_while_one_waits = h
        .iter()
        .filter(|r| {
            r.outcome == "skipped"
                && r.scheduled > ran[2].scheduled
                && r.scheduled < ran[2].started.unwrap()
        })
        .count();
    assert!(
        skipped_while_one_waits >= 1,
        "at most one occurrence waits; later ones are skipped: {h:#?}"
    );
    assert_each_instant_once(&h, ran[0].scheduled, ran[2].scheduled, 1_000);
    assert_eq!(max_concurrency(&h), 1, "{h:#?}");
}

#[tokio::test]
async fn overlap_replace_cancels_the_running_run_and_starts_the_new_one() {
    let s = Server::start().await;
    let id = s
        .run_job(
            json!({"name": "replace", "cron": "*/2 * * * * *", "overlap": "replace",
                        "script": sleeper(10_000)}),
        )
        .await;
    let h = wait_history(&s, &id, 20, "two replaced runs", |h| {
        h.iter().filter(|r| r.outcome == "cancelled").count() >= 2
    })
    .await;
    stop(&s, &id).await;

    let runs: Vec<&Rec> = h.iter().take(3).collect();
    assert_eq!(runs.len(), 3, "{h:#?}");
    for w in runs.windows(2) {
        let (old, new) = (w[0], w[1]);
        assert_eq!(
            new.scheduled,
            old.scheduled + 2_000,
            "nothing skipped: {h:#?}"
        );
        assert_eq!(old.outcome, "cancelled", "{old:?}");
        assert!(
            old.error.contains("replace"),
            "the cancelled run says it was replaced: {old:?}"
        );
        let ended = old.ended.unwrap();
        assert!(
            (new.scheduled..=new.scheduled + 1_500).contains(&ended),
            "the old run ends when the new occurrence comes due: {old:?} {new:?}"
        );
        // (A run still going shows no start time yet; the replaced ones do.)
        if new.outcome == "cancelled" {
            let started = new.started.expect("the new run started");
            assert!(
                started - new.scheduled < 1_000,
                "the new run starts at once, not after a full run: {new:?}"
            );
        }
    }
    assert!(h.iter().all(|r| r.outcome != "skipped"), "{h:#?}");
    assert!(
        h.iter().all(|r| r.attempt == 1),
        "a replaced run is not retried: {h:#?}"
    );
}

// ---- retries ------------------------------------------------------------------------

#[tokio::test]
async fn retries_are_attempts_of_one_occurrence_and_the_script_sees_its_attempt() {
    let s = Server::start().await;
    let id = create_stopped(
        &s,
        json!({"name": "flaky", "cron": "@yearly", "retries": 2, "retryBackoffMs": 200,
               "script": "console.log('attempt ' + job.attempt + ' of ' + job.occurrenceId); \
                          throw new Error('boom ' + job.attempt);"}),
    )
    .await;
    trigger(&s, &id).await;
    wait_history(&s, &id, 20, "three failed attempts", |h| done_count(h) == 3).await;
    // No fourth attempt comes later.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(history(&s, &id).await.len(), 3);

    let occ = ledger(&s, &id).await;
    assert_eq!(
        occ.len(),
        1,
        "one occurrence, whatever its attempts: {occ:#?}"
    );
    let o = &occ[0];
    assert_eq!(o["outcome"], "failed");
    assert_eq!(o["trigger"], "manual");
    let occurrence_id = o["occurrenceId"].as_str().unwrap().to_owned();
    assert!(
        occurrence_id.starts_with(&format!("{id}@manual-")),
        "{occurrence_id}"
    );
    let attempts: Vec<Rec> = o["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(Rec::from_json)
        .collect();
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![3, 2, 1],
        "newest attempt first"
    );
    let scheduled = attempts[0].scheduled;
    for a in &attempts {
        assert_eq!(a.outcome, "failed", "{a:?}");
        assert_eq!(a.occurrence_id, occurrence_id, "{a:?}");
        assert_eq!(a.scheduled, scheduled, "{a:?}");
        assert_eq!(a.error, format!("Error: boom {}", a.attempt), "{a:?}");
        assert_eq!(
            log_of(&s, &a.run_id).await,
            vec![format!("attempt {} of {occurrence_id}", a.attempt)],
            "the script saw job.attempt and job.occurrenceId"
        );
    }
    // Backoff: 200 ms before attempt 2, 400 ms before attempt 3, each scaled by a
    // jitter factor in [0.5, 1].
    let (a1, a2, a3) = (&attempts[2], &attempts[1], &attempts[0]);
    let wait1 = a2.started.unwrap() - a1.ended.unwrap();
    let wait2 = a3.started.unwrap() - a2.ended.unwrap();
    assert!(wait1 >= 100, "first backoff {wait1} ms");
    assert!(wait2 >= 200, "second backoff {wait2} ms");

    // Paging the history never splits the attempts of one instant: a page of 2 holds
    // all 3, and the next page is empty rather than missing one.
    trigger(&s, &id).await;
    wait_history(&s, &id, 20, "a second occurrence", |h| done_count(h) == 6).await;
    let (status, v) = s.get(&format!("/api/job/runs?id={id}&limit=2")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["items"].as_array().map(Vec::len), Some(3), "{v}");
    let before = v["data"]["nextBefore"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, v) = s
        .get(&format!("/api/job/runs?id={id}&limit=2&before={before}"))
        .await;
    let older = v["data"]["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(older.len(), 3, "the first occurrence, whole: {v}");
    assert!(
        older
            .iter()
            .all(|r| r["scheduledAt"].as_str() < Some(before.as_str()))
    );
}

#[tokio::test]
async fn a_retry_that_succeeds_ends_the_occurrence_succeeded() {
    let s = Server::start().await;
    let id = create_stopped(
        &s,
        json!({"name": "second time lucky", "cron": "@yearly", "retries": 3,
               "retryBackoffMs": 200,
               "script": "if (job.attempt === 1) throw new Error('first try'); \
                          console.log('ok on ' + job.attempt);"}),
    )
    .await;
    trigger(&s, &id).await;
    wait_history(&s, &id, 20, "a succeeded attempt", |h| {
        h.iter().any(|r| r.outcome == "succeeded")
    })
    .await;
    // Retries 3 would allow two more; a success ends the occurrence.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let occ = ledger(&s, &id).await;
    assert_eq!(occ.len(), 1, "{occ:#?}");
    assert_eq!(occ[0]["outcome"], "succeeded");
    let attempts = occ[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{occ:#?}");
    assert_eq!(attempts[0]["attempt"], 2);
    assert_eq!(attempts[0]["outcome"], "succeeded");
    assert_eq!(attempts[1]["attempt"], 1);
    assert_eq!(attempts[1]["outcome"], "failed");
    let second = attempts[0]["runId"].as_str().unwrap();
    assert_eq!(log_of(&s, second).await, vec!["ok on 2".to_owned()]);
    let (_, j) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(j["data"]["lastOutcome"], "succeeded", "{j}");
}

#[tokio::test]
async fn stopping_a_job_during_a_retry_backoff_abandons_the_retries() {
    let s = Server::start().await;
    let id = s
        .run_job(json!({"name": "stop me", "cron": "@yearly", "retries": 2,
                        "retryBackoffMs": 3_000, "retryMaxBackoffMs": 3_000,
                        "script": "throw new Error('always')"}))
        .await;
    trigger(&s, &id).await;
    let h = wait_history(&s, &id, 15, "the first attempt to fail", |h| {
        h.iter().any(|r| r.outcome == "failed")
    })
    .await;
    let failed_at = h[0].ended.unwrap();
    stop(&s, &id).await;
    assert!(
        now_ms() - failed_at < 1_500,
        "the stop landed inside the backoff (at least 1.5 s)"
    );
    // The second attempt would have started within 3 s of the first one's end.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let h = history(&s, &id).await;
    assert_eq!(h.len(), 1, "no attempt after the stop: {h:#?}");
    assert_eq!(h[0].attempt, 1);
}

// ---- misfire ------------------------------------------------------------------------

/// What a restart did to one job: the instants in the gap between the last record
/// before the stop and the first on-time occurrence after the restart.
struct Gap {
    missed: Vec<i64>,
    caught_up: Vec<Rec>,
    gap: Vec<i64>,
}

fn gap_of(h: &[Rec], restarted_at: i64) -> Gap {
    let last_before = h
        .iter()
        .filter(|r| r.scheduled < restarted_at && r.outcome != "missed" && r.trigger != "misfire")
        .map(|r| r.scheduled)
        .max()
        .expect("a record before the stop");
    let first_after = h
        .iter()
        .filter(|r| r.scheduled >= restarted_at && r.trigger == "schedule" && r.outcome != "missed")
        .map(|r| r.scheduled)
        .min()
        .expect("an on-time occurrence after the restart");
    assert_each_instant_once(h, last_before, first_after, 1_000);
    let in_gap: Vec<&Rec> = h
        .iter()
        .filter(|r| r.scheduled > last_before && r.scheduled < first_after)
        .collect();
    Gap {
        missed: in_gap
            .iter()
            .filter(|r| r.outcome == "missed")
            .map(|r| r.scheduled)
            .collect(),
        caught_up: in_gap
            .iter()
            .filter(|r| r.trigger == "misfire")
            .map(|r| (*r).clone())
            .collect(),
        gap: ((last_before + 1_000)..first_after)
            .step_by(1_000)
            .collect(),
    }
}

#[tokio::test]
async fn after_a_restart_each_misfire_policy_catches_up_what_it_says() {
    let mut s = Server::start().await;
    let once = s
        .run_job(
            json!({"name": "once", "cron": "* * * * * *", "misfire": "run_once",
                        "script": "console.log(job.scheduledAt)"}),
        )
        .await;
    let skip = s
        .run_job(
            json!({"name": "skip", "cron": "* * * * * *", "misfire": "skip",
                        "script": "console.log(job.scheduledAt)"}),
        )
        .await;
    let all = s
        .run_job(
            json!({"name": "all", "cron": "* * * * * *", "misfire": "run_all",
                        "maxCatchUp": 3, "script": sleeper(200)}),
        )
        .await;
    for id in [&once, &skip, &all] {
        wait_history(&s, id, 15, "two runs before the stop", |h| {
            done_count(h) >= 2
        })
        .await;
    }
    assert!(s.terminate().success());
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let restarted_at = now_ms();
    s.spawn().await;

    // run_once: the newest missed occurrence runs, once; the rest are recorded missed.
    let h = wait_history(&s, &once, 15, "a run after the restart", |h| {
        h.iter()
            .any(|r| r.scheduled > restarted_at && r.trigger == "schedule" && r.done())
    })
    .await;
    let g = gap_of(&h, restarted_at);
    assert!(g.gap.len() >= 5, "down for 5.5 s: {:?}", g.gap);
    assert_eq!(g.caught_up.len(), 1, "run_once: {h:#?}");
    assert_eq!(
        g.caught_up[0].scheduled,
        *g.gap.last().unwrap(),
        "the newest"
    );
    assert!(g.caught_up[0].done() && g.caught_up[0].started.unwrap() >= restarted_at);
    assert_eq!(
        g.missed,
        g.gap[..g.gap.len() - 1].to_vec(),
        "the rest: {h:#?}"
    );

    // skip: nothing runs; everything is missed.
    let h = wait_history(&s, &skip, 15, "a run after the restart", |h| {
        h.iter()
            .any(|r| r.scheduled > restarted_at && r.trigger == "schedule" && r.done())
    })
    .await;
    let g = gap_of(&h, restarted_at);
    assert!(g.caught_up.is_empty(), "skip: {h:#?}");
    assert_eq!(g.missed, g.gap, "skip records every miss: {h:#?}");

    // run_all, maxCatchUp 3: the newest three run, oldest first, one after the other.
    let h = wait_history(
        &s,
        &all,
        15,
        "three caught-up runs and an on-time one",
        |h| {
            h.iter()
                .filter(|r| r.trigger == "misfire" && r.done())
                .count()
                >= 3
                && h.iter()
                    .any(|r| r.scheduled > restarted_at && r.trigger == "schedule" && r.done())
        },
    )
    .await;
    let g = gap_of(&h, restarted_at);
    assert_eq!(
        g.caught_up.len(),
        3,
        "run_all bounded by maxCatchUp: {h:#?}"
    );
    let n = g.gap.len();
    assert_eq!(
        g.caught_up.iter().map(|r| r.scheduled).collect::<Vec<_>>(),
        g.gap[n - 3..].to_vec(),
        "the newest three"
    );
    assert_eq!(
        g.missed,
        g.gap[..n - 3].to_vec(),
        "the older ones are missed"
    );
    for w in g.caught_up.windows(2) {
        assert!(
            w[1].started.unwrap() >= w[0].ended.unwrap(),
            "one after the other, oldest first: {:#?}",
            g.caught_up
        );
    }

    // The plan of a running job whose last occurrence was just handled catches up
    // nothing; nor does a stopped job's. (Asked mid-second, away from a fire.)
    let (status, _) = s
        .post(&format!("/api/enable?id={skip}&enable=false"), json!({}))
        .await;
    assert_eq!(status, 200);
    let wait = 1_500 - now_ms().rem_euclid(1_000);
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    for (id, state) in [(&once, 1), (&skip, 0)] {
        let (status, p) = s.get(&format!("/api/job/plan?id={id}")).await;
        assert_eq!(status, 200, "{p}");
        let p = &p["data"];
        assert_eq!(p["state"], state, "{p}");
        assert_eq!(p["catchUp"]["run"], json!([]), "{p}");
        assert_eq!(p["catchUp"]["missed"], json!([]), "{p}");
    }
}

// ---- pause --------------------------------------------------------------------------

#[tokio::test]
async fn a_pause_skips_the_occurrences_until_its_end_and_resume_ends_it_early() {
    let s = Server::start().await;
    let id = s
        .run_job(json!({"name": "pausable", "cron": "* * * * * *",
                        "script": "console.log(job.scheduledAt)"}))
        .await;
    wait_history(&s, &id, 10, "a first run", |h| done_count(h) >= 1).await;

    // Pause until a whole second 3 s ahead.
    let until = (now_ms() / 1_000 + 3) * 1_000;
    let (status, v) = s
        .post(&format!("/api/job/pause?id={id}&until={until}"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let paused_at = now_ms();
    let (_, j) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(ms_of(&j["data"]["pausedUntil"]), Some(until), "{j}");
    assert_eq!(
        ms_of(&j["data"]["nextExecTime"]),
        Some(until),
        "the next run is the first one after the pause: {j}"
    );
    let (_, p) = s
        .get(&format!(
            "/api/job/plan?id={id}&from={paused_at}&to={}",
            until + 2_000
        ))
        .await;
    let paused_fires = (paused_at..until).filter(|t| t % 1_000 == 0).count();
    assert_eq!(p["data"]["pausedFires"], paused_fires, "{p}");
    assert_eq!(
        p["data"]["fires"].as_array().unwrap().len(),
        paused_fires + 3,
        "{p}"
    );
    let h = wait_history(&s, &id, 10, "two runs after the pause", |h| {
        h.iter()
            .filter(|r| r.scheduled >= until && r.done())
            .count()
            >= 2
    })
    .await;
    let paused: Vec<&Rec> = h
        .iter()
        .filter(|r| r.scheduled > paused_at && r.scheduled < until)
        .collect();
    assert!(!paused.is_empty(), "{h:#?}");
    for r in &paused {
        assert_eq!(r.outcome, "skipped", "{r:?}");
        assert!(
            r.error.contains("paused"),
            "the skip names the pause: {r:?}"
        );
    }
    let first_after = h.iter().find(|r| r.scheduled >= until).unwrap();
    assert_eq!(
        first_after.scheduled, until,
        "runs again from the pause's end"
    );
    assert!(first_after.ran(), "{first_after:?}");
    assert_each_instant_once(&h, h[0].scheduled, until + 1_000, 1_000);

    // A long pause, ended early by resume.
    let (status, _) = s
        .post(
            &format!("/api/job/pause?id={id}&until={}", now_ms() + 60_000),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let long_from = now_ms();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, _) = s.post(&format!("/api/job/resume?id={id}"), json!({})).await;
    assert_eq!(status, 200);
    let resumed = now_ms();
    let (_, j) = s.get(&format!("/api/job?id={id}")).await;
    assert!(j["data"]["pausedUntil"].is_null(), "{j}");
    let h = wait_history(&s, &id, 10, "a run after resume", |h| {
        h.iter().any(|r| r.scheduled > resumed && r.done())
    })
    .await;
    assert!(
        h.iter()
            .filter(|r| r.scheduled > long_from && r.scheduled < resumed)
            .all(|r| r.outcome == "skipped"),
        "{h:#?}"
    );
    assert!(
        h.iter()
            .filter(|r| r.scheduled > resumed)
            .all(|r| r.outcome != "skipped"),
        "{h:#?}"
    );

    // A pause must end in the future.
    let (status, v) = s
        .post(
            &format!("/api/job/pause?id={id}&until={}", now_ms() - 1_000),
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], "until", "{v}");
    let (status, v) = s
        .post(&format!("/api/job/pause?id={id}&until=tomorrow"), json!({}))
        .await;
    assert_eq!(status, 400, "{v}");
    let (_, j) = s.get(&format!("/api/job?id={id}")).await;
    assert!(j["data"]["pausedUntil"].is_null(), "nothing changed: {j}");
}

// ---- backfill -----------------------------------------------------------------------

#[tokio::test]
async fn a_backfill_runs_a_past_range_in_order_once_and_suppresses_a_repeat() {
    let s = Server::start().await;
    let id = create_stopped(
        &s,
        json!({"name": "backfilled", "cron": "*/2 * * * * *", "script": sleeper(300)}),
    )
    .await;
    // Five instants of the cron, all in the past (before the job existed).
    let to = (now_ms() - 1_000) / 2_000 * 2_000;
    let from = to - 8_000;
    let want: Vec<i64> = (from..=to).step_by(2_000).collect();
    let (status, v) = s
        .post(
            &format!("/api/job/backfill?id={id}&from={from}&to={to}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let queued: Vec<i64> = v["data"]["queued"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(ms_of)
        .collect();
    assert_eq!(queued, want, "{v}");
    assert_eq!(v["data"]["suppressed"], json!([]), "{v}");

    let h = wait_history(&s, &id, 20, "five backfilled runs", |h| done_count(h) == 5).await;
    assert_eq!(h.len(), 5, "{h:#?}");
    assert_eq!(h.iter().map(|r| r.scheduled).collect::<Vec<_>>(), want);
    let mut by_start = h.clone();
    by_start.sort_by_key(|r| r.started);
    assert_eq!(
        by_start.iter().map(|r| r.scheduled).collect::<Vec<_>>(),
        want,
        "oldest first"
    );
    for w in by_start.windows(2) {
        assert!(
            w[1].started.unwrap() >= w[0].ended.unwrap(),
            "one at a time: {h:#?}"
        );
    }
    for r in &h {
        assert_eq!(
            (r.trigger.as_str(), r.outcome.as_str()),
            ("backfill", "succeeded"),
            "{r:?}"
        );
        assert_eq!(r.occurrence_id, format!("{id}@{}", r.scheduled));
        assert_eq!(
            log_of(&s, &r.run_id).await[0],
            format!("start {}", r.scheduled)
        );
    }

    // The same range again: everything already ran.
    let (status, v) = s
        .post(
            &format!("/api/job/backfill?id={id}&from={from}&to={to}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["queued"], json!([]), "{v}");
    let suppressed: Vec<i64> = v["data"]["suppressed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(ms_of)
        .collect();
    assert_eq!(suppressed, want, "{v}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = history(&s, &id).await;
    assert_eq!(again.len(), 5, "nothing ran again: {again:#?}");
    for r in &again {
        assert_eq!(r.duplicates, 1, "{r:?}");
        assert_eq!(r.script_version, Some(1), "{r:?}");
    }
    let occ = ledger(&s, &id).await;
    assert_eq!(occ.len(), 5, "{occ:#?}");
    for o in &occ {
        assert_eq!(o["trigger"], "backfill", "{o}");
        assert_eq!(
            o["duplicates"], 1,
            "the ledger counts the suppressed repeat: {o}"
        );
    }

    // Bad ranges change nothing.
    let (status, v) = s
        .post(
            &format!("/api/job/backfill?id={id}&from={to}&to={from}"),
            json!({}),
        )
        .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("to")), "{v}");
    let (status, v) = s
        .post(
            &format!(
                "/api/job/backfill?id={id}&from={from}&to={}",
                now_ms() + 60_000
            ),
            json!({}),
        )
        .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("to")), "{v}");
    let (status, v) = s
        .post(&format!("/api/job/backfill?id={id}&from={from}"), json!({}))
        .await;
    assert_eq!(status, 400, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(history(&s, &id).await.len(), 5);
}

// ---- plan ---------------------------------------------------------------------------

#[tokio::test]
async fn the_plan_lists_exactly_the_fires_of_a_window_and_jitter_shifts_them_stably() {
    let s = Server::start().await;
    let plain = create_stopped(
        &s,
        json!({"jobId": "plan-plain", "name": "plain", "cron": "0 */5 * * * *"}),
    )
    .await;
    let jittered = create_stopped(
        &s,
        json!({"jobId": "plan-jittered", "name": "jittered", "cron": "0 */5 * * * *",
               "jitterS": 60}),
    )
    .await;
    let from = "2030-01-01T00:00:00Z";
    let to = "2030-01-01T00:20:00Z";
    let fires = |v: &Value| -> Vec<String> {
        v["data"]["fires"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect()
    };
    let (status, v) = s
        .get(&format!("/api/job/plan?id={plain}&from={from}&to={to}"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        fires(&v),
        [
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:05:00Z",
            "2030-01-01T00:10:00Z",
            "2030-01-01T00:15:00Z",
            "2030-01-01T00:20:00Z"
        ],
        "both ends inclusive: {v}"
    );
    assert_eq!(v["data"]["truncated"], false);
    assert_eq!(v["data"]["state"], 0);
    assert_eq!(v["data"]["pausedFires"], 0);
    let (_, v) = s
        .get(&format!(
            "/api/job/plan?id={plain}&from=2030-01-01T00:00:01Z&to=2030-01-01T00:14:59Z"
        ))
        .await;
    assert_eq!(fires(&v), ["2030-01-01T00:05:00Z", "2030-01-01T00:10:00Z"]);

    let jittered_fires = |v: &Value| -> Vec<i64> {
        v["data"]["fires"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(ms_of)
            .collect()
    };
    let (status, a) = s
        .get(&format!("/api/job/plan?id={jittered}&from={from}&to={to}"))
        .await;
    assert_eq!(status, 200, "{a}");
    let (_, b) = s
        .get(&format!("/api/job/plan?id={jittered}&from={from}&to={to}"))
        .await;
    let (a, b) = (jittered_fires(&a), jittered_fires(&b));
    assert_eq!(a, b, "the same offset on every call");
    let base = ms_of(&json!(from)).unwrap();
    let offset = a[0] - base;
    assert!(
        (1..60_000).contains(&offset),
        "offset {offset} ms within [0, 60 s)"
    );
    assert_eq!(
        offset,
        supervisor::scheduler::jitter_offset_ms(&jittered, 60),
        "the offset is the job's stable one"
    );
    // 00:20 + offset is past the window: four fires, each shifted by the same offset.
    let want: Vec<i64> = (0..4).map(|i| base + i * 300_000 + offset).collect();
    assert_eq!(a, want);

    // A bad window is refused.
    let (status, v) = s
        .get(&format!("/api/job/plan?id={plain}&from={to}&to={from}"))
        .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("to")), "{v}");
    let (status, _) = s.get("/api/job/plan?id=nope").await;
    assert_eq!(status, 404);
}

// ---- script versions ----------------------------------------------------------------

#[tokio::test]
async fn script_versions_are_listed_viewed_and_a_rollback_changes_what_runs() {
    let s = Server::start().await;
    let id = create_stopped(
        &s,
        json!({"name": "versioned", "cron": "@yearly", "script": "console.log('one')"}),
    )
    .await;
    let (status, v) = s
        .post(
            &format!("/api/script?id={id}"),
            json!({"script": "console.log('two')", "note": "say two"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    let run_and_log = |expect_version: u64| {
        let s = &s;
        let id = id.clone();
        async move {
            let run_id = trigger(s, &id).await;
            let run = s
                .eventually(Duration::from_secs(10), "the manual run", || async {
                    let (st, v) = s.get(&format!("/api/job/run?id={run_id}")).await;
                    (st == 200 && v["data"]["outcome"] == "succeeded").then_some(v)
                })
                .await;
            assert_eq!(run["data"]["scriptVersion"], expect_version, "{run}");
            run["data"]["log"][0]["text"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(run_and_log(2).await, "two");

    let (status, v) = s.get(&format!("/api/job/versions?id={id}")).await;
    assert_eq!(status, 200, "{v}");
    let list = v["data"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["version"], 2, "newest first: {v}");
    assert_eq!(list[0]["note"], "say two");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["version"], 1);
    assert_eq!(list[1]["note"], "created");
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[1]["bytes"], "console.log('one')".len());
    assert!(
        list.iter().all(|x| x.get("script").is_none()),
        "no sources in a listing"
    );

    let (status, v) = s.get(&format!("/api/job/version?id={id}&version=1")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["script"], "console.log('one')");

    let (status, v) = s
        .post(&format!("/api/job/rollback?id={id}&version=1"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], 3, "a rollback is a new version");
    let (_, v) = s.get(&format!("/api/script?id={id}")).await;
    assert_eq!(v["data"]["script"], "console.log('one')");
    let (_, j) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(j["data"]["scriptVersion"], 3, "{j}");
    assert_eq!(j["data"]["scriptNote"], "rollback to version 1", "{j}");
    assert_eq!(
        run_and_log(3).await,
        "one",
        "the next run prints version 1's output"
    );
    let (_, v) = s.get(&format!("/api/job/versions?id={id}")).await;
    let versions: Vec<u64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![3, 2, 1]);

    // Bad versions.
    let (status, v) = s.get(&format!("/api/job/version?id={id}&version=0")).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.get(&format!("/api/job/version?id={id}&version=99")).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = s
        .post(&format!("/api/job/rollback?id={id}&version=99"), json!({}))
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = s.get("/api/job/versions?id=nope").await;
    assert_eq!(status, 404, "{v}");
    let (_, j) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(
        j["data"]["scriptVersion"], 3,
        "a refused rollback changes nothing"
    );
}

// ---- bad input ----------------------------------------------------------------------

#[tokio::test]
async fn bad_policy_input_names_the_field_and_changes_nothing() {
    let s = Server::start().await;
    let id = create_stopped(
        &s,
        json!({"jobId": "steady", "name": "steady", "cron": "@hourly", "overlap": "queue_one",
               "misfire": "run_all", "maxCatchUp": 5, "retries": 2, "jitterS": 10}),
    )
    .await;
    let (_, before) = s.get(&format!("/api/job?id={id}")).await;
    let j = &before["data"];
    assert_eq!(
        (
            j["overlap"].as_str(),
            j["misfire"].as_str(),
            &j["maxCatchUp"],
            &j["retries"],
            &j["jitterS"]
        ),
        (
            Some("queue_one"),
            Some("run_all"),
            &json!(5),
            &json!(2),
            &json!(10)
        ),
        "{before}"
    );
    for (body, field) in [
        (json!({"overlap": "sometimes"}), "overlap"),
        (json!({"maxConcurrent": 0}), "maxConcurrent"),
        (json!({"maxConcurrent": 101}), "maxConcurrent"),
        (json!({"retries": 21}), "retries"),
        (json!({"retries": -1}), "retries"),
        (json!({"misfire": "never"}), "misfire"),
        (json!({"maxCatchUp": 0}), "maxCatchUp"),
        (json!({"retryBackoffMs": 5}), "retryBackoffMs"),
        (
            json!({"retryBackoffMs": 5_000, "retryMaxBackoffMs": 1_000}),
            "retryMaxBackoffMs",
        ),
        (json!({"jitterS": 3_601}), "jitterS"),
        (
            json!({"name": "renamed", "overlap": "sometimes"}),
            "overlap",
        ),
    ] {
        let (status, v) = s
            .call("PUT", &format!("/api/job?id={id}"), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        let (_, after) = s.get(&format!("/api/job?id={id}")).await;
        assert_eq!(after, before, "{body} changed the job");
        // Creating with it is refused too.
        let mut create = body.clone();
        create["name"] = json!("never");
        create["cron"] = json!("@hourly");
        let (status, v) = s.post("/api/job?type=timing", create.clone()).await;
        assert_eq!(status, 400, "{create}: {v}");
        assert_eq!(v["field"], field, "{create}: {v}");
    }
    let (_, list) = s.get("/api/jobList").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "no job was created: {list}"
    );

    // Jitter is for timing jobs: a delay job runs at its execAt.
    let (status, v) = s
        .post(
            "/api/job?type=delay",
            json!({"jobId": "later", "execAt": now_ms() + 3_600_000}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, before) = s.get("/api/job?id=later").await;
    let (status, v) = s
        .call("PUT", "/api/job?id=later", Some(json!({"jitterS": 5})))
        .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("jitterS")), "{v}");
    let (_, after) = s.get("/api/job?id=later").await;
    assert_eq!(after, before);
    let (status, v) = s
        .post(
            "/api/job?type=delay",
            json!({"execAt": now_ms() + 3_600_000, "jitterS": 5}),
        )
        .await;
    assert_eq!((status, v["field"].as_str()), (400, Some("jitterS")), "{v}");
}
