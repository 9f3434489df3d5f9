//! Shared modules in the SQLite store: saves go through the writer thread (one
//! transaction with the rest of their group), reads through the read pool.

use anyhow::Context as _;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::extras::unexpected;
use super::writer::{Ctx as _, Op, Reply};
use crate::store::{ModuleMeta, ModuleStore, ModuleVersion, StoreResult};

pub(super) enum ModuleOp {
    Put {
        name: String,
        source: String,
        note: String,
        now_ms: i64,
    },
    Delete {
        name: String,
    },
}

impl ModuleOp {
    pub(super) fn payload_bytes(&self) -> usize {
        match self {
            ModuleOp::Put { source, .. } => source.len() + 128,
            ModuleOp::Delete { .. } => 64,
        }
    }
}

pub(super) fn apply(conn: &Connection, op: &ModuleOp) -> StoreResult<Reply> {
    match op {
        ModuleOp::Put {
            name,
            source,
            note,
            now_ms,
        } => {
            let version: i64 = conn
                .prepare_cached(
                    "INSERT INTO modules (name, version, created_at_ms, updated_at_ms) \
                     VALUES (?1, 1, ?2, ?2) ON CONFLICT (name) DO UPDATE SET \
                     version = version + 1, updated_at_ms = excluded.updated_at_ms \
                     RETURNING version",
                )
                .ctx("prepare save module")?
                .query_row(params![name, now_ms], |r| r.get(0))
                .ctx("save module")?;
            conn.prepare_cached(
                "INSERT INTO module_versions (name, version, source, note, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .ctx("prepare save module version")?
            .execute(params![name, version, source, note, now_ms])
            .ctx("save module version")?;
            Ok(Reply::Version(u64::try_from(version).unwrap_or(0)))
        }
        ModuleOp::Delete { name } => {
            let n = conn
                .prepare_cached("DELETE FROM modules WHERE name = ?1")
                .ctx("prepare delete module")?
                .execute([name])
                .ctx("delete module")?;
            Ok(Reply::Deleted(n > 0))
        }
    }
}

#[async_trait]
impl ModuleStore for SqliteStore {
    async fn put_module(
        &self,
        name: &str,
        source: &str,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<u64> {
        let op = ModuleOp::Put {
            name: name.to_owned(),
            source: source.to_owned(),
            note: note.to_owned(),
            now_ms,
        };
        match self.write(Op::Module(op)).await? {
            Reply::Version(v) => Ok(v),
            _ => Err(unexpected("save module")),
        }
    }

    async fn delete_module(&self, name: &str) -> StoreResult<bool> {
        let op = ModuleOp::Delete {
            name: name.to_owned(),
        };
        match self.write(Op::Module(op)).await? {
            Reply::Deleted(d) => Ok(d),
            _ => Err(unexpected("delete module")),
        }
    }

    async fn list_modules(&self) -> StoreResult<Vec<ModuleMeta>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT m.name, m.version, v.note, length(CAST(v.source AS BLOB)), \
                     m.created_at_ms, m.updated_at_ms FROM modules m \
                     JOIN module_versions v ON v.name = m.name AND v.version = m.version \
                     ORDER BY m.name",
                )
                .context("prepare list modules")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ModuleMeta {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        note: r.get(2)?,
                        bytes: r.get(3)?,
                        created_at_ms: r.get(4)?,
                        updated_at_ms: r.get(5)?,
                    })
                })
                .context("list modules")?;
            rows.collect::<Result<_, _>>().context("read modules")
        })
        .await
    }

    async fn module_heads(&self, names: &[String]) -> StoreResult<Vec<(String, u64)>> {
        let names = names.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT version FROM modules WHERE name = ?1")
                .context("prepare module head")?;
            let mut out = Vec::new();
            for name in names {
                // rusqlite reads u64 with a range check: a negative number is an error.
                let v: Option<u64> = stmt
                    .query_row([&name], |r| r.get(0))
                    .optional()
                    .context("read module head")?;
                if let Some(v) = v {
                    out.push((name, v));
                }
            }
            out.sort();
            out.dedup();
            Ok(out)
        })
        .await
    }

    async fn list_module_versions(&self, name: &str) -> StoreResult<Vec<ModuleVersion>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT version, note, length(CAST(source AS BLOB)), created_at_ms \
                     FROM module_versions WHERE name = ?1 ORDER BY version DESC",
                )
                .context("prepare module versions")?;
            let rows = stmt
                .query_map([&name], |r| {
                    Ok(ModuleVersion {
                        name: name.clone(),
                        version: r.get(0)?,
                        note: r.get(1)?,
                        bytes: r.get(2)?,
                        created_at_ms: r.get(3)?,
                        source: None,
                    })
                })
                .context("module versions")?;
            rows.collect::<Result<_, _>>()
                .context("read module versions")
        })
        .await
    }

    async fn get_module_version(
        &self,
        name: &str,
        version: u64,
    ) -> StoreResult<Option<ModuleVersion>> {
        let name = name.to_owned();
        let Ok(v) = i64::try_from(version) else {
            return Ok(None);
        };
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT note, created_at_ms, source FROM module_versions \
                 WHERE name = ?1 AND version = ?2",
            )
            .context("prepare module version")?
            .query_row(params![name, v], |r| {
                let source: String = r.get(2)?;
                Ok(ModuleVersion {
                    name: name.clone(),
                    version,
                    note: r.get(0)?,
                    bytes: source.len() as u64,
                    created_at_ms: r.get(1)?,
                    source: Some(source),
                })
            })
            .optional()
            .context("read module version")
        })
        .await
    }
}
