//! Operations end to end (issue 7, parts 4 and 6): the egress policy on scripts' HTTP
//! requests, `/metrics` read by a real Prometheus text-format parser, `/readyz` in both
//! states, and JSON logs.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tests::cluster::{ClusterLogs, Database, NodeSpec, RedisServer, eventually, serial};
use tests::server::{Options, Server};
use tests::{Canned, HttpFixture};

fn opts(args: &[&str]) -> Options {
    Options {
        args: args.iter().map(|s| s.to_string()).collect(),
        envs: vec![],
    }
}

fn log_texts(run: &Value) -> Vec<String> {
    run["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn scrape(s: &Server) -> prometheus_parse::Scrape {
    let resp = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("a valid Prometheus text exposition")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "one {name} {labels:?}: {found:?}");
    match &found[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
        other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test]
async fn denied_hosts_fail_in_the_script_and_allowed_ones_still_work() {
    // The fixture listens on 127.0.0.2; `localhost` (127.0.0.1, ::1) is denied by
    // address, so only the resolved-address check can refuse it.
    let fx = HttpFixture::start_on(
        [127, 0, 0, 2],
        &[(
            "/ok",
            Canned {
                status: "200 OK",
                content_type: "text/plain",
                body: b"fine".to_vec(),
            },
        )],
    );
    let port = fx.base.rsplit(':').next().unwrap().to_owned();
    let s = Server::start_with(opts(&["--egress-deny", "127.0.0.1,::1"])).await;
    let script = format!(
        "for (const url of ['http://169.254.169.254/latest/meta-data', \
                            'http://metadata.google.internal/computeMetadata/v1/', \
                            'http://localhost:{port}/ok', '{ok}']) {{ \
           try {{ const r = await fetch(url); console.log('ok', r.status, await r.text()); }} \
           catch (e) {{ console.log(String(e.message || e)); }} \
         }} \
         await new Promise((resolve) => require('http').get('http://169.254.169.254/', \
           () => {{ console.log('http.get reached it'); resolve(); }}, \
           (err) => {{ console.log('http.get', String(err)); resolve(); }}));",
        ok = fx.url("/ok")
    );
    let id = s.create_script_job(&script).await;
    let run = s.run_now(&id).await;
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let lines = log_texts(&run);
    // `fetch` rejects with "fetch failed: " and the supervisor's reason.
    assert_eq!(
        lines[0], "fetch failed: egress denied: 169.254.169.254 is a cloud metadata address",
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "fetch failed: egress denied: metadata.google.internal is a cloud metadata address"
    );
    assert!(
        lines[2].starts_with("fetch failed: egress denied: localhost resolves to ")
            && lines[2].contains("which matches --egress-deny"),
        "{lines:?}"
    );
    assert_eq!(lines[3], "ok 200 fine");
    assert!(
        lines[4].starts_with("http.get") && lines[4].contains("egress denied: 169.254.169.254"),
        "{lines:?}"
    );
    assert_eq!(fx.hits(), 1, "only the allowed request reached the fixture");

    // Counted per job, allowed and denied.
    let m = scrape(&s).await;
    let job = [("job_id", id.as_str())];
    let per_job = |decision| {
        let mut l = job.to_vec();
        l.push(("decision", decision));
        value(&m, "traitor_egress_job_requests_total", &l)
    };
    assert_eq!(per_job("allowed"), 1.0);
    assert_eq!(per_job("denied"), 4.0);
    assert_eq!(
        value(
            &m,
            "traitor_egress_requests_total",
            &[("decision", "denied")]
        ),
        4.0
    );

    // A deleted job's counts leave /metrics; the totals keep them.
    let (status, v) = s.call("DELETE", &format!("/api/job?id={id}"), None).await;
    assert_eq!(status, 200, "{v}");
    let m = scrape(&s).await;
    assert!(
        !m.samples
            .iter()
            .any(|x| x.labels.get("job_id") == Some(id.as_str())),
        "the deleted job still has samples"
    );
    assert_eq!(
        value(
            &m,
            "traitor_egress_requests_total",
            &[("decision", "denied")]
        ),
        4.0
    );
}

#[tokio::test]
async fn default_deny_refuses_loopback_unless_allowed() {
    let fx = HttpFixture::start(&[(
        "/ok",
        Canned {
            status: "200 OK",
            content_type: "text/plain",
            body: b"fine".to_vec(),
        },
    )]);
    let s = Server::start_with(opts(&[
        "--egress-default",
        "deny",
        "--egress-allow",
        "127.0.0.1/32",
    ]))
    .await;
    let script = format!(
        "for (const url of ['{ok}', 'http://127.0.0.3:9/', 'http://localhost:{port}/ok']) {{ \
           try {{ const r = await fetch(url); console.log('ok', r.status); }} \
           catch (e) {{ console.log(String(e.message || e)); }} \
         }}",
        ok = fx.url("/ok"),
        port = fx.base.rsplit(':').next().unwrap(),
    );
    let id = s.create_script_job(&script).await;
    let lines = log_texts(&s.run_now(&id).await);
    assert_eq!(lines[0], "ok 200");
    assert_eq!(
        lines[1],
        "fetch failed: egress denied: 127.0.0.3 is not in --egress-allow (and --egress-default is deny)"
    );
    // `localhost` is 127.0.0.1 and ::1: only the allowed address is connected to.
    assert_eq!(lines[2], "ok 200", "{lines:?}");
}

#[tokio::test]
async fn metrics_count_runs_by_outcome_and_parse_as_prometheus_text() {
    let s = Server::start().await;
    let good = s.create_script_job("console.log('fine')").await;
    let bad = s.create_script_job("throw new Error('no')").await;
    for _ in 0..3 {
        assert_eq!(s.run_now(&good).await["outcome"], "succeeded");
    }
    for _ in 0..2 {
        assert_eq!(s.run_now(&bad).await["outcome"], "failed");
    }
    let m = scrape(&s).await;
    let outcome = |o| value(&m, "traitor_runs_total", &[("outcome", o)]);
    assert_eq!(outcome("succeeded"), 3.0);
    assert_eq!(outcome("failed"), 2.0);
    assert_eq!(outcome("timed_out"), 0.0);
    assert_eq!(value(&m, "traitor_fire_lateness_seconds", &[]), 5.0);
    assert_eq!(value(&m, "traitor_workers_configured", &[]), 2.0);
    assert_eq!(value(&m, "traitor_workers_alive", &[]), 2.0);
    assert_eq!(value(&m, "traitor_runs_queued", &[]), 0.0);
    assert_eq!(value(&m, "traitor_worker_restarts_total", &[]), 0.0);
    let store = |op| value(&m, "traitor_store_call_duration_seconds", &[("op", op)]);
    assert_eq!(store("create_job"), 2.0);
    assert!(store("record_runs") >= 1.0);
    assert!(
        !m.samples
            .iter()
            .any(|s| s.metric.starts_with("traitor_cluster")),
        "no cluster figures in standalone mode"
    );
    let info: HashMap<_, _> = m
        .samples
        .iter()
        .filter(|s| s.metric == "traitor_info")
        .flat_map(|s| s.labels.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    assert_eq!(info.get("mode").map(String::as_str), Some("std"));

    let (status, v) = s.get("/readyz").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["ready"], true);
    let names: Vec<_> = v["data"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["store", "scheduler", "workers"]);
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let s = Server::start_with(opts(&["--log-format", "json"])).await;
    let log = s.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    let listening = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("HTTP API listening"))
        })
        .expect("the listening line");
    assert!(
        listening["addr"].is_string(),
        "fields are top-level: {listening}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_cluster_while_redis_is_away() {
    let _serial = serial().await;
    let mut redis = RedisServer::start();
    let db = Database::create();
    let logs = ClusterLogs::default();
    logs.add("redis", &redis.log_path);
    let node = NodeSpec {
        redis_url: redis.url(),
        store_url: db.url.clone(),
        cluster: "ready".into(),
        node_name: "node-r".into(),
    }
    .start()
    .await;
    logs.add("node-r", &node.log_path);
    let ready = eventually(Duration::from_secs(10), "/readyz 200", || async {
        let (status, v) = node.get("/readyz").await;
        (status == 200).then_some(v)
    })
    .await;
    assert_eq!(ready["data"]["checks"][3]["name"], "cluster", "{ready}");
    let m = scrape(&node).await;
    assert_eq!(value(&m, "traitor_cluster_nodes", &[]), 1.0);
    assert_eq!(value(&m, "traitor_cluster_healthy", &[]), 1.0);

    redis.kill();
    let v = eventually(Duration::from_secs(5), "/readyz 503", || async {
        let (status, v) = node.get("/readyz").await;
        (status == 503).then_some(v)
    })
    .await;
    assert_eq!(v["data"]["ready"], false);
    assert_eq!(v["data"]["notReady"], json!(["cluster"]), "{v}");
    // Liveness is not readiness: the process still answers, and says why.
    let (status, _) = node.get("/api/jobList").await;
    assert_eq!(status, 200);

    redis.spawn();
    eventually(Duration::from_secs(10), "/readyz 200 again", || async {
        let (status, _) = node.get("/readyz").await;
        (status == 200).then_some(())
    })
    .await;
}
