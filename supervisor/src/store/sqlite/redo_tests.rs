//! Tests of the redo log: creates answered before their commit are seen by every read
//! that follows, commit on their own within milliseconds, survive a failed commit, and
//! are applied exactly once after a crash (the `kill -9` test in `tests.rs` covers the
//! crash of a real process; these build the log a crash leaves).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tempfile::TempDir;

use super::redo::Batch;
use super::{SqliteStore, writer};
use crate::store::conformance::{assert_no_runs, sample_job, sample_run};
use crate::store::{AuditEntry, Store, StoreError};

fn open_fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("traitor.db")).expect("open store");
    (dir, store)
}

fn redo_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-redo");
    PathBuf::from(name)
}

fn count_rows(db: &Path, sql: &str) -> i64 {
    let conn = Connection::open(db).expect("open raw");
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

fn audit_entry(target: &str) -> AuditEntry {
    AuditEntry {
        id: format!("audit-{target}"),
        at_ms: 1_700_000_000_000,
        actor: "local".into(),
        node: "n1".into(),
        action: "job.create".into(),
        target: target.into(),
        detail_json: "{}".into(),
    }
}

/// The log a process leaves when it dies after answering `ids` and before committing
/// them: their records, numbered from `first_seq`.
fn records_of_uncommitted_creates(db: &Path, ids: &[&str], first_seq: u64) -> Vec<u8> {
    let mut conn = Connection::open(db).expect("open raw");
    let tx = conn.transaction().expect("begin");
    let mut batch = Batch::starting_at(first_seq);
    for id in ids {
        let audit = audit_entry(id);
        writer::create(
            &tx,
            &sample_job(id),
            &format!("console.log('{id}')"),
            Some(&audit),
            Some(&mut batch),
        )
        .expect("create in a transaction that is never committed");
    }
    tx.rollback().expect("roll back");
    batch.bytes
}

#[tokio::test]
async fn every_read_sees_the_creates_answered_before_it() {
    let (_dir, store) = open_fresh();
    for i in 0..200 {
        let id = format!("j{i}");
        store
            .create_job(&sample_job(&id), "x")
            .await
            .expect("create");
        let job = store.get_job(&id).await.expect("get");
        assert_eq!(job.map(|j| j.id), Some(id.clone()));
        let (_, total) = store.list_jobs(&Default::default()).await.expect("list");
        assert_eq!(total, i + 1, "after creating {id}");
    }
    store.close().await;
}

#[tokio::test]
async fn an_answered_create_commits_by_itself_without_a_read() {
    let (_dir, store) = open_fresh();
    store
        .create_job(&sample_job("lonely"), "x")
        .await
        .expect("create");
    // Another connection sees only what is committed.
    let started = Instant::now();
    while count_rows(store.path(), "SELECT COUNT(*) FROM jobs") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the create was never committed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        std::fs::metadata(redo_path(store.path()))
            .map(|m| m.len())
            .ok(),
        Some(0),
        "the redo log is emptied by the commit"
    );
    store.close().await;
}

/// A request failing half-way rolls back the whole open transaction, creates answered
/// before it included: they must be applied again, and the failed request undone alone.
#[tokio::test]
async fn a_request_failing_half_way_keeps_the_creates_answered_before_it() {
    let (dir, store) = open_fresh();
    store
        .create_job(&sample_job("answered"), "x")
        .await
        .expect("create");
    let good = sample_run("good", "answered", 1);
    let mut bad = sample_run("bad", "answered", 2);
    // Not storable: SQLite integers are signed 64-bit.
    bad.cpu_time_us = Some(u64::MAX);
    assert!(matches!(
        store.record_runs(&[good, bad]).await,
        Err(StoreError::Other(_))
    ));
    store
        .create_job(&sample_job("after"), "x")
        .await
        .expect("create after the failure");
    assert_eq!(store.count_jobs().await.expect("count"), (2, 0));
    assert_no_runs(&store).await;
    store.close().await;
    let store = SqliteStore::open(&dir.path().join("traitor.db")).expect("reopen");
    assert_eq!(store.count_jobs().await.expect("count"), (2, 0));
    store.close().await;
}

#[tokio::test]
async fn a_crash_left_log_is_applied_once_at_open() {
    let (dir, store) = open_fresh();
    let db = store.path().to_owned();
    store.close().await;
    let mut log = records_of_uncommitted_creates(&db, &["a", "b"], 1);
    let whole = log.clone();
    // The death of the process cut the next record short: it was never answered.
    let torn = records_of_uncommitted_creates(&db, &["torn"], 3);
    log.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(redo_path(&db), &log).expect("write log");

    let store = SqliteStore::open(&db).expect("reopen");
    assert_eq!(store.count_jobs().await.expect("count"), (2, 0));
    assert_eq!(
        store.get_script("b").await.expect("script").as_deref(),
        Some("console.log('b')")
    );
    assert!(store.get_job("torn").await.expect("get").is_none());
    store.close().await;
    assert_eq!(
        count_rows(&db, "SELECT COUNT(*) FROM audit WHERE target IN ('a', 'b')"),
        2
    );
    assert_eq!(count_rows(&db, "SELECT seq FROM redo_applied"), 2);
    let damaged = std::fs::read_dir(dir.path())
        .expect("list dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("damaged"))
        .count();
    assert_eq!(damaged, 0, "a torn last record is expected, not damage");

    // Records at or below the stored high-water mark are not applied again, even if
    // emptying the log had failed.
    std::fs::write(redo_path(&db), &whole).expect("write log again");
    let store = SqliteStore::open(&db).expect("reopen again");
    assert_eq!(store.count_jobs().await.expect("count"), (2, 0));
    store.close().await;
    assert_eq!(
        count_rows(&db, "SELECT COUNT(*) FROM audit WHERE target IN ('a', 'b')"),
        2
    );
}

#[tokio::test]
async fn a_damaged_record_ends_the_log_and_a_copy_is_kept() {
    let (dir, store) = open_fresh();
    let db = store.path().to_owned();
    store.close().await;
    let good = records_of_uncommitted_creates(&db, &["good"], 1);
    let mut bad = records_of_uncommitted_creates(&db, &["bad"], 2);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let after = records_of_uncommitted_creates(&db, &["after"], 3);
    std::fs::write(redo_path(&db), [good, bad, after].concat()).expect("write log");

    let store = SqliteStore::open(&db).expect("reopen");
    assert!(store.get_job("good").await.expect("get").is_some());
    assert!(store.get_job("bad").await.expect("get").is_none());
    assert!(store.get_job("after").await.expect("get").is_none());
    store.close().await;
    let copies: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("-redo.damaged-"))
        .collect();
    assert_eq!(copies.len(), 1, "one copy of the damaged log");
}

/// A commit that fails (here: its high-water mark has nowhere to go) must not lose the
/// creates it held, which were answered: reads then fail rather than miss them, and
/// once the fault is gone they are committed.
#[tokio::test]
async fn answered_creates_survive_a_failed_commit() {
    let (_dir, store) = open_fresh();
    let db = store.path().to_owned();
    store
        .create_job(&sample_job("before"), "x")
        .await
        .expect("create");
    assert_eq!(store.count_jobs().await.expect("count"), (1, 0));
    let raw = Connection::open(&db).expect("open raw");
    raw.execute_batch("ALTER TABLE redo_applied RENAME TO redo_applied_gone")
        .expect("break the high-water mark");

    store
        .create_job(&sample_job("during"), "x")
        .await
        .expect("a create is answered from the log");
    assert!(
        store.get_job("during").await.is_err(),
        "a read must fail while an answered create cannot be committed"
    );
    store
        .create_job(&sample_job("also"), "x")
        .await
        .expect("creates keep being answered from the log");

    raw.execute_batch("ALTER TABLE redo_applied_gone RENAME TO redo_applied")
        .expect("mend the high-water mark");
    let started = Instant::now();
    loop {
        match store.count_jobs().await {
            Ok(counts) => {
                assert_eq!(counts, (3, 0));
                break;
            }
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "still failing after the fault was mended: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    let store = SqliteStore::open(&db).expect("reopen");
    assert_eq!(store.count_jobs().await.expect("count"), (3, 0));
    store.close().await;
}

#[tokio::test]
async fn a_second_store_on_the_same_database_is_refused() {
    let (_dir, store) = open_fresh();
    let err = SqliteStore::open(store.path())
        .err()
        .expect("a second open must be refused");
    assert!(format!("{err:#}").contains("another process"), "{err:#}");
    store.close().await;
}
