//! Tests of the SQLite store: the conformance suite, plus what only SQLite has
//! (migrations, group commit, durability across `kill -9`) and two `#[ignore]`d
//! measurements (`cargo test -p supervisor --release sqlite::tests::bench -- --ignored
//! --nocapture`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tempfile::TempDir;

use super::{SqliteOptions, SqliteStore, schema};
use crate::job::{RetryPolicy, ScriptVersion};
use crate::store::conformance::{StoreFixture, assert_no_runs, sample_job, sample_run};
use crate::store::{Store, StoreError};

struct Fixture {
    store: Arc<SqliteStore>,
    _dir: TempDir,
}

impl StoreFixture for Fixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("create temp dir")
}

async fn fresh() -> Fixture {
    let dir = temp_dir();
    let store = SqliteStore::open(&dir.path().join("traitor.db")).expect("open store");
    Fixture {
        store: Arc::new(store),
        _dir: dir,
    }
}

/// An `INSERT` of a job row with the columns every schema from version 2 on has, for
/// filling a database at an older version before a migration step.
fn raw_job_insert(id: &str, enabled: bool, script_version: i64) -> String {
    format!(
        "INSERT INTO jobs (id, name, description, exec_type, cron, exec_at_ms, timezone, \
         enabled, time_limit_ms, memory_limit_mb, overlap, misfire, misfire_window_s, \
         version, created_at_ms, updated_at_ms, script_version, script_note) VALUES \
         ('{id}', 'n', '', 0, '* * * * *', NULL, 'UTC', {}, 1000, 64, 'skip', 'run_once', \
         60, 1, 10, 30, {script_version}, 'note {id}')",
        i64::from(enabled)
    )
}

mod conformance {
    crate::store_conformance_tests!(super::fresh());
}

#[tokio::test]
async fn open_creates_parent_directories() {
    let dir = temp_dir();
    let path = dir.path().join("a/b/c/traitor.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .create_job(&sample_job("j"), "")
        .await
        .expect("create");
    store.close().await;
    assert!(path.exists());
}

#[tokio::test]
async fn migrates_a_v1_database_and_reopens_idempotently() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    {
        // A database exactly as the first migration left it, with a row in it.
        let mut conn = Connection::open(&path).expect("open raw");
        schema::migrate(&mut conn, 1).expect("migrate to v1");
        assert_eq!(schema::current_version(&conn).expect("version"), 1);
        conn.execute(
            "INSERT INTO jobs (id, name, description, exec_type, cron, exec_at_ms, timezone, \
             enabled, time_limit_ms, memory_limit_mb, overlap, misfire, misfire_window_s, \
             version, created_at_ms, updated_at_ms) VALUES ('old', 'n', '', 0, '* * * * *', \
             NULL, 'UTC', 1, 1000, 64, 'skip', 'run_once', 60, 3, 10, 20)",
            [],
        )
        .expect("insert v1 row");
        conn.execute(
            "INSERT INTO scripts (job_id, source) VALUES ('old', 'old()')",
            [],
        )
        .expect("insert v1 script");
        conn.execute(
            "INSERT INTO runs (run_id, job_id, trigger_kind, scheduled_at_ms, outcome, node, \
             log, log_truncated) VALUES ('old-run', 'old', 'schedule', 15, 'succeeded', 'n', \
             '[]', 0)",
            [],
        )
        .expect("insert v1 run");
    }
    for _ in 0..3 {
        let store = SqliteStore::open(&path).expect("open migrated");
        let job = store.get_job("old").await.expect("get").expect("present");
        assert_eq!(job.version, 3);
        assert!(job.enabled);
        // The columns of version 2 read as a new job's defaults.
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
            store.get_script("old").await.expect("script").as_deref(),
            Some("old()")
        );
        // The current script became version 1, stamped with the job's last change.
        assert_eq!(
            store.get_script_version("old", 1).await.expect("version"),
            Some(ScriptVersion {
                version: 1,
                note: String::new(),
                created_at_ms: 20,
                bytes: 5,
                source: Some("old()".to_owned()),
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
        let conn = Connection::open(&path).expect("open raw");
        assert_eq!(
            schema::current_version(&conn).expect("version"),
            schema::latest_version()
        );
    }
}

/// The schema version just before the migration whose header starts with `header`,
/// whatever its place in the list.
fn version_before_step(header: &str) -> u32 {
    let index = schema::MIGRATIONS
        .iter()
        .position(|m| m.starts_with(header))
        .unwrap_or_else(|| panic!("no migration starts with {header:?}"));
    u32::try_from(index).expect("a few migrations")
}

#[tokio::test]
async fn the_current_script_moves_into_its_version_and_every_version_stays() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    // The step that dropped `scripts`.
    let before = version_before_step("-- Version 6:");
    {
        let mut conn = Connection::open(&path).expect("open raw");
        conn.pragma_update(None, "foreign_keys", "ON")
            .expect("foreign keys");
        schema::migrate(&mut conn, before).expect("migrate to the version before");
        let job = |id: &str, script_version: i64| raw_job_insert(id, false, script_version);
        conn.execute_batch(&format!(
            "{}; {}; \
             INSERT INTO scripts (job_id, source) VALUES ('a', 'two()'), ('b', 'b1()'); \
             INSERT INTO script_versions (job_id, version, source, note, created_at_ms) \
             VALUES ('a', 1, 'one()', 'n1', 10), ('a', 2, 'two, stale()', 'n2', 20);",
            job("a", 2),
            job("b", 1)
        ))
        .expect("rows of the version before");
    }
    let store = SqliteStore::open(&path).expect("open migrated");
    // `scripts` was what runs loaded: it wins over a differing current version.
    assert_eq!(
        store.get_script("a").await.expect("script").as_deref(),
        Some("two()")
    );
    let v2 = store
        .get_script_version("a", 2)
        .await
        .expect("version")
        .expect("kept");
    assert_eq!(
        (v2.source.as_deref(), v2.note.as_str(), v2.created_at_ms),
        (Some("two()"), "n2", 20)
    );
    let v1 = store.get_script_version("a", 1).await.expect("version");
    assert_eq!(v1.and_then(|v| v.source).as_deref(), Some("one()"));
    // A current script without its version row gains one.
    assert_eq!(
        store.get_script("b").await.expect("script").as_deref(),
        Some("b1()")
    );
    assert_eq!(
        store
            .list_script_versions("b")
            .await
            .expect("versions")
            .len(),
        1
    );
    // Versions still go with their job.
    store.delete_job("a").await.expect("delete");
    assert_eq!(
        store.get_script_version("a", 1).await.expect("version"),
        None
    );
    assert_eq!(store.get_script("a").await.expect("script"), None);
    store.close().await;
}

#[tokio::test]
async fn refuses_a_database_from_the_future() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .create_job(&sample_job("j"), "")
        .await
        .expect("create");
    store.close().await;
    let future = schema::latest_version() + 1;
    Connection::open(&path)
        .expect("open raw")
        .pragma_update(None, "user_version", future)
        .expect("set version");
    let err = match SqliteStore::open(&path) {
        Ok(_) => panic!("a newer schema must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&format!("schema version {future}")), "{err}");
    assert!(err.contains("newer traitor"), "{err}");
    // And it was left as it was.
    let conn = Connection::open(&path).expect("open raw");
    assert_eq!(schema::current_version(&conn).expect("version"), future);
}

#[tokio::test]
async fn refuses_a_file_that_is_not_a_database() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    std::fs::write(&path, vec![b'x'; 8192]).expect("write junk");
    let err = SqliteStore::open(&path)
        .err()
        .expect("junk must be refused");
    assert!(format!("{err:#}").contains(&path.display().to_string()));
}

#[tokio::test]
async fn unknown_enum_values_are_errors_not_panics() {
    let fx = fresh().await;
    let store = &fx.store;
    store
        .create_job(&sample_job("j"), "")
        .await
        .expect("create");
    store
        .create_job(&sample_job("k"), "")
        .await
        .expect("create");
    store
        .create_job(&sample_job("m"), "")
        .await
        .expect("create");
    store
        .record_runs(&[sample_run("r", "j", 1), sample_run("s", "k", 1)])
        .await
        .expect("record");
    {
        let raw = Connection::open(store.path()).expect("open raw");
        raw.execute("UPDATE jobs SET overlap = 'sometimes' WHERE id = 'j'", [])
            .expect("poke");
        raw.execute("UPDATE jobs SET exec_type = 7 WHERE id = 'k'", [])
            .expect("poke");
        raw.execute("UPDATE jobs SET max_concurrent = -1 WHERE id = 'm'", [])
            .expect("poke");
        raw.execute(
            "UPDATE runs SET trigger_kind = 'cosmic ray' WHERE run_id = 'r'",
            [],
        )
        .expect("poke");
        raw.execute("UPDATE runs SET duplicates = -1 WHERE run_id = 's'", [])
            .expect("poke");
        raw.execute(
            "UPDATE script_versions SET version = -1 WHERE job_id = 'm'",
            [],
        )
        .expect("poke");
    }
    match store.list_script_versions("m").await {
        Err(StoreError::Other(e)) => assert!(format!("{e:#}").contains("job m"), "{e:#}"),
        r => panic!("expected Other, got {r:?}"),
    }
    for id in ["j", "k", "m"] {
        match store.get_job(id).await {
            Err(StoreError::Other(e)) => {
                assert!(format!("{e:#}").contains(&format!("job {id}")), "{e:#}")
            }
            r => panic!("expected Other, got {r:?}"),
        }
    }
    assert!(matches!(store.enabled_jobs().await, Ok(v) if v.is_empty()));
    assert!(matches!(
        store.list_jobs(&Default::default()).await,
        Err(StoreError::Other(_))
    ));
    for id in ["r", "s"] {
        match store.get_run(id).await {
            Err(StoreError::Other(e)) => {
                assert!(format!("{e:#}").contains(&format!("run {id}")), "{e:#}")
            }
            r => panic!("expected Other, got {r:?}"),
        }
    }
    store.close().await;
}

/// A failing request (a duplicate) in a group does not fail the others of the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_request_does_not_fail_its_group() {
    let fx = fresh().await;
    let store: Arc<dyn Store> = fx.store.clone();
    let mut handles = Vec::new();
    for i in 0..400 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            // Every other request fights over the same id.
            let id = if i % 2 == 0 {
                "contested".to_owned()
            } else {
                format!("free-{i}")
            };
            (i, store.create_job(&sample_job(&id), "").await)
        }));
    }
    let mut winners = 0;
    for h in handles {
        let (i, res) = h.await.expect("task");
        match res {
            Ok(()) if i % 2 == 0 => winners += 1,
            Ok(()) => {}
            Err(StoreError::Duplicate(id)) if i % 2 == 0 => assert_eq!(id, "contested"),
            Err(e) => panic!("request {i}: {e}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.count_jobs().await.expect("count"), (201, 0));
    store.close().await;
}

#[tokio::test]
async fn close_checkpoints_the_wal_and_reads_fail_after() {
    let fx = fresh().await;
    let store = &fx.store;
    for i in 0..100 {
        store
            .create_job(&sample_job(&format!("j{i}")), "x")
            .await
            .expect("create");
    }
    store.close().await;
    let wal = store.path().with_extension("db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL is truncated at close");
    assert!(matches!(
        store.get_job("j1").await,
        Err(StoreError::Unavailable(_))
    ));
    let again = SqliteStore::open(store.path()).expect("reopen");
    assert_eq!(again.count_jobs().await.expect("count"), (100, 0));
    again.close().await;
}

#[tokio::test]
async fn fsync_option_opens_and_keeps_writes() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    let store = SqliteStore::open_with(&path, SqliteOptions { fsync: true }).expect("open");
    store
        .create_job(&sample_job("j"), "s")
        .await
        .expect("create");
    store.close().await;
    let store = SqliteStore::open(&path).expect("reopen");
    assert!(store.get_job("j").await.expect("get").is_some());
    store.close().await;
}

/// Pruning a large history works in chunks and deletes exactly the surplus.
#[tokio::test]
async fn prune_in_chunks() {
    let fx = fresh().await;
    let store = &fx.store;
    let mut runs = Vec::new();
    for j in 0..3 {
        let job = format!("big{j}");
        store
            .create_job(&sample_job(&job), "")
            .await
            .expect("create");
        for i in 0..6_000 {
            runs.push(sample_run(&format!("{job}-{i:05}"), &job, i64::from(i)));
        }
    }
    store.record_runs(&runs).await.expect("record");
    // By age: 3 x 5,500 runs, more than one chunk.
    assert_eq!(
        store
            .prune_runs(u32::MAX, 5_500)
            .await
            .expect("prune by age"),
        16_500
    );
    // By count: the newest 10 of the 500 left per job.
    assert_eq!(
        store
            .prune_runs(10, i64::MIN)
            .await
            .expect("prune by count"),
        1_470
    );
    let query = crate::store::RunListQuery {
        limit: 100,
        ..Default::default()
    };
    let left = store.list_runs("big1", &query).await.expect("runs");
    assert_eq!(left.len(), 10);
    assert_eq!(left[0].run_id, "big1-05999");
    assert_eq!(left[9].run_id, "big1-05990");
    store.close().await;
}

const CHILD_ENV: &str = "TRAITOR_STORE_CHILD";
const CHILD_DB_ENV: &str = "TRAITOR_STORE_CHILD_DB";
const ACK: &str = "ACK ";

/// The child half of [`acknowledged_writes_survive_kill_9`]: does nothing unless
/// started by it. Creates jobs from 8 tasks and prints each acknowledged id.
#[test]
fn kill9_child() {
    let Ok(round) = std::env::var(CHILD_ENV) else {
        return;
    };
    let Some(path) = std::env::var_os(CHILD_DB_ENV) else {
        panic!("{CHILD_DB_ENV} not set");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = Arc::new(SqliteStore::open(Path::new(&path)).expect("child: open"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            let round = round.clone();
            tasks.push(tokio::spawn(async move {
                let script = "x".repeat(1024);
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let id = format!("k-{round}-{t}-{i}");
                    store
                        .create_job(&sample_job(&id), &script)
                        .await
                        .expect("child: create");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{ACK}{id}").expect("child: print");
                    out.flush().expect("child: flush");
                    i += 1;
                }
            }));
        }
        for t in tasks {
            t.await.expect("child task");
        }
    });
}

/// Every id the child printed (after its create returned `Ok`) is in the database after
/// the child is SIGKILLed mid-stream. Fails if an answer is ever sent before its commit:
/// the window is small, so the kill is repeated over several rounds on the same
/// database (with answers sent just before the commit, one round catches it about two
/// times in three).
#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    let mut acked = Vec::new();
    for round in 0..4 {
        acked.extend(run_child_and_kill(&path, round, 1_000 + 500 * round));
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(&path).expect("reopen after kill");
        let (jobs, total) = store.list_jobs(&Default::default()).await.expect("list");
        let present: std::collections::HashSet<String> = jobs.into_iter().map(|j| j.id).collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !present.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged jobs lost (store has {total}), e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        store.close().await;
    });
}

/// Starts [`kill9_child`] on `path`, SIGKILLs it once it has acknowledged `at_least`
/// creates, and returns every id it acknowledged.
fn run_child_and_kill(path: &Path, round: usize, at_least: usize) -> Vec<String> {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "store::sqlite::tests::kill9_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, round.to_string())
        .env(CHILD_DB_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let started = Instant::now();
    while acked.len() < at_least {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(id) = line.strip_prefix(ACK) {
                    acked.push(id.to_owned());
                }
            }
            other => {
                let _ = child.kill();
                panic!("child stopped early after {} acks: {other:?}", acked.len());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "child too slow"
        );
    }
    // SIGKILL, mid-stream: writes are in flight right now.
    child.kill().expect("kill child");
    // Whatever it printed before dying was acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(id) = line.strip_prefix(ACK) {
            acked.push(id.to_owned());
        }
    }
    let status = child.wait().expect("wait child");
    assert!(!status.success(), "the child must have been killed");
    acked
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Measures acknowledged creates per second: 8 concurrent tasks (`BENCH_TASKS`), 1 KiB
/// scripts, `BENCH_CREATES` in all, with and without fsync. Also prints the process's
/// CPU time per create, which a busy machine distorts less than wall time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release -- --ignored --nocapture"]
async fn bench_creates_per_second() {
    let tasks = env_usize("BENCH_TASKS", 8);
    let n = env_usize("BENCH_CREATES", 100_000);
    let modes: &[bool] = match std::env::var("BENCH_FSYNC").as_deref() {
        Ok("0") => &[false],
        Ok("1") => &[true],
        _ => &[false, true],
    };
    for &fsync in modes {
        let dir = temp_dir();
        let store = Arc::new(
            SqliteStore::open_with(&dir.path().join("traitor.db"), SqliteOptions { fsync })
                .expect("open"),
        );
        let start = Instant::now();
        let cpu = cpu_seconds();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let script = "x".repeat(1024);
                for i in (t..n).step_by(tasks) {
                    let mut job = sample_job(&uuid::Uuid::now_v7().to_string());
                    job.name = format!("bench {i}");
                    store.create_job(&job, &script).await.expect("create");
                }
            }));
        }
        for h in handles {
            h.await.expect("task");
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        println!(
            "fsync={fsync}: {n} creates from {tasks} tasks in {secs:.2} s = {:.0} creates/s \
             ({:.1} us CPU per create)",
            n as f64 / secs,
            cpu * 1e6 / n as f64
        );
        store.close().await;
    }
}

/// Measures `enabled_jobs()` over 1,000,000 enabled jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release -- --ignored --nocapture"]
async fn bench_enabled_jobs_1m() {
    let dir = temp_dir();
    // BENCH_DB keeps the database for a closer look.
    let path =
        std::env::var_os("BENCH_DB").map_or_else(|| dir.path().join("traitor.db"), Into::into);
    let store = Arc::new(SqliteStore::open(&path).expect("open"));
    const N: usize = 1_000_000;
    const TASKS: usize = 64;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in (t..N).step_by(TASKS) {
                let mut job = sample_job(&uuid::Uuid::now_v7().to_string());
                job.name = format!("job number {i}");
                job.enabled = true;
                store
                    .create_job(&job, "console.log('hi')")
                    .await
                    .expect("create");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    println!(
        "inserted {N} jobs in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    for round in 0..3 {
        let start = Instant::now();
        let jobs = store.enabled_jobs().await.expect("enabled jobs");
        println!(
            "round {round}: enabled_jobs() -> {} jobs in {} ms",
            jobs.len(),
            start.elapsed().as_millis()
        );
        assert_eq!(jobs.len(), N);
    }
    let start = Instant::now();
    let counts = store.count_jobs().await.expect("count");
    println!(
        "count_jobs() -> {counts:?} in {} ms",
        start.elapsed().as_millis()
    );
    let start = Instant::now();
    let (page, total) = store
        .list_jobs(&crate::store::JobListQuery {
            limit: Some(50),
            offset: 500_000,
            ..Default::default()
        })
        .await
        .expect("list");
    println!(
        "list_jobs(offset 500000, limit 50) -> {} of {total} in {} ms",
        page.len(),
        start.elapsed().as_millis()
    );
    let start = Instant::now();
    let (_, total) = store
        .list_jobs(&crate::store::JobListQuery {
            search: Some("number 99999".into()),
            limit: Some(50),
            ..Default::default()
        })
        .await
        .expect("search");
    println!(
        "list_jobs(search) -> {total} matches in {} ms",
        start.elapsed().as_millis()
    );
    store.close().await;
}

/// A request that fails half-way (here on its second run record) is undone entirely,
/// and the requests committed in the same group are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_failing_half_way_is_undone_alone() {
    let fx = fresh().await;
    let store: Arc<dyn Store> = fx.store.clone();
    store
        .create_job(&sample_job("j"), "")
        .await
        .expect("create");
    let mut handles = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            if i % 10 == 0 {
                let good = sample_run(&format!("good-{i}"), "j", 10_000 + i);
                let mut bad = sample_run(&format!("bad-{i}"), "j", 20_000 + i);
                // Not storable: SQLite integers are signed 64-bit.
                bad.cpu_time_us = Some(u64::MAX);
                (i, store.record_runs(&[good, bad]).await)
            } else {
                (
                    i,
                    store.create_job(&sample_job(&format!("ok-{i}")), "").await,
                )
            }
        }));
    }
    for h in handles {
        let (i, res) = h.await.expect("task");
        match res {
            Err(StoreError::Other(_)) if i % 10 == 0 => {}
            Ok(()) if i % 10 != 0 => {}
            other => panic!("request {i}: {other:?}"),
        }
    }
    assert_eq!(store.count_jobs().await.expect("count"), (181, 0));
    assert_no_runs(&*store).await;
    assert_eq!(
        store.get_job("j").await.expect("get").expect("job").last,
        Default::default()
    );
    store.close().await;
}

/// A secret is stored sealed: the raw row holds neither the plaintext nor anything
/// that decrypts without the key.
#[tokio::test]
async fn secrets_are_encrypted_at_rest() {
    use crate::secrets::{KeySource, SecretKey, Vault};
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).expect("open"));
    let key = SecretKey::from_base64(&SecretKey::generate_base64()).expect("key");
    let vault = Vault::new(store.clone(), KeySource::fixed(key));
    let plain = "correct-horse-battery-staple";
    vault.put("DB_PASS", plain, 1, None).await.expect("put");
    let run = vault
        .for_run("j", &["DB_PASS".to_owned()])
        .await
        .expect("open for a run");
    assert_eq!(run.values.0, [("DB_PASS".to_owned(), plain.to_owned())]);
    store.close().await;

    let conn = Connection::open(&path).expect("open raw");
    let sealed: Vec<u8> = conn
        .query_row(
            "SELECT sealed FROM secrets WHERE name = 'DB_PASS'",
            [],
            |r| r.get(0),
        )
        .expect("raw row");
    assert_ne!(sealed, plain.as_bytes());
    assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_bytes()));
    let other = SecretKey::from_base64(&SecretKey::generate_base64()).expect("key");
    assert!(
        other.decrypt("DB_PASS", &sealed).is_err(),
        "a wrong key fails"
    );
}

#[tokio::test]
async fn audit_entries_and_job_counts_survive_the_step_that_reclusters_the_audit_log() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    let before = version_before_step("-- Version 7:");
    {
        let mut conn = Connection::open(&path).expect("open raw");
        schema::migrate(&mut conn, before).expect("migrate to the version before");
        let job = |id: &str, enabled: bool| raw_job_insert(id, enabled, 1);
        conn.execute_batch(&format!(
            "{}; {}; {}; \
             INSERT INTO audit (id, at_ms, actor, node, action, target, detail) VALUES \
             ('e1', 100, 'ops', 'n1', 'job.create', 'on', '{{}}'), \
             ('e3', 300, 'ops', 'n1', 'job.enable', 'on', '{{}}'), \
             ('e2', 200, 'ci', 'n1', 'job.create', 'off', '{{}}');",
            job("on", true),
            job("off", false),
            job("on2", true)
        ))
        .expect("rows of the version before");
    }
    let store = Arc::new(SqliteStore::open(&path).expect("open migrated"));
    assert_eq!(store.count_jobs().await.expect("count"), (1, 2));
    let enabled: Vec<String> = store
        .enabled_jobs_page(None, 10)
        .await
        .expect("enabled page")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(enabled, ["on", "on2"]);

    let list = |target: Option<&str>, before: Option<(i64, &str)>| {
        let q = crate::store::AuditListQuery {
            target: target.map(str::to_owned),
            before: before.map(|(ms, id)| (ms, id.to_owned())),
            limit: 10,
            ..Default::default()
        };
        let store = store.clone();
        async move {
            use crate::store::AuditStore;
            let entries = store.list_audit(&q).await.expect("list audit");
            entries.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, None).await, ["e3", "e2", "e1"]);
    assert_eq!(list(Some("on"), None).await, ["e3", "e1"]);
    assert_eq!(list(None, Some((300, "e3"))).await, ["e2", "e1"]);
    store.close().await;
}

#[tokio::test]
async fn counts_enabled_pages_and_audit_lists_walk_an_index_in_order() {
    let dir = temp_dir();
    let path = dir.path().join("traitor.db");
    SqliteStore::open(&path).expect("open").close().await;
    let conn = Connection::open(&path).expect("open raw");
    let plan = |sql: &str| -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .expect("plan rows");
        rows.map(|r| r.expect("plan row"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let enabled_count = plan("SELECT COUNT(*) FROM jobs WHERE enabled = 1");
    assert!(enabled_count.contains("jobs_enabled"), "{enabled_count}");
    let enabled_page =
        plan("SELECT id, version FROM jobs WHERE id > 'x' AND enabled = 1 ORDER BY id LIMIT 5");
    assert!(enabled_page.contains("jobs_enabled"), "{enabled_page}");
    for sql in [
        "SELECT id FROM audit ORDER BY at_ms DESC, id DESC LIMIT 5",
        "SELECT id FROM audit WHERE (at_ms, id) < (5, 'x') ORDER BY at_ms DESC, id DESC LIMIT 5",
        "SELECT id FROM audit WHERE target = 'j' ORDER BY at_ms DESC, id DESC LIMIT 5",
    ] {
        let p = plan(sql);
        assert!(!p.contains("TEMP B-TREE"), "{sql} sorts: {p}");
    }
}
