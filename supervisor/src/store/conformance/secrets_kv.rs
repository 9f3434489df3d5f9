//! Conformance checks of secrets, grants and per-job kv (issue 7).

use std::sync::Arc;

use super::{T0, get, sample_job};
use crate::store::{KvCaps, KvSet, Store, StoreError};

pub async fn check_secrets_round_trip(store: &Arc<dyn Store>) {
    assert!(store.list_secrets().await.expect("list").is_empty());
    store
        .put_secret("B_KEY", b"sealed-b", T0)
        .await
        .expect("put b");
    store
        .put_secret("A_KEY", b"sealed-a", T0 + 1)
        .await
        .expect("put a");
    store
        .put_secret("A_KEY", b"sealed-a2", T0 + 5)
        .await
        .expect("replace a");
    let list = store.list_secrets().await.expect("list");
    let names: Vec<_> = list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["A_KEY", "B_KEY"], "listed by name");
    assert_eq!(
        (list[0].created_at_ms, list[0].updated_at_ms),
        (T0 + 1, T0 + 5)
    );
    let sealed = store
        .sealed_secrets(&["A_KEY".into(), "NOPE".into(), "B_KEY".into()])
        .await
        .expect("sealed");
    assert_eq!(
        sealed,
        [
            ("A_KEY".to_owned(), b"sealed-a2".to_vec()),
            ("B_KEY".to_owned(), b"sealed-b".to_vec())
        ]
    );
    assert!(store.delete_secret("A_KEY").await.expect("delete"));
    assert!(!store.delete_secret("A_KEY").await.expect("delete again"));
    assert_eq!(store.list_secrets().await.expect("list").len(), 1);
}

pub async fn check_grants_round_trip(store: &Arc<dyn Store>) {
    let job = crate::job::Job {
        secrets: vec!["API_TOKEN".into(), "DB_PASS".into()],
        ..sample_job("g1")
    };
    store.create_job(&job, "s").await.expect("create");
    assert_eq!(get(&**store, "g1").await.secrets, job.secrets);
    let changed = crate::job::Job {
        secrets: vec!["ONLY".into()],
        version: 2,
        ..job.clone()
    };
    store.update_job(&changed, None, 1).await.expect("update");
    assert_eq!(get(&**store, "g1").await.secrets, ["ONLY"]);
    let none = crate::job::Job {
        secrets: Vec::new(),
        version: 3,
        ..changed
    };
    store.update_job(&none, None, 2).await.expect("update");
    assert!(get(&**store, "g1").await.secrets.is_empty());
}

pub async fn check_kv_round_trip(store: &Arc<dyn Store>) {
    let caps = KvCaps::default();
    store
        .create_job(&sample_job("k1"), "s")
        .await
        .expect("create");
    store
        .create_job(&sample_job("k2"), "s")
        .await
        .expect("create");
    assert_eq!(store.kv_get("k1", "a").await.expect("get"), None);
    let set = |job: &'static str, k: &'static str, v: &'static str| {
        let store = store.clone();
        async move { store.kv_set(job, k, v, caps).await.expect("set") }
    };
    assert_eq!(set("k1", "b", "1").await, KvSet::Stored);
    assert_eq!(set("k1", "a", "{\"x\":1}").await, KvSet::Stored);
    assert_eq!(set("k1", "a", "2").await, KvSet::Stored);
    assert_eq!(set("k2", "a", "\"other\"").await, KvSet::Stored);
    assert_eq!(
        store.kv_get("k1", "a").await.expect("get").as_deref(),
        Some("2")
    );
    assert_eq!(
        store.kv_list("k1").await.expect("list"),
        [
            ("a".to_owned(), "2".to_owned()),
            ("b".to_owned(), "1".to_owned())
        ]
    );
    assert!(store.kv_delete("k1", "a").await.expect("delete"));
    assert!(!store.kv_delete("k1", "a").await.expect("delete again"));
    assert_eq!(
        store.kv_get("k2", "a").await.expect("get").as_deref(),
        Some("\"other\"")
    );
    match store.kv_set("nope", "a", "1", caps).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("a set for an unknown job must be NotFound, got {other:?}"),
    }
    // Deleted with the job.
    assert!(store.delete_job("k2").await.expect("delete job"));
    store
        .create_job(&sample_job("k2"), "s")
        .await
        .expect("create again");
    assert!(store.kv_list("k2").await.expect("list").is_empty());
}

pub async fn check_kv_caps(store: &Arc<dyn Store>) {
    let caps = KvCaps {
        max_keys: 3,
        max_total_bytes: 20,
    };
    store
        .create_job(&sample_job("c1"), "s")
        .await
        .expect("create");
    for k in ["a", "b", "c"] {
        assert_eq!(
            store.kv_set("c1", k, "1", caps).await.expect("set"),
            KvSet::Stored
        );
    }
    assert_eq!(
        store.kv_set("c1", "d", "1", caps).await.expect("set"),
        KvSet::TooManyKeys
    );
    // Replacing an existing key is not a new key; 3 keys, 2+2+(1+14) = 19 bytes.
    assert_eq!(
        store
            .kv_set("c1", "c", "12345678901234", caps)
            .await
            .expect("set"),
        KvSet::Stored
    );
    assert_eq!(
        store
            .kv_set("c1", "c", "1234567890123456", caps)
            .await
            .expect("set"),
        KvSet::TooLarge
    );
    assert_eq!(
        store.kv_get("c1", "c").await.expect("get").as_deref(),
        Some("12345678901234"),
        "a refused set changes nothing"
    );
    assert_eq!(store.kv_list("c1").await.expect("list").len(), 3);
}
