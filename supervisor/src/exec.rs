//! `traitor exec FILE.js`: run one script through a real sandboxed worker, as a job
//! would run, and report like a command-line tool.
//!
//! `console.log/info/debug` lines go to stdout, `console.warn/error` to stderr, each as
//! it arrives and exactly as formatted by the worker (`console.log('hi')` prints `hi\n`).
//! If the run does not succeed, `error: <outcome>: <message>` and the stack (if any)
//! follow on stderr. Ctrl-C cancels the run.
//!
//! Exit status:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | succeeded |
//! | 1 | failed (uncaught error or rejected promise) |
//! | 2 | usage or I/O error: unreadable file, no usable worker |
//! | 3 | timed_out |
//! | 4 | out_of_memory |
//! | 5 | output_limit |
//! | 6 | crashed (the worker died) |
//! | 7 | cancelled |
//!
//! This module must not run JavaScript itself or outlive its pool: it shuts the pool
//! down before it returns.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use protocol::{ConsoleLevel, Outcome};

use crate::config::ExecArgs;
use crate::hostcall::HttpHost;
use crate::pool::{Pool, PoolConfig, RunEvent, RunRequest, RunResult};

/// Exit code for usage and I/O errors.
const EXIT_USAGE: u8 = 2;

/// The exit code `traitor exec` uses for each outcome.
pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Succeeded => 0,
        Outcome::Failed => 1,
        Outcome::TimedOut => 3,
        Outcome::OutOfMemory => 4,
        Outcome::OutputLimit => 5,
        Outcome::Crashed => 6,
        Outcome::Cancelled => 7,
    }
}

pub fn main(args: ExecArgs) -> ExitCode {
    init_logging();
    let script = match std::fs::read(&args.file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => {
                eprintln!("error: {} is not UTF-8 text", args.file.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match rt.block_on(run(args, script)) {
        Ok(result) => {
            report(&result);
            ExitCode::from(exit_code(result.outcome))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn run(args: ExecArgs, script: String) -> anyhow::Result<RunResult> {
    let mut cfg = PoolConfig::from_args(&args.pool)?;
    cfg.workers = 1;
    let host = Arc::new(HttpHost::from_args(&args.pool)?);
    let pool = Pool::start(cfg, host).await?;
    let job = protocol::JobContext {
        job_id: String::new(),
        job_name: args.file.display().to_string(),
        scheduled_at_ms: 0,
        occurrence_id: String::new(),
        attempt: 1,
        secrets: Default::default(),
    };
    // `traitor exec` runs a file alone: it has no store, so no shared modules.
    let mut handle = pool.submit(RunRequest {
        script,
        limits: args.limits.limits(),
        job,
        modules: Vec::new(),
    });
    let canceller = handle.canceller();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            ev = handle.next_event() => match ev {
                Some(RunEvent::Console(line)) => print_line(line.level, &line.text),
                Some(RunEvent::Started { .. }) => {}
                Some(RunEvent::End(r)) => break Some(r),
                None => break None,
            },
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                canceller.cancel();
            }
        }
    };
    pool.shutdown(Duration::from_secs(1)).await;
    result.ok_or_else(|| anyhow::anyhow!("the pool lost the run"))
}

fn print_line(level: ConsoleLevel, text: &str) {
    // A closed stdout or stderr (`| head`) must not turn into a panic.
    let _ = match level {
        ConsoleLevel::Warn | ConsoleLevel::Error => {
            let mut e = std::io::stderr().lock();
            writeln!(e, "{text}").and_then(|_| e.flush())
        }
        _ => {
            let mut o = std::io::stdout().lock();
            writeln!(o, "{text}").and_then(|_| o.flush())
        }
    };
}

fn report(r: &RunResult) {
    if r.outcome == Outcome::Succeeded {
        return;
    }
    let mut e = std::io::stderr().lock();
    let message = r.error.as_ref().map_or("", |e| e.message.as_str());
    let _ = writeln!(e, "error: {}: {message}", r.outcome.as_str());
    if let Some(stack) = r.error.as_ref().and_then(|e| e.stack.as_deref()) {
        let stack = stack.trim_end();
        if !stack.is_empty() {
            let _ = writeln!(e, "{stack}");
        }
    }
}

/// Logs to stderr, `warn` and above unless `RUST_LOG` says otherwise, but not the
/// pool session's account of a worker's death: the run's own error line says it.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,supervisor::pool::session=off")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_exit_code() {
        let all = [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::TimedOut,
            Outcome::OutOfMemory,
            Outcome::OutputLimit,
            Outcome::Crashed,
            Outcome::Cancelled,
        ];
        let mut codes: Vec<u8> = all.iter().map(|o| exit_code(*o)).collect();
        codes.push(EXIT_USAGE);
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
        assert_eq!(exit_code(Outcome::Succeeded), 0);
    }
}
