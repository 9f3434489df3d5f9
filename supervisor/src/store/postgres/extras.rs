//! Secrets and per-job kv in the PostgreSQL store. A kv set locks its job's row
//! (`FOR UPDATE`) while it checks the caps and writes, so concurrent sets of one job, on
//! any node, cannot both squeeze under a cap.

use async_trait::async_trait;

use tokio_postgres::types::ToSql;

use super::audit::{AuditParams, audit_clause, deleted};
use super::{Ctx as _, PostgresStore};
use crate::store::{
    AuditEntry, KvCaps, KvSet, KvStore, SecretMeta, SecretStore, StoreError, StoreResult,
};

#[async_trait]
impl SecretStore for PostgresStore {
    async fn put_secret_audited(
        &self,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        // One statement: the secret and its audit entry, both or neither.
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "WITH p AS (INSERT INTO {{s}}.secrets (name, sealed, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO UPDATE SET \
                 sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms \
                 RETURNING name), {} SELECT count(*) FROM p",
                audit_clause("p", 4)
            )))
            .await
            .ctx("prepare put secret")?;
        let audit = AuditParams::of(audit);
        let mut args: Vec<&(dyn ToSql + Sync)> = vec![&name, &sealed, &now_ms];
        args.extend(audit.params());
        client.query_one(&stmt, &args).await.ctx("put secret")?;
        Ok(())
    }

    async fn list_secrets(&self) -> StoreResult<Vec<SecretMeta>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt =
            client
                .prepare_cached(&inner.sql(
                    "SELECT name, created_at_ms, updated_at_ms FROM {s}.secrets ORDER BY name",
                ))
                .await
                .ctx("prepare list secrets")?;
        let rows = client.query(&stmt, &[]).await.ctx("list secrets")?;
        rows.iter()
            .map(|r| {
                Ok(SecretMeta {
                    name: r.try_get(0)?,
                    created_at_ms: r.try_get(1)?,
                    updated_at_ms: r.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .ctx("read secrets")
    }

    async fn sealed_secrets(&self, names: &[String]) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(
                &inner
                    .sql("SELECT name, sealed FROM {s}.secrets WHERE name = ANY($1) ORDER BY name"),
            )
            .await
            .ctx("prepare read secrets")?;
        let rows = client.query(&stmt, &[&names]).await.ctx("read secrets")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .ctx("read secrets")
    }

    async fn delete_secret_audited(
        &self,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "WITH d AS (DELETE FROM {{s}}.secrets WHERE name = $1 RETURNING name), {} \
                 SELECT count(*) FROM d",
                audit_clause("d", 2)
            )))
            .await
            .ctx("prepare delete secret")?;
        deleted(&client, &stmt, &[&name], audit, "delete secret").await
    }
}

#[async_trait]
impl KvStore for PostgresStore {
    async fn kv_get(&self, job_id: &str, key: &str) -> StoreResult<Option<String>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(
                &inner.sql("SELECT value_json FROM {s}.job_kv WHERE job_id = $1 AND key = $2"),
            )
            .await
            .ctx("prepare kv get")?;
        match client
            .query_opt(&stmt, &[&job_id, &key])
            .await
            .ctx("kv get")?
        {
            Some(row) => Ok(Some(row.try_get(0).ctx("read kv value")?)),
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
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let mut client = inner.client().await?;
        let tx = client.transaction().await.ctx("begin kv set")?;
        let lock = tx
            .query_opt(
                &inner.sql("SELECT 1 FROM {s}.jobs WHERE id = $1 FOR UPDATE"),
                &[&job_id],
            )
            .await
            .ctx("lock job for kv set")?;
        if lock.is_none() {
            return Err(StoreError::NotFound(job_id.to_owned()));
        }
        let usage = tx
            .query_one(
                &inner.sql(
                    "SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value_json)), 0)::bigint, \
                     sum(CASE WHEN key = $2 THEN octet_length(key) + octet_length(value_json) END)::bigint \
                     FROM {s}.job_kv WHERE job_id = $1",
                ),
                &[&job_id, &key],
            )
            .await
            .ctx("kv usage")?;
        let keys: i64 = usage.try_get(0).ctx("read kv usage")?;
        let bytes: i64 = usage.try_get(1).ctx("read kv usage")?;
        let old: Option<i64> = usage.try_get(2).ctx("read kv usage")?;
        if old.is_none() && u64::try_from(keys).unwrap_or(u64::MAX) >= caps.max_keys {
            return Ok(KvSet::TooManyKeys);
        }
        let total = bytes - old.unwrap_or(0) + (key.len() + value_json.len()) as i64;
        if u64::try_from(total).unwrap_or(u64::MAX) > caps.max_total_bytes {
            return Ok(KvSet::TooLarge);
        }
        tx.execute(
            &inner.sql(
                "INSERT INTO {s}.job_kv (job_id, key, value_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (job_id, key) DO UPDATE SET value_json = excluded.value_json",
            ),
            &[&job_id, &key, &value_json],
        )
        .await
        .ctx("kv set")?;
        tx.commit().await.ctx("commit kv set")?;
        Ok(KvSet::Stored)
    }

    async fn kv_delete_audited(
        &self,
        job_id: &str,
        key: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "WITH d AS (DELETE FROM {{s}}.job_kv WHERE job_id = $1 AND key = $2 \
                 RETURNING key), {} SELECT count(*) FROM d",
                audit_clause("d", 3)
            )))
            .await
            .ctx("prepare kv delete")?;
        deleted(&client, &stmt, &[&job_id, &key], audit, "kv delete").await
    }

    async fn kv_list(&self, job_id: &str) -> StoreResult<Vec<(String, String)>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(
                &inner.sql("SELECT key, value_json FROM {s}.job_kv WHERE job_id = $1 ORDER BY key"),
            )
            .await
            .ctx("prepare kv list")?;
        let rows = client.query(&stmt, &[&job_id]).await.ctx("kv list")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .ctx("read kv")
    }
}
