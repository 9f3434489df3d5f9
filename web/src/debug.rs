//! The debug WebSocket, `GET /api/debug?id=JOB[&format=json][&draft=1]`: runs a script
//! now through [`Backend::debug`](crate::Backend::debug) and streams its console.
//!
//! Plain format (the seed's): one text frame per console line with just its text; if the
//! run ends with an error, one more frame `<message>\n<stack>`; then close 1000.
//! `format=json`: each [`DebugEvent`] as one JSON text frame, then close 1000.
//! `draft=1`: the first client frame, `{"script": "…"}`, is what runs.
//! Errors before the run starts go in-band (a text frame, or `{"type":"error",…}` in
//! JSON format) followed by close 1008 (the request was at fault) or 1011 (we were).
//!
//! Access (token, `Origin`) is checked by [`crate::auth`] before the upgrade. This module
//! must not block the client on the run: a client that goes away cancels the run.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::backend::{Backend, DebugSession};
use crate::dto::{DebugEvent, DebugSource};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Params, parse_json};

/// How long a draft client has to send its script.
const DRAFT_WAIT: Duration = Duration::from_secs(10);
/// How long we wait for the client's answer to our close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    Json,
}

/// What the client asked for, read before the upgrade.
struct Request {
    id: Option<String>,
    format: Format,
    draft: bool,
}

/// The first frame of a draft session.
#[derive(Debug, Deserialize)]
struct DraftFrame {
    script: Option<String>,
}

/// An error reported in-band in JSON format.
#[derive(Debug, Serialize)]
struct ErrorFrame {
    r#type: &'static str,
    #[serde(flatten)]
    body: ErrorBody,
}

/// Run a job's script (or a draft) now and stream its console over a WebSocket.
#[utoipa::path(get, path = "/api/debug", tag = "scripts",
    params(
        ("id" = Option<String>, Query, description = "Job id; required unless `draft=1`"),
        ("format" = Option<String>, Query, description = "`plain` (default: one frame per console line) or `json` (one DebugEvent per frame)"),
        ("draft" = Option<bool>, Query, description = "When true, the first client frame `{\"script\": \"…\"}` is run instead of the stored script"),
        ("token" = Option<String>, Query, description = "The auth token, for browsers that cannot set `Authorization` on a WebSocket"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Missing `id`", body = ErrorBody),
        (status = 403, description = "`Origin` is not this server", body = ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade", body = ErrorBody),
    ))]
pub async fn debug(
    State(state): State<AppState>,
    params: Params,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let format = params
        .parse("format", "plain or json", |raw| {
            if raw.eq_ignore_ascii_case("json") {
                Some(Format::Json)
            } else if raw.eq_ignore_ascii_case("plain") || raw.eq_ignore_ascii_case("text") {
                Some(Format::Plain)
            } else {
                None
            }
        })?
        .unwrap_or(Format::Plain);
    let draft = params.bool("draft")?.unwrap_or(false);
    let id = params.get("id").map(str::to_owned);
    if id.is_none() && !draft {
        return Err(ApiError::MissingParameter("id".into()));
    }
    let upgrade = upgrade.map_err(|e| {
        ApiError::UpgradeRequired(format!("/api/debug is a WebSocket endpoint: {e}"))
    })?;
    let request = Request { id, format, draft };
    let backend = state.backend.clone();
    Ok(upgrade
        .max_message_size(state.config.max_body_bytes)
        .on_upgrade(move |socket| session(socket, backend, request)))
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

async fn session(socket: WebSocket, backend: Arc<dyn Backend>, request: Request) {
    let (sink, mut stream) = socket.split();
    let source = if request.draft {
        match read_draft(&mut stream).await {
            Ok(Some(script)) => DebugSource::Draft {
                job_id: request.id,
                script,
            },
            Ok(None) => return, // The client left.
            Err(e) => return refuse(sink, stream, request.format, e).await,
        }
    } else {
        match request.id {
            Some(job_id) => DebugSource::Stored { job_id },
            // `debug` refuses this before upgrading.
            None => return,
        }
    };
    match backend.debug(source).await {
        Ok(run) => stream_run(sink, stream, request.format, run).await,
        Err(e) => refuse(sink, stream, request.format, e.into()).await,
    }
}

/// Waits for the draft's `{"script": …}` frame. `Ok(None)` when the client left.
async fn read_draft(stream: &mut Stream) -> Result<Option<String>, ApiError> {
    let wait = async {
        loop {
            match stream.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(text))) => return Some(text.as_bytes().to_vec()),
                Some(Ok(Message::Binary(bytes))) => return Some(bytes.to_vec()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            }
        }
    };
    let frame = tokio::time::timeout(DRAFT_WAIT, wait).await.map_err(|_| {
        ApiError::BadRequest(format!(
            "draft mode: no `{{\"script\": …}}` frame within {} s",
            DRAFT_WAIT.as_secs()
        ))
    })?;
    let Some(bytes) = frame else {
        return Ok(None);
    };
    let draft: DraftFrame = parse_json(&bytes)?;
    draft
        .script
        .map(Some)
        .ok_or_else(|| ApiError::invalid_field("script", "is required"))
}

/// Reports an error that stopped the run from starting, then closes.
async fn refuse(mut sink: Sink, stream: Stream, format: Format, error: ApiError) {
    let text = match format {
        Format::Plain => error.body().error,
        Format::Json => serde_json::to_string(&ErrorFrame {
            r#type: "error",
            body: error.body(),
        })
        .unwrap_or_else(|_| error.to_string()),
    };
    if let ApiError::Internal(e) = &error {
        tracing::error!(error = format!("{e:#}"), "debug run could not start");
    }
    let code = if error.status().is_server_error() {
        close_code::ERROR
    } else {
        close_code::POLICY
    };
    if sink.send(Message::Text(text.into())).await.is_ok() {
        close(sink, stream, code, error.code()).await;
    }
}

/// Forwards the run's events until its `End`, cancelling it if the client goes away.
async fn stream_run(mut sink: Sink, mut stream: Stream, format: Format, run: DebugSession) {
    let DebugSession { mut events, cancel } = run;
    let mut cancel = Some(cancel);
    let mut cancel_run = || {
        if let Some(cancel) = cancel.take() {
            cancel();
        }
    };
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    // The backend dropped the run without an `End`: say so, do not hang.
                    let error = ApiError::Internal(anyhow::anyhow!("debug run ended without a result"));
                    return refuse(sink, stream, format, error).await;
                };
                let last = matches!(event, DebugEvent::End { .. });
                for frame in render(&event, format) {
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        cancel_run();
                        return;
                    }
                }
                if last {
                    break;
                }
            }
            message = stream.next() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    tracing::debug!("debug client went away; cancelling the run");
                    cancel_run();
                    return;
                }
                // Anything else the client says during a run is ignored.
                Some(Ok(_)) => {}
            },
        }
    }
    close(sink, stream, close_code::NORMAL, "").await;
}

/// The text frames one event becomes.
fn render(event: &DebugEvent, format: Format) -> Vec<String> {
    match format {
        Format::Json => serde_json::to_string(event).into_iter().collect(),
        Format::Plain => match event {
            DebugEvent::Log { text, .. } => vec![text.clone()],
            DebugEvent::End {
                error: Some(error), ..
            } => match error.stack.as_deref().filter(|s| !s.is_empty()) {
                Some(stack) => vec![format!("{}\n{stack}", error.message)],
                None => vec![error.message.clone()],
            },
            DebugEvent::End { outcome, .. } if outcome != "succeeded" => {
                vec![format!("run ended: {outcome}")]
            }
            DebugEvent::End { .. } => vec![],
        },
    }
}

/// Sends a close frame and waits briefly for the client's, so the close is clean.
async fn close(mut sink: Sink, mut stream: Stream, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if sink.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::ErrorView;

    #[test]
    fn plain_format_renders_error_with_stack() {
        let end = DebugEvent::End {
            outcome: "failed".into(),
            error: Some(ErrorView {
                message: "Error: boom".into(),
                stack: Some("at <eval>:1".into()),
            }),
            duration_ms: 3,
        };
        assert_eq!(
            render(&end, Format::Plain),
            vec!["Error: boom\nat <eval>:1"]
        );
        let ok = DebugEvent::End {
            outcome: "succeeded".into(),
            error: None,
            duration_ms: 3,
        };
        assert!(render(&ok, Format::Plain).is_empty());
        let json = render(&ok, Format::Json);
        assert!(json[0].contains(r#""type":"end""#), "{json:?}");
    }
}
