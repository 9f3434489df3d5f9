//! Shared modules in the PostgreSQL store. A save bumps the module's version with one
//! upsert (the row lock makes concurrent saves, on any node, take turns) and writes the
//! version row in the same transaction.

use async_trait::async_trait;

use super::{Ctx as _, PostgresStore};
use crate::store::{ModuleMeta, ModuleStore, ModuleVersion, StoreResult};

fn version_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait]
impl ModuleStore for PostgresStore {
    async fn put_module(
        &self,
        name: &str,
        source: &str,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let mut client = inner.client().await?;
        let tx = client.transaction().await.ctx("begin save module")?;
        let row = tx
            .query_one(
                &inner.sql(
                    "INSERT INTO {s}.modules (name, version, created_at_ms, updated_at_ms) \
                     VALUES ($1, 1, $2, $2) ON CONFLICT (name) DO UPDATE SET \
                     version = {s}.modules.version + 1, updated_at_ms = excluded.updated_at_ms \
                     RETURNING version",
                ),
                &[&name, &now_ms],
            )
            .await
            .ctx("save module")?;
        let version: i64 = row.try_get(0).ctx("read module version")?;
        tx.execute(
            &inner.sql(
                "INSERT INTO {s}.module_versions (name, version, source, note, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            ),
            &[&name, &version, &source, &note, &now_ms],
        )
        .await
        .ctx("save module version")?;
        tx.commit().await.ctx("commit save module")?;
        Ok(version_of(version))
    }

    async fn delete_module(&self, name: &str) -> StoreResult<bool> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql("DELETE FROM {s}.modules WHERE name = $1"))
            .await
            .ctx("prepare delete module")?;
        let n = client.execute(&stmt, &[&name]).await.ctx("delete module")?;
        Ok(n > 0)
    }

    async fn list_modules(&self) -> StoreResult<Vec<ModuleMeta>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(
                "SELECT m.name, m.version, v.note, octet_length(v.source)::bigint, \
                 m.created_at_ms, m.updated_at_ms FROM {s}.modules m \
                 JOIN {s}.module_versions v ON v.name = m.name AND v.version = m.version \
                 ORDER BY m.name",
            ))
            .await
            .ctx("prepare list modules")?;
        let rows = client.query(&stmt, &[]).await.ctx("list modules")?;
        rows.iter()
            .map(|r| {
                Ok(ModuleMeta {
                    name: r.try_get(0)?,
                    version: version_of(r.try_get(1)?),
                    note: r.try_get(2)?,
                    bytes: version_of(r.try_get(3)?),
                    created_at_ms: r.try_get(4)?,
                    updated_at_ms: r.try_get(5)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .ctx("read modules")
    }

    async fn module_heads(&self, names: &[String]) -> StoreResult<Vec<(String, u64)>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt =
            client
                .prepare_cached(&inner.sql(
                    "SELECT name, version FROM {s}.modules WHERE name = ANY($1) ORDER BY name",
                ))
                .await
                .ctx("prepare module heads")?;
        let rows = client.query(&stmt, &[&names]).await.ctx("module heads")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, version_of(r.try_get(1)?))))
            .collect::<Result<_, tokio_postgres::Error>>()
            .ctx("read module heads")
    }

    async fn list_module_versions(&self, name: &str) -> StoreResult<Vec<ModuleVersion>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(
                "SELECT version, note, octet_length(source)::bigint, created_at_ms \
                 FROM {s}.module_versions WHERE name = $1 ORDER BY version DESC",
            ))
            .await
            .ctx("prepare module versions")?;
        let rows = client.query(&stmt, &[&name]).await.ctx("module versions")?;
        rows.iter()
            .map(|r| {
                Ok(ModuleVersion {
                    name: name.to_owned(),
                    version: version_of(r.try_get(0)?),
                    note: r.try_get(1)?,
                    bytes: version_of(r.try_get(2)?),
                    created_at_ms: r.try_get(3)?,
                    source: None,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .ctx("read module versions")
    }

    async fn get_module_version(
        &self,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<ModuleVersion>> {
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(
                "SELECT note, created_at_ms, source FROM {s}.module_versions \
                 WHERE name = $1 AND version = $2",
            ))
            .await
            .ctx("prepare module version")?;
        let Some(row) = client
            .query_opt(&stmt, &[&name, &v])
            .await
            .ctx("module version")?
        else {
            return Ok(None);
        };
        let source: String = row.try_get(2).ctx("read module version")?;
        Ok(Some(ModuleVersion {
            name: name.to_owned(),
            version,
            note: row.try_get(0).ctx("read module version")?,
            bytes: source.len() as u64,
            created_at_ms: row.try_get(1).ctx("read module version")?,
            source: Some(source),
        }))
    }
}
