//! The audit log in the PostgreSQL store: one insert per entry, lists by keyset, prunes
//! in chunks; and the clause with which a change's own statement stores its entry
//! ([`audit_clause`]).

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

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

/// A data-modifying `WITH` clause named `a` that stores the audit entry given as the
/// seven parameters from `$first` on ([`AuditParams::params`]) once for each row of
/// `source` (a previous clause returning the changed rows), and nothing when the entry
/// is absent (its id null).
pub(super) fn audit_clause(source: &str, first: usize) -> String {
    let p = |i: usize| first + i;
    format!(
        "a AS (INSERT INTO {{s}}.audit (id, at_ms, actor, node, action, target, detail) \
         SELECT ${}::text, ${}::bigint, ${}::text, ${}::text, ${}::text, ${}::text, \
         ${}::text FROM {source} WHERE ${}::text IS NOT NULL ON CONFLICT (id) DO NOTHING)",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(0)
    )
}

/// One audit entry as statement parameters (nulls without one), for [`audit_clause`].
pub(super) struct AuditParams<'a> {
    pub(super) id: Option<&'a str>,
    pub(super) at_ms: Option<i64>,
    pub(super) actor: Option<&'a str>,
    pub(super) node: Option<&'a str>,
    pub(super) action: Option<&'a str>,
    pub(super) target: Option<&'a str>,
    pub(super) detail: Option<&'a str>,
}

impl<'a> AuditParams<'a> {
    pub(super) fn of(e: Option<&'a AuditEntry>) -> Self {
        AuditParams {
            id: e.map(|e| e.id.as_str()),
            at_ms: e.map(|e| e.at_ms),
            actor: e.map(|e| e.actor.as_str()),
            node: e.map(|e| e.node.as_str()),
            action: e.map(|e| e.action.as_str()),
            target: e.map(|e| e.target.as_str()),
            detail: e.map(|e| e.detail_json.as_str()),
        }
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.id,
            &self.at_ms,
            &self.actor,
            &self.node,
            &self.action,
            &self.target,
            &self.detail,
        ]
    }
}

/// Runs a `DELETE … RETURNING` statement that ends with [`audit_clause`] (its audit
/// parameters after `params`) and answers the count of deleted rows; whether anything
/// was deleted.
pub(super) async fn deleted(
    client: &deadpool_postgres::Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
    audit: Option<&AuditEntry>,
    what: &'static str,
) -> StoreResult<bool> {
    let audit = AuditParams::of(audit);
    let mut args: Vec<&(dyn ToSql + Sync)> = params.to_vec();
    args.extend(audit.params());
    let n: i64 = client
        .query_one(stmt, &args)
        .await
        .ctx(what)?
        .try_get(0)
        .ctx(what)?;
    Ok(n > 0)
}
