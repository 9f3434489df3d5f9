//! Tests of the PostgreSQL store against a real server: the conformance suite, plus what
//! only this store has (namespacing by cluster, migrations under concurrent start-up and
//! from version 1, connection loss, group commit) and two `#[ignore]`d measurements
//! (`cargo test -p supervisor --release store::postgres::tests::bench -- --ignored
//! --nocapture`).
//!
//! The server is `TRAITOR_TEST_POSTGRES_URL`, or `postgres://postgres@127.0.0.1:5432/
//! postgres` when unset; a server that cannot be reached fails every test loudly, unless
//! `TRAITOR_TEST_SKIP_POSTGRES=1` says to skip them. Each test works in a fresh cluster
//! schema (`traitor_test_<random>`), dropped at its end, so tests run in parallel.

use std::sync::{Arc, Once};
use std::time::Instant;

use tokio_postgres::NoTls;

use super::{PostgresStore, schema};
use crate::job::{RetryPolicy, ScriptVersion};
use crate::store::conformance::{StoreFixture, sample_job, sample_run};
use crate::store::{JobListQuery, Store, StoreError};

/// Instantiates every check of [`crate::store::conformance`] like
/// `store_conformance_tests!`, for a backend whose server may be absent: `$make`
/// evaluates to a future of `Option<fixture>`, and `None` skips the check (the fixture
/// maker prints why). [`CHECKS`] lists the checks, and a test compares that list with the
/// suite's own macro so the two cannot drift apart.
#[macro_export]
macro_rules! skippable_conformance_tests {
    ($make:expr) => {
        $crate::skippable_conformance_tests!(@each $make;
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
        /// The checks instantiated here.
        #[allow(dead_code)]
        pub(crate) const CHECKS: &[&str] = &[$(stringify!($check)),*];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(fixture) = $make.await else { return };
                let store = $crate::store::conformance::StoreFixture::store(&fixture);
                $crate::store::conformance::$check(&store).await;
                store.close().await;
                drop(fixture);
            }
        )*
    };
}

/// The check names listed in `store_conformance_tests!`, read from the suite's source.
pub(crate) fn suite_checks() -> Vec<String> {
    let src = include_str!("../conformance.rs");
    let start = src
        .find("@each $make;")
        .expect("the suite's macro lists its checks after `@each $make;`");
    let list = &src[start + "@each $make;".len()..];
    let end = list
        .find(");")
        .expect("the suite's check list ends with `);`");
    list[..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The test server's URL, or `None` when told to skip.
fn test_url() -> Option<String> {
    if std::env::var("TRAITOR_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
        static NOTE: Once = Once::new();
        NOTE.call_once(|| {
            // Straight to stderr: the test harness would hide a print of a passing test.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "note: PostgreSQL store tests skipped (TRAITOR_TEST_SKIP_POSTGRES=1)"
            );
        });
        return None;
    }
    Some(std::env::var("TRAITOR_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned()))
}

fn fresh_cluster() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// Drops a cluster's schema when dropped.
struct SchemaGuard {
    url: String,
    cluster: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        drop_cluster(&self.url, &self.cluster);
    }
}

/// A store in a fresh cluster schema, dropped with the fixture (after the store).
pub(crate) struct Fixture {
    store: Arc<PostgresStore>,
    guard: SchemaGuard,
}

impl StoreFixture for Fixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

async fn connect(url: &str, cluster: &str) -> PostgresStore {
    PostgresStore::connect(url, cluster)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connect to the test PostgreSQL at {url}: {e:#}\n(set TRAITOR_TEST_POSTGRES_URL, \
             run scripts/test.sh which starts a server, or set TRAITOR_TEST_SKIP_POSTGRES=1 \
             to skip these tests)"
            )
        })
}

async fn fixture_in(url: String, cluster: String) -> Fixture {
    let store = Arc::new(connect(&url, &cluster).await);
    Fixture {
        store,
        guard: SchemaGuard { url, cluster },
    }
}

pub(crate) async fn fresh() -> Option<Fixture> {
    let url = test_url()?;
    Some(fixture_in(url, fresh_cluster()).await)
}

/// Drops a cluster's schema, from any context (a `Drop` may run inside or outside a
/// runtime, so this uses a thread with its own).
fn drop_cluster(url: &str, cluster: &str) {
    let Ok(schema) = schema::schema_name(cluster) else {
        return;
    };
    let url = url.to_owned();
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("{e}"))?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, NoTls)
                .await
                .map_err(|e| format!("{e}"))?;
            let conn = tokio::spawn(conn);
            let res = client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    schema::quote_ident(&schema)
                ))
                .await
                .map_err(|e| format!("{e}"));
            drop(client);
            let _ = conn.await;
            res
        })
    })
    .join();
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("drop test schema of cluster {cluster}: {e}"),
        Err(_) => eprintln!("drop test schema of cluster {cluster}: the thread panicked"),
    }
}

/// A raw connection to the test server, for looking behind the store's back.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    client
}

mod conformance {
    crate::skippable_conformance_tests!(super::fresh());
}

#[test]
fn the_skippable_suite_lists_every_check_of_the_suite() {
    assert_eq!(
        conformance::CHECKS,
        suite_checks().as_slice(),
        "skippable_conformance_tests! must list exactly the checks of store_conformance_tests!"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_on_one_database_never_see_each_other() {
    let Some(url) = test_url() else { return };
    let a = fixture_in(url.clone(), fresh_cluster()).await;
    let b = fixture_in(url.clone(), fresh_cluster()).await;
    let (sa, sb) = (a.store.clone(), b.store.clone());
    assert_ne!(sa.schema(), sb.schema());

    // The same id in both, with different contents.
    let ja = crate::job::Job {
        name: "in a".to_owned(),
        enabled: true,
        ..sample_job("same")
    };
    let jb = crate::job::Job {
        name: "in b".to_owned(),
        ..sample_job("same")
    };
    sa.create_job(&ja, "a()").await.expect("create in a");
    sb.create_job(&jb, "b()").await.expect("create in b");
    sa.create_job(&sample_job("only-a"), "")
        .await
        .expect("create only in a");
    assert_eq!(sa.get_job("same").await.expect("get").expect("in a"), ja);
    assert_eq!(sb.get_job("same").await.expect("get").expect("in b"), jb);
    assert_eq!(
        sb.get_script("same").await.expect("script").as_deref(),
        Some("b()")
    );
    assert_eq!(sb.get_job("only-a").await.expect("get"), None);
    assert_eq!(sa.count_jobs().await.expect("count"), (1, 1));
    assert_eq!(sb.count_jobs().await.expect("count"), (1, 0));
    let (listed, total) = sb.list_jobs(&JobListQuery::default()).await.expect("list");
    assert_eq!((listed.len(), total), (1, 1));
    assert_eq!(sb.enabled_jobs().await.expect("enabled").len(), 0);

    // History and its folding stay in their cluster.
    sa.record_runs(&[sample_run("r-a", "same", 1_000)])
        .await
        .expect("record in a");
    assert_eq!(sb.get_run("r-a").await.expect("get run"), None);
    assert!(
        sb.recent_runs(i64::MIN, 10)
            .await
            .expect("recent")
            .is_empty()
    );
    assert_eq!(
        sb.get_job("same").await.expect("get").expect("in b").last,
        Default::default()
    );
    // A record sent to the wrong cluster is dropped, not folded into the other's job.
    sb.record_runs(&[sample_run("r-x", "only-a", 2_000)])
        .await
        .expect("record in b");
    assert_eq!(sa.get_run("r-x").await.expect("get run"), None);
    assert_eq!(sa.prune_runs(0, i64::MAX).await.expect("prune a"), 1);

    // Deleting in one leaves the other.
    assert!(sb.delete_job("same").await.expect("delete in b"));
    assert_eq!(sa.get_job("same").await.expect("get").expect("in a"), {
        let mut j = ja.clone();
        j.last = sa.get_job("same").await.expect("get").expect("in a").last;
        j
    });
    sa.close().await;
    sb.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_starting_at_once_migrate_once() {
    let Some(url) = test_url() else { return };
    let cluster = fresh_cluster();
    let _guard = SchemaGuard {
        url: url.clone(),
        cluster: cluster.clone(),
    };
    let starts = (0..3).map(|_| {
        let (url, cluster) = (url.clone(), cluster.clone());
        tokio::spawn(async move { PostgresStore::connect(&url, &cluster).await })
    });
    let mut stores = Vec::new();
    for s in futures_util::future::join_all(starts).await {
        stores.push(
            s.expect("start task")
                .expect("connect while others connect"),
        );
    }
    let client = raw(&url).await;
    let schema = schema::schema_name(&cluster).expect("valid");
    assert_eq!(
        schema::current_version(&client, &schema)
            .await
            .expect("version"),
        Some(schema::latest_version())
    );
    let rows = client
        .query(
            &format!(
                "SELECT version FROM {}.schema_version",
                schema::quote_ident(&schema)
            ),
            &[],
        )
        .await
        .expect("read versions");
    assert_eq!(rows.len(), 1, "one version row");
    // All three see one store.
    stores[0]
        .create_job(&sample_job("x"), "")
        .await
        .expect("create");
    assert!(stores[2].get_job("x").await.expect("get").is_some());
    for s in &stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_build_is_refused_untouched() {
    let Some(fixture) = fresh().await else { return };
    fixture
        .store
        .create_job(&sample_job("keep"), "")
        .await
        .expect("create");
    fixture.store.close().await;
    let client = raw(&fixture.guard.url).await;
    let schema = schema::schema_name(&fixture.guard.cluster).expect("valid");
    let future = schema::latest_version() + 1;
    client
        .execute(
            &format!(
                "UPDATE {}.schema_version SET version = $1",
                schema::quote_ident(&schema)
            ),
            &[&future],
        )
        .await
        .expect("pretend a newer build migrated");
    let err = match PostgresStore::connect(&fixture.guard.url, &fixture.guard.cluster).await {
        Ok(_) => panic!("a newer schema must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("newer"), "{err}");
    assert_eq!(
        schema::current_version(&client, &schema)
            .await
            .expect("version"),
        Some(future)
    );
}

#[tokio::test]
async fn bad_cluster_names_are_refused_before_connecting() {
    // No server is needed: the name is checked first.
    for bad in ["", "a b", "x\";drop schema public;--", "ü"] {
        let err = PostgresStore::connect("postgres://nobody@127.0.0.1:1/none", bad).await;
        let err = err.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("cluster name"), "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_connect() {
    // Port 1 on loopback: nothing listens there.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/postgres", "x").await;
    assert!(err.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_unavailable_then_recover() {
    let Some(fixture) = fresh().await else { return };
    let store = fixture.store.clone();
    store
        .create_job(&sample_job("a"), "")
        .await
        .expect("create");
    // Kill every connection of this store's pool behind its back.
    let client = raw(&fixture.guard.url).await;
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $2 AND pid <> $1",
            &[&pid, &format!("traitor {}", fixture.guard.cluster)],
        )
        .await
        .expect("terminate the store's connections");
    // Each call either fails as Unavailable (its connection died under it) or works on
    // a fresh connection; none panics or reports another error.
    let mut recovered = false;
    for _ in 0..(super::POOL_SIZE * 2) {
        match store.get_job("a").await {
            Ok(Some(_)) => {
                recovered = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => {}
            r => panic!("after losing its connections: {r:?}"),
        }
    }
    assert!(recovered, "the store reconnects");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_refused_in_jobs_and_replaced_in_history() {
    let Some(fixture) = fresh().await else { return };
    let store = fixture.store.clone();
    let bad = crate::job::Job {
        name: "a\0b".to_owned(),
        ..sample_job("nul")
    };
    match store.create_job(&bad, "").await {
        Err(StoreError::Other(e)) => assert!(format!("{e:#}").contains("NUL"), "{e:#}"),
        r => panic!("a NUL in a name must be refused, got {r:?}"),
    }
    match store.create_job(&sample_job("nul"), "x\0").await {
        Err(StoreError::Other(_)) => {}
        r => panic!("a NUL in a script must be refused, got {r:?}"),
    }
    assert_eq!(store.get_job("nul").await.expect("get"), None);
    store
        .create_job(&sample_job("nul"), "")
        .await
        .expect("create");
    let mut run = sample_run("nul-run", "nul", 1_000);
    run.error_message = Some("bad\0byte".to_owned());
    run.log = vec![crate::job::LogLine {
        seq: 0,
        level: "log".to_owned(),
        text: "zero \0 here".to_owned(),
        at_ms: 1_001,
    }];
    store
        .record_runs(std::slice::from_ref(&run))
        .await
        .expect("record");
    let got = store
        .get_run("nul-run")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.error_message.as_deref(), Some("bad\u{FFFD}byte"));
    assert_eq!(got.log, run.log, "the log keeps its NUL");
    let (found, total) = store
        .list_jobs(&JobListQuery {
            search: Some("\0".to_owned()),
            ..Default::default()
        })
        .await
        .expect("search for NUL");
    assert!(found.is_empty() && total == 0);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_creates_answers_each_request() {
    let Some(fixture) = fresh().await else { return };
    let store = fixture.store.clone();
    store
        .create_job(&sample_job("exists"), "old()")
        .await
        .expect("create");
    // Many concurrent creates, some of one new id, one of an existing id, one bad: each
    // gets its own answer whatever group it lands in.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (job, script) = match i {
                0..=9 => (sample_job("contested"), format!("c{i}()")),
                10 => (sample_job("exists"), "new()".to_owned()),
                11 => (
                    crate::job::Job {
                        version: u64::MAX,
                        ..sample_job("too-big")
                    },
                    String::new(),
                ),
                _ => (sample_job(&format!("g-{i}")), format!("g{i}()")),
            };
            (i, store.create_job(&job, &script).await)
        }));
    }
    let mut contested_ok = Vec::new();
    for t in tasks {
        let (i, res) = t.await.expect("task");
        match i {
            0..=9 => match res {
                Ok(()) => contested_ok.push(i),
                Err(StoreError::Duplicate(id)) => assert_eq!(id, "contested"),
                r => panic!("contested create {i}: {r:?}"),
            },
            10 => assert!(matches!(res, Err(StoreError::Duplicate(_))), "{res:?}"),
            11 => assert!(matches!(res, Err(StoreError::Other(_))), "{res:?}"),
            _ => res.unwrap_or_else(|e| panic!("create g-{i}: {e}")),
        }
    }
    assert_eq!(contested_ok.len(), 1, "exactly one create of an id wins");
    let winner = contested_ok[0];
    assert_eq!(
        store.get_script("contested").await.expect("script"),
        Some(format!("c{winner}()")),
        "the script is the winner's"
    );
    assert_eq!(
        store.get_script("exists").await.expect("script").as_deref(),
        Some("old()")
    );
    assert_eq!(store.get_job("too-big").await.expect("get"), None);
    assert_eq!(store.count_jobs().await.expect("count"), (2 + 188, 0));
    store.close().await;
}

/// Acknowledged creates per second with 8 concurrent tasks (or TRAITOR_BENCH_TASKS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn bench_concurrent_creates() {
    // TRAITOR_BENCH_TASKS overrides the number of tasks.
    let tasks: usize = std::env::var("TRAITOR_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let per_task = 40_000 / tasks.max(1);
    let Some(fixture) = fresh().await else { return };
    let store = fixture.store.clone();
    let t = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let job = sample_job(&format!("bench-{task}-{i}"));
                store
                    .create_job(&job, "console.log('bench')")
                    .await
                    .expect("create");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    let secs = t.elapsed().as_secs_f64();
    let n = tasks * per_task;
    println!(
        "{n} creates by {tasks} tasks in {secs:.2}s: {:.0} creates/s",
        n as f64 / secs
    );
    store.close().await;
}

/// `enabled_jobs` over a million rows: time and that it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn bench_enabled_jobs_million() {
    let Some(fixture) = fresh().await else { return };
    let client = raw(&fixture.guard.url).await;
    let schema = schema::quote_ident(&schema::schema_name(&fixture.guard.cluster).expect("valid"));
    let t = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.jobs (id, name, description, exec_type, cron, timezone, \
             enabled, time_limit_ms, memory_limit_mb, overlap, misfire, misfire_window_s, \
             version, created_at_ms, updated_at_ms) \
             SELECT 'm-' || g, 'name ' || g, 'a job among a million', 0, '0 * * * * *', 'UTC', \
             true, 30000, 64, 'skip', 'run_once', 60, 1, g, g \
             FROM generate_series(1, 1000000) AS g"
        ))
        .await
        .expect("insert a million jobs");
    println!(
        "inserted 1,000,000 jobs in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let jobs = fixture.store.enabled_jobs().await.expect("enabled jobs");
    assert_eq!(jobs.len(), 1_000_000);
    println!(
        "enabled_jobs returned {} jobs in {:.2}s",
        jobs.len(),
        t.elapsed().as_secs_f64()
    );
    drop(jobs);
    fixture.store.close().await;
}

#[tokio::test]
async fn a_url_asking_for_tls_is_refused_not_downgraded() {
    let Some(url) = test_url() else { return };
    let sep = if url.contains('?') { '&' } else { '?' };
    let err = PostgresStore::connect(&format!("{url}{sep}sslmode=require"), "tls").await;
    assert!(
        err.is_err(),
        "sslmode=require must not connect in plain text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_migrated_and_keeps_its_jobs() {
    let Some(url) = test_url() else { return };
    let cluster = fresh_cluster();
    let guard = SchemaGuard {
        url: url.clone(),
        cluster: cluster.clone(),
    };
    let old = PostgresStore::connect_with(&url, &cluster, 1)
        .await
        .expect("create a version 1 schema");
    old.close().await;
    let client = raw(&url).await;
    let schema = schema::schema_name(&cluster).expect("valid");
    assert_eq!(
        schema::current_version(&client, &schema)
            .await
            .expect("version"),
        Some(1)
    );
    // Rows exactly as a version 1 build wrote them.
    client
        .batch_execute(&format!(
            "SET search_path TO {}; \
             INSERT INTO jobs (id, name, description, exec_type, cron, exec_at_ms, timezone, \
               enabled, time_limit_ms, memory_limit_mb, overlap, misfire, misfire_window_s, \
               version, created_at_ms, updated_at_ms) VALUES ('old', 'n', '', 0, '* * * * *', \
               NULL, 'UTC', true, 1000, 64, 'skip', 'run_once', 60, 3, 10, 20); \
             INSERT INTO scripts (job_id, source) VALUES ('old', 'old() // é'); \
             INSERT INTO runs (run_id, job_id, trigger_kind, scheduled_at_ms, outcome, node, \
               log, log_truncated) VALUES ('old-run', 'old', 'schedule', 15, 'succeeded', 'n', \
               '[]', false); \
             RESET search_path",
            schema::quote_ident(&schema)
        ))
        .await
        .expect("write version 1 rows");
    for _ in 0..2 {
        let store = connect(&url, &cluster).await;
        let job = store.get_job("old").await.expect("get").expect("kept");
        assert_eq!(job.version, 3);
        assert_eq!(
            (
                job.max_concurrent,
                job.max_catch_up,
                job.retry,
                job.jitter_s
            ),
            (1, 10, RetryPolicy::default(), 0)
        );
        assert_eq!(job.paused_until_ms, None);
        assert_eq!((job.script_version, job.script_note.as_str()), (1, ""));
        assert_eq!(
            store.get_script_version("old", 1).await.expect("version"),
            Some(ScriptVersion {
                version: 1,
                note: String::new(),
                created_at_ms: 20,
                bytes: 11,
                source: Some("old() // é".to_owned()),
            })
        );
        assert_eq!(
            store
                .list_script_versions("old")
                .await
                .expect("versions")
                .len(),
            1
        );
        let run = store.get_run("old-run").await.expect("run").expect("kept");
        assert_eq!(
            (run.attempt, run.script_version, run.duplicates),
            (1, None, 0)
        );
        store.close().await;
        assert_eq!(
            schema::current_version(&client, &schema)
                .await
                .expect("version"),
            Some(schema::latest_version())
        );
    }
    drop(guard);
}
