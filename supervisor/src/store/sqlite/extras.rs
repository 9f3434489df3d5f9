//! Secrets and per-job kv in the SQLite store: their writes (through the writer
//! thread, like every write) and reads (through the read pool).
//!
//! A kv set checks the caps and writes in the same transaction, so two concurrent sets
//! cannot both squeeze under a cap.

use anyhow::Context as _;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::writer::{Ctx as _, Op, Reply, append_audit, audit_bytes};
use crate::store::{
    AuditEntry, KvCaps, KvSet, KvStore, SecretMeta, SecretStore, StoreError, StoreResult,
};

pub(super) enum ExtraOp {
    PutSecret {
        name: String,
        sealed: Vec<u8>,
        now_ms: i64,
        audit: Option<AuditEntry>,
    },
    DeleteSecret {
        name: String,
        audit: Option<AuditEntry>,
    },
    KvSet {
        job_id: String,
        key: String,
        value_json: String,
        caps: KvCaps,
    },
    KvDelete {
        job_id: String,
        key: String,
        audit: Option<AuditEntry>,
    },
}

impl ExtraOp {
    pub(super) fn payload_bytes(&self) -> usize {
        match self {
            ExtraOp::PutSecret { sealed, audit, .. } => sealed.len() + 128 + audit_bytes(audit),
            ExtraOp::KvSet { value_json, .. } => value_json.len() + 128,
            ExtraOp::DeleteSecret { audit, .. } | ExtraOp::KvDelete { audit, .. } => {
                64 + audit_bytes(audit)
            }
        }
    }
}

pub(super) fn apply(conn: &Connection, op: &ExtraOp) -> StoreResult<Reply> {
    match op {
        ExtraOp::PutSecret {
            name,
            sealed,
            now_ms,
            audit,
        } => {
            conn.prepare_cached(
                "INSERT INTO secrets (name, sealed, created_at_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?3) ON CONFLICT (name) DO UPDATE SET \
                 sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms",
            )
            .ctx("prepare put secret")?
            .execute(params![name, sealed, now_ms])
            .ctx("put secret")?;
            append_audit(conn, audit.as_ref())?;
            Ok(Reply::Done)
        }
        ExtraOp::DeleteSecret { name, audit } => {
            let n = conn
                .prepare_cached("DELETE FROM secrets WHERE name = ?1")
                .ctx("prepare delete secret")?
                .execute([name])
                .ctx("delete secret")?;
            if n > 0 {
                append_audit(conn, audit.as_ref())?;
            }
            Ok(Reply::Deleted(n > 0))
        }
        ExtraOp::KvSet {
            job_id,
            key,
            value_json,
            caps,
        } => kv_set(conn, job_id, key, value_json, *caps).map(Reply::KvSet),
        ExtraOp::KvDelete { job_id, key, audit } => {
            let n = conn
                .prepare_cached("DELETE FROM job_kv WHERE job_id = ?1 AND key = ?2")
                .ctx("prepare kv delete")?
                .execute([job_id, key])
                .ctx("kv delete")?;
            if n > 0 {
                append_audit(conn, audit.as_ref())?;
            }
            Ok(Reply::Deleted(n > 0))
        }
    }
}

fn kv_set(
    conn: &Connection,
    job_id: &str,
    key: &str,
    value_json: &str,
    caps: KvCaps,
) -> StoreResult<KvSet> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
        .ctx("prepare find job")?
        .query_row([job_id], |_| Ok(()))
        .optional()
        .ctx("find job")?
        .is_some();
    if !exists {
        return Err(StoreError::NotFound(job_id.to_owned()));
    }
    let (keys, bytes, old): (i64, i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + \
             length(CAST(value_json AS BLOB))), 0), \
             sum(CASE WHEN key = ?2 THEN length(CAST(key AS BLOB)) + \
             length(CAST(value_json AS BLOB)) END) \
             FROM job_kv WHERE job_id = ?1",
        )
        .ctx("prepare kv usage")?
        .query_row([job_id, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .ctx("kv usage")?;
    let new_bytes = (key.len() + value_json.len()) as i64;
    if old.is_none() && u64::try_from(keys).unwrap_or(u64::MAX) >= caps.max_keys {
        return Ok(KvSet::TooManyKeys);
    }
    let total = bytes - old.unwrap_or(0) + new_bytes;
    if u64::try_from(total).unwrap_or(u64::MAX) > caps.max_total_bytes {
        return Ok(KvSet::TooLarge);
    }
    conn.prepare_cached(
        "INSERT INTO job_kv (job_id, key, value_json) VALUES (?1, ?2, ?3) \
         ON CONFLICT (job_id, key) DO UPDATE SET value_json = excluded.value_json",
    )
    .ctx("prepare kv set")?
    .execute([job_id, key, value_json])
    .ctx("kv set")?;
    Ok(KvSet::Stored)
}

pub(super) fn unexpected(what: &str) -> StoreError {
    StoreError::Other(anyhow::anyhow!(
        "{what}: the writer gave an unexpected reply"
    ))
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put_secret_audited(
        &self,
        name: &str,
        sealed: &[u8],
        now_ms: i64,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<()> {
        let op = ExtraOp::PutSecret {
            name: name.to_owned(),
            sealed: sealed.to_vec(),
            now_ms,
            audit: audit.cloned(),
        };
        self.write(Op::Extra(op)).await.map(|_| ())
    }

    async fn delete_secret_audited(
        &self,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        let op = ExtraOp::DeleteSecret {
            name: name.to_owned(),
            audit: audit.cloned(),
        };
        match self.write(Op::Extra(op)).await? {
            Reply::Deleted(d) => Ok(d),
            _ => Err(unexpected("delete secret")),
        }
    }

    async fn list_secrets(&self) -> StoreResult<Vec<SecretMeta>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, created_at_ms, updated_at_ms FROM secrets ORDER BY name",
                )
                .context("prepare list secrets")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(SecretMeta {
                        name: r.get(0)?,
                        created_at_ms: r.get(1)?,
                        updated_at_ms: r.get(2)?,
                    })
                })
                .context("list secrets")?;
            rows.collect::<Result<_, _>>().context("read secrets")
        })
        .await
    }

    async fn sealed_secrets(&self, names: &[String]) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let names = names.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT sealed FROM secrets WHERE name = ?1")
                .context("prepare read secret")?;
            let mut out = Vec::new();
            for name in names {
                let sealed: Option<Vec<u8>> = stmt
                    .query_row([&name], |r| r.get(0))
                    .optional()
                    .context("read secret")?;
                if let Some(s) = sealed {
                    out.push((name, s));
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn kv_get(&self, job_id: &str, key: &str) -> StoreResult<Option<String>> {
        let (job_id, key) = (job_id.to_owned(), key.to_owned());
        self.read(move |conn| {
            conn.prepare_cached("SELECT value_json FROM job_kv WHERE job_id = ?1 AND key = ?2")
                .context("prepare kv get")?
                .query_row([&job_id, &key], |r| r.get(0))
                .optional()
                .context("kv get")
        })
        .await
    }

    async fn kv_set(
        &self,
        job_id: &str,
        key: &str,
        value_json: &str,
        caps: KvCaps,
    ) -> StoreResult<KvSet> {
        let op = ExtraOp::KvSet {
            job_id: job_id.to_owned(),
            key: key.to_owned(),
            value_json: value_json.to_owned(),
            caps,
        };
        match self.write(Op::Extra(op)).await? {
            Reply::KvSet(r) => Ok(r),
            _ => Err(unexpected("kv set")),
        }
    }

    async fn kv_delete_audited(
        &self,
        job_id: &str,
        key: &str,
        audit: Option<&AuditEntry>,
    ) -> StoreResult<bool> {
        let op = ExtraOp::KvDelete {
            job_id: job_id.to_owned(),
            key: key.to_owned(),
            audit: audit.cloned(),
        };
        match self.write(Op::Extra(op)).await? {
            Reply::Deleted(d) => Ok(d),
            _ => Err(unexpected("kv delete")),
        }
    }

    async fn kv_list(&self, job_id: &str) -> StoreResult<Vec<(String, String)>> {
        let job_id = job_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT key, value_json FROM job_kv WHERE job_id = ?1 ORDER BY key")
                .context("prepare kv list")?;
            let rows = stmt
                .query_map([&job_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .context("kv list")?;
            rows.collect::<Result<_, _>>().context("read kv")
        })
        .await
    }
}
