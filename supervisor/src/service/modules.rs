//! The service's side of shared modules: the rules of `/api/module*` (names, sizes,
//! notes, versions). Storage is the store's; finding a run's modules is
//! [`crate::modules::Resolver`]'s.

use web::dto::ModuleView;
use web::{ServiceError, ServiceResult};

use super::policy::check_note;
use super::{MAX_SCRIPT_BYTES, Service, check_no_nul, ms_to_dt, store_err};
use crate::modules::names::{MAX_NAME_CHARS, valid_name};
use crate::store::{ModuleMeta, ModuleVersion};

fn check_name(name: &str) -> ServiceResult<()> {
    if valid_name(name) {
        return Ok(());
    }
    Err(ServiceError::invalid(
        "name",
        format!(
            "module name {name:?} must be 1 to {MAX_NAME_CHARS} characters of \
             [A-Za-z0-9._/-], start with a letter, digit or _, have no empty, . or .. \
             segment, and not be a built-in module (http)"
        ),
    ))
}

fn missing(name: &str) -> ServiceError {
    ServiceError::NotFound(format!("no module named {name:?}"))
}

fn view_of_meta(m: ModuleMeta) -> ModuleView {
    ModuleView {
        name: m.name,
        version: m.version,
        note: m.note,
        bytes: m.bytes,
        created_at: Some(ms_to_dt(m.created_at_ms)),
        updated_at: ms_to_dt(m.updated_at_ms),
        current: true,
        source: None,
    }
}

fn view_of_version(v: ModuleVersion, current: u64) -> ModuleView {
    ModuleView {
        current: v.version == current,
        name: v.name,
        version: v.version,
        note: v.note,
        bytes: v.bytes,
        created_at: None,
        updated_at: ms_to_dt(v.created_at_ms),
        source: v.source,
    }
}

/// The module's current version number, or `NotFound`.
async fn head(svc: &Service, name: &str) -> ServiceResult<u64> {
    let heads = svc
        .store
        .module_heads(&[name.to_owned()])
        .await
        .map_err(store_err)?;
    heads
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .ok_or_else(|| missing(name))
}

pub(super) async fn put(
    svc: &Service,
    name: &str,
    source: String,
    note: Option<String>,
) -> ServiceResult<ModuleView> {
    check_name(name)?;
    check_no_nul("source", &source)?;
    if source.len() > MAX_SCRIPT_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "the module's source is {} bytes; the limit is {MAX_SCRIPT_BYTES}",
            source.len()
        )));
    }
    let note = note.unwrap_or_default();
    check_note(&note).map_err(|_| {
        ServiceError::invalid("note", "note is longer than 500 characters or holds a NUL")
    })?;
    let now = crate::scheduler::now_ms();
    let version = svc
        .store
        .put_module(name, &source, &note, now)
        .await
        .map_err(store_err)?;
    tracing::info!(module = name, version, bytes = source.len(), "module saved");
    // What was just committed, without reading it back.
    Ok(view_of_version(
        ModuleVersion {
            name: name.to_owned(),
            version,
            note,
            bytes: source.len() as u64,
            created_at_ms: now,
            source: None,
        },
        version,
    ))
}

pub(super) async fn list(svc: &Service) -> ServiceResult<Vec<ModuleView>> {
    let metas = svc.store.list_modules().await.map_err(store_err)?;
    Ok(metas.into_iter().map(view_of_meta).collect())
}

pub(super) async fn get(
    svc: &Service,
    name: &str,
    version: Option<u64>,
) -> ServiceResult<ModuleView> {
    check_name(name)?;
    let current = head(svc, name).await?;
    let wanted = version.unwrap_or(current);
    let v = svc
        .store
        .get_module_version(name, wanted)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            ServiceError::NotFound(format!("module {name:?} has no version {wanted}"))
        })?;
    Ok(view_of_version(v, current))
}

pub(super) async fn versions(svc: &Service, name: &str) -> ServiceResult<Vec<ModuleView>> {
    check_name(name)?;
    let current = head(svc, name).await?;
    let list = svc
        .store
        .list_module_versions(name)
        .await
        .map_err(store_err)?;
    Ok(list
        .into_iter()
        .map(|v| view_of_version(v, current))
        .collect())
}

pub(super) async fn rollback(
    svc: &Service,
    name: &str,
    version: u64,
    note: Option<String>,
) -> ServiceResult<ModuleView> {
    let old = get(svc, name, Some(version)).await?;
    let note = note.unwrap_or_else(|| format!("rollback to version {version}"));
    put(svc, name, old.source.unwrap_or_default(), Some(note)).await
}

pub(super) async fn delete(svc: &Service, name: &str) -> ServiceResult<()> {
    check_name(name)?;
    if !svc.store.delete_module(name).await.map_err(store_err)? {
        return Err(missing(name));
    }
    tracing::info!(module = name, "module deleted");
    Ok(())
}
