//! The audit log in the SQLite store: appends and prunes through the writer thread (like
//! every write), lists through the read pool.

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, ToSql, params, params_from_iter};

use super::writer::{Ctx as _, Op, PRUNE_CHUNK, Reply};
use super::{SqliteStore, limit_i64};
use crate::store::{AuditEntry, AuditListQuery, AuditStore, StoreError, StoreResult};

pub(super) enum AuditOp {
    Append(AuditEntry),
    /// Deletes up to [`PRUNE_CHUNK`] entries older than the cutoff or beyond the newest
    /// `keep`.
    Prune {
        keep: u64,
        older_than_ms: i64,
    },
}

/// Roughly what an entry weighs in a write group.
pub(super) fn entry_bytes(e: &AuditEntry) -> usize {
    e.detail_json.len() + e.target.len() + 128
}

/// Inserts one entry (an entry already there, by time and id, is left as it is).
pub(super) const APPEND: &str = "INSERT INTO audit (id, at_ms, actor, node, action, target, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (at_ms, id) DO NOTHING";

/// The parameters of [`APPEND`] for an entry.
pub(super) fn append_args(e: &AuditEntry) -> [&dyn ToSql; 7] {
    [
        &e.id,
        &e.at_ms,
        &e.actor,
        &e.node,
        &e.action,
        &e.target,
        &e.detail_json,
    ]
}

/// Stores one entry with [`APPEND`].
pub(super) fn append(conn: &Connection, e: &AuditEntry) -> StoreResult<()> {
    append_params(conn, &append_args(e))
}

/// Runs [`APPEND`] with parameters from [`append_args`].
pub(super) fn append_params(conn: &Connection, p: &[&dyn ToSql; 7]) -> StoreResult<()> {
    conn.prepare_cached(APPEND)
        .ctx("prepare append audit")?
        .execute(&p[..])
        .ctx("append audit")?;
    Ok(())
}

impl AuditOp {
    pub(super) fn payload_bytes(&self) -> usize {
        match self {
            AuditOp::Append(e) => entry_bytes(e),
            AuditOp::Prune { .. } => 64,
        }
    }
}

pub(super) fn apply(conn: &Connection, op: &AuditOp) -> StoreResult<Reply> {
    match op {
        AuditOp::Append(e) => {
            append(conn, e)?;
            Ok(Reply::Done)
        }
        AuditOp::Prune {
            keep,
            older_than_ms,
        } => {
            // The newest entry that is not kept; it and everything older go.
            let cut: Option<(i64, String)> = conn
                .prepare_cached(
                    "SELECT at_ms, id FROM audit ORDER BY at_ms DESC, id DESC LIMIT 1 OFFSET ?1",
                )
                .ctx("prepare audit cutoff")?
                .query_row([limit_i64(Some(*keep))], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .ctx("audit cutoff")?;
            let (cut_ms, cut_id) = cut.unzip();
            let n = conn
                .prepare_cached(
                    "DELETE FROM audit WHERE (at_ms, id) IN (SELECT at_ms, id FROM audit \
                     WHERE at_ms < ?1 OR (at_ms, id) <= (?2, ?3) LIMIT ?4)",
                )
                .ctx("prepare prune audit")?
                .execute(params![
                    older_than_ms,
                    cut_ms,
                    cut_id,
                    limit_i64(Some(PRUNE_CHUNK))
                ])
                .ctx("prune audit")?;
            Ok(Reply::Pruned {
                deleted: n as u64,
                next: None,
            })
        }
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        self.write(Op::Audit(AuditOp::Append(entry.clone())))
            .await
            .map(|_| ())
    }

    async fn prune_audit(&self, keep: u64, older_than_ms: i64) -> StoreResult<u64> {
        let mut total = 0;
        // In chunks, each its own request, so other writes interleave with a big prune.
        loop {
            match self
                .write(Op::Audit(AuditOp::Prune {
                    keep,
                    older_than_ms,
                }))
                .await?
            {
                Reply::Pruned { deleted, .. } => {
                    total += deleted;
                    if deleted < PRUNE_CHUNK {
                        return Ok(total);
                    }
                }
                _ => {
                    return Err(StoreError::Other(anyhow!(
                        "prune audit: unexpected writer reply"
                    )));
                }
            }
        }
    }

    async fn list_audit(&self, q: &AuditListQuery) -> StoreResult<Vec<AuditEntry>> {
        let mut clauses = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let arg = |args: &mut Vec<Value>, v: Value| {
            args.push(v);
            format!("?{}", args.len())
        };
        if let Some(t) = &q.target {
            let p = arg(&mut args, Value::Text(t.clone()));
            clauses.push(format!("target = {p}"));
        }
        if let Some(a) = &q.actor {
            let p = arg(&mut args, Value::Text(a.clone()));
            clauses.push(format!("actor = {p}"));
        }
        if let Some(a) = &q.action_prefix {
            let p = arg(&mut args, Value::Text(a.clone()));
            clauses.push(format!("substr(action, 1, length({p})) = {p}"));
        }
        if let Some((ms, id)) = &q.before {
            let pm = arg(&mut args, Value::Integer(*ms));
            let pi = arg(&mut args, Value::Text(id.clone()));
            clauses.push(format!("(at_ms, id) < ({pm}, {pi})"));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let limit = arg(&mut args, Value::Integer(limit_i64(Some(q.limit))));
        let sql = format!(
            "SELECT id, at_ms, actor, node, action, target, detail FROM audit {filter} \
             ORDER BY at_ms DESC, id DESC LIMIT {limit}"
        );
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).context("prepare list audit")?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at_ms: r.get(1)?,
                        actor: r.get(2)?,
                        node: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        detail_json: r.get(6)?,
                    })
                })
                .context("list audit")?;
            rows.collect::<Result<_, _>>().context("read audit entries")
        })
        .await
    }
}
