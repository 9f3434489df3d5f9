//! Starting worker processes so that they cannot leak.
//!
//! Every worker is spawned from one long-lived, dedicated std thread (the "spawner"):
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, so a worker
//! spawned from a short-lived thread (`spawn_blocking`) would be killed at a random
//! moment. The spawner lives as long as the pool's shared state; when it ends, the
//! kernel kills every worker it started, whatever else went wrong.
//!
//! In the child, between fork and exec, only async-signal-safe calls are made: a new
//! session (so the worker and anything it might start form one process group that
//! [`WorkerProcess`] kills as a whole), the parent-death signal (and a check that the
//! parent did not already die), no-new-privileges, rlimits, and the IPC socket moved to
//! fd 3. The environment is cleared except `TRAITOR_WORKER_FD`, `RUST_LOG` and, when
//! plugins are configured, `TRAITOR_PLUGIN_DIR` (the worker loads them; we never do).
//!
//! This module must not talk the protocol: it hands back a process and a socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::sync::oneshot;

/// The fd number the worker finds its socket at (the contract with `traitor-worker`).
pub const WORKER_FD: RawFd = 3;

/// Most fds a worker may hold open.
const WORKER_NOFILE: u64 = 64;

/// Longest worker stderr line forwarded in one piece.
const MAX_STDERR_LINE: u64 = 8 * 1024;

/// What a spawn needs to know.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSpec {
    pub(crate) bin: PathBuf,
    pub(crate) rlimit_as_bytes: u64,
    pub(crate) plugin_dir: Option<PathBuf>,
}

/// A freshly started worker: the process and our end of its socket.
pub(crate) struct Spawned {
    pub(crate) process: WorkerProcess,
    pub(crate) stream: tokio::net::UnixStream,
    pub(crate) stderr: Option<ChildStderr>,
}

struct SpawnRequest {
    spec: SpawnSpec,
    reply: oneshot::Sender<io::Result<Spawned>>,
}

/// The handle to the spawner thread. Dropping it ends the thread once no spawn is
/// pending; the kernel then kills the workers it started (PDEATHSIG).
pub(crate) struct Spawner {
    tx: std_mpsc::Sender<SpawnRequest>,
}

impl Spawner {
    /// Starts the spawner thread; children are registered with the runtime of `rt`.
    pub(crate) fn start(rt: tokio::runtime::Handle) -> io::Result<Spawner> {
        let (tx, rx) = std_mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("traitor-spawner".into())
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    let result = {
                        let _guard = rt.enter();
                        spawn_worker(&req.spec)
                    };
                    // If nobody waits any more, the Spawned is dropped and its
                    // process killed.
                    let _ = req.reply.send(result);
                }
            })?;
        Ok(Spawner { tx })
    }

    /// Spawns one worker from the spawner thread.
    pub(crate) async fn spawn(&self, spec: SpawnSpec) -> io::Result<Spawned> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(SpawnRequest { spec, reply })
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        rx.await
            .map_err(|_| io::Error::other("the spawner thread dropped the request"))?
    }
}

fn spawn_worker(spec: &SpawnSpec) -> io::Result<Spawned> {
    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair()?;
    let child_end: OwnedFd = child_end.into();
    // If our own stdio were closed the socket could sit on fd 0..2, which the stdio
    // setup in the child would overwrite before `pre_exec` runs: move it higher.
    let child_end = if child_end.as_raw_fd() <= 2 {
        // SAFETY: F_DUPFD_CLOEXEC on a valid fd we own returns a new fd we then own.
        let fd = unsafe { libc::fcntl(child_end.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by fcntl and nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    } else {
        child_end
    };
    let child_fd = child_end.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let parent_pid = unsafe { libc::getpid() };
    let rlimit_as = spec.rlimit_as_bytes;

    let mut cmd = tokio::process::Command::new(&spec.bin);
    cmd.env_clear()
        .env("TRAITOR_WORKER_FD", WORKER_FD.to_string())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = std::env::var_os("RUST_LOG") {
        cmd.env("RUST_LOG", v);
    }
    if let Some(dir) = &spec.plugin_dir {
        // The contract with `traitor-worker` (`worker::launch::PLUGIN_DIR_ENV`).
        cmd.env("TRAITOR_PLUGIN_DIR", dir);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (setsid, prctl, getppid, setrlimit, dup2, fcntl); it
    // allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || child_setup(child_fd, parent_pid, rlimit_as));
    }
    let mut child = cmd.spawn()?;
    drop(child_end);
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("worker exited at once"))?;
    let stderr = child.stderr.take();
    parent_end.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(parent_end)?;
    Ok(Spawned {
        process: WorkerProcess { child, pid },
        stream,
        stderr,
    })
}

/// Runs in the child between fork and exec. Async-signal-safe calls only.
fn child_setup(fd: RawFd, parent_pid: libc::pid_t, rlimit_as: u64) -> io::Result<()> {
    fn check(r: libc::c_int) -> io::Result<()> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    fn limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
        let rl = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: `rl` is a valid rlimit for the duration of the call.
        check(unsafe { libc::setrlimit(resource, &rl) })
    }
    // SAFETY: plain syscalls on values we own; see the comment on `pre_exec`.
    unsafe {
        check(libc::setsid())?;
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        // The parent may have died before the prctl: then nobody would kill us.
        if libc::getppid() != parent_pid {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    limit(libc::RLIMIT_AS, rlimit_as)?;
    limit(libc::RLIMIT_NOFILE, WORKER_NOFILE)?;
    limit(libc::RLIMIT_CORE, 0)?;
    // SAFETY: `fd` is our open socket end; dup2 to 3 yields an fd without CLOEXEC. When
    // it already is 3, dup2 would be a no-op that keeps CLOEXEC, so clear it instead.
    unsafe {
        if fd == WORKER_FD {
            check(libc::fcntl(WORKER_FD, libc::F_SETFD, 0))?;
        } else {
            check(libc::dup2(fd, WORKER_FD))?;
        }
    }
    Ok(())
}

/// A worker process that is killed, with its whole process group, when dropped.
pub(crate) struct WorkerProcess {
    child: Child,
    pid: u32,
}

impl WorkerProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// SIGKILLs the worker's process group, if the worker has not been reaped yet
    /// (after reaping, its pid could belong to someone else).
    pub(crate) fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: killpg with a pgid that is our unreaped child's pid (it called
            // setsid, so its pid is its process group id).
            unsafe {
                libc::killpg(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }

    /// Waits for the worker to exit, up to `timeout`; then kills it and waits again.
    pub(crate) async fn wait_or_kill(&mut self, timeout: std::time::Duration) -> ExitStatus {
        if let Ok(Ok(status)) = tokio::time::timeout(timeout, self.child.wait()).await {
            return status;
        }
        self.kill();
        match self.child.wait().await {
            Ok(status) => status,
            // Waiting failed (ECHILD?): report it as a kill, which it was.
            Err(_) => ExitStatus::from_raw(libc::SIGKILL),
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Describes how a worker ended, e.g. `signal 9 (SIGKILL)` or `status 1`.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        }
    } else if let Some(code) = status.code() {
        format!("status {code}")
    } else {
        status.to_string()
    }
}

/// Forwards a worker's stderr into `tracing`, line by line, until it closes.
pub(crate) fn forward_stderr(stderr: ChildStderr, slot: usize, pid: u32) {
    tokio::spawn(async move {
        let mut r = BufReader::new(stderr);
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            match (&mut r)
                .take(MAX_STDERR_LINE)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if line.contains("ERROR") {
                tracing::error!(target: "traitor::worker", worker = slot, pid, "{line}");
            } else if line.contains("WARN") {
                tracing::warn!(target: "traitor::worker", worker = slot, pid, "{line}");
            } else {
                tracing::info!(target: "traitor::worker", worker = slot, pid, "{line}");
            }
        }
    });
}

/// The default worker binary: `traitor-worker` next to the running executable.
pub(crate) fn default_worker_bin() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| io::Error::other("the executable has no parent directory"))?;
    Ok(dir.join("traitor-worker"))
}

/// Makes `p` absolute (workers are started with `/` as their working directory).
pub(crate) fn absolute(p: &Path) -> io::Result<PathBuf> {
    std::path::absolute(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_readably() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(libc::SIGKILL)),
            "signal 9 (SIGKILL)"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "status 3");
    }

    /// A real child through the real spawner: fd 3 is our socket, the environment is
    /// empty but for the contract's variable, the rlimits are in force.
    #[tokio::test]
    async fn a_child_gets_fd_3_a_clean_env_and_rlimits() {
        let dir = tempdir();
        let script = dir.join("probe.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             { /usr/bin/env | /usr/bin/sort; ulimit -v; ulimit -n; ulimit -c; } >&3\n",
        )
        .unwrap();
        make_executable(&script);
        let spawner = Spawner::start(tokio::runtime::Handle::current()).unwrap();
        let mut w = spawner
            .spawn(SpawnSpec {
                bin: script,
                rlimit_as_bytes: 512 * 1024 * 1024,
                plugin_dir: None,
            })
            .await
            .unwrap();
        let mut out = String::new();
        w.stream.read_to_string(&mut out).await.unwrap();
        let status = w
            .process
            .wait_or_kill(std::time::Duration::from_secs(5))
            .await;
        assert!(status.success(), "{status}");
        let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("PWD=")).collect();
        assert_eq!(
            lines,
            ["TRAITOR_WORKER_FD=3", "524288", "64", "0"],
            "full output: {out}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_readable_error() {
        let spawner = Spawner::start(tokio::runtime::Handle::current()).unwrap();
        let err = spawner
            .spawn(SpawnSpec {
                bin: "/nonexistent/traitor-worker".into(),
                rlimit_as_bytes: 1 << 30,
                plugin_dir: None,
            })
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    pub(crate) fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "traitor-pool-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub(crate) fn make_executable(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
