//! A traitor cluster made of real processes, for end-to-end tests: its own
//! `redis-server` on a free port, a fresh PostgreSQL database, `traitor -m multi` nodes
//! (each a [`Server`] with stable node names, so that a restarted node rejoins as
//! itself), nginx in front of them, and a collector that scripts report to over HTTP.
//! It is the topology of `docker-compose.yml`, as processes on loopback.
//!
//! Every child is killed, and the database dropped, when its handle is dropped; when a
//! test panics, [`ClusterLogs`] prints every log it was given.
//!
//! Needs `redis-server`, `nginx` and `psql` on the PATH (or in `/usr/sbin`) and a
//! PostgreSQL server at `TRAITOR_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test.sh` provides them.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::free_port;
use crate::server::{Options, Server, now_ms};

/// The admin URL of the PostgreSQL server the tests use (same variable as the store's
/// own tests).
pub fn postgres_admin_url() -> String {
    std::env::var("TRAITOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Cluster tests start several nodes each and measure timings: one at a time. (A tokio
/// mutex: it is held across awaits, works across the tests' runtimes and is not poisoned
/// by a failing test.)
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A unique, lower-case, SQL-safe suffix.
fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Finds a binary on the PATH or in the sbin directories a non-login PATH may miss.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn need_bin(name: &str) -> PathBuf {
    find_bin(name).unwrap_or_else(|| {
        panic!("`{name}` is not installed; scripts/test.sh installs it (apt-get install {name})")
    })
}

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn tail(path: &Path, max_bytes: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    if s.len() <= max_bytes {
        return s;
    }
    let mut cut = s.len() - max_bytes;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    format!("[… {cut} bytes cut …]\n{}", &s[cut..])
}

// ---- Redis ------------------------------------------------------------------------

/// A `redis-server` of this test only, on a free port, with no persistence: stopping it
/// forgets everything, as a crashed Redis without a disk would.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            log_path: dir.path().join("redis.log"),
            dir,
        };
        r.spawn();
        r
    }

    /// Starts (again) on the same port and waits until it answers `PING`.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open redis log");
        let child = Command::new(need_bin("redis-server"))
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Reply::Simple(s)) = self.cmd(&["PING"])
                && s == "PONG"
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!(
                    "redis-server exited during start-up ({st}):\n{}",
                    tail(&self.log_path, 4000)
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within 10 s:\n{}",
                tail(&self.log_path, 4000)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: gone at once, and everything it held with it.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command over a fresh connection.
    pub fn cmd(&self, args: &[&str]) -> std::io::Result<Reply> {
        Ok(self.pipeline(&[args.to_vec()])?.remove(0))
    }

    /// Several commands over one connection, their replies in order.
    pub fn pipeline(&self, cmds: &[Vec<&str>]) -> std::io::Result<Vec<Reply>> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = Vec::new();
        for args in cmds {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        (&s).write_all(&out)?;
        let mut r = BufReader::new(&s);
        cmds.iter().map(|_| read_reply(&mut r)).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("redis closed the connection"));
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1.min(line.len()));
    let num = || rest.parse::<i64>().map_err(|_| bad("bad length"));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(num()?),
        "$" => match num()? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        },
        "*" => match num()? {
            n if n < 0 => Reply::Array(Vec::new()),
            n => Reply::Array(
                (0..n)
                    .map(|_| read_reply(r))
                    .collect::<std::io::Result<_>>()?,
            ),
        },
        _ => return Err(bad("unknown reply type")),
    })
}

// ---- PostgreSQL -------------------------------------------------------------------

/// A fresh database on the test server, dropped (with its sessions) on drop.
pub struct Database {
    pub name: String,
    /// The URL nodes get as `--store`.
    pub url: String,
}

fn psql(admin_url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(need_bin("psql"))
        .arg(admin_url)
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `admin_url` with its database replaced by `db`.
fn with_database(admin_url: &str, db: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..host_end])
}

impl Database {
    pub fn create() -> Database {
        let admin = postgres_admin_url();
        let name = format!("traitor_test_{}", unique());
        if let Err(e) = psql(&admin, &format!("CREATE DATABASE {name}")) {
            panic!(
                "cannot create a test database on {admin} (is PostgreSQL running? \
                 scripts/test.sh starts it; set TRAITOR_TEST_POSTGRES_URL otherwise): {e}"
            );
        }
        Database {
            url: with_database(&admin, &name),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(
            &postgres_admin_url(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

// ---- nodes ------------------------------------------------------------------------

/// How to start one node of a cluster.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub redis_url: String,
    pub store_url: String,
    pub cluster: String,
    pub node_name: String,
}

impl NodeSpec {
    pub fn options(&self) -> Options {
        Options {
            args: vec![
                "-m".into(),
                "multi".into(),
                "-r".into(),
                self.redis_url.clone(),
                "--store".into(),
                self.store_url.clone(),
                "-c".into(),
                self.cluster.clone(),
                "--node-name".into(),
                self.node_name.clone(),
            ],
            envs: vec![("RUST_LOG".into(), "info".into())],
        }
    }

    /// Starts the node and waits until it answers `/healthz` with 200 (in the cluster).
    pub async fn start(&self) -> Server {
        Server::start_with(self.options()).await
    }
}

// ---- nginx ------------------------------------------------------------------------

/// nginx in front of the nodes, as in `deploy/nginx.conf`: round robin, WebSocket
/// upgrades passed through, `Host` kept (the nodes serve loopback hosts only when they
/// have no token).
pub struct Nginx {
    child: Option<Child>,
    pub port: u16,
    prefix: tempfile::TempDir,
    pub api: Api,
}

impl Nginx {
    pub async fn start(upstreams: &[u16]) -> Nginx {
        let prefix = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut n = Nginx {
            child: None,
            port,
            api: Api::new(format!("http://127.0.0.1:{port}")),
            prefix,
        };
        n.write_conf(upstreams);
        let child = Command::new(need_bin("nginx"))
            .arg("-p")
            .arg(n.prefix.path())
            .arg("-c")
            .arg(n.conf_path())
            .arg("-e")
            .arg(n.error_log())
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        n.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("nginx exited during start-up ({st}):\n{}", n.log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s:\n{}",
                n.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n
    }

    fn conf_path(&self) -> PathBuf {
        self.prefix.path().join("nginx.conf")
    }

    pub fn error_log(&self) -> PathBuf {
        self.prefix.path().join("error.log")
    }

    pub fn log(&self) -> String {
        tail(&self.error_log(), 8000)
    }

    fn write_conf(&self, upstreams: &[u16]) {
        std::fs::write(
            self.conf_path(),
            nginx_conf(self.prefix.path(), self.port, upstreams),
        )
        .expect("write nginx.conf");
    }

    /// Rewrites the upstream list and reloads (SIGHUP), as an operator adding a node
    /// would; waits until the new configuration serves.
    pub async fn set_upstreams(&self, upstreams: &[u16]) {
        self.write_conf(upstreams);
        let pid = self.child.as_ref().expect("nginx running").id();
        // SAFETY: kill(2) on our own child with a valid signal number.
        unsafe {
            libc::kill(pid as i32, libc::SIGHUP);
        }
        // nginx starts new workers and retires the old ones; give it a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// The test's nginx configuration: the shape of `deploy/nginx.conf`, with every path
/// under `prefix` so that it needs no root and touches nothing of the system's nginx.
pub fn nginx_conf(prefix: &Path, port: u16, upstreams: &[u16]) -> String {
    let p = prefix.display();
    // nginx started as root switches its workers to `nobody`, who could not write
    // under a private temporary directory; keep them as the invoking user.
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root root;\n"
    } else {
        ""
    };
    let servers: String = upstreams
        .iter()
        .map(|u| format!("        server 127.0.0.1:{u} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    format!(
        r#"# Generated by tests/src/cluster.rs (the shape of deploy/nginx.conf).
{user}worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    client_max_body_size 5m;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream traitor {{
{servers}    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://traitor;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_send_timeout 60s;
            proxy_read_timeout 3600s;
            proxy_next_upstream error timeout;
            proxy_buffering off;
        }}
    }}
}}
"#
    )
}

// ---- an HTTP API client -----------------------------------------------------------

/// The JSON API at `base` (a node or nginx).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    pub fn of(server: &Server) -> Api {
        Api::new(format!("http://127.0.0.1:{}", server.port))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// (status, JSON body); a body that is not JSON comes back as a string.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Creates and starts a job (`POST /api/run`); returns its id.
    pub async fn run_job(&self, body: Value) -> String {
        let (status, v) = self.post("/api/run", body).await;
        assert_eq!(status, 200, "POST /api/run: {v}");
        v["data"].as_str().expect("id").to_owned()
    }

    pub async fn enable(&self, id: &str, on: bool) {
        let (status, v) = self
            .post(
                &format!("/api/enable?id={id}&enable={on}"),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(status, 200, "enable {id} {on}: {v}");
    }

    /// The job's run history (the newest 1000), as records.
    pub async fn runs(&self, id: &str) -> Vec<RunRec> {
        let (status, v) = self.get(&format!("/api/job/runs?id={id}&limit=1000")).await;
        assert_eq!(status, 200, "runs of {id}: {v}");
        v["data"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(RunRec::from_json)
            .collect()
    }

    /// `GET /api/cluster`'s `data`.
    pub async fn cluster(&self) -> Value {
        let (status, v) = self.get("/api/cluster").await;
        assert_eq!(status, 200, "/api/cluster: {v}");
        v["data"].clone()
    }
}

/// One entry of a job's run history.
#[derive(Debug, Clone)]
pub struct RunRec {
    pub scheduled_ms: i64,
    pub outcome: String,
    pub trigger: String,
    pub node: String,
}

impl RunRec {
    fn from_json(v: &Value) -> RunRec {
        let scheduled_ms = v["scheduledAt"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.timestamp_millis())
            .unwrap_or_else(|| panic!("run without a scheduledAt: {v}"));
        RunRec {
            scheduled_ms,
            outcome: v["outcome"].as_str().unwrap_or_default().to_owned(),
            trigger: v["trigger"].as_str().unwrap_or_default().to_owned(),
            node: v["node"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

/// Polls `f` until it returns `Some`; panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the collector ----------------------------------------------------------------

/// One report of a run: `GET /hit?job=ID&at=SCHEDULED_MS`.
#[derive(Debug, Clone)]
pub struct Hit {
    pub job: String,
    pub at: i64,
    /// When the collector received it, Unix ms.
    pub received_ms: i64,
}

/// A tiny HTTP server on its own thread that records every `/hit` and answers 200.
pub struct Collector {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Collector {
    pub fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind collector");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let h = hits.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("collector runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                let serve = async {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(collect(s, h.clone()));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Collector {
            port,
            hits,
            _stop: stop,
        }
    }

    /// A script that reports its job and scheduled instant here.
    pub fn script(&self) -> String {
        format!(
            "await fetch('http://127.0.0.1:{}/hit?job=' + job.id + '&at=' + job.scheduledAt);",
            self.port
        )
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Hits grouped by (job, scheduled instant).
    pub fn by_occurrence(&self) -> HashMap<(String, i64), Vec<Hit>> {
        let mut m: HashMap<(String, i64), Vec<Hit>> = HashMap::new();
        for h in self.hits() {
            m.entry((h.job.clone(), h.at)).or_default().push(h);
        }
        m
    }
}

async fn collect(mut s: tokio::net::TcpStream, hits: Arc<Mutex<Vec<Hit>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if buf.len() > 16 * 1024 {
            return;
        }
    }
    let received_ms = now_ms();
    let head = String::from_utf8_lossy(&buf);
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if let Some(q) = target.strip_prefix("/hit?") {
        let params: HashMap<&str, &str> =
            q.split('&').filter_map(|kv| kv.split_once('=')).collect();
        if let (Some(job), Some(at)) = (
            params.get("job"),
            params.get("at").and_then(|a| a.parse::<f64>().ok()),
        ) {
            hits.lock().unwrap_or_else(|e| e.into_inner()).push(Hit {
                job: (*job).to_owned(),
                at: at as i64,
                received_ms,
            });
        }
    }
    let _ = s
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .await;
    let _ = s.shutdown().await;
}

// ---- logs on failure --------------------------------------------------------------

/// Prints the tails of the given logs if the test panics while this is alive. Each log
/// is hard-linked into a directory of its own when added, so that it can still be read
/// after the process's temporary directory is gone, whatever the drop order.
pub struct ClusterLogs {
    dir: tempfile::TempDir,
    paths: Mutex<Vec<(String, PathBuf)>>,
}

impl Default for ClusterLogs {
    fn default() -> Self {
        ClusterLogs {
            dir: tempfile::tempdir().expect("tempdir"),
            paths: Mutex::new(Vec::new()),
        }
    }
}

impl ClusterLogs {
    pub fn add(&self, label: impl Into<String>, path: impl AsRef<Path>) {
        let label = label.into();
        let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        let link = self.dir.path().join(format!("{}.log", paths.len()));
        let kept = match std::fs::hard_link(path.as_ref(), &link) {
            Ok(()) => link,
            Err(_) => path.as_ref().to_path_buf(),
        };
        paths.push((label, kept));
    }
}

impl Drop for ClusterLogs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        for (label, path) in paths.iter() {
            eprintln!("\n----- {label} -----");
            eprintln!("{}", tail(path, 12_000));
        }
    }
}

// ---- timing helpers ---------------------------------------------------------------

/// Sleeps until the wall clock reads `at_ms` (no-op if passed).
pub async fn sleep_until_ms(at_ms: i64) {
    let wait = at_ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// The `q`-quantile (0..=1) of `v` (sorted here), or 0 for an empty list.
pub fn quantile(v: &mut [i64], q: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Where benchmark figures go: `docs/benchmarks.md` when `TRAITOR_BENCHMARKS_DOC=1`
/// (to refresh the committed figures), else `benchmarks.md` in the target directory, so
/// that a test run leaves the tree clean.
pub fn benchmarks_file() -> PathBuf {
    if std::env::var("TRAITOR_BENCHMARKS_DOC").as_deref() == Ok("1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md")
    } else {
        let profile = crate::profile_dir();
        profile.parent().unwrap_or(&profile).join("benchmarks.md")
    }
}

/// Appends (or replaces) the section under `heading` in [`benchmarks_file`], leaving
/// every other section as it is.
pub fn write_benchmark_section(heading: &str, body: &str) {
    let path = benchmarks_file();
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_owned());
    let marker = format!("## {heading}\n");
    let section = format!("{marker}\n{}\n", body.trim_end());
    let new = match old.find(&marker) {
        Some(start) => {
            let after = &old[start + marker.len()..];
            match after.find("\n## ") {
                Some(i) => format!(
                    "{}{section}\n{}",
                    &old[..start],
                    &old[start + marker.len() + i + 1..]
                ),
                None => format!("{}{section}", &old[..start]),
            }
        }
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    if let Err(e) = std::fs::write(&path, new) {
        eprintln!("could not write {}: {e}", path.display());
    } else {
        eprintln!("figures written to {}", path.display());
    }
}

/// Waits until the node behind `api` is healthy and sees exactly `names`.
pub async fn wait_members(api: &Api, names: &[&str]) {
    let want: HashSet<String> = names.iter().map(|s| s.to_string()).collect();
    eventually(
        Duration::from_secs(10),
        "the membership to settle",
        || async {
            let c = api.cluster().await;
            let seen: HashSet<String> = c["nodes"]
                .as_array()?
                .iter()
                .filter_map(|n| n["node"].as_str().map(str::to_owned))
                .collect();
            (c["healthy"] == true && seen == want).then_some(())
        },
    )
    .await;
}
