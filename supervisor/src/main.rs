//! The `traitor` binary: parse the configuration, hand off.

use std::io::IsTerminal;
use std::process::ExitCode;

use supervisor::config::{Cli, Command, LogFormat};

/// mimalloc instead of the system allocator: the request path allocates ~100 small
/// objects per API call (hyper, axum, serde, tracing), and glibc's malloc/free were a
/// quarter of the HTTP side's instructions under a stream of creates
/// (`docs/benchmarks.md`). Only this binary: the worker keeps the system allocator,
/// whose syscalls its seccomp filter knows.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    match cli.command {
        Some(Command::Exec(args)) => supervisor::exec::main(args),
        None => {
            init_logging(cli.serve.log_format());
            match supervisor::app::run(cli.serve) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("traitor: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a log file or collector gets plain
        // text (and formatting the escape codes cost a few % of a create).
        .with_ansi(std::io::stderr().is_terminal());
    if format == LogFormat::Json {
        // Fields at the top level, so that log processors index them directly.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}
