//! Conformance checks of shared modules (issue 7).

use std::sync::Arc;

use futures_util::future::join_all;

use super::T0;
use crate::store::Store;

pub async fn check_modules_round_trip(store: &Arc<dyn Store>) {
    assert!(store.list_modules().await.expect("list").is_empty());
    assert_eq!(
        store
            .put_module("util/b", "exports.b = 1", "first", T0)
            .await
            .expect("put"),
        1
    );
    assert_eq!(
        store
            .put_module("a", "export const a = 1", "", T0 + 1)
            .await
            .expect("put"),
        1
    );
    assert_eq!(
        store
            .put_module("a", "export const a = 2", "two", T0 + 5)
            .await
            .expect("put again"),
        2
    );
    let list = store.list_modules().await.expect("list");
    let names: Vec<_> = list.iter().map(|m| (m.name.as_str(), m.version)).collect();
    assert_eq!(
        names,
        [("a", 2), ("util/b", 1)],
        "listed by name, current versions"
    );
    let a = &list[0];
    assert_eq!((a.note.as_str(), a.bytes), ("two", 18));
    assert_eq!((a.created_at_ms, a.updated_at_ms), (T0 + 1, T0 + 5));

    let heads = store
        .module_heads(&["util/b".into(), "missing".into(), "a".into()])
        .await
        .expect("heads");
    assert_eq!(heads, [("a".to_owned(), 2), ("util/b".to_owned(), 1)]);

    let versions = store.list_module_versions("a").await.expect("versions");
    let listed: Vec<_> = versions
        .iter()
        .map(|v| (v.version, v.note.as_str(), v.source.is_none()))
        .collect();
    assert_eq!(
        listed,
        [(2, "two", true), (1, "", true)],
        "newest first, no sources"
    );
    let one = store
        .get_module_version("a", 1)
        .await
        .expect("get")
        .expect("version 1");
    assert_eq!(one.source.as_deref(), Some("export const a = 1"));
    assert_eq!((one.created_at_ms, one.bytes), (T0 + 1, 18));
    assert!(
        store
            .get_module_version("a", 3)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_module_version("nope", 1)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .list_module_versions("nope")
            .await
            .expect("versions")
            .is_empty()
    );
}

pub async fn check_module_delete(store: &Arc<dyn Store>) {
    store.put_module("gone", "1", "", T0).await.expect("put");
    store.put_module("gone", "2", "", T0).await.expect("put");
    store.put_module("kept", "3", "", T0).await.expect("put");
    assert!(store.delete_module("gone").await.expect("delete"));
    assert!(!store.delete_module("gone").await.expect("delete again"));
    assert!(
        store
            .get_module_version("gone", 1)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .list_module_versions("gone")
            .await
            .expect("versions")
            .is_empty()
    );
    let names: Vec<_> = store
        .list_modules()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["kept"]);
    // A module saved again after a delete starts over.
    assert_eq!(store.put_module("gone", "4", "", T0).await.expect("put"), 1);
}

pub async fn check_concurrent_module_saves(store: &Arc<dyn Store>) {
    let saves = (0..20).map(|i| {
        let store = store.clone();
        async move {
            store
                .put_module("busy", &format!("exports.i = {i}"), "", T0 + i)
                .await
                .expect("put")
        }
    });
    let mut versions = join_all(saves).await;
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=20).collect::<Vec<u64>>(),
        "every save its own number"
    );
    let head = store.module_heads(&["busy".into()]).await.expect("heads");
    assert_eq!(head, [("busy".to_owned(), 20)]);
    assert_eq!(
        store
            .list_module_versions("busy")
            .await
            .expect("versions")
            .len(),
        20
    );
}
