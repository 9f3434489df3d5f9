//! Conformance checks of the audit log (issue 7).

use std::sync::Arc;

use super::T0;
use crate::store::{AuditEntry, AuditListQuery, Store, StoreError};

fn entry(id: &str, at_ms: i64, actor: &str, action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        id: id.to_owned(),
        at_ms,
        actor: actor.to_owned(),
        node: "node-a".to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail_json: format!(r#"{{"of":"{id}","text":"é \" \\ 😀"}}"#),
    }
}

/// Appends entries `e0..e{n-1}`: actors `ci`/`alice` alternating, two per millisecond
/// (so keyset paging must break ties by id), actions and targets varied.
async fn seed(store: &Arc<dyn Store>, n: usize) -> Vec<AuditEntry> {
    let actions = [
        "job.create",
        "job.update",
        "secret.put",
        "jobxupdate",
        "job.delete",
    ];
    let mut all = Vec::new();
    for i in 0..n {
        let e = entry(
            &format!("e{i:02}"),
            T0 + (i / 2) as i64,
            if i % 2 == 0 { "ci" } else { "alice" },
            actions[i % actions.len()],
            if i % 3 == 0 { "job-1" } else { "job-2" },
        );
        store.append_audit(&e).await.expect("append");
        all.push(e);
    }
    all
}

fn newest_first(mut entries: Vec<AuditEntry>) -> Vec<AuditEntry> {
    entries.sort_by(|a, b| (b.at_ms, &b.id).cmp(&(a.at_ms, &a.id)));
    entries
}

fn ids(entries: &[AuditEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

async fn list(store: &Arc<dyn Store>, q: AuditListQuery) -> Vec<AuditEntry> {
    store.list_audit(&q).await.expect("list audit")
}

fn all(limit: u64) -> AuditListQuery {
    AuditListQuery {
        limit,
        ..Default::default()
    }
}

pub async fn check_audit_round_trip_and_order(store: &Arc<dyn Store>) {
    assert!(list(store, all(10)).await.is_empty());
    let seeded = seed(store, 10).await;
    let listed = list(store, all(100)).await;
    assert_eq!(
        listed,
        newest_first(seeded.clone()),
        "every field, newest first"
    );
    assert_eq!(ids(&listed)[..3], ["e09", "e08", "e07"]);
    // The same id again changes nothing.
    let again = AuditEntry {
        actor: "someone-else".into(),
        ..seeded[3].clone()
    };
    store.append_audit(&again).await.expect("append again");
    assert_eq!(list(store, all(100)).await, listed);
    assert_eq!(ids(&list(store, all(3)).await), ["e09", "e08", "e07"]);
}

pub async fn check_audit_filters_and_pages(store: &Arc<dyn Store>) {
    let seeded = seed(store, 15).await;
    let expect = |keep: &dyn Fn(&AuditEntry) -> bool| {
        let picked: Vec<AuditEntry> = seeded.iter().filter(|e| keep(e)).cloned().collect();
        ids(&newest_first(picked))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let q = AuditListQuery {
        target: Some("job-1".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(ids(&list(store, q).await), expect(&|e| e.target == "job-1"));
    let q = AuditListQuery {
        actor: Some("alice".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(ids(&list(store, q).await), expect(&|e| e.actor == "alice"));
    // A prefix is literal: `job.` is not a pattern that matches `jobxupdate`.
    let q = AuditListQuery {
        action_prefix: Some("job.".into()),
        limit: 100,
        ..Default::default()
    };
    let jobs = list(store, q).await;
    assert_eq!(ids(&jobs), expect(&|e| e.action.starts_with("job.")));
    assert!(!jobs.is_empty() && jobs.iter().all(|e| e.action != "jobxupdate"));
    for pattern in ["%", "_ob.", ".*", "job.c%"] {
        let q = AuditListQuery {
            action_prefix: Some(pattern.into()),
            limit: 100,
            ..Default::default()
        };
        assert!(list(store, q).await.is_empty(), "{pattern} is literal");
    }
    // Filters combine.
    let q = AuditListQuery {
        target: Some("job-2".into()),
        actor: Some("ci".into()),
        action_prefix: Some("job.".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(&list(store, q).await),
        expect(&|e| e.target == "job-2" && e.actor == "ci" && e.action.starts_with("job."))
    );

    // Keyset pages of 2 over entries two to a millisecond: nothing repeated or skipped.
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = list(
            store,
            AuditListQuery {
                before: before.clone(),
                limit: 2,
                ..Default::default()
            },
        )
        .await;
        walked.extend(page.iter().map(|e| e.id.clone()));
        match page.last() {
            Some(last) if page.len() == 2 => before = Some((last.at_ms, last.id.clone())),
            _ => break,
        }
    }
    assert_eq!(walked, expect(&|_| true));
    // An instant alone: strictly before that millisecond.
    let q = AuditListQuery {
        before: Some((T0 + 3, String::new())),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(ids(&list(store, q).await), expect(&|e| e.at_ms < T0 + 3));
    // A cursor and a filter together.
    let q = AuditListQuery {
        actor: Some("ci".into()),
        before: Some((T0 + 4, "e08".into())),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(&list(store, q).await),
        expect(&|e| e.actor == "ci" && (e.at_ms, e.id.as_str()) < (T0 + 4, "e08"))
    );
}

pub async fn check_audit_prune(store: &Arc<dyn Store>) {
    let seeded = seed(store, 12).await; // at T0 .. T0+5, two per ms
    assert_eq!(store.prune_audit(100, T0).await.expect("nothing"), 0);
    // By age: the two of T0 and the two of T0+1.
    assert_eq!(store.prune_audit(100, T0 + 2).await.expect("age"), 4);
    let left = list(store, all(100)).await;
    assert_eq!(
        ids(&left),
        ids(&newest_first(seeded[4..].to_vec())),
        "the newest stay"
    );
    // By count: the newest 3 stay, ties at a millisecond cut by id.
    assert_eq!(store.prune_audit(3, T0).await.expect("count"), 5);
    assert_eq!(ids(&list(store, all(100)).await), ["e11", "e10", "e09"]);
    // Both at once, whichever removes more.
    assert_eq!(store.prune_audit(2, T0 + 5).await.expect("both"), 1);
    assert_eq!(ids(&list(store, all(100)).await), ["e11", "e10"]);
    assert_eq!(store.prune_audit(0, i64::MIN).await.expect("all"), 2);
    assert!(list(store, all(100)).await.is_empty());
}

/// The entries about `target`, oldest first, as `action`s.
async fn actions_on(store: &Arc<dyn Store>, target: &str) -> Vec<String> {
    let mut q = all(100);
    q.target = Some(target.to_owned());
    let mut entries = list(store, q).await;
    entries.reverse();
    entries.into_iter().map(|e| e.action).collect()
}

/// A job write given an entry stores it with the change; a write that changes nothing
/// (a duplicate create, a stale or unknown update, the delete of a missing job) stores
/// none.
pub async fn check_job_writes_keep_their_audit_entry(store: &Arc<dyn Store>) {
    let job = super::sample_job("audited");
    let created = entry("a1", T0, "ci", "job.create", "audited");
    store
        .create_job_audited(&job, "s1", Some(&created))
        .await
        .expect("create");
    let again = entry("a2", T0 + 1, "ci", "job.create", "audited");
    let dup = store.create_job_audited(&job, "s1", Some(&again)).await;
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    assert_eq!(actions_on(store, "audited").await, ["job.create"]);
    let listed = list(store, all(10)).await;
    assert_eq!(listed, [created], "stored as given");

    let mut changed = job.clone();
    changed.version = job.version + 1;
    changed.script_version = job.script_version + 1;
    changed.name = "renamed".into();
    let updated = entry("a3", T0 + 2, "ci", "job.update", "audited");
    store
        .update_job_audited(&changed, Some("s2"), job.version, Some(&updated))
        .await
        .expect("update");
    let stale = entry("a4", T0 + 3, "ci", "job.update", "audited");
    let conflict = store
        .update_job_audited(&changed, None, job.version, Some(&stale))
        .await;
    assert!(
        matches!(conflict, Err(StoreError::VersionConflict { .. })),
        "{conflict:?}"
    );
    let mut ghost = changed.clone();
    ghost.id = "ghost".into();
    let unknown = entry("a5", T0 + 4, "ci", "job.update", "ghost");
    let missing = store
        .update_job_audited(&ghost, None, changed.version, Some(&unknown))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert_eq!(
        actions_on(store, "audited").await,
        ["job.create", "job.update"]
    );

    let deleted = entry("a6", T0 + 5, "ci", "job.delete", "audited");
    assert!(
        store
            .delete_job_audited("audited", Some(&deleted))
            .await
            .expect("delete")
    );
    let twice = entry("a7", T0 + 6, "ci", "job.delete", "audited");
    assert!(
        !store
            .delete_job_audited("audited", Some(&twice))
            .await
            .expect("delete again")
    );
    assert_eq!(
        actions_on(store, "audited").await,
        ["job.create", "job.update", "job.delete"],
        "the entries outlive the job they are about"
    );
    assert!(actions_on(store, "ghost").await.is_empty());
}

/// Many concurrent audited creates, a tenth of them duplicates of another: every job
/// created has its one entry and no refused create left one, however the store groups
/// the writes.
pub async fn check_concurrent_audited_creates(store: &Arc<dyn Store>) {
    // More tasks than the PostgreSQL store commits at once, so its groups form.
    const TASKS: usize = 24;
    const PER_TASK: usize = 50;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for i in 0..PER_TASK {
                // Every tenth create reuses the id of task 0's create of the same i.
                let id = if t > 0 && i % 10 == 0 {
                    format!("c-0-{i}")
                } else {
                    format!("c-{t}-{i}")
                };
                let e = entry(&format!("e-{t}-{i}"), T0, "ci", "job.create", &id);
                match store
                    .create_job_audited(&super::sample_job(&id), "s", Some(&e))
                    .await
                {
                    Ok(()) => created.push(e.id),
                    Err(StoreError::Duplicate(_)) => {}
                    Err(err) => panic!("create {id}: {err}"),
                }
            }
            created
        }));
    }
    let mut created = Vec::new();
    for h in handles {
        created.extend(h.await.expect("task"));
    }
    assert_eq!(
        created.len(),
        TASKS * PER_TASK - (TASKS - 1) * PER_TASK / 10
    );
    let mut stored: Vec<String> = list(store, all(10_000))
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    stored.sort();
    created.sort();
    assert_eq!(
        stored, created,
        "one entry per job created, none for refusals"
    );
}

/// Secret writes and kv deletes given an entry store it with the change; a delete that
/// finds nothing stores none.
pub async fn check_secret_and_kv_writes_keep_their_audit_entry(store: &Arc<dyn Store>) {
    let put = entry("s1", T0, "ci", "secret.put", "API_KEY");
    store
        .put_secret_audited("API_KEY", b"sealed", T0, Some(&put))
        .await
        .expect("put secret");
    let gone = entry("s2", T0 + 1, "ci", "secret.delete", "API_KEY");
    assert!(
        store
            .delete_secret_audited("API_KEY", Some(&gone))
            .await
            .expect("delete secret")
    );
    let again = entry("s3", T0 + 2, "ci", "secret.delete", "API_KEY");
    assert!(
        !store
            .delete_secret_audited("API_KEY", Some(&again))
            .await
            .expect("delete secret again")
    );
    assert_eq!(
        actions_on(store, "API_KEY").await,
        ["secret.put", "secret.delete"]
    );

    store
        .create_job(&super::sample_job("with-kv"), "s")
        .await
        .expect("create");
    let caps = crate::store::KvCaps {
        max_keys: 10,
        max_total_bytes: 1_000,
    };
    store
        .kv_set("with-kv", "k", "1", caps)
        .await
        .expect("kv set");
    let deleted = entry("k1", T0 + 3, "alice", "kv.delete", "with-kv");
    assert!(
        store
            .kv_delete_audited("with-kv", "k", Some(&deleted))
            .await
            .expect("kv delete")
    );
    let missing = entry("k2", T0 + 4, "alice", "kv.delete", "with-kv");
    assert!(
        !store
            .kv_delete_audited("with-kv", "k", Some(&missing))
            .await
            .expect("kv delete again")
    );
    assert_eq!(actions_on(store, "with-kv").await, ["kv.delete"]);
    let ids: Vec<String> = list(store, all(10))
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["k1", "s2", "s1"], "nothing else was stored");
}
