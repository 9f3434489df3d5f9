//! Pool behaviour through the `Pool` API with real `traitor-worker` processes: many
//! concurrent runs, workers killed from outside, the time limit enforced by killing a
//! worker whose script overshoots its interrupt, cancel, shutdown. Fake workers (shell
//! scripts writing frames to fd 3) play the faults a real worker cannot: a wrong
//! protocol version, malformed frames, a worker that keeps dying.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{Outcome, PROTOCOL_VERSION};
use supervisor::hostcall::NoHost;
use supervisor::pool::{Pool, PoolConfig, RunEvent, RunHandle, RunResult};
use tests::{FakeWorker, hello_frame, pool_config, request, texts};

async fn start(cfg: PoolConfig) -> Pool {
    Pool::start(cfg, Arc::new(NoHost))
        .await
        .expect("start the pool")
}

/// Waits (at most 10 s) for the run's `Started` event.
async fn started(h: &mut RunHandle) {
    match tokio::time::timeout(Duration::from_secs(10), h.next_event()).await {
        Ok(Some(RunEvent::Started { .. })) => {}
        other => panic!("expected Started, got {other:?}"),
    }
}

/// Waits (at most 10 s) for the run's `Started` event and then its first console line,
/// which must be `text`: the script is then known to be inside its body.
async fn started_and_logged(h: &mut RunHandle, text: &str) {
    started(h).await;
    match tokio::time::timeout(Duration::from_secs(10), h.next_event()).await {
        Ok(Some(RunEvent::Console(l))) => assert_eq!(l.text, text),
        other => panic!("expected the line {text:?}, got {other:?}"),
    }
}

/// Waits (at most `limit`) for the end of the run.
async fn finish(h: RunHandle, limit: Duration) -> (Vec<String>, RunResult) {
    let (lines, r) = tokio::time::timeout(limit, h.finish())
        .await
        .expect("the run did not end in time");
    (texts(&lines), r)
}

fn message(r: &RunResult) -> &str {
    r.error.as_ref().map_or("", |e| e.message.as_str())
}

/// Polls `f` until it is true (at most 10 s).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) with a pid we read from the pool's stats; no memory involved.
    let r = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0, "kill {pid}");
}

const LONG_WAIT: &str = "console.log('waiting'); await new Promise((r) => setTimeout(r, 30000));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_runs_all_succeed_with_their_own_output() {
    let pool = start(pool_config(2)).await;
    let handles: Vec<RunHandle> = (0..2000)
        .map(|i| {
            pool.submit(request(
                &format!("console.log('run {i}'); await null; console.log('done', {i});"),
                30_000,
            ))
        })
        .collect();
    let ids: Vec<u64> = handles.iter().map(|h| h.run_id()).collect();
    let results = futures_util::future::join_all(handles.into_iter().map(|h| h.finish())).await;
    let mut pids = HashSet::new();
    for (i, (lines, r)) in results.iter().enumerate() {
        assert_eq!(r.outcome, Outcome::Succeeded, "run {i}: {r:?}");
        assert_eq!(r.run_id, ids[i]);
        assert_eq!(texts(lines), [format!("run {i}"), format!("done {i}")]);
        assert!(lines.iter().all(|l| l.run_id == ids[i]));
        assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [0, 1]);
        assert!(r.started_at.is_some_and(|s| s <= r.ended_at));
        pids.insert(r.worker_pid.expect("a worker pid"));
    }
    assert_eq!(pids.len(), 2, "both workers should have taken runs");
    let stats = pool.stats();
    assert_eq!(
        (
            stats.runs_in_flight,
            stats.runs_queued,
            stats.restarts_total
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    pool.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_from_outside_crashes_its_runs_and_is_replaced() {
    let pool = start(pool_config(1)).await;
    let mut a = pool.submit(request(LONG_WAIT, 60_000));
    let mut b = pool.submit(request(LONG_WAIT, 60_000));
    // Killed only once both scripts have logged: what a dead worker had sent is kept,
    // what it had not is lost with it.
    started_and_logged(&mut a, "waiting").await;
    started_and_logged(&mut b, "waiting").await;
    let pid = pool.stats().worker_pids[0];
    sigkill(pid);
    for h in [a, b] {
        let (lines, r) = finish(h, Duration::from_secs(5)).await;
        assert_eq!(r.outcome, Outcome::Crashed, "{r:?}");
        assert_eq!(
            message(&r),
            format!("worker {pid} exited: signal 9 (SIGKILL)")
        );
        assert_eq!(r.worker_pid, Some(pid));
        assert!(lines.is_empty(), "nothing after the kill: {lines:?}");
    }
    let (lines, r) = finish(
        pool.submit(request("console.log('after')", 10_000)),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(lines, ["after"]);
    assert_ne!(r.worker_pid, Some(pid));
    let stats = pool.stats();
    assert_eq!(
        (stats.workers_alive, stats.restarts_total),
        (1, 1),
        "{stats:?}"
    );
    pool.shutdown(Duration::from_secs(1)).await;
}

/// `for(;;) JSON.stringify(big)` overshoots QuickJS's interrupt by seconds. Whoever
/// stops it (the worker, or the pool by killing the worker at limit + grace), the run
/// ends `timed_out` on time, an innocent neighbour is either untouched or told why it
/// was lost, and the next run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_stringify_loop_past_its_limit_ends_on_time() {
    let mut cfg = pool_config(1);
    cfg.kill_grace = Duration::from_millis(500);
    let pool = start(cfg).await;
    let pid = pool.stats().worker_pids[0];
    let mut innocent = pool.submit(request(LONG_WAIT, 60_000));
    started(&mut innocent).await;
    let t0 = Instant::now();
    let bomb = pool.submit(request(
        "const big = Array.from({ length: 50000 }, (_, i) => ({ i, s: 'x'.repeat(20) }));\n\
         for (;;) JSON.stringify(big);",
        300,
    ));
    let bomb_id = bomb.run_id();
    let (_, r) = finish(bomb, Duration::from_secs(10)).await;
    let took = t0.elapsed();
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert!(
        message(&r).starts_with("time limit of 300 ms exceeded"),
        "{r:?}"
    );
    // Limit 300 ms + grace 500 ms + one watchdog tick, with slack for a loaded machine.
    assert!(took < Duration::from_millis(1600), "ended after {took:?}");
    assert!(
        took >= Duration::from_millis(290),
        "ended after only {took:?}"
    );

    if !message(&r).contains("was killed") {
        // The worker stopped the loop itself: its neighbour never noticed.
        innocent.canceller().cancel();
        let (_, r) = finish(innocent, Duration::from_secs(5)).await;
        assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    } else {
        let (_, r) = finish(innocent, Duration::from_secs(5)).await;
        assert_eq!(r.outcome, Outcome::Crashed, "{r:?}");
        assert!(
            message(&r).starts_with(&format!(
                "worker {pid} was killed because run {bomb_id} exceeded its time limit"
            )),
            "{r:?}"
        );
    }
    let (lines, r) = finish(
        pool.submit(request("console.log('next')", 10_000)),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (r.outcome, lines),
        (Outcome::Succeeded, vec!["next".to_string()])
    );
    pool.shutdown(Duration::from_secs(1)).await;
}

/// A worker that does not stop a run at all (here a fake that handshakes and then
/// ignores its socket, as a worker stuck in a builtin does) is killed from outside
/// at limit + grace: the run ends `timed_out`, its neighbour `crashed` with the reason,
/// and the worker is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ignores_a_deadline_is_killed_at_limit_plus_grace() {
    let fake = FakeWorker::new(&[hello_frame(PROTOCOL_VERSION)], Duration::ZERO);
    let mut cfg = pool_config(1);
    cfg.worker_bin = fake.bin.clone();
    cfg.kill_grace = Duration::from_millis(500);
    let pool = start(cfg).await;
    let innocent = pool.submit(request("x", 60_000));
    let t0 = Instant::now();
    let stuck = pool.submit(request("x", 300));
    let stuck_id = stuck.run_id();
    let (_, r) = finish(stuck, Duration::from_secs(10)).await;
    let took = t0.elapsed();
    let pid = r.worker_pid.expect("dispatched");
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert_eq!(
        message(&r),
        format!(
            "time limit of 300 ms exceeded; the script did not stop within 500ms, so its \
             worker {pid} was killed"
        )
    );
    assert!(
        took >= Duration::from_millis(800),
        "ended after only {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "ended after {took:?}");
    let (_, r) = finish(innocent, Duration::from_secs(5)).await;
    assert_eq!(r.outcome, Outcome::Crashed, "{r:?}");
    assert_eq!(r.worker_pid, Some(pid));
    assert!(
        message(&r).starts_with(&format!(
            "worker {pid} was killed because run {stuck_id} exceeded its time limit"
        )),
        "{r:?}"
    );
    eventually("the worker is replaced", || {
        let s = pool.stats();
        s.restarts_total == 1 && s.workers_alive == 1
    })
    .await;
    pool.shutdown(Duration::ZERO).await;
}

/// A cancel the worker ignores costs it its life after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ignores_a_cancel_is_killed_after_the_grace() {
    let fake = FakeWorker::new(&[hello_frame(PROTOCOL_VERSION)], Duration::ZERO);
    let mut cfg = pool_config(1);
    cfg.worker_bin = fake.bin.clone();
    cfg.kill_grace = Duration::from_millis(300);
    let pool = start(cfg).await;
    let h = pool.submit(request("x", 60_000));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    h.canceller().cancel();
    let (_, r) = finish(h, Duration::from_secs(5)).await;
    let pid = r.worker_pid.expect("dispatched");
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert_eq!(
        message(&r),
        format!("cancelled; the script did not stop within 300ms, so its worker {pid} was killed")
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    pool.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_speaking_another_protocol_version_is_refused_readably() {
    let fake = FakeWorker::new(&[hello_frame(PROTOCOL_VERSION + 1)], Duration::ZERO);
    let mut cfg = pool_config(1);
    cfg.worker_bin = fake.bin.clone();
    let err = Pool::start(cfg, Arc::new(NoHost))
        .await
        .expect_err("a v2 worker must be refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "worker speaks protocol v{}, this supervisor speaks v{}: rebuild/reinstall so \
             both come from the same release",
            PROTOCOL_VERSION + 1,
            PROTOCOL_VERSION
        )),
        "{msg}"
    );
}

/// A fake worker that says a valid hello, waits, then sends `bad`.
fn misbehaving(bad: Vec<u8>) -> FakeWorker {
    FakeWorker::new(
        &[hello_frame(PROTOCOL_VERSION), bad],
        Duration::from_millis(300),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_kills_the_worker_and_crashes_its_runs() {
    let cases = [
        // A 5-byte body that is no message.
        (
            vec![5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff],
            "sent a malformed frame (malformed frame: ",
        ),
        // A length far over the maximum.
        (
            vec![0xff, 0xff, 0xff, 0xff],
            "sent a malformed frame (a frame of 4294967295 bytes, over the maximum",
        ),
        // A second hello is a protocol violation.
        (
            hello_frame(PROTOCOL_VERSION),
            "sent a malformed frame (a second hello)",
        ),
    ];
    for (bad, expected) in cases {
        let fake = misbehaving(bad);
        let mut cfg = pool_config(1);
        cfg.worker_bin = fake.bin.clone();
        let pool = start(cfg).await;
        let (lines, r) = finish(
            pool.submit(request("console.log('x')", 60_000)),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Crashed, "{r:?}");
        assert!(lines.is_empty());
        // On a loaded machine the first incarnation may misbehave before the run is
        // dispatched; then the run meets the next one.
        let pid = r.worker_pid.expect("the run reached a worker");
        let msg = message(&r);
        assert!(
            msg.starts_with(&format!("worker {pid} ")) && msg.contains(expected),
            "{msg:?} should contain {expected:?}"
        );
        assert!(msg.ends_with("and was killed"), "{msg}");
        eventually("the worker is replaced", || {
            pool.stats().restarts_total >= 1
        })
        .await;
        pool.shutdown(Duration::ZERO).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_keeps_dying_is_restarted_with_backoff() {
    let fake = FakeWorker::with_tail(
        &[hello_frame(PROTOCOL_VERSION)],
        Duration::ZERO,
        "/bin/sleep 0.05; exit 3",
    );
    let mut cfg = pool_config(1);
    cfg.worker_bin = fake.bin.clone();
    let pool = start(cfg).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Immediate, then 100, 200, 400 ms …: a handful in a second, not hundreds.
    let restarts = pool.stats().restarts_total;
    assert!(
        (2..=6).contains(&restarts),
        "{restarts} restarts in one second"
    );
    let h = pool.submit(request("console.log('x')", 60_000));
    let (_, r) = finish(h, Duration::from_secs(5)).await;
    assert_eq!(r.outcome, Outcome::Crashed, "{r:?}");
    assert!(
        message(&r).ends_with("exited: status 3"),
        "{:?}",
        message(&r)
    );
    pool.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_and_a_queued_run() {
    let mut cfg = pool_config(1);
    cfg.max_runs_per_worker = 1;
    let pool = start(cfg).await;
    let mut running = pool.submit(request(LONG_WAIT, 60_000));
    let queued = pool.submit(request("console.log('never')", 60_000));
    started_and_logged(&mut running, "waiting").await;
    assert_eq!(pool.stats().runs_queued, 1);

    queued.canceller().cancel();
    let (lines, r) = finish(queued, Duration::from_secs(1)).await;
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert!(lines.is_empty());
    assert_eq!((r.started_at, r.worker_pid), (None, None));

    let t0 = Instant::now();
    running.canceller().cancel();
    let (lines, r) = finish(running, Duration::from_secs(2)).await;
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert!(lines.is_empty(), "nothing after the cancel: {lines:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );

    let (lines, r) = finish(
        pool.submit(request("console.log('still fine')", 10_000)),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        (r.outcome, lines),
        (Outcome::Succeeded, vec!["still fine".to_string()])
    );
    assert_eq!(
        pool.stats().restarts_total,
        0,
        "cancel must not cost the worker"
    );
    pool.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_short_runs_finish_cancels_the_rest_and_refuses_new_ones() {
    let pool = start(pool_config(1)).await;
    let mut short = pool.submit(request(
        "await new Promise((r) => setTimeout(r, 200)); console.log('finished');",
        60_000,
    ));
    let mut long = pool.submit(request(LONG_WAIT, 60_000));
    started(&mut short).await;
    started(&mut long).await;
    let t0 = Instant::now();
    pool.shutdown(Duration::from_millis(800)).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_millis(2500),
        "shutdown took {took:?}"
    );
    let (lines, r) = finish(short, Duration::from_secs(1)).await;
    assert_eq!(
        (r.outcome, lines),
        (Outcome::Succeeded, vec!["finished".to_string()])
    );
    let (lines, r) = finish(long, Duration::from_secs(1)).await;
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert_eq!(lines, ["waiting"]);

    let (_, r) = finish(
        pool.submit(request("console.log('too late')", 10_000)),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert_eq!(r.worker_pid, None);
    let stats = pool.stats();
    assert_eq!(
        (stats.workers_alive, stats.runs_in_flight),
        (0, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_handle_leaves_its_run_going_and_leaks_nothing() {
    let pool = start(pool_config(1)).await;
    for _ in 0..50 {
        drop(pool.submit(request("console.log('nobody listens'.repeat(100))", 10_000)));
    }
    let (lines, r) = finish(
        pool.submit(request("console.log('listened')", 10_000)),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (r.outcome, lines),
        (Outcome::Succeeded, vec!["listened".to_string()])
    );
    eventually("every dropped run ends", || {
        let s = pool.stats();
        s.runs_in_flight == 0 && s.runs_queued == 0
    })
    .await;
    pool.shutdown(Duration::from_secs(1)).await;
}
