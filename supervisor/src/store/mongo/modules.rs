//! Shared modules in the MongoDB store: `<cluster>_modules` (`_id` the name; `version`
//! the last number handed out) and `<cluster>_module_versions` (`_id` `{name, version}`,
//! immutable documents with `source`, `note`, `bytes`).
//!
//! Without transactions a save takes its number first (`$inc` on the module document,
//! atomic, so concurrent saves on any node get different numbers), then writes the
//! version. The current version is therefore the highest version *document*, never the
//! counter: a save that died between the two writes leaves a gap in the numbers, not a
//! current version without a source.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;

use super::extras::{field_i64, field_str};
use super::{Ctx as _, MongoStore};
use crate::store::{ModuleMeta, ModuleStore, ModuleVersion, StoreError, StoreResult};

fn version_of(d: &Document) -> StoreResult<u64> {
    let v = field_i64(d, "version")?;
    u64::try_from(v).map_err(|_| StoreError::Other(anyhow::anyhow!("negative module version")))
}

fn to_version(d: &Document, with_source: bool) -> StoreResult<ModuleVersion> {
    let source = if with_source {
        Some(field_str(d, "source")?)
    } else {
        None
    };
    Ok(ModuleVersion {
        name: field_str(d, "name")?,
        version: version_of(d)?,
        note: field_str(d, "note")?,
        bytes: u64::try_from(field_i64(d, "bytes")?).unwrap_or(0),
        created_at_ms: field_i64(d, "created_at_ms")?,
        source,
    })
}

#[async_trait]
impl ModuleStore for MongoStore {
    async fn put_module(
        &self,
        name: &str,
        source: &str,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        let _permit = self.enter()?;
        let head = self
            .modules
            .find_one_and_update(
                doc! { "_id": name },
                doc! {
                    "$inc": { "version": 1_i64 },
                    "$set": { "updated_at_ms": now_ms },
                    "$setOnInsert": { "created_at_ms": now_ms },
                },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .ctx("save module")?
            .ok_or_else(|| StoreError::Other(anyhow::anyhow!("save module: no document")))?;
        let version = version_of(&head)?;
        let v = i64::try_from(version).unwrap_or(i64::MAX);
        self.module_versions
            .insert_one(doc! {
                "_id": { "name": name, "version": v },
                "name": name,
                "version": v,
                "source": source,
                "note": note,
                "bytes": source.len() as i64,
                "created_at_ms": now_ms,
            })
            .await
            .ctx("save module version")?;
        Ok(version)
    }

    async fn delete_module(&self, name: &str) -> StoreResult<bool> {
        let _permit = self.enter()?;
        let n = self
            .modules
            .delete_one(doc! { "_id": name })
            .await
            .ctx("delete module")?
            .deleted_count;
        self.module_versions
            .delete_many(doc! { "name": name })
            .await
            .ctx("delete module versions")?;
        Ok(n > 0)
    }

    async fn list_modules(&self) -> StoreResult<Vec<ModuleMeta>> {
        let _permit = self.enter()?;
        let heads: Vec<Document> = self
            .modules
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .ctx("list modules")?
            .try_collect()
            .await
            .ctx("list modules")?;
        let names: Vec<String> = heads
            .iter()
            .map(|d| field_str(d, "_id"))
            .collect::<StoreResult<_>>()?;
        let newest = self.newest_versions(&names).await?;
        let mut out = Vec::with_capacity(newest.len());
        for v in newest {
            let Some(head) = heads
                .iter()
                .find(|d| d.get_str("_id").is_ok_and(|n| n == v.name))
            else {
                continue;
            };
            out.push(ModuleMeta {
                created_at_ms: field_i64(head, "created_at_ms")?,
                updated_at_ms: v.created_at_ms,
                name: v.name,
                version: v.version,
                note: v.note,
                bytes: v.bytes,
            });
        }
        Ok(out)
    }

    async fn module_heads(&self, names: &[String]) -> StoreResult<Vec<(String, u64)>> {
        let _permit = self.enter()?;
        Ok(self
            .newest_versions(names)
            .await?
            .into_iter()
            .map(|v| (v.name, v.version))
            .collect())
    }

    async fn list_module_versions(&self, name: &str) -> StoreResult<Vec<ModuleVersion>> {
        let _permit = self.enter()?;
        let docs: Vec<Document> = self
            .module_versions
            .find(doc! { "name": name })
            .projection(doc! { "source": 0 })
            .sort(doc! { "version": -1 })
            .await
            .ctx("module versions")?
            .try_collect()
            .await
            .ctx("module versions")?;
        docs.iter().map(|d| to_version(d, false)).collect()
    }

    async fn get_module_version(
        &self,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<ModuleVersion>> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let _permit = self.enter()?;
        match self
            .module_versions
            .find_one(doc! { "_id": { "name": name, "version": v } })
            .await
            .ctx("module version")?
        {
            Some(d) => Ok(Some(to_version(&d, true)?)),
            None => Ok(None),
        }
    }
}

impl MongoStore {
    /// The newest version document of each of `names` that has one, without sources.
    async fn newest_versions(&self, names: &[String]) -> StoreResult<Vec<ModuleVersion>> {
        let pipeline = [
            doc! { "$match": { "name": { "$in": names } } },
            doc! { "$project": { "source": 0 } },
            doc! { "$sort": { "name": 1, "version": -1 } },
            doc! { "$group": { "_id": "$name", "newest": { "$first": "$$ROOT" } } },
            doc! { "$replaceRoot": { "newRoot": "$newest" } },
            doc! { "$sort": { "name": 1 } },
        ];
        let docs: Vec<Document> = self
            .module_versions
            .aggregate(pipeline)
            .await
            .ctx("newest module versions")?
            .try_collect()
            .await
            .ctx("newest module versions")?;
        docs.iter().map(|d| to_version(d, false)).collect()
    }
}
