//! The audit log in the MongoDB store: `<cluster>_audit`, `_id` the entry's id, listed
//! newest first by `(at_ms, _id)` (index `by_time`, and `by_target` for one target's
//! entries). Additive, like secrets and kv: the schema version stays 2.

use anyhow::anyhow;
use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::docs::{int, literal_regex, string};
use super::{Ctx as _, MongoStore, PRUNE_CHUNK, is_duplicate_key, limit_i64, mongo_err};
use crate::store::{AuditEntry, AuditListQuery, AuditStore, StoreError, StoreResult};

fn read_entry(d: &Document) -> anyhow::Result<AuditEntry> {
    Ok(AuditEntry {
        id: string(d, "_id")?,
        at_ms: int(d, "at_ms")?,
        actor: string(d, "actor")?,
        node: string(d, "node")?,
        action: string(d, "action")?,
        target: string(d, "target")?,
        detail_json: string(d, "detail")?,
    })
}

/// Entries at or before `(at_ms, id)` in the list's order (`strict`: before only).
fn up_to(at_ms: i64, id: &str, strict: bool) -> Document {
    let op = if strict { "$lt" } else { "$lte" };
    doc! { "$or": [
        { "at_ms": { "$lt": at_ms } },
        { "at_ms": at_ms, "_id": { op: id } },
    ] }
}

#[async_trait]
impl AuditStore for MongoStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let _permit = self.enter()?;
        let entry = doc! {
            "_id": &e.id,
            "at_ms": e.at_ms,
            "actor": &e.actor,
            "node": &e.node,
            "action": &e.action,
            "target": &e.target,
            "detail": &e.detail_json,
        };
        match self.audit.insert_one(entry).await {
            Ok(_) => Ok(()),
            // Appended before: the same entry again changes nothing.
            Err(err) if is_duplicate_key(&err) => Ok(()),
            Err(err) => Err(mongo_err(err, "append audit")),
        }
    }

    async fn list_audit(&self, q: &AuditListQuery) -> StoreResult<Vec<AuditEntry>> {
        let _permit = self.enter()?;
        let mut filter = doc! {};
        if let Some(t) = &q.target {
            filter.insert("target", t.as_str());
        }
        if let Some(a) = &q.actor {
            filter.insert("actor", a.as_str());
        }
        if let Some(a) = &q.action_prefix {
            filter.insert(
                "action",
                doc! { "$regex": format!("^{}", literal_regex(a)) },
            );
        }
        if let Some((ms, id)) = &q.before {
            filter.extend(up_to(*ms, id, true));
        }
        let docs: Vec<Document> = self
            .audit
            .find(filter)
            .sort(doc! { "at_ms": -1, "_id": -1 })
            .limit(limit_i64(q.limit))
            .await
            .ctx("list audit")?
            .try_collect()
            .await
            .ctx("list audit")?;
        docs.iter()
            .map(read_entry)
            .collect::<anyhow::Result<_>>()
            .ctx("read audit entries")
    }

    async fn prune_audit(&self, keep: u64, older_than_ms: i64) -> StoreResult<u64> {
        let _permit = self.enter()?;
        // The newest entry that is not kept; it and everything older go.
        let cut = self
            .audit
            .find_one(doc! {})
            .sort(doc! { "at_ms": -1, "_id": -1 })
            .skip(keep)
            .projection(doc! { "_id": 1, "at_ms": 1 })
            .await
            .ctx("find the oldest audit entry to keep")?;
        let mut doomed = vec![doc! { "at_ms": { "$lt": older_than_ms } }];
        if let Some(cut) = cut {
            let at = int(&cut, "at_ms").ctx("read audit entry")?;
            let id = string(&cut, "_id").ctx("read audit entry")?;
            doomed.push(up_to(at, &id, false));
        }
        let filter = doc! { "$or": doomed };
        let mut total = 0;
        loop {
            let ids: Vec<Bson> = self
                .audit
                .find(filter.clone())
                .projection(doc! { "_id": 1 })
                .limit(PRUNE_CHUNK)
                .await
                .ctx("find audit entries to prune")?
                .try_collect::<Vec<Document>>()
                .await
                .ctx("find audit entries to prune")?
                .into_iter()
                .map(|d| {
                    d.get("_id")
                        .cloned()
                        .ok_or_else(|| StoreError::Other(anyhow!("an audit entry without _id")))
                })
                .collect::<StoreResult<_>>()?;
            let n = ids.len();
            if n > 0 {
                total += self
                    .audit
                    .delete_many(doc! { "_id": { "$in": ids } })
                    .await
                    .ctx("prune audit")?
                    .deleted_count;
            }
            if (n as i64) < PRUNE_CHUNK {
                return Ok(total);
            }
        }
    }
}
