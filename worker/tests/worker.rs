//! The worker, tested from the supervisor's side: in memory over a duplex stream
//! (`serve` without the sandbox), and as the real binary (fd 3, seccomp).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{
    ConsoleLevel, ConsoleLine, HostCall, HostResponse, HttpRequest, HttpResponse, JobContext,
    Limits, Outcome, PROTOCOL_VERSION, RunEnd, StartRun, SupervisorMessage, WorkerMessage,
    read_frame_async, write_frame_async,
};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::LocalSet;
use worker::{Sandbox, ServeError, serve};

/// The supervisor's end of an in-memory worker.
struct Sup {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    next_run: u64,
    /// Frames read while waiting for something else, by run.
    stash: Vec<WorkerMessage>,
    /// The answers to `kv.*` calls: a plain map; a value over 100 bytes is refused.
    kv: std::collections::HashMap<String, String>,
}

impl Sup {
    /// Spawns `serve` on the current `LocalSet` and completes the handshake.
    async fn start() -> (Sup, tokio::task::JoinHandle<Result<(), ServeError>>) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (tr, tw) = tokio::io::split(theirs);
        let handle = tokio::task::spawn_local(serve(tr, tw, Sandbox::Disabled));
        let (r, w) = tokio::io::split(ours);
        let mut sup = Sup {
            r,
            w,
            next_run: 1,
            stash: Vec::new(),
            kv: Default::default(),
        };
        match sup.recv().await {
            WorkerMessage::Hello {
                protocol_version,
                sandboxed,
                ..
            } => {
                assert_eq!(protocol_version, PROTOCOL_VERSION);
                assert!(!sandboxed);
            }
            other => panic!("expected Hello, got {other:?}"),
        }
        sup.send(&SupervisorMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
        })
        .await;
        (sup, handle)
    }

    async fn send(&mut self, m: &SupervisorMessage) {
        write_frame_async(&mut self.w, m)
            .await
            .expect("write frame");
        self.w.flush().await.expect("flush");
    }

    async fn recv(&mut self) -> WorkerMessage {
        if !self.stash.is_empty() {
            return self.stash.remove(0);
        }
        self.read().await
    }

    async fn read(&mut self) -> WorkerMessage {
        tokio::time::timeout(Duration::from_secs(30), read_frame_async(&mut self.r))
            .await
            .expect("worker answered in time")
            .expect("valid frame")
            .expect("worker still connected")
    }

    async fn start_run(&mut self, script: &str, limits: Limits) -> u64 {
        self.start_run_with_modules(script, limits, Vec::new())
            .await
    }

    async fn start_run_with_modules(
        &mut self,
        script: &str,
        limits: Limits,
        modules: Vec<protocol::SharedModule>,
    ) -> u64 {
        let run_id = self.next_run;
        self.next_run += 1;
        self.send(&SupervisorMessage::StartRun(StartRun {
            run_id,
            script: script.into(),
            limits,
            job: JobContext {
                job_id: "job-1".into(),
                job_name: "nightly".into(),
                scheduled_at_ms: 1_700_000_000_000,
                occurrence_id: "job-1@1700000000000".into(),
                attempt: 2,
                secrets: protocol::SecretValues(vec![("API_TOKEN".into(), "tok-123".into())]),
            },
            modules,
        }))
        .await;
        run_id
    }

    /// Collects a run's frames until its RunEnd, answering host calls with `answer`.
    async fn finish(
        &mut self,
        run_id: u64,
        mut answer: impl FnMut(&HttpRequest) -> Result<HostResponse, String>,
    ) -> Done {
        let mut done = Done::default();
        let belongs = |m: &WorkerMessage| match m {
            WorkerMessage::Started { run_id: r } => *r == run_id,
            WorkerMessage::Console(l) => l.run_id == run_id,
            WorkerMessage::HostCall { run_id: r, .. } => *r == run_id,
            WorkerMessage::RunEnd(e) => e.run_id == run_id,
            WorkerMessage::Hello { .. } => panic!("a second Hello"),
        };
        loop {
            let m = match self.stash.iter().position(belongs) {
                Some(i) => self.stash.remove(i),
                None => {
                    let m = self.read().await;
                    if !belongs(&m) {
                        self.stash.push(m);
                        continue;
                    }
                    m
                }
            };
            match m {
                WorkerMessage::Started { .. } => {
                    assert!(!done.started, "Started twice");
                    assert!(done.lines.is_empty(), "console before Started");
                    done.started = true;
                }
                WorkerMessage::Console(l) => {
                    assert_eq!(l.seq as usize, done.lines.len(), "console seq gap");
                    done.lines.push(l);
                }
                WorkerMessage::HostCall {
                    call_id,
                    call: HostCall::Http(req),
                    ..
                } => {
                    let result = answer(&req);
                    done.requests.push(req);
                    self.send(&SupervisorMessage::HostReply {
                        run_id,
                        call_id,
                        result,
                    })
                    .await;
                }
                WorkerMessage::HostCall {
                    call_id,
                    call: HostCall::Kv(kv),
                    ..
                } => {
                    let result = match kv {
                        protocol::KvCall::Get { key } => Ok(self.kv.get(&key).cloned()),
                        protocol::KvCall::Set { value_json, .. } if value_json.len() > 100 => {
                            Err("the value is too large".to_owned())
                        }
                        protocol::KvCall::Set { key, value_json } => {
                            self.kv.insert(key, value_json);
                            Ok(None)
                        }
                        protocol::KvCall::Delete { key } => {
                            Ok(self.kv.remove(&key).map(|_| "true".to_owned()))
                        }
                    };
                    self.send(&SupervisorMessage::HostReply {
                        run_id,
                        call_id,
                        result: result.map(HostResponse::Kv),
                    })
                    .await;
                }
                WorkerMessage::RunEnd(end) => {
                    done.end = Some(end);
                    return done;
                }
                WorkerMessage::Hello { .. } => unreachable!(),
            }
        }
    }
}

#[derive(Default, Debug)]
struct Done {
    started: bool,
    lines: Vec<ConsoleLine>,
    requests: Vec<HttpRequest>,
    end: Option<RunEnd>,
}

impl Done {
    fn end(&self) -> &RunEnd {
        self.end.as_ref().expect("run ended")
    }
    fn outcome(&self) -> Outcome {
        self.end().outcome
    }
    fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.text.as_str()).collect()
    }
    fn message(&self) -> &str {
        self.end()
            .error
            .as_ref()
            .map(|e| e.message.as_str())
            .unwrap_or("")
    }
}

fn no_network(req: &HttpRequest) -> Result<HostResponse, String> {
    panic!("unexpected host call {req:?}")
}

fn limits() -> Limits {
    Limits {
        wall_ms: 5_000,
        ..Limits::default()
    }
}

/// Runs `script` alone on a fresh worker.
async fn run_alone(script: &str, limits: Limits) -> Done {
    let (mut sup, _h) = Sup::start().await;
    let id = sup.start_run(script, limits).await;
    sup.finish(id, no_network).await
}

fn local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    LocalSet::new().block_on(&rt, f)
}

#[test]
fn console_formatting_follows_node() {
    local(async {
        let script = r#"
            console.log('%s is %d years', 'Bob', 42);
            console.log({ a: 1, b: 'x', c: [1, 2] });
            console.log([1, 2, 3]);
            console.log({}, []);
            console.log(null, undefined, true);
            console.log({ a: { b: { c: { d: 1 } } } });
            const o = { name: 'o' }; o.self = o;
            console.log(o);
            console.log('%o and %O', { a: 1 }, [ 'x' ]);
            console.log(-0, 1n, Symbol('s'), 1.5, NaN);
            console.log(new Map([['a', 1]]), new Set([1, 2]));
            console.log(function foo() {}, () => {}, class Bar {});
            console.log('a', 1, { x: [] });
            console.log('%c styled', 'color: red');
            console.log('100%%', 1);
            console.log('%i|%f|%j', '42.9px', '3.5', { k: [1] });
            console.log('one', 'two');
            console.log(new Error('boom'));
            console.log({ s: "it's" , nested: { arr: [[1, [2, [3]]]] } });
            console.log(Array.from({ length: 30 }, (_, i) => i));
            console.log({ get g() { return 1 }, [Symbol('k')]: 2, 'a-b': 3 });
            console.log(Object.create(null));
            class Point { constructor() { this.x = 1; this.y = 2 } }
            console.log(new Point());
            console.log(Promise.resolve(4), new Date(0));
            console.info('i'); console.warn('w'); console.error('e'); console.debug('d');
        "#;
        let done = run_alone(script, limits()).await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        let t = done.texts();
        assert_eq!(t[0], "Bob is 42 years");
        assert_eq!(t[1], "{ a: 1, b: 'x', c: [ 1, 2 ] }");
        assert_eq!(t[2], "[ 1, 2, 3 ]");
        assert_eq!(t[3], "{} []");
        assert_eq!(t[4], "null undefined true");
        assert_eq!(t[5], "{ a: { b: { c: [Object] } } }");
        assert_eq!(t[6], "<ref *1> { name: 'o', self: [Circular *1] }");
        assert_eq!(t[7], "{ a: 1 } and [ 'x' ]");
        assert_eq!(t[8], "-0 1n Symbol(s) 1.5 NaN");
        assert_eq!(t[9], "Map(1) { 'a' => 1 } Set(2) { 1, 2 }");
        assert_eq!(t[10], "[Function: foo] [Function (anonymous)] [class Bar]");
        assert_eq!(t[11], "a 1 { x: [] }");
        assert_eq!(t[12], " styled");
        assert_eq!(t[13], "100% 1");
        assert_eq!(t[14], "42|3.5|{\"k\":[1]}");
        assert_eq!(t[15], "one two");
        assert!(t[16].starts_with("Error: boom\n    at "), "{}", t[16]);
        assert_eq!(t[17], "{ s: \"it's\", nested: { arr: [ [Array] ] } }");
        assert!(t[18].starts_with("[\n   0,  1,  2,"), "{}", t[18]);
        assert_eq!(t[19], "{ g: [Getter], 'a-b': 3, [Symbol(k)]: 2 }");
        assert_eq!(t[20], "[Object: null prototype] {}");
        assert_eq!(t[21], "Point { x: 1, y: 2 }");
        assert_eq!(t[22], "Promise { 4 } 1970-01-01T00:00:00.000Z");
        let levels: Vec<ConsoleLevel> = done.lines[23..].iter().map(|l| l.level).collect();
        assert_eq!(
            levels,
            [
                ConsoleLevel::Info,
                ConsoleLevel::Warn,
                ConsoleLevel::Error,
                ConsoleLevel::Debug
            ]
        );
        assert!(done.lines.iter().all(|l| l.at_ms > 1_600_000_000_000));
    });
}

#[test]
fn sync_then_microtasks_then_timers() {
    local(async {
        let done = run_alone(
            r#"
            setTimeout(() => console.log('timeout'), 0);
            Promise.resolve().then(() => console.log('micro'));
            queueMicrotask(() => console.log('micro2'));
            console.log('sync');
            setTimeout((a, b) => console.log('args', a, b), 5, 'x', 2);
            setTimeout(() => console.log('t1'), 1);
        "#,
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded);
        assert_eq!(
            done.texts(),
            ["sync", "micro", "micro2", "timeout", "t1", "args x 2"]
        );
    });
}

#[test]
fn intervals_run_until_cleared() {
    local(async {
        let done = run_alone(
            r#"
            let n = 0;
            const t = setInterval(() => { n++; console.log('tick', n); if (n === 3) clearInterval(t); }, 1);
            const never = setTimeout(() => console.log('never'), 10);
            clearTimeout(never);
        "#,
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded);
        assert_eq!(done.texts(), ["tick 1", "tick 2", "tick 3"]);
    });
}

#[test]
fn secrets_global_is_frozen_and_holds_the_grants() {
    local(async {
        let done = run_alone(
            r#"
            console.log(Object.keys(secrets).join(","), secrets.API_TOKEN.length);
            try { secrets.API_TOKEN = "x"; } catch (e) { console.log(e.name); }
            console.log(Object.isFrozen(secrets), secrets.API_TOKEN.length);
        "#,
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(done.texts(), ["API_TOKEN 7", "TypeError", "true 7"]);
    });
}

#[test]
fn kv_calls_go_through_the_supervisor() {
    local(async {
        let done = run_alone(
            r#"
            console.log(await kv.get("n"));
            await kv.set("n", { count: 1, list: [1, "a"] });
            const v = await kv.get("n");
            console.log(v.count, v.list[1]);
            console.log(await kv.delete("n"), await kv.delete("n"));
            try { await kv.set("big", "x".repeat(200)); } catch (e) { console.log(String(e)); }
            try { await kv.set("f", undefined); } catch (e) { console.log(e.name); }
            try { await kv.get(42); } catch (e) { console.log(e.name); }
        "#,
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(
            done.texts(),
            [
                "undefined",
                "1 a",
                "true false",
                "Error: kv: the value is too large",
                "TypeError",
                "TypeError"
            ]
        );
    });
}

#[test]
fn top_level_await_and_job_globals() {
    local(async {
        let done = run_alone(
            r#"
            await new Promise(r => setTimeout(r, 5));
            console.log(job.id, job.name, job.scheduledAt, job.occurrenceId, job.attempt);
            console.log(typeof process, typeof os, typeof std, typeof require, typeof fetch);
        "#,
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(
            done.texts(),
            [
                "job-1 nightly 1700000000000 job-1@1700000000000 2",
                "undefined undefined undefined function function"
            ]
        );
        assert!(done.end().peak_memory_bytes > 0);
    });
}

#[test]
fn errors_fail_the_run_with_message_and_stack() {
    local(async {
        let done = run_alone(
            "function f() { throw new Error('boom') }\nconsole.log('before');\nf();",
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert_eq!(done.message(), "Error: boom");
        let stack = done.end().error.as_ref().and_then(|e| e.stack.clone());
        assert!(stack.is_some_and(|s| s.contains("at f")));
        assert_eq!(done.texts(), ["before"]);

        let done = run_alone("const x = 1; x();", limits()).await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert!(
            done.message().starts_with("TypeError:"),
            "{}",
            done.message()
        );

        let done = run_alone("throw 'a string'", limits()).await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert_eq!(done.message(), "Uncaught 'a string'");

        let done = run_alone("await Promise.reject(new RangeError('nope'))", limits()).await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert_eq!(done.message(), "RangeError: nope");

        let done = run_alone(
            "Promise.reject(new Error('unhandled')); setTimeout(() => console.log('late'), 50);",
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert_eq!(done.message(), "Error: unhandled");
        assert!(done.texts().is_empty());

        let done = run_alone(
            "const p = Promise.reject(new Error('later')); await null; p.catch(() => console.log('caught'));",
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());

        let done = run_alone(
            "setTimeout(() => { throw new Error('in timer') }, 1)",
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert_eq!(done.message(), "Error: in timer");

        let done = run_alone("this is not javascript", limits()).await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert!(
            done.message().starts_with("SyntaxError"),
            "{}",
            done.message()
        );

        let done = run_alone("function r() { r() } r()", limits()).await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert!(
            done.message().starts_with("RangeError"),
            "{}",
            done.message()
        );

        let done = run_alone("await new Promise(() => {})", limits()).await;
        assert_eq!(done.outcome(), Outcome::Failed);
    });
}

#[test]
fn infinite_loops_time_out() {
    local(async {
        let short = Limits {
            wall_ms: 200,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let done = run_alone("for (;;) {}", short).await;
        assert_eq!(done.outcome(), Outcome::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        // Busy the whole time, but the machine may be shared: only demand a real figure.
        assert!(done.end().cpu_time_us > 10_000, "{:?}", done.end());

        let done = run_alone(
            "try { for (;;) {} } finally { console.log('finally') }",
            short,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::TimedOut);

        let done = run_alone("setInterval(() => {}, 0)", short).await;
        assert_eq!(done.outcome(), Outcome::TimedOut);

        let done = run_alone("await new Promise(r => setTimeout(r, 10_000))", short).await;
        assert_eq!(done.outcome(), Outcome::TimedOut);

        // The interrupt handler is only polled between bytecodes: expensive builtins
        // overshoot (the supervisor kills from outside); the run still ends TimedOut.
        let t0 = Instant::now();
        let done = run_alone(
            "const big = Array.from({ length: 20000 }, (_, i) => ({ i, s: 'x'.repeat(20) })); for (;;) JSON.stringify(big);",
            short,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    });
}

#[test]
fn memory_limits_end_runs_out_of_memory() {
    local(async {
        let small = Limits {
            memory_bytes: 16 * 1024 * 1024,
            ..limits()
        };
        let done = run_alone(
            "const a = new ArrayBuffer(64 * 1024 * 1024); console.log(a.byteLength)",
            small,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::OutOfMemory, "{:?}", done.end());
        assert!(done.texts().is_empty());

        let done = run_alone(
            "const a = []; for (;;) a.push({ n: a.length, s: 'x' + a.length });",
            small,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::OutOfMemory, "{:?}", done.end());
        assert!(
            done.end().peak_memory_bytes > 8 * 1024 * 1024,
            "{:?}",
            done.end()
        );

        let done = run_alone(
            "function grow() { const a = []; for (;;) a.push([a.length]); } grow();",
            small,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::OutOfMemory, "{:?}", done.end());

        // The worker survives and the next run is healthy.
        let done = run_alone("console.log('ok')", small).await;
        assert_eq!(done.outcome(), Outcome::Succeeded);
    });
}

#[test]
fn output_floods_end_with_output_limit() {
    local(async {
        let small = Limits {
            output_bytes: 10_000,
            ..limits()
        };
        let done = run_alone("for (;;) console.log('spam spam spam')", small).await;
        assert_eq!(done.outcome(), Outcome::OutputLimit);
        let total: usize = done.lines.iter().map(|l| l.text.len()).sum();
        assert!(total <= 10_000, "{total}");
        assert!(total > 9_000, "{total}");

        let done = run_alone(
            "for (;;) { try { console.log('x'.repeat(1000)) } catch (e) {} }",
            small,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::OutputLimit);

        let done = run_alone("console.log('y'.repeat(1e6))", small).await;
        assert_eq!(done.outcome(), Outcome::OutputLimit);
    });
}

#[test]
fn cancel_ends_a_run_quickly() {
    local(async {
        let (mut sup, _h) = Sup::start().await;
        let id = sup
            .start_run(
                "console.log('waiting'); await new Promise(r => setTimeout(r, 60000));",
                limits(),
            )
            .await;
        match sup.recv().await {
            WorkerMessage::Started { run_id } => assert_eq!(run_id, id),
            other => panic!("{other:?}"),
        }
        match sup.recv().await {
            WorkerMessage::Console(l) => assert_eq!(l.text, "waiting"),
            other => panic!("{other:?}"),
        }
        let t0 = Instant::now();
        sup.send(&SupervisorMessage::Cancel { run_id: id }).await;
        sup.send(&SupervisorMessage::Cancel { run_id: 999 }).await;
        let done = sup.finish(id, no_network).await;
        assert_eq!(done.outcome(), Outcome::Cancelled);
        assert!(t0.elapsed() < Duration::from_secs(1));
    });
}

fn ok_response(body: &str) -> Result<HostResponse, String> {
    Ok(HostResponse::Http(HttpResponse {
        status: 200,
        status_text: "200 OK".into(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Thing".into(), "a".into()),
        ],
        body: body.as_bytes().to_vec(),
    }))
}

#[test]
fn http_get_and_fetch_go_through_the_supervisor() {
    local(async {
        let (mut sup, _h) = Sup::start().await;
        let id = sup
            .start_run(
                r#"
                const http = require('http');
                http.get('http://example.test/a', (r) => {
                    console.log(r.Status, r.StatusCode, r.ResponseText, r.statusCode, r.responseText);
                }, (e) => console.log('unexpected', e));
                http.get('http://down.test/', () => console.log('unexpected'), (e) => {
                    console.log('onErr', e instanceof Error, e.message);
                });
                http.get('http://example.test/no-callbacks');
                const res = await fetch('http://example.test/json', {
                    method: 'post', headers: { 'X-A': '1' }, body: 'payload',
                });
                console.log(res.status, res.statusText, res.ok, res.url, res.headers.get('content-type'),
                            res.headers.has('X-THING'), [...res.headers.entries()].length);
                console.log(JSON.stringify(await res.json()));
                try { await res.text() } catch (e) { console.log(e.name) }
                try { await fetch('http://down.test/') } catch (e) { console.log(String(e)) }
                import('http').then(m => console.log('import http', typeof m.get, typeof m.default.get));
            "#,
                limits(),
            )
            .await;
        let done = sup
            .finish(id, |req| {
                if req.url.contains("down.test") {
                    Err("connection refused".into())
                } else {
                    ok_response("{\"k\":[1,2]}")
                }
            })
            .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        let mut t = done.texts();
        t.sort();
        let mut want = vec![
            "200 OK 200 {\"k\":[1,2]} 200 {\"k\":[1,2]}",
            "onErr true connection refused",
            "200 OK true http://example.test/json application/json true 2",
            "{\"k\":[1,2]}",
            "TypeError",
            "TypeError: fetch failed: connection refused",
            "import http function function",
        ];
        want.sort();
        assert_eq!(t, want);
        let post = done
            .requests
            .iter()
            .find(|r| r.url.ends_with("/json"))
            .expect("the fetch request");
        assert_eq!(post.method, "POST");
        assert_eq!(post.headers, [("X-A".to_string(), "1".to_string())]);
        assert_eq!(post.body.as_deref(), Some(&b"payload"[..]));
        assert_eq!(done.requests.len(), 5);
    });
}

#[test]
fn nothing_can_be_required_or_imported() {
    local(async {
        let done = run_alone(
            r#"
            for (const m of ['fs', 'os', 'child_process', 'net', '/etc/passwd', './x', 'std']) {
                try { require(m); console.log('loaded', m) } catch (e) { console.log(e.message) }
            }
            try { await import('x') } catch (e) { console.log('import:', e.message) }
            try { await import('/etc/passwd') } catch (e) { console.log('import:', e.message) }
        "#,
            limits(),
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(
            done.texts(),
            [
                "Cannot find module 'fs'",
                "Cannot find module 'os'",
                "Cannot find module 'child_process'",
                "Cannot find module 'net'",
                "Cannot find module '/etc/passwd'",
                "Cannot find module './x'",
                "Cannot find module 'std'",
                "import: Cannot find module 'x'",
                "import: Cannot find module '/etc/passwd'",
            ]
        );
        let done = run_alone("import fs from 'fs'; console.log(fs)", limits()).await;
        assert_eq!(done.outcome(), Outcome::Failed);
        assert!(
            done.message().contains("Cannot find module 'fs'"),
            "{}",
            done.message()
        );
    });
}

#[test]
fn runs_are_concurrent_and_isolated() {
    local(async {
        let (mut sup, _h) = Sup::start().await;
        let slow = sup
            .start_run(
                "globalThis.leak = 1; const r = await fetch('http://slow.test/'); console.log('slow', r.status);",
                limits(),
            )
            .await;
        // The slow run's host call arrives; hold the answer.
        let (call_id, started) = loop {
            match sup.recv().await {
                WorkerMessage::HostCall {
                    run_id, call_id, ..
                } => {
                    assert_eq!(run_id, slow);
                    break (call_id, true);
                }
                WorkerMessage::Started { .. } => {}
                other => panic!("{other:?}"),
            }
        };
        assert!(started);
        let fast = sup
            .start_run("console.log('fast', typeof globalThis.leak)", limits())
            .await;
        let done_fast = sup.finish(fast, no_network).await;
        assert_eq!(done_fast.outcome(), Outcome::Succeeded);
        assert_eq!(done_fast.texts(), ["fast undefined"]);
        sup.send(&SupervisorMessage::HostReply {
            run_id: slow,
            call_id,
            result: ok_response(""),
        })
        .await;
        let done_slow = sup.finish(slow, no_network).await;
        assert_eq!(done_slow.outcome(), Outcome::Succeeded);
        assert_eq!(done_slow.texts(), ["slow 200"]);
    });
}

#[test]
fn many_runs_interleave() {
    local(async {
        let (mut sup, _h) = Sup::start().await;
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(
                sup.start_run(
                    &format!(
                        "await new Promise(r => setTimeout(r, {})); console.log({i})",
                        20 - i
                    ),
                    limits(),
                )
                .await,
            );
        }
        let mut got = HashMap::new();
        for id in ids {
            let done = sup.finish(id, no_network).await;
            assert_eq!(done.outcome(), Outcome::Succeeded);
            got.insert(id, done.texts()[0].to_string());
        }
        assert_eq!(got.len(), 20);
    });
}

#[test]
fn a_malformed_frame_ends_serve_with_an_error() {
    local(async {
        let (mut sup, handle) = Sup::start().await;
        sup.w.write_all(&5u32.to_le_bytes()).await.expect("write");
        sup.w.write_all(&[0xff; 5]).await.expect("write");
        sup.w.flush().await.expect("flush");
        let res = tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("serve returned")
            .expect("serve did not panic");
        let err = res.expect_err("a malformed frame is an error");
        assert_eq!(err.exit_code(), 1);
    });
}

#[test]
fn shutdown_and_eof_end_serve_cleanly() {
    local(async {
        let (mut sup, handle) = Sup::start().await;
        sup.send(&SupervisorMessage::Shutdown).await;
        assert!(handle.await.expect("no panic").is_ok());

        let (sup, handle) = Sup::start().await;
        drop(sup);
        assert!(handle.await.expect("no panic").is_ok());
    });
}

#[test]
fn a_wrong_welcome_is_refused() {
    local(async {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (tr, tw) = tokio::io::split(theirs);
        let handle = tokio::task::spawn_local(serve(tr, tw, Sandbox::Disabled));
        let (mut r, mut w) = tokio::io::split(ours);
        let hello: WorkerMessage = read_frame_async(&mut r)
            .await
            .expect("frame")
            .expect("hello");
        assert!(matches!(hello, WorkerMessage::Hello { .. }));
        write_frame_async(
            &mut w,
            &SupervisorMessage::Welcome {
                protocol_version: PROTOCOL_VERSION + 1,
            },
        )
        .await
        .expect("write");
        let err = handle.await.expect("no panic").expect_err("refused");
        assert_eq!(err.exit_code(), 3);
    });
}

/// In-process throughput of trivial runs: `cargo test -p worker --release -- --ignored
/// --nocapture per_run_cost`.
#[test]
#[ignore]
fn per_run_cost() {
    local(async {
        let (mut sup, _h) = Sup::start().await;
        let n = 20_000u64;
        let window = 64u64;
        let t0 = Instant::now();
        let cpu0 = thread_cpu();
        let mut sent = 0u64;
        let mut ended = 0u64;
        while ended < n {
            while sent < n && sent - ended < window {
                sup.start_run("console.log('hi')", limits()).await;
                sent += 1;
            }
            if let WorkerMessage::RunEnd(e) = sup.recv().await {
                assert_eq!(e.outcome, Outcome::Succeeded);
                ended += 1;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = thread_cpu() - cpu0;

        // Baseline: only creating and dropping a runtime + context, as each run does.
        use rquickjs::context::intrinsic::*;
        let base0 = thread_cpu();
        for _ in 0..n {
            let rt = rquickjs::AsyncRuntime::new().expect("runtime");
            let ctx = rquickjs::AsyncContext::custom::<(
                Date,
                Eval,
                RegExpCompiler,
                RegExp,
                Json,
                Proxy,
                MapSet,
                TypedArrays,
                Promise,
                WeakRef,
            )>(&rt)
            .await
            .expect("context");
            drop(ctx);
        }
        let base = thread_cpu() - base0;
        println!(
            "baseline: a bare QuickJS runtime + context costs {:.1} µs CPU",
            base * 1e6 / n as f64
        );
        println!(
            "{n} trivial runs in {secs:.2}s wall: {:.0} runs/s; {:.1} µs CPU per run \
             (worker and the test's supervisor side on one thread)",
            n as f64 / secs,
            cpu * 1e6 / n as f64
        );
    });
}

/// CPU seconds used by the calling thread (the bench runs everything on one thread, so
/// other processes on the machine do not skew it the way wall time does).
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

// ---- the real binary ----

const BIN: &str = env!("CARGO_BIN_EXE_traitor-worker");

/// The worker to spawn: the built binary, or a wrapper (e.g. one running it under
/// `strace -f`) named by `TRAITOR_TEST_WORKER`.
fn worker_bin() -> String {
    std::env::var("TRAITOR_TEST_WORKER").unwrap_or_else(|_| BIN.to_string())
}

#[test]
fn sandbox_selftest_refuses_everything() {
    let out = std::process::Command::new(BIN)
        .arg("--sandbox-selftest")
        .env_clear()
        .output()
        .expect("run the worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for what in ["open /etc/hostname", "socket", "fork", "execve /bin/true"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no line for {what}: {stdout}"));
        assert!(line.ends_with("refused errno=1 (EPERM)"), "{line}");
    }
    assert!(stdout.contains("thread: ok"), "{stdout}");
}

#[test]
fn refuses_to_start_without_a_supervisor() {
    let out = std::process::Command::new(BIN)
        .env_clear()
        .output()
        .expect("run the worker");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("TRAITOR_WORKER_FD", "3")
        .output()
        .expect("run the worker");
    assert_eq!(out.status.code(), Some(2));
}

/// The binary as the supervisor runs it: socket on fd 3, sandboxed, real scripts.
#[test]
fn sandboxed_binary_runs_scripts() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;

    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    let child_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(worker_bin());
    cmd.env_clear()
        .env("TRAITOR_WORKER_FD", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; it only renumbers the inherited socket.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(child_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn the worker");
    drop(theirs);
    ours.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");

    let hello: WorkerMessage = protocol::read_frame(&mut ours)
        .expect("hello")
        .expect("hello");
    match hello {
        WorkerMessage::Hello { sandboxed, pid, .. } => {
            assert!(sandboxed);
            if std::env::var_os("TRAITOR_TEST_WORKER").is_none() {
                assert_eq!(pid, child.id());
            }
        }
        other => panic!("{other:?}"),
    }
    protocol::write_frame(
        &mut ours,
        &SupervisorMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
        },
    )
    .expect("welcome");
    let script = r#"
        console.log('hello', { n: 1 });
        await new Promise(r => setTimeout(r, 5));
        const r = await fetch('http://example.test/');
        console.log(r.status, await r.text());
        try { require('fs') } catch (e) { console.log(e.message) }
        new Date().toString(); new Date().getTimezoneOffset(); Math.random();
    "#;
    protocol::write_frame(
        &mut ours,
        &SupervisorMessage::StartRun(StartRun {
            run_id: 1,
            script: script.into(),
            limits: limits(),
            job: JobContext::default(),
            modules: Vec::new(),
        }),
    )
    .expect("start");
    let mut lines = Vec::new();
    let end = loop {
        let m: WorkerMessage = protocol::read_frame(&mut ours)
            .expect("frame")
            .expect("open");
        match m {
            WorkerMessage::Started { .. } => {}
            WorkerMessage::Console(l) => lines.push(l.text),
            WorkerMessage::HostCall {
                run_id, call_id, ..
            } => protocol::write_frame(
                &mut ours,
                &SupervisorMessage::HostReply {
                    run_id,
                    call_id,
                    result: ok_response("pong"),
                },
            )
            .expect("reply"),
            WorkerMessage::RunEnd(end) => break end,
            WorkerMessage::Hello { .. } => panic!("second hello"),
        }
    };
    assert_eq!(end.outcome, Outcome::Succeeded, "{end:?}");
    assert_eq!(
        lines,
        ["hello { n: 1 }", "200 pong", "Cannot find module 'fs'"]
    );

    // A runaway script is stopped inside the sandbox too.
    protocol::write_frame(
        &mut ours,
        &SupervisorMessage::StartRun(StartRun {
            run_id: 2,
            script: "for (;;) {}".into(),
            limits: Limits {
                wall_ms: 100,
                ..Limits::default()
            },
            job: JobContext::default(),
            modules: Vec::new(),
        }),
    )
    .expect("start");
    let end = loop {
        if let WorkerMessage::RunEnd(end) = protocol::read_frame(&mut ours)
            .expect("frame")
            .expect("open")
        {
            break end;
        }
    };
    assert_eq!(end.outcome, Outcome::TimedOut);

    protocol::write_frame(&mut ours, &SupervisorMessage::Shutdown).expect("shutdown");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn shared(specifier: &str, version: u64, source: &str) -> protocol::SharedModule {
    protocol::SharedModule {
        specifier: specifier.into(),
        version,
        source: source.into(),
    }
}

/// Runs `script` alone on a fresh worker, with these shared modules.
async fn run_with_modules(script: &str, modules: Vec<protocol::SharedModule>) -> Done {
    let (mut sup, _h) = Sup::start().await;
    let id = sup.start_run_with_modules(script, limits(), modules).await;
    sup.finish(id, no_network).await
}

#[test]
fn shared_modules_load_with_require_import_and_dynamic_import() {
    local(async {
        let modules = vec![
            shared(
                "greet",
                3,
                "let calls = 0;\nexports.hello = (who) => `hello ${who} #${++calls}`;\nexports.default = 'ignored';",
            ),
            shared(
                "math",
                1,
                "import { hello } from 'greet';\nexport const twice = (n) => n * 2;\nexport default hello('math');",
            ),
            shared("greet@1", 1, "module.exports = () => 'old greet';"),
        ];
        let done = run_with_modules(
            r#"
            import greet, { hello } from 'greet';
            import mathDefault, { twice } from 'math';
            console.log(hello('a'));
            console.log(require('greet').hello('b'), greet === require('greet'));
            console.log(mathDefault, twice(21));
            const ns = require('math');
            console.log(ns.twice(2), ns.default);
            console.log((await import('math')).twice(5));
            console.log(require('greet@1')());
            console.log(require('greet').version === undefined, typeof module);
        "#,
            modules,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(
            done.texts(),
            [
                "hello a #2",
                "hello b #3 true",
                "hello math #1 42",
                "4 hello math #1",
                "10",
                "old greet",
                "true undefined",
            ],
            "one instance of each module per run, shared by every way of loading it"
        );
    });
}

#[test]
fn a_shared_module_that_throws_fails_the_require_with_its_own_stack() {
    local(async {
        let modules = vec![
            shared(
                "bad",
                1,
                "const x = 1;\nthrow new Error('bad module ' + x);",
            ),
            shared(
                "cycle-a",
                1,
                "exports.a = 1;\nconst b = require('cycle-b');\nexports.sum = () => exports.a + b.b;",
            ),
            shared(
                "cycle-b",
                1,
                "const a = require('cycle-a');\nexports.b = 2;\nexports.sawA = a.a;",
            ),
            shared(
                "awaits",
                1,
                "export const v = await new Promise((r) => setTimeout(() => r(7), 1));",
            ),
            shared("broken", 1, "export const = ;"),
        ];
        let done = run_with_modules(
            r#"
            try { require('bad') } catch (e) { console.log(e.message, e.stack.includes('bad:2')) }
            try { require('bad') } catch (e) { console.log('again:', e.message) }
            const a = require('cycle-a');
            console.log(a.sum(), require('cycle-b').sawA);
            try { require('awaits') } catch (e) { console.log(e.message.includes('awaits at top level')) }
            console.log((await import('awaits')).v);
            try { require('broken') } catch (e) { console.log(e.name) }
            try { require('missing') } catch (e) { console.log(e.code, e.message) }
        "#,
            modules,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(
            done.texts(),
            [
                "bad module 1 true",
                "again: bad module 1",
                "3 1",
                "true",
                "7",
                "SyntaxError",
                "MODULE_NOT_FOUND Cannot find module 'missing'",
            ]
        );
    });
}

#[test]
fn a_script_cannot_replace_the_require_that_modules_use() {
    local(async {
        let modules = vec![
            shared(
                "lib",
                1,
                "module.exports = { value: 42, nested: require('other').n };",
            ),
            shared("other", 1, "exports.n = 1;"),
        ];
        let done = run_with_modules(
            r#"
            globalThis.require = () => 'hijacked';
            try { globalThis.__traitor_require = null } catch (e) { console.log(e.name) }
            const lib = await import('lib');
            console.log(lib.value, lib.nested, lib.default.value);
        "#,
            modules,
        )
        .await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(done.texts(), ["TypeError", "42 1 42"]);
    });
}

#[test]
fn a_run_that_keeps_its_cpu_busy_does_not_hold_up_another_run_on_the_same_worker() {
    local(async {
        let (mut sup, _h) = Sup::start().await;
        let hog = sup
            .start_run(
                "console.log('hogging'); for (;;) {}",
                Limits {
                    wall_ms: 3_000,
                    ..Limits::default()
                },
            )
            .await;
        // Started after the hog is spinning, with a shorter limit than the hog's: it
        // succeeds only if it runs while the hog still spins.
        let polite = sup
            .start_run(
                "await new Promise((r) => setTimeout(r, 50)); console.log('polite done');",
                Limits {
                    wall_ms: 1_000,
                    ..Limits::default()
                },
            )
            .await;
        let done = sup.finish(polite, no_network).await;
        assert_eq!(done.outcome(), Outcome::Succeeded, "{:?}", done.end());
        assert_eq!(done.texts(), ["polite done"]);
        let hog = sup.finish(hog, no_network).await;
        assert_eq!(hog.outcome(), Outcome::TimedOut);
        assert_eq!(hog.texts(), ["hogging"]);
    });
}
