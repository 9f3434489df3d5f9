//! Routes, error mapping, auth and static files, one request at a time via `oneshot`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::fake::Fake;
use crate::WebConfig;
use crate::dto::{ExecType, JobSort, JobState};

const LIMIT: usize = 1 << 20;

fn config(token: Option<&str>) -> WebConfig {
    WebConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth_tokens: token
            .map(|t| vec![crate::AuthToken::parse(t).expect("token")])
            .unwrap_or_default(),
        max_body_bytes: LIMIT,
    }
}

struct App {
    router: Router,
    fake: Arc<Fake>,
}

fn app() -> App {
    app_with(None)
}

fn app_with(token: Option<&str>) -> App {
    let fake = Fake::new();
    App {
        router: crate::router(config(token), fake.clone()),
        fake,
    }
}

/// A request from a loopback peer to `127.0.0.1:8080`.
fn req(method: Method, uri: &str) -> axum::http::request::Builder {
    from_peer(method, uri, [127, 0, 0, 1])
}

fn from_peer(method: Method, uri: &str, ip: [u8; 4]) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "127.0.0.1:8080")
        .extension(ConnectInfo(SocketAddr::from((ip, 40000))))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
    text: String,
}

impl App {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("read body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(req(Method::GET, uri).body(Body::empty()).expect("request"))
            .await
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> Reply {
        self.send(
            req(method, uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    async fn post(&self, uri: &str) -> Reply {
        self.send(req(Method::POST, uri).body(Body::empty()).expect("request"))
            .await
    }

    async fn create(&self, name: &str) -> String {
        let r = self
            .json(
                Method::POST,
                "/api/job?type=timing",
                json!({"name": name, "cron": "* * * * *", "script": "console.log(1)"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.json["data"].as_str().expect("an id").to_owned()
    }
}

/// Asserts an error reply's status, code and field.
#[track_caller]
fn assert_error(r: &Reply, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["code"], code, "{}", r.text);
    assert!(
        r.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        r.text
    );
    match field {
        Some(f) => assert_eq!(r.json["field"], f, "{}", r.text),
        None => assert!(r.json.get("field").is_none(), "{}", r.text),
    }
    assert_eq!(
        r.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
}

#[tokio::test]
async fn create_answers_the_id_twice_and_type_is_case_insensitive() {
    let app = app();
    let r = app
        .json(
            Method::POST,
            "/api/job?type=TiMiNg",
            json!({"name": "a", "cron": "0 0 8 ? * MON", "jobId": "mine", "extra": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json, json!({"data": "mine", "id": "mine"}));
    let (ty, _, start) = app.fake.calls().create.clone().expect("create called");
    assert_eq!(ty, Some(ExecType::Timing));
    assert!(!start);

    let r = app
        .json(
            Method::POST,
            "/api/job",
            json!({"name": "b", "execType": "1", "execAt": "1900000000"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (ty, input, _) = app.fake.calls().create.clone().expect("create called");
    assert_eq!(ty, None);
    assert_eq!(input.exec_type, Some(ExecType::Delay));
    assert_eq!(input.exec_at, Some(1_900_000_000_000));
}

#[tokio::test]
async fn create_refuses_bad_or_missing_type_and_duplicates() {
    let app = app();
    let r = app
        .json(Method::POST, "/api/job?type=weekly", json!({"name": "a"}))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("type"),
    );
    let r = app
        .json(Method::POST, "/api/job", json!({"name": "a"}))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "missing_parameter",
        Some("type"),
    );
    let both = json!({"name": "a", "cron": "@daily", "execAt": 1_900_000_000});
    let r = app.json(Method::POST, "/api/job", both).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "missing_parameter",
        Some("type"),
    );
    // A backend validation error keeps its field.
    let r = app
        .json(Method::POST, "/api/job?type=delay", json!({}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("name"));

    app.create_with_id("dup").await;
    let r = app
        .json(
            Method::POST,
            "/api/job?type=delay",
            json!({"name": "x", "jobId": "dup"}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict", None);
}

impl App {
    async fn create_with_id(&self, id: &str) {
        let r = self
            .json(
                Method::POST,
                "/api/job?type=delay",
                json!({"name": "x", "jobId": id}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

#[tokio::test]
async fn get_update_delete() {
    let app = app();
    let id = app.create("first").await;
    let r = app.get(&format!("/api/job?id={id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["data"]["jobId"], id.as_str());
    assert_eq!(r.json["data"]["execType"], 0);
    assert_eq!(r.json["data"]["state"], 0);
    assert!(r.json["data"].get("script").is_none());

    let r = app
        .json(
            Method::PUT,
            &format!("/api/job?id={id}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(r.json, json!({"data": id}));
    assert_eq!(
        app.get(&format!("/api/job?id={id}")).await.json["data"]["name"],
        "renamed"
    );

    let r = app
        .send(
            req(Method::DELETE, &format!("/api/job?id={id}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.json, json!({"data": id}));
    let r = app.get(&format!("/api/job?id={id}")).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    let r = app.get("/api/job").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "missing_parameter", Some("id"));
    let r = app.get("/api/job?id=").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "missing_parameter", Some("id"));
}

#[tokio::test]
async fn job_list_is_a_bare_array() {
    let app = app();
    app.create("a").await;
    app.create("b").await;
    let r = app.get("/api/jobList").await;
    assert_eq!(r.status, StatusCode::OK);
    let items = r.json.as_array().expect("a bare array");
    assert_eq!(items.len(), 2);
}

#[tokio::test]
async fn jobs_page_parses_its_parameters() {
    let app = app();
    app.create("a").await;
    let r = app.get("/api/jobs").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["data"]["total"], 1);
    assert_eq!(r.json["data"]["limit"], 50);
    let q = app.fake.calls().jobs.clone().expect("list called");
    assert_eq!(
        (q.sort, q.descending, q.offset, q.limit),
        (JobSort::CreatedAt, false, 0, 50)
    );

    let r = app
        .get("/api/jobs?search=ab&type=Delay&state=running&sort=nextExecTime&order=DESC&offset=2&limit=1000&unknown=1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let q = app.fake.calls().jobs.clone().expect("list called");
    assert_eq!(q.search.as_deref(), Some("ab"));
    assert_eq!(q.exec_type, Some(ExecType::Delay));
    assert_eq!(q.state, Some(JobState::Running));
    assert_eq!(
        (q.sort, q.descending, q.offset, q.limit),
        (JobSort::NextExecTime, true, 2, 1000)
    );

    let r = app.get("/api/jobs?type=1&state=0").await;
    assert_eq!(r.status, StatusCode::OK);
    let q = app.fake.calls().jobs.clone().expect("list called");
    assert_eq!(
        (q.exec_type, q.state),
        (Some(ExecType::Delay), Some(JobState::Stopped))
    );

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("sort=size", "sort"),
        ("order=up", "order"),
        ("state=2", "state"),
        ("type=2", "type"),
    ] {
        let r = app.get(&format!("/api/jobs?{query}")).await;
        assert_error(
            &r,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some(field),
        );
    }
}

#[tokio::test]
async fn scripts_read_and_write() {
    let app = app();
    let id = app.create("a").await;
    let r = app.get(&format!("/api/script?id={id}")).await;
    assert_eq!(
        r.json,
        json!({"data": {"jobId": id, "script": "console.log(1)"}})
    );
    let r = app
        .json(
            Method::POST,
            &format!("/api/script?id={id}"),
            json!({"script": "x()"}),
        )
        .await;
    assert_eq!(r.json, json!({"data": id}));
    let r = app.get(&format!("/api/script?id={id}")).await;
    assert_eq!(r.json["data"]["script"], "x()");

    let r = app
        .json(Method::POST, &format!("/api/script?id={id}"), json!({}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("script"));
    let r = app
        .json(
            Method::POST,
            &format!("/api/script?id={id}"),
            json!({"script": 5}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("script"));
    let r = app
        .json(Method::POST, "/api/script?id=nope", json!({"script": ""}))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn enable_takes_true_or_false_only() {
    let app = app();
    let id = app.create("a").await;
    let r = app.post(&format!("/api/enable?id={id}&enable=true")).await;
    assert_eq!(r.json, json!({"data": id}));
    assert_eq!(app.fake.calls().enable.clone(), Some((id.clone(), true)));
    let r = app.post(&format!("/api/enable?id={id}&enable=FALSE")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.fake.calls().enable.clone(), Some((id.clone(), false)));

    let r = app.post(&format!("/api/enable?id={id}&enable=maybe")).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("enable"),
    );
    let r = app.post(&format!("/api/enable?id={id}")).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "missing_parameter",
        Some("enable"),
    );
    let r = app.post("/api/enable?id=nope&enable=true").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn run_creates_and_starts() {
    let app = app();
    let r = app
        .json(
            Method::POST,
            "/api/run",
            json!({"name": "r", "execType": 0, "cron": "@hourly"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.json["data"].as_str().expect("id").to_owned();
    assert_eq!(r.json["id"], id.as_str());
    let (_, _, start) = app.fake.calls().create.clone().expect("create called");
    assert!(start);
    assert_eq!(
        app.get(&format!("/api/job?id={id}")).await.json["data"]["state"],
        1
    );
    let r = app
        .json(Method::POST, "/api/run?type=DELAY", json!({"name": "d"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The seed README's timing example: no type anywhere, only a cron.
    let seed = json!({"name": "Every Monday 8:00am", "cron": "0 0 8 ? * MON", "script": "//"});
    let r = app.json(Method::POST, "/api/run", seed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (ty, _, _) = app.fake.calls().create.clone().expect("create called");
    assert_eq!(ty, Some(ExecType::Timing));
    let r = app
        .json(
            Method::POST,
            "/api/run",
            json!({"name": "d", "execAt": "1900000000"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (ty, _, _) = app.fake.calls().create.clone().expect("create called");
    assert_eq!(ty, Some(ExecType::Delay));
}

#[tokio::test]
async fn trigger_and_runs() {
    let app = app();
    let id = app.create("a").await;
    let r = app.post(&format!("/api/job/trigger?id={id}")).await;
    assert_eq!(r.json, json!({"data": format!("run-of-{id}")}));
    let r = app.post("/api/job/trigger?id=nope").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);

    let r = app
        .get(&format!(
            "/api/job/runs?id={id}&outcome=failed&before=2024-01-02T03:04:05Z&limit=7"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["data"]["items"][0]["runId"], "r1");
    assert!(r.json["data"]["nextBefore"].is_null());
    let (job, q) = app.fake.calls().runs.clone().expect("runs called");
    assert_eq!(job, id);
    assert_eq!(q.outcome.as_deref(), Some("failed"));
    assert_eq!(q.before.map(|t| t.timestamp()), Some(1_704_164_645));
    assert_eq!(q.limit, 7);

    let r = app
        .get(&format!("/api/job/runs?id={id}&before=1704164645000"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, q) = app.fake.calls().runs.clone().expect("runs called");
    assert_eq!(q.before.map(|t| t.timestamp()), Some(1_704_164_645));
    assert_eq!(q.limit, 50);

    let r = app
        .get(&format!("/api/job/runs?id={id}&before=tuesday"))
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("before"),
    );

    let r = app.get("/api/job/run?id=r1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["data"]["runId"], "r1");
    assert_eq!(r.json["data"]["log"][0]["text"], "hi");
    assert_eq!(r.json["data"]["logTruncated"], false);
    let r = app.get("/api/job/run?id=r2").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn cron_preview_counts() {
    let app = app();
    let r = app
        .get("/api/cron/preview?cron=*/5%20*%20*%20*%20*&timezone=Europe/Paris&count=3&after=2024-01-01T00:00:00Z")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let times = r.json["data"].as_array().expect("array");
    assert_eq!(times.len(), 3);
    assert!(
        times[0]
            .as_str()
            .is_some_and(|t| t.starts_with("2023-11-14T22:13:20"))
    );
    let (cron, tz, count, after) = app.fake.calls().preview.clone().expect("preview called");
    assert_eq!(cron, "*/5 * * * *");
    assert_eq!(tz.as_deref(), Some("Europe/Paris"));
    assert_eq!(count, 3);
    assert!(after.is_some());

    assert_eq!(
        app.get("/api/cron/preview?cron=@daily").await.json["data"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    let r = app.get("/api/cron/preview?cron=@daily&count=0").await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("count"),
    );
    let r = app.get("/api/cron/preview?cron=@daily&count=101").await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("count"),
    );
    let r = app.get("/api/cron/preview").await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "missing_parameter",
        Some("cron"),
    );
    let r = app.get("/api/cron/preview?cron=nonsense").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("cron"));
}

#[tokio::test]
async fn healthz_is_200_or_503() {
    let app = app();
    let r = app.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["data"]["status"], "ok");
    app.fake.degraded.store(true, Ordering::SeqCst);
    let r = app.get("/healthz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json["data"]["problems"][0], "no live workers");
}

#[tokio::test]
async fn readyz_is_200_or_503_naming_what_is_not_ready() {
    let app = app();
    let r = app.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["data"]["ready"], true);
    assert_eq!(r.json["data"]["notReady"], json!([]));
    app.fake.degraded.store(true, Ordering::SeqCst);
    let r = app.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json["data"]["ready"], false);
    assert_eq!(r.json["data"]["notReady"], json!(["workers"]));
    assert_eq!(
        r.json["data"]["checks"][1]["detail"],
        "no worker process is alive"
    );
}

#[tokio::test]
async fn metrics_are_text_and_need_the_token_when_one_is_set() {
    let r = app().get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(r.text.contains("\ntraitor_up 1\n"), "{}", r.text);

    let app = app_with(Some("s3cret"));
    let remote = |uri: &str| from_peer(Method::GET, uri, [10, 0, 0, 7]);
    let r = app
        .send(remote("/metrics").body(Body::empty()).expect("request"))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let r = app
        .send(
            remote("/metrics")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Readiness stays open, like health: probes send no token.
    let r = app
        .send(remote("/readyz").body(Body::empty()).expect("request"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_bodies_are_400_with_where_and_what() {
    let app = app();
    let send = |body: &'static str| {
        req(Method::POST, "/api/job?type=timing")
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from(body))
            .expect("request")
    };
    let r = app.send(send("{\"name\": \"a\",\n \"cron\": }")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None);
    assert!(
        r.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("line 2")),
        "{}",
        r.text
    );
    let r = app.send(send("")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json", None);
    let r = app.send(send(r#"{"name": 5}"#)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("name"));
    let r = app.send(send(r#"{"name": "a", "execAt": "soon"}"#)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_field", Some("execAt"));
    assert!(
        r.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("must be a number")),
        "{}",
        r.text
    );
    let r = app.send(send(r#"{"name": "a", "execType": 7}"#)).await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("execType"),
    );
    let r = app.send(send("[]")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request", None);
}

#[tokio::test]
async fn content_type_absent_is_json_other_types_are_415() {
    let app = app();
    let r = app
        .send(
            req(Method::POST, "/api/job?type=timing")
                .body(Body::from(r#"{"name": "a"}"#))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ] {
        let r = app
            .send(
                req(Method::POST, "/api/job?type=timing")
                    .header(header::CONTENT_TYPE, ct)
                    .body(Body::from(r#"{"name": "a"}"#))
                    .expect("request"),
            )
            .await;
        assert_error(
            &r,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
}

#[tokio::test]
async fn ten_megabyte_body_is_413_json() {
    let app = app();
    let big = format!(
        r#"{{"name": "a", "script": "{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let r = app
        .send(
            req(Method::POST, "/api/job?type=timing")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(big))
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None);
    // Also when the length is not announced up front.
    let chunks = futures_util::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512 * 1024])),
    );
    let r = app
        .send(
            req(Method::POST, "/api/script?id=x")
                .body(Body::from_stream(chunks))
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let app = app();
    let r = app.get("/api/nope").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = app.get("/nope.html").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = app
        .send(
            req(Method::PATCH, "/api/job?id=x")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(
        &r,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    let r = app.get("/api/enable?id=x&enable=true").await;
    assert_error(
        &r,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    let r = app.post("/").await;
    assert_error(
        &r,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
}

#[tokio::test]
async fn internal_errors_are_500_without_details() {
    let app = app();
    let r = app
        .json(
            Method::POST,
            "/api/job?type=timing",
            json!({"name": "explode"}),
        )
        .await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "internal", None);
    assert!(!r.text.contains("secret"), "{}", r.text);
}

#[tokio::test]
async fn without_token_only_loopback_is_served() {
    let app = app();
    let r = app
        .send(
            from_peer(Method::GET, "/api/jobList", [10, 0, 0, 7])
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "loopback_only", None);
    assert!(r.text.contains("TRAITOR_AUTH_TOKEN"), "{}", r.text);
    let r = app
        .send(
            from_peer(Method::GET, "/", [192, 168, 1, 2])
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "loopback_only", None);
    // A loopback peer reached under a foreign name: DNS rebinding.
    let r = app
        .send(
            Request::builder()
                .uri("/api/jobList")
                .header(header::HOST, "evil.example:8080")
                .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "loopback_only", None);
    // No ConnectInfo at all: refused, not guessed.
    let r = app
        .send(
            Request::builder()
                .uri("/api/jobList")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "loopback_only", None);
    // IPv6 loopback is fine.
    let r = app
        .send(
            Request::builder()
                .uri("/api/jobList")
                .header(header::HOST, "[::1]:8080")
                .extension(ConnectInfo(
                    "[::1]:5000".parse::<SocketAddr>().expect("addr"),
                ))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn with_token_every_api_call_needs_it() {
    let app = app_with(Some("s3cret"));
    let remote = |uri: &str| from_peer(Method::GET, uri, [10, 0, 0, 7]);

    let r = app
        .send(remote("/api/jobList").body(Body::empty()).expect("request"))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
    let r = app
        .send(
            remote("/api/jobList")
                .header(header::AUTHORIZATION, "Bearer wrong")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let r = app
        .send(
            remote("/api/jobList")
                .header(header::AUTHORIZATION, "Bearer s3cret")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The URL token is only for the debug socket.
    let r = app
        .send(
            remote("/api/jobList?token=s3cret")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    // Unknown API routes are not revealed without the token.
    let r = app
        .send(remote("/api/nope").body(Body::empty()).expect("request"))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);

    // Health and the UI stay open, from anywhere.
    let r = app
        .send(remote("/healthz").body(Body::empty()).expect("request"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .send(remote("/").body(Body::empty()).expect("request"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn debug_socket_takes_the_token_in_the_url_and_checks_origin() {
    let app = app_with(Some("s3cret"));
    let remote = |uri: &str| from_peer(Method::GET, uri, [10, 0, 0, 7]);
    let r = app
        .send(
            remote("/api/debug?id=x")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let r = app
        .send(
            remote("/api/debug?id=x&token=wrong")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", None);
    // Past auth, a plain GET is told to upgrade.
    let r = app
        .send(
            remote("/api/debug?id=x&token=s3cret")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::UPGRADE_REQUIRED, "upgrade_required", None);
    let r = app
        .send(
            remote("/api/debug?token=s3cret")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "missing_parameter", Some("id"));

    let r = app
        .send(
            remote("/api/debug?id=x&token=s3cret")
                .header(header::ORIGIN, "http://evil.example")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "bad_origin", None);
    let r = app
        .send(
            remote("/api/debug?id=x&token=s3cret")
                .header(header::ORIGIN, "http://127.0.0.1:8080")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::UPGRADE_REQUIRED, "upgrade_required", None);
}

#[tokio::test]
async fn cross_site_pages_cannot_drive_the_api() {
    let app = app();
    let r = app
        .send(
            req(Method::POST, "/api/run?type=timing")
                .header(header::ORIGIN, "https://evil.example")
                .body(Body::from(r#"{"name": "pwn"}"#))
                .expect("request"),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "bad_origin", None);
    assert!(app.fake.calls().create.is_none());
    let r = app
        .send(
            req(Method::POST, "/api/run?type=timing")
                .header(header::ORIGIN, "http://127.0.0.1:8080")
                .body(Body::from(r#"{"name": "ok"}"#))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn openapi_lists_every_route_and_only_those() {
    let app = app();
    let r = app.get("/api/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3."))
    );
    let paths = r.json["paths"].as_object().expect("paths");
    let routes: Vec<&(&str, &str)> = crate::api::ROUTES
        .iter()
        .chain(crate::ops::ROUTES)
        .collect();
    for (path, method) in routes.iter().copied() {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is served but not documented"
        );
        // And the router really serves it: anything but a route-level 404 or a 405.
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let r = app
            .send(req(m, path).body(Body::empty()).expect("request"))
            .await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.text.contains("no API route")),
            "{method} {path} is documented but not routed"
        );
    }
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                routes.contains(&&(path.as_str(), method.as_str())),
                "{method} {path} is documented but not in ROUTES"
            );
        }
    }
    assert!(r.json["components"]["schemas"].get("JobView").is_some());
    // Sent as numbers, so documented as numbers.
    assert_eq!(
        r.json["components"]["schemas"]["ExecType"]["type"],
        "integer"
    );
    assert_eq!(
        r.json["components"]["schemas"]["JobState"]["type"],
        "integer"
    );
    assert!(
        r.json["components"]["securitySchemes"]
            .get("bearer")
            .is_some()
    );
}

#[tokio::test]
async fn index_is_served_with_security_headers() {
    let app = app();
    let r = app.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("/api/openapi.json"));
    let h = &r.headers;
    assert!(
        h[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/html"))
    );
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("csp");
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self' ws: wss:"));
    assert!(!csp.contains("script-src 'unsafe-inline'"));
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let etag = h[header::ETAG].clone();

    let r = app.get("/index.html").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .send(
            req(Method::GET, "/")
                .header(header::IF_NONE_MATCH, etag)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);

    // JSON answers carry the common headers but no CSP.
    let r = app.get("/api/jobList").await;
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(!r.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}

/// Each change reaches the backend with the name of the token that asked for it (or
/// `local`), and a refused request reaches it not at all.
#[tokio::test]
async fn the_caller_s_token_name_reaches_the_backend() {
    let fake = Fake::new();
    let tokens = ["ci:one", "alice:two"]
        .iter()
        .map(|t| crate::AuthToken::parse(t).expect("token"))
        .collect();
    let app = App {
        router: crate::router(
            WebConfig {
                auth_tokens: tokens,
                ..config(None)
            },
            fake.clone(),
        ),
        fake,
    };
    let as_ = |secret: &str, method: Method, uri: &str| {
        from_peer(method, uri, [10, 0, 0, 7])
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .header(header::CONTENT_TYPE, "application/json")
    };
    let body = json!({"name": "a", "cron": "* * * * *"}).to_string();
    let r = app
        .send(
            as_("one", Method::POST, "/api/job?type=timing")
                .body(Body::from(body))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.json["data"].as_str().expect("id").to_owned();
    for (secret, method, uri, body) in [
        (
            "two",
            Method::PUT,
            format!("/api/job?id={id}"),
            r#"{"name":"b"}"#,
        ),
        (
            "two",
            Method::POST,
            format!("/api/enable?id={id}&enable=true"),
            "",
        ),
        (
            "one",
            Method::POST,
            format!("/api/script?id={id}"),
            r#"{"script":"x"}"#,
        ),
        ("one", Method::POST, format!("/api/job/trigger?id={id}"), ""),
        ("two", Method::POST, format!("/api/job/resume?id={id}"), ""),
        ("two", Method::DELETE, format!("/api/job?id={id}"), ""),
        ("wrong", Method::DELETE, format!("/api/job?id={id}"), ""),
    ] {
        let request = as_(secret, method, &uri)
            .body(Body::from(body))
            .expect("request");
        app.send(request).await;
    }
    assert_eq!(
        app.fake.calls().actors,
        [
            "create_job ci",
            "update_job alice",
            "enable alice",
            "set_script ci",
            "run_now ci",
            "resume alice",
            "delete_job alice",
        ]
    );

    // Without tokens, a loopback client is `local`.
    let open = self::app();
    open.create("x").await;
    assert_eq!(open.fake.calls().actors, ["create_job local"]);
}

#[tokio::test]
async fn the_audit_log_is_filtered_and_paged() {
    let app = app();
    let r = app
        .get("/api/audit?target=job-7&actor=ci&action=job.&before=1700000000000:e9&limit=1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let q = app.fake.calls().audit.clone().expect("a query");
    assert_eq!(q.target.as_deref(), Some("job-7"));
    assert_eq!(q.actor.as_deref(), Some("ci"));
    assert_eq!(q.action.as_deref(), Some("job."));
    assert_eq!(
        q.before,
        Some(crate::audit::AuditCursor {
            at_ms: 1_700_000_000_000,
            id: "e9".into()
        })
    );
    assert_eq!(q.limit, 1);
    let item = &r.json["data"]["items"][0];
    assert_eq!(item["target"], "job-7");
    assert_eq!(item["at"], "2023-11-14T22:13:20Z");
    assert_eq!(item["detail"], json!({"changes": {}}));
    assert_eq!(r.json["data"]["nextBefore"], "1700000000000:e1");

    // An instant is a cursor too; the default page is 50.
    let r = app.get("/api/audit?before=2024-01-01T00:00:00Z").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let q = app.fake.calls().audit.clone().expect("a query");
    assert_eq!(
        (q.before.map(|b| b.at_ms), q.limit),
        (Some(1_704_067_200_000), 50)
    );
    assert_eq!(r.json["data"]["nextBefore"], Value::Null);

    for bad in ["before=yesterday", "limit=0", "limit=501"] {
        let r = app.get(&format!("/api/audit?{bad}")).await;
        let field = bad.split('=').next();
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter", field);
    }
}
