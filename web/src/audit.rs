//! The audit log's route (`GET /api/audit`) and its JSON shapes.
//!
//! Entries are written by the backend, with the [`Actor`](crate::Actor) that the auth
//! guard identified, in the same place it makes each change; this module only reads
//! them back. Like [`crate::api`], the handler checks only what HTTP can see.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{ApiResult, Data, data};
use crate::error::ErrorBody;
use crate::extract::{Params, parse_instant};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/audit", get(list))
}

/// One change made through the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub id: String,
    /// When the change was made.
    pub at: DateTime<Utc>,
    /// The name of the API token that made it, or `local` (a client on the server's
    /// machine, when no token is configured).
    pub actor: String,
    /// The node that made it.
    pub node: String,
    /// `job.create`, `job.update`, `job.delete`, `job.enable`, `job.disable`, `job.run`,
    /// `job.pause`, `job.resume`, `job.backfill`, `job.rollback`, `script.update`,
    /// `secret.put`, `secret.delete`, `kv.delete`, `module.put`, `module.delete`,
    /// `module.rollback`.
    pub action: String,
    /// What it was done to: a job id, or a secret's or module's name.
    pub target: String,
    /// What changed. For a job, `changes` maps each changed field to `{old, new}`; a
    /// script appears as its version (and its new size in bytes), never its text. A
    /// secret's value never appears.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub items: Vec<AuditEntryView>,
    /// Pass as `before` to get the next (older) page; `null` at the end.
    pub next_before: Option<String>,
}

/// Where a page of the audit log starts: strictly older than the entry at `at_ms` with
/// `id` (in the log's order: time, then id). An instant alone is `id` `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub at_ms: i64,
    pub id: String,
}

impl AuditCursor {
    /// `<unix ms>:<entry id>` (a page's `nextBefore`), or an instant (RFC 3339 or Unix
    /// ms).
    pub fn parse(raw: &str) -> Option<AuditCursor> {
        if let Some((ms, id)) = raw.split_once(':')
            && let Ok(at_ms) = ms.parse::<i64>()
            && !id.is_empty()
        {
            return Some(AuditCursor {
                at_ms,
                id: id.to_owned(),
            });
        }
        parse_instant(raw).map(|t| AuditCursor {
            at_ms: t.timestamp_millis(),
            id: String::new(),
        })
    }
}

impl std::fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.at_ms, self.id)
    }
}

/// Query of `GET /api/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub target: Option<String>,
    pub actor: Option<String>,
    /// A prefix of the action: `job.` for every job action.
    pub action: Option<String>,
    pub before: Option<AuditCursor>,
    /// 1..=500.
    pub limit: u64,
}

/// The audit log: who changed what, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "audit",
    params(
        ("target" = Option<String>, Query, description = "Only entries about this job id, secret or module name"),
        ("actor" = Option<String>, Query, description = "Only entries made with this token name (`local`: a loopback client of a server without tokens)"),
        ("action" = Option<String>, Query, description = "Only actions starting with this text: `job.update`, or `job.` for every job action"),
        ("before" = Option<String>, Query, description = "Only entries older than this: the previous page's `nextBefore`, or an instant (RFC 3339 or Unix ms)"),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 500; default 50"),
    ),
    responses(
        (status = 200, description = "One page, newest first", body = Data<AuditPage>),
        (status = 400, description = "A parameter has a bad value", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<AuditPage>>> {
    let query = AuditQuery {
        target: params.get("target").map(str::to_owned),
        actor: params.get("actor").map(str::to_owned),
        action: params.get("action").map(str::to_owned),
        before: params.parse(
            "before",
            "a page's nextBefore, an RFC 3339 time or Unix milliseconds",
            AuditCursor::parse,
        )?,
        limit: params.int_in("limit", 1, 500)?.unwrap_or(50),
    };
    Ok(data(state.backend.audit(query).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors() {
        let c = AuditCursor::parse("1700000000123:0190f-ab").expect("cursor");
        assert_eq!(c.at_ms, 1_700_000_000_123);
        assert_eq!(c.id, "0190f-ab");
        assert_eq!(AuditCursor::parse(&c.to_string()), Some(c));
        let t = AuditCursor::parse("2024-01-01T00:00:00Z").expect("instant");
        assert_eq!((t.at_ms, t.id.as_str()), (1_704_067_200_000, ""));
        let ms = AuditCursor::parse("1704067200000").expect("ms");
        assert_eq!((ms.at_ms, ms.id.as_str()), (1_704_067_200_000, ""));
        assert_eq!(AuditCursor::parse("yesterday"), None);
        assert_eq!(AuditCursor::parse("12:"), None);
    }
}
