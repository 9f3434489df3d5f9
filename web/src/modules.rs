//! The routes of shared modules: JavaScript libraries that every job's script can
//! `require` or `import` by name, versioned like scripts.
//!
//! Like [`crate::api`], each handler checks only what HTTP can see and calls one
//! [`Backend`](crate::Backend) method; names, sizes and versions are the backend's
//! rules.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};

use crate::AppState;
use crate::api::{ApiResult, Data, data};
use crate::backend::Actor;
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{JsonBody, Params, parse_json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/module",
            get(get_module).put(put_module).delete(delete_module),
        )
        .route("/api/modules", get(list_modules))
        .route("/api/module/versions", get(module_versions))
        .route("/api/module/rollback", post(rollback_module))
}

fn version_param(params: &Params) -> ApiResult<Option<u64>> {
    params.int_in("version", 1, i64::MAX as u64)
}

/// Save a shared module: the first save creates it as version 1, each later one makes
/// the next version current. Every job's next run uses it.
#[utoipa::path(put, path = "/api/module", tag = "modules",
    params(("name" = String, Query, description = "Module name: [A-Za-z0-9_][A-Za-z0-9._/-]*, at most 100 characters")),
    request_body = ModuleInput,
    responses(
        (status = 200, description = "The version saved", body = Data<ModuleView>),
        (status = 400, description = "Bad name, source or note", body = ErrorBody),
        (status = 413, description = "Source over 1 MiB", body = ErrorBody),
    ))]
pub async fn put_module(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    JsonBody(input): JsonBody<ModuleInput>,
) -> ApiResult<Json<Data<ModuleView>>> {
    let name = params.required("name")?;
    let source = input.source.ok_or_else(|| ApiError::InvalidField {
        field: "source".into(),
        message: "the module's source is required".into(),
    })?;
    Ok(data(
        state
            .backend
            .put_module(&actor, name, source, input.note)
            .await?,
    ))
}

/// Every shared module's current version, by name, without sources.
#[utoipa::path(get, path = "/api/modules", tag = "modules",
    responses((status = 200, description = "Modules by name", body = Data<Vec<ModuleView>>)))]
pub async fn list_modules(State(state): State<AppState>) -> ApiResult<Json<Data<Vec<ModuleView>>>> {
    Ok(data(state.backend.list_modules().await?))
}

/// One module with its source: the current version, or `version`.
#[utoipa::path(get, path = "/api/module", tag = "modules",
    params(
        ("name" = String, Query, description = "Module name"),
        ("version" = Option<u64>, Query, description = "A saved version; default the current one"),
    ),
    responses(
        (status = 200, description = "The module", body = Data<ModuleView>),
        (status = 404, description = "No such module or version", body = ErrorBody),
    ))]
pub async fn get_module(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<ModuleView>>> {
    let name = params.required("name")?;
    let version = version_param(&params)?;
    Ok(data(state.backend.get_module(name, version).await?))
}

/// Every saved version of a module, newest first, without sources.
#[utoipa::path(get, path = "/api/module/versions", tag = "modules",
    params(("name" = String, Query, description = "Module name")),
    responses(
        (status = 200, description = "Versions, newest first", body = Data<Vec<ModuleView>>),
        (status = 404, description = "No such module", body = ErrorBody),
    ))]
pub async fn module_versions(
    State(state): State<AppState>,
    params: Params,
) -> ApiResult<Json<Data<Vec<ModuleView>>>> {
    let name = params.required("name")?;
    Ok(data(state.backend.module_versions(name).await?))
}

/// Make an old version current again, as a new version (history is never rewritten).
#[utoipa::path(post, path = "/api/module/rollback", tag = "modules",
    params(
        ("name" = String, Query, description = "Module name"),
        ("version" = u64, Query, description = "The version to restore"),
    ),
    request_body(content = Option<RollbackInput>, description = "Optional note"),
    responses(
        (status = 200, description = "The new current version", body = Data<ModuleView>),
        (status = 400, description = "Bad version number", body = ErrorBody),
        (status = 404, description = "No such module or version", body = ErrorBody),
    ))]
pub async fn rollback_module(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
    body: axum::body::Bytes,
) -> ApiResult<Json<Data<ModuleView>>> {
    let name = params.required("name")?;
    let version =
        version_param(&params)?.ok_or_else(|| ApiError::MissingParameter("version".into()))?;
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<RollbackInput>(&body)?.note
    };
    Ok(data(
        state
            .backend
            .rollback_module(&actor, name, version, note)
            .await?,
    ))
}

/// Delete a module and every version of it. Scripts that load it then fail with
/// `MODULE_NOT_FOUND` where they load it.
#[utoipa::path(delete, path = "/api/module", tag = "modules",
    params(("name" = String, Query, description = "Module name")),
    responses(
        (status = 200, description = "Deleted", body = Data<bool>),
        (status = 404, description = "No such module", body = ErrorBody),
    ))]
pub async fn delete_module(
    State(state): State<AppState>,
    actor: Actor,
    params: Params,
) -> ApiResult<Json<Data<bool>>> {
    let name = params.required("name")?;
    state.backend.delete_module(&actor, name).await?;
    Ok(data(true))
}
