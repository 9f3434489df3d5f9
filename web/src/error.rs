//! [`ApiError`]: the one place where an HTTP status code and a stable error `code` are
//! chosen, and the one place a fault is logged before it becomes a response.
//!
//! Every handler, extractor and middleware of this crate fails with an `ApiError`, and
//! every error body has the same shape: `{"error": "<message>", "code": "<code>"}` plus
//! `"field"` when one field or parameter is at fault. The codes are part of the API:
//! clients match on them, so a code must never change meaning. This module must not
//! decide *whether* something is an error (that is the caller's job), and must never leak
//! the details of an internal fault to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::backend::ServiceError;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A human-readable message; may change between versions.
    pub error: String,
    /// A stable snake_case code, e.g. `invalid_field`, `not_found`, `unauthorized`.
    pub code: String,
    /// The body field or query parameter at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input that is not about a single field.
    #[error("{0}")]
    BadRequest(String),
    /// A body field has the wrong type or value.
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// A query parameter has a value we do not understand.
    #[error("{field}: {message}")]
    InvalidParameter { field: String, message: String },
    /// A required query parameter is absent or empty.
    #[error("missing query parameter `{0}`")]
    MissingParameter(String),
    /// The body is not JSON at all.
    #[error("{0}")]
    MalformedJson(String),
    /// The body says it is something other than JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than `max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// No or a wrong bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// No token is configured and the client is not on this machine.
    #[error(
        "this server has no auth token configured, so it only serves clients on this \
         machine; set TRAITOR_AUTH_TOKEN to serve others"
    )]
    LoopbackOnly,
    /// A browser page from another origin tried to use the API.
    #[error("{0}")]
    BadOrigin(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// A value inside the request is over one of the service's limits.
    #[error("{0}")]
    TooLarge(String),
    /// `/api/debug` was called without a WebSocket upgrade.
    #[error("{0}")]
    UpgradeRequired(String),
    #[error("{0}")]
    Unavailable(String),
    /// A real fault. Logged with its whole chain; the client sees a generic message.
    #[error("internal error")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidParameter { .. }
            | ApiError::MissingParameter(_)
            | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::LoopbackOnly | ApiError::BadOrigin(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BodyTooLarge { .. } | ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::MissingParameter(_) => "missing_parameter",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::LoopbackOnly => "loopback_only",
            ApiError::BadOrigin(_) => "bad_origin",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UpgradeRequired(_) => "upgrade_required",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The field or parameter at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField { field, .. } | ApiError::InvalidParameter { field, .. } => {
                Some(field)
            }
            ApiError::MissingParameter(name) => Some(name),
            _ => None,
        }
    }

    /// The body sent to the client. Also used in-band by the debug socket.
    pub fn body(&self) -> ErrorBody {
        let error = match self {
            // The field is named in `field`; the message reads better with it too.
            ApiError::InvalidField { field, message }
            | ApiError::InvalidParameter { field, message } => format!("{field}: {message}"),
            other => other.to_string(),
        };
        ErrorBody {
            error,
            code: self.code().to_owned(),
            field: self.field().map(str::to_owned),
        }
    }

    /// Logs the error where it is handled: faults loudly, client mistakes quietly.
    fn log(&self) {
        match self {
            ApiError::Internal(e) => tracing::error!(error = format!("{e:#}"), "request failed"),
            ApiError::Unavailable(msg) => tracing::warn!(%msg, "service unavailable"),
            other => tracing::debug!(code = other.code(), error = %other, "request refused"),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid {
                field: Some(field),
                message,
            } => ApiError::InvalidField { field, message },
            ServiceError::Invalid {
                field: None,
                message,
            } => ApiError::BadRequest(message),
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::TooLarge(m) => ApiError::TooLarge(m),
            ServiceError::Unavailable(m) => ApiError::Unavailable(m),
            ServiceError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"traitor\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_their_codes() {
        let cases: Vec<(ServiceError, StatusCode, &str, Option<&str>)> = vec![
            (
                ServiceError::invalid("cron", "bad"),
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some("cron"),
            ),
            (
                ServiceError::Invalid {
                    field: None,
                    message: "no".into(),
                },
                StatusCode::BAD_REQUEST,
                "bad_request",
                None,
            ),
            (
                ServiceError::NotFound("x".into()),
                StatusCode::NOT_FOUND,
                "not_found",
                None,
            ),
            (
                ServiceError::Conflict("x".into()),
                StatusCode::CONFLICT,
                "conflict",
                None,
            ),
            (
                ServiceError::TooLarge("x".into()),
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                None,
            ),
            (
                ServiceError::Unavailable("x".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                None,
            ),
            (
                ServiceError::Internal(anyhow::anyhow!("disk on fire")),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
            ),
        ];
        for (service, status, code, field) in cases {
            let api = ApiError::from(service);
            assert_eq!(api.status(), status);
            assert_eq!(api.code(), code);
            assert_eq!(api.field(), field);
        }
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let body = ApiError::Internal(anyhow::anyhow!("secret path /var/x")).body();
        assert!(!body.error.contains("secret"));
    }
}
