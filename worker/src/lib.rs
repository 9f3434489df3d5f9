//! The traitor worker: a sandboxed process that runs job scripts (JavaScript, on
//! QuickJS) for the supervisor, which talks to it over one Unix socket with the
//! messages of the `protocol` crate.
//!
//! - [`launch`]: the binary's start-up (fd-3 check, runtime, exit statuses).
//! - [`serve`]: the protocol loop over any byte stream.
//! - `run`: one run, from `StartRun` to `RunEnd`.
//! - `engine`: everything a script can see.
//! - `plugin`: native plugins (`docs/plugins.md`), loaded before the sandbox.
//! - [`sandbox`]: the seccomp filter, and its self-test.
//!
//! Architecture invariants: the worker never touches storage, the network or the file
//! system (the supervisor does that on its behalf), except reading the plugin directory
//! once before the sandbox; only `protocol` types cross the process boundary; nothing
//! is read from the supervisor before `Hello` is sent, and no script runs before the
//! sandbox is in force.

mod alloc;
mod cpu;
mod engine;
pub mod launch;
mod plugin;
mod run;
pub mod sandbox;
pub mod serve;
mod threads;

pub use serve::{Options, Sandbox, ServeError, serve, serve_with};

/// Initialises QuickJS's process-wide state once (atoms, class tables, …) and glibc's
/// time zone (local `Date` methods read `/etc/localtime` on first use, which seccomp
/// forbids later), so nothing lazy needs the file system after the sandbox is applied.
pub(crate) fn engine_warm_up() {
    if let Ok(rt) = rquickjs::Runtime::new()
        && let Ok(ctx) = rquickjs::Context::full(&rt)
    {
        ctx.with(|ctx| {
            let _ = ctx.eval::<(), _>("JSON.stringify({ a: [1, 2] }); new Date().toString(); new Date().getTimezoneOffset();");
        });
    }
}
