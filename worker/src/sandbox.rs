//! The worker's seccomp filter: after the handshake and QuickJS's one-time set-up, the
//! process may only compute, allocate, use the descriptors it already has, keep time
//! and wait. Opening files, creating sockets, connecting, forking and executing fail
//! with `EPERM`.
//!
//! Two filters, applied to every thread (TSYNC):
//! 1. `clone3` → `ENOSYS`, so glibc falls back to `clone`, whose flags BPF can inspect
//!    (`clone3` passes them in memory). The allowlist lets `clone` through only with
//!    `CLONE_THREAD`, i.e. threads but never new processes;
//! 2. the allowlist below; anything else returns `EPERM`.
//!
//! Why each group is allowed:
//! - `read`/`write`/`readv`/`writev`/`recvfrom`/`recvmsg`/`sendto`/`sendmsg`/`close`/
//!   `shutdown`, `fcntl` (`F_GETFD`/`F_GETFL` only): the fd-3 socket, tokio's eventfd,
//!   stderr, and dropping them (tokio shuts the write half down, std checks the fd).
//! - `mmap`/`munmap`/`mremap`/`mprotect`/`madvise`/`brk`: malloc (QuickJS heaps).
//! - `futex`, `sched_yield`, `epoll_*`, `clock_*`, `nanosleep`: tokio's current-thread
//!   reactor and timers, `Instant`, thread CPU clocks.
//! - `rt_sig*`, `sigaltstack`: Rust's runtime and glibc set-up around threads.
//! - `getpid`/`gettid`/`tgkill` (own process only): `abort()` on a fatal error.
//! - `getrandom`: std's hash seeds.
//! - `clone` (threads only), `set_robust_list`, `rseq`, `prlimit64` (read only),
//!   `exit`: thread start and end, should anything spawn one.
//! - `exit_group`: leaving.
//!
//! Must not: allow anything that reaches outside the process (`open*`, `socket`,
//! `connect`, `execve*`, `fork`/`vfork`, `ptrace`, `kill` of other processes), or be
//! applied before the IPC socket and QuickJS are set up.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())
}

/// Syscalls allowed unconditionally.
fn allowed() -> Vec<libc::c_long> {
    let mut v = vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_close,
        libc::SYS_shutdown,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_epoll_ctl,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getrandom,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_clone3, // Turned into ENOSYS by the second filter.
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_restart_syscall,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_epoll_wait, libc::SYS_arch_prctl]);
    v
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

fn rule(conds: Vec<SeccompCondition>) -> Result<Vec<SeccompRule>, String> {
    Ok(vec![SeccompRule::new(conds).map_err(|e| e.to_string())?])
}

/// The allowlist filter (default action `EPERM`).
fn allowlist(pid: u32) -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed().into_iter().map(|s| (s, Vec::new())).collect();
    let thread = libc::CLONE_THREAD as u64;
    // clone(flags, …): threads only. (x86_64 and aarch64 both pass flags first.)
    rules.insert(
        libc::SYS_clone,
        rule(vec![cond(0, SeccompCmpOp::MaskedEq(thread), thread)?])?,
    );
    // tgkill(tgid, tid, sig): only our own process (abort() signals itself).
    rules.insert(
        libc::SYS_tgkill,
        rule(vec![cond(0, SeccompCmpOp::Eq, u64::from(pid))?])?,
    );
    // fcntl(fd, cmd): reading descriptor flags only (std checks an fd it closes).
    rules.insert(
        libc::SYS_fcntl,
        vec![
            SeccompRule::new(vec![cond(1, SeccompCmpOp::Eq, libc::F_GETFD as u64)?])
                .map_err(|e| e.to_string())?,
            SeccompRule::new(vec![cond(1, SeccompCmpOp::Eq, libc::F_GETFL as u64)?])
                .map_err(|e| e.to_string())?,
        ],
    );
    // prlimit64(pid, resource, new, old): reading limits only, never setting them.
    rules.insert(
        libc::SYS_prlimit64,
        rule(vec![cond(2, SeccompCmpOp::Eq, 0)?])?,
    );
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// `clone3` → `ENOSYS` (everything else allowed by this filter; the allowlist decides).
fn clone3_enosys() -> Result<BpfProgram, String> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_clone3, Vec::new())].into();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// Locks the whole process (every thread) down. Irreversible.
pub(crate) fn apply() -> Result<(), String> {
    let allow = allowlist(std::process::id())?;
    let clone3 = clone3_enosys()?;
    // The clone3 filter goes first: applying a filter needs prctl and seccomp, which
    // the allowlist forbids. (Order does not change the verdicts: for clone3 the
    // allowlist says ALLOW and this one ERRNO, and ERRNO takes precedence.)
    seccompiler::apply_filter_all_threads(&clone3).map_err(|e| format!("clone3 filter: {e}"))?;
    seccompiler::apply_filter_all_threads(&allow).map_err(|e| format!("allowlist: {e}"))?;
    Ok(())
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOSYS => "ENOSYS",
        libc::ENOENT => "ENOENT",
        0 => "no error",
        _ => "other",
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `traitor-worker --sandbox-selftest`: loads the plugins of `TRAITOR_PLUGIN_DIR` (as
/// a real worker does), applies the filter, then tries what a hostile script would
/// want. Prints one line per attempt to stdout and returns the exit status: 0 only if
/// every attempt was refused (and a thread could still start).
pub fn selftest() -> i32 {
    if let Some(dir) = crate::launch::plugin_dir() {
        let plugins = crate::plugin::Plugins::load_dir(&dir);
        for name in plugins.loaded_names() {
            println!("plugin {name}: loaded");
        }
    }
    if let Err(e) = apply() {
        println!("apply: failed: {e}");
        return 1;
    }
    println!("apply: ok");
    let all_refused = std::cell::Cell::new(true);
    let report = |what: &str, rc: i64, errno: i32| {
        if rc < 0 {
            println!("{what}: refused errno={errno} ({})", errno_name(errno));
        } else {
            println!("{what}: ALLOWED (returned {rc})");
            all_refused.set(false);
        }
    };

    // SAFETY: a plain open of a constant NUL-terminated path; the fd (if any) is
    // closed right away.
    let fd = unsafe { libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
    report("open /etc/hostname", i64::from(fd), last_errno());
    if fd >= 0 {
        // SAFETY: `fd` was just opened by us.
        unsafe { libc::close(fd) };
    }

    // SAFETY: socket() takes no pointers.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    report("socket", i64::from(s), last_errno());
    if s >= 0 {
        // SAFETY: `s` was just created by us.
        unsafe { libc::close(s) };
    }

    // SAFETY: if fork succeeds (the filter failed) the child exits at once without
    // touching any state.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child, _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    report("fork", i64::from(pid), last_errno());

    let thread = std::thread::Builder::new()
        .spawn(|| 7)
        .map(|h| h.join().unwrap_or(0));
    match thread {
        Ok(7) => println!("thread: ok"),
        other => {
            println!("thread: FAILED ({other:?})");
            all_refused.set(false);
        }
    }

    let path = c"/bin/true";
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    // SAFETY: NUL-terminated path and NULL-terminated argv/envp arrays that outlive
    // the call. If execve succeeded, this process would become /bin/true, which prints
    // nothing, so the missing line fails the test.
    let rc = unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    report("execve /bin/true", i64::from(rc), last_errno());

    if all_refused.get() { 0 } else { 1 }
}
