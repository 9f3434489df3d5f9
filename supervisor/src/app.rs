//! Start-up and shutdown of the service: builds every part from the config, in order,
//! and takes them down in the reverse order under deadlines.
//!
//! Start: store → worker pool → history writer → runner + scheduler → reload every
//! enabled job (misfire rule) → HTTP. Stop (SIGTERM/SIGINT): stop accepting HTTP →
//! stop firing → let running scripts finish within the grace period, cancel the rest →
//! flush history → close the store. A second signal exits at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::{Mode, ServeConfig};
use crate::history;
use crate::hostcall::HttpHost;
use crate::pool::{Pool, PoolConfig};
use crate::runner::Runner;
use crate::scheduler;
use crate::service::{JobDefaults, Service};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// Largest request body the API accepts: a maximal script plus JSON escaping.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How often old run history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub fn data_dir(cfg: &ServeConfig) -> anyhow::Result<PathBuf> {
    if let Some(d) = &cfg.data_dir {
        return Ok(d.clone());
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".traitor"))
}

fn node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "standalone".into())
}

pub fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    if cfg.mode == Mode::Multi {
        anyhow::bail!(
            "cluster mode (-m multi) is not implemented in this build yet; run -m std (the default)"
        );
    }
    let dir = data_dir(&cfg)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("create data dir {}", dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.join("traitor.db")).context("open the embedded store")?,
    );

    let mut pool_cfg = PoolConfig::from_args(&cfg.pool)?;
    if let Some(n) = cfg.pool.workers {
        pool_cfg.workers = n;
    }
    let host = Arc::new(HttpHost::from_args(&cfg.pool)?);
    let pool = Pool::start(pool_cfg, host).await.context("start the worker pool")?;

    let node = node_name();
    let (history, history_task) = history::spawn_writer(store.clone());
    let (exhausted_tx, exhausted_rx) = mpsc::unbounded_channel();
    let base_limits = cfg.limits.limits();
    let stats = Arc::new(crate::stats::RunStats::default());
    let runner = Runner::new(
        pool.clone(),
        store.clone(),
        history.clone(),
        node.clone(),
        base_limits,
        exhausted_tx,
        stats.clone(),
    );
    let (sched, sched_task) = scheduler::spawn(runner.clone());
    runner.attach(sched.clone());
    let service = Arc::new(Service::new(
        store.clone(),
        sched.clone(),
        runner.clone(),
        pool.clone(),
        JobDefaults {
            time_limit_ms: base_limits.wall_ms,
            memory_limit_mb: cfg.limits.memory_limit_mb,
        },
        node,
        "std",
        stats,
    ));
    tokio::spawn({
        let s = service.clone();
        async move { s.handle_exhausted(exhausted_rx).await }
    });
    // The scheduler must never stop silently: if its task ends while we are not
    // shutting down, the process exits so that a supervisor (systemd, Docker) restarts
    // it and the misfire rule catches up.
    let watchdog = tokio::spawn(async move {
        let r = sched_task.await;
        tracing::error!(result = ?r.err(), "the scheduler stopped unexpectedly; exiting");
        std::process::exit(70);
    });

    let t = std::time::Instant::now();
    let n = service.schedule_all().await.context("schedule stored jobs")?;
    tracing::info!(jobs = n, elapsed_ms = t.elapsed().as_millis() as u64, "stored jobs scheduled");

    tokio::spawn(prune_loop(
        store.clone(),
        cfg.history_per_job,
        i64::from(cfg.history_days) * 86_400_000,
    ));

    let ip = cfg.ip.unwrap_or(if cfg.auth_token.is_some() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    });
    if cfg.auth_token.is_none() {
        tracing::warn!(
            "no auth token configured (TRAITOR_AUTH_TOKEN): only loopback clients are served, \
             because anyone who reaches the API can run code on this machine"
        );
    }
    let web_cfg = web::WebConfig {
        addr: SocketAddr::new(ip, cfg.port),
        auth_token: cfg.auth_token.clone(),
        max_body_bytes: MAX_BODY_BYTES,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new requests");
        let _ = stop_tx.send(());
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    let backend: Arc<dyn web::Backend> = service.clone();
    web::serve(web_cfg, backend, async move {
        let _ = stop_rx.await;
    })
    .await?;

    // Ordered shutdown.
    watchdog.abort();
    sched.shutdown().await;
    let grace = Duration::from_secs(cfg.shutdown_grace_s);
    tracing::info!(grace_s = cfg.shutdown_grace_s, "waiting for running scripts");
    pool.shutdown(grace).await;
    if tokio::time::timeout(Duration::from_secs(5), runner.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("some runs did not record their end in time");
    }
    history.flush().await;
    drop(history);
    drop(runner);
    drop(service);
    history_task.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the process can still be killed; just never return.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn prune_loop(store: Arc<dyn Store>, keep_per_job: u32, max_age_ms: i64) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        let cutoff = scheduler::now_ms() - max_age_ms;
        match store.prune_runs(keep_per_job, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old run history pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning run history failed"),
        }
    }
}
