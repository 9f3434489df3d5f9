//! Shared modules end to end (issue 7 part 1): modules saved through the API, loaded by
//! real scripts on real workers with `require`, `import` and `import()`, versioned,
//! pinned, rolled back and deleted; in standalone and in a two-node cluster.

use serde_json::{Value, json};
use tests::cluster::*;
use tests::server::Server;

/// Saves `source` as the next version of module `name`; returns the version.
async fn put_module(api: &Api, name: &str, source: &str, note: &str) -> u64 {
    let (status, v) = api
        .call(
            "PUT",
            &format!("/api/module?name={name}"),
            Some(json!({"source": source, "note": note})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"]["version"].as_u64().expect("version")
}

fn texts(run: &Value) -> Vec<String> {
    run["log"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| l["text"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The one line a run printed, asserting it succeeded.
async fn printed(s: &Server, id: &str) -> String {
    let run = s.run_now(id).await;
    assert_eq!(run["outcome"], "succeeded", "{run}");
    texts(&run).join("\n")
}

const GREETING_V1: &str = "module.exports = { text: 'hello from v1', version: 1 };";
const GREETING_V2: &str = "export const text = 'hello from v2';\nexport const version = 2;";

#[tokio::test]
async fn a_module_used_by_two_jobs_is_updated_once_and_both_see_it_on_their_next_run() {
    let s = Server::start().await;
    let api = Api::of(&s);
    assert_eq!(put_module(&api, "greeting", GREETING_V1, "first").await, 1);
    // A module may use another; the job names only the outer one.
    put_module(
        &api,
        "shout",
        "const { text } = require('greeting');\nmodule.exports = () => text.toUpperCase();",
        "",
    )
    .await;
    let by_require = s
        .create_script_job("const g = require('greeting'); console.log(g.text, g.version)")
        .await;
    let by_import = s
        .create_script_job(
            "import { text } from 'greeting'; import shout from 'shout';\n\
         const pinned = await import('greeting@1');\n\
         console.log(text, '|', shout(), '|', pinned.text)",
        )
        .await;
    assert_eq!(printed(&s, &by_require).await, "hello from v1 1");
    assert_eq!(
        printed(&s, &by_import).await,
        "hello from v1 | HELLO FROM V1 | hello from v1"
    );

    // One update, from CommonJS to an ES module: both jobs, and the module that uses
    // it, get it on their next run; the pin does not move.
    assert_eq!(put_module(&api, "greeting", GREETING_V2, "as ESM").await, 2);
    assert_eq!(printed(&s, &by_require).await, "hello from v2 2");
    assert_eq!(
        printed(&s, &by_import).await,
        "hello from v2 | HELLO FROM V2 | hello from v1"
    );

    // Versions, one version's source, and a rollback that the next run sees.
    let (status, v) = s.get("/api/module/versions?name=greeting").await;
    assert_eq!(status, 200, "{v}");
    let listed: Vec<(u64, String, bool)> = v["data"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|e| {
            (
                e["version"].as_u64().unwrap_or(0),
                e["note"].as_str().unwrap_or_default().to_owned(),
                e["current"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (2, "as ESM".to_owned(), true),
            (1, "first".to_owned(), false)
        ]
    );
    let (status, v) = s.get("/api/module?name=greeting&version=1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["source"], GREETING_V1);
    assert_eq!(v["data"]["current"], false);
    let (status, v) = s
        .post("/api/module/rollback?name=greeting&version=1", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["version"], 3);
    assert_eq!(v["data"]["note"], "rollback to version 1");
    assert_eq!(printed(&s, &by_require).await, "hello from v1 1");
    let run = s.run_now(&by_require).await;
    assert_eq!(
        run["scriptVersion"], 1,
        "the job's own script did not change"
    );

    let (status, v) = s.get("/api/modules").await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<(&str, u64)> = v["data"]
        .as_array()
        .expect("modules")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or(""),
                m["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(names, [("greeting", 3), ("shout", 1)]);
    assert!(
        v["data"][0].get("source").is_none(),
        "no sources in the list"
    );

    // A deleted module is not found where it is loaded, which a script may catch.
    let (status, v) = s.call("DELETE", "/api/module?name=greeting", None).await;
    assert_eq!(status, 200, "{v}");
    let run = s.run_now(&by_require).await;
    assert_eq!(run["outcome"], "failed");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Cannot find module 'greeting'"),
        "{run}"
    );
    let optional = s
        .create_script_job(
            "let g; try { g = require('greeting') } catch (e) { g = { text: e.code } }\n\
         console.log(g.text)",
        )
        .await;
    assert_eq!(printed(&s, &optional).await, "MODULE_NOT_FOUND");
}

#[tokio::test]
async fn bad_module_input_gets_a_clear_4xx_and_changes_nothing() {
    let s = Server::start().await;
    let api = Api::of(&s);
    put_module(&api, "ok", "module.exports = 1;", "").await;
    let put = |name: &str, body: Value| {
        let path = format!("/api/module?name={name}");
        let api = &api;
        async move { api.call("PUT", &path, Some(body)).await }
    };
    let cases: Vec<(u16, (u16, Value), &str)> = vec![
        (
            400,
            put("..%2Fetc", json!({"source": "1"})).await,
            "module name",
        ),
        (400, put("http", json!({"source": "1"})).await, "built-in"),
        (400, put("a@2", json!({"source": "1"})).await, "module name"),
        (400, put("", json!({"source": "1"})).await, "name"),
        (400, put("ok", json!({})).await, "source"),
        (400, put("ok", json!({"source": 5})).await, "source"),
        (
            400,
            put("ok", json!({"source": "1", "note": "n".repeat(501)})).await,
            "note",
        ),
        (400, put("ok", json!({"source": "a\u{0}b"})).await, "NUL"),
        (
            413,
            put("ok", json!({"source": "x".repeat(1024 * 1024 + 1)})).await,
            "limit",
        ),
        (404, s.get("/api/module?name=nope").await, "nope"),
        (
            404,
            s.get("/api/module?name=ok&version=9").await,
            "version 9",
        ),
        (400, s.get("/api/module?name=ok&version=0").await, "version"),
        (400, s.get("/api/module?name=ok&version=x").await, "version"),
        (404, s.get("/api/module/versions?name=nope").await, "nope"),
        (
            400,
            s.post("/api/module/rollback?name=ok", json!({})).await,
            "version",
        ),
        (
            404,
            s.post("/api/module/rollback?name=ok&version=7", json!({}))
                .await,
            "version 7",
        ),
        (
            404,
            s.call("DELETE", "/api/module?name=nope", None).await,
            "nope",
        ),
    ];
    for (want, (status, body), mentions) in cases {
        assert_eq!(status, want, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains(mentions),
            "the error should mention {mentions:?}: {body}"
        );
    }
    let (status, v) = s.call("PUT", "/api/module?name=ok", None).await;
    assert_eq!(status, 400, "no body: {v}");
    let (_, v) = s.get("/api/modules").await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["data"][0]["version"], 1, "nothing changed: {v}");
}

#[tokio::test]
async fn an_acknowledged_module_save_survives_kill_9() {
    let mut s = Server::start().await;
    let api = Api::of(&s);
    put_module(&api, "durable", "exports.v = 'kept';", "").await;
    s.kill9();
    s.spawn().await;
    let id = s
        .create_script_job("console.log(require('durable').v)")
        .await;
    assert_eq!(printed(&s, &id).await, "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_every_node_runs_the_module_version_saved_on_any_node() {
    let _serial = serial().await;
    let redis = RedisServer::start();
    let db = Database::create();
    let logs = ClusterLogs::default();
    let names = ["node-a", "node-b"];
    let mut nodes = Vec::new();
    for n in names {
        let spec = NodeSpec {
            redis_url: redis.url(),
            store_url: db.url.clone(),
            cluster: "modules".into(),
            node_name: n.into(),
        };
        let s = spec.start().await;
        logs.add(format!("modules/{n}"), &s.log_path);
        nodes.push(s);
    }
    for s in &nodes {
        wait_members(&Api::of(s), &names).await;
    }
    let (a, b) = (Api::of(&nodes[0]), Api::of(&nodes[1]));
    put_module(&a, "greeting", GREETING_V1, "").await;
    let first = nodes[0]
        .create_script_job("console.log(require('greeting').text)")
        .await;
    let second = nodes[1]
        .create_script_job("import { text } from 'greeting'; console.log(text)")
        .await;
    // Every node runs both jobs once (a manual run runs where it is asked for), so each
    // has version 1 cached.
    let mut ran_on = std::collections::BTreeSet::new();
    for s in &nodes {
        for id in [&first, &second] {
            let run = s.run_now(id).await;
            assert_eq!(texts(&run), ["hello from v1"], "{run}");
            ran_on.insert(run["node"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(ran_on.len(), 2, "both nodes ran: {ran_on:?}");

    // Saved once, through node-b: both nodes' next runs of both jobs see it.
    assert_eq!(put_module(&b, "greeting", GREETING_V2, "").await, 2);
    for s in &nodes {
        for id in [&first, &second] {
            let run = s.run_now(id).await;
            assert_eq!(texts(&run), ["hello from v2"], "{run}");
        }
    }
}
