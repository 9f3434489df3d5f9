//! How the `traitor-worker` binary starts: check that a supervisor launched it (fd 3
//! is a socket and `TRAITOR_WORKER_FD` says so), build the current-thread runtime, and
//! hand the socket to [`crate::serve_with`] with the sandbox on and the plugin
//! directory `TRAITOR_PLUGIN_DIR` names (if any).
//!
//! Exit statuses: 0 after `Shutdown` or end of stream; 1 broken stream or malformed
//! frame; 2 not launched by a supervisor; 3 handshake refused; 4 sandbox could not be
//! applied.
//!
//! Must not: use stdout (it is /dev/null, and rquickjs prints there), start a
//! multi-thread runtime (RLIMIT_AS), or run anything before the handshake.

use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;

use crate::serve::{Options, Sandbox, serve_with};

/// The environment variable naming the inherited socket's descriptor.
pub const FD_ENV: &str = "TRAITOR_WORKER_FD";

/// The environment variable naming the plugin directory (absolute; unset or empty:
/// no plugins).
pub const PLUGIN_DIR_ENV: &str = "TRAITOR_PLUGIN_DIR";

/// The plugin directory the supervisor passed, if any.
pub fn plugin_dir() -> Option<PathBuf> {
    std::env::var_os(PLUGIN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn refuse(msg: &str) -> i32 {
    eprintln!("traitor-worker: {msg}");
    2
}

fn socket_fd() -> Result<RawFd, String> {
    let value = std::env::var(FD_ENV).map_err(|_| {
        format!("{FD_ENV} is not set: this program is started by the traitor supervisor")
    })?;
    let fd: RawFd = value
        .parse()
        .map_err(|_| format!("{FD_ENV}={value:?} is not a file descriptor number"))?;
    if fd < 3 {
        return Err(format!(
            "{FD_ENV}={fd}: the socket must not be a standard stream"
        ));
    }
    // SAFETY: fstat only writes into the zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid writable stat; an invalid fd just fails with EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(format!("fd {fd} is not open"));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!("fd {fd} is not a socket"));
    }
    Ok(fd)
}

/// At most this many malloc arenas: each run has a thread, and glibc would otherwise
/// reserve 64 MiB of address space per arena (up to 8 per CPU) against `RLIMIT_AS`.
const MALLOC_ARENAS: i32 = 2;

/// The whole life of the worker process; returns its exit status.
pub fn run_worker() -> i32 {
    // SAFETY: mallopt only sets an allocator parameter; called before any thread.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
    let fd = match socket_fd() {
        Ok(fd) => fd,
        Err(msg) => return refuse(&msg),
    };
    // SAFETY: `fd` is an open socket (checked above) that the supervisor handed to us
    // and nothing else in this process owns; the stream takes ownership of it.
    let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    if let Err(e) = std_stream.set_nonblocking(true) {
        return refuse(&format!("cannot make fd {fd} non-blocking: {e}"));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("traitor-worker: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(async move {
        let stream = tokio::net::UnixStream::from_std(std_stream)
            .map_err(|e| crate::ServeError::Protocol(format!("fd {fd}: {e}")))?;
        let (r, w) = stream.into_split();
        let opts = Options {
            sandbox: Sandbox::Seccomp,
            plugin_dir: plugin_dir(),
        };
        serve_with(r, w, opts).await
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("traitor-worker: {e}");
            e.exit_code()
        }
    }
}
