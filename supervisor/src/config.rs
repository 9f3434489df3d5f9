//! The one configuration struct of the `traitor` binary.
//!
//! Precedence: built-in defaults < `TRAITOR_*` environment variables < flags. The seed's
//! single-dash spellings (`-mg`, `-ip`) are rewritten to their long forms before clap
//! sees them, so the seed's docker-compose command lines keep working.
//!
//! This module parses and validates; it starts nothing.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One process with an embedded store.
    Std,
    /// A node of a cluster (Redis membership, shared store).
    Multi,
}

/// traitor: a scheduler for cron and delay jobs written in JavaScript.
#[derive(Debug, Clone, Parser)]
#[command(name = "traitor", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run one script file through a real sandboxed worker, print its console output,
    /// and exit 0 if it succeeded (non-zero with its outcome otherwise).
    Exec(ExecArgs),
}

/// Limits applied to a single run.
#[derive(Debug, Clone, Args)]
pub struct RunLimitArgs {
    /// Wall-clock limit of one run, milliseconds.
    #[arg(
        long = "time-limit-ms",
        env = "TRAITOR_TIME_LIMIT_MS",
        default_value_t = 60_000
    )]
    pub time_limit_ms: u64,
    /// QuickJS heap limit of one run, MiB.
    #[arg(
        long = "memory-limit-mb",
        env = "TRAITOR_MEMORY_LIMIT_MB",
        default_value_t = 64
    )]
    pub memory_limit_mb: u64,
    /// Console output limit of one run, KiB.
    #[arg(
        long = "output-limit-kb",
        env = "TRAITOR_OUTPUT_LIMIT_KB",
        default_value_t = 1024
    )]
    pub output_limit_kb: u64,
}

impl RunLimitArgs {
    pub fn limits(&self) -> protocol::Limits {
        protocol::Limits {
            wall_ms: self.time_limit_ms,
            memory_bytes: self.memory_limit_mb.saturating_mul(1024 * 1024),
            output_bytes: self.output_limit_kb.saturating_mul(1024),
            ..protocol::Limits::default()
        }
    }
}

/// Settings of the worker pool and of the HTTP requests scripts make through it.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Number of worker processes (default: one per core).
    #[arg(long = "workers", env = "TRAITOR_WORKERS")]
    pub workers: Option<usize>,
    /// Path of the `traitor-worker` binary (default: next to `traitor`).
    #[arg(long = "worker-bin", env = "TRAITOR_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Time limit of one HTTP request made by a script, milliseconds.
    #[arg(
        long = "http-timeout-ms",
        env = "TRAITOR_HTTP_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub http_timeout_ms: u64,
    /// Largest HTTP response body a script may receive, KiB.
    #[arg(
        long = "http-max-body-kb",
        env = "TRAITOR_HTTP_MAX_BODY_KB",
        default_value_t = 10_240
    )]
    pub http_max_body_kb: u64,
    /// Address-space limit (RLIMIT_AS) of each worker process, MiB.
    #[arg(
        long = "worker-memory-mb",
        env = "TRAITOR_WORKER_MEMORY_MB",
        default_value_t = 1024
    )]
    pub worker_memory_mb: u64,
    /// How long a worker gets to stop a run after its time limit or a cancel before the
    /// worker is killed from outside, milliseconds.
    #[arg(
        long = "kill-grace-ms",
        env = "TRAITOR_KILL_GRACE_MS",
        default_value_t = 1000
    )]
    pub kill_grace_ms: u64,
    /// Most runs one worker holds at once; more wait in the pool's queue.
    #[arg(
        long = "max-runs-per-worker",
        env = "TRAITOR_MAX_RUNS_PER_WORKER",
        default_value_t = 64
    )]
    pub max_runs_per_worker: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The JavaScript file to run.
    pub file: PathBuf,
    #[command(flatten)]
    pub limits: RunLimitArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
}

/// Settings of the service (`traitor` without a subcommand).
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// `std`: one process, embedded store. `multi`: a cluster node.
    #[arg(short = 'm', long = "mode", env = "TRAITOR_MODE", value_enum, default_value_t = Mode::Std)]
    pub mode: Mode,
    /// Redis URL (required in `multi` mode).
    #[arg(short = 'r', long = "redis", env = "TRAITOR_REDIS")]
    pub redis: Option<String>,
    /// MongoDB URL: the seed's cluster store (`-mg`).
    #[arg(long = "mongo", env = "TRAITOR_MONGO")]
    pub mongo: Option<String>,
    /// Cluster store URL (`postgres://…`); overrides `--mongo`.
    #[arg(long = "store", env = "TRAITOR_STORE")]
    pub store: Option<String>,
    /// Cluster name: nodes with the same name share the load.
    #[arg(
        short = 'c',
        long = "cluster",
        env = "TRAITOR_CLUSTER",
        default_value = "default"
    )]
    pub cluster: String,
    /// This node's name in the cluster (default: host name and port).
    #[arg(long = "node-name", env = "TRAITOR_NODE_NAME")]
    pub node_name: Option<String>,
    /// Bind address (`-ip`). Default 127.0.0.1; a non-loopback address needs an auth token.
    #[arg(long = "ip", env = "TRAITOR_IP")]
    pub ip: Option<IpAddr>,
    /// Port.
    #[arg(
        short = 'p',
        long = "port",
        env = "TRAITOR_PORT",
        default_value_t = 8080
    )]
    pub port: u16,
    /// Data directory of standalone mode.
    #[arg(long = "data-dir", env = "TRAITOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Bearer token every API call and the debug socket must present.
    #[arg(
        long = "auth-token",
        env = "TRAITOR_AUTH_TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,
    /// How long SIGTERM waits for running scripts before cancelling them, seconds.
    #[arg(
        long = "shutdown-grace-s",
        env = "TRAITOR_SHUTDOWN_GRACE_S",
        default_value_t = 30
    )]
    pub shutdown_grace_s: u64,
    /// Run history kept per job (newest first).
    #[arg(
        long = "history-per-job",
        env = "TRAITOR_HISTORY_PER_JOB",
        default_value_t = 1000
    )]
    pub history_per_job: u32,
    /// Run history older than this is deleted, days.
    #[arg(
        long = "history-days",
        env = "TRAITOR_HISTORY_DAYS",
        default_value_t = 30
    )]
    pub history_days: u32,
    /// Log as JSON lines instead of text.
    #[arg(long = "log-json", env = "TRAITOR_LOG_JSON")]
    pub log_json: bool,
    #[command(flatten)]
    pub limits: RunLimitArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// File holding the key that encrypts secrets at rest (base64 of 32 bytes). Without
    /// it and without `TRAITOR_SECRET_KEY`, standalone mode uses `<data-dir>/secret.key`,
    /// created with mode 0600 on first use; cluster mode requires one of the two.
    #[arg(long = "secret-key-file", env = "TRAITOR_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The key that encrypts secrets at rest, base64 of 32 bytes (wins over the file).
    /// Prefer the environment variable: a flag is visible in the process list.
    #[arg(
        long = "secret-key",
        env = "TRAITOR_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
}

impl Cli {
    /// Parses the process arguments, accepting the seed's `-mg` and `-ip`.
    pub fn parse_args() -> Self {
        Self::parse_from(rewrite_seed_flags(std::env::args_os()))
    }
}

/// Rewrites the seed's multi-letter single-dash flags to the long forms clap knows.
pub fn rewrite_seed_flags(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|a| {
            let Some(s) = a.to_str() else { return a };
            for (seed, long) in [("-mg", "--mongo"), ("-ip", "--ip")] {
                if s == seed {
                    return long.into();
                }
                if let Some(rest) = s.strip_prefix(seed).and_then(|r| r.strip_prefix('=')) {
                    return format!("{long}={rest}").into();
                }
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(rewrite_seed_flags(args.iter().map(|s| s.into()))).unwrap()
    }

    #[test]
    fn the_seed_spelling_parses() {
        let cli = parse(&["traitor", "-m", "std", "-p", "8081", "-ip", "0.0.0.0"]);
        assert_eq!(cli.serve.mode, Mode::Std);
        assert_eq!(cli.serve.port, 8081);
        assert_eq!(cli.serve.ip, Some("0.0.0.0".parse().unwrap()));
    }

    #[test]
    fn the_seed_cluster_command_line_parses() {
        let cli = parse(&[
            "traitor",
            "-m",
            "multi",
            "-r",
            "redis://redis:6379",
            "-mg",
            "mongodb://mongo:27017",
            "-c",
            "blue",
        ]);
        assert_eq!(cli.serve.mode, Mode::Multi);
        assert_eq!(cli.serve.redis.as_deref(), Some("redis://redis:6379"));
        assert_eq!(cli.serve.mongo.as_deref(), Some("mongodb://mongo:27017"));
        assert_eq!(cli.serve.cluster, "blue");
    }

    #[test]
    fn exec_takes_a_file_and_limits() {
        let cli = parse(&["traitor", "exec", "x.js", "--time-limit-ms", "100"]);
        let Some(Command::Exec(e)) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(e.file, PathBuf::from("x.js"));
        assert_eq!(e.limits.limits().wall_ms, 100);
    }
}
