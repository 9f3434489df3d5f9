//! Script behaviour through `traitor exec` and a real sandboxed worker: console
//! formatting, event-loop ordering, HTTP, errors, every limit, and the sandbox.
//! Expected console output is what Node prints for the same script.

use std::time::Duration;

use tests::{Canned, HttpFixture, exec_js, refused_port};

/// Exit codes of `traitor exec` (see `supervisor::exec`).
const FAILED: i32 = 1;
const USAGE: i32 = 2;
const TIMED_OUT: i32 = 3;
const OUT_OF_MEMORY: i32 = 4;
const OUTPUT_LIMIT: i32 = 5;

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[test]
fn console_log_prints_exactly_its_text() {
    let out = exec_js("console.log('hi')", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "hi\n");
    assert_eq!(out.stderr, "");
}

#[test]
fn console_formats_like_node() {
    let script = r#"
console.log('%s is %d years', 'Bob', 42);
console.log('%o', { a: 1, b: 'two' });
console.log({ a: 1, b: 'x', c: [1, 2, { d: null }] });
console.log([1, 'two', [3, [4]]]);
console.log(null, undefined);
console.log('%d%% done', 50);
console.log('a', 1, true, 1.5);
console.log([]);
console.log({});
console.log('%s', null, 'extra');
console.info('info line');
console.debug('debug line');
console.warn('warn line');
console.error('error line');
"#;
    let out = exec_js(script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "Bob is 42 years\n\
         { a: 1, b: 'two' }\n\
         { a: 1, b: 'x', c: [ 1, 2, { d: null } ] }\n\
         [ 1, 'two', [ 3, [ 4 ] ] ]\n\
         null undefined\n\
         50% done\n\
         a 1 true 1.5\n\
         []\n\
         {}\n\
         null extra\n\
         info line\n\
         debug line\n"
    );
    assert_eq!(out.stderr, "warn line\nerror line\n");
}

#[test]
fn sync_microtask_and_timer_output_come_in_event_loop_order() {
    let script = r#"
setTimeout(() => console.log('timeout 10'), 10);
setTimeout(() => console.log('timeout 0'), 0);
Promise.resolve().then(() => console.log('microtask 1')).then(() => console.log('microtask 2'));
console.log('sync 1');
(async () => { console.log('async start'); await null; console.log('after await'); })();
console.log('sync 2');
"#;
    let out = exec_js(script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "sync 1\nasync start\nsync 2\nmicrotask 1\nafter await\nmicrotask 2\ntimeout 0\ntimeout 10\n"
    );
}

#[test]
fn a_run_waits_for_its_timers_and_cleared_timers_never_fire() {
    let script = r#"
const t = setTimeout(() => console.log('cleared timer fired'), 50);
clearTimeout(t);
setTimeout(() => console.log('late'), 150);
await new Promise((r) => setTimeout(r, 100));
console.log('awaited');
"#;
    let out = exec_js(script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "awaited\nlate\n");
}

#[test]
fn http_get_and_fetch_reach_a_local_server_and_report_refusals() {
    let fx = HttpFixture::start(&[
        (
            "/hello",
            Canned {
                status: "200 OK",
                content_type: "text/plain",
                body: b"hello from the fixture".to_vec(),
            },
        ),
        (
            "/json",
            Canned {
                status: "201 Created",
                content_type: "application/json",
                body: br#"{"n":1,"s":"x"}"#.to_vec(),
            },
        ),
    ]);
    let refused = format!("http://127.0.0.1:{}/", refused_port());
    let script = format!(
        r#"
const http = require('http');
const get = (url) => new Promise((resolve) => http.get(url,
    (res) => {{ console.log('ok', res.StatusCode, res.Status, res.ResponseText); resolve(); }},
    (err) => {{ console.log('onErr called', /refused/i.test(String(err))); resolve(); }}));
await get('{hello}');
await get('{missing}');
await get('{refused}');
http.get('{hello}');
const r = await fetch('{json}');
console.log('fetch', r.status, r.ok, JSON.stringify(await r.json()));
const e = await fetch('{echo}', {{ method: 'POST', body: 'ping' }});
console.log('echo', await e.text());
try {{
    await fetch('{refused}');
    console.log('fetch resolved?');
}} catch (err) {{
    console.log('fetch rejected', /refused/i.test(String(err)));
}}
"#,
        hello = fx.url("/hello"),
        missing = fx.url("/missing"),
        json = fx.url("/json"),
        echo = fx.url("/echo"),
    );
    let out = exec_js(&script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "ok 200 200 OK hello from the fixture\n\
         ok 404 404 Not Found no such path\n\
         onErr called true\n\
         fetch 201 true {\"n\":1,\"s\":\"x\"}\n\
         echo POST ping\n\
         fetch rejected true\n"
    );
    assert!(fx.hits() >= 5, "the fixture saw {} connections", fx.hits());
}

#[test]
fn a_thrown_error_fails_with_its_message_and_stack() {
    let script = r#"
function inner() { throw new Error('boom'); }
function outer() { inner(); }
console.log('before');
outer();
console.log('after');
"#;
    let out = exec_js(script, &[]);
    assert_eq!(out.code, Some(FAILED), "{out:?}");
    assert_eq!(out.stdout, "before\n");
    assert_eq!(
        first_line(&out.stderr),
        "error: failed: Error: boom",
        "{out:?}"
    );
    let stack: Vec<&str> = out.stderr.lines().skip(1).collect();
    let at_inner = stack.iter().position(|l| l.contains("inner"));
    let at_outer = stack.iter().position(|l| l.contains("outer"));
    assert!(
        matches!((at_inner, at_outer), (Some(i), Some(o)) if i < o),
        "the stack should show inner above outer: {out:?}"
    );
}

#[test]
fn a_rejected_promise_fails_the_run() {
    let out = exec_js("await Promise.reject(new TypeError('nope'));", &[]);
    assert_eq!(out.code, Some(FAILED), "{out:?}");
    assert_eq!(first_line(&out.stderr), "error: failed: TypeError: nope");
}

#[test]
fn an_infinite_loop_times_out() {
    let out = exec_js(
        "console.log('spinning'); for (;;) {}",
        &["--time-limit-ms", "300"],
    );
    assert_eq!(out.code, Some(TIMED_OUT), "{out:?}");
    assert_eq!(out.stdout, "spinning\n");
    assert!(
        first_line(&out.stderr).starts_with("error: timed_out: "),
        "{out:?}"
    );
    assert!(
        out.elapsed < Duration::from_secs(5),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn one_huge_allocation_is_out_of_memory() {
    let out = exec_js(
        "const b = new ArrayBuffer(512 * 1024 * 1024); console.log(b.byteLength);",
        &["--memory-limit-mb", "32"],
    );
    assert_eq!(out.code, Some(OUT_OF_MEMORY), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        first_line(&out.stderr).starts_with("error: out_of_memory"),
        "{out:?}"
    );
}

#[test]
fn gradual_growth_is_out_of_memory() {
    let out = exec_js(
        "const a = []; for (;;) a.push({ i: a.length, s: 'x'.repeat(64) + a.length });",
        &["--memory-limit-mb", "32"],
    );
    assert_eq!(out.code, Some(OUT_OF_MEMORY), "{out:?}");
    assert!(
        first_line(&out.stderr).starts_with("error: out_of_memory"),
        "{out:?}"
    );
}

#[test]
fn an_output_flood_hits_the_output_limit() {
    let out = exec_js(
        "for (let i = 0; ; i++) console.log(i + ' ' + 'x'.repeat(1000));",
        &["--output-limit-kb", "64"],
    );
    assert_eq!(out.code, Some(OUTPUT_LIMIT), "{out:?}");
    assert!(
        out.stdout.starts_with("0 xxx"),
        "{:?}",
        &out.stdout[..100.min(out.stdout.len())]
    );
    assert!(
        out.stdout.len() <= 64 * 1024 + 1100,
        "{} bytes printed past a 64 KiB limit",
        out.stdout.len()
    );
    assert!(
        first_line(&out.stderr).starts_with("error: output_limit"),
        "{}",
        first_line(&out.stderr)
    );
}

#[test]
fn the_script_cannot_reach_files_processes_or_sockets() {
    let script = r#"
for (const m of ['fs', '/etc/passwd', 'child_process', 'net', 'os', './x.js', '../../etc/passwd']) {
    try {
        const x = require(m);
        console.log(m, 'LOADED', typeof x);
    } catch (e) {
        console.log(m, 'refused');
    }
}
for (const m of ['os', 'fs', '/etc/passwd']) {
    try {
        await import(m);
        console.log('import', m, 'LOADED');
    } catch (e) {
        console.log('import', m, 'refused');
    }
}
console.log(typeof process, typeof Deno, typeof std, typeof os, typeof WebSocket, typeof XMLHttpRequest);
"#;
    let out = exec_js(script, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "fs refused\n/etc/passwd refused\nchild_process refused\nnet refused\nos refused\n\
         ./x.js refused\n../../etc/passwd refused\n\
         import os refused\nimport fs refused\nimport /etc/passwd refused\n\
         undefined undefined undefined undefined undefined undefined\n"
    );
}

#[test]
fn fetch_cannot_read_local_files() {
    let out = exec_js(
        "try { await fetch('file:///etc/passwd'); console.log('read it'); } \
         catch (e) { console.log('refused'); }",
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "refused\n");
}

#[test]
fn an_unreadable_file_is_a_usage_error() {
    let out = tests::exec_file(std::path::Path::new("/nonexistent/x.js"), &[]);
    assert_eq!(out.code, Some(USAGE), "{out:?}");
    assert_eq!(
        out.stderr,
        "error: cannot read /nonexistent/x.js: No such file or directory (os error 2)\n"
    );
}

#[test]
fn a_missing_worker_binary_is_a_usage_error_that_says_what_is_missing() {
    let out = exec_js(
        "console.log('hi')",
        &["--worker-bin", "/nonexistent/traitor-worker"],
    );
    assert_eq!(out.code, Some(USAGE), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .starts_with("error: spawn worker /nonexistent/traitor-worker: No such file"),
        "{}",
        out.stderr
    );
}

/// Workers cannot outlive their supervisor: SIGKILL `traitor exec` mid-run and its
/// worker dies with it (PR_SET_PDEATHSIG), instead of running on as an orphan.
#[test]
fn the_worker_dies_with_a_killed_supervisor() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wait.js");
    std::fs::write(
        &file,
        "console.log('up'); await new Promise((r) => setTimeout(r, 30000));",
    )
    .expect("write script");
    let mut traitor = std::process::Command::new(tests::traitor_bin())
        .arg("exec")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start traitor exec");
    let mut first = String::new();
    std::io::BufReader::new(traitor.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the first line");
    assert_eq!(first, "up\n");
    let workers: Vec<u32> = tests::children_of(traitor.id())
        .into_iter()
        .filter(|(_, name)| name == "traitor-worker")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(workers.len(), 1, "{workers:?}");
    let worker = workers[0];
    assert!(tests::process_alive(worker));

    traitor.kill().expect("SIGKILL traitor");
    traitor.wait().expect("reap traitor");
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while tests::process_alive(worker) {
        assert!(
            std::time::Instant::now() < until,
            "worker {worker} outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
