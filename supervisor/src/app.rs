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

use crate::cluster::{Cluster, ClusterConfig, OwnershipChange, default_node_name};
use crate::config::{Mode, ServeConfig};
use crate::history;
use crate::hostcall::{HttpHost, HttpHostConfig};
use crate::metrics::{Metrics, TimedStore};
use crate::pool::{Pool, PoolConfig};
use crate::runner::{FireGate, OpenGate, Runner, RunnerParts};
use crate::scheduler;
use crate::service::{CatchUpFrom, JobDefaults, Service, ServiceParts};
use crate::store::Store;
use crate::store::mongo::MongoStore;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;

/// Largest request body the API accepts: a maximal script plus JSON escaping.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How often a cluster node compares its schedule with the store.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// How often old run history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub fn data_dir(cfg: &ServeConfig) -> anyhow::Result<PathBuf> {
    if let Some(d) = &cfg.data_dir {
        return Ok(d.clone());
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".traitor"))
}

/// Where the secret key comes from (see [`crate::secrets`]): the key itself, a key
/// file, or in standalone mode `<data-dir>/secret.key`.
fn key_source(cfg: &ServeConfig) -> anyhow::Result<crate::secrets::KeySource> {
    let default_file = match cfg.mode {
        Mode::Std => Some(data_dir(cfg)?.join("secret.key")),
        Mode::Multi => None,
    };
    let src = crate::secrets::KeySource::new(
        cfg.secret_key.clone(),
        cfg.secret_key_file.clone(),
        default_file,
    );
    src.check().context("load the secret key")?;
    Ok(src)
}

fn node_name() -> String {
    crate::cluster::hostname().unwrap_or_else(|| "standalone".into())
}

pub fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    // Bad tokens stop the start before anything else is opened.
    let auth_tokens = cfg.auth_tokens()?;
    if !auth_tokens.is_empty() {
        let names: Vec<&str> = auth_tokens.iter().map(web::AuthToken::name).collect();
        tracing::info!(tokens = ?names, "API tokens configured");
    }
    let (store, cluster) = open_store_and_cluster(&cfg).await?;
    // One set of counters for `/metrics`, handed to whatever records into it.
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn Store> = Arc::new(TimedStore::new(store, metrics.store.clone()));
    let vault = Arc::new(crate::secrets::Vault::new(store.clone(), key_source(&cfg)?));
    let gate: Arc<dyn FireGate> = match &cluster {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(OpenGate),
    };

    let mut pool_cfg = PoolConfig::from_args(&cfg.pool)?;
    if let Some(n) = cfg.pool.workers {
        pool_cfg.workers = n;
    }
    // Scripts may not call this service's own API (it trusts loopback without a token).
    let host = HttpHost::build(HttpHostConfig {
        timeout: Duration::from_millis(cfg.pool.http_timeout_ms),
        max_body_bytes: cfg.pool.http_max_body_bytes(),
        own_ports: vec![cfg.port],
        policy: cfg.pool.egress.policy(),
        counters: metrics.egress.clone(),
    })?;
    // Scripts' `kv.*` calls are answered from the store; the rest go to `host`.
    let host = Arc::new(crate::kvhost::KvHost::new(host, store.clone()));
    let pool = Pool::start(pool_cfg, host)
        .await
        .context("start the worker pool")?;

    let node = match &cluster {
        Some(c) => c.node().to_owned(),
        None => cfg.node_name.clone().unwrap_or_else(node_name),
    };
    let (history, history_task) = history::spawn_writer(store.clone());
    let (exhausted_tx, exhausted_rx) = mpsc::unbounded_channel();
    let base_limits = cfg.limits.limits();
    let stats = Arc::new(crate::stats::RunStats::default());
    let runner = Runner::new(RunnerParts {
        pool: pool.clone(),
        store: store.clone(),
        history: history.clone(),
        node: node.clone(),
        base_limits,
        exhausted: exhausted_tx,
        stats: stats.clone(),
        gate,
        vault: vault.clone(),
    });
    let (sched, sched_task) = scheduler::spawn(runner.clone());
    runner.attach(sched.clone());
    let service = Arc::new(Service::new(ServiceParts {
        store: store.clone(),
        scheduler: sched.clone(),
        runner: runner.clone(),
        pool: pool.clone(),
        defaults: JobDefaults {
            time_limit_ms: base_limits.wall_ms,
            memory_limit_mb: cfg.limits.memory_limit_mb,
        },
        node,
        mode: if cluster.is_some() { "multi" } else { "std" },
        stats,
        cluster: cluster.clone(),
        metrics,
        vault,
    }));
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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut cluster_tasks = Vec::new();
    let mut ownership = None;
    if let Some(c) = &cluster {
        let (heartbeat, own_rx) = join_cluster(c, stop_rx.clone()).await;
        cluster_tasks.push(heartbeat);
        ownership = Some(own_rx);
    }

    let t = std::time::Instant::now();
    let n = service
        .schedule_all()
        .await
        .context("schedule stored jobs")?;
    tracing::info!(
        jobs = n,
        elapsed_ms = t.elapsed().as_millis() as u64,
        "stored jobs scheduled"
    );
    if let (Some(c), Some(own_rx)) = (&cluster, ownership) {
        cluster_tasks.push(start_cluster_sync(
            c.clone(),
            service.clone(),
            own_rx,
            stop_rx.clone(),
        ));
    }

    tokio::spawn(prune_loop(
        store.clone(),
        Retention {
            runs_per_job: cfg.history_per_job,
            runs_max_age_ms: i64::from(cfg.history_days) * 86_400_000,
            audit_keep: cfg.audit_keep,
            audit_max_age_ms: i64::from(cfg.audit_days) * 86_400_000,
        },
    ));

    let ip = cfg.ip.unwrap_or(if !auth_tokens.is_empty() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    });
    if auth_tokens.is_empty() {
        tracing::warn!(
            "no auth token configured (TRAITOR_AUTH_TOKEN): only loopback clients are served, \
             because anyone who reaches the API can run code on this machine"
        );
    }
    let web_cfg = web::WebConfig {
        addr: SocketAddr::new(ip, cfg.port),
        auth_tokens,
        max_body_bytes: MAX_BODY_BYTES,
    };
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new requests");
        let _ = http_stop_tx.send(());
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    let backend: Arc<dyn web::Backend> = service.clone();
    web::serve(web_cfg, backend, async move {
        let _ = http_stop_rx.await;
    })
    .await?;

    // Ordered shutdown: leave the cluster first so that peers take over at once.
    let _ = stop_tx.send(true);
    for t in cluster_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    watchdog.abort();
    sched.shutdown().await;
    let grace = Duration::from_secs(cfg.shutdown_grace_s);
    tracing::info!(
        grace_s = cfg.shutdown_grace_s,
        "waiting for running scripts"
    );
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

async fn open_store_and_cluster(
    cfg: &ServeConfig,
) -> anyhow::Result<(Arc<dyn Store>, Option<Cluster>)> {
    match cfg.mode {
        Mode::Std => {
            let dir = data_dir(cfg)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create data dir {}", dir.display()))?;
            lock_data_dir(&dir)?;
            let store =
                SqliteStore::open(&dir.join("traitor.db")).context("open the embedded store")?;
            Ok((Arc::new(store), None))
        }
        Mode::Multi => {
            let redis = cfg
                .redis
                .clone()
                .context("cluster mode (-m multi) needs Redis: -r redis://host:6379")?;
            let store: Arc<dyn Store> = match (&cfg.store, &cfg.mongo) {
                (Some(url), _)
                    if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
                {
                    Arc::new(
                        PostgresStore::connect(url, &cfg.cluster)
                            .await
                            .context("connect to PostgreSQL")?,
                    )
                }
                (Some(url), _) => anyhow::bail!("--store must be a postgres:// URL, not {url:?}"),
                (None, Some(url)) => Arc::new(
                    MongoStore::connect(url, &cfg.cluster)
                        .await
                        .context("connect to MongoDB")?,
                ),
                (None, None) => anyhow::bail!(
                    "cluster mode (-m multi) needs a shared store: --store postgres://… or -mg mongodb://…"
                ),
            };
            let node = cfg
                .node_name
                .clone()
                .unwrap_or_else(|| default_node_name(cfg.port));
            let cluster = Cluster::new(ClusterConfig {
                redis_url: redis,
                cluster: cfg.cluster.clone(),
                node,
            })
            .await?;
            Ok((store, Some(cluster)))
        }
    }
}

/// Takes an exclusive lock on the data directory for the life of the process: two
/// standalone services on one store would both fire every job.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join("traitor.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "another traitor is using the data directory {} ({e}); stop it or pass another --data-dir",
            dir.display()
        )
    })?;
    // Held until the process exits; the kernel releases it even after kill -9.
    std::mem::forget(lock);
    Ok(())
}

/// Starts membership and waits (briefly) for the first heartbeat, so that start-up's
/// catch-up knows which jobs are this node's. Ownership changes queue in the receiver.
async fn join_cluster(
    c: &Cluster,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<OwnershipChange>,
) {
    let (own_tx, mut own_rx) = mpsc::unbounded_channel::<OwnershipChange>();
    let heartbeat = tokio::spawn(c.clone().heartbeat_loop(own_tx, stop));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !c.healthy() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !c.healthy() {
        tracing::warn!(problem = ?c.problem(), "not in the cluster yet; serving the API, firing nothing");
    }
    // The first change (joining) is covered by start-up's own catch-up.
    while own_rx.try_recv().is_ok() {}
    (heartbeat, own_rx)
}

/// After start-up has scheduled the stored jobs: takeovers, announcements and the
/// periodic reconcile. Returns the listener, which must end on shutdown.
fn start_cluster_sync(
    c: Cluster,
    service: Arc<Service>,
    mut own_rx: mpsc::UnboundedReceiver<OwnershipChange>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (ann_tx, mut ann_rx) = mpsc::unbounded_channel::<Option<(String, u64)>>();
    let listen = tokio::spawn(c.listen_loop(ann_tx, stop.clone()));
    let s = service.clone();
    tokio::spawn(async move {
        while let Some(change) = own_rx.recv().await {
            match s.take_over(&change).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "took over jobs"),
                Err(e) => tracing::warn!(error = %e, "takeover failed; the next reconcile retries"),
            }
        }
    });
    let s = service.clone();
    tokio::spawn(async move {
        while let Some(msg) = ann_rx.recv().await {
            match msg {
                Some((id, _version)) => s.reload(&id, CatchUpFrom::Nothing).await,
                None => {
                    if let Err(e) = s.reconcile().await {
                        tracing::warn!(error = %e, "reconcile failed");
                    }
                }
            }
        }
    });
    let s = service;
    let mut stop_r = stop;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // immediate; start-up has just scheduled everything
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_r.changed() => return,
            }
            match s.reconcile().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "reconciled a stale schedule"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        }
    });
    listen
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; just never return.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What the prune loop keeps: run history and the audit log, each by count and age.
struct Retention {
    runs_per_job: u32,
    runs_max_age_ms: i64,
    audit_keep: u64,
    audit_max_age_ms: i64,
}

async fn prune_loop(store: Arc<dyn Store>, keep: Retention) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        let now = scheduler::now_ms();
        let cutoff = now - keep.runs_max_age_ms;
        match store.prune_runs(keep.runs_per_job, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old run history pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning run history failed"),
        }
        let cutoff = now.saturating_sub(keep.audit_max_age_ms);
        match store.prune_audit(keep.audit_keep, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old audit log entries pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
        }
    }
}
