//! The one configuration struct of the `traitor` binary.
//!
//! Precedence: built-in defaults < `TRAITOR_*` environment variables < flags. The seed's
//! single-dash spellings (`-mg`, `-ip`) are rewritten to their long forms before clap
//! sees them, so the seed's docker-compose command lines keep working.
//!
//! This module parses and validates; it starts nothing.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::egress::{EgressDefault, EgressPolicy, Rules};

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
    /// Directory of native plugins (`*.so`) the workers load (default:
    /// `~/.traitor/plugin`). The supervisor itself never loads them.
    #[arg(long = "plugin-dir", env = "TRAITOR_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Time limit of each HTTP request a script makes (connecting, redirects and reading
    /// the body included), milliseconds.
    #[arg(
        long = "http-timeout-ms",
        env = "TRAITOR_HTTP_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub http_timeout_ms: u64,
    /// Largest response body of each HTTP request a script makes, KiB; a larger one
    /// fails the request.
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
    #[command(flatten)]
    pub egress: EgressArgs,
}

impl PoolArgs {
    pub fn http_max_body_bytes(&self) -> usize {
        usize::try_from(self.http_max_body_kb.saturating_mul(1024)).unwrap_or(usize::MAX)
    }
}

/// Where scripts' HTTP requests may go (`fetch`, `require('http')`). Link-local
/// addresses and cloud metadata services are refused unless an allow rule names them;
/// see `crate::egress` for the order in which rules apply.
#[derive(Debug, Clone, Args)]
pub struct EgressArgs {
    /// Hosts (`api.example.com`, `*.example.com`), addresses and networks
    /// (`10.0.0.0/8`) scripts may reach even when the default is deny. Comma-separated,
    /// repeatable.
    #[arg(
        long = "egress-allow",
        env = "TRAITOR_EGRESS_ALLOW",
        value_name = "RULES"
    )]
    pub allow: Vec<Rules>,
    /// Hosts, addresses and networks scripts may never reach; wins over every allow
    /// rule. Comma-separated, repeatable.
    #[arg(
        long = "egress-deny",
        env = "TRAITOR_EGRESS_DENY",
        value_name = "RULES"
    )]
    pub deny: Vec<Rules>,
    /// Whether a request no rule decides is allowed (loopback and private networks
    /// included) or denied.
    #[arg(
        long = "egress-default",
        env = "TRAITOR_EGRESS_DEFAULT",
        value_enum,
        default_value_t = EgressDefault::Allow
    )]
    pub default: EgressDefault,
}

impl EgressArgs {
    pub fn policy(&self) -> EgressPolicy {
        let flat = |lists: &[Rules]| lists.iter().flat_map(|l| l.0.iter().cloned()).collect();
        EgressPolicy::new(flat(&self.allow), flat(&self.deny), self.default)
    }
}

/// How the service writes its log (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with every structured field.
    Json,
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
    /// This node's name, recorded with every run (default: the host name; in a cluster,
    /// host name and port).
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
    /// An API token, `NAME:SECRET` (NAME: 1 to 32 of a-z 0-9 _ -), or a bare SECRET for
    /// the token named `default`. Repeatable. With any token, every API call and the
    /// debug socket must present one (`Authorization: Bearer SECRET`), and its name is
    /// recorded in the audit log. The variable holds one token; several go in a file.
    #[arg(
        long = "auth-token",
        env = "TRAITOR_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "[NAME:]SECRET"
    )]
    pub auth_token: Vec<String>,
    /// A file of API tokens, one `NAME SECRET` per line; `#` starts a comment line.
    /// Read at start-up, together with `--auth-token`.
    #[arg(long = "auth-token-file", env = "TRAITOR_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
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
    /// Audit log entries older than this are deleted, days.
    #[arg(long = "audit-days", env = "TRAITOR_AUDIT_DAYS", default_value_t = 365)]
    pub audit_days: u32,
    /// Audit log entries kept at most (the newest).
    #[arg(
        long = "audit-keep",
        env = "TRAITOR_AUDIT_KEEP",
        default_value_t = 1_000_000
    )]
    pub audit_keep: u64,
    /// Log format: `text` or `json` (one object per line).
    #[arg(
        long = "log-format",
        env = "TRAITOR_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// The same as `--log-format json`.
    #[arg(long = "log-json", env = "TRAITOR_LOG_JSON", hide = true)]
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

impl ServeConfig {
    /// Every API token: those of `--auth-token` and those of `--auth-token-file`. Two
    /// tokens with one name or one secret are refused.
    pub fn auth_tokens(&self) -> anyhow::Result<Vec<web::AuthToken>> {
        // Parsed here rather than by clap, whose errors would print the secret.
        let mut tokens = self
            .auth_token
            .iter()
            .map(|t| web::AuthToken::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--auth-token: {e}"))?;
        if let Some(path) = &self.auth_token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read the token file {}", path.display()))?;
            let from_file = web::tokens::parse_file(&text)
                .map_err(|e| anyhow::anyhow!("the token file {}: {e}", path.display()))?;
            tokens.extend(from_file);
        }
        web::tokens::check_unique(&tokens).map_err(|e| anyhow::anyhow!("auth tokens: {e}"))?;
        Ok(tokens)
    }

    pub fn log_format(&self) -> LogFormat {
        if self.log_json {
            LogFormat::Json
        } else {
            self.log_format
        }
    }
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

    #[test]
    fn egress_rules_are_lists_and_bad_ones_are_refused() {
        let cli = parse(&[
            "traitor",
            "--egress-allow",
            "api.example.com, 10.0.0.0/8",
            "--egress-allow",
            "*.corp.test",
            "--egress-deny",
            "10.9.0.0/16",
            "--egress-default",
            "deny",
        ]);
        let e = &cli.serve.pool.egress;
        assert_eq!(e.allow.iter().map(|l| l.0.len()).sum::<usize>(), 3);
        assert_eq!(e.deny, vec!["10.9.0.0/16".parse().unwrap()]);
        assert_eq!(e.default, EgressDefault::Deny);
        // Empty entries (and an empty environment variable) are no rules.
        assert_eq!(",, ".parse::<Rules>(), Ok(Rules::default()));
        let bad = Cli::try_parse_from(["traitor", "--egress-deny", "10.0.0.0/40"]);
        assert!(bad.is_err());
        let err = bad.unwrap_err().to_string();
        assert!(err.contains("not a network"), "{err}");
    }

    #[test]
    fn auth_tokens_from_flags_and_a_file() {
        let names = |cli: &Cli| -> Vec<String> {
            let tokens = cli.serve.auth_tokens().expect("tokens");
            tokens.iter().map(|t| t.name().to_owned()).collect()
        };
        assert!(names(&parse(&["traitor"])).is_empty());
        let cli = parse(&["traitor", "--auth-token", "s3cret"]);
        assert_eq!(names(&cli), ["default"]);
        let cli = parse(&[
            "traitor",
            "--auth-token",
            "ci:one",
            "--auth-token",
            "alice:two",
        ]);
        assert_eq!(names(&cli), ["ci", "alice"]);

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# ops\nbob three\n").expect("write");
        let path = file.to_str().expect("utf-8");
        let cli = parse(&[
            "traitor",
            "--auth-token",
            "ci:one",
            "--auth-token-file",
            path,
        ]);
        assert_eq!(names(&cli), ["ci", "bob"]);

        // A name given twice, across the flag and the file.
        std::fs::write(&file, "ci other\n").expect("write");
        let e = cli.serve.auth_tokens().expect_err("duplicate");
        assert!(
            format!("{e:#}").contains("two tokens are named \"ci\""),
            "{e:#}"
        );
        // A bad line names the file and the line.
        std::fs::write(&file, "bob\n").expect("write");
        let e = format!("{:#}", cli.serve.auth_tokens().expect_err("bad line"));
        assert!(e.contains("tokens: line 1: expected `NAME SECRET`"), "{e}");
        // A missing file.
        let cli = parse(&["traitor", "--auth-token-file", "/nonexistent/tokens"]);
        let e = format!("{:#}", cli.serve.auth_tokens().expect_err("missing"));
        assert!(e.contains("read the token file /nonexistent/tokens"), "{e}");
        // A bad flag value is refused with the reason, never with the value.
        let cli = parse(&["traitor", "--auth-token", "ci:has space"]);
        let e = format!("{:#}", cli.serve.auth_tokens().expect_err("bad secret"));
        assert!(
            e.contains("--auth-token: the secret of token \"ci\""),
            "{e}"
        );
        assert!(!e.contains("has space"), "{e}");
    }

    #[test]
    fn log_format_json_and_its_old_spelling() {
        assert_eq!(parse(&["traitor"]).serve.log_format(), LogFormat::Text);
        let json = parse(&["traitor", "--log-format", "json"]);
        assert_eq!(json.serve.log_format(), LogFormat::Json);
        assert_eq!(
            parse(&["traitor", "--log-json"]).serve.log_format(),
            LogFormat::Json
        );
    }
}
