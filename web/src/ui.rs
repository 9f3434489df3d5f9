//! The embedded web UI (everything under `web/ui/`, compiled into the binary so a node
//! needs no internet and no files beside it), the JSON 404/405 fallbacks, and the
//! security headers put on every response.
//!
//! The UI is plain static files: no client-side routing, so an unknown path is a 404,
//! never `index.html`. This module must not serve anything under `/api`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

/// The policy for HTML pages: our own scripts only, none inline; the debug console may
/// open WebSockets to us.
pub const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                       style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// Answers every request no route matched: a UI file for `GET`/`HEAD`, else a JSON 404.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::NotFound(format!("no API route {path}")).into_response();
    }
    let name = match path.trim_start_matches('/') {
        "" => "index.html".to_owned(),
        dir if dir.ends_with('/') => format!("{dir}index.html"),
        file => file.to_owned(),
    };
    let Some(file) = Assets::get(&name) else {
        return ApiError::NotFound(format!("nothing at {path}")).into_response();
    };
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed(method).await;
    }
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mime = mime_guess::from_path(&name).first_or_octet_stream();
    let builder = Response::builder()
        .header(header::ETAG, &etag)
        // Files are not content-hashed by name: always revalidate (cheap, via the ETag).
        .header(header::CACHE_CONTROL, "no-cache");
    let response = if fresh {
        builder.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else {
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(file.data.into_owned())
        };
        builder
            .header(header::CONTENT_TYPE, mime.as_ref())
            .body(body)
    };
    response.unwrap_or_else(|e| ApiError::Internal(e.into()).into_response())
}

/// A route exists at this path, but not for this method.
pub async fn method_not_allowed(method: Method) -> Response {
    ApiError::MethodNotAllowed(format!("method {method} is not allowed here")).into_response()
}

/// Adds the headers every response carries, and the CSP on HTML.
pub async fn security_headers(mut response: Response) -> Response {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if is_html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
