//! The standalone service end to end: the real `traitor` binary on a free port with its
//! own data directory, its real workers, driven over HTTP and WebSocket exactly as a
//! user would (CONTRACT.md §1–3, §7).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tests::server::{Options, Server, now_ms};
use tokio_tungstenite::tungstenite::Message;

fn timing(name: &str, cron: &str, script: &str) -> Value {
    json!({"name": name, "description": "d", "cron": cron, "script": script})
}

/// Sends `head` and then `body_len` bytes of body from a separate task (ignoring write
/// errors: the server may answer and close first) and returns what the server answers.
async fn raw_request_head(port: u16, head: &str, body_len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let head = head.to_owned();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
            sent += chunk.len();
        }
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut chunk)).await;
        match read {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        if String::from_utf8_lossy(&buf).contains('}') {
            break;
        }
    }
    writer.abort();
    String::from_utf8_lossy(&buf).into_owned()
}

async fn job_count(s: &Server) -> usize {
    let (status, v) = s.get("/api/jobList").await;
    assert_eq!(status, 200);
    v.as_array().expect("jobList is a bare array").len()
}

async fn finished_runs(s: &Server, id: &str) -> Vec<Value> {
    s.runs(id)
        .await
        .into_iter()
        .filter(|r| r["outcome"] != "running")
        .collect()
}

#[tokio::test]
async fn create_get_update_script_enable_delete_round_trip() {
    let s = Server::start().await;
    let (status, v) = s
        .post(
            "/api/job?type=TIMING",
            timing("Every Monday 8:00am", "0 0 8 ? * MON", "console.log('hi')"),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let id = v["data"].as_str().unwrap().to_owned();
    assert_eq!(
        v["id"], v["data"],
        "the seed's README says id, its code says data"
    );

    let (status, job) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(status, 200);
    let job = &job["data"];
    assert_eq!(job["jobId"], id.as_str());
    assert_eq!(job["name"], "Every Monday 8:00am");
    assert_eq!(job["execType"], 0);
    assert_eq!(job["cron"], "0 0 8 ? * MON");
    assert_eq!(job["state"], 0, "created jobs are stopped");
    assert_eq!(job["timezone"], "UTC");
    assert!(
        job.get("script").is_none(),
        "GET /api/job never returns the script"
    );
    assert!(
        job["nextExecTime"].is_null(),
        "a stopped job has no next run"
    );
    assert!(job["createdAt"].as_str().unwrap().contains('T'), "RFC 3339");

    let (status, v) = s.get(&format!("/api/script?id={id}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["data"],
        json!({"jobId": id, "script": "console.log('hi')"})
    );

    let (status, _) = s
        .post(
            &format!("/api/script?id={id}"),
            json!({"script": "console.log('v2')"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, v) = s.get(&format!("/api/script?id={id}")).await;
    assert_eq!(v["data"]["script"], "console.log('v2')");

    let (status, v) = s
        .call(
            "PUT",
            &format!("/api/job?id={id}"),
            Some(json!({"name": "renamed", "cron": "*/5 * * * *", "timezone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["name"], "renamed");
    assert_eq!(v["data"]["description"], "d", "absent fields are unchanged");
    assert_eq!(v["data"]["cron"], "*/5 * * * *");
    assert_eq!(v["data"]["timezone"], "Europe/Berlin");

    let (status, _) = s
        .post(&format!("/api/enable?id={id}&enable=true"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["state"], 1);
    let next = v["data"]["nextExecTime"]
        .as_str()
        .expect("a running job has a next run");
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
    assert!(next.timestamp_millis() > now_ms());
    assert_eq!(next.timestamp() % 300, 0, "*/5 minutes");

    // Idempotent.
    let (status, _) = s
        .post(&format!("/api/enable?id={id}&enable=true"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(&format!("/api/enable?id={id}&enable=false"), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["state"], 0);

    let (status, _) = s.call("DELETE", &format!("/api/job?id={id}"), None).await;
    assert_eq!(status, 200);
    let (status, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["code"], "not_found");
    let (status, _) = s.call("DELETE", &format!("/api/job?id={id}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let s = Server::start().await;
    let id = {
        let (_, v) = s
            .post(
                "/api/job?type=timing",
                json!({"jobId": "fixed-id", "name": "a", "cron": "* * * * *"}),
            )
            .await;
        v["data"].as_str().unwrap().to_owned()
    };
    assert_eq!(id, "fixed-id");
    let before = job_count(&s).await;

    let raw = |body: &'static str| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(s.url("/api/job?type=timing"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = raw("{not json").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("malformed_json")),
        "{v}"
    );
    let (status, v) = raw(r#"{"name": 5, "cron": "* * * * *"}"#).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], "name", "{v}");

    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "bad cron",
            "/api/job?type=timing".into(),
            json!({"cron": "61 * * * *"}),
            400,
            "cron",
        ),
        (
            "missing cron",
            "/api/job?type=timing".into(),
            json!({"name": "x"}),
            400,
            "cron",
        ),
        (
            "bad zone",
            "/api/job?type=timing".into(),
            json!({"cron": "* * * * *", "timezone": "Mars/Base"}),
            400,
            "timezone",
        ),
        (
            "bad type",
            "/api/job?type=weekly".into(),
            json!({"cron": "* * * * *"}),
            400,
            "type",
        ),
        (
            "past execAt",
            "/api/job?type=delay".into(),
            json!({"execAt": 1672502400}),
            400,
            "execAt",
        ),
        (
            "execAt too soon",
            "/api/job?type=delay".into(),
            json!({"execAt": (now_ms() + 1000).to_string()}),
            400,
            "execAt",
        ),
        (
            "execAt wrong type",
            "/api/job?type=delay".into(),
            json!({"execAt": "tomorrow"}),
            400,
            "execAt",
        ),
        (
            "bad jobId",
            "/api/job?type=timing".into(),
            json!({"jobId": "a b/c", "cron": "* * * * *"}),
            400,
            "jobId",
        ),
        // The seed's README runs a timing job with only `cron`: the type is inferred
        // when the body is unambiguous, and refused when it is not.
        (
            "run with no way to tell the type",
            "/api/run".into(),
            json!({"name": "x"}),
            400,
            "type",
        ),
        (
            "run with both cron and execAt",
            "/api/run".into(),
            json!({"cron": "* * * * *", "execAt": now_ms() + 60_000}),
            400,
            "type",
        ),
        (
            "expired cron on run",
            "/api/run".into(),
            json!({"execType": 0, "cron": "0 0 0 1 1 ? 2020"}),
            400,
            "cron",
        ),
        (
            "limit out of range",
            "/api/job?type=timing".into(),
            json!({"cron": "* * * * *", "timeLimitMs": 0}),
            400,
            "timeLimitMs",
        ),
        (
            "NUL in a name",
            "/api/job?type=timing".into(),
            json!({"cron": "* * * * *", "name": "a\u{0}b"}),
            400,
            "name",
        ),
        (
            "NUL in a script",
            "/api/job?type=timing".into(),
            json!({"cron": "* * * * *", "script": "x\u{0}"}),
            400,
            "script",
        ),
    ];
    for (what, path, body, want, field) in cases {
        let (status, v) = s.post(&path, body).await;
        assert_eq!(status, want, "{what}: {v}");
        assert_eq!(v["field"], field, "{what}: {v}");
        assert!(!v["error"].as_str().unwrap_or("").is_empty(), "{what}: {v}");
    }

    let (status, v) = s
        .post(
            "/api/job?type=timing",
            json!({"jobId": "fixed-id", "cron": "* * * * *", "name": "dup"}),
        )
        .await;
    assert_eq!((status, v["code"].as_str()), (409, Some("conflict")), "{v}");
    let (_, v) = s.get("/api/job?id=fixed-id").await;
    assert_eq!(v["data"]["name"], "a", "a duplicate changes nothing");

    // A 10 MB body is refused with 413. The server may answer and close while the client
    // is still writing, which an HTTP client reports as a broken pipe instead of the
    // answer, so this speaks raw HTTP and reads while it writes.
    let answer = raw_request_head(
        s.port,
        "POST /api/job?type=timing HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n",
        10 * 1024 * 1024,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    let over = format!("//{}", "x".repeat(1024 * 1024));
    let (status, v) = s
        .post(
            "/api/job?type=timing",
            json!({"cron": "* * * * *", "script": over}),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    let (status, v) = s
        .post(
            &format!("/api/script?id={id}"),
            json!({"script": format!("//{}", "y".repeat(1024 * 1024))}),
        )
        .await;
    assert_eq!(status, 413, "{v}");

    let (status, v) = s
        .post(&format!("/api/enable?id={id}&enable=maybe"), json!({}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["field"], "enable", "{v}");
    let (status, _) = s.post("/api/enable?id=nope&enable=true", json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = s.get("/api/job?id=nope").await;
    assert_eq!(status, 404);
    let (status, v) = s.get("/api/job").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("missing_parameter")),
        "{v}"
    );
    let (status, _) = s
        .call("PUT", "/api/job?id=nope", Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, 404);

    // An update whose merged result is invalid changes nothing.
    let (status, v) = s
        .call(
            "PUT",
            &format!("/api/job?id={id}"),
            Some(json!({"name": "new", "cron": "bogus"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["name"], "a");
    assert_eq!(v["data"]["cron"], "* * * * *");

    assert_eq!(job_count(&s).await, before, "no bad request created a job");
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200, "still healthy");
}

#[tokio::test]
async fn scripts_of_256_kib_and_many_jobs_are_routine() {
    let s = Server::start().await;
    let script = format!(
        "const s = `{}`; console.log(s.length)",
        "z".repeat(256 * 1024)
    );
    let (status, v) = s
        .post(
            "/api/job?type=timing",
            json!({"cron": "@hourly", "script": script}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let id = v["data"].as_str().unwrap();
    let (_, v) = s.get(&format!("/api/script?id={id}")).await;
    assert_eq!(v["data"]["script"].as_str().unwrap().len(), script.len());

    let mut tasks = Vec::new();
    for i in 0..300 {
        let http = s.http.clone();
        let url = s.url("/api/job?type=timing");
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"name": format!("job {i:03}"), "cron": "@daily"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(job_count(&s).await, 301);

    // Paging, filtering, sorting.
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let (status, v) = s
            .get(&format!(
                "/api/jobs?search=job&sort=name&order=asc&offset={offset}&limit=37"
            ))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["data"]["total"], 300);
        let items = v["data"]["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        for it in &items {
            assert!(
                seen.insert(it["name"].as_str().unwrap().to_owned()),
                "no duplicates across pages"
            );
        }
        offset += 37;
    }
    assert_eq!(seen.len(), 300);
    let (_, v) = s.get("/api/jobs?sort=name&order=desc&limit=1").await;
    assert_eq!(v["data"]["items"][0]["name"], "job 299");
    let (_, v) = s.get("/api/jobs?state=running").await;
    assert_eq!(v["data"]["total"], 0);
    let (status, v) = s.get("/api/jobs?limit=5000").await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn an_every_second_job_runs_once_per_second() {
    let s = Server::start().await;
    let id = s
        .run_job(json!({"execType": "0", "cron": "* * * * * *", "script": "console.log('tick', job.scheduledAt)"}))
        .await;
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    let (status, _) = s
        .post(&format!("/api/enable?id={id}&enable=false"), json!({}))
        .await;
    assert_eq!(status, 200);
    let stopped_at = now_ms();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = finished_runs(&s, &id).await;
    let mut scheduled: Vec<i64> = runs
        .iter()
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r["scheduledAt"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    scheduled.sort();
    assert!((3..=5).contains(&scheduled.len()), "{runs:#?}");
    for w in scheduled.windows(2) {
        assert_eq!(
            w[1] - w[0],
            1000,
            "one run per second, none twice: {scheduled:?}"
        );
    }
    for r in &runs {
        assert_eq!(r["outcome"], "succeeded", "{r}");
        assert_eq!(r["trigger"], "schedule");
        let lateness = r["latenessMs"].as_i64().unwrap();
        assert!(lateness >= 0, "never early: {r}");
    }
    assert!(
        scheduled.iter().all(|t| *t <= stopped_at),
        "nothing after the stop answered"
    );

    // Each run kept its console output.
    let run_id = runs[0]["runId"].as_str().unwrap();
    let (status, v) = s.get(&format!("/api/job/run?id={run_id}")).await;
    assert_eq!(status, 200, "{v}");
    let text = v["data"]["log"][0]["text"].as_str().unwrap();
    let sched = chrono::DateTime::parse_from_rfc3339(v["data"]["scheduledAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        text,
        format!("tick {sched}"),
        "job.scheduledAt is the occurrence"
    );

    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert!(v["data"]["lastExecTime"].is_string(), "{v}");
    assert_eq!(v["data"]["lastOutcome"], "succeeded");
}

#[tokio::test]
async fn a_delay_job_runs_once_at_its_instant_then_reads_stopped() {
    let s = Server::start().await;
    let at = now_ms() + 5_500;
    let id = s
        .run_job(json!({"execType": 1, "execAt": at.to_string(), "script": "console.log('once')"}))
        .await;
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["state"], 1);
    assert_eq!(v["data"]["execAt"], at);
    let runs = s
        .eventually(Duration::from_secs(15), "the delay run", || async {
            let r = finished_runs(&s, &id).await;
            (!r.is_empty()).then_some(r)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let runs_after = finished_runs(&s, &id).await;
    assert_eq!(runs_after.len(), 1, "exactly once: {runs_after:#?}");
    let r = &runs[0];
    assert_eq!(r["outcome"], "succeeded");
    let scheduled = chrono::DateTime::parse_from_rfc3339(r["scheduledAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert_eq!(scheduled, at);
    assert!(r["latenessMs"].as_i64().unwrap() >= 0);
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(
        v["data"]["state"], 0,
        "a delay job reads stopped after it ran"
    );
    assert!(v["data"]["nextExecTime"].is_null());
}

#[tokio::test]
async fn an_acknowledged_create_survives_kill_9_and_resumes() {
    let mut s = Server::start().await;
    let id = s
        .run_job(json!({"jobId": "survivor", "execType": 0, "cron": "* * * * * *", "script": "console.log('alive')"}))
        .await;
    s.kill9();
    s.spawn().await;
    let (status, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["state"], 1);
    let restarted = now_ms();
    s.eventually(
        Duration::from_secs(10),
        "a run after the restart",
        || async {
            let runs = finished_runs(&s, &id).await;
            runs.iter()
                .any(|r| {
                    let t =
                        chrono::DateTime::parse_from_rfc3339(r["scheduledAt"].as_str().unwrap())
                            .unwrap()
                            .timestamp_millis();
                    t >= restarted && r["outcome"] == "succeeded"
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn occurrences_missed_while_down_are_recorded_and_the_latest_runs_once() {
    let mut s = Server::start().await;
    let id = s
        .run_job(
            json!({"execType": 0, "cron": "@every 2s", "script": "console.log(job.scheduledAt)"}),
        )
        .await;
    s.eventually(Duration::from_secs(10), "a first run", || async {
        (!finished_runs(&s, &id).await.is_empty()).then_some(())
    })
    .await;
    s.kill9();
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    s.spawn().await;
    s.eventually(Duration::from_secs(10), "the catch-up run", || async {
        let runs = finished_runs(&s, &id).await;
        let missed = runs.iter().filter(|r| r["outcome"] == "missed").count();
        let misfire = runs.iter().filter(|r| r["trigger"] == "misfire").count();
        (missed >= 1 && misfire == 1).then_some(())
    })
    .await;
    let runs = finished_runs(&s, &id).await;
    let mut instants: Vec<i64> = runs
        .iter()
        .map(|r| {
            chrono::DateTime::parse_from_rfc3339(r["scheduledAt"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    let n = instants.len();
    instants.sort();
    instants.dedup();
    assert_eq!(
        instants.len(),
        n,
        "every occurrence has exactly one record: {runs:#?}"
    );
}

#[tokio::test]
async fn two_thousand_jobs_come_back_after_a_restart() {
    let mut s = Server::start().await;
    let mut tasks = Vec::new();
    for i in 0..2_000 {
        let http = s.http.clone();
        let url = s.url("/api/run?type=timing");
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"name": format!("j{i}"), "cron": "0 0 * * * *"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let status = s.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status}\n{}", s.log());
    s.spawn().await;
    let (_, v) = s.get("/healthz").await;
    assert_eq!(v["data"]["jobsScheduled"], 2_000, "{v}");
    assert_eq!(job_count(&s).await, 2_000);
}

#[tokio::test]
async fn the_debug_socket_streams_console_lines_then_closes_normally() {
    let s = Server::start().await;
    let (_, v) = s
        .post(
            "/api/job?type=timing",
            json!({"cron": "@daily", "script": "console.log('hello world'); await new Promise(r => setTimeout(r, 50)); console.warn('second', {a: 1}); throw new Error('boom')"}),
        )
        .await;
    let id = v["data"].as_str().unwrap().to_owned();

    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url(&format!("/api/debug?id={id}")))
        .await
        .expect("connect");
    let mut texts = Vec::new();
    let mut close = None;
    while let Some(msg) = ws.next().await {
        match msg.expect("frame") {
            Message::Text(t) => texts.push(t.to_string()),
            Message::Close(c) => {
                close = c;
                break;
            }
            _ => {}
        }
    }
    assert_eq!(texts[0], "hello world");
    assert_eq!(texts[1], "second { a: 1 }");
    assert!(texts[2].contains("boom"), "{texts:?}");
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert_eq!(u16::from(close.expect("a close frame").code), 1000);

    // The JSON format, with an unsaved draft.
    let (mut ws, _) = tokio_tungstenite::connect_async(
        s.ws_url(&format!("/api/debug?id={id}&format=json&draft=1")),
    )
    .await
    .expect("connect");
    futures_util::SinkExt::send(
        &mut ws,
        Message::Text(
            json!({"script": "console.error('draft')"})
                .to_string()
                .into(),
        ),
    )
    .await
    .unwrap();
    let mut events = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            events.push(serde_json::from_str::<Value>(&t).unwrap());
        }
    }
    assert_eq!(events[0]["type"], "log");
    assert_eq!(events[0]["level"], "error");
    assert_eq!(events[0]["text"], "draft");
    assert_eq!(events[1]["type"], "end");
    assert_eq!(events[1]["outcome"], "succeeded");

    // Debug runs change neither state nor history.
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["state"], 0);
    assert!(v["data"]["lastExecTime"].is_null());
    assert!(s.runs(&id).await.is_empty());
}

#[tokio::test]
async fn run_now_records_a_manual_run() {
    let s = Server::start().await;
    let (_, v) = s
        .post(
            "/api/job?type=timing",
            json!({"cron": "@yearly", "script": "console.log('manual')"}),
        )
        .await;
    let id = v["data"].as_str().unwrap().to_owned();
    let (status, v) = s
        .post(&format!("/api/job/trigger?id={id}"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let run_id = v["data"].as_str().unwrap().to_owned();
    let detail = s
        .eventually(Duration::from_secs(10), "the manual run", || async {
            let (st, v) = s.get(&format!("/api/job/run?id={run_id}")).await;
            (st == 200 && v["data"]["outcome"] == "succeeded").then_some(v)
        })
        .await;
    assert_eq!(detail["data"]["trigger"], "manual");
    assert_eq!(detail["data"]["log"][0]["text"], "manual");
    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["state"], 0, "run now does not start the schedule");
}

#[tokio::test]
async fn cron_preview_speaks_the_servers_dialect() {
    let s = Server::start().await;
    let (status, v) = s
        .get("/api/cron/preview?cron=0%200%208%20%3F%20*%20MON&timezone=Asia/Shanghai&count=3&after=2026-11-24T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"],
        json!([
            "2026-11-30T00:00:00Z",
            "2026-12-07T00:00:00Z",
            "2026-12-14T00:00:00Z"
        ])
    );
    let (status, v) = s.get("/api/cron/preview?cron=nope").await;
    assert_eq!(status, 400);
    assert_eq!(v["field"], "cron");
}

#[tokio::test]
async fn the_seed_flags_parse_and_the_openapi_document_is_served() {
    let s = Server::start_with(Options {
        args: vec!["-m".into(), "std".into(), "-ip".into(), "127.0.0.1".into()],
        ..Default::default()
    })
    .await;
    let (status, v) = s.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(v["paths"]["/api/job"].is_object(), "{v}");
    assert!(v["paths"]["/api/jobList"].is_object());
}

#[tokio::test]
async fn an_auth_token_guards_the_api() {
    let s = Server::start_with(Options {
        envs: vec![("TRAITOR_AUTH_TOKEN".into(), "s3cret".into())],
        ..Default::default()
    })
    .await;
    let (status, v) = s.get("/api/jobList").await;
    assert_eq!(status, 401, "{v}");
    let r = s
        .http
        .get(s.url("/api/jobList"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_second_service_on_the_same_data_dir_refuses_to_start() {
    let s = Server::start().await;
    let out = std::process::Command::new(tests::traitor_bin())
        .arg("-p")
        .arg(tests::free_port().to_string())
        .arg("--data-dir")
        .arg(s.data_dir())
        .env_remove("TRAITOR_AUTH_TOKEN")
        .output()
        .expect("run a second traitor");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another traitor is using the data directory"),
        "{stderr}"
    );
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200, "the first one carries on");
}
