//! Scheduling policies in a three-node cluster (issue 6): the same overlap, retry,
//! misfire, backfill and pause behaviour as standalone, with the ring owner acting and
//! nothing running twice across nodes. Real `redis-server`, PostgreSQL and `traitor -m
//! multi` nodes; scripts report to a collector in this process, so "ran once" is
//! counted where it happens as well as read back from the ledger.
//!
//! Like the other cluster tests these run one at a time ([`serial`]).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use supervisor::cluster::ring::Ring;
use tests::cluster::*;
use tests::server::{Server, now_ms};

use crate::policies::{Rec, assert_each_instant_once, max_concurrency, ms_of, sorted};

const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];

async fn start_cluster(
    logs: &ClusterLogs,
    redis: &RedisServer,
    db: &Database,
    cluster: &str,
) -> Vec<Server> {
    let mut nodes = Vec::new();
    for n in NAMES {
        let spec = NodeSpec {
            redis_url: redis.url(),
            store_url: db.url.clone(),
            cluster: cluster.into(),
            node_name: n.into(),
        };
        let s = spec.start().await;
        logs.add(format!("{cluster}/{n}"), &s.log_path);
        nodes.push(s);
    }
    for s in &nodes {
        wait_members(&Api::of(s), &NAMES).await;
    }
    nodes
}

/// An id starting with `prefix` that the three-node ring gives to `owner`.
fn id_owned_by(prefix: &str, owner: &str) -> String {
    let ring = Ring::new(&NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| ring.owner(id) == Some(owner))
        .expect("an id for the owner")
}

async fn history(api: &Api, id: &str) -> Vec<Rec> {
    let (status, v) = api.get(&format!("/api/job/runs?id={id}&limit=1000")).await;
    assert_eq!(status, 200, "{v}");
    sorted(&v["data"]["items"])
}

async fn wait_history(
    api: &Api,
    id: &str,
    timeout_s: u64,
    what: &str,
    ok: impl Fn(&[Rec]) -> bool,
) -> Vec<Rec> {
    let ok = &ok;
    eventually(Duration::from_secs(timeout_s), what, || async move {
        let h = history(api, id).await;
        ok(&h).then_some(h)
    })
    .await
}

/// A script that reports `(job id + suffix, scheduled instant)` to the collector.
fn report(collector: &Collector, suffix_js: &str) -> String {
    format!(
        "await fetch('http://127.0.0.1:{}/hit?job=' + job.id + {suffix_js} + '&at=' + job.scheduledAt);",
        collector.port
    )
}

/// Hits of one job (with the suffix, if any) per scheduled instant.
fn hits_of(collector: &Collector, job: &str) -> Vec<(i64, usize)> {
    let mut v: Vec<(i64, usize)> = collector
        .by_occurrence()
        .into_iter()
        .filter(|((j, _), _)| j == job)
        .map(|((_, at), h)| (at, h.len()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_overlap_skip_and_retries_act_on_the_owner_only_and_once() {
    let _serial = serial().await;
    let redis = RedisServer::start();
    let db = Database::create();
    let collector = Collector::start();
    let logs = ClusterLogs::default();
    let nodes = start_cluster(&logs, &redis, &db, "pol-overlap").await;
    let (a, b) = (Api::of(&nodes[0]), Api::of(&nodes[1]));

    // A 1 s job whose runs take 2.5 s, owned by node-c; a failing job retried twice,
    // owned by node-b. Both created through node-a.
    let slow = id_owned_by("slow", "node-c");
    a.run_job(json!({"jobId": slow, "name": "slow", "cron": "* * * * * *",
                     "overlap": "skip",
                     "script": format!("{} await new Promise(r => setTimeout(r, 2500));",
                                       report(&collector, "''"))}))
        .await;
    let flaky = id_owned_by("flaky", "node-b");
    a.run_job(
        json!({"jobId": flaky, "name": "flaky", "cron": "*/3 * * * * *",
                     "retries": 2, "retryBackoffMs": 200,
                     "script": format!("{} throw new Error('attempt ' + job.attempt);",
                                       report(&collector, "'.a' + job.attempt"))}),
    )
    .await;

    let slow_h = wait_history(&b, &slow, 25, "two finished runs of the slow job", |h| {
        h.iter().filter(|r| r.done()).count() >= 2
    })
    .await;
    let occ = eventually(
        Duration::from_secs(25),
        "two occurrences of the flaky job with three attempts",
        || async {
            let (status, v) = b
                .get(&format!("/api/job/occurrences?id={flaky}&limit=50"))
                .await;
            assert_eq!(status, 200, "{v}");
            let items = v["data"]["items"].as_array().cloned().unwrap_or_default();
            let full = items
                .iter()
                .filter(|o| {
                    let at = o["attempts"].as_array().map_or(0, Vec::len);
                    at == 3
                        && o["attempts"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|a| a["outcome"] == "failed")
                })
                .count();
            (full >= 2).then_some(items)
        },
    )
    .await;
    b.enable(&slow, false).await;
    b.enable(&flaky, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Overlap skip: the runs and the skips are the owner's; nothing overlapped; each
    // instant once.
    let ran: Vec<&Rec> = slow_h.iter().filter(|r| r.done()).take(2).collect();
    assert!(slow_h.iter().all(|r| r.node == "node-c"), "{slow_h:#?}");
    let skipped = slow_h
        .iter()
        .filter(|r| r.scheduled > ran[0].scheduled && r.scheduled < ran[1].scheduled)
        .filter(|r| r.outcome == "skipped")
        .count();
    assert!(skipped >= 2, "{slow_h:#?}");
    assert_each_instant_once(&slow_h, ran[0].scheduled, ran[1].scheduled, 1_000);
    assert_eq!(max_concurrency(&slow_h), 1, "{slow_h:#?}");
    for (at, n) in hits_of(&collector, &slow) {
        assert_eq!(n, 1, "{slow}@{at} ran {n} times");
    }

    // Retries: one occurrence, three attempts, all on the owner, each run once.
    let done: Vec<&Value> = occ
        .iter()
        .filter(|o| o["attempts"].as_array().map_or(0, Vec::len) == 3)
        .collect();
    let mut instants = HashSet::new();
    for o in &done {
        let at = ms_of(&o["scheduledAt"]).unwrap();
        assert!(
            instants.insert(at),
            "one ledger entry per occurrence: {occ:#?}"
        );
        assert_eq!(o["outcome"], "failed", "{o}");
        let attempts: Vec<Rec> = o["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(Rec::from_json)
            .collect();
        assert_eq!(
            attempts.iter().map(|r| r.attempt).collect::<Vec<_>>(),
            vec![3, 2, 1],
            "{o}"
        );
        for r in &attempts {
            assert_eq!(r.node, "node-b", "attempts run on the owner: {r:?}");
            assert_eq!(r.occurrence_id, format!("{flaky}@{at}"), "{r:?}");
            assert_eq!(r.error, format!("Error: attempt {}", r.attempt), "{r:?}");
        }
        for n in 1..=3 {
            let hits = hits_of(&collector, &format!("{flaky}.a{n}"));
            let count = hits.iter().find(|(t, _)| *t == at).map_or(0, |(_, c)| *c);
            assert_eq!(count, 1, "{flaky}@{at} attempt {n} ran {count} times");
        }
    }
    let all_flaky = history(&b, &flaky).await;
    assert!(
        all_flaky
            .iter()
            .all(|r| r.attempt <= 3 && r.node == "node-b"),
        "{all_flaky:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_misfire_run_once_after_the_owner_is_killed_catches_up_at_most_once() {
    let _serial = serial().await;
    let redis = RedisServer::start();
    let db = Database::create();
    let collector = Collector::start();
    let logs = ClusterLogs::default();
    let mut nodes = start_cluster(&logs, &redis, &db, "pol-misfire").await;
    let b = Api::of(&nodes[1]);

    let id = id_owned_by("orphan", "node-a");
    b.run_job(json!({"jobId": id, "name": "orphan", "cron": "* * * * * *",
                     "misfire": "run_once", "script": report(&collector, "''")}))
        .await;
    wait_history(&b, &id, 15, "three runs on node-a", |h| {
        h.iter().filter(|r| r.done() && r.node == "node-a").count() >= 3
    })
    .await;
    let killed_at = now_ms();
    nodes[0].kill9();
    let h = wait_history(&b, &id, 20, "on-time runs on a survivor", |h| {
        h.iter()
            .filter(|r| {
                r.scheduled > killed_at && r.trigger == "schedule" && r.done() && r.node != "node-a"
            })
            .count()
            >= 2
    })
    .await;
    b.enable(&id, false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h2 = history(&b, &id).await;
    assert!(h2.len() >= h.len());
    let h = h2;

    let caught_up: Vec<&Rec> = h.iter().filter(|r| r.trigger == "misfire").collect();
    assert!(
        caught_up.len() <= 1,
        "run_once catches up at most one: {h:#?}"
    );
    for r in &caught_up {
        assert_ne!(r.node, "node-a", "{r:?}");
        assert!(r.scheduled > killed_at - 1_000, "{r:?}");
    }
    // No occurrence ran twice: in the ledger…
    let mut ran_at = HashSet::new();
    for r in h.iter().filter(|r| r.ran() && r.attempt == 1) {
        assert!(
            ran_at.insert(r.scheduled),
            "{}@{} ran twice: {h:#?}",
            id,
            r.scheduled
        );
    }
    // …and where the scripts report.
    for (at, n) in hits_of(&collector, &id) {
        assert_eq!(n, 1, "{id}@{at} ran {n} times");
    }
    // After the kill, every instant up to the last one is accounted for exactly once
    // (run by the new owner, caught up, or recorded missed).
    let first = (killed_at / 1_000 + 1) * 1_000;
    let last = h
        .iter()
        .filter(|r| r.trigger == "schedule" && r.done())
        .map(|r| r.scheduled)
        .max()
        .unwrap();
    assert_each_instant_once(&h, first, last, 1_000);
    let owners: HashSet<&str> = h
        .iter()
        .filter(|r| r.scheduled >= first)
        .map(|r| r.node.as_str())
        .collect();
    assert_eq!(owners.len(), 1, "one new owner: {owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_backfill_and_pause_through_non_owners_act_once() {
    let _serial = serial().await;
    let redis = RedisServer::start();
    let db = Database::create();
    let collector = Collector::start();
    let logs = ClusterLogs::default();
    let nodes = start_cluster(&logs, &redis, &db, "pol-backfill").await;
    let (a, b) = (Api::of(&nodes[0]), Api::of(&nodes[1]));

    // A 2 s job owned by node-c, backfilled through node-a over a range that starts
    // before it existed.
    let bf = id_owned_by("backfill", "node-c");
    a.run_job(
        json!({"jobId": bf, "name": "backfilled", "cron": "*/2 * * * * *",
                     "script": report(&collector, "''")}),
    )
    .await;
    let created = now_ms();
    // A 1 s job owned by node-c, paused through node-b.
    let pz = id_owned_by("paused", "node-c");
    a.run_job(json!({"jobId": pz, "name": "paused", "cron": "* * * * * *",
                     "script": report(&collector, "''")}))
        .await;

    let h = wait_history(&b, &bf, 15, "two scheduled runs", |h| {
        h.iter().filter(|r| r.done()).count() >= 2
    })
    .await;
    let first_run = h[0].scheduled;
    let to = h.iter().filter(|r| r.done()).nth(1).unwrap().scheduled;
    let from = (created - 10_000) / 2_000 * 2_000;
    let (status, v) = a
        .post(
            &format!("/api/job/backfill?id={bf}&from={from}&to={to}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let list = |k: &str| -> Vec<i64> {
        v["data"][k]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(ms_of)
            .collect()
    };
    let (queued, suppressed) = (list("queued"), list("suppressed"));
    let before_creation: Vec<i64> = (from..first_run).step_by(2_000).collect();
    assert_eq!(queued, before_creation, "what never ran is queued: {v}");
    assert_eq!(
        suppressed,
        (first_run..=to).step_by(2_000).collect::<Vec<_>>(),
        "what ran is suppressed: {v}"
    );

    // Pause the other job through node-b until a whole second 4 s ahead.
    let until = (now_ms() / 1_000 + 4) * 1_000;
    let (status, v) = b
        .post(&format!("/api/job/pause?id={pz}&until={until}"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let paused_at = now_ms();

    let h = wait_history(&b, &bf, 20, "the backfilled runs", |h| {
        h.iter()
            .filter(|r| r.trigger == "backfill" && r.done())
            .count()
            >= queued.len()
    })
    .await;
    let mut backfilled: Vec<&Rec> = h.iter().filter(|r| r.trigger == "backfill").collect();
    assert_eq!(
        backfilled.iter().map(|r| r.scheduled).collect::<Vec<_>>(),
        queued,
        "{h:#?}"
    );
    backfilled.sort_by_key(|r| r.started);
    assert_eq!(
        backfilled.iter().map(|r| r.scheduled).collect::<Vec<_>>(),
        queued,
        "oldest first"
    );
    for r in &backfilled {
        assert_eq!(r.node, "node-a", "a backfill runs on the node asked: {r:?}");
        assert_eq!(r.outcome, "succeeded", "{r:?}");
    }
    let ph = wait_history(&b, &pz, 15, "two runs after the pause", |h| {
        h.iter()
            .filter(|r| r.scheduled >= until && r.done())
            .count()
            >= 2
    })
    .await;
    b.enable(&bf, false).await;
    b.enable(&pz, false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Each backfilled instant ran exactly once, cluster-wide; so did every other.
    let hits = hits_of(&collector, &bf);
    for t in &queued {
        let n = hits.iter().find(|(at, _)| at == t).map_or(0, |(_, n)| *n);
        assert_eq!(n, 1, "{bf}@{t} ran {n} times");
    }
    for (at, n) in &hits {
        assert_eq!(*n, 1, "{bf}@{at} ran {n} times");
    }

    // The owner honoured the pause set through node-b (allowing a second for the
    // announcement to reach it).
    let in_pause: Vec<&Rec> = ph
        .iter()
        .filter(|r| r.scheduled >= paused_at + 1_000 && r.scheduled < until)
        .collect();
    assert!(in_pause.len() >= 2, "{ph:#?}");
    for r in &in_pause {
        assert_eq!(r.outcome, "skipped", "{r:?}");
        assert!(r.error.contains("paused"), "{r:?}");
        assert_eq!(r.node, "node-c", "the owner records the skip: {r:?}");
    }
    let pz_hits = hits_of(&collector, &pz);
    for r in &in_pause {
        assert!(
            !pz_hits.iter().any(|(at, _)| *at == r.scheduled),
            "{pz}@{} ran during the pause",
            r.scheduled
        );
    }
    for r in ph.iter().filter(|r| r.scheduled >= until) {
        assert!(r.ran() && r.node == "node-c", "{r:?}");
    }
    for (at, n) in pz_hits {
        assert_eq!(n, 1, "{pz}@{at} ran {n} times");
    }
}
