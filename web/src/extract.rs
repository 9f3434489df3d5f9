//! Request extractors that fail with an [`ApiError`] naming what is wrong: [`Params`] for
//! query strings and [`JsonBody`] for JSON bodies.
//!
//! axum's own `Query` and `Json` answer bad input with plain-text bodies; these answer in
//! the API's JSON error shape and name the parameter or field at fault. They only check
//! shape and type; whether a value makes sense (is the cron valid, does the job exist) is
//! the backend's call, and this module must not make it.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{HeaderMap, header, request::Parts};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// The query string as name/value pairs, with typed accessors that name the parameter
/// in their errors. Unknown parameters are ignored; an empty value counts as absent.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Params::from_uri(&parts.uri)
    }
}

impl Params {
    pub fn from_uri(uri: &axum::http::Uri) -> Result<Self, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
    }

    /// The first non-empty value of `name`, trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))
    }

    /// Parses `name` with `parse` when present; `expected` says what was wanted.
    pub fn parse<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse(raw).map(Some).ok_or_else(|| {
                ApiError::invalid_parameter(name, format!("must be {expected}, not {raw:?}"))
            }),
        }
    }

    /// An integer in `min..=max`.
    pub fn int_in(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let expected = format!("a whole number from {min} to {max}");
        self.parse(name, &expected, |raw| {
            raw.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
        })
    }

    /// `true`/`false` (also `1`/`0`), case-insensitive.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.parse(name, "true or false", parse_bool)
    }

    /// An instant: RFC 3339, or Unix milliseconds.
    pub fn instant(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.parse(name, "an RFC 3339 time or Unix milliseconds", parse_instant)
    }
}

pub fn parse_bool(raw: &str) -> Option<bool> {
    if raw.eq_ignore_ascii_case("true") || raw == "1" {
        Some(true)
    } else if raw.eq_ignore_ascii_case("false") || raw == "0" {
        Some(false)
    } else {
        None
    }
}

pub fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    if let Ok(ms) = raw.parse::<i64>() {
        return DateTime::from_timestamp_millis(ms);
    }
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A JSON body, deserialised with the path of any wrong field in the error.
///
/// A body without a `Content-Type` is taken as JSON (curl users forget the header); any
/// other non-JSON type is refused with 415, which also keeps browsers' cross-site form
/// posts out. The size limit is the router's `DefaultBodyLimit`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        check_json_content_type(req.headers())?;
        let limit = state.config.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge { limit }
            } else {
                ApiError::BadRequest(format!("could not read the request body: {rejection}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let refuse = || {
        ApiError::UnsupportedMediaType(format!(
            "request body must be JSON; send `Content-Type: application/json`, not {value:?}"
        ))
    };
    let text = value.to_str().map_err(|_| refuse())?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json { Ok(()) } else { Err(refuse()) }
}

/// Parses `bytes` as JSON into `T`, telling syntax errors (with line and column) from
/// wrong fields (with the field's path).
///
/// A well-formed body is read straight into `T`; anything else (and any body the
/// direct read might judge differently) takes the checked path, which decides.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(value) = parse_json_direct(bytes) {
        return Ok(value);
    }
    parse_json_checked(bytes)
}

/// `T` read directly from the bytes, or `None` to leave the body to
/// [`parse_json_checked`].
///
/// The checked path parses the whole body into a `Value` first (~half of a create's
/// JSON cost); reading `T` directly gives the same `T` whenever both succeed, and on
/// any error the checked path runs and names the problem. What remains is where a
/// direct read could succeed while the checked path refuses; [`direct_read_is_safe`]
/// sends those bodies down the checked path.
fn parse_json_direct<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    if !direct_read_is_safe(bytes) {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// Whether a direct read of `bytes` cannot accept what a `Value` parse refuses. serde
/// reads a struct from an array too, so the body must start as an object. Fields that
/// `T` does not know are skipped without being parsed into values, which is looser
/// than a `Value` parse in four ways, each refused here: invalid UTF-8, `\u`
/// escapes (a lone surrogate), numbers that may overflow an `f64` (an exponent, or
/// 300 digits in a row), and nesting deeper than the `Value` parser's limit of 128.
fn direct_read_is_safe(bytes: &[u8]) -> bool {
    const MAX_DEPTH: u32 = 100;
    const MAX_DIGITS: u32 = 300;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    // Conservative: a backslash then `u` outside an escape (`"\\u"`) refuses too.
    if std::str::from_utf8(bytes).is_err() || memchr::memmem::find(bytes, b"\\u").is_some() {
        return false;
    }
    let (mut depth, mut digits) = (0u32, 0u32);
    let mut prev = b' ';
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'"' => {
                // Jump over the string: most of a body is the script's text.
                loop {
                    let Some(k) = memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) else {
                        return false; // Unterminated: the checked path says where.
                    };
                    i += k + 1;
                    if bytes[i - 1] == b'"' {
                        break;
                    }
                    i += 1; // The escaped character.
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'e' | b'E' if prev.is_ascii_digit() || prev == b'.' => return false,
            _ => {}
        }
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= MAX_DIGITS {
                return false;
            }
        } else {
            digits = 0;
        }
        prev = b;
    }
    true
}

/// The reference parse: syntax first, with line and column; then the shape, with the
/// field's path.
fn parse_json_checked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "request body is empty; expected a JSON object".into(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| json_error(&e, ""))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        json_error(err.inner(), &path)
    })
}

fn json_error(inner: &serde_json::Error, path: &str) -> ApiError {
    let message = strip_position(inner);
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ApiError::MalformedJson(format!(
                "malformed JSON at line {} column {}: {message}",
                inner.line(),
                inner.column()
            ))
        }
        serde_json::error::Category::Io => ApiError::BadRequest(message),
        serde_json::error::Category::Data => {
            if path.is_empty() || path == "." {
                match missing_field_name(&message) {
                    Some(field) => ApiError::invalid_field(&field, "is required"),
                    None => ApiError::BadRequest(format!(
                        "request body must be a JSON object: {message}"
                    )),
                }
            } else {
                ApiError::invalid_field(path, message)
            }
        }
    }
}

/// serde_json's message without its " at line X column Y" suffix.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// `missing field `script`` → `script`.
fn missing_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::JobInput;

    fn err<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> ApiError {
        match parse_json::<T>(body.as_bytes()) {
            Ok(v) => panic!("expected an error for {body}, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn wrong_field_type_names_the_field() {
        let e = err::<JobInput>(r#"{"name": 5}"#);
        assert_eq!(e.code(), "invalid_field");
        assert_eq!(e.field(), Some("name"));
        let e = err::<JobInput>(r#"{"execAt": "soon"}"#);
        assert_eq!(e.field(), Some("execAt"));
        assert!(e.to_string().contains("must be a number"), "{e}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = err::<JobInput>("{\"name\": \n  oops}");
        assert_eq!(e.code(), "malformed_json");
        assert!(e.to_string().contains("line 2"), "{e}");
        assert_eq!(err::<JobInput>("{} x").code(), "malformed_json");
        assert_eq!(err::<JobInput>("").code(), "malformed_json");
        assert_eq!(err::<JobInput>("[1]").code(), "bad_request");
    }

    /// The direct read and the checked path agree on `body`: the same job, or the
    /// checked path's error.
    fn same_as_checked(body: &[u8]) {
        let got = format!("{:?}", parse_json::<JobInput>(body));
        let want = format!("{:?}", parse_json_checked::<JobInput>(body));
        assert_eq!(got, want, "body {:?}", String::from_utf8_lossy(body));
    }

    #[test]
    fn the_direct_read_judges_bodies_as_the_checked_path_does() {
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        let long_number = format!("{{\"x\": 1{}}}", "0".repeat(400));
        let bodies: Vec<&[u8]> = vec![
            br#"{"name":"a","cron":"@hourly","script":"console.log(1)\n"}"#,
            br#"  {"name":"a","timeLimitMs":"5000","execAt":1700000000}"#,
            br#"{"name":"a","name":"b"}"#,
            br#"{"name":"a","x":{"y":[1,2,{"z":null}]},"timeLimitMs":1.5}"#,
            br#"[{"name":"a"}]"#,
            br#"["a"]"#,
            br#"{"name":"a"} x"#,
            br#"{"name":"\ud800"}"#,
            br#"{"x":"\ud800","name":"a"}"#,
            br#"{"x":"\u00e9","name":"caf\u00e9"}"#,
            br#"{"x":1e999,"name":"a"}"#,
            br#"{"x":1E5,"name":"a"}"#,
            br#"{"timeLimitMs":1e3}"#,
            br#"{"x":true,"y":false,"name":"e"}"#,
            b"{\"x\":\"\xff\",\"name\":\"a\"}",
            deep.as_bytes(),
            long_number.as_bytes(),
            br#"{"name":5}"#,
            br#"{"name":"a","secrets":["A","B"],"execType":"1"}"#,
            b"{\"name\":\"a\x01\"}",
        ];
        for body in bodies {
            same_as_checked(body);
        }
    }

    #[test]
    fn instants_and_bools() {
        assert!(parse_instant("2024-01-01T00:00:00Z").is_some());
        assert_eq!(
            parse_instant("1704067200000").map(|t| t.timestamp()),
            Some(1_704_067_200)
        );
        assert!(parse_instant("yesterday").is_none());
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
    }
}
