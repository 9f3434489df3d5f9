//! Secrets and per-job kv end to end (issue 7 parts 3 and 5): the real service, real
//! workers, the scripts' `secrets.NAME` and `kv.*`, over HTTP as a user would.

use futures_util::StreamExt;
use serde_json::{Value, json};
use tests::server::Server;
use tokio_tungstenite::tungstenite::Message;

const VALUE: &str = "s3cr3t-Value-9f8e7d";

/// The raw body of a GET, for grepping.
async fn raw(s: &Server, path: &str) -> String {
    let resp = s.http.get(s.url(path)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.text().await.unwrap()
}

/// Every text frame of a debug run of the saved job `id`, until the socket closes.
async fn debug_texts(s: &Server, id: &str) -> Vec<String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url(&format!("/api/debug?id={id}")))
        .await
        .expect("connect");
    let mut texts = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(t) => texts.push(t.to_string()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    texts
}

async fn create(s: &Server, body: Value) -> String {
    let (status, v) = s.post("/api/job?type=timing", body).await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_secret_is_readable_by_its_job_masked_in_output_and_never_returned() {
    let s = Server::start().await;
    let (status, v) = s
        .call(
            "PUT",
            "/api/secret?name=API_TOKEN",
            Some(json!({"value": VALUE})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // The default key file is made on first use, private to the owner.
    let key_file = s.data_dir().join("secret.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Bad input: 4xx naming the problem, nothing changed.
    let (status, v) = s
        .call("PUT", "/api/secret?name=lower", Some(json!({"value": "x"})))
        .await;
    assert_eq!(status, 400, "{v}");
    let big = "x".repeat(64 * 1024 + 1);
    let (status, _) = s
        .call("PUT", "/api/secret?name=BIG", Some(json!({"value": big})))
        .await;
    assert_eq!(status, 413);
    let (status, v) = s
        .post(
            "/api/job?type=timing",
            json!({"cron": "@yearly", "script": "", "secrets": ["NOPE"]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("NOPE"), "{v}");

    let script = "console.log('token is ' + secrets.API_TOKEN);\
                  console.log(secrets.API_TOKEN.length, Object.keys(secrets).join());\
                  throw new Error('failed with ' + secrets.API_TOKEN);";
    let id = create(
        &s,
        json!({"cron": "@yearly", "script": script, "secrets": ["API_TOKEN"]}),
    )
    .await;
    let other = create(
        &s,
        json!({"cron": "@yearly", "script": "console.log(Object.keys(secrets).length)"}),
    )
    .await;
    let run = s.run_now(&id).await;
    assert_eq!(run["outcome"], "failed");
    assert_eq!(run["log"][0]["text"], "token is ***");
    assert_eq!(run["log"][1]["text"], format!("{} API_TOKEN", VALUE.len()));
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed with ***"),
        "{run}"
    );
    let run_id = run["runId"].as_str().unwrap().to_owned();
    // A debug run of the saved job gets the secret; the socket sees it masked.
    let texts = debug_texts(&s, &id).await;
    assert_eq!(texts[0], "token is ***", "{texts:?}");
    assert!(texts.iter().all(|t| !t.contains(VALUE)), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("failed with ***")),
        "{texts:?}"
    );
    let other_run = s.run_now(&other).await;
    assert_eq!(
        other_run["log"][0]["text"], "0",
        "an ungranted job sees no secrets"
    );

    let (_, v) = s.get(&format!("/api/job?id={id}")).await;
    assert_eq!(v["data"]["secrets"], json!(["API_TOKEN"]));
    let (_, v) = s.get("/api/secrets").await;
    assert_eq!(v["data"][0]["name"], "API_TOKEN");
    assert_eq!(v["data"][0]["jobs"], json!([id]));
    for path in [
        format!("/api/job?id={id}"),
        "/api/jobs".to_owned(),
        "/api/jobList".to_owned(),
        "/api/secrets".to_owned(),
        format!("/api/job/runs?id={id}"),
        format!("/api/job/run?id={run_id}"),
        format!("/api/job/occurrences?id={id}"),
        "/api/stats".to_owned(),
    ] {
        let body = raw(&s, &path).await;
        assert!(
            !body.contains(VALUE),
            "{path} returned the secret's value: {body}"
        );
    }

    // Granted: deleting is refused; after the grant is removed it goes.
    let (status, v) = s.call("DELETE", "/api/secret?name=API_TOKEN", None).await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = s
        .call(
            "PUT",
            &format!("/api/job?id={id}"),
            Some(json!({"secrets": []})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = s.call("DELETE", "/api/secret?name=API_TOKEN", None).await;
    assert_eq!(status, 200);
    let (status, _) = s.call("DELETE", "/api/secret?name=API_TOKEN", None).await;
    assert_eq!(status, 404);
    assert!(!s.log().contains(VALUE), "the service log holds the value");
}

#[tokio::test]
async fn kv_keeps_state_across_runs_caps_it_and_goes_with_the_job() {
    let s = Server::start().await;
    let script = "const n = (await kv.get('count')) ?? 0;\
                  await kv.set('count', n + 1);\
                  console.log('run', n + 1);";
    let id = create(&s, json!({"cron": "@yearly", "script": script})).await;
    for expected in 1..=3 {
        let run = s.run_now(&id).await;
        assert_eq!(run["outcome"], "succeeded", "{run}");
        assert_eq!(run["log"][0]["text"], format!("run {expected}"));
    }
    let (status, v) = s.get(&format!("/api/job/kv?id={id}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], json!([{"key": "count", "value": 3}]));

    // Over a cap: the script's promise rejects with a clear error.
    let big = "await kv.set('big', 'x'.repeat(70000));";
    let (status, _) = s
        .post(&format!("/api/script?id={id}"), json!({"script": big}))
        .await;
    assert_eq!(status, 200);
    let run = s.run_now(&id).await;
    assert_eq!(run["outcome"], "failed", "{run}");
    let msg = run["error"]["message"].as_str().unwrap();
    assert!(msg.contains("kv:") && msg.contains("65536"), "{msg}");

    let (status, _) = s
        .call("DELETE", &format!("/api/job/kv?id={id}&key=count"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call("DELETE", &format!("/api/job/kv?id={id}&key=count"), None)
        .await;
    assert_eq!(status, 404);

    // Deleted with the job.
    let (status, _) = s
        .post(
            &format!("/api/script?id={id}"),
            json!({"script": "await kv.set('a', 1)"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.run_now(&id).await["outcome"], "succeeded");
    let (status, _) = s.call("DELETE", &format!("/api/job?id={id}"), None).await;
    assert_eq!(status, 200);
    let (status, _) = s.get(&format!("/api/job/kv?id={id}")).await;
    assert_eq!(status, 404);
    let again = create(
        &s,
        json!({"jobId": id, "cron": "@yearly", "script": "console.log(await kv.get('a'))"}),
    )
    .await;
    assert_eq!(s.run_now(&again).await["log"][0]["text"], "undefined");
}
