//! Native plugins through real sandboxed workers: the example plugin called sync and
//! async and loaded with `require` and `import` (`traitor exec`), a plugin that crashes its worker (the pool API: the run is
//! `crashed`, the next one runs on a replacement), broken plugins refused with a clear
//! error, unsafe permissions, and the sandbox self-test with plugins loaded.

use std::sync::Arc;
use std::time::Duration;

use protocol::Outcome;
use supervisor::hostcall::NoHost;
use supervisor::pool::{Pool, PoolConfig, RunResult};
use tests::plugins::PluginDir;
use tests::{exec_js, pool_config, request, texts, worker_bin};

const FAILED: i32 = 1;
const TIMED_OUT: i32 = 3;

fn exec_with(dir: &PluginDir, script: &str, extra: &[&str]) -> tests::ExecOutput {
    let mut args = vec!["--plugin-dir", dir.path_str()];
    args.extend_from_slice(extra);
    exec_js(script, &args)
}

#[test]
fn the_example_plugin_is_called_sync_and_async() {
    let dir = PluginDir::with_example();
    let script = r#"
const ex = require('example');
console.log(Object.keys(ex), Object.isFrozen(ex), require('example') === ex);
console.log(ex.add({ a: 1, b: 2 }), ex.echo({ x: [1, 'y'] }), ex.echo());
console.log(ex.sha256('abc'));
try { ex.add('x') } catch (e) { console.log(e.message, e.plugin, e.method, e.status, e.detail) }
const p = ex.delay({ ms: 50, value: 'later' });
console.log(p instanceof Promise);
console.log(await p);
const order = [];
await Promise.all([3, 1, 2].map((i) => ex.delay({ ms: 40 * i, value: i }).then((v) => order.push(v))));
console.log(order);
try { await ex.delay({ ms: 'soon' }) } catch (e) { console.log(e.message) }
try { require('nope') } catch (e) { console.log(e.message) }
"#;
    let out = exec_with(&dir, script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "[ 'add', 'crash', 'delay', 'echo', 'sha256' ] true true\n\
         3 { x: [ 1, 'y' ] } null\n\
         ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n\
         example.add: add expects {a: number, b: number} example add 1 { message: 'add expects {a: number, b: number}' }\n\
         true\n\
         later\n\
         [ 1, 2, 3 ]\n\
         example.delay: delay expects {ms: 0..10000, value}\n\
         Cannot find module 'nope'\n"
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn the_example_plugin_can_be_imported_as_well_as_required() {
    let dir = PluginDir::with_example();
    let script = r#"
import ex, { add, delay } from 'example';
const dynamic = await import('example');
console.log(add({ a: 40, b: 2 }), await delay({ ms: 1, value: 'async' }));
console.log(ex === require('example'), dynamic.default === ex, dynamic.sha256 === ex.sha256);
"#;
    let out = exec_with(&dir, script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "42 async\ntrue true true\n");
}

#[test]
fn an_async_call_still_in_flight_holds_the_run_open_until_its_time_limit() {
    let dir = PluginDir::with_example();
    let script = "require('example').delay({ ms: 5000, value: 1 }); console.log('started');";
    let out = exec_with(&dir, script, &["--time-limit-ms", "300"]);
    assert_eq!(out.code, Some(TIMED_OUT), "{out:?}");
    assert_eq!(out.stdout, "started\n");
    assert!(out.elapsed < Duration::from_secs(4), "{out:?}");
}

async fn finish(pool: &Pool, script: &str, wall_ms: u64) -> (Vec<String>, RunResult) {
    let h = pool.submit(request(script, wall_ms));
    let (lines, r) = tokio::time::timeout(Duration::from_secs(20), h.finish())
        .await
        .expect("the run did not end in time");
    (texts(&lines), r)
}

fn plugin_pool(dir: &PluginDir) -> PoolConfig {
    let mut cfg = pool_config(1);
    cfg.plugin_dir = Some(dir.path().to_path_buf());
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_crashes_takes_down_one_worker_which_is_replaced() {
    let dir = PluginDir::with_example();
    let pool = Pool::start(plugin_pool(&dir), Arc::new(NoHost))
        .await
        .expect("start the pool");
    let (lines, first) = finish(
        &pool,
        "console.log(require('example').add({ a: 1, b: 1 }))",
        10_000,
    )
    .await;
    assert_eq!(first.outcome, Outcome::Succeeded, "{first:?}");
    assert_eq!(lines, ["2"]);
    let pid = first.worker_pid.expect("a worker pid");

    // Output sent before the crash arrives (the await lets the worker write it).
    let script = "console.log('before'); await new Promise((r) => setTimeout(r, 50)); \
                  require('example').crash(); console.log('after');";
    let (lines, crashed) = finish(&pool, script, 10_000).await;
    assert_eq!(crashed.outcome, Outcome::Crashed, "{crashed:?}");
    assert_eq!(lines, ["before"]);
    assert_eq!(crashed.worker_pid, Some(pid));
    let message = crashed.error.as_ref().map_or("", |e| e.message.as_str());
    assert_eq!(message, format!("worker {pid} exited: signal 6 (SIGABRT)"));

    let (lines, next) = finish(
        &pool,
        "console.log(await require('example').delay({ ms: 1, value: 'ok' }))",
        10_000,
    )
    .await;
    assert_eq!(next.outcome, Outcome::Succeeded, "{next:?}");
    assert_eq!(lines, ["ok"]);
    assert_ne!(next.worker_pid, Some(pid));
    assert_eq!(pool.stats().restarts_total, 1);
    pool.shutdown(Duration::from_secs(1)).await;
}

/// A run that times out with an async call in flight: the plugin completes it later,
/// into a run that is gone, and the same worker goes on serving runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_after_its_run_ended_is_dropped_harmlessly() {
    let dir = PluginDir::with_example();
    let pool = Pool::start(plugin_pool(&dir), Arc::new(NoHost))
        .await
        .expect("start the pool");
    let (_, r) = finish(
        &pool,
        "await require('example').delay({ ms: 400, value: 1 })",
        100,
    )
    .await;
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (lines, next) = finish(
        &pool,
        "console.log(require('example').echo('still here'))",
        10_000,
    )
    .await;
    assert_eq!(next.outcome, Outcome::Succeeded, "{next:?}");
    assert_eq!(lines, ["still here"]);
    assert_eq!(next.worker_pid, r.worker_pid);
    assert_eq!(pool.stats().restarts_total, 0);
    pool.shutdown(Duration::from_secs(1)).await;
}

const WRONG_ABI: &str = r#"
#include <stdint.h>
uint32_t traitor_plugin_abi_version(void) { return 999; }
const char *traitor_plugin_name(void) { return "badabi"; }
"#;

const NO_METHODS: &str = r#"
#include <stdint.h>
uint32_t traitor_plugin_abi_version(void) { return 1; }
const char *traitor_plugin_name(void) { return "nomethods"; }
"#;

#[test]
fn plugins_with_a_wrong_abi_or_a_missing_symbol_are_refused_with_a_clear_error() {
    let dir = PluginDir::with_example();
    dir.add_c("libbadabi.so", WRONG_ABI);
    dir.add_c("libnomethods.so", NO_METHODS);
    let script = r#"
for (const name of ['badabi', 'nomethods']) {
  try { require(name) } catch (e) { console.log(e.code, e.message) }
}
console.log(require('example').add({ a: 2, b: 3 }));
"#;
    let out = exec_with(&dir, script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "PLUGIN_LOAD_FAILED plugin badabi failed to load: it speaks plugin ABI version 999, \
         this worker speaks version 1\n\
         PLUGIN_LOAD_FAILED plugin nomethods failed to load: missing symbol traitor_plugin_methods\n\
         5\n"
    );
    // The supervisor's log (stderr of `traitor exec`) names the file and the reason.
    let so = dir.path().join("libbadabi.so");
    let logged = format!(
        "ERROR plugin badabi ({}) failed to load: it speaks plugin ABI version 999",
        so.display()
    );
    assert!(out.stderr.contains(&logged), "{}", out.stderr);
}

#[test]
fn a_world_writable_directory_or_a_group_writable_library_is_refused() {
    let dir = PluginDir::with_example();
    dir.chmod(dir.path(), 0o777);
    let out = exec_with(&dir, "require('example')", &[]);
    assert_eq!(out.code, Some(FAILED), "{out:?}");
    let why = format!(
        "plugin example failed to load: the plugin directory {} is writable by everyone \
         (mode 0777); only its owner may write it",
        dir.path().display()
    );
    assert!(out.stderr.contains(&why), "{}", out.stderr);

    dir.chmod(dir.path(), 0o755);
    dir.chmod(&dir.path().join("libexample.so"), 0o775);
    let out = exec_with(&dir, "require('example')", &[]);
    assert_eq!(out.code, Some(FAILED), "{out:?}");
    assert!(
        out.stderr.contains("is writable by its group (mode 0775)"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_sandbox_selftest_passes_with_plugins_loaded() {
    let dir = PluginDir::with_example();
    let out = std::process::Command::new(worker_bin())
        .arg("--sandbox-selftest")
        .env_clear()
        .env("TRAITOR_PLUGIN_DIR", dir.path())
        .output()
        .expect("run the worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("plugin example: loaded\napply: ok\n"),
        "{stdout}"
    );
    for what in ["open /etc/hostname", "socket", "fork", "execve /bin/true"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no line for {what}: {stdout}"));
        assert!(line.ends_with("refused errno=1 (EPERM)"), "{line}");
    }
    assert!(stdout.contains("thread: ok"), "{stdout}");
}
