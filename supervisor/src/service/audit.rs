//! The audit log: the entry each change made through the API leaves, and reading them
//! back (`GET /api/audit`).
//!
//! An entry is written where the change is made. Job writes (create, update, script
//! saves and rollbacks, enable, pause, delete), secret puts and deletes and kv deletes
//! hand their entry to the store, which keeps it in the change's own transaction: the
//! change and its entry are stored together or not at all (MongoDB, used without
//! transactions, appends it right after). A request that fails before its change is
//! committed leaves none. A job's entry says what changed as `{"changes": {field: {old,
//! new}}}` with the API's field names; a script appears as its version, its size and
//! its note, never its text, and a secret's value never appears at all.
//!
//! The other changes (modules, whose entry names the version the store assigns; manual
//! runs; backfills) append their entry right after the store has committed the change
//! and before the request is answered: if the append fails or the process dies between
//! the two writes, the change stands without its entry. The append failure is logged at
//! error level with the whole entry, so the record survives in the service's log.

use serde_json::{Map, Value, json};
use web::Actor;
use web::audit::{AuditCursor, AuditEntryView, AuditPage, AuditQuery};
use web::{ServiceError, ServiceResult};

use super::{Service, ms_to_dt, store_err, view_of};
use crate::job::Job;
use crate::scheduler::now_ms;
use crate::store::{AuditEntry, AuditListQuery};

/// Fields of a job's view that are not the user's to change, or are said elsewhere
/// (the script, below).
const NOT_CHANGES: &[&str] = &[
    "lastExecTime",
    "lastOutcome",
    "nextExecTime",
    "createdAt",
    "updatedAt",
    "version",
    "scriptVersion",
    "scriptNote",
];

/// Longest filter text accepted by `GET /api/audit`.
const MAX_FILTER_CHARS: usize = 200;

/// What changed from `old` to `new`: `{"changes": {field: {"old", "new"}}}`; `script`,
/// when a new one was saved, as `{"old": {"version"}, "new": {"version", "bytes",
/// "note"}}`.
pub(super) fn job_changes(old: &Job, new: &Job, script: Option<&str>) -> Value {
    let now = now_ms();
    let view = |j: &Job| serde_json::to_value(view_of(j, now)).unwrap_or(Value::Null);
    let (before, after) = (view(old), view(new));
    let mut changes = Map::new();
    if let (Value::Object(before), Value::Object(after)) = (before, after) {
        for (field, new_value) in after {
            let old_value = before.get(&field).cloned().unwrap_or(Value::Null);
            if !NOT_CHANGES.contains(&field.as_str()) && old_value != new_value {
                changes.insert(field, json!({ "old": old_value, "new": new_value }));
            }
        }
    }
    if let Some(s) = script {
        changes.insert(
            "script".into(),
            json!({
                "old": { "version": old.script_version },
                "new": { "version": new.script_version, "bytes": s.len(), "note": new.script_note },
            }),
        );
    }
    json!({ "changes": changes })
}

/// What a new job is: its kind, name and schedule, whether it was started, its grants
/// and its script's size.
pub(super) fn job_created(job: &Job, script: &str) -> Value {
    let mut d = json!({
        "name": job.name,
        "execType": job.exec_type.code(),
        "started": job.enabled,
        "script": { "version": job.script_version, "bytes": script.len() },
    });
    match job.exec_type {
        web::dto::ExecType::Timing => {
            d["cron"] = json!(job.cron);
            d["timezone"] = json!(job.timezone);
        }
        web::dto::ExecType::Delay => d["execAt"] = json!(job.exec_at_ms.map(ms_to_dt)),
    }
    if !job.secrets.is_empty() {
        d["secrets"] = json!(job.secrets);
    }
    d
}

/// A module's new version: its number, size and note (never its source).
pub(super) fn module_saved(v: &web::dto::ModuleView) -> Value {
    json!({ "version": v.version, "bytes": v.bytes, "note": v.note })
}

impl Service {
    /// The entry of a change made now by `actor` on this node. Job writes hand it to the
    /// store, which keeps it in the change's own transaction.
    pub(super) fn audit_entry(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: Value,
    ) -> AuditEntry {
        AuditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            at_ms: now_ms(),
            actor: actor.0.clone(),
            node: self.node.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail_json: detail.to_string(),
        }
    }

    /// Appends one entry after its change, for the changes whose store calls do not
    /// carry one; see the module docs for what a failure means.
    pub(super) async fn record(&self, actor: &Actor, action: &str, target: &str, detail: Value) {
        let entry = self.audit_entry(actor, action, target, detail);
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(
                error = %e,
                actor = %entry.actor,
                action,
                target,
                detail = %entry.detail_json,
                "a change was made but its audit entry could not be stored"
            );
        }
    }

    pub(super) async fn audit_page(&self, q: AuditQuery) -> ServiceResult<AuditPage> {
        for (field, value) in [
            ("target", &q.target),
            ("actor", &q.actor),
            ("action", &q.action),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.chars().count() > MAX_FILTER_CHARS)
            {
                return Err(ServiceError::invalid(
                    field,
                    format!("{field} is longer than {MAX_FILTER_CHARS} characters"),
                ));
            }
        }
        let limit = q.limit.clamp(1, 500);
        let entries = self
            .store
            .list_audit(&AuditListQuery {
                target: q.target,
                actor: q.actor,
                action_prefix: q.action,
                before: q.before.map(|c| (c.at_ms, c.id)),
                limit,
            })
            .await
            .map_err(store_err)?;
        let next_before = match entries.last() {
            Some(last) if entries.len() as u64 == limit => Some(
                AuditCursor {
                    at_ms: last.at_ms,
                    id: last.id.clone(),
                }
                .to_string(),
            ),
            _ => None,
        };
        let items = entries
            .into_iter()
            .map(|e| AuditEntryView {
                at: ms_to_dt(e.at_ms),
                // Written by this service as JSON; shown as text should a row be damaged.
                detail: serde_json::from_str(&e.detail_json)
                    .unwrap_or(Value::String(e.detail_json)),
                id: e.id,
                actor: e.actor,
                node: e.node,
                action: e.action,
                target: e.target,
            })
            .collect();
        Ok(AuditPage { items, next_before })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::sample_job;

    #[test]
    fn changes_name_only_what_changed_and_never_the_script_text() {
        let old = sample_job("j");
        let mut new = old.clone();
        new.cron = "0 0 * * * *".into();
        new.name = "renamed".into();
        new.version += 1;
        new.updated_at_ms += 1000;
        new.script_version += 1;
        new.script_note = "faster".into();
        let d = job_changes(&old, &new, Some("console.log('the text')"));
        let changes = d["changes"].as_object().expect("changes");
        let mut fields: Vec<&str> = changes.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["cron", "name", "script"]);
        assert_eq!(
            changes["cron"],
            json!({"old": old.cron, "new": "0 0 * * * *"})
        );
        assert_eq!(
            changes["script"],
            json!({"old": {"version": 1}, "new": {"version": 2, "bytes": 23, "note": "faster"}})
        );
        assert!(!d.to_string().contains("the text"));
        // Nothing changed: nothing listed.
        assert_eq!(job_changes(&old, &old, None), json!({"changes": {}}));
    }
}
