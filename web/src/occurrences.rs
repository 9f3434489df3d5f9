//! The routes of scheduling control: script versions and rollback, the plan of a job,
//! pause and resume, backfill, and the occurrence ledger.
//!
//! Like [`crate::api`], each handler checks only what HTTP can see and calls one
//! [`Backend`](crate::Backend) method; the rules belong to the backend.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

use crate::AppState;
use crate::api::{ApiResult, Data, data};
use crate::backend::Actor;
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Params, parse_json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/job/versions", get(versions))
        .route("/api/job/version", get(version))
        .route("/api/job/rollback", post(rollback))
        .route("/api/job/plan", get(plan))
        .route("/api/job/pause", post(pause))
        .route("/api/job/resume", post(resume))
        .route("/api/job/backfill", post(backfill))
        .route("/api/job/occurrences", get(occurrences))
}

fn version_param(params: &Params) -> ApiResult<u64> {
    params
        .int_in("version", 1, i64::MAX as u64)?
        .ok_or_else(|| ApiError::MissingParameter("version".into()))
}

fn required_instant(params: &Params, name: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    params
        .instant(name)?
        .ok_or_else(|| ApiError::MissingParameter(name.into()))
}

/// Every saved version of a job's script, newest first.
#[utoipa::path(get, path = "/api/job/versions", tag = "scripts",
    params(("id" = String, Query, description = "Job id")),
    responses(
        (status = 200, description = "Versions without their sources", body = Data<Vec<ScriptVersionView>>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn versions(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<Vec<ScriptVersionView>>>> {
    let id = params.required("id")?;
    Ok(data(state.backend.script_versions(id).await?))
}

/// One version of a job's script, with its source.
#[utoipa::path(get, path = "/api/job/version", tag = "scripts",
    params(
        ("id" = String, Query, description = "Job id"),
        ("version" = u64, Query, description = "Version number"),
    ),
    responses(
        (status = 200, description = "The version", body = Data<ScriptVersionView>),
        (status = 400, description = "Bad version number", body = ErrorBody),
        (status = 404, description = "Unknown job or version", body = ErrorBody),
    ))]
pub async fn version(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<ScriptVersionView>>> {
    let id = params.required("id")?;
    let v = version_param(&params)?;
    Ok(data(state.backend.script_version(id, v).await?))
}

/// Make an old script version current again. The rollback is itself a new version.
#[utoipa::path(post, path = "/api/job/rollback", tag = "scripts",
    params(
        ("id" = String, Query, description = "Job id"),
        ("version" = u64, Query, description = "The version to restore"),
    ),
    request_body(content = Option<RollbackInput>, description = "Optional note"),
    responses(
        (status = 200, description = "The new version's number", body = Data<u64>),
        (status = 400, description = "Bad version number", body = ErrorBody),
        (status = 404, description = "Unknown job or version", body = ErrorBody),
    ))]
pub async fn rollback(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    body: axum::body::Bytes,
) -> ApiResult<Json<Data<u64>>> {
    let id = params.required("id")?;
    let v = version_param(&params)?;
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<RollbackInput>(&body)?.note
    };
    Ok(data(
        state.backend.rollback_script(&actor, id, v, note).await?,
    ))
}

/// What a job would fire in a window, and what a restart now would catch up.
#[utoipa::path(get, path = "/api/job/plan", tag = "jobs",
    params(
        ("id" = String, Query, description = "Job id"),
        ("from" = Option<String>, Query, description = "Window start (RFC 3339 or Unix ms); default now"),
        ("to" = Option<String>, Query, description = "Window end; default 24 h after `from`"),
    ),
    responses(
        (status = 200, description = "The plan", body = Data<PlanView>),
        (status = 400, description = "Bad window", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn plan(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<PlanView>>> {
    let id = params.required("id")?;
    let from = params.instant("from")?;
    let to = params.instant("to")?;
    Ok(data(state.backend.plan(id, from, to).await?))
}

/// Skip a job's occurrences until an instant (each is recorded as `skipped`).
#[utoipa::path(post, path = "/api/job/pause", tag = "jobs",
    params(
        ("id" = String, Query, description = "Job id"),
        ("until" = String, Query, description = "End of the pause: RFC 3339 or Unix s/ms, in the future"),
    ),
    responses(
        (status = 200, description = "The job's id", body = Data<String>),
        (status = 400, description = "Bad or past instant", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn pause(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<String>>> {
    let id = params.required("id")?;
    let until = required_instant(&params, "until")?;
    state.backend.pause(&actor, id, until).await?;
    Ok(data(id.to_owned()))
}

/// End a pause now.
#[utoipa::path(post, path = "/api/job/resume", tag = "jobs",
    params(("id" = String, Query, description = "Job id")),
    responses(
        (status = 200, description = "The job's id", body = Data<String>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<String>>> {
    let id = params.required("id")?;
    state.backend.resume(&actor, id).await?;
    Ok(data(id.to_owned()))
}

/// Run the past occurrences of a range that have not run, oldest first, under the
/// job's overlap policy. Occurrences the ledger says ran are suppressed.
#[utoipa::path(post, path = "/api/job/backfill", tag = "runs",
    params(
        ("id" = String, Query, description = "Job id"),
        ("from" = String, Query, description = "Range start (RFC 3339 or Unix ms)"),
        ("to" = String, Query, description = "Range end, not in the future"),
    ),
    responses(
        (status = 200, description = "Queued and suppressed occurrences", body = Data<BackfillView>),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn backfill(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<BackfillView>>> {
    let id = params.required("id")?;
    let from = required_instant(&params, "from")?;
    let to = required_instant(&params, "to")?;
    Ok(data(state.backend.backfill(&actor, id, from, to).await?))
}

/// The occurrence ledger: every occurrence once, with its attempts, newest first.
#[utoipa::path(get, path = "/api/job/occurrences", tag = "runs",
    params(
        ("id" = String, Query, description = "Job id"),
        ("before" = Option<String>, Query, description = "Only occurrences scheduled before this instant (pass `nextBefore`)"),
        ("limit" = Option<u64>, Query, description = "Occurrences per page, 1 to 500; default 50"),
    ),
    responses(
        (status = 200, description = "One page", body = Data<OccurrencePage>),
        (status = 400, description = "A parameter has a bad value", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn occurrences(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<OccurrencePage>>> {
    let id = params.required("id")?;
    let before = params.instant("before")?;
    let limit = params.int_in("limit", 1, 500)?.unwrap_or(50);
    Ok(data(state.backend.occurrences(id, before, limit).await?))
}
