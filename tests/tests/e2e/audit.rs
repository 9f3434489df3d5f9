//! Named API tokens and the audit log end to end (issue 7 part 6): the real service with
//! two tokens (one from the command line, one from a token file), changes made with each,
//! and `GET /api/audit` read back as a user would.

use serde_json::{Value, json};
use tests::server::{Options, Server};

const CI: &str = "ci-s3cret-1a2b";
const ALICE: &str = "alice:pass-9z8y"; // a secret may hold a colon
const SECRET_VALUE: &str = "sup3r-s3cret-Value-4d5e";
const MODULE_V1: &str = "module.exports = { answer: 42 };";
const SCRIPT_V2: &str = "console.log('the second script, unique text 7c1f')";

/// Calls the API with `token` as the bearer; returns (status, JSON or text).
async fn call(
    s: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s.http.request(m, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// One page of `GET /api/audit?<query>`, read with `CI`'s token.
async fn audit(s: &Server, query: &str) -> (Vec<Value>, Value) {
    let (status, v) = call(s, CI, "GET", &format!("/api/audit?{query}"), None).await;
    assert_eq!(status, 200, "{v}");
    let items = v["data"]["items"].as_array().unwrap().clone();
    (items, v["data"]["nextBefore"].clone())
}

/// `(action, actor, target)` of each entry, in order.
fn summary(items: &[Value]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap().to_owned();
            (f("action"), f("actor"), f("target"))
        })
        .collect()
}

fn row(action: &str, actor: &str, target: &str) -> (String, String, String) {
    (action.into(), actor.into(), target.into())
}

#[tokio::test]
async fn every_change_is_recorded_with_the_token_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(&token_file, format!("# the team\nalice {ALICE}\n")).unwrap();
    let mut s = Server::start_with(Options {
        args: vec![
            "--auth-token".into(),
            format!("ci:{CI}"),
            "--auth-token-file".into(),
            token_file.to_str().unwrap().into(),
        ],
        ..Default::default()
    })
    .await;
    let (_, health) = s.get("/healthz").await;
    let node = health["data"]["node"].as_str().unwrap().to_owned();

    // ci creates a job; alice changes its schedule, name and script; ci starts it.
    let (status, v) = call(
        &s,
        CI,
        "POST",
        "/api/job?type=timing",
        Some(json!({"name": "report", "cron": "0 0 * * * *", "script": "console.log(1)"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let id = v["data"].as_str().unwrap().to_owned();
    let (status, v) = call(
        &s,
        ALICE,
        "PUT",
        &format!("/api/job?id={id}"),
        Some(json!({"cron": "0 30 * * * *", "name": "nightly report"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &s,
        ALICE,
        "POST",
        &format!("/api/script?id={id}"),
        Some(json!({"script": SCRIPT_V2, "note": "faster"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &s,
        CI,
        "POST",
        &format!("/api/enable?id={id}&enable=true"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");

    // Refused changes leave no entry: a bad cron (400), a wrong token (401), no token.
    let (status, v) = call(
        &s,
        ALICE,
        "PUT",
        &format!("/api/job?id={id}"),
        Some(json!({"cron": "not a cron"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = call(&s, "wrong", "DELETE", &format!("/api/job?id={id}"), None).await;
    assert_eq!(status, 401);
    let (status, _) = s.call("DELETE", &format!("/api/job?id={id}"), None).await;
    assert_eq!(status, 401);
    let (status, _) = s.get("/api/audit").await;
    assert_eq!(status, 401, "the audit log needs a token too");
    // An idempotent enable changes nothing and is not recorded either.
    let (status, _) = call(
        &s,
        ALICE,
        "POST",
        &format!("/api/enable?id={id}&enable=true"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // A secret: stored by ci, its value nowhere in the log.
    let (status, v) = call(
        &s,
        CI,
        "PUT",
        "/api/secret?name=API_KEY",
        Some(json!({"value": SECRET_VALUE})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // A shared module saved by alice, rolled back by ci: version, size, never the source.
    let (status, v) = call(
        &s,
        ALICE,
        "PUT",
        "/api/module?name=util",
        Some(json!({"source": MODULE_V1, "note": "first"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &s,
        ALICE,
        "PUT",
        "/api/module?name=util",
        Some(json!({"source": "module.exports = 2;"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &s,
        CI,
        "POST",
        "/api/module/rollback?name=util&version=1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // A second job, deleted by alice.
    let (status, v) = call(
        &s,
        CI,
        "POST",
        "/api/job?type=timing",
        Some(json!({"name": "scratch", "cron": "@hourly"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let scratch = v["data"].as_str().unwrap().to_owned();
    let (status, v) = call(&s, ALICE, "DELETE", &format!("/api/job?id={scratch}"), None).await;
    assert_eq!(status, 200, "{v}");

    let (all, next) = audit(&s, "").await;
    assert_eq!(
        summary(&all),
        [
            row("job.delete", "alice", &scratch),
            row("job.create", "ci", &scratch),
            row("module.rollback", "ci", "util"),
            row("module.put", "alice", "util"),
            row("module.put", "alice", "util"),
            row("secret.put", "ci", "API_KEY"),
            row("job.enable", "ci", &id),
            row("script.update", "alice", &id),
            row("job.update", "alice", &id),
            row("job.create", "ci", &id),
        ],
        "newest first: {all:#?}"
    );
    assert_eq!(next, Value::Null, "one page holds them all");
    assert!(all.iter().all(|e| e["node"] == node.as_str()), "{all:#?}");
    let times: Vec<&str> = all.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // What changed, old -> new.
    let detail = |action: &str, target: &str| {
        all.iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .map(|e| e["detail"].clone())
            .unwrap()
    };
    assert_eq!(
        detail("job.update", &id),
        json!({"changes": {
            "cron": {"old": "0 0 * * * *", "new": "0 30 * * * *"},
            "name": {"old": "report", "new": "nightly report"},
        }})
    );
    assert_eq!(
        detail("script.update", &id),
        json!({"changes": {"script": {
            "old": {"version": 1},
            "new": {"version": 2, "bytes": SCRIPT_V2.len(), "note": "faster"},
        }}})
    );
    assert_eq!(
        detail("job.enable", &id),
        json!({"changes": {"state": {"old": 0, "new": 1}}})
    );
    let created = detail("job.create", &id);
    assert_eq!(created["name"], "report");
    assert_eq!(created["cron"], "0 0 * * * *");
    assert_eq!(created["started"], false);
    assert_eq!(created["script"], json!({"version": 1, "bytes": 14}));
    assert_eq!(detail("job.delete", &scratch), json!({"name": "scratch"}));
    assert_eq!(
        detail("module.rollback", "util"),
        json!({"version": 3, "bytes": MODULE_V1.len(), "note": "rollback to version 1", "restored": 1})
    );

    // Neither the secret's value nor a script's text is anywhere in the log.
    let resp = s
        .http
        .get(s.url("/api/audit?limit=500"))
        .bearer_auth(CI)
        .send()
        .await
        .unwrap();
    let raw = resp.text().await.unwrap();
    assert!(raw.contains("API_KEY"), "{raw}");
    assert!(!raw.contains(SECRET_VALUE), "{raw}");
    assert!(!raw.contains("unique text 7c1f"), "{raw}");
    assert!(!raw.contains("module.exports"), "{raw}");
    assert!(
        !raw.contains(CI) && !raw.contains(ALICE),
        "no token secret: {raw}"
    );

    // Filters.
    let (items, _) = audit(&s, "actor=alice").await;
    assert_eq!(
        summary(&items),
        [
            row("job.delete", "alice", &scratch),
            row("module.put", "alice", "util"),
            row("module.put", "alice", "util"),
            row("script.update", "alice", &id),
            row("job.update", "alice", &id),
        ]
    );
    let (items, _) = audit(&s, &format!("target={id}")).await;
    let actions: Vec<_> = summary(&items).into_iter().map(|r| r.0).collect();
    assert_eq!(
        actions,
        ["job.enable", "script.update", "job.update", "job.create"]
    );
    let (items, _) = audit(&s, "action=job.create").await;
    assert_eq!(
        summary(&items),
        [
            row("job.create", "ci", &scratch),
            row("job.create", "ci", &id)
        ]
    );
    let (items, _) = audit(&s, "action=secret.").await;
    assert_eq!(summary(&items), [row("secret.put", "ci", "API_KEY")]);
    let (items, _) = audit(&s, &format!("actor=ci&target={id}")).await;
    assert_eq!(items.len(), 2, "{items:#?}");

    // Pages of two, following nextBefore, walk the whole log once.
    let mut walked = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (items, next) = audit(&s, &query).await;
        walked.extend(summary(&items));
        match next.as_str() {
            Some(cursor) => query = format!("limit=2&before={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, summary(&all));
    let (status, v) = call(&s, CI, "GET", "/api/audit?before=someday", None).await;
    assert_eq!((status, v["field"].as_str()), (400, Some("before")), "{v}");

    // Answered changes survive kill -9, and so do their entries.
    s.kill9();
    s.spawn().await;
    let (after, _) = audit(&s, "").await;
    assert_eq!(after, all);
}

#[tokio::test]
async fn a_server_without_tokens_records_its_local_clients_as_local() {
    let s = Server::start().await;
    let (status, v) = s
        .post(
            "/api/job?type=delay",
            json!({"name": "once", "execAt": 4_102_444_800_000_i64}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let id = v["data"].as_str().unwrap().to_owned();
    let (status, v) = s
        .post(&format!("/api/job/trigger?id={id}"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let run_id = v["data"].as_str().unwrap().to_owned();
    let (status, v) = s.get(&format!("/api/audit?target={id}")).await;
    assert_eq!(status, 200, "{v}");
    let items = v["data"]["items"].as_array().unwrap();
    assert_eq!(
        summary(items),
        [
            row("job.run", "local", &id),
            row("job.create", "local", &id)
        ]
    );
    assert_eq!(items[0]["detail"]["runId"], run_id.as_str());
}

#[tokio::test]
async fn bad_token_configuration_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "ci other-secret\n").unwrap();
    for (args, expected) in [
        (
            vec![
                "--auth-token",
                "ci:one",
                "--auth-token-file",
                file.to_str().unwrap(),
            ],
            "two tokens are named \"ci\"",
        ),
        (
            vec!["--auth-token", "ci:"],
            "the secret of token \"ci\" is empty",
        ),
        (vec!["--auth-token", "local:x"], "reserved"),
        (
            vec!["--auth-token-file", "/nonexistent/tokens"],
            "read the token file /nonexistent/tokens",
        ),
    ] {
        let out = std::process::Command::new(tests::traitor_bin())
            .args(["-p", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(&args)
            .env_remove("TRAITOR_AUTH_TOKEN")
            .env_remove("TRAITOR_AUTH_TOKEN_FILE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
