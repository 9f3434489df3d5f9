//! Who may talk to the service (contract §7): the middleware in front of every route.
//!
//! The service runs user code by design, so an open port is remote code execution:
//! - with no token configured, only loopback peers are served, and only under a loopback
//!   `Host` (so a web page cannot reach us through DNS rebinding);
//! - with tokens ([`crate::tokens`]), everything under `/api` needs
//!   `Authorization: Bearer <secret>` of one of them (`/api/debug` also takes `?token=`,
//!   since browsers cannot set headers on a WebSocket), and so does `/metrics`;
//!   `/healthz`, `/readyz` and the UI's static files stay open;
//! - a browser request to `/api` whose `Origin` is not this server is refused, which
//!   keeps cross-site pages from driving the API or the debug socket.
//!
//! A request it lets through carries its [`Actor`] in its extensions: the name of the
//! token it presented, or `local` for a loopback client of a server without tokens.
//! Handlers that change something take it with the `Actor` extractor and hand it to
//! the backend, which records it in the audit log.
//!
//! This module decides access only; it never looks at what a request asks for.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::backend::Actor;
use crate::error::ApiError;
use crate::extract::Params;
use crate::tokens::{LOCAL_ACTOR, identify};

pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match check(&state, &req) {
        Ok(actor) => {
            if let Some(actor) = actor {
                req.extensions_mut().insert(actor);
            }
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Who is asking, when the route needs to know (`None` for the open routes of a server
/// with tokens), or why the request is refused.
fn check(state: &AppState, req: &Request) -> Result<Option<Actor>, ApiError> {
    let path = req.uri().path();
    let is_api = path == "/api" || path.starts_with("/api/");
    let tokens = &state.config.auth_tokens;
    let actor = if tokens.is_empty() {
        // Without ConnectInfo we cannot know the peer: refuse rather than guess.
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        if !peer.is_some_and(is_loopback) || !host_is_loopback(req.headers()) {
            return Err(ApiError::LoopbackOnly);
        }
        Some(Actor(LOCAL_ACTOR.to_owned()))
    } else if is_api || path == "/metrics" {
        let presented = bearer(req.headers()).map(str::to_owned).or_else(|| {
            // Only the debug socket takes the token in the URL.
            (path == "/api/debug")
                .then(|| Params::from_uri(req.uri()).ok())
                .flatten()
                .and_then(|p| p.get("token").map(str::to_owned))
        });
        let Some(presented) = presented else {
            return Err(ApiError::Unauthorized(
                "this server needs `Authorization: Bearer <token>`".into(),
            ));
        };
        match identify(tokens, &presented) {
            Some(name) => Some(Actor(name.to_owned())),
            None => return Err(ApiError::Unauthorized("wrong auth token".into())),
        }
    } else {
        None
    };
    if is_api {
        check_origin(req.headers())?;
    }
    Ok(actor)
}

/// The caller, as the guard identified it. Only routes under `/api` (and `/metrics`)
/// have one; asking for it elsewhere is a fault of this crate.
impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Actor>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "no caller identity on {}: the auth guard did not run",
                parts.uri.path()
            ))
        })
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The host part of a `Host` header or an origin's authority: `[::1]:80` → `::1`.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        // HTTP/1.0 clients and some tests send no Host; the peer check still applies.
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = host_name(host.trim()).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// A present `Origin` must name the server the request was sent to.
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(()); // Not a browser: nothing to protect against.
    };
    let origin = origin.to_str().unwrap_or_default().trim();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .trim();
    let refuse = || {
        ApiError::BadOrigin(format!(
            "requests from the page at {origin:?} are not allowed; only this server's own UI \
             ({host:?}) may call the API from a browser"
        ))
    };
    let (scheme, authority) = origin.split_once("://").ok_or_else(refuse)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err(refuse()),
    };
    let normalise = |a: &str| {
        let a = a.trim_end_matches('/').to_ascii_lowercase();
        match a.strip_suffix(&format!(":{default_port}")) {
            Some(bare) => bare.to_owned(),
            None => a,
        }
    };
    if !host.is_empty() && normalise(authority) == normalise(host) {
        Ok(())
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_must_match_host() {
        let ok = headers(&[
            (header::HOST, "localhost:8080"),
            (header::ORIGIN, "http://localhost:8080"),
        ]);
        assert!(check_origin(&ok).is_ok());
        let default_port = headers(&[
            (header::HOST, "example.com"),
            (header::ORIGIN, "https://example.com:443"),
        ]);
        assert!(check_origin(&default_port).is_ok());
        let evil = headers(&[
            (header::HOST, "localhost:8080"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert_eq!(check_origin(&evil).map_err(|e| e.code()), Err("bad_origin"));
        let null = headers(&[(header::HOST, "localhost:8080"), (header::ORIGIN, "null")]);
        assert!(check_origin(&null).is_err());
        assert!(check_origin(&headers(&[(header::HOST, "x")])).is_ok());
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost:1", "127.0.0.1:8080", "[::1]:80", "a.localhost"] {
            let h = headers(&[(header::HOST, host)]);
            assert!(host_is_loopback(&h), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.1"] {
            let h = headers(&[(header::HOST, host)]);
            assert!(!host_is_loopback(&h), "{host}");
        }
        assert!(is_loopback("::ffff:127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn bearer_tokens() {
        let h = headers(&[(header::AUTHORIZATION, "bearer  s3cret ")]);
        assert_eq!(bearer(&h), Some("s3cret"));
    }
}
