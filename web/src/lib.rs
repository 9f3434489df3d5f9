//! traitor's HTTP face: the JSON API of `CONTRACT.md` §2, the debug WebSocket, the
//! OpenAPI document and the embedded UI.
//!
//! This is the only crate that knows HTTP: status codes, headers, WebSockets, CORS and
//! auth live here and nowhere else. It holds no state of its own and never touches a
//! store, a worker or Redis: every route is a call on the [`Backend`] trait, which the
//! supervisor implements.

pub mod backend;
pub mod dto;

pub use backend::{Backend, DebugSession, ServiceError, ServiceResult};

use std::net::SocketAddr;

/// What the HTTP layer needs to know, filled in by the supervisor from its config.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub addr: SocketAddr,
    /// When set, every API call and the debug socket need `Authorization: Bearer <token>`
    /// (the socket also accepts `?token=`). When unset, only loopback clients are served.
    pub auth_token: Option<String>,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
}
