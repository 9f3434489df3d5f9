//! A real `traitor` service for end-to-end tests: started on a free port with its own
//! data directory, spoken to over HTTP and WebSocket, stopped with SIGTERM or killed
//! with SIGKILL, and restarted on the same data.
//!
//! The child is killed when the handle is dropped, so a failing test leaves nothing
//! behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, traitor_bin};

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
    /// The node name `/healthz` must report: proof that the server answering on
    /// `port` is this one, not another test's that was given the same free port.
    node: String,
    pub http: reqwest::Client,
    /// Keeps the temporary data directory alive for the server's life.
    _tmp: Option<tempfile::TempDir>,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Options {
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
}

impl Server {
    /// Starts a server on a fresh data directory and waits until it answers.
    pub async fn start() -> Server {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let arg_node = opts
            .args
            .iter()
            .position(|a| a == "--node-name")
            .and_then(|i| opts.args.get(i + 1).cloned());
        let env_node = opts
            .envs
            .iter()
            .find(|(k, _)| k == "TRAITOR_NODE_NAME")
            .map(|(_, v)| v.clone());
        let node = arg_node.or(env_node).unwrap_or_else(|| {
            format!(
                "test-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        });
        let mut s = Server {
            child: None,
            node,
            port: free_port(),
            log_path: tmp.path().join("traitor.log"),
            data_dir,
            extra_args: opts.args,
            envs: opts.envs,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            _tmp: Some(tmp),
        };
        // A port from `free_port` can be handed to two tests at once: if another
        // server holds it, start again on another port.
        for _ in 0..3 {
            match s.launch().await {
                Ok(()) => return s,
                Err(why) => {
                    if let Some(mut c) = s.child.take() {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    eprintln!("retrying on another port: {why}");
                    s.port = free_port();
                }
            }
        }
        panic!("could not start traitor on a free port:\n{}", s.log());
    }

    /// Starts (again) on the same data directory and port.
    pub async fn spawn(&mut self) {
        if let Err(why) = self.launch().await {
            panic!("{why}");
        }
    }

    /// Starts the process and waits until it answers; `Err` if the port turned out to
    /// be another server's.
    async fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let mut cmd = Command::new(traitor_bin());
        cmd.arg("-p")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--workers", "2", "--shutdown-grace-s", "5"])
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .env("TRAITOR_NODE_NAME", &self.node)
            .env_remove("TRAITOR_AUTH_TOKEN")
            .env_remove("TRAITOR_AUTH_TOKEN_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn traitor"));
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = self.log();
                if log.contains("in use") {
                    self.child = None;
                    return Err(format!("port {} is taken: {status}", self.port));
                }
                panic!("traitor exited during start-up ({status}):\n{log}");
            }
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
                && let Ok(body) = r.text().await
            {
                if body.contains(&format!("\"node\":\"{}\"", self.node)) {
                    return Ok(());
                }
                return Err(format!("another server answers on port {}", self.port));
            }
            assert!(
                Instant::now() < deadline,
                "traitor did not become ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc_kill(c.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "traitor did not stop within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sends a request with a JSON body (or none) and returns (status, JSON body).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
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

    /// Creates and starts a job through `POST /api/run`; returns its id.
    pub async fn run_job(&self, body: Value) -> String {
        let (status, v) = self.post("/api/run", body).await;
        assert_eq!(status, 200, "{v}");
        v["data"].as_str().expect("id").to_owned()
    }

    /// Creates a stopped timing job (`@yearly`) with `script`; returns its id. For tests
    /// that run it with [`Server::run_now`].
    pub async fn create_script_job(&self, script: &str) -> String {
        let (status, v) = self
            .post(
                "/api/job?type=timing",
                serde_json::json!({"cron": "@yearly", "script": script}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["data"].as_str().expect("id").to_owned()
    }

    /// Runs the job now (`POST /api/job/trigger`) and waits for that run to finish;
    /// returns the run's detail, log included.
    pub async fn run_now(&self, id: &str) -> Value {
        let (status, v) = self
            .post(&format!("/api/job/trigger?id={id}"), serde_json::json!({}))
            .await;
        assert_eq!(status, 200, "{v}");
        let run_id = v["data"].as_str().expect("run id").to_owned();
        self.eventually(
            Duration::from_secs(15),
            "the manual run to finish",
            || async {
                let (st, v) = self.get(&format!("/api/job/run?id={run_id}")).await;
                (st == 200 && v["data"]["outcome"] != "running").then(|| v["data"].clone())
            },
        )
        .await
    }

    /// The job's run history, newest first.
    pub async fn runs(&self, id: &str) -> Vec<Value> {
        let (status, v) = self.get(&format!("/api/job/runs?id={id}&limit=1000")).await;
        assert_eq!(status, 200, "{v}");
        v["data"]["items"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `f` until it returns `Some`, or panics after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- server log ---\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
