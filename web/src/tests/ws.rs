//! The debug WebSocket over a real socket on 127.0.0.1:0, driven by tokio-tungstenite.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::fake::Fake;
use crate::WebConfig;
use crate::dto::{ExecType, JobInput};

struct Server {
    addr: SocketAddr,
    fake: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(token: Option<&str>) -> Server {
        let config = WebConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_tokens: token
                .map(|t| vec![crate::AuthToken::parse(t).expect("token")])
                .unwrap_or_default(),
            max_body_bytes: 1 << 20,
        };
        let fake = Fake::new();
        let (listener, addr) = crate::bind(&config).await.expect("bind 127.0.0.1:0");
        assert_ne!(addr.port(), 0);
        let (stop, stopped) = oneshot::channel::<()>();
        let backend = fake.clone();
        let task = tokio::spawn(crate::serve_on(listener, config, backend, async move {
            let _ = stopped.await;
        }));
        let input = JobInput {
            job_id: Some("j1".into()),
            name: Some("j1".into()),
            ..JobInput::default()
        };
        crate::Backend::create_job(
            &*fake,
            &crate::Actor("ci".into()),
            Some(ExecType::Timing),
            input,
            false,
        )
        .await
        .expect("create j1");
        Server {
            addr,
            fake,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, query: &str) -> String {
        format!("ws://{}/api/debug?{query}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
        result.expect("serve ends cleanly");
    }
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake");
    client
}

/// Reads text frames until the close frame; returns them and the close code.
async fn read_all(client: &mut Client) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    let read = async {
        while let Some(message) = client.next().await {
            match message.expect("websocket read") {
                Message::Text(t) => texts.push(t.as_str().to_owned()),
                Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
                _ => {}
            }
        }
        None
    };
    let code = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server closes in time");
    (texts, code)
}

#[tokio::test]
async fn plain_format_streams_lines_then_the_error_then_closes_normally() {
    let server = Server::start(None).await;
    let mut client = connect(&server.url("id=j1")).await;
    let (texts, code) = read_all(&mut client).await;
    assert_eq!(texts, ["hello", "world", "Error: boom\n    at job.js:3"]);
    assert_eq!(code, Some(1000));
    server.stop().await;
}

#[tokio::test]
async fn json_format_sends_each_event() {
    let server = Server::start(None).await;
    let mut client = connect(&server.url("id=j1&format=json")).await;
    let (texts, code) = read_all(&mut client).await;
    let events: Vec<Value> = texts
        .iter()
        .map(|t| serde_json::from_str(t).expect("a JSON frame"))
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["type"], "log");
    assert_eq!(events[0]["text"], "hello");
    assert_eq!(events[2]["type"], "end");
    assert_eq!(events[2]["outcome"], "failed");
    assert_eq!(events[2]["error"]["message"], "Error: boom");
    assert_eq!(code, Some(1000));
    server.stop().await;
}

#[tokio::test]
async fn draft_mode_runs_the_first_frame() {
    let server = Server::start(None).await;
    let mut client = connect(&server.url("draft=1&format=json")).await;
    client
        .send(Message::Text(
            json!({"script": "console.log('draft')"}).to_string().into(),
        ))
        .await
        .expect("send draft");
    let (texts, code) = read_all(&mut client).await;
    let first: Value = serde_json::from_str(&texts[0]).expect("json");
    assert_eq!(first["text"], "console.log('draft')");
    assert_eq!(code, Some(1000));

    // A bad draft frame is reported in-band.
    let mut client = connect(&server.url("draft=true&id=j1")).await;
    client
        .send(Message::Text("{not json".into()))
        .await
        .expect("send draft");
    let (texts, code) = read_all(&mut client).await;
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("malformed JSON"), "{texts:?}");
    assert_eq!(code, Some(1008));
    server.stop().await;
}

#[tokio::test]
async fn unknown_job_is_reported_in_band() {
    let server = Server::start(None).await;
    let mut client = connect(&server.url("id=nope")).await;
    let (texts, code) = read_all(&mut client).await;
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("nope"), "{texts:?}");
    assert_eq!(code, Some(1008));

    let mut client = connect(&server.url("id=nope&format=json")).await;
    let (texts, code) = read_all(&mut client).await;
    let frame: Value = serde_json::from_str(&texts[0]).expect("json");
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["code"], "not_found");
    assert!(frame["error"].as_str().is_some());
    assert_eq!(code, Some(1008));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_run() {
    let server = Server::start(None).await;
    let mut client = connect(&server.url("id=hang")).await;
    let first = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("a first frame in time");
    assert!(matches!(first, Some(Ok(Message::Text(t))) if t.as_str() == "started"));
    drop(client);
    let cancelled = server.fake.cancelled.clone();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !cancelled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the run was not cancelled");
    server.stop().await;
}

#[tokio::test]
async fn token_in_the_url_opens_the_socket() {
    let server = Server::start(Some("s3cret")).await;
    let refused = tokio_tungstenite::connect_async(server.url("id=j1")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    let mut client = connect(&server.url("id=j1&token=s3cret")).await;
    let (texts, code) = read_all(&mut client).await;
    assert_eq!(texts.len(), 3);
    assert_eq!(code, Some(1000));
    server.stop().await;
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let server = Server::start(None).await;
    let config = WebConfig {
        addr: server.addr,
        auth_tokens: Vec::new(),
        max_body_bytes: 1024,
    };
    let err = match crate::bind(&config).await {
        Ok(_) => panic!("bound a port that is in use"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&server.addr.to_string()), "{err}");
    assert!(err.contains("another process uses this port"), "{err}");
    server.stop().await;
}
