//! The conformance suite every [`Store`] backend must pass.
//!
//! Each `check_*` function tests one behaviour of the trait against a fresh, empty
//! store and panics (with a message) on a violation. A backend instantiates the whole
//! suite with [`store_conformance_tests!`](crate::store_conformance_tests), giving an
//! expression that evaluates to a future of a [`StoreFixture`]:
//!
//! ```ignore
//! mod conformance {
//!     crate::store_conformance_tests!(super::fresh_store());
//! }
//! ```
//!
//! The checks use only the trait, ASCII names where ordering matters (so collations
//! agree across backends), and explicit timestamps (never the clock). This module
//! must not know any backend.

mod audit;
mod modules;
mod secrets_kv;

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::future::join_all;

use super::{JobListQuery, JobOrder, RunListQuery, Store, StoreError};
use crate::job::{
    ExecType, Job, LastRun, LogLine, MisfirePolicy, OverlapPolicy, RetryPolicy, RunRecord,
    ScriptVersion, Trigger, outcome,
};

pub use audit::*;
pub use modules::*;
pub use secrets_kv::*;

/// A fresh, empty store for one check, and whatever must live as long as it (a temp
/// directory, a database schema to drop).
pub trait StoreFixture: Send + 'static {
    fn store(&self) -> Arc<dyn Store>;
}

/// Expands to one `#[tokio::test]` per check of this module, each with a store made by
/// `$make` (an expression evaluating to a future whose output is a [`StoreFixture`]).
/// The store is closed after each check.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            check_round_trip_every_field,
            check_duplicate_changes_nothing,
            check_update,
            check_update_stale_or_unknown,
            check_delete,
            check_get_script,
            check_list_filters,
            check_list_orders,
            check_list_paging_stability,
            check_list_search_is_literal,
            check_enabled_jobs,
            check_enabled_pages,
            check_count_jobs,
            check_record_runs_upsert,
            check_run_log_round_trip,
            check_last_run_folding,
            check_list_runs,
            check_get_run,
            check_recent_runs,
            check_prune_by_count,
            check_prune_by_age,
            check_records_of_deleted_job_dropped,
            check_concurrent_creates,
            check_writes_after_close,
            check_policies_round_trip,
            check_script_versions,
            check_duplicate_script_version_refused,
            check_run_attempt_fields_round_trip,
            check_duplicates_survive_upsert,
            check_note_duplicate,
            check_list_runs_since,
            check_secrets_round_trip,
            check_grants_round_trip,
            check_kv_round_trip,
            check_kv_caps,
            check_audit_round_trip_and_order,
            check_audit_filters_and_pages,
            check_audit_prune,
            check_job_writes_keep_their_audit_entry,
            check_concurrent_audited_creates,
            check_secret_and_kv_writes_keep_their_audit_entry,
            check_modules_round_trip,
            check_module_delete,
            check_concurrent_module_saves,
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $make.await;
                let store = $crate::store::conformance::StoreFixture::store(&fixture);
                $crate::store::conformance::$check(&store).await;
                store.close().await;
                drop(fixture);
            }
        )*
    };
}

const T0: i64 = 1_700_000_000_000;

/// Asserts that the store holds no run records at all.
pub async fn assert_no_runs(store: &dyn Store) {
    let runs = store.recent_runs(i64::MIN, 1).await.expect("recent runs");
    assert!(runs.is_empty(), "runs left: {runs:?}");
}

/// A stopped timing job with every field set to something ordinary.
pub fn sample_job(id: &str) -> Job {
    Job {
        id: id.to_owned(),
        name: format!("name-{id}"),
        description: format!("description of {id}"),
        exec_type: ExecType::Timing,
        cron: "0 */5 * * * *".to_owned(),
        exec_at_ms: None,
        timezone: "UTC".to_owned(),
        enabled: false,
        time_limit_ms: 30_000,
        memory_limit_mb: 64,
        overlap: OverlapPolicy::Skip,
        misfire: MisfirePolicy::RunOnce,
        misfire_window_s: 60,
        max_concurrent: 1,
        max_catch_up: 10,
        retry: Default::default(),
        jitter_s: 0,
        paused_until_ms: None,
        script_version: 1,
        script_note: String::new(),
        secrets: Vec::new(),
        version: 1,
        created_at_ms: T0,
        updated_at_ms: T0,
        last: LastRun::default(),
    }
}

/// A finished run of `job_id`.
pub fn sample_run(run_id: &str, job_id: &str, scheduled_at_ms: i64) -> RunRecord {
    RunRecord {
        run_id: run_id.to_owned(),
        job_id: job_id.to_owned(),
        trigger: Trigger::Schedule,
        scheduled_at_ms,
        started_at_ms: Some(scheduled_at_ms + 3),
        ended_at_ms: Some(scheduled_at_ms + 50),
        outcome: "succeeded".to_owned(),
        attempt: 1,
        script_version: None,
        duplicates: 0,
        node: "node-a".to_owned(),
        error_message: None,
        error_stack: None,
        cpu_time_us: Some(1_234),
        peak_memory_bytes: Some(5_678),
        log: Vec::new(),
        log_truncated: false,
    }
}

fn all() -> JobListQuery {
    JobListQuery::default()
}

fn runs_query(limit: u64) -> RunListQuery {
    RunListQuery {
        outcome: None,
        before_ms: None,
        since_ms: None,
        limit,
    }
}

async fn create(store: &dyn Store, job: &Job, script: &str) {
    store
        .create_job(job, script)
        .await
        .unwrap_or_else(|e| panic!("create job {}: {e}", job.id));
}

async fn get(store: &dyn Store, id: &str) -> Job {
    store
        .get_job(id)
        .await
        .unwrap_or_else(|e| panic!("get job {id}: {e}"))
        .unwrap_or_else(|| panic!("job {id} is missing"))
}

async fn record(store: &dyn Store, runs: &[RunRecord]) {
    store.record_runs(runs).await.expect("record runs");
}

fn ids(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(|j| j.id.clone()).collect()
}

fn run_ids(runs: &[RunRecord]) -> Vec<String> {
    runs.iter().map(|r| r.run_id.clone()).collect()
}

/// The run as `list_runs` returns it: without its log.
fn without_log(r: &RunRecord) -> RunRecord {
    RunRecord {
        log: Vec::new(),
        ..r.clone()
    }
}

pub async fn check_round_trip_every_field(store: &Arc<dyn Store>) {
    let store = &**store;
    let timing = Job {
        name: "Ünïcødé ジョブ 🚀".to_owned(),
        description: "line one\nline two — \"quoted\" 'single' \\ backslash".to_owned(),
        timezone: "Asia/Shanghai".to_owned(),
        enabled: true,
        time_limit_ms: 1 << 40,
        memory_limit_mb: 4096,
        misfire_window_s: u32::MAX,
        max_concurrent: 1,
        max_catch_up: 10,
        retry: Default::default(),
        jitter_s: 0,
        paused_until_ms: None,
        script_version: 1,
        script_note: String::new(),
        secrets: Vec::new(),
        version: 7,
        created_at_ms: T0 - 5,
        updated_at_ms: T0 + 5,
        last: LastRun {
            scheduled_at_ms: Some(T0 - 1_000),
            started_at_ms: Some(T0 - 990),
            outcome: Some("failed".to_owned()),
        },
        ..sample_job("timing-1")
    };
    let script = "console.log('héllo 世界 🚀');\n".to_owned();
    create(store, &timing, &script).await;

    let delay = Job {
        exec_type: ExecType::Delay,
        cron: String::new(),
        exec_at_ms: Some(T0 + 60_000),
        description: String::new(),
        ..sample_job("delay-1")
    };
    let big: String = "x".repeat(256 * 1024 - 20) + "// ünïcode end";
    create(store, &delay, &big).await;

    let unicode_id = sample_job("ид-ジョブ-🚀");
    create(store, &unicode_id, "").await;

    assert_eq!(get(store, "timing-1").await, timing);
    assert_eq!(get(store, "delay-1").await, delay);
    assert_eq!(get(store, "ид-ジョブ-🚀").await, unicode_id);
    assert_eq!(
        store.get_script("timing-1").await.expect("get script"),
        Some(script)
    );
    assert_eq!(
        store.get_script("delay-1").await.expect("get script"),
        Some(big)
    );
    assert_eq!(
        store.get_script("ид-ジョブ-🚀").await.expect("get script"),
        Some(String::new())
    );
    assert_eq!(store.get_job("nope").await.expect("get job"), None);
}

pub async fn check_duplicate_changes_nothing(store: &Arc<dyn Store>) {
    let store = &**store;
    let original = sample_job("dup");
    create(store, &original, "original()").await;
    let other = Job {
        name: "other".to_owned(),
        enabled: true,
        version: 9,
        ..sample_job("dup")
    };
    match store.create_job(&other, "other()").await {
        Err(StoreError::Duplicate(id)) => assert_eq!(id, "dup"),
        r => panic!("a duplicate create must be Duplicate, got {r:?}"),
    }
    assert_eq!(get(store, "dup").await, original);
    assert_eq!(
        store
            .get_script("dup")
            .await
            .expect("get script")
            .as_deref(),
        Some("original()")
    );
    assert_eq!(store.count_jobs().await.expect("count"), (1, 0));
}

pub async fn check_update(store: &Arc<dyn Store>) {
    let store = &**store;
    let original = sample_job("u");
    create(store, &original, "v1()").await;
    record(store, &[sample_run("u-run", "u", T0 + 100)]).await;
    let before = get(store, "u").await;

    let changed = Job {
        name: "renamed".to_owned(),
        description: "new description".to_owned(),
        exec_type: ExecType::Delay,
        cron: String::new(),
        exec_at_ms: Some(T0 + 99_000),
        timezone: "Europe/Paris".to_owned(),
        enabled: true,
        time_limit_ms: 1_000,
        memory_limit_mb: 16,
        misfire_window_s: 5,
        max_concurrent: 1,
        max_catch_up: 10,
        retry: Default::default(),
        jitter_s: 0,
        paused_until_ms: None,
        // A new script is a new version; the caller numbers it.
        script_version: 2,
        script_note: "v2".to_owned(),
        secrets: Vec::new(),
        version: 2,
        updated_at_ms: T0 + 1_000,
        // Neither of these may be taken from an update.
        created_at_ms: T0 + 777,
        last: LastRun {
            scheduled_at_ms: Some(1),
            started_at_ms: Some(2),
            outcome: Some("bogus".to_owned()),
        },
        ..original.clone()
    };
    store
        .update_job(&changed, Some("v2()"), 1)
        .await
        .expect("update with the right version");
    let expected = Job {
        created_at_ms: before.created_at_ms,
        last: before.last.clone(),
        ..changed.clone()
    };
    assert_eq!(get(store, "u").await, expected);
    assert_eq!(
        store.get_script("u").await.expect("script").as_deref(),
        Some("v2()")
    );

    // Without a script, the script stays.
    let again = Job {
        name: "renamed again".to_owned(),
        version: 3,
        ..changed.clone()
    };
    store
        .update_job(&again, None, 2)
        .await
        .expect("update without script");
    assert_eq!(get(store, "u").await.name, "renamed again");
    assert_eq!(get(store, "u").await.version, 3);
    assert_eq!(
        store.get_script("u").await.expect("script").as_deref(),
        Some("v2()")
    );
    // History is untouched by updates.
    assert_eq!(
        store
            .list_runs("u", &runs_query(10))
            .await
            .expect("runs")
            .len(),
        1
    );
}

pub async fn check_update_stale_or_unknown(store: &Arc<dyn Store>) {
    let store = &**store;
    let original = Job {
        version: 5,
        ..sample_job("s")
    };
    create(store, &original, "keep()").await;
    let stale = Job {
        name: "stale".to_owned(),
        version: 5,
        ..original.clone()
    };
    match store.update_job(&stale, Some("lost()"), 4).await {
        Err(StoreError::VersionConflict { id, expected }) => {
            assert_eq!(id, "s");
            assert_eq!(expected, 4);
        }
        r => panic!("a stale update must be VersionConflict, got {r:?}"),
    }
    assert_eq!(get(store, "s").await, original);
    assert_eq!(
        store.get_script("s").await.expect("script").as_deref(),
        Some("keep()")
    );

    let ghost = sample_job("ghost");
    match store.update_job(&ghost, Some("x"), 1).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, "ghost"),
        r => panic!("updating an unknown job must be NotFound, got {r:?}"),
    }
    assert_eq!(store.get_job("ghost").await.expect("get"), None);
    assert_eq!(store.get_script("ghost").await.expect("script"), None);
}

pub async fn check_delete(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("d"), "d()").await;
    create(store, &sample_job("keep"), "k()").await;
    record(
        store,
        &[
            sample_run("d-1", "d", T0 + 1),
            sample_run("d-2", "d", T0 + 2),
            sample_run("k-1", "keep", T0 + 1),
        ],
    )
    .await;
    assert!(store.delete_job("d").await.expect("delete"));
    assert_eq!(store.get_job("d").await.expect("get"), None);
    assert_eq!(store.get_script("d").await.expect("script"), None);
    assert!(
        store
            .list_runs("d", &runs_query(10))
            .await
            .expect("runs")
            .is_empty()
    );
    assert_eq!(store.get_run("d-1").await.expect("get run"), None);
    assert_eq!(store.recent_runs(0, 10).await.expect("recent").len(), 1);
    assert!(!store.delete_job("d").await.expect("delete again"));
    assert!(!store.delete_job("never").await.expect("delete unknown"));

    // The other job is untouched, and the id can be used again with a clean history.
    assert_eq!(get(store, "keep").await.id, "keep");
    assert!(store.get_run("k-1").await.expect("get run").is_some());
    create(store, &sample_job("d"), "new()").await;
    assert!(
        store
            .list_runs("d", &runs_query(10))
            .await
            .expect("runs")
            .is_empty()
    );
    assert_eq!(get(store, "d").await.last, LastRun::default());
    assert_eq!(
        store.get_script("d").await.expect("script").as_deref(),
        Some("new()")
    );
}

pub async fn check_get_script(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("a"), "a()").await;
    create(store, &sample_job("b"), "b()").await;
    assert_eq!(
        store.get_script("a").await.expect("a").as_deref(),
        Some("a()")
    );
    assert_eq!(
        store.get_script("b").await.expect("b").as_deref(),
        Some("b()")
    );
    assert_eq!(store.get_script("c").await.expect("c"), None);
}

/// Jobs for the list checks: a mix of types, states, names and timestamps.
async fn seed_list(store: &dyn Store) -> Vec<Job> {
    let mut jobs = Vec::new();
    for i in 0..30i64 {
        let delay = i % 3 == 0;
        let job = Job {
            name: format!("job-{:02}", (i * 7) % 30),
            description: if i % 5 == 0 {
                "nightly report".to_owned()
            } else {
                format!("plain {i}")
            },
            exec_type: if delay {
                ExecType::Delay
            } else {
                ExecType::Timing
            },
            cron: if delay {
                String::new()
            } else {
                "0 * * * *".to_owned()
            },
            exec_at_ms: delay.then_some(T0 + 1_000_000),
            enabled: i % 2 == 0,
            // Ties on purpose: the id must break them.
            created_at_ms: T0 + (i % 4),
            updated_at_ms: T0 + ((i * 13) % 9),
            ..sample_job(&format!("list-{i:02}"))
        };
        create(store, &job, "x()").await;
        jobs.push(job);
    }
    // Some jobs have run; others never did.
    let mut runs = Vec::new();
    for i in (0..30i64).filter(|i| i % 4 != 1) {
        let mut r = sample_run(&format!("lr-{i:02}"), &format!("list-{i:02}"), T0 + 10_000);
        r.started_at_ms = Some(T0 + 10_000 + (i * 11) % 7);
        runs.push(r);
    }
    record(store, &runs).await;
    let mut stored = Vec::new();
    for j in &jobs {
        stored.push(get(store, &j.id).await);
    }
    stored
}

pub async fn check_list_filters(store: &Arc<dyn Store>) {
    let store = &**store;
    let jobs = seed_list(store).await;
    let check = |q: JobListQuery, pred: &dyn Fn(&Job) -> bool| {
        let expected: HashSet<String> = jobs
            .iter()
            .filter(|j| pred(j))
            .map(|j| j.id.clone())
            .collect();
        async move {
            let (page, total) = store.list_jobs(&q).await.expect("list jobs");
            let got: HashSet<String> = ids(&page).into_iter().collect();
            assert_eq!(got, expected, "filter {q:?}");
            assert_eq!(total as usize, expected.len(), "total of {q:?}");
        }
    };
    check(all(), &|_| true).await;
    check(
        JobListQuery {
            exec_type: Some(ExecType::Delay),
            ..all()
        },
        &|j| j.exec_type == ExecType::Delay,
    )
    .await;
    check(
        JobListQuery {
            exec_type: Some(ExecType::Timing),
            ..all()
        },
        &|j| j.exec_type == ExecType::Timing,
    )
    .await;
    check(
        JobListQuery {
            enabled: Some(true),
            ..all()
        },
        &|j| j.enabled,
    )
    .await;
    check(
        JobListQuery {
            enabled: Some(false),
            ..all()
        },
        &|j| !j.enabled,
    )
    .await;
    // Search over the description, case-insensitively.
    check(
        JobListQuery {
            search: Some("NIGHTLY".to_owned()),
            ..all()
        },
        &|j| j.description.contains("nightly"),
    )
    .await;
    // Search over the name and the id.
    check(
        JobListQuery {
            search: Some("JOB-07".to_owned()),
            ..all()
        },
        &|j| j.name == "job-07",
    )
    .await;
    check(
        JobListQuery {
            search: Some("list-1".to_owned()),
            ..all()
        },
        &|j| j.id.starts_with("list-1"),
    )
    .await;
    check(
        JobListQuery {
            search: Some("no such thing".to_owned()),
            ..all()
        },
        &|_| false,
    )
    .await;
    // Filters combine.
    check(
        JobListQuery {
            search: Some("report".to_owned()),
            exec_type: Some(ExecType::Delay),
            enabled: Some(true),
            ..all()
        },
        &|j| j.description.contains("report") && j.exec_type == ExecType::Delay && j.enabled,
    )
    .await;

    // The total counts all matches, not the page.
    let (page, total) = store
        .list_jobs(&JobListQuery {
            enabled: Some(true),
            limit: Some(4),
            offset: 2,
            ..all()
        })
        .await
        .expect("list page");
    assert_eq!(page.len(), 4);
    assert_eq!(total, 15);
    let (page, total) = store
        .list_jobs(&JobListQuery {
            offset: 1_000,
            ..all()
        })
        .await
        .expect("list past the end");
    assert!(page.is_empty());
    assert_eq!(total, 30);
    let (page, _) = store
        .list_jobs(&JobListQuery {
            limit: Some(0),
            ..all()
        })
        .await
        .expect("list none");
    assert!(page.is_empty());
}

/// The order a store must produce, computed here.
fn expected_order(jobs: &[Job], order: JobOrder, descending: bool) -> Vec<String> {
    let mut sorted: Vec<&Job> = jobs.iter().collect();
    sorted.sort_by(|a, b| {
        let key = match order {
            JobOrder::CreatedAt => a.created_at_ms.cmp(&b.created_at_ms),
            JobOrder::Name => a.name.cmp(&b.name),
            JobOrder::UpdatedAt => a.updated_at_ms.cmp(&b.updated_at_ms),
            JobOrder::LastExecTime => {
                match (a.last.started_at_ms, b.last.started_at_ms) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    // Never-run jobs last, in either direction.
                    (None, Some(_)) => return std::cmp::Ordering::Greater,
                    (Some(_), None) => return std::cmp::Ordering::Less,
                    (None, None) => std::cmp::Ordering::Equal,
                }
            }
        };
        let key = key.then_with(|| a.id.cmp(&b.id));
        if descending { key.reverse() } else { key }
    });
    sorted.into_iter().map(|j| j.id.clone()).collect()
}

const ORDERS: [JobOrder; 4] = [
    JobOrder::CreatedAt,
    JobOrder::Name,
    JobOrder::UpdatedAt,
    JobOrder::LastExecTime,
];

pub async fn check_list_orders(store: &Arc<dyn Store>) {
    let store = &**store;
    let jobs = seed_list(store).await;
    for order in ORDERS {
        for descending in [false, true] {
            let (page, _) = store
                .list_jobs(&JobListQuery {
                    order,
                    descending,
                    ..all()
                })
                .await
                .expect("list ordered");
            assert_eq!(
                ids(&page),
                expected_order(&jobs, order, descending),
                "order {order:?}, descending {descending}"
            );
        }
    }
}

pub async fn check_list_paging_stability(store: &Arc<dyn Store>) {
    let store = &**store;
    let mut jobs = Vec::new();
    for i in 0..1_000i64 {
        let job = Job {
            name: format!("n{:03}", (i * 37) % 100),
            created_at_ms: T0 + i % 7,
            updated_at_ms: T0 + i % 3,
            ..sample_job(&format!("p{:04}", (i * 7919) % 1_000))
        };
        jobs.push(job);
    }
    let made = join_all(jobs.chunks(100).map(|chunk| async move {
        for j in chunk {
            create(store, j, "p()").await;
        }
    }));
    made.await;
    let runs: Vec<RunRecord> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(i, j)| sample_run(&format!("pr-{}", j.id), &j.id, T0 + (i as i64 % 5)))
        .collect();
    record(store, &runs).await;
    let (all_jobs, _) = store.list_jobs(&all()).await.expect("list all");

    for order in ORDERS {
        for descending in [false, true] {
            let mut walked = Vec::new();
            let mut offset = 0;
            loop {
                let (page, total) = store
                    .list_jobs(&JobListQuery {
                        order,
                        descending,
                        offset,
                        limit: Some(37),
                        ..all()
                    })
                    .await
                    .expect("list page");
                assert_eq!(total, 1_000);
                if page.is_empty() {
                    break;
                }
                assert!(page.len() <= 37);
                offset += page.len() as u64;
                walked.extend(ids(&page));
            }
            let unique: HashSet<&String> = walked.iter().collect();
            assert_eq!(
                walked.len(),
                1_000,
                "{order:?} desc={descending}: gaps or extras"
            );
            assert_eq!(
                unique.len(),
                1_000,
                "{order:?} desc={descending}: duplicates"
            );
            assert_eq!(walked, expected_order(&all_jobs, order, descending));
        }
    }
}

pub async fn check_list_search_is_literal(store: &Arc<dyn Store>) {
    let store = &**store;
    let named = |id: &str, name: &str| Job {
        name: name.to_owned(),
        description: String::new(),
        ..sample_job(id)
    };
    for j in [
        named("s1", "100% done"),
        named("s2", "1000 done"),
        named("s3", "snake_case"),
        named("s4", "snakeXcase"),
        named("s5", "back\\slash"),
        named("s6", "MiXeD CaSe"),
    ] {
        create(store, &j, "").await;
    }
    let search = |s: &'static str| async move {
        let (jobs, total) = store
            .list_jobs(&JobListQuery {
                search: Some(s.to_owned()),
                ..all()
            })
            .await
            .expect("search");
        let mut got = ids(&jobs);
        got.sort();
        assert_eq!(total as usize, got.len());
        got
    };
    assert_eq!(search("%").await, ["s1"]);
    assert_eq!(search("0% d").await, ["s1"]);
    assert_eq!(search("_").await, ["s3"]);
    assert_eq!(search("e_c").await, ["s3"]);
    assert_eq!(search("\\").await, ["s5"]);
    assert_eq!(search("mixed case").await, ["s6"]);
    assert_eq!(search("SNAKE").await, ["s3", "s4"]);
}

pub async fn check_enabled_jobs(store: &Arc<dyn Store>) {
    let store = &**store;
    assert!(store.enabled_jobs().await.expect("enabled").is_empty());
    let mut expected = Vec::new();
    for i in 0..20 {
        let job = Job {
            enabled: i % 3 == 0,
            ..sample_job(&format!("e{i:02}"))
        };
        create(store, &job, "").await;
        if job.enabled {
            expected.push(job);
        }
    }
    // Disabling one through an update takes it out.
    let mut off = expected.remove(0);
    off.enabled = false;
    off.version = 2;
    store.update_job(&off, None, 1).await.expect("disable");
    let mut got = store.enabled_jobs().await.expect("enabled");
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, expected);
}

/// Keyset pages of enabled jobs and of their `(id, version)`: byte order of ids, every
/// enabled job exactly once, disabled ones never, and a page boundary that survives
/// changes between pages.
pub async fn check_enabled_pages(store: &Arc<dyn Store>) {
    let store = &**store;
    assert!(
        store
            .enabled_jobs_page(None, 10)
            .await
            .expect("page")
            .is_empty()
    );
    assert!(
        store
            .enabled_versions_page(None, 10)
            .await
            .expect("versions")
            .is_empty()
    );
    // Upper case, digits and punctuation sort before lower case in byte order.
    let ids = [
        "b", "A1", "a0", "Z", "a-", "a", "0", "b0", "B", "_x", "aa", "a.", "9z", "zz",
    ];
    let mut expected: Vec<String> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let job = Job {
            enabled: i % 4 != 1,
            ..sample_job(id)
        };
        create(store, &job, "").await;
        if job.enabled {
            expected.push((*id).to_owned());
        }
    }
    // One enabled job gets a new version: the versions page must show it.
    let bumped = Job {
        enabled: true,
        version: 5,
        ..sample_job("a0")
    };
    store.update_job(&bumped, None, 1).await.expect("update a0");
    expected.sort();

    for limit in [1u64, 3, 4, 100] {
        let mut seen: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .enabled_jobs_page(after.as_deref(), limit)
                .await
                .expect("page");
            assert!(page.len() as u64 <= limit, "a page longer than its limit");
            assert!(page.iter().all(|j| j.enabled), "a disabled job in a page");
            let short = (page.len() as u64) < limit;
            seen.extend(page.into_iter().map(|j| j.id));
            if short {
                break;
            }
            after = seen.last().cloned();
        }
        assert_eq!(seen, expected, "pages of {limit}");

        let mut versions: Vec<(String, u64)> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .enabled_versions_page(after.as_deref(), limit)
                .await
                .expect("versions page");
            assert!(page.len() as u64 <= limit, "a page longer than its limit");
            let short = (page.len() as u64) < limit;
            versions.extend(page);
            if short {
                break;
            }
            after = versions.last().map(|v| v.0.clone());
        }
        let want: Vec<(String, u64)> = expected
            .iter()
            .map(|id| (id.clone(), if id == "a0" { 5 } else { 1 }))
            .collect();
        assert_eq!(versions, want, "version pages of {limit}");
    }

    // Past the last id: nothing. A limit of 0: nothing.
    let last = expected.last().cloned().expect("some enabled");
    assert!(
        store
            .enabled_jobs_page(Some(&last), 10)
            .await
            .expect("page")
            .is_empty()
    );
    assert!(
        store
            .enabled_jobs_page(None, 0)
            .await
            .expect("page")
            .is_empty()
    );
    // The cursor need not be a stored id: pages continue after it in byte order.
    let page = store.enabled_jobs_page(Some("a"), 2).await.expect("page");
    let got: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    let want: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|id| *id > "a")
        .take(2)
        .collect();
    assert_eq!(got, want);
    // A change between pages: a job behind the cursor disabled, one ahead created;
    // the walk goes on from the cursor and sees the new one.
    let first = store.enabled_jobs_page(None, 3).await.expect("page");
    let cursor = first.last().map(|j| j.id.clone()).expect("a first page");
    let mut off = first[0].clone();
    off.enabled = false;
    off.version += 1;
    store
        .update_job(&off, None, off.version - 1)
        .await
        .expect("disable");
    create(
        store,
        &Job {
            enabled: true,
            ..sample_job("zzz")
        },
        "",
    )
    .await;
    let rest = store
        .enabled_jobs_page(Some(&cursor), 100)
        .await
        .expect("rest");
    let rest: Vec<String> = rest.into_iter().map(|j| j.id).collect();
    let mut want: Vec<String> = expected
        .iter()
        .filter(|id| **id > cursor)
        .cloned()
        .collect();
    want.push("zzz".to_owned());
    assert_eq!(rest, want);
}

pub async fn check_count_jobs(store: &Arc<dyn Store>) {
    let store = &**store;
    assert_eq!(store.count_jobs().await.expect("count"), (0, 0));
    for i in 0..7 {
        let job = Job {
            enabled: i < 3,
            ..sample_job(&format!("c{i}"))
        };
        create(store, &job, "").await;
    }
    assert_eq!(store.count_jobs().await.expect("count"), (4, 3));
    store.delete_job("c0").await.expect("delete");
    assert_eq!(store.count_jobs().await.expect("count"), (4, 2));
}

pub async fn check_record_runs_upsert(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("r"), "").await;
    let running = RunRecord {
        outcome: outcome::RUNNING.to_owned(),
        ended_at_ms: None,
        cpu_time_us: None,
        peak_memory_bytes: None,
        ..sample_run("run-1", "r", T0)
    };
    record(store, std::slice::from_ref(&running)).await;
    assert_eq!(
        store.get_run("run-1").await.expect("get run"),
        Some(running.clone())
    );

    let done = RunRecord {
        outcome: "failed".to_owned(),
        ended_at_ms: Some(T0 + 900),
        error_message: Some("TypeError: x is undefined".to_owned()),
        error_stack: Some("at main (job.js:1:1)".to_owned()),
        trigger: Trigger::Manual,
        node: "node-b".to_owned(),
        log: vec![LogLine {
            seq: 0,
            level: "error".to_owned(),
            text: "boom".to_owned(),
            at_ms: T0 + 899,
        }],
        log_truncated: true,
        ..running.clone()
    };
    record(store, std::slice::from_ref(&done)).await;
    let listed = store
        .list_runs("r", &runs_query(10))
        .await
        .expect("list runs");
    assert_eq!(listed, vec![without_log(&done)]);
    assert_eq!(store.get_run("run-1").await.expect("get run"), Some(done));
    assert_eq!(
        get(store, "r").await.last.outcome.as_deref(),
        Some("failed")
    );

    // One call with several records of several jobs.
    create(store, &sample_job("r2"), "").await;
    let batch: Vec<RunRecord> = (0..50)
        .map(|i| {
            sample_run(
                &format!("b-{i:02}"),
                if i % 2 == 0 { "r" } else { "r2" },
                T0 + i,
            )
        })
        .collect();
    record(store, &batch).await;
    assert_eq!(
        store
            .list_runs("r", &runs_query(100))
            .await
            .expect("runs")
            .len(),
        26
    );
    assert_eq!(
        store
            .list_runs("r2", &runs_query(100))
            .await
            .expect("runs")
            .len(),
        25
    );
    // An empty call is fine.
    record(store, &[]).await;
}

pub async fn check_run_log_round_trip(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("l"), "").await;
    let levels = ["log", "info", "warn", "error", "debug"];
    let log: Vec<LogLine> = (0..1_000u32)
        .map(|i| LogLine {
            seq: i,
            level: levels[i as usize % levels.len()].to_owned(),
            text: match i % 4 {
                0 => format!("line {i}: héllo 世界 🚀"),
                1 => format!("{{\"json\": [{i}, \"quoted\\\"\"]}}"),
                2 => String::new(),
                _ => format!("multi\nline\ttabbed {i}"),
            },
            at_ms: T0 + i64::from(i),
        })
        .collect();
    let run = RunRecord {
        log,
        log_truncated: true,
        ..sample_run("log-run", "l", T0)
    };
    record(store, std::slice::from_ref(&run)).await;
    assert_eq!(
        store.get_run("log-run").await.expect("get run"),
        Some(run.clone())
    );
    let listed = store
        .list_runs("l", &runs_query(10))
        .await
        .expect("list runs");
    assert_eq!(listed, vec![without_log(&run)], "list_runs carries no log");
    let recent = store.recent_runs(0, 10).await.expect("recent runs");
    assert_eq!(
        recent,
        vec![without_log(&run)],
        "recent_runs carries no log"
    );
}

pub async fn check_last_run_folding(store: &Arc<dyn Store>) {
    let store = &**store;
    let job = sample_job("f");
    create(store, &job, "").await;
    let last = |s, st, o: Option<&str>| LastRun {
        scheduled_at_ms: s,
        started_at_ms: st,
        outcome: o.map(str::to_owned),
    };
    let run = |id: &str, sched: i64, started: Option<i64>, out: &str| RunRecord {
        started_at_ms: started,
        outcome: out.to_owned(),
        ..sample_run(id, "f", sched)
    };

    record(store, &[run("a", 1_000, Some(1_010), "succeeded")]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(1_000), Some(1_010), Some("succeeded"))
    );

    // A late record of an older run moves nothing backwards.
    record(store, &[run("0", 500, Some(505), "failed")]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(1_000), Some(1_010), Some("succeeded"))
    );

    // Skipped and missed occurrences count as handled, but not as started or finished.
    record(store, &[run("b", 2_000, None, outcome::SKIPPED)]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(2_000), Some(1_010), Some("succeeded"))
    );
    record(store, &[run("c", 3_000, None, outcome::MISSED)]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(3_000), Some(1_010), Some("succeeded"))
    );

    // A running run has started but not finished.
    record(store, &[run("d", 4_000, Some(4_005), outcome::RUNNING)]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(4_000), Some(4_005), Some("succeeded"))
    );
    record(store, &[run("d", 4_000, Some(4_005), "timed_out")]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(4_000), Some(4_005), Some("timed_out"))
    );

    // Out of order within one call: the newest start wins whatever the order.
    record(
        store,
        &[
            run("f", 6_000, Some(6_001), "succeeded"),
            run("e", 5_000, Some(5_001), "crashed"),
        ],
    )
    .await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(6_000), Some(6_001), Some("succeeded"))
    );

    // The outcome follows the start, not the schedule: a run scheduled earlier but
    // started later (e.g. a manual run) is the latest finished one.
    record(store, &[run("g", 5_500, Some(7_000), "failed")]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(6_000), Some(7_000), Some("failed"))
    );

    // A newer running run's late "running" record does not erase the outcome, and an
    // older finished run arriving after everything changes nothing.
    record(store, &[run("h", 8_000, Some(8_001), outcome::RUNNING)]).await;
    record(store, &[run("1", 100, Some(101), "succeeded")]).await;
    assert_eq!(
        get(store, "f").await.last,
        last(Some(8_000), Some(8_001), Some("failed"))
    );

    // Folding touches neither the version nor the update time.
    let now = get(store, "f").await;
    assert_eq!(now.version, job.version);
    assert_eq!(now.updated_at_ms, job.updated_at_ms);
}

pub async fn check_list_runs(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("h"), "").await;
    create(store, &sample_job("other"), "").await;
    let mut runs = Vec::new();
    for i in 0..40i64 {
        let mut r = sample_run(&format!("h-{i:03}"), "h", T0 + (i / 2) * 1_000);
        if i % 5 == 0 {
            r.outcome = "failed".to_owned();
        }
        runs.push(r);
    }
    runs.push(sample_run("o-1", "other", T0 + 500));
    // Recorded in a scrambled order.
    let mut scrambled = runs.clone();
    scrambled.reverse();
    scrambled.swap(3, 30);
    record(store, &scrambled).await;

    let mut expected: Vec<RunRecord> = runs.iter().filter(|r| r.job_id == "h").cloned().collect();
    expected.sort_by(|a, b| (b.scheduled_at_ms, &b.run_id).cmp(&(a.scheduled_at_ms, &a.run_id)));
    let got = store
        .list_runs("h", &runs_query(1_000))
        .await
        .expect("list runs");
    assert_eq!(
        run_ids(&got),
        run_ids(&expected),
        "newest first, run id breaks ties"
    );

    let got = store.list_runs("h", &runs_query(7)).await.expect("limited");
    assert_eq!(run_ids(&got), run_ids(&expected[..7]));

    let failed = store
        .list_runs(
            "h",
            &RunListQuery {
                outcome: Some("failed".to_owned()),
                ..runs_query(100)
            },
        )
        .await
        .expect("failed runs");
    let expected_failed: Vec<String> = expected
        .iter()
        .filter(|r| r.outcome == "failed")
        .map(|r| r.run_id.clone())
        .collect();
    assert_eq!(run_ids(&failed), expected_failed);

    // `before` pages strictly before an instant.
    let cut = T0 + 10_000;
    let before = store
        .list_runs(
            "h",
            &RunListQuery {
                before_ms: Some(cut),
                ..runs_query(100)
            },
        )
        .await
        .expect("before");
    let expected_before: Vec<String> = expected
        .iter()
        .filter(|r| r.scheduled_at_ms < cut)
        .map(|r| r.run_id.clone())
        .collect();
    assert_eq!(run_ids(&before), expected_before);
    // Walking pages with `before` visits every distinct instant once.
    let mut walked = Vec::new();
    let mut before_ms = None;
    loop {
        let page = store
            .list_runs(
                "h",
                &RunListQuery {
                    before_ms,
                    ..runs_query(2)
                },
            )
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        before_ms = Some(last.scheduled_at_ms);
        walked.extend(run_ids(&page));
    }
    assert_eq!(walked, run_ids(&expected));

    assert!(
        store
            .list_runs("nobody", &runs_query(10))
            .await
            .expect("none")
            .is_empty()
    );
}

pub async fn check_get_run(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("g"), "").await;
    let run = RunRecord {
        log: vec![LogLine {
            seq: 1,
            level: "info".to_owned(),
            text: "hello".to_owned(),
            at_ms: T0 + 1,
        }],
        error_message: Some("m".to_owned()),
        error_stack: Some("s".to_owned()),
        trigger: Trigger::Misfire,
        ..sample_run("g-1", "g", T0)
    };
    record(store, std::slice::from_ref(&run)).await;
    assert_eq!(store.get_run("g-1").await.expect("get run"), Some(run));
    assert_eq!(store.get_run("g-2").await.expect("get run"), None);
}

pub async fn check_recent_runs(store: &Arc<dyn Store>) {
    let store = &**store;
    for j in ["x", "y", "z"] {
        create(store, &sample_job(j), "").await;
    }
    let mut runs = Vec::new();
    for i in 0..30i64 {
        let job = ["x", "y", "z"][i as usize % 3];
        runs.push(sample_run(&format!("rr-{i:02}"), job, T0 + i * 100));
    }
    record(store, &runs).await;
    let got = store.recent_runs(T0 + 1_000, 1_000).await.expect("recent");
    let mut expected: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.scheduled_at_ms >= T0 + 1_000)
        .collect();
    expected.sort_by_key(|r| std::cmp::Reverse(r.scheduled_at_ms));
    assert_eq!(
        run_ids(&got),
        expected
            .iter()
            .map(|r| r.run_id.clone())
            .collect::<Vec<_>>(),
        "at or after the instant, newest first"
    );
    let got = store.recent_runs(T0, 5).await.expect("recent limited");
    assert_eq!(run_ids(&got), ["rr-29", "rr-28", "rr-27", "rr-26", "rr-25"]);
    assert!(
        store
            .recent_runs(T0 + 1_000_000, 5)
            .await
            .expect("none")
            .is_empty()
    );
}

pub async fn check_prune_by_count(store: &Arc<dyn Store>) {
    let store = &**store;
    let mut runs = Vec::new();
    for j in 0..5 {
        let job = format!("pc{j}");
        create(store, &sample_job(&job), "").await;
        for i in 0..(j * 10) {
            runs.push(sample_run(
                &format!("{job}-{i:03}"),
                &job,
                T0 + i64::from(i),
            ));
        }
    }
    // Two runs at the same instant: the run id decides which is newer.
    runs.push(sample_run("pc4-999", "pc4", T0 + 39));
    record(store, &runs).await;

    let deleted = store.prune_runs(7, i64::MIN).await.expect("prune");
    // Jobs with 0, 10, 20, 30, 41 runs keep 0, 7, 7, 7, 7.
    assert_eq!(deleted, 3 + 13 + 23 + 34);
    for j in 0..5 {
        let job = format!("pc{j}");
        let left = store.list_runs(&job, &runs_query(100)).await.expect("runs");
        let all_of_job: Vec<String> = {
            let mut v: Vec<&RunRecord> = runs.iter().filter(|r| r.job_id == job).collect();
            v.sort_by(|a, b| (b.scheduled_at_ms, &b.run_id).cmp(&(a.scheduled_at_ms, &a.run_id)));
            v.iter().take(7).map(|r| r.run_id.clone()).collect()
        };
        assert_eq!(run_ids(&left), all_of_job, "job {job} keeps its newest 7");
    }
    assert_eq!(store.prune_runs(7, i64::MIN).await.expect("prune again"), 0);
    // Pruning leaves the jobs' last run facts alone.
    assert_eq!(get(store, "pc4").await.last.scheduled_at_ms, Some(T0 + 39));
    assert_eq!(store.prune_runs(0, i64::MIN).await.expect("prune all"), 28);
    assert_no_runs(store).await;
}

pub async fn check_prune_by_age(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("pa"), "").await;
    create(store, &sample_job("pb"), "").await;
    let mut runs = Vec::new();
    for i in 0..20i64 {
        runs.push(sample_run(&format!("pa-{i:02}"), "pa", T0 + i * 1_000));
        runs.push(sample_run(&format!("pb-{i:02}"), "pb", T0 + i * 500));
    }
    record(store, &runs).await;
    // Strictly older than the cutoff goes; a generous count limit keeps the rest.
    let deleted = store.prune_runs(1_000, T0 + 5_000).await.expect("prune");
    assert_eq!(deleted, 5 + 10);
    let left = store.recent_runs(i64::MIN, 100).await.expect("recent");
    assert_eq!(left.len(), 25);
    assert!(left.iter().all(|r| r.scheduled_at_ms >= T0 + 5_000));
    // Both limits at once.
    let deleted = store.prune_runs(3, T0 + 6_000).await.expect("prune both");
    // pa: 15 left, 1 older than cutoff, then keep 3 of 14 -> 12; pb: 10 left, 2 old,
    // then keep 3 of 8 -> 5 more.
    assert_eq!(deleted, 1 + 11 + 2 + 5);
    assert_eq!(
        store
            .list_runs("pa", &runs_query(100))
            .await
            .expect("pa")
            .len(),
        3
    );
    assert_eq!(
        store
            .list_runs("pb", &runs_query(100))
            .await
            .expect("pb")
            .len(),
        3
    );
}

pub async fn check_records_of_deleted_job_dropped(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("alive"), "").await;
    create(store, &sample_job("doomed"), "").await;
    assert!(store.delete_job("doomed").await.expect("delete"));
    record(
        store,
        &[
            sample_run("x-1", "doomed", T0),
            sample_run("x-2", "alive", T0),
            sample_run("x-3", "never-existed", T0),
        ],
    )
    .await;
    assert_eq!(store.get_run("x-1").await.expect("get"), None);
    assert_eq!(store.get_run("x-3").await.expect("get"), None);
    assert!(store.get_run("x-2").await.expect("get").is_some());
    assert_eq!(store.get_job("doomed").await.expect("get"), None);
    assert_eq!(
        store.recent_runs(i64::MIN, 10).await.expect("recent").len(),
        1
    );
}

pub async fn check_concurrent_creates(store: &Arc<dyn Store>) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 625;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let job = sample_job(&format!("cc-{t:02}-{i:04}"));
                store
                    .create_job(&job, "console.log(1)")
                    .await
                    .unwrap_or_else(|e| panic!("create {}: {e}", job.id));
            }
        }));
    }
    for h in handles {
        h.await.expect("create task");
    }
    let (jobs, total) = store.list_jobs(&all()).await.expect("list");
    assert_eq!(total as usize, TASKS * PER_TASK);
    let got: HashSet<String> = ids(&jobs).into_iter().collect();
    assert_eq!(got.len(), TASKS * PER_TASK);
    for t in 0..TASKS {
        for i in 0..PER_TASK {
            assert!(got.contains(&format!("cc-{t:02}-{i:04}")));
        }
    }
    assert_eq!(
        store.count_jobs().await.expect("count"),
        ((TASKS * PER_TASK) as u64, 0)
    );
}

pub async fn check_writes_after_close(store: &Arc<dyn Store>) {
    create(store.as_ref(), &sample_job("before"), "").await;
    store.close().await;
    match store.create_job(&sample_job("after"), "").await {
        Err(StoreError::Unavailable(_)) => {}
        r => panic!("a write after close must be Unavailable, got {r:?}"),
    }
    match store.delete_job("before").await {
        Err(StoreError::Unavailable(_)) => {}
        r => panic!("a delete after close must be Unavailable, got {r:?}"),
    }
    // Closing twice is harmless.
    store.close().await;
}

/// Every overlap and misfire choice, and the numbers of retries, jitter, pause and the
/// script version, survive create, update, and every read.
pub async fn check_policies_round_trip(store: &Arc<dyn Store>) {
    let store = &**store;
    let mut jobs = Vec::new();
    for (i, overlap) in OverlapPolicy::ALL.into_iter().enumerate() {
        for (k, misfire) in MisfirePolicy::ALL.into_iter().enumerate() {
            let n = (i * MisfirePolicy::ALL.len() + k) as u32;
            jobs.push(Job {
                overlap,
                misfire,
                enabled: n.is_multiple_of(2),
                max_concurrent: 2 + n,
                max_catch_up: 100 + n,
                retry: RetryPolicy {
                    max_retries: n,
                    backoff_ms: 500 + u64::from(n),
                    max_backoff_ms: 1 << 40,
                },
                jitter_s: 30 + n,
                paused_until_ms: (!n.is_multiple_of(3)).then_some(T0 + i64::from(n)),
                script_version: 1,
                script_note: format!("note {n} — ünïcødé"),
                secrets: Vec::new(),
                ..sample_job(&format!("pol-{n:02}"))
            });
        }
    }
    for j in &jobs {
        create(store, j, "p()").await;
    }
    for j in &jobs {
        assert_eq!(&get(store, &j.id).await, j, "job {} reads back", j.id);
    }
    let (listed, _) = store.list_jobs(&all()).await.expect("list");
    let mut expected = jobs.clone();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, expected, "list_jobs reads every field");
    let mut enabled = store.enabled_jobs().await.expect("enabled");
    enabled.sort_by(|a, b| a.id.cmp(&b.id));
    let expected_enabled: Vec<Job> = expected.iter().filter(|j| j.enabled).cloned().collect();
    assert_eq!(enabled, expected_enabled, "enabled_jobs reads every field");

    // An update replaces every policy, extremes included, with or without a script.
    let first = &jobs[0];
    let changed = Job {
        overlap: OverlapPolicy::Replace,
        misfire: MisfirePolicy::RunAll,
        max_concurrent: u32::MAX,
        max_catch_up: 0,
        retry: RetryPolicy {
            max_retries: u32::MAX,
            backoff_ms: 0,
            max_backoff_ms: i64::MAX as u64,
        },
        jitter_s: u32::MAX,
        paused_until_ms: Some(i64::MAX),
        version: first.version + 1,
        updated_at_ms: T0 + 9,
        ..first.clone()
    };
    store
        .update_job(&changed, None, first.version)
        .await
        .expect("update policies");
    assert_eq!(get(store, &first.id).await, changed);
    let unpaused = Job {
        paused_until_ms: None,
        overlap: OverlapPolicy::Allow,
        misfire: MisfirePolicy::Skip,
        version: changed.version + 1,
        script_version: 2,
        script_note: String::new(),
        secrets: Vec::new(),
        ..changed.clone()
    };
    store
        .update_job(&unpaused, Some("p2()"), changed.version)
        .await
        .expect("update policies and script");
    assert_eq!(get(store, &first.id).await, unpaused);
}

/// Create keeps the script as version 1, an update with a script adds the next, an
/// update without one adds none; versions list newest first without their sources, and
/// go with their job.
pub async fn check_script_versions(store: &Arc<dyn Store>) {
    let store = &**store;
    let v1 = Job {
        script_note: "first".to_owned(),
        secrets: Vec::new(),
        ..sample_job("sv")
    };
    create(store, &v1, "one()").await;
    create(store, &sample_job("other"), "other()").await;
    let listed = store.list_script_versions("sv").await.expect("list");
    assert_eq!(
        listed,
        vec![ScriptVersion {
            version: 1,
            note: "first".to_owned(),
            created_at_ms: T0,
            bytes: 5,
            source: None,
        }]
    );

    let source2 = "console.log('héllo 世界 🚀');".to_owned();
    let v2 = Job {
        script_version: 2,
        script_note: "second: ünïcødé".to_owned(),
        secrets: Vec::new(),
        version: 2,
        updated_at_ms: T0 + 1_000,
        ..v1.clone()
    };
    store
        .update_job(&v2, Some(&source2), 1)
        .await
        .expect("update with script");
    assert_eq!(get(store, "sv").await, v2);
    assert_eq!(
        store.get_script("sv").await.expect("script"),
        Some(source2.clone())
    );

    // Without a script: the job changes, its versions do not.
    let v3 = Job {
        name: "renamed".to_owned(),
        version: 3,
        updated_at_ms: T0 + 2_000,
        ..v2.clone()
    };
    store
        .update_job(&v3, None, 2)
        .await
        .expect("update without script");
    assert_eq!(get(store, "sv").await, v3);

    let listed = store.list_script_versions("sv").await.expect("list");
    assert_eq!(
        listed,
        vec![
            ScriptVersion {
                version: 2,
                note: "second: ünïcødé".to_owned(),
                created_at_ms: T0 + 1_000,
                bytes: source2.len() as u64,
                source: None,
            },
            ScriptVersion {
                version: 1,
                note: "first".to_owned(),
                created_at_ms: T0,
                bytes: 5,
                source: None,
            },
        ],
        "newest first, without sources, bytes counted in UTF-8"
    );
    assert_eq!(
        store.get_script_version("sv", 2).await.expect("get v2"),
        Some(ScriptVersion {
            source: Some(source2.clone()),
            ..listed[0].clone()
        })
    );
    assert_eq!(
        store.get_script_version("sv", 1).await.expect("get v1"),
        Some(ScriptVersion {
            source: Some("one()".to_owned()),
            ..listed[1].clone()
        })
    );
    assert_eq!(store.get_script_version("sv", 3).await.expect("get"), None);
    assert_eq!(
        store.get_script_version("sv", u64::MAX).await.expect("get"),
        None
    );
    assert_eq!(
        store.get_script_version("nobody", 1).await.expect("get"),
        None
    );
    assert!(
        store
            .list_script_versions("nobody")
            .await
            .expect("list")
            .is_empty()
    );

    // Versions go with their job, and only with it.
    assert!(store.delete_job("sv").await.expect("delete"));
    assert!(
        store
            .list_script_versions("sv")
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(store.get_script_version("sv", 1).await.expect("get"), None);
    assert_eq!(
        store
            .list_script_versions("other")
            .await
            .expect("list")
            .len(),
        1
    );
    // A new job with the id starts from its own version 1.
    create(store, &sample_job("sv"), "again()").await;
    let listed = store.list_script_versions("sv").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        store
            .get_script_version("sv", 1)
            .await
            .expect("get")
            .and_then(|v| v.source)
            .as_deref(),
        Some("again()")
    );
}

/// Saving a script under a version number that exists is a conflict that changes
/// nothing.
pub async fn check_duplicate_script_version_refused(store: &Arc<dyn Store>) {
    let store = &**store;
    let v1 = sample_job("dv");
    create(store, &v1, "one()").await;
    let v2 = Job {
        script_version: 2,
        script_note: "two".to_owned(),
        secrets: Vec::new(),
        version: 2,
        updated_at_ms: T0 + 1,
        ..v1.clone()
    };
    store
        .update_job(&v2, Some("two()"), 1)
        .await
        .expect("save v2");
    // Right job version, but script version 2 again (another writer saved it).
    let again = Job {
        name: "lost".to_owned(),
        script_note: "two again".to_owned(),
        secrets: Vec::new(),
        version: 3,
        updated_at_ms: T0 + 2,
        ..v2.clone()
    };
    match store.update_job(&again, Some("two-again()"), 2).await {
        Err(StoreError::VersionConflict { id, .. }) => assert_eq!(id, "dv"),
        r => panic!("a second save of version 2 must be VersionConflict, got {r:?}"),
    }
    assert_eq!(get(store, "dv").await, v2, "the job is unchanged");
    assert_eq!(
        store.get_script("dv").await.expect("script").as_deref(),
        Some("two()")
    );
    let listed = store.list_script_versions("dv").await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|v| (v.version, v.note.as_str()))
            .collect::<Vec<_>>(),
        [(2, "two"), (1, "")]
    );
    assert_eq!(
        store
            .get_script_version("dv", 2)
            .await
            .expect("get")
            .and_then(|v| v.source)
            .as_deref(),
        Some("two()")
    );
    // Version 1 again (going backwards) is refused too.
    let back = Job {
        script_version: 1,
        version: 3,
        ..v2.clone()
    };
    assert!(matches!(
        store.update_job(&back, Some("one-again()"), 2).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(get(store, "dv").await, v2);
}

pub async fn check_run_attempt_fields_round_trip(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("at"), "").await;
    let runs = vec![
        RunRecord {
            attempt: 3,
            script_version: Some(7),
            duplicates: 2,
            ..sample_run("at-1", "at", T0)
        },
        RunRecord {
            attempt: u32::MAX,
            script_version: Some(i64::MAX as u64),
            duplicates: u32::MAX,
            ..sample_run("at-2", "at", T0 + 1)
        },
        sample_run("at-3", "at", T0 + 2),
    ];
    record(store, &runs).await;
    for r in &runs {
        assert_eq!(
            store.get_run(&r.run_id).await.expect("get run").as_ref(),
            Some(r)
        );
    }
    let listed = store
        .list_runs("at", &runs_query(10))
        .await
        .expect("list runs");
    let expected: Vec<RunRecord> = runs.iter().rev().map(without_log).collect();
    assert_eq!(listed, expected);
    let recent = store.recent_runs(T0, 10).await.expect("recent runs");
    assert_eq!(recent, expected);
}

/// A duplicate counted between the `running` record and the final one is kept.
pub async fn check_duplicates_survive_upsert(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("ds"), "").await;
    let running = RunRecord {
        outcome: outcome::RUNNING.to_owned(),
        ended_at_ms: None,
        script_version: Some(1),
        ..sample_run("ds-1", "ds", T0)
    };
    record(store, std::slice::from_ref(&running)).await;
    assert!(store.note_duplicate("ds", T0).await.expect("note"));
    assert!(store.note_duplicate("ds", T0).await.expect("note"));
    let stored = store.get_run("ds-1").await.expect("get").expect("run");
    assert_eq!(stored.duplicates, 2);
    assert_eq!(stored.outcome, outcome::RUNNING);

    // The final record knows nothing of them.
    let done = RunRecord {
        attempt: 2,
        ..sample_run("ds-1", "ds", T0)
    };
    record(store, std::slice::from_ref(&done)).await;
    let stored = store.get_run("ds-1").await.expect("get").expect("run");
    assert_eq!(
        stored,
        RunRecord {
            duplicates: 2,
            ..done.clone()
        },
        "the upsert replaces everything but the duplicates count"
    );
    // A record that counted more itself wins.
    let more = RunRecord {
        duplicates: 5,
        ..done.clone()
    };
    record(store, std::slice::from_ref(&more)).await;
    assert_eq!(
        store.get_run("ds-1").await.expect("get").expect("run"),
        more
    );
    // Twice in one batch: the last record wins, the count still only grows.
    record(
        store,
        &[
            RunRecord {
                duplicates: 9,
                ..done.clone()
            },
            done.clone(),
        ],
    )
    .await;
    let stored = store.get_run("ds-1").await.expect("get").expect("run");
    assert!(stored.duplicates >= 5, "{}", stored.duplicates);
    assert_eq!(
        RunRecord {
            duplicates: 0,
            ..stored
        },
        done
    );
}

/// `note_duplicate` counts on the newest (by run id) non-manual record of the
/// occurrence, and only there.
pub async fn check_note_duplicate(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("nd"), "").await;
    create(store, &sample_job("nd2"), "").await;
    let runs = vec![
        sample_run("nd-1", "nd", T0),
        RunRecord {
            trigger: Trigger::Misfire,
            attempt: 2,
            ..sample_run("nd-2", "nd", T0)
        },
        // Newest by run id, but a manual run is an occurrence of its own.
        RunRecord {
            trigger: Trigger::Manual,
            ..sample_run("nd-3", "nd", T0)
        },
        sample_run("nd-4", "nd", T0 + 1),
        RunRecord {
            trigger: Trigger::Manual,
            ..sample_run("nd-5", "nd", T0 + 2)
        },
        // The same instant in another job.
        sample_run("nd-9", "nd2", T0),
    ];
    record(store, &runs).await;
    assert!(store.note_duplicate("nd", T0).await.expect("note"));
    let dups = |id: &'static str| async move {
        store
            .get_run(id)
            .await
            .expect("get run")
            .unwrap_or_else(|| panic!("run {id} is missing"))
            .duplicates
    };
    assert_eq!(
        dups("nd-2").await,
        1,
        "the newest non-manual record counts it"
    );
    assert_eq!(dups("nd-1").await, 0);
    assert_eq!(dups("nd-3").await, 0, "manual runs are never counted on");
    assert_eq!(dups("nd-9").await, 0, "other jobs are untouched");
    assert!(store.note_duplicate("nd", T0 + 1).await.expect("note"));
    assert_eq!(dups("nd-4").await, 1);
    assert_eq!(dups("nd-2").await, 1);

    // Unknown occurrences, and one with only a manual run.
    assert!(!store.note_duplicate("nd", T0 + 2).await.expect("note"));
    assert_eq!(dups("nd-5").await, 0);
    assert!(!store.note_duplicate("nd", T0 + 3).await.expect("note"));
    assert!(!store.note_duplicate("nobody", T0).await.expect("note"));
    assert!(!store.note_duplicate("nd", T0 - 1).await.expect("note"));
}

pub async fn check_list_runs_since(store: &Arc<dyn Store>) {
    let store = &**store;
    create(store, &sample_job("si"), "").await;
    create(store, &sample_job("si2"), "").await;
    let mut runs = Vec::new();
    for i in 0..20i64 {
        runs.push(RunRecord {
            outcome: if i % 2 == 0 { "succeeded" } else { "failed" }.to_owned(),
            ..sample_run(&format!("si-{i:02}"), "si", T0 + i * 100)
        });
        runs.push(sample_run(&format!("si2-{i:02}"), "si2", T0 + i * 100));
    }
    record(store, &runs).await;
    let query = |since_ms, before_ms, outcome: Option<&str>, limit| RunListQuery {
        since_ms,
        before_ms,
        outcome: outcome.map(str::to_owned),
        limit,
    };
    let names = |from: i64, to: i64| -> Vec<String> {
        (from..to).rev().map(|i| format!("si-{i:02}")).collect()
    };
    let got = store
        .list_runs("si", &query(Some(T0 + 1_500), None, None, 100))
        .await
        .expect("since");
    assert_eq!(run_ids(&got), names(15, 20), "at or after the instant");
    let got = store
        .list_runs("si", &query(Some(T0 + 1_450), None, None, 100))
        .await
        .expect("since between runs");
    assert_eq!(run_ids(&got), names(15, 20));
    let got = store
        .list_runs("si", &query(Some(T0 + 500), Some(T0 + 800), None, 100))
        .await
        .expect("a window");
    assert_eq!(
        run_ids(&got),
        names(5, 8),
        "since inclusive, before exclusive"
    );
    let got = store
        .list_runs(
            "si",
            &query(Some(T0 + 300), Some(T0 + 1_600), Some("failed"), 3),
        )
        .await
        .expect("everything at once");
    assert_eq!(run_ids(&got), ["si-15", "si-13", "si-11"]);
    assert!(
        store
            .list_runs("si", &query(Some(T0 + 2_000), None, None, 100))
            .await
            .expect("after the last")
            .is_empty()
    );
    assert!(
        store
            .list_runs("si", &query(Some(T0 + 800), Some(T0 + 800), None, 100))
            .await
            .expect("an empty window")
            .is_empty()
    );
    let got = store
        .list_runs("si", &query(Some(i64::MIN), None, None, 100))
        .await
        .expect("since the beginning");
    assert_eq!(got.len(), 20);
}
