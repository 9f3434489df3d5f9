//! Benchmarks of traitor's parts, against the real binaries of this profile.
//!
//! `cargo run --release -p tests --bin bench -- pool [--workers N] [--seconds S]
//! [--inflight K]`: runs/s of `console.log('hi')` at steady state, dispatch latency
//! (submit → `Started`) at a fixed moderate rate and unloaded, worker cold start and
//! idle RSS. Everything it starts stays on this machine.
//!
//! It measures; it asserts nothing.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use protocol::Outcome;
use supervisor::hostcall::NoHost;
use supervisor::pool::{Pool, PoolConfig, RunEvent, RunHandle};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pool") => run(pool_bench(&args[1..])),
        Some("lateness") => run(tests::bench_service::lateness(&args[1..])),
        Some("burst") => run(tests::bench_service::burst(&args[1..])),
        Some("million") => run(tests::bench_service::million(&args[1..])),
        Some("creates") => run(tests::bench_service::creates(&args[1..])),
        _ => {
            eprintln!(
                "usage: bench pool [--workers N] [--seconds S] [--inflight K] [--throughput-only]\n\
                 \n\
                 pool   runs/s, dispatch latency, worker cold start and idle RSS\n\
                 lateness|burst|million|creates   the standalone service (tests/src/bench_service.rs)"
            );
            ExitCode::from(2)
        }
    }
}

fn run(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct PoolOpts {
    workers: usize,
    seconds: u64,
    inflight: usize,
    /// Measure runs/s only (for profiling).
    throughput_only: bool,
}

fn parse_pool_opts(args: &[String]) -> anyhow::Result<PoolOpts> {
    let mut o = PoolOpts {
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        seconds: 5,
        inflight: 256,
        throughput_only: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || -> anyhow::Result<&String> {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--workers" => o.workers = value()?.parse()?,
            "--seconds" => o.seconds = value()?.parse()?,
            "--inflight" => o.inflight = value()?.parse()?,
            "--throughput-only" => o.throughput_only = true,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

fn config(workers: usize) -> PoolConfig {
    let mut cfg = PoolConfig::new(tests::worker_bin());
    cfg.workers = workers;
    cfg
}

fn hi() -> supervisor::pool::RunRequest {
    tests::request("console.log('hi')", 10_000)
}

/// Time a process spent running (user + system, every thread it ever had, from
/// `/proc/PID/stat`) and its live threads spent waiting for a CPU
/// (`/proc/PID/task/*/schedstat`; a worker's run threads are gone by the time they are
/// read, so for workers the waiting time is a lower bound). Waiting shows a busy machine.
fn sched(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|h| *h > 0)?;
    let run = Duration::from_nanos(ticks * 1_000_000_000 / hz);
    let mut wait = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let s = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        wait += s.split_whitespace().nth(1)?.parse::<u64>().unwrap_or(0);
    }
    Some((run, Duration::from_nanos(wait)))
}

/// [`sched`] summed over several processes.
fn sched_all(pids: &[u32]) -> (Duration, Duration) {
    pids.iter()
        .filter_map(|p| sched(*p))
        .fold((Duration::ZERO, Duration::ZERO), |(r, w), (r2, w2)| {
            (r + r2, w + w2)
        })
}

async fn pool_bench(args: &[String]) -> anyhow::Result<()> {
    let o = parse_pool_opts(args)?;
    let worker = tests::worker_bin();
    println!("worker binary: {}", worker.display());
    println!(
        "workers: {}, in flight: {}, measuring {} s",
        o.workers, o.inflight, o.seconds
    );

    // 1. Throughput at steady state.
    let pool = Pool::start(config(o.workers), Arc::new(NoHost)).await?;
    let pids = pool.stats().worker_pids;
    let warmup = throughput(&pool, o.inflight, Duration::from_secs(1)).await?;
    let me = std::process::id();
    let (s_run0, s_wait0) = sched_all(&[me]);
    let (w_run0, w_wait0) = sched_all(&pids);
    let t = throughput(&pool, o.inflight, Duration::from_secs(o.seconds)).await?;
    let (s_run1, s_wait1) = sched_all(&[me]);
    let (w_run1, w_wait1) = sched_all(&pids);
    let rate = t.runs as f64 / t.elapsed.as_secs_f64();
    let per_run = |d: Duration| d.as_secs_f64() * 1e6 / t.runs as f64;
    println!();
    println!(
        "throughput (warm-up {:.0} runs/s)",
        warmup.runs as f64 / warmup.elapsed.as_secs_f64()
    );
    println!(
        "  {} runs in {:.2} s: {:.0} runs/s",
        t.runs,
        t.elapsed.as_secs_f64(),
        rate
    );
    println!(
        "  per run: supervisor ran {:.1} µs (waited for a CPU {:.1} µs), workers ran {:.1} µs \
         (waited {:.1} µs)",
        per_run(s_run1 - s_run0),
        per_run(s_wait1 - s_wait0),
        per_run(w_run1 - w_run0),
        per_run(w_wait1 - w_wait0),
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("  load average: {}", load.trim());
    }

    if o.throughput_only {
        pool.shutdown(Duration::from_secs(5)).await;
        return Ok(());
    }

    // 2. Dispatch latency.
    let fixed = latency_at_rate(&pool, 1000, Duration::from_secs(3)).await?;
    let idle = latency_unloaded(&pool, 300).await?;
    println!();
    println!("dispatch latency, submit → Started");
    print_hist("  1,000 runs/s for 3 s", &fixed);
    print_hist("  unloaded, one at a time", &idle);
    pool.shutdown(Duration::from_secs(5)).await;

    // 3. Cold start and idle RSS.
    let mut cold = Histogram::<u64>::new(3)?;
    let mut rss = Vec::new();
    for i in 0..20 {
        let t0 = Instant::now();
        let p = Pool::start(config(1), Arc::new(NoHost)).await?;
        cold.record(t0.elapsed().as_micros() as u64)?;
        if i % 5 == 0 {
            // Idle after one run, as a worker waiting for work is.
            let _ = p.submit(hi()).finish().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(kib) = p
                .stats()
                .worker_pids
                .first()
                .and_then(|p| tests::rss_kib(*p))
            {
                rss.push(kib);
            }
        }
        p.shutdown(Duration::from_secs(1)).await;
    }
    rss.sort();
    println!();
    println!("worker cold start (spawn → handshake done, Pool::start with one worker), 20 starts");
    println!(
        "  p50 {:.2} ms, p99 {:.2} ms",
        cold.value_at_quantile(0.5) as f64 / 1000.0,
        cold.value_at_quantile(0.99) as f64 / 1000.0
    );
    if let Some(m) = rss.get(rss.len() / 2) {
        println!(
            "  idle worker RSS (VmRSS, after one run): {:.1} MiB",
            *m as f64 / 1024.0
        );
    }
    Ok(())
}

struct Throughput {
    runs: u64,
    elapsed: Duration,
}

/// Keeps `inflight` runs going for `dur`; counts the ones that ended.
async fn throughput(pool: &Pool, inflight: usize, dur: Duration) -> anyhow::Result<Throughput> {
    let mut pending = FuturesUnordered::new();
    for _ in 0..inflight {
        pending.push(pool.submit(hi()).finish());
    }
    let t0 = Instant::now();
    let mut runs = 0u64;
    while let Some((lines, r)) = pending.next().await {
        anyhow::ensure!(
            r.outcome == Outcome::Succeeded && lines.len() == 1,
            "a run did not succeed: {r:?}"
        );
        runs += 1;
        if t0.elapsed() < dur {
            pending.push(pool.submit(hi()).finish());
        }
    }
    Ok(Throughput {
        runs,
        elapsed: t0.elapsed(),
    })
}

async fn until_started(mut h: RunHandle, submitted: Instant) -> anyhow::Result<Duration> {
    let mut latency = None;
    while let Some(ev) = h.next_event().await {
        match ev {
            RunEvent::Started { .. } => latency = Some(submitted.elapsed()),
            RunEvent::End(r) => anyhow::ensure!(r.outcome == Outcome::Succeeded, "{r:?}"),
            RunEvent::Console(_) => {}
        }
    }
    latency.ok_or_else(|| anyhow::anyhow!("a run never started"))
}

async fn latency_at_rate(
    pool: &Pool,
    per_second: u64,
    dur: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new(3)?;
    let mut pending = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    let t0 = Instant::now();
    while t0.elapsed() < dur {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                pending.push(until_started(pool.submit(hi()), now));
            }
            Some(r) = pending.next() => h.record(r?.as_micros() as u64)?,
        }
    }
    while let Some(r) = pending.next().await {
        h.record(r?.as_micros() as u64)?;
    }
    Ok(h)
}

async fn latency_unloaded(pool: &Pool, n: usize) -> anyhow::Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new(3)?;
    for _ in 0..n {
        let now = Instant::now();
        h.record(until_started(pool.submit(hi()), now).await?.as_micros() as u64)?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(h)
}

fn print_hist(label: &str, h: &Histogram<u64>) {
    println!(
        "{label}: p50 {} µs, p99 {} µs, max {} µs ({} runs)",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max(),
        h.len()
    );
}
