//! Host calls: what the supervisor does on a script's behalf because the sandboxed
//! worker cannot (it has no network).
//!
//! [`HostCalls`] is the seam the pool calls for every [`protocol::HostCall`]; each call
//! runs in its own task, so a slow request holds up nothing else. [`HttpHost`] is the
//! real implementation: one shared `reqwest` client, a time limit per request and a cap
//! on the response body that is enforced while reading (a huge body is never buffered
//! whole).
//!
//! This module must not know about runs beyond [`RunContextInfo`], and must not panic
//! on anything a script or a remote server sends: every failure becomes the `Err`
//! string the script sees (`fetch` rejects, `http.get` calls `onErr`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use protocol::{HostCall, HostResponse, HttpRequest, HttpResponse, RunId};

use crate::config::PoolArgs;

/// What a host call knows about the run that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContextInfo {
    pub run_id: RunId,
    pub job_id: String,
    pub worker_pid: u32,
}

/// The future a host call returns: the answer, or an error message for the script.
pub type HostFuture = Pin<Box<dyn Future<Output = Result<HostResponse, String>> + Send>>;

/// Performs host calls. Implementations must be cheap to call (the work happens in
/// the returned future) and must never panic.
pub trait HostCalls: Send + Sync + 'static {
    fn call(&self, run: &RunContextInfo, call: HostCall) -> HostFuture;
}

/// Refuses every host call. For pools whose scripts may not reach the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl HostCalls for NoHost {
    fn call(&self, _run: &RunContextInfo, _call: HostCall) -> HostFuture {
        Box::pin(async { Err("host calls are disabled here".to_string()) })
    }
}

/// Real HTTP for scripts (`fetch`, `require('http').get`).
#[derive(Debug, Clone)]
pub struct HttpHost {
    client: reqwest::Client,
    max_body_bytes: usize,
    /// Ports of this service's own API: a script may not call them on a local address
    /// (without a token the API trusts loopback clients, so a script could otherwise
    /// edit or delete every job).
    own_ports: std::sync::Arc<Vec<u16>>,
}

impl HttpHost {
    pub fn new(timeout: Duration, max_body_bytes: usize) -> anyhow::Result<Self> {
        Self::with_own_ports(timeout, max_body_bytes, Vec::new())
    }

    /// Like [`HttpHost::new`], refusing requests (and redirects) to `own_ports` on a
    /// local address.
    pub fn with_own_ports(
        timeout: Duration,
        max_body_bytes: usize,
        own_ports: Vec<u16>,
    ) -> anyhow::Result<Self> {
        let own_ports = std::sync::Arc::new(own_ports);
        let denied = own_ports.clone();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("traitor/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if is_own_api(attempt.url(), &denied) {
                    attempt.error("redirect to this traitor's own API refused")
                } else if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .build()?;
        Ok(HttpHost {
            client,
            max_body_bytes,
            own_ports,
        })
    }

    pub fn from_args(args: &PoolArgs) -> anyhow::Result<Self> {
        let max = usize::try_from(args.http_max_body_kb.saturating_mul(1024)).unwrap_or(usize::MAX);
        Self::new(Duration::from_millis(args.http_timeout_ms), max)
    }
}

impl HostCalls for HttpHost {
    fn call(&self, _run: &RunContextInfo, call: HostCall) -> HostFuture {
        let client = self.client.clone();
        let max = self.max_body_bytes;
        let own = self.own_ports.clone();
        match call {
            HostCall::Http(req) => Box::pin(async move {
                if let Ok(url) = reqwest::Url::parse(&req.url)
                    && is_own_api(&url, &own)
                {
                    return Err(format!(
                        "requests to this traitor's own API ({}) are not allowed from scripts",
                        req.url
                    ));
                }
                http(client, max, req).await
            }),
            // Answered by `crate::kvhost::KvHost`, which wraps this.
            HostCall::Kv(_) => Box::pin(async { Err("kv is not available here".to_string()) }),
        }
    }
}

/// A URL on a local address (loopback, unspecified, `localhost`) at one of `ports`.
fn is_own_api(url: &reqwest::Url, ports: &[u16]) -> bool {
    let Some(port) = url.port_or_known_default() else {
        return false;
    };
    if !ports.contains(&port) {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
        None => false,
    }
}

async fn http(
    client: reqwest::Client,
    max_body: usize,
    req: HttpRequest,
) -> Result<HostResponse, String> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| format!("invalid HTTP method {:?}", req.method))?;
    let url =
        reqwest::Url::parse(&req.url).map_err(|e| format!("invalid URL {:?}: {e}", req.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported URL scheme {:?}: only http and https are allowed",
            url.scheme()
        ));
    }
    let mut rb = client.request(method, url);
    for (name, value) in req.headers {
        rb = rb.header(name, value);
    }
    if let Some(body) = req.body {
        rb = rb.body(body);
    }
    let mut resp = rb.send().await.map_err(describe)?;
    if resp
        .content_length()
        .is_some_and(|len| len > max_body as u64)
    {
        return Err(too_large(max_body));
    }
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > max_body {
            return Err(too_large(max_body));
        }
        body.extend_from_slice(&chunk);
    }
    let status_text = match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    Ok(HostResponse::Http(HttpResponse {
        status: status.as_u16(),
        status_text,
        headers,
        body,
    }))
}

fn too_large(max: usize) -> String {
    format!("response body exceeds the limit of {} KiB", max / 1024)
}

/// A reqwest error with its causes, e.g. `error sending request for url (…): client
/// error (Connect): tcp connect error: Connection refused (os error 111)`.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("request timed out: {e}");
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn info() -> RunContextInfo {
        RunContextInfo {
            run_id: 1,
            job_id: "j".into(),
            worker_pid: 1,
        }
    }

    fn get(url: &str) -> HostCall {
        HostCall::Http(HttpRequest {
            method: "GET".into(),
            url: url.into(),
            headers: vec![("x-test".into(), "1".into())],
            body: None,
        })
    }

    /// Answers every connection with `response` and then closes it.
    async fn serve(response: Vec<u8>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let response = response.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(&response).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_get_returns_status_headers_and_body() {
        let url = serve(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\nx-a: b\r\nconnection: close\r\n\r\nnope!"
                .to_vec(),
        )
        .await;
        let host = HttpHost::new(Duration::from_secs(5), 1024).unwrap();
        let Ok(HostResponse::Http(r)) = host.call(&info(), get(&url)).await else {
            panic!("expected an HTTP response")
        };
        assert_eq!(r.status, 404);
        assert_eq!(r.status_text, "404 Not Found");
        assert_eq!(r.body, b"nope!");
        assert!(r.headers.contains(&("x-a".into(), "b".into())));
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_an_error_with_or_without_a_length() {
        let big = vec![b'x'; 3000];
        let mut with_len =
            b"HTTP/1.1 200 OK\r\ncontent-length: 3000\r\nconnection: close\r\n\r\n".to_vec();
        with_len.extend_from_slice(&big);
        let mut chunked = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        chunked.extend_from_slice(&big);
        let host = HttpHost::new(Duration::from_secs(5), 2048).unwrap();
        for resp in [with_len, chunked] {
            let url = serve(resp).await;
            let err = host.call(&info(), get(&url)).await.unwrap_err();
            assert_eq!(err, "response body exceeds the limit of 2 KiB");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let host = HttpHost::new(Duration::from_secs(5), 1024).unwrap();
        let err = host
            .call(&info(), get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(err.contains("Connection refused"), "{err}");
    }

    #[tokio::test]
    async fn a_slow_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let host = HttpHost::new(Duration::from_millis(200), 1024).unwrap();
        let err = host
            .call(&info(), get(&format!("http://{addr}/")))
            .await
            .unwrap_err();
        assert!(err.starts_with("request timed out"), "{err}");
    }

    #[tokio::test]
    async fn scripts_cannot_call_this_services_own_api() {
        let host = HttpHost::with_own_ports(Duration::from_secs(2), 1024, vec![8080]).unwrap();
        for url in [
            "http://127.0.0.1:8080/api/jobList",
            "http://localhost:8080/api/run",
            "http://127.9.9.9:8080/",
            "http://[::1]:8080/",
            "http://0.0.0.0:8080/",
            "http://[::ffff:127.0.0.1]:8080/",
        ] {
            let err = host.call(&info(), get(url)).await.unwrap_err();
            assert!(err.contains("own API"), "{url}: {err}");
        }
        // Other local ports are ordinary servers.
        let refused = host
            .call(&info(), get("http://127.0.0.1:1/"))
            .await
            .unwrap_err();
        assert!(!refused.contains("own API"), "{refused}");
    }

    #[tokio::test]
    async fn bad_urls_and_schemes_are_refused() {
        let host = HttpHost::new(Duration::from_secs(1), 1024).unwrap();
        let err = host
            .call(&info(), get("file:///etc/passwd"))
            .await
            .unwrap_err();
        assert!(err.contains("only http and https"), "{err}");
        let err = host.call(&info(), get("not a url")).await.unwrap_err();
        assert!(err.starts_with("invalid URL"), "{err}");
    }
}
