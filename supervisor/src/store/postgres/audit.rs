//! The audit log in the PostgreSQL store: one insert per entry, lists by keyset, prunes
//! in chunks.

use async_trait::async_trait;

use super::{Ctx as _, PRUNE_CHUNK, Param, PostgresStore, limit_i64, param_refs};
use crate::store::{AuditEntry, AuditListQuery, AuditStore, StoreResult};

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, e: &AuditEntry) -> StoreResult<()> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(
                "INSERT INTO {s}.audit (id, at_ms, actor, node, action, target, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
            ))
            .await
            .ctx("prepare append audit")?;
        client
            .execute(
                &stmt,
                &[
                    &e.id,
                    &e.at_ms,
                    &e.actor,
                    &e.node,
                    &e.action,
                    &e.target,
                    &e.detail_json,
                ],
            )
            .await
            .ctx("append audit")?;
        Ok(())
    }

    async fn list_audit(&self, q: &AuditListQuery) -> StoreResult<Vec<AuditEntry>> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let mut clauses = Vec::new();
        let mut args: Vec<Param> = Vec::new();
        let arg = |args: &mut Vec<Param>, v: Param| {
            args.push(v);
            format!("${}", args.len())
        };
        if let Some(t) = &q.target {
            let p = arg(&mut args, Box::new(t.clone()));
            clauses.push(format!("target = {p}"));
        }
        if let Some(a) = &q.actor {
            let p = arg(&mut args, Box::new(a.clone()));
            clauses.push(format!("actor = {p}"));
        }
        if let Some(a) = &q.action_prefix {
            let p = arg(&mut args, Box::new(a.clone()));
            clauses.push(format!("left(action, length({p})) = {p}"));
        }
        if let Some((ms, id)) = &q.before {
            let pm = arg(&mut args, Box::new(*ms));
            let pi = arg(&mut args, Box::new(id.clone()));
            clauses.push(format!("(at_ms, id) < ({pm}, {pi})"));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = arg(&mut args, Box::new(limit_i64(q.limit)));
        let client = inner.client().await?;
        let stmt = client
            .prepare_cached(&inner.sql(&format!(
                "SELECT id, at_ms, actor, node, action, target, detail FROM {{s}}.audit \
                 {filter} ORDER BY at_ms DESC, id DESC LIMIT {limit}"
            )))
            .await
            .ctx("prepare list audit")?;
        let rows = client
            .query(&stmt, &param_refs(&args))
            .await
            .ctx("list audit")?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at_ms: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    node: r.try_get(3)?,
                    action: r.try_get(4)?,
                    target: r.try_get(5)?,
                    detail_json: r.try_get(6)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .ctx("read audit entries")
    }

    async fn prune_audit(&self, keep: u64, older_than_ms: i64) -> StoreResult<u64> {
        let _permit = self.inner.enter()?;
        let inner = &self.inner;
        let client = inner.client().await?;
        // The newest entry that is not kept; it and everything older go. Each chunk is
        // its own statement, so a big prune never holds locks for long.
        let stmt = client
            .prepare_cached(&inner.sql(
                "WITH cut AS (SELECT at_ms, id FROM {s}.audit \
                   ORDER BY at_ms DESC, id DESC LIMIT 1 OFFSET $2) \
                 DELETE FROM {s}.audit WHERE id IN (SELECT id FROM {s}.audit \
                   WHERE at_ms < $1 OR (at_ms, id) <= (SELECT at_ms, id FROM cut) LIMIT $3)",
            ))
            .await
            .ctx("prepare prune audit")?;
        let mut total = 0;
        loop {
            let n = client
                .execute(&stmt, &[&older_than_ms, &limit_i64(keep), &PRUNE_CHUNK])
                .await
                .ctx("prune audit")?;
            total += n;
            if n < PRUNE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}
