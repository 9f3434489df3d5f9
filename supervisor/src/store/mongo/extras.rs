//! Secrets and per-job kv in the MongoDB store: `<cluster>_secrets` (`_id` the name) and
//! `<cluster>_kv` (`_id` `{job, key}`, with `job_id` and `key` for the index).
//!
//! A kv set reads the job's usage, then upserts: MongoDB 4.2 without a replica set
//! has no transactions, so two concurrent sets of one job may together exceed a cap by
//! one value. The delete of a job also deletes its kv (see `delete_job`).

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};

use super::{Ctx as _, MongoStore};
use crate::store::{
    AuditEntry, KvCaps, KvSet, KvStore, SecretMeta, SecretStore, StoreError, StoreResult,
};

pub(super) fn field_str(d: &Document, key: &str) -> StoreResult<String> {
    d.get_str(key)
        .map(str::to_owned)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("read field {key}: {e}")))
}

pub(super) fn field_i64(d: &Document, key: &str) -> StoreResult<i64> {
    match d.get(key) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        _ => Err(StoreError::Other(anyhow::anyhow!(
            "field {key} is not an integer"
        ))),
    }
}

fn kv_id(job_id: &str, key: &str) -> Document {
    doc! { "job": job_id, "key": key }
}

#[async_trait]
impl SecretStore for MongoStore {
    async fn put_secret_audited(
        &self,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        self.put_secret_only(name, sealed, now_ms).await?;
        self.audit_after(audit).await;
        Ok(())
    }

    async fn delete_secret_audited(
        &self,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        let deleted = self.delete_secret_only(name).await?;
        if deleted {
            self.audit_after(audit).await;
        }
        Ok(deleted)
    }

    async fn list_secrets(&self) -> StoreResult<Vec<SecretMeta>> {
        let _permit = self.enter()?;
        let docs: Vec<Document> = self
            .secrets
            .find(doc! {})
            .projection(doc! { "sealed": 0 })
            .sort(doc! { "_id": 1 })
            .await
            .ctx("list secrets")?
            .try_collect()
            .await
            .ctx("list secrets")?;
        docs.iter()
            .map(|d| {
                Ok(SecretMeta {
                    name: field_str(d, "_id")?,
                    created_at_ms: field_i64(d, "created_at_ms")?,
                    updated_at_ms: field_i64(d, "updated_at_ms")?,
                })
            })
            .collect()
    }

    async fn sealed_secrets(&self, names: &[String]) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let _permit = self.enter()?;
        let docs: Vec<Document> = self
            .secrets
            .find(doc! { "_id": { "$in": names } })
            .sort(doc! { "_id": 1 })
            .await
            .ctx("read secrets")?
            .try_collect()
            .await
            .ctx("read secrets")?;
        docs.iter()
            .map(|d| {
                let sealed = d
                    .get_binary_generic("sealed")
                    .map_err(|e| StoreError::Other(anyhow::anyhow!("read sealed secret: {e}")))?;
                Ok((field_str(d, "_id")?, sealed.clone()))
            })
            .collect()
    }
}

#[async_trait]
impl KvStore for MongoStore {
    async fn kv_delete_audited(
        &self,
        job_id: &str,
        key: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        let deleted = self.kv_delete_only(job_id, key).await?;
        if deleted {
            self.audit_after(audit).await;
        }
        Ok(deleted)
    }

    async fn kv_get(&self, job_id: &str, key: &str) -> StoreResult<Option<String>> {
        let _permit = self.enter()?;
        match self
            .kv
            .find_one(doc! { "_id": kv_id(job_id, key) })
            .await
            .ctx("kv get")?
        {
            Some(d) => Ok(Some(field_str(&d, "value_json")?)),
            None => Ok(None),
        }
    }

    async fn kv_set(
        &self,
        job_id: &str,
        key: &str,
        value_json: &str,
        caps: KvCaps,
    ) -> StoreResult<KvSet> {
        let _permit = self.enter()?;
        if self
            .jobs
            .find_one(doc! { "_id": job_id })
            .projection(doc! { "_id": 1 })
            .await
            .ctx("find job")?
            .is_none()
        {
            return Err(StoreError::NotFound(job_id.to_owned()));
        }
        let entries: Vec<Document> = self
            .kv
            .find(doc! { "job_id": job_id })
            .await
            .ctx("kv usage")?
            .try_collect()
            .await
            .ctx("kv usage")?;
        let (mut bytes, mut old) = (0u64, None);
        for d in &entries {
            let k = field_str(d, "key")?;
            let n = (k.len() + field_str(d, "value_json")?.len()) as u64;
            if k == key {
                old = Some(n);
            }
            bytes += n;
        }
        if old.is_none() && entries.len() as u64 >= caps.max_keys {
            return Ok(KvSet::TooManyKeys);
        }
        let total = bytes - old.unwrap_or(0) + (key.len() + value_json.len()) as u64;
        if total > caps.max_total_bytes {
            return Ok(KvSet::TooLarge);
        }
        self.kv
            .update_one(
                doc! { "_id": kv_id(job_id, key) },
                doc! { "$set": { "job_id": job_id, "key": key, "value_json": value_json } },
            )
            .upsert(true)
            .await
            .ctx("kv set")?;
        Ok(KvSet::Stored)
    }

    async fn kv_list(&self, job_id: &str) -> StoreResult<Vec<(String, String)>> {
        let _permit = self.enter()?;
        let docs: Vec<Document> = self
            .kv
            .find(doc! { "job_id": job_id })
            .sort(doc! { "key": 1 })
            .await
            .ctx("kv list")?
            .try_collect()
            .await
            .ctx("kv list")?;
        docs.iter()
            .map(|d| Ok((field_str(d, "key")?, field_str(d, "value_json")?)))
            .collect()
    }
}

/// The writes without their audit entries (MongoDB appends those right after).
impl MongoStore {
    async fn put_secret_only(&self, name: &str, sealed: &[u8], now_ms: i64) -> StoreResult<()> {
        let _permit = self.enter()?;
        let bytes = Binary {
            subtype: BinarySubtype::Generic,
            bytes: sealed.to_vec(),
        };
        self.secrets
            .update_one(
                doc! { "_id": name },
                doc! {
                    "$set": { "sealed": bytes, "updated_at_ms": now_ms },
                    "$setOnInsert": { "created_at_ms": now_ms },
                },
            )
            .upsert(true)
            .await
            .ctx("put secret")?;
        Ok(())
    }

    async fn delete_secret_only(&self, name: &str) -> StoreResult<bool> {
        let _permit = self.enter()?;
        let n = self
            .secrets
            .delete_one(doc! { "_id": name })
            .await
            .ctx("delete secret")?
            .deleted_count;
        Ok(n > 0)
    }

    async fn kv_delete_only(&self, job_id: &str, key: &str) -> StoreResult<bool> {
        let _permit = self.enter()?;
        let n = self
            .kv
            .delete_one(doc! { "_id": kv_id(job_id, key) })
            .await
            .ctx("kv delete")?
            .deleted_count;
        Ok(n > 0)
    }
}
