//! The routes of secrets and of the jobs' key-value stores.
//!
//! A secret's value goes in (`PUT /api/secret`) and never comes out: no route returns
//! it. Like [`crate::api`], each handler checks only what HTTP can see and calls one
//! [`Backend`](crate::Backend) method; the rules (names, sizes, grants) belong to the
//! backend.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::AppState;
use crate::api::{ApiResult, Data, data};
use crate::backend::Actor;
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Params};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/secret",
            axum::routing::put(put_secret).delete(delete_secret),
        )
        .route("/api/secrets", get(list_secrets))
        .route("/api/job/kv", get(kv_list).delete(kv_delete))
}

/// Create or replace a secret. The value is stored encrypted and never returned.
#[utoipa::path(put, path = "/api/secret", tag = "secrets",
    params(("name" = String, Query, description = "Secret name: [A-Z_][A-Z0-9_]{0,63}")),
    request_body = SecretInput,
    responses(
        (status = 200, description = "Stored", body = Data<bool>),
        (status = 400, description = "Bad name or value", body = ErrorBody),
        (status = 413, description = "Value over 64 KiB", body = ErrorBody),
        (status = 503, description = "No secret key is configured", body = ErrorBody),
    ))]
pub async fn put_secret(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    JsonBody(input): JsonBody<SecretInput>,
) -> ApiResult<Json<Data<bool>>> {
    let name = params.required("name")?;
    let value = input.value.ok_or_else(|| ApiError::InvalidField {
        field: "value".into(),
        message: "the secret's value is required".into(),
    })?;
    state.backend.put_secret(&actor, name, value).await?;
    Ok(data(true))
}

/// Every secret's name, times and the jobs it is granted to. Never a value.
#[utoipa::path(get, path = "/api/secrets", tag = "secrets",
    responses((status = 200, description = "Secrets by name", body = Data<Vec<SecretView>>)))]
pub async fn list_secrets(State(state): State<AppState>) -> ApiResult<Json<Data<Vec<SecretView>>>> {
    Ok(data(state.backend.list_secrets().await?))
}

/// Delete a secret. Refused (409) while any job is granted it: remove the grants first.
#[utoipa::path(delete, path = "/api/secret", tag = "secrets",
    params(("name" = String, Query, description = "Secret name")),
    responses(
        (status = 200, description = "Deleted", body = Data<bool>),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 409, description = "Granted to a job", body = ErrorBody),
    ))]
pub async fn delete_secret(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<bool>>> {
    let name = params.required("name")?;
    state.backend.delete_secret(&actor, name).await?;
    Ok(data(true))
}

/// A job's key-value store: every key and its value.
#[utoipa::path(get, path = "/api/job/kv", tag = "jobs",
    params(("id" = String, Query, description = "Job id")),
    responses(
        (status = 200, description = "Entries by key", body = Data<Vec<KvEntryView>>),
        (status = 404, description = "Unknown id", body = ErrorBody),
    ))]
pub async fn kv_list(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<Vec<KvEntryView>>>> {
    let id = params.required("id")?;
    Ok(data(state.backend.kv_list(id).await?))
}

/// Delete one key of a job's key-value store.
#[utoipa::path(delete, path = "/api/job/kv", tag = "jobs",
    params(
        ("id" = String, Query, description = "Job id"),
        ("key" = String, Query, description = "The key"),
    ),
    responses(
        (status = 200, description = "Deleted", body = Data<bool>),
        (status = 404, description = "Unknown job or key", body = ErrorBody),
    ))]
pub async fn kv_delete(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<bool>>> {
    let id = params.required("id")?;
    let key = params.required("key")?;
    state.backend.kv_delete(&actor, id, key).await?;
    Ok(data(true))
}
