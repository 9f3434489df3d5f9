//! traitor's HTTP face: the JSON API of `CONTRACT.md` §2, the debug WebSocket, the
//! OpenAPI document and the embedded UI.
//!
//! `/metrics` and `/readyz` live in [`ops`].
//!
//! This is the only crate that knows HTTP: status codes, headers, WebSockets, CORS and
//! auth live here and nowhere else. It holds no state of its own and never touches a
//! store, a worker or Redis: every route is a call on the [`Backend`] trait, which the
//! supervisor implements.
//!
//! Use [`serve`] (or [`bind`] + [`serve_on`]) to run it; [`router`] gives the bare
//! `axum::Router` for tests. The router reads the peer address from
//! `ConnectInfo<SocketAddr>`, so serve it with
//! `into_make_service_with_connect_info::<SocketAddr>()` (as `serve_on` does); without
//! it, a router with no auth token refuses every request.

mod api;
pub mod audit;
mod auth;
pub mod backend;
mod debug;
pub mod dto;
pub mod error;
mod extract;
mod modules;
mod occurrences;
pub mod openapi;
mod ops;
mod secrets;
pub mod tokens;
mod ui;

pub use api::ROUTES;
pub use backend::{Actor, Backend, DebugSession, ServiceError, ServiceResult};
pub use error::{ApiError, ErrorBody};
pub use ops::{METRICS_CONTENT_TYPE, ROUTES as OPS_ROUTES, Readiness, ReadinessCheck};
pub use tokens::AuthToken;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// What the HTTP layer needs to know, filled in by the supervisor from its config.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub addr: SocketAddr,
    /// When any, every API call and the debug socket need `Authorization: Bearer
    /// <secret>` of one of them (the socket also accepts `?token=`), and the token's name
    /// is the caller's identity. When none, only loopback clients are served. Names and
    /// secrets must be unique ([`tokens::check_unique`]).
    pub auth_tokens: Vec<AuthToken>,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
}

/// What every handler gets: the backend and the config. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub backend: Arc<dyn Backend>,
    pub config: Arc<WebConfig>,
}

/// The whole HTTP surface as one router, state included.
pub fn router(config: WebConfig, backend: Arc<dyn Backend>) -> Router {
    let limit = config.max_body_bytes;
    let state = AppState {
        backend,
        config: Arc::new(config),
    };
    api::routes()
        .merge(ops::routes())
        // Applies to the routes added above, so it comes after them.
        .method_not_allowed_fallback(ui::method_not_allowed)
        .fallback(ui::fallback)
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(state.clone(), auth::guard))
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::Internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        .layer(map_response(ui::security_headers))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Binds `config.addr`. Port 0 picks a free port; the real address is returned.
pub async fn bind(config: &WebConfig) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(config.addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process uses this port; pick another with -p)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need privileges; pick another with -p)"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                " (this machine has no such address; check -ip)"
            }
            _ => "",
        };
        anyhow::Error::new(e).context(format!("bind HTTP listener on {}{hint}", config.addr))
    })?;
    let addr = listener
        .local_addr()
        .context("read the HTTP listener's address")?;
    Ok((listener, addr))
}

/// Serves on an already bound listener until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn serve_on(
    listener: TcpListener,
    config: WebConfig,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("read the HTTP listener's address")?;
    if config.auth_tokens.is_empty() {
        tracing::warn!(
            %addr,
            "no auth token configured (TRAITOR_AUTH_TOKEN): serving clients on this machine only"
        );
    }
    tracing::info!(%addr, "HTTP API listening on http://{addr}");
    let app = router(config, backend);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serve HTTP")?;
    tracing::info!(%addr, "HTTP API stopped");
    Ok(())
}

/// Binds `config.addr` and serves until `shutdown` completes.
pub async fn serve(
    config: WebConfig,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (listener, _) = bind(&config).await?;
    serve_on(listener, config, backend, shutdown).await
}

#[cfg(test)]
mod tests;
