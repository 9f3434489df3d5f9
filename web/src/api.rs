//! The JSON routes of contract §2: each handler reads its query and body, calls one
//! [`Backend`](crate::Backend) method and wraps the answer as `{"data": …}`.
//!
//! Handlers check only what HTTP can see (a parameter is present, a value parses);
//! every rule about jobs belongs to the backend. [`ROUTES`] lists every (path, method)
//! served here so that a test can hold the OpenAPI document to it.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::backend::Actor;
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Params};

/// Every (path, method) this module, [`crate::occurrences`], [`crate::secrets`],
/// [`crate::audit`] and [`crate::debug`] serve,
/// plus the health check and the OpenAPI document. The UI's static files are not listed.
pub const ROUTES: &[(&str, &str)] = &[
    ("/api/job", "post"),
    ("/api/job", "put"),
    ("/api/job", "delete"),
    ("/api/job", "get"),
    ("/api/jobList", "get"),
    ("/api/jobs", "get"),
    ("/api/script", "get"),
    ("/api/script", "post"),
    ("/api/enable", "post"),
    ("/api/run", "post"),
    ("/api/job/trigger", "post"),
    ("/api/job/runs", "get"),
    ("/api/job/run", "get"),
    ("/api/cron/preview", "get"),
    ("/api/debug", "get"),
    ("/healthz", "get"),
    ("/api/stats", "get"),
    ("/api/cluster", "get"),
    ("/api/openapi.json", "get"),
    ("/api/job/versions", "get"),
    ("/api/job/version", "get"),
    ("/api/job/rollback", "post"),
    ("/api/job/plan", "get"),
    ("/api/job/pause", "post"),
    ("/api/job/resume", "post"),
    ("/api/job/backfill", "post"),
    ("/api/job/occurrences", "get"),
    ("/api/secret", "put"),
    ("/api/secret", "delete"),
    ("/api/secrets", "get"),
    ("/api/job/kv", "get"),
    ("/api/job/kv", "delete"),
    ("/api/audit", "get"),
    ("/api/module", "get"),
    ("/api/module", "put"),
    ("/api/module", "delete"),
    ("/api/modules", "get"),
    ("/api/module/versions", "get"),
    ("/api/module/rollback", "post"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/job",
            get(get_job)
                .post(create_job)
                .put(update_job)
                .delete(delete_job),
        )
        .route("/api/jobList", get(job_list))
        .route("/api/jobs", get(list_jobs))
        .route("/api/script", get(get_script).post(set_script))
        .route("/api/enable", post(enable))
        .route("/api/run", post(run))
        .route("/api/job/trigger", post(trigger))
        .route("/api/job/runs", get(list_runs))
        .route("/api/job/run", get(get_run))
        .route("/api/cron/preview", get(cron_preview))
        .route("/api/debug", get(crate::debug::debug))
        .route("/healthz", get(health))
        .route("/api/stats", get(stats))
        .route("/api/cluster", get(cluster))
        .route("/api/openapi.json", get(openapi_json))
        .merge(crate::occurrences::routes())
        .merge(crate::secrets::routes())
        .merge(crate::audit::routes())
        .merge(crate::modules::routes())
}

/// The success envelope: `{"data": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T> {
    pub data: T,
}

pub(crate) fn data<T>(data: T) -> Json<Data<T>> {
    Json(Data { data })
}

/// The answer to a create: the new id twice, as `data` (the seed's code) and `id` (the
/// seed's README).
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub data: String,
    pub id: String,
}

/// Body of `POST /api/script`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScriptInput {
    pub script: Option<String>,
    /// A note kept with the new script version.
    pub note: Option<String>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// `?type=`: `timing`/`delay` (case-insensitive) or `0`/`1`.
fn exec_type_param(params: &Params) -> ApiResult<Option<ExecType>> {
    params.parse("type", "timing or delay", |raw| {
        ExecType::from_name(raw).or_else(|| raw.parse().ok().and_then(ExecType::from_code))
    })
}

async fn create(
    state: &AppState,
    actor: &Actor,
    params: &Params,
    input: JobInput,
    start: bool,
) -> ApiResult<Json<Created>> {
    let exec_type = match (exec_type_param(params)?, input.exec_type) {
        (Some(t), _) => Some(t),
        (None, Some(_)) => None, // The backend reads it from the body.
        (None, None) => Some(infer_exec_type(&input)?),
    };
    let id = state
        .backend
        .create_job(actor, exec_type, input, start)
        .await?;
    Ok(Json(Created {
        data: id.clone(),
        id,
    }))
}

/// The seed's `/api/run` example gives a timing job with neither `?type=` nor
/// `execType` (its Go code read the zero value as timing). Infer the type only when the
/// body is unambiguous: a `cron` alone is timing, an `execAt` alone is delay.
fn infer_exec_type(input: &JobInput) -> ApiResult<ExecType> {
    match (input.cron.is_some(), input.exec_at.is_some()) {
        (true, false) => Ok(ExecType::Timing),
        (false, true) => Ok(ExecType::Delay),
        _ => Err(ApiError::MissingParameter("type".into())),
    }
}

/// Create a job, stopped.
#[utoipa::path(post, path = "/api/job", tag = "jobs",
    params(("type" = Option<String>, Query, description = "`timing` or `delay` (case-insensitive); optional when the body has `execType`, or has only one of `cron` (timing) and `execAt` (delay)")),
    request_body = JobInput,
    responses(
        (status = 200, description = "The new job's id", body = Created),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 409, description = "Duplicate `jobId`", body = ErrorBody),
    ))]
pub async fn create_job(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    JsonBody(input): JsonBody<JobInput>,
) -> ApiResult<Json<Created>> {
    create(&state, &actor, &params, input, false).await
}

/// Create a job and start it in one call.
#[utoipa::path(post, path = "/api/run", tag = "jobs",
    params(("type" = Option<String>, Query, description = "`timing` or `delay` (case-insensitive); optional when the body has `execType`, or has only one of `cron` (timing) and `execAt` (delay)")),
    request_body = JobInput,
    responses(
        (status = 200, description = "The new job's id", body = Created),
        (status = 400, description = "Bad input, or the job cannot start", body = ErrorBody),
        (status = 409, description = "Duplicate `jobId`", body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    JsonBody(input): JsonBody<JobInput>,
) -> ApiResult<Json<Created>> {
    create(&state, &actor, &params, input, true).await
}

/// Change the fields present in the body; the merged job is validated first.
#[utoipa::path(put, path = "/api/job", tag = "jobs",
    params(("id" = String, Query, description = "Job id")),
    request_body = JobInput,
    responses(
        (status = 200, description = "The job's id", body = Data<String>),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn update_job(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    JsonBody(patch): JsonBody<JobInput>,
) -> ApiResult<Json<Data<String>>> {
    let id = params.required("id")?;
    state.backend.update_job(&actor, id, patch).await?;
    Ok(data(id.to_owned()))
}

/// Delete a job; it is unscheduled at once.
#[utoipa::path(delete, path = "/api/job", tag = "jobs",
    params(("id" = String, Query, description = "Job id")),
    responses(
        (status = 200, description = "The deleted job's id", body = Data<String>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn delete_job(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<String>>> {
    let id = params.required("id")?;
    state.backend.delete_job(&actor, id).await?;
    Ok(data(id.to_owned()))
}

/// One job, without its script.
#[utoipa::path(get, path = "/api/job", tag = "jobs",
    params(("id" = String, Query, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Data<JobView>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn get_job(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<JobView>>> {
    let id = params.required("id")?;
    Ok(data(state.backend.get_job(id).await?))
}

/// Every job, as a bare JSON array (the seed's UI route).
#[utoipa::path(get, path = "/api/jobList", tag = "jobs",
    responses((status = 200, description = "All jobs, not wrapped in `data`", body = Vec<JobView>)))]
pub async fn job_list(State(state): State<AppState>) -> ApiResult<Json<Vec<JobView>>> {
    Ok(Json(state.backend.all_jobs().await?))
}

/// A filtered, sorted page of jobs.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    params(
        ("search" = Option<String>, Query, description = "Case-insensitive substring of name, description or id"),
        ("type" = Option<String>, Query, description = "`timing`, `delay`, `0` or `1`"),
        ("state" = Option<String>, Query, description = "`running`, `stopped`, `1` or `0`"),
        ("sort" = Option<String>, Query, description = "`createdAt` (default), `name`, `nextExecTime`, `lastExecTime` or `updatedAt`"),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc`"),
        ("offset" = Option<u64>, Query, description = "Jobs to skip; default 0"),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000; default 50"),
    ),
    responses(
        (status = 200, description = "One page", body = Data<JobPage>),
        (status = 400, description = "A parameter has a bad value", body = ErrorBody),
    ))]
pub async fn list_jobs(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<JobPage>>> {
    let query = job_query(&params)?;
    Ok(data(state.backend.list_jobs(query).await?))
}

fn job_query(params: &Params) -> ApiResult<JobQuery> {
    let state = params.parse("state", "running, stopped, 1 or 0", |raw| {
        if raw.eq_ignore_ascii_case("running") || raw == "1" {
            Some(JobState::Running)
        } else if raw.eq_ignore_ascii_case("stopped") || raw == "0" {
            Some(JobState::Stopped)
        } else {
            None
        }
    })?;
    let sort = params.parse(
        "sort",
        "createdAt, name, nextExecTime, lastExecTime or updatedAt",
        |raw| {
            [
                ("createdAt", JobSort::CreatedAt),
                ("name", JobSort::Name),
                ("nextExecTime", JobSort::NextExecTime),
                ("lastExecTime", JobSort::LastExecTime),
                ("updatedAt", JobSort::UpdatedAt),
            ]
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(raw))
            .map(|(_, sort)| sort)
        },
    )?;
    let descending = params.parse("order", "asc or desc", |raw| {
        if raw.eq_ignore_ascii_case("asc") {
            Some(false)
        } else if raw.eq_ignore_ascii_case("desc") {
            Some(true)
        } else {
            None
        }
    })?;
    Ok(JobQuery {
        search: params.get("search").map(str::to_owned),
        exec_type: exec_type_param(params)?,
        state,
        sort: sort.unwrap_or_default(),
        descending: descending.unwrap_or(false),
        offset: params.int_in("offset", 0, u64::MAX)?.unwrap_or(0),
        limit: params.int_in("limit", 1, 1000)?.unwrap_or(50),
    })
}

/// A job's script.
#[utoipa::path(get, path = "/api/script", tag = "scripts",
    params(("id" = String, Query, description = "Job id")),
    responses(
        (status = 200, description = "The script", body = Data<ScriptView>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn get_script(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<ScriptView>>> {
    let id = params.required("id")?;
    Ok(data(state.backend.get_script(id).await?))
}

/// Replace a job's script; it takes effect from the next run.
#[utoipa::path(post, path = "/api/script", tag = "scripts",
    params(("id" = String, Query, description = "Job id")),
    request_body = ScriptInput,
    responses(
        (status = 200, description = "The job's id", body = Data<String>),
        (status = 400, description = "Bad input", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
        (status = 413, description = "Script over the size limit", body = ErrorBody),
    ))]
pub async fn set_script(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    JsonBody(input): JsonBody<ScriptInput>,
) -> ApiResult<Json<Data<String>>> {
    let id = params.required("id")?;
    let script = input
        .script
        .ok_or_else(|| ApiError::invalid_field("script", "is required"))?;
    state
        .backend
        .set_script(&actor, id, script, input.note)
        .await?;
    Ok(data(id.to_owned()))
}

/// Start or stop a job; idempotent.
#[utoipa::path(post, path = "/api/enable", tag = "jobs",
    params(
        ("id" = String, Query, description = "Job id"),
        ("enable" = bool, Query, description = "`true` to start, `false` to stop"),
    ),
    responses(
        (status = 200, description = "The job's id", body = Data<String>),
        (status = 400, description = "Bad parameter, or the job cannot start (the message says why)", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn enable(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<String>>> {
    let id = params.required("id")?;
    let on = params
        .bool("enable")?
        .ok_or_else(|| ApiError::MissingParameter("enable".into()))?;
    state.backend.enable(&actor, id, on).await?;
    Ok(data(id.to_owned()))
}

/// Run a job now as a manual occurrence, recorded in its history.
#[utoipa::path(post, path = "/api/job/trigger", tag = "runs",
    params(("id" = String, Query, description = "Job id")),
    responses(
        (status = 200, description = "The new run's id", body = Data<String>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn trigger(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<String>>> {
    let id = params.required("id")?;
    Ok(data(state.backend.run_now(&actor, id).await?))
}

/// A job's run history, newest first.
#[utoipa::path(get, path = "/api/job/runs", tag = "runs",
    params(
        ("id" = String, Query, description = "Job id"),
        ("outcome" = Option<String>, Query, description = "Only runs with this outcome"),
        ("before" = Option<String>, Query, description = "Only runs scheduled before this instant: RFC 3339 or Unix milliseconds (pass `nextBefore`)"),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 1000; default 50"),
    ),
    responses(
        (status = 200, description = "One page", body = Data<RunPage>),
        (status = 400, description = "A parameter has a bad value", body = ErrorBody),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn list_runs(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<RunPage>>> {
    let id = params.required("id")?;
    let query = RunQuery {
        outcome: params.get("outcome").map(str::to_owned),
        before: params.instant("before")?,
        limit: params.int_in("limit", 1, 1000)?.unwrap_or(50),
    };
    Ok(data(state.backend.list_runs(id, query).await?))
}

/// One run with its console output.
#[utoipa::path(get, path = "/api/job/run", tag = "runs",
    params(("id" = String, Query, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = Data<RunDetail>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn get_run(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<RunDetail>>> {
    let id = params.required("id")?;
    Ok(data(state.backend.get_run(id).await?))
}

/// The next fire times of a cron expression.
#[utoipa::path(get, path = "/api/cron/preview", tag = "jobs",
    params(
        ("cron" = String, Query, description = "Cron expression: 5, 6 or 7 fields, or a macro"),
        ("timezone" = Option<String>, Query, description = "IANA time zone; default UTC"),
        ("count" = Option<u64>, Query, description = "How many, 1 to 100; default 5"),
        ("after" = Option<String>, Query, description = "Start after this instant (RFC 3339 or Unix ms); default now"),
    ),
    responses(
        (status = 200, description = "Fire times, RFC 3339", body = Data<Vec<String>>),
        (status = 400, description = "Bad expression or parameter", body = ErrorBody),
    ))]
pub async fn cron_preview(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<Vec<DateTime<Utc>>>>> {
    let cron = params.required("cron")?;
    let count = params.int_in("count", 1, 100)?.unwrap_or(5) as usize;
    let after = params.instant("after")?;
    let times = state
        .backend
        .cron_preview(cron, params.get("timezone"), count, after)
        .await?;
    Ok(data(times))
}

/// The dashboard: job counts, runs by outcome in the last hour and day, fire lateness,
/// runs per minute, the next runs, recent failures, workers and nodes.
#[utoipa::path(get, path = "/api/stats", tag = "service",
    responses(
        (status = 200, description = "The numbers", body = Data<Stats>),
    ))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<Data<Stats>>> {
    Ok(data(state.backend.stats().await?))
}

/// The cluster as this node sees it: live nodes, heartbeat ages, jobs owned by each.
/// In standalone mode, this node alone.
#[utoipa::path(get, path = "/api/cluster", tag = "service",
    responses(
        (status = 200, description = "The nodes", body = Data<ClusterView>),
    ))]
pub async fn cluster(State(state): State<AppState>) -> ApiResult<Json<Data<ClusterView>>> {
    Ok(data(state.backend.cluster().await?))
}

/// Health of this node: 200 when `status` is `ok`, 503 when `degraded`. The body is
/// wrapped in `data` either way. Needs no token.
#[utoipa::path(get, path = "/healthz", tag = "service", security(),
    responses(
        (status = 200, description = "Healthy", body = Data<Health>),
        (status = 503, description = "Degraded; `problems` says why", body = Data<Health>),
    ))]
pub async fn health(State(state): State<AppState>) -> Response {
    let health = state.backend.health().await;
    let status = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, data(health)).into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    Json(crate::openapi::document()).into_response()
}
