//! Tests of the MongoDB store.
//!
//! No MongoDB server runs where the project is built, so the tests that need one run
//! only when `TRAITOR_TEST_MONGODB_URL` names a server (e.g. `mongodb://localhost:27017`)
//! and are skipped with a one-line note otherwise. Each of them works in a fresh
//! database (`traitor_test_<random>`), dropped at its end. The document mapping, names
//! and patterns are tested without a server.

use std::sync::{Arc, Once};

use mongodb::bson::{Bson, doc};
use mongodb::options::ClientOptions;

use super::docs::{
    job_doc, literal_regex, read_job, read_run, read_script_version, run_doc, run_upsert,
};
use super::{MongoStore, collection_prefix, fold_update, folds};
use crate::job::{Job, LastRun, LogLine, MisfirePolicy, OverlapPolicy, RetryPolicy, Trigger};
use crate::store::conformance::{StoreFixture, sample_job, sample_run};
use crate::store::{JobListQuery, Store};

/// The test server's URL, or `None` (with a note, once) when there is none.
fn test_url() -> Option<String> {
    match std::env::var("TRAITOR_TEST_MONGODB_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static NOTE: Once = Once::new();
            NOTE.call_once(|| {
                // Straight to stderr: the test harness would hide a print of a passing
                // test.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "note: MongoDB store tests skipped: set TRAITOR_TEST_MONGODB_URL \
                     (e.g. mongodb://localhost:27017) to run them"
                );
            });
            None
        }
    }
}

fn fresh_name(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Drops a test database when dropped.
struct DatabaseGuard {
    url: String,
    database: String,
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let (url, database) = (self.url.clone(), self.database.clone());
        // A Drop may run inside or outside a runtime: use a thread with its own.
        let joined = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let client = mongodb::Client::with_uri_str(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let res = client
                    .database(&database)
                    .drop()
                    .await
                    .map_err(|e| e.to_string());
                client.shutdown().await;
                res
            })
        })
        .join();
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("drop test database {}: {e}", self.database),
            Err(_) => eprintln!("drop test database {}: the thread panicked", self.database),
        }
    }
}

/// A store in a fresh database, dropped with the fixture (after the store).
pub(crate) struct Fixture {
    store: Arc<MongoStore>,
    _guard: DatabaseGuard,
}

impl StoreFixture for Fixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

async fn connect_in(url: &str, database: &str, cluster: &str) -> MongoStore {
    let options = ClientOptions::parse(url)
        .await
        .unwrap_or_else(|e| panic!("parse TRAITOR_TEST_MONGODB_URL {url}: {e}"));
    MongoStore::connect_in(options, database, cluster)
        .await
        .unwrap_or_else(|e| panic!("connect to the test MongoDB at {url}: {e:#}"))
}

pub(crate) async fn fresh() -> Option<Fixture> {
    let url = test_url()?;
    let database = fresh_name("traitor_test_");
    let store = Arc::new(connect_in(&url, &database, "default").await);
    Some(Fixture {
        store,
        _guard: DatabaseGuard { url, database },
    })
}

mod conformance {
    crate::skippable_conformance_tests!(super::fresh());
}

#[test]
fn the_skippable_suite_lists_every_check_of_the_suite() {
    assert_eq!(
        conformance::CHECKS,
        crate::store::postgres::tests::suite_checks().as_slice()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_on_one_database_never_see_each_other() {
    let Some(url) = test_url() else { return };
    let database = fresh_name("traitor_test_");
    let _guard = DatabaseGuard {
        url: url.clone(),
        database: database.clone(),
    };
    let a = connect_in(&url, &database, "blue").await;
    let b = connect_in(&url, &database, "green").await;
    let ja = Job {
        name: "in a".to_owned(),
        enabled: true,
        ..sample_job("same")
    };
    let jb = Job {
        name: "in b".to_owned(),
        ..sample_job("same")
    };
    a.create_job(&ja, "a()").await.expect("create in a");
    b.create_job(&jb, "b()").await.expect("create in b");
    a.create_job(&sample_job("only-a"), "")
        .await
        .expect("create only in a");
    assert_eq!(a.get_job("same").await.expect("get"), Some(ja.clone()));
    assert_eq!(b.get_job("same").await.expect("get"), Some(jb));
    assert_eq!(
        b.get_script("same").await.expect("script").as_deref(),
        Some("b()")
    );
    assert_eq!(b.get_job("only-a").await.expect("get"), None);
    assert_eq!(a.count_jobs().await.expect("count"), (1, 1));
    assert_eq!(b.count_jobs().await.expect("count"), (1, 0));
    let (_, total) = b.list_jobs(&JobListQuery::default()).await.expect("list");
    assert_eq!(total, 1);
    a.record_runs(&[sample_run("r-a", "same", 1_000)])
        .await
        .expect("record in a");
    assert_eq!(b.get_run("r-a").await.expect("get run"), None);
    assert_eq!(
        b.get_job("same").await.expect("get").map(|j| j.last),
        Some(LastRun::default())
    );
    assert!(b.delete_job("same").await.expect("delete in b"));
    assert!(a.get_job("same").await.expect("get").is_some());
    assert!(a.get_run("r-a").await.expect("get run").is_some());
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_starting_with_a_dollar_are_text() {
    let Some(fixture) = fresh().await else { return };
    let store = fixture.store.clone();
    store
        .create_job(&sample_job("d"), "$('#x').hide()")
        .await
        .expect("create");
    let mut job = sample_job("d");
    job.version = 2;
    store
        .update_job(&job, Some("$$NOW"), 1)
        .await
        .expect("update");
    assert_eq!(
        store.get_script("d").await.expect("script").as_deref(),
        Some("$$NOW")
    );
    let mut run = sample_run("$run", "d", 5);
    run.outcome = "$last_outcome".to_owned();
    store.record_runs(&[run]).await.expect("record");
    assert_eq!(
        store
            .get_job("d")
            .await
            .expect("get")
            .and_then(|j| j.last.outcome),
        Some("$last_outcome".to_owned())
    );
    store.close().await;
}

#[tokio::test]
async fn an_unreachable_server_fails_connect() {
    // Port 1 on loopback: nothing listens there.
    let url = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500";
    assert!(MongoStore::connect(url, "x").await.is_err());
}

#[tokio::test]
async fn bad_cluster_names_are_refused() {
    for bad in ["", "a b", "a.b", "a$b", "ü", &"x".repeat(65)] {
        assert!(collection_prefix(bad).is_err(), "{bad:?}");
        let url = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500";
        let err = MongoStore::connect(url, bad).await.err();
        let err = err.map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("cluster name"), "{bad:?}: {err}");
    }
    assert_eq!(collection_prefix("system").expect("valid"), "system_");
    assert_ne!(
        collection_prefix("a-b").expect("valid"),
        collection_prefix("a_b").expect("valid")
    );
}

#[test]
fn jobs_and_runs_round_trip_through_documents() {
    let job = Job {
        name: "Ünïcødé $name".to_owned(),
        enabled: true,
        exec_at_ms: Some(-5),
        time_limit_ms: 1 << 40,
        misfire_window_s: u32::MAX,
        overlap: OverlapPolicy::QueueOne,
        misfire: MisfirePolicy::RunAll,
        max_concurrent: u32::MAX,
        max_catch_up: 0,
        retry: RetryPolicy {
            max_retries: 3,
            backoff_ms: 1 << 40,
            max_backoff_ms: 7,
        },
        jitter_s: 59,
        paused_until_ms: Some(-1),
        script_version: 12,
        script_note: "$note".to_owned(),
        secrets: Vec::new(),
        version: 7,
        last: LastRun {
            scheduled_at_ms: Some(1),
            started_at_ms: None,
            outcome: Some("failed".to_owned()),
        },
        ..sample_job("ид")
    };
    let d = job_doc(&job, "rev").expect("encode");
    assert_eq!(d.get_str("script_rev").expect("rev"), "rev");
    assert_eq!(read_job(&d).expect("decode"), job);

    let run = crate::job::RunRecord {
        trigger: Trigger::Manual,
        error_message: Some("m".to_owned()),
        log: vec![LogLine {
            seq: u32::MAX,
            level: "warn".to_owned(),
            text: "nul \0 and $dollar".to_owned(),
            at_ms: 9,
        }],
        log_truncated: true,
        attempt: 4,
        script_version: Some(12),
        duplicates: 2,
        ..sample_run("r", "ид", 3)
    };
    let d = run_doc(&run).expect("encode");
    assert_eq!(read_run(&d, true).expect("decode"), run);
    let without = read_run(&d, false).expect("decode");
    assert!(without.log.is_empty());
    // The upsert sets everything but the duplicates, which it only raises.
    let update = run_upsert(&run).expect("encode");
    let mut set = update.get_document("$set").expect("$set").clone();
    assert!(!set.contains_key("_id") && !set.contains_key("duplicates"));
    set.insert("_id", "r");
    set.insert("duplicates", 2i64);
    assert_eq!(read_run(&set, true).expect("decode"), run);
    assert_eq!(
        update.get_document("$max").expect("$max"),
        &doc! { "duplicates": 2i64 }
    );
}

#[test]
fn documents_from_before_version_2_read_as_defaults() {
    let mut d = job_doc(&sample_job("old"), "rev").expect("encode");
    for key in [
        "max_concurrent",
        "max_catch_up",
        "retry_max_retries",
        "retry_backoff_ms",
        "retry_max_backoff_ms",
        "jitter_s",
        "paused_until_ms",
        "script_version",
        "script_note",
        "secrets",
    ] {
        assert!(d.remove(key).is_some(), "{key}");
    }
    assert_eq!(read_job(&d).expect("decode"), sample_job("old"));
    let mut d = run_doc(&sample_run("r", "old", 1)).expect("encode");
    for key in ["attempt", "script_version", "duplicates"] {
        assert!(d.remove(key).is_some(), "{key}");
    }
    assert_eq!(
        read_run(&d, true).expect("decode"),
        sample_run("r", "old", 1)
    );
}

#[test]
fn bad_documents_are_errors_not_panics() {
    let good = job_doc(&sample_job("j"), "rev").expect("encode");
    let mut d = good.clone();
    d.insert("overlap", "sometimes");
    assert!(read_job(&d).is_err());
    let mut d = good.clone();
    d.insert("exec_type", 9);
    assert!(read_job(&d).is_err());
    let mut d = good.clone();
    d.insert("version", -1i64);
    assert!(read_job(&d).is_err());
    let mut d = good.clone();
    d.insert("name", 3);
    assert!(read_job(&d).is_err());
    let mut d = good.clone();
    d.remove("timezone");
    assert!(read_job(&d).is_err());
    // The fields of version 2 may be missing, not wrong.
    for (key, bad) in [
        ("max_concurrent", Bson::Int64(-1)),
        ("jitter_s", Bson::Int64(1 << 32)),
        ("retry_backoff_ms", Bson::Int64(-5)),
        ("script_version", Bson::Null),
        ("script_note", Bson::Int32(1)),
    ] {
        let mut d = good.clone();
        d.insert(key, bad);
        let err = read_job(&d).expect_err(key);
        assert!(format!("{err:#}").contains("job j"), "{err:#}");
    }
    // 32-bit integers, as another tool may write them, are fine.
    let mut d = good.clone();
    d.insert("version", 3i32);
    assert_eq!(read_job(&d).expect("int32").version, 3);

    let run = run_doc(&sample_run("r", "j", 1)).expect("encode");
    let mut d = run.clone();
    d.insert("trigger", "whenever");
    assert!(read_run(&d, false).is_err());
    let mut d = run.clone();
    d.insert("log", vec![Bson::String("x".to_owned())]);
    assert!(read_run(&d, true).is_err());
    let mut d = run.clone();
    d.insert("duplicates", -1i64);
    assert!(read_run(&d, false).is_err());
    let mut d = run.clone();
    d.insert("script_version", -1i64);
    assert!(read_run(&d, false).is_err());

    let version = doc! {
        "job_id": "j", "version": 2i64, "note": "n", "created_at_ms": 5i64, "bytes": -1i64,
    };
    let err = read_script_version(&version, false).expect_err("negative bytes");
    assert!(
        format!("{err:#}").contains("version 2 of the script of job j"),
        "{err:#}"
    );
    let mut ok = version.clone();
    ok.insert("bytes", 3i64);
    assert_eq!(read_script_version(&ok, false).expect("decode").bytes, 3);
    ok.insert("source", "héj");
    let full = read_script_version(&ok, true).expect("decode");
    assert_eq!((full.bytes, full.source.as_deref()), (4, Some("héj")));
}

#[test]
fn search_patterns_are_literal() {
    assert_eq!(literal_regex("abc"), "abc");
    assert_eq!(literal_regex("a.b*c"), "a\\.b\\*c");
    assert_eq!(literal_regex("100%"), "100\\%");
    assert_eq!(
        literal_regex("(x)[y]{z}^$|?+\\"),
        "\\(x\\)\\[y\\]\\{z\\}\\^\\$\\|\\?\\+\\\\"
    );
    assert_eq!(literal_regex("ü_1"), "ü\\_1");
    assert_eq!(literal_regex("a\0b"), "a\\x00b");
}

#[test]
fn folding_wraps_record_text_as_literals() {
    let runs = [
        sample_run("$b", "j", 10),
        crate::job::RunRecord {
            outcome: "running".to_owned(),
            started_at_ms: Some(99),
            ..sample_run("c", "j", 20)
        },
    ];
    let refs: Vec<&crate::job::RunRecord> = runs.iter().collect();
    let folds = folds(&refs);
    let f = &folds["j"];
    assert_eq!(f.scheduled, 20);
    assert_eq!(f.started, Some(99));
    // The running run has started but not finished: the outcome comes from "$b".
    assert_eq!(f.finished.map(|(_, id, _)| id), Some("$b"));
    let update = fold_update(f);
    let set = update[0].get_document("$set").expect("$set");
    let outcome = set.get_document("last_outcome").expect("outcome");
    let cond = outcome.get_array("$cond").expect("$cond");
    assert_eq!(cond[1], Bson::Document(doc! { "$literal": "succeeded" }));
    assert_eq!(cond[2], Bson::String("$last_outcome".to_owned()));
}
