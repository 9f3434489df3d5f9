//! Host calls: what the supervisor does on a script's behalf because the sandboxed
//! worker cannot (it has no network).
//!
//! [`HostCalls`] is the seam the pool calls for every [`protocol::HostCall`]; each call
//! runs in its own task, so a slow request holds up nothing else. [`HttpHost`] is the
//! real implementation: one shared `reqwest` client, a time limit per request and a cap
//! on the response body that is enforced while reading (a huge body is never buffered
//! whole). Every request passes the egress policy ([`crate::egress`]) on its URL, on
//! each address its host resolves to and on every redirect, and is counted per job
//! (allowed or denied) in [`EgressCounters`].
//!
//! This module must not know about runs beyond [`RunContextInfo`], and must not panic
//! on anything a script or a remote server sends: every failure becomes the `Err`
//! string the script sees (`fetch` rejects, `http.get` calls `onErr`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use protocol::{HostCall, HostResponse, HttpRequest, HttpResponse, RunId};

use crate::config::PoolArgs;
use crate::egress::resolve::PolicyResolver;
use crate::egress::{Denied, EgressCounters, EgressPolicy};

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
    own_ports: Arc<Vec<u16>>,
    policy: Arc<EgressPolicy>,
    counters: Arc<EgressCounters>,
}

/// What an [`HttpHost`] is built from. Both limits apply to each request on its own.
#[derive(Debug, Clone)]
pub struct HttpHostConfig {
    /// Time limit of one request, redirects and reading the body included.
    pub timeout: Duration,
    /// Largest response body of one request.
    pub max_body_bytes: usize,
    /// Ports of this service's own API (refused on local addresses).
    pub own_ports: Vec<u16>,
    pub policy: EgressPolicy,
    /// Where requests are counted, per job.
    pub counters: Arc<EgressCounters>,
}

impl HttpHost {
    /// The default egress policy, no own ports, counters of its own.
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
        Self::build(HttpHostConfig {
            timeout,
            max_body_bytes,
            own_ports,
            policy: EgressPolicy::default(),
            counters: Arc::default(),
        })
    }

    pub fn build(cfg: HttpHostConfig) -> anyhow::Result<Self> {
        let own_ports = Arc::new(cfg.own_ports);
        let policy = Arc::new(cfg.policy);
        let (denied_ports, redirect_policy) = (own_ports.clone(), policy.clone());
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("traitor/", env!("CARGO_PKG_VERSION")))
            // Every name is resolved through the policy, and the connection goes where
            // the policy looked: no proxy from the environment in between.
            .dns_resolver(Arc::new(PolicyResolver::new(policy.clone())))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if is_own_api(attempt.url(), &denied_ports) {
                    attempt.error(OwnApiRedirect)
                } else if let Err(denied) = redirect_policy.check_url(attempt.url()) {
                    attempt.error(denied)
                } else if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .context("build the scripts' HTTP client")?;
        Ok(HttpHost {
            client,
            max_body_bytes: cfg.max_body_bytes,
            own_ports,
            policy,
            counters: cfg.counters,
        })
    }

    /// For `traitor exec`: the limits and egress policy of the flags, no own ports.
    pub fn from_args(args: &PoolArgs) -> anyhow::Result<Self> {
        Self::build(HttpHostConfig {
            timeout: Duration::from_millis(args.http_timeout_ms),
            max_body_bytes: args.http_max_body_bytes(),
            own_ports: Vec::new(),
            policy: args.egress.policy(),
            counters: Arc::default(),
        })
    }

    /// The counts of requests made through this host.
    pub fn counters(&self) -> &Arc<EgressCounters> {
        &self.counters
    }
}

impl HostCalls for HttpHost {
    fn call(&self, run: &RunContextInfo, call: HostCall) -> HostFuture {
        let host = self.clone();
        let job_id = run.job_id.clone();
        match call {
            HostCall::Http(req) => Box::pin(async move {
                let result = host.checked(req).await;
                match &result {
                    Err(Refusal::Denied(why)) => {
                        host.counters.record(&job_id, false);
                        tracing::info!(job_id = %job_id, reason = %why, "script request refused");
                    }
                    Err(Refusal::Invalid(_)) => {}
                    Ok(_) | Err(Refusal::Failed(_)) => host.counters.record(&job_id, true),
                }
                result.map_err(Refusal::into_message)
            }),
            // Answered by `crate::kvhost::KvHost`, which wraps this.
            HostCall::Kv(_) => Box::pin(async { Err("kv is not available here".to_string()) }),
        }
    }
}

/// A redirect to this service's own API, refused like a direct request to it.
#[derive(Debug)]
struct OwnApiRedirect;

impl std::fmt::Display for OwnApiRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("redirect to this traitor's own API refused")
    }
}

impl std::error::Error for OwnApiRedirect {}

/// How a script's request did not produce a response.
enum Refusal {
    /// Not a request at all (bad URL, method or scheme): not counted.
    Invalid(String),
    /// Refused by the egress policy or the own-API rule: counted as denied.
    Denied(String),
    /// Allowed, then failed (refused connection, timeout, body too large).
    Failed(String),
}

impl Refusal {
    fn into_message(self) -> String {
        match self {
            Refusal::Invalid(m) | Refusal::Denied(m) | Refusal::Failed(m) => m,
        }
    }
}

impl HttpHost {
    async fn checked(&self, req: HttpRequest) -> Result<HostResponse, Refusal> {
        let url = reqwest::Url::parse(&req.url)
            .map_err(|e| Refusal::Invalid(format!("invalid URL {:?}: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::Invalid(format!(
                "unsupported URL scheme {:?}: only http and https are allowed",
                url.scheme()
            )));
        }
        if is_own_api(&url, &self.own_ports) {
            return Err(Refusal::Denied(format!(
                "requests to this traitor's own API ({}) are not allowed from scripts",
                req.url
            )));
        }
        self.policy
            .check_url(&url)
            .map_err(|d| Refusal::Denied(d.to_string()))?;
        http(self.client.clone(), self.max_body_bytes, url, req).await
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
    url: reqwest::Url,
    req: HttpRequest,
) -> Result<HostResponse, Refusal> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| Refusal::Invalid(format!("invalid HTTP method {:?}", req.method)))?;
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
        return Err(Refusal::Failed(too_large(max_body)));
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
            return Err(Refusal::Failed(too_large(max_body)));
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
/// error (Connect): tcp connect error: Connection refused (os error 111)`; an egress
/// refusal (from the resolver or a redirect) as itself.
fn describe(e: reqwest::Error) -> Refusal {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = src {
        if let Some(denied) = cause.downcast_ref::<Denied>() {
            return Refusal::Denied(denied.to_string());
        }
        if let Some(own) = cause.downcast_ref::<OwnApiRedirect>() {
            return Refusal::Denied(own.to_string());
        }
        src = cause.source();
    }
    if e.is_timeout() {
        return Refusal::Failed(format!("request timed out: {e}"));
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
    Refusal::Failed(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressDefault;
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
        // Redirects to it are refused too, and counted as denied.
        let redirect = serve(
            b"HTTP/1.1 302 Found\r\nlocation: http://localhost:8080/api/jobList\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let err = host.call(&info(), get(&redirect)).await.unwrap_err();
        assert!(
            err.ends_with("redirect to this traitor's own API refused"),
            "{err}"
        );
        assert_eq!(host.counters().totals(), (0, 7));
        // Other local ports are ordinary servers.
        let refused = host
            .call(&info(), get("http://127.0.0.1:1/"))
            .await
            .unwrap_err();
        assert!(!refused.contains("own API"), "{refused}");
    }

    fn with_policy(allow: &[&str], deny: &[&str], default: EgressDefault) -> HttpHost {
        let rules = |l: &[&str]| l.iter().map(|r| r.parse().unwrap()).collect();
        HttpHost::build(HttpHostConfig {
            timeout: Duration::from_secs(5),
            max_body_bytes: 1024,
            own_ports: Vec::new(),
            policy: EgressPolicy::new(rules(allow), rules(deny), default),
            counters: Arc::default(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_egress_policy_refuses_addresses_names_and_redirects() {
        let ok = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await;
        let port = reqwest::Url::parse(&ok).unwrap().port().unwrap();
        let host = with_policy(&[], &["127.0.0.0/8", "::1"], EgressDefault::Allow);
        let err = host
            .call(&info(), get("http://169.254.169.254/latest/meta-data"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "egress denied: 169.254.169.254 is a cloud metadata address"
        );
        // A name is judged by what it resolves to.
        let err = host
            .call(&info(), get(&format!("http://localhost:{port}/")))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("egress denied: localhost resolves to ")
                && err.contains("matches --egress-deny"),
            "{err}"
        );
        // A redirect is judged like the first request.
        let open = with_policy(&[], &[], EgressDefault::Allow);
        let redirect = serve(
            b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/x\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let err = open.call(&info(), get(&redirect)).await.unwrap_err();
        assert_eq!(
            err,
            "egress denied: 169.254.169.254 is a cloud metadata address"
        );
        let HostResponse::Http(r) = open.call(&info(), get(&ok)).await.unwrap() else {
            panic!("an HTTP call answers with an HTTP response");
        };
        assert_eq!(r.body, b"ok");
        assert_eq!(host.counters().totals(), (0, 2));
        assert_eq!(open.counters().totals(), (1, 1));
        assert_eq!(open.counters().per_job()[0].0, "j");
    }

    #[tokio::test]
    async fn default_deny_lets_through_only_what_is_allowed() {
        let ok = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()).await;
        let port = reqwest::Url::parse(&ok).unwrap().port().unwrap();
        let closed = with_policy(&["api.example.com"], &[], EgressDefault::Deny);
        let err = closed.call(&info(), get(&ok)).await.unwrap_err();
        assert!(err.contains("is not in --egress-allow"), "{err}");
        let err = closed
            .call(&info(), get(&format!("http://localhost:{port}/")))
            .await
            .unwrap_err();
        assert!(err.starts_with("egress denied: localhost is not"), "{err}");
        let by_name = with_policy(&["localhost"], &[], EgressDefault::Deny);
        let by_net = with_policy(&["127.0.0.0/8", "::1"], &[], EgressDefault::Deny);
        for h in [by_name, by_net] {
            let HostResponse::Http(r) = h
                .call(&info(), get(&format!("http://localhost:{port}/")))
                .await
                .unwrap()
            else {
                panic!("an HTTP call answers with an HTTP response");
            };
            assert_eq!(r.status, 200);
        }
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
