//! Who may talk to the service (contract §7): the middleware in front of every route.
//!
//! The service runs user code by design, so an open port is remote code execution:
//! - with no token configured, only loopback peers are served, and only under a loopback
//!   `Host` (so a web page cannot reach us through DNS rebinding);
//! - with a token, everything under `/api` needs `Authorization: Bearer <token>`
//!   (`/api/debug` also takes `?token=`, since browsers cannot set headers on a
//!   WebSocket), and so does `/metrics`; `/healthz`, `/readyz` and the UI's static
//!   files stay open;
//! - a browser request to `/api` whose `Origin` is not this server is refused, which
//!   keeps cross-site pages from driving the API or the debug socket.
//!
//! This module decides access only; it never looks at what a request asks for.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Params;

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let path = req.uri().path();
    let is_api = path == "/api" || path.starts_with("/api/");
    match &state.config.auth_token {
        None => {
            // Without ConnectInfo we cannot know the peer: refuse rather than guess.
            let peer = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            if !peer.is_some_and(is_loopback) || !host_is_loopback(req.headers()) {
                return Err(ApiError::LoopbackOnly);
            }
        }
        Some(token) if is_api || path == "/metrics" => {
            let presented = bearer(req.headers()).map(str::to_owned).or_else(|| {
                // Only the debug socket takes the token in the URL.
                (path == "/api/debug")
                    .then(|| Params::from_uri(req.uri()).ok())
                    .flatten()
                    .and_then(|p| p.get("token").map(str::to_owned))
            });
            match presented {
                None => {
                    return Err(ApiError::Unauthorized(
                        "this server needs `Authorization: Bearer <token>`".into(),
                    ));
                }
                Some(p) if !token_matches(&p, token) => {
                    return Err(ApiError::Unauthorized("wrong auth token".into()));
                }
                Some(_) => {}
            }
        }
        Some(_) => {}
    }
    if is_api {
        check_origin(req.headers())?;
    }
    Ok(())
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

/// Compares in time independent of where the first difference is.
fn token_matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
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
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
    }
}
