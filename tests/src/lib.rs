//! Shared helpers for the end-to-end tests and the benchmarks: where the real binaries
//! are (built on first use, so a test never runs against a stale worker), a free port,
//! a tiny local HTTP server, `traitor exec` as a child process, and fake workers for
//! the faults a real worker cannot show (a wrong protocol version, a malformed frame).
//!
//! Nothing here mocks the system under test: the fakes stand in for a *broken* worker
//! only, and talk over the same socket the real one does.

pub mod bench_service;
pub mod cluster;
pub mod plugins;
pub mod server;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The directory of the running executable's profile: `target/debug` for a test binary
/// (which lives in `target/debug/deps`), `target/release` for `bench`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a parent").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// Builds `traitor` and `traitor-worker` for the current profile, once per process.
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("TRAITOR_TEST_NO_BUILD").is_some() {
            return;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "supervisor",
            "-p",
            "worker",
            "--bins",
        ])
        .arg("--manifest-path")
        .arg(&manifest);
        if profile_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run cargo build");
        assert!(
            out.status.success(),
            "building traitor and traitor-worker failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The `traitor` binary of this profile (built if needed).
pub fn traitor_bin() -> PathBuf {
    ensure_built();
    profile_dir().join("traitor")
}

/// The `traitor-worker` binary of this profile (built if needed).
pub fn worker_bin() -> PathBuf {
    ensure_built();
    profile_dir().join("traitor-worker")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A port on 127.0.0.1 where nothing listens (connections are refused).
pub fn refused_port() -> u16 {
    free_port()
}

/// What `traitor exec` did.
#[derive(Debug)]
pub struct ExecOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Writes `script` to a temporary file and runs `traitor exec` on it with `args`.
pub fn exec_js(script: &str, args: &[&str]) -> ExecOutput {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("script.js");
    std::fs::write(&file, script).expect("write script");
    exec_file(&file, args)
}

/// Runs `traitor exec FILE args…` and waits for it (at most two minutes).
pub fn exec_file(file: &Path, args: &[&str]) -> ExecOutput {
    let bin = traitor_bin();
    let started = Instant::now();
    let out = Command::new(bin)
        .arg("exec")
        .arg(file)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run traitor exec");
    ExecOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// One canned answer of [`HttpFixture`].
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A tiny HTTP/1.1 server on 127.0.0.1, on its own thread, answering fixed responses
/// by path (`/echo` answers the method, a space, and the request body). Each response
/// closes its connection.
pub struct HttpFixture {
    pub base: String,
    hits: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpFixture {
    pub fn start(routes: &[(&str, Canned)]) -> HttpFixture {
        Self::start_on([127, 0, 0, 1], routes)
    }

    /// Like [`HttpFixture::start`], on another loopback address (`127.0.0.2`…), for
    /// tests that deny one address and allow another.
    pub fn start_on(ip: [u8; 4], routes: &[(&str, Canned)]) -> HttpFixture {
        let routes: Arc<HashMap<String, Canned>> = Arc::new(
            routes
                .iter()
                .map(|(p, c)| (p.to_string(), c.clone()))
                .collect(),
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener =
            std::net::TcpListener::bind(std::net::SocketAddr::from((ip, 0))).expect("bind fixture");
        let addr = listener.local_addr().expect("fixture addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let h = hits.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fixture runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("fixture listener");
                let serve = async {
                    while let Ok((s, _)) = l.accept().await {
                        h.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(answer(s, routes.clone()));
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        HttpFixture {
            base: format!("http://{addr}"),
            hits,
            _stop: stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Connections accepted so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

async fn answer(mut s: tokio::net::TcpStream, routes: Arc<HashMap<String, Canned>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let len: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let canned = if path == "/echo" {
        let mut b = format!("{method} ").into_bytes();
        b.extend_from_slice(&body);
        Canned {
            status: "200 OK",
            content_type: "text/plain",
            body: b,
        }
    } else {
        routes.get(&path).cloned().unwrap_or(Canned {
            status: "404 Not Found",
            content_type: "text/plain",
            body: b"no such path".to_vec(),
        })
    };
    let mut resp = format!(
        "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        canned.status,
        canned.content_type,
        canned.body.len()
    )
    .into_bytes();
    resp.extend_from_slice(&canned.body);
    let _ = s.write_all(&resp).await;
    let _ = s.shutdown().await;
}

/// A fake `traitor-worker`: a shell script that writes `frames` (raw bytes) to fd 3
/// with `pause` between them, then sleeps. For faults a real worker cannot show.
pub struct FakeWorker {
    pub bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeWorker {
    pub fn new(frames: &[Vec<u8>], pause: Duration) -> FakeWorker {
        Self::with_tail(frames, pause, "exec /bin/sleep 60")
    }

    /// Like [`FakeWorker::new`], with `tail` as the script's last line (e.g. `exit 3`).
    pub fn with_tail(frames: &[Vec<u8>], pause: Duration, tail: &str) -> FakeWorker {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sh = String::from("#!/bin/sh\n");
        for (i, f) in frames.iter().enumerate() {
            let p = dir.path().join(format!("frame{i}.bin"));
            std::fs::write(&p, f).expect("write frame");
            if i > 0 {
                sh.push_str(&format!("/bin/sleep {}\n", pause.as_secs_f64()));
            }
            sh.push_str(&format!("/bin/cat '{}' >&3\n", p.display()));
        }
        sh.push_str(tail);
        sh.push('\n');
        let bin = dir
            .path()
            .join(format!("fake-worker-{}", N.fetch_add(1, Ordering::Relaxed)));
        // Write, close, then make executable: an fd left open for writing would make
        // exec fail with ETXTBSY.
        {
            let mut f = std::fs::File::create(&bin).expect("create fake worker");
            f.write_all(sh.as_bytes()).expect("write fake worker");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .expect("chmod fake worker");
        FakeWorker { bin, _dir: dir }
    }
}

/// The `Hello` frame a worker speaking `protocol_version` sends.
pub fn hello_frame(protocol_version: u32) -> Vec<u8> {
    protocol::encode(&protocol::WorkerMessage::Hello {
        protocol_version,
        worker_version: "0.0.0-fake".into(),
        pid: std::process::id(),
        sandboxed: true,
    })
    .expect("encode hello")
}

/// A pool config for tests: the real worker of this profile, `workers` of them, and a
/// short kill grace.
pub fn pool_config(workers: usize) -> supervisor::pool::PoolConfig {
    let mut cfg = supervisor::pool::PoolConfig::new(worker_bin());
    cfg.workers = workers;
    cfg.kill_grace = Duration::from_millis(500);
    cfg
}

/// A job context for runs submitted in tests.
pub fn job(name: &str) -> protocol::JobContext {
    protocol::JobContext {
        job_id: name.into(),
        job_name: name.into(),
        scheduled_at_ms: 0,
        occurrence_id: String::new(),
        attempt: 1,
        secrets: Default::default(),
    }
}

/// A run request with default limits but `wall_ms`.
pub fn request(script: &str, wall_ms: u64) -> supervisor::pool::RunRequest {
    supervisor::pool::RunRequest {
        script: script.into(),
        limits: protocol::Limits {
            wall_ms,
            ..protocol::Limits::default()
        },
        job: job("test"),
        modules: Vec::new(),
    }
}

/// The texts of console lines.
pub fn texts(lines: &[protocol::ConsoleLine]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

/// Resident memory of a process, from `/proc/PID/status`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Processes whose parent is `pid`, with their names (`/proc/*/stat`).
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let child: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        let name = head.split_once(" (")?.1.to_string();
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == pid).then_some((child, name))
    })
    .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
