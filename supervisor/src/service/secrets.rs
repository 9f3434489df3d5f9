//! The service's side of secrets and per-job kv: validation of names, values and
//! grants, the secret routes (`PUT/DELETE /api/secret`, `GET /api/secrets`) and the kv
//! routes (`GET/DELETE /api/job/kv`).
//!
//! A secret granted to any job cannot be deleted (409 naming the jobs): deleting it
//! would make those jobs' runs fail, and silently removing grants would change jobs
//! behind their owners' backs. Remove the grants first.

use web::dto::{KvEntryView, SecretView};
use web::{Actor, ServiceError, ServiceResult};

use super::{Service, ms_to_dt, not_found, store_err};
use crate::job::Job;
use crate::secrets::{MAX_VALUE_BYTES, valid_name};

fn check_name(name: &str) -> ServiceResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "name",
            format!("secret name {name:?} must match [A-Z_][A-Z0-9_]{{0,63}}"),
        ))
    }
}

/// Sorts and de-duplicates requested grants and checks each names an existing secret.
pub(super) async fn check_grants(svc: &Service, names: &mut Vec<String>) -> ServiceResult<()> {
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(());
    }
    for n in names.iter() {
        if !valid_name(n) {
            return Err(ServiceError::invalid(
                "secrets",
                format!("secret name {n:?} must match [A-Z_][A-Z0-9_]{{0,63}}"),
            ));
        }
    }
    let known = svc.vault.list().await.map_err(ServiceError::Internal)?;
    if let Some(missing) = names.iter().find(|n| !known.iter().any(|k| &k.name == *n)) {
        return Err(ServiceError::invalid(
            "secrets",
            format!("no secret named {missing}; create it with PUT /api/secret first"),
        ));
    }
    Ok(())
}

/// Every job, for "which jobs use it".
async fn all_jobs(svc: &Service) -> ServiceResult<Vec<Job>> {
    let q = crate::store::JobListQuery::default();
    Ok(svc.store.list_jobs(&q).await.map_err(store_err)?.0)
}

pub(super) async fn put(
    svc: &Service,
    actor: &Actor,
    name: &str,
    value: String,
) -> ServiceResult<()> {
    check_name(name)?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "the secret's value is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
            value.len()
        )));
    }
    if !svc.vault.has_key_source() && svc.mode == "multi" {
        return Err(ServiceError::Unavailable(
            "no secret key is configured: set TRAITOR_SECRET_KEY or --secret-key-file on \
             every node"
                .into(),
        ));
    }
    // Never the value, nor its length.
    let entry = svc.audit_entry(actor, "secret.put", name, serde_json::json!({}));
    svc.vault
        .put(name, &value, crate::scheduler::now_ms(), Some(&entry))
        .await
        .map_err(ServiceError::Internal)?;
    tracing::info!(secret = name, "secret stored");
    Ok(())
}

pub(super) async fn list(svc: &Service) -> ServiceResult<Vec<SecretView>> {
    let metas = svc.vault.list().await.map_err(ServiceError::Internal)?;
    let jobs = all_jobs(svc).await?;
    Ok(metas
        .into_iter()
        .map(|m| SecretView {
            jobs: jobs
                .iter()
                .filter(|j| j.secrets.contains(&m.name))
                .map(|j| j.id.clone())
                .collect(),
            name: m.name,
            created_at: ms_to_dt(m.created_at_ms),
            updated_at: ms_to_dt(m.updated_at_ms),
        })
        .collect())
}

pub(super) async fn delete(svc: &Service, actor: &Actor, name: &str) -> ServiceResult<()> {
    check_name(name)?;
    let users: Vec<String> = all_jobs(svc)
        .await?
        .into_iter()
        .filter(|j| j.secrets.iter().any(|s| s == name))
        .map(|j| j.id)
        .collect();
    if !users.is_empty() {
        return Err(ServiceError::Conflict(format!(
            "secret {name} is granted to job(s) {}; remove the grants first",
            users.join(", ")
        )));
    }
    let entry = svc.audit_entry(actor, "secret.delete", name, serde_json::json!({}));
    if !svc
        .store
        .delete_secret_audited(name, Some(&entry))
        .await
        .map_err(store_err)?
    {
        return Err(ServiceError::NotFound(format!("no secret named {name}")));
    }
    tracing::info!(secret = name, "secret deleted");
    Ok(())
}

pub(super) async fn kv_list(svc: &Service, job_id: &str) -> ServiceResult<Vec<KvEntryView>> {
    if svc
        .store
        .get_job(job_id)
        .await
        .map_err(store_err)?
        .is_none()
    {
        return Err(not_found(job_id));
    }
    let entries = svc.store.kv_list(job_id).await.map_err(store_err)?;
    Ok(entries
        .into_iter()
        .map(|(key, json)| KvEntryView {
            value: serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json)),
            key,
        })
        .collect())
}

pub(super) async fn kv_delete(
    svc: &Service,
    actor: &Actor,
    job_id: &str,
    key: &str,
) -> ServiceResult<()> {
    crate::kvhost::check_key(key).map_err(|m| ServiceError::invalid("key", m))?;
    if svc
        .store
        .get_job(job_id)
        .await
        .map_err(store_err)?
        .is_none()
    {
        return Err(not_found(job_id));
    }
    let entry = svc.audit_entry(
        actor,
        "kv.delete",
        job_id,
        serde_json::json!({ "key": key }),
    );
    if !svc
        .store
        .kv_delete_audited(job_id, key, Some(&entry))
        .await
        .map_err(store_err)?
    {
        return Err(ServiceError::NotFound(format!(
            "job {job_id} has no key {key:?}"
        )));
    }
    Ok(())
}
