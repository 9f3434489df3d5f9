//! Benchmarks of the standalone service (issue 3): the release `traitor` started on a
//! free port with a temporary data directory and default `--workers`, driven over HTTP
//! (and `wrk`), measured from outside.
//!
//! - `lateness`: fire lateness (start minus scheduled instant) with 10,000 running jobs
//!   at 1,000 fires/s, and the CPU the service and its workers used.
//! - `burst`: 50,000 delay jobs due in the same second: time until all started, and the
//!   lateness distribution.
//! - `million`: 1,000,000 enabled jobs (written with the supervisor's own `SqliteStore`
//!   beforehand): time from spawn to all scheduled, resident memory.
//! - `creates`: job creates/s with `wrk -t2 -c8`, every acknowledged create checked
//!   after `kill -9` and a restart; then `GET /api/job` reads/s.
//!
//! Lateness comes from the run history the service writes, which keeps milliseconds:
//! figures have millisecond resolution (a start in the same millisecond as its instant
//! reads 0 ms). Run records are read from the SQLite file after the service stopped.
//!
//! Prints figures; asserts nothing; removes what it created.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use supervisor::job::{ExecType, Job, LastRun, MisfirePolicy, OverlapPolicy, RunRecord};
use supervisor::store::sqlite::SqliteStore;
use supervisor::store::{JobListQuery, Store};

use crate::{children_of, free_port, traitor_bin};

// ---------------------------------------------------------------------------------
// The service under test

/// A `traitor` child process on its own data directory.
pub struct Service {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub http: reqwest::Client,
    rust_log: String,
    _tmp: tempfile::TempDir,
}

impl Service {
    /// A service on a fresh temporary data directory (not started).
    pub fn new(rust_log: &str) -> anyhow::Result<Service> {
        let tmp = tempfile::Builder::new()
            .prefix("traitor-bench-")
            .tempdir()
            .context("temporary directory")?;
        Ok(Service {
            child: None,
            port: free_port(),
            data_dir: tmp.path().join("data"),
            log_path: tmp.path().join("traitor.log"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build()?,
            rust_log: rust_log.to_owned(),
            _tmp: tmp,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("traitor.db")
    }

    /// Spawns `traitor` and waits until `/healthz` answers 200; returns the time from
    /// spawn to that answer. Nothing is served before every stored job is scheduled.
    pub async fn start(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let bin = traitor_bin();
        let t0 = Instant::now();
        let child = Command::new(bin)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--shutdown-grace-s", "10"])
            .env("RUST_LOG", &self.rust_log)
            .env_remove("TRAITOR_AUTH_TOKEN")
            .env_remove("TRAITOR_AUTH_TOKEN_FILE")
            .env_remove("TRAITOR_WORKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn traitor")?;
        self.child = Some(child);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                bail!(
                    "traitor exited during start-up ({status}):\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                bail!("traitor not ready after {timeout:?}:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Lines of the log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (ordered shutdown: history is flushed), then waits up to a minute.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let pid = i32::try_from(c.id()).context("pid")?;
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("traitor did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.http.get(self.url(path)).send().await?;
        Ok(r.json().await?)
    }

    /// `POST path` with a JSON body; the new id on 200.
    pub async fn post_id(&self, path: &str, body: &Value) -> anyhow::Result<String> {
        let r = self.http.post(self.url(path)).json(body).send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v["data"].as_str().unwrap_or_default().to_owned())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------
// The machine and /proc

fn print_machine(label: &str) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    println!(
        "machine: {nproc} CPUs, {model}; load average {label}: {}",
        loadavg()
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (utime + stime, cutime + cstime) of a process, in clock ticks.
fn proc_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14–17 of stat(5); `rest` starts at field 3.
    Some((f.get(11)? + f.get(12)?, f.get(13)? + f.get(14)?))
}

/// CPU seconds used so far by the service itself and by its workers (live ones plus
/// those it has reaped).
#[derive(Clone, Copy, Default)]
struct Cpu {
    service: f64,
    workers: f64,
}

fn cpu_of(pid: u32) -> Cpu {
    let tck = clk_tck();
    let (own, reaped) = proc_ticks(pid).unwrap_or_default();
    let live: u64 = children_of(pid)
        .iter()
        .filter_map(|(c, _)| proc_ticks(*c))
        .map(|(o, _)| o)
        .sum();
    Cpu {
        service: own as f64 / tck,
        workers: (reaped + live) as f64 / tck,
    }
}

fn print_cpu(label: &str, a: Cpu, b: Cpu, wall: Duration) {
    let w = wall.as_secs_f64();
    println!(
        "{label}: traitor {:.0}% of one CPU, workers {:.0}%, together {:.0}% ({:.1} + {:.1} CPU-s in {:.1} s)",
        100.0 * (b.service - a.service) / w,
        100.0 * (b.workers - a.workers) / w,
        100.0 * (b.service - a.service + b.workers - a.workers) / w,
        b.service - a.service,
        b.workers - a.workers,
        w
    );
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile`).
fn status_kib(pid: u32, name: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// (VmRSS, VmHWM) in KiB.
fn rss_hwm(pid: u32) -> Option<(u64, u64)> {
    Some((status_kib(pid, "VmRSS")?, status_kib(pid, "VmHWM")?))
}

fn mib(kib: Option<u64>) -> f64 {
    kib.unwrap_or(0) as f64 / 1024.0
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------------------------
// Options

struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String], known: &[&str]) -> anyhow::Result<Opts> {
        let mut m = BTreeMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a}");
            };
            if !known.contains(&name) {
                bail!("unknown option {a} (known: {})", known.join(", "));
            }
            let v = it.next().with_context(|| format!("{a} needs a value"))?;
            m.insert(name.to_owned(), v.clone());
        }
        Ok(Opts(m))
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{name} {v}: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------------
// Run history

/// Lateness and outcomes of a set of runs.
struct RunSummary {
    runs: u64,
    lateness_ms: Histogram<u64>,
    /// Starts before their instant (must be none).
    early: u64,
    never_started: u64,
    outcomes: BTreeMap<String, u64>,
    first_start_ms: Option<i64>,
    last_start_ms: Option<i64>,
}

fn summarize<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> anyhow::Result<RunSummary> {
    let mut s = RunSummary {
        runs: 0,
        lateness_ms: Histogram::new(3)?,
        early: 0,
        never_started: 0,
        outcomes: BTreeMap::new(),
        first_start_ms: None,
        last_start_ms: None,
    };
    for r in runs {
        s.runs += 1;
        *s.outcomes.entry(r.outcome.clone()).or_default() += 1;
        match r.started_at_ms {
            Some(st) => {
                let late = st - r.scheduled_at_ms;
                if late < 0 {
                    s.early += 1;
                }
                s.lateness_ms.record(late.max(0) as u64)?;
                s.first_start_ms = Some(s.first_start_ms.map_or(st, |f| f.min(st)));
                s.last_start_ms = Some(s.last_start_ms.map_or(st, |l| l.max(st)));
            }
            None => s.never_started += 1,
        }
    }
    Ok(s)
}

fn print_lateness(label: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        println!("{label}: no started runs");
        return;
    }
    println!(
        "{label} (ms, 1 ms resolution): p50 {}, p90 {}, p99 {}, p99.9 {}, max {}, mean {:.2} ({} runs)",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.mean(),
        h.len()
    );
}

fn print_outcomes(s: &RunSummary) {
    let list: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "outcomes: {}; never started {}; started before their instant {}",
        list.join(", "),
        s.never_started,
        s.early
    );
}

/// Every run scheduled in `[from_ms, to_ms)`, read from the stopped service's database.
async fn runs_between(db: &Path, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<RunRecord>> {
    let store = SqliteStore::open(db).context("open the service's database")?;
    let runs = store.recent_runs(from_ms, u64::MAX).await?;
    store.close().await;
    Ok(runs
        .into_iter()
        .filter(|r| r.scheduled_at_ms < to_ms)
        .collect())
}

// ---------------------------------------------------------------------------------
// Creating jobs through the API

/// Creates jobs with `POST path` and the bodies from `body(i)`, `concurrency` at a time.
/// Returns the ids and the time taken.
async fn create_many(
    svc: &Service,
    path: &str,
    n: usize,
    concurrency: usize,
    body: impl Fn(usize) -> Value,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let t0 = Instant::now();
    let bodies: Vec<Value> = (0..n).map(body).collect();
    let results: Vec<anyhow::Result<String>> = futures_util::stream::iter(bodies.iter())
        .map(|b| svc.post_id(path, b))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = t0.elapsed();
    let ids = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((ids, elapsed))
}

const HI: &str = "console.log('hi')";

// ---------------------------------------------------------------------------------
// lateness

/// `bench lateness [--jobs 10000] [--warmup 15] [--seconds 60] [--shape cron|spread]`.
///
/// `cron` (the issue's shape): job i on `{i%10}/10 * * * * *`, so the 1,000 jobs of a
/// slot all fire at the same whole second: a 1,000-run burst every second.
/// `spread`: the same 10,000 jobs on daily crons that do not fire during the test, plus
/// one delay job every 1 ms (jobs/10 per second, evenly spaced), so that lateness is
/// measured without queueing behind simultaneous fires.
pub async fn lateness(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["jobs", "warmup", "seconds", "shape"])?;
    let jobs: usize = o.get("jobs", 10_000)?;
    let warmup: i64 = o.get("warmup", 15)?;
    let seconds: i64 = o.get("seconds", 60)?;
    let shape: String = o.get("shape", "cron".to_owned())?;
    let rate = (jobs / 10).max(1) as i64;
    match shape.as_str() {
        "cron" => println!(
            "== lateness (cron): {jobs} running jobs, job i on `{{i%10}}/10 * * * * *`: {rate} fires at each whole second"
        ),
        "spread" => println!(
            "== lateness (spread): {jobs} running jobs that do not fire during the test, plus one delay job every {:.2} ms ({rate} fires/s evenly spaced)",
            1000.0 / rate as f64
        ),
        other => bail!("--shape cron|spread, not {other}"),
    }
    print_machine("at start");
    let mut svc = Service::new("info")?;
    let ready = svc.start(Duration::from_secs(60)).await?;
    let pid = svc.pid().context("pid")?;
    println!(
        "traitor pid {pid}, ready in {} ms, data {}",
        ready.as_millis(),
        svc.data_dir.display()
    );

    let hour = (now_ms() / 3_600_000 + 12) % 24;
    let spread = shape == "spread";
    let (_, took) = create_many(&svc, "/api/run?type=timing", jobs, 16, |i| {
        let cron = if spread {
            format!("{} {} {hour} * * *", i % 60, (i / 60) % 60)
        } else {
            format!("{}/10 * * * * *", i % 10)
        };
        json!({ "name": format!("late-{i}"), "cron": cron, "script": HI })
    })
    .await?;
    println!(
        "created and started {jobs} timing jobs in {:.2} s ({:.0}/s, 16 concurrent requests)",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );

    // The measured window [from, to) and the occurrences due in it.
    let (from, to, expected) = if spread {
        let count = rate * (warmup + seconds);
        let base = now_ms() + 5_000 + count / 5; // assumes ≥ 5,000 creates/s
        let at = |k: i64| base + k * 1000 / rate;
        let (_, took) = create_many(
            &svc,
            "/api/run?type=delay",
            count as usize,
            16,
            |k| json!({ "name": format!("spread-{k}"), "execAt": at(k as i64), "script": HI }),
        )
        .await?;
        let margin = base - now_ms();
        println!(
            "created {count} delay jobs in {:.2} s; the first is due {:.1} s later",
            took.as_secs_f64(),
            margin as f64 / 1000.0
        );
        if margin < 500 {
            bail!("creating the delay jobs took too long");
        }
        let from = base + warmup * 1000;
        let to = base + (warmup + seconds) * 1000;
        let expected = (0..count).filter(|k| at(*k) >= from && at(*k) < to).count() as u64;
        tokio::time::sleep(Duration::from_millis((from - now_ms()).max(0) as u64)).await;
        (from, to, expected)
    } else {
        tokio::time::sleep(Duration::from_secs(warmup as u64)).await;
        let from = now_ms();
        let to = from + seconds * 1000;
        // Every whole second s in the window fires the jobs with i % 10 == s % 10.
        let per_slot = |slot: i64| (0..jobs).filter(|i| (*i as i64) % 10 == slot).count() as u64;
        let mut expected = 0u64;
        let mut s = (from + 999).div_euclid(1000);
        while s * 1000 < to {
            expected += per_slot(s.rem_euclid(10));
            s += 1;
        }
        (from, to, expected)
    };

    let t0 = Instant::now();
    let c0 = cpu_of(pid);
    let load0 = loadavg();
    tokio::time::sleep(Duration::from_millis((to - now_ms()).max(0) as u64)).await;
    let c1 = cpu_of(pid);
    let wall = t0.elapsed();
    let (rss, _) = rss_hwm(pid).unwrap_or_default();
    println!(
        "window: {seconds} s after {warmup} s of warm-up; load average before {load0}, after {}",
        loadavg()
    );
    print_cpu("CPU during the window", c0, c1, wall);
    println!("traitor VmRSS {:.0} MiB", rss as f64 / 1024.0);
    // Let the last runs of the window end and their records be written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    svc.terminate()?;

    let runs = runs_between(&svc.db_path(), from, to).await?;
    let sum = summarize(&runs)?;
    println!(
        "occurrences due in the window {expected}, recorded {} ({:.0} fires/s)",
        sum.runs,
        sum.runs as f64 / ((to - from) as f64 / 1000.0)
    );
    print_outcomes(&sum);
    let skipped = sum.outcomes.get("skipped").copied().unwrap_or(0);
    let missed = sum.outcomes.get("missed").copied().unwrap_or(0);
    let failed = sum.runs - sum.outcomes.get("succeeded").copied().unwrap_or(0) - skipped - missed;
    println!(
        "skipped {skipped}, missed {missed}, not succeeded (failed or other) {failed}, absent {}",
        expected.saturating_sub(sum.runs)
    );
    print_lateness("lateness", &sum.lateness_ms);
    Ok(())
}

// ---------------------------------------------------------------------------------
// burst

/// `bench burst [--jobs 50000] [--lead 60]`: delay jobs all due at one instant `lead`
/// seconds after the creates begin.
pub async fn burst(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["jobs", "lead"])?;
    let jobs: usize = o.get("jobs", 50_000)?;
    let lead: i64 = o.get("lead", 60)?;
    println!("== burst: {jobs} delay jobs due in the same second");
    print_machine("at start");
    let mut svc = Service::new("info")?;
    svc.start(Duration::from_secs(60)).await?;
    let pid = svc.pid().context("pid")?;
    let at = (now_ms() / 1000 + lead) * 1000;
    let (_, took) = create_many(
        &svc,
        "/api/run?type=delay",
        jobs,
        16,
        |i| json!({ "name": format!("burst-{i}"), "execAt": at, "script": HI }),
    )
    .await?;
    let margin = at - now_ms();
    println!(
        "created and started {jobs} jobs in {:.2} s ({:.0}/s); the instant is {:.1} s away",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64(),
        margin as f64 / 1000.0
    );
    if margin < 1000 {
        bail!("the creates took too long for --lead {lead}: pass a larger --lead");
    }
    tokio::time::sleep(Duration::from_millis((margin - 500) as u64)).await;
    let c0 = cpu_of(pid);
    let t0 = Instant::now();
    let load0 = loadavg();
    // Done when nothing is scheduled, in flight or queued.
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if now_ms() < at + 1000 {
            continue;
        }
        let h = svc.get_json("/healthz").await?;
        let st = svc.get_json("/api/stats").await?;
        let d = &st["data"];
        if h["data"]["jobsScheduled"].as_u64() == Some(0)
            && d["runsInFlight"].as_u64() == Some(0)
            && d["runsQueued"].as_u64() == Some(0)
        {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("the burst did not finish within 10 minutes");
        }
    }
    let c1 = cpu_of(pid);
    let wall = t0.elapsed();
    println!("load average before {load0}, after {}", loadavg());
    print_cpu(
        "CPU from 0.5 s before the instant until all runs ended",
        c0,
        c1,
        wall,
    );
    svc.terminate()?;

    let runs = runs_between(&svc.db_path(), at, at + 1).await?;
    let sum = summarize(&runs)?;
    println!("runs recorded for the instant: {} of {jobs}", sum.runs);
    print_outcomes(&sum);
    if let (Some(first), Some(last)) = (sum.first_start_ms, sum.last_start_ms) {
        println!(
            "first start {} ms after the instant, last start {} ms after ({:.0} starts/s between them)",
            first - at,
            last - at,
            sum.runs as f64 / ((last - first).max(1) as f64 / 1000.0)
        );
    }
    print_lateness("lateness", &sum.lateness_ms);
    Ok(())
}

// ---------------------------------------------------------------------------------
// million

/// `bench million [--jobs 1000000] [--script-bytes 1024] [--starts 2]`.
pub async fn million(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["jobs", "script-bytes", "starts"])?;
    let jobs: usize = o.get("jobs", 1_000_000)?;
    let script_bytes: usize = o.get("script-bytes", 1024)?;
    let starts: usize = o.get("starts", 2)?;
    println!("== million: {jobs} enabled timing jobs with {script_bytes}-byte scripts");
    print_machine("at start");
    let mut svc = Service::new("info")?;

    // Daily crons at an hour 12 h away, spread over 3,600 instants: nothing fires
    // during the measurement, and the wheel holds many distinct instants.
    let hour = (now_ms() / 3_600_000 + 12) % 24;
    let t0 = Instant::now();
    populate(&svc.db_path(), jobs, script_bytes, hour).await?;
    let db_bytes: u64 = std::fs::read_dir(&svc.data_dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "pre-populated with SqliteStore in {:.1} s ({:.0} jobs/s); data directory {:.0} MiB",
        t0.elapsed().as_secs_f64(),
        jobs as f64 / t0.elapsed().as_secs_f64(),
        db_bytes as f64 / 1048576.0
    );

    for round in 1..=starts {
        // Start with a cold page cache? Not possible without root on the host's behalf;
        // the file was just written (or read), so these are warm starts.
        let load0 = loadavg();
        let ready = svc.start(Duration::from_secs(600)).await?;
        let pid = svc.pid().context("pid")?;
        let h = svc.get_json("/healthz").await?;
        let scheduled = h["data"]["jobsScheduled"].as_u64().unwrap_or(0);
        let logged = svc
            .log_lines("stored jobs scheduled")
            .last()
            .cloned()
            .unwrap_or_default();
        let (rss0, _) = rss_hwm(pid).unwrap_or_default();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (rss, hwm) = rss_hwm(pid).unwrap_or_default();
        let workers: u64 = children_of(pid)
            .iter()
            .filter_map(|(c, _)| rss_hwm(*c).map(|r| r.0))
            .sum();
        println!("start {round}: load average before {load0}");
        println!(
            "  spawn → /healthz 200: {:.2} s; jobsScheduled {scheduled}",
            ready.as_secs_f64()
        );
        println!("  log: {}", logged.trim());
        println!(
            "  traitor VmRSS at ready {:.0} MiB, 5 s later {:.0} MiB (RssAnon {:.0} MiB, RssFile {:.0} MiB: \
             SQLite's mmap of the database), VmHWM (peak) {:.0} MiB; workers' RSS {:.0} MiB",
            rss0 as f64 / 1024.0,
            rss as f64 / 1024.0,
            mib(status_kib(pid, "RssAnon")),
            mib(status_kib(pid, "RssFile")),
            hwm as f64 / 1024.0,
            workers as f64 / 1024.0
        );
        svc.terminate()?;
    }
    Ok(())
}

async fn populate(db: &Path, n: usize, script_bytes: usize, hour: i64) -> anyhow::Result<()> {
    let store = SqliteStore::open(db)?;
    let mut script = String::from("// bench job\nconsole.log('hello from a stored job');\n");
    while script.len() < script_bytes {
        script.push_str("// padding padding padding padding padding padding padding\n");
    }
    script.truncate(script_bytes);
    let now = now_ms();
    let job = |i: usize| Job {
        id: format!("m{i:07}"),
        name: format!("million-{i}"),
        description: String::new(),
        exec_type: ExecType::Timing,
        cron: format!("{} {} {hour} * * *", i % 60, (i / 60) % 60),
        exec_at_ms: None,
        timezone: "UTC".into(),
        enabled: true,
        time_limit_ms: 30_000,
        memory_limit_mb: 64,
        overlap: OverlapPolicy::Skip,
        misfire: MisfirePolicy::RunOnce,
        misfire_window_s: 60,
        max_concurrent: 1,
        max_catch_up: 10,
        retry: Default::default(),
        jitter_s: 0,
        paused_until_ms: None,
        script_version: 1,
        script_note: String::new(),
        secrets: Vec::new(),
        version: 1,
        created_at_ms: now,
        updated_at_ms: now,
        last: LastRun::default(),
    };
    let store = &store;
    let script = &script;
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            store
                .create_job(&job(i), script)
                .await
                .map_err(anyhow::Error::from)
        })
        .buffer_unordered(2048)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    store.close().await;
    Ok(())
}

// ---------------------------------------------------------------------------------
// creates (and reads) with wrk

/// A ~200-byte script, as a JSON string literal.
fn create_script_json() -> String {
    let script = "// created by wrk\nconst r = { n: 1, at: Date.now() };\n\
                  for (let i = 0; i < 3; i++) { r.n += i; }\n\
                  console.log('bench', JSON.stringify(r));\n\
                  if (r.n > 100) { throw new Error('unexpected'); }\n";
    serde_json::to_string(script).unwrap_or_else(|_| "\"\"".into())
}

fn create_lua(ids_out: &Path) -> String {
    format!(
        r#"-- POST /api/job?type=timing with unique names; counts 200s; writes acknowledged ids.
tid = 0
ok = 0
other = 0
counter = 0
ids = {{}}
local threads = {{}}
local nthreads = 0
local script = [==[{script}]==]

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local body = '{{"name":"wrk-' .. tid .. '-' .. counter .. '","cron":"@hourly","script":' .. script .. '}}'
  return wrk.format("POST", "/api/job?type=timing", {{["Content-Type"] = "application/json"}}, body)
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    ids[ok] = string.match(body, '"id":"([^"]+)"')
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local f = assert(io.open([==[{out}]==], "w"))
  local total_ok, total_other = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_other = total_other + t:get("other")
    local tids = t:get("ids")
    for i = 1, t:get("ok") do
      f:write(tids[i] or "?", "\n")
    end
  end
  f:close()
  io.write(string.format("ACKED %d\nNON200 %d\n", total_ok, total_other))
end
"#,
        script = create_script_json(),
        out = ids_out.display()
    )
}

fn read_lua(ids_in: &Path) -> String {
    format!(
        r#"-- GET /api/job?id= over a list of ids; counts non-200s.
ids = {{}}
bad = 0
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines([==[{ids}]==]) do ids[#ids + 1] = line end
end

function request()
  return wrk.format("GET", "/api/job?id=" .. ids[math.random(#ids)])
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("NON200 %d\n", total))
end
"#,
        ids = ids_in.display()
    )
}

struct WrkResult {
    stdout: String,
    requests_per_s: f64,
    wrk_cpu_s: f64,
}

fn children_cpu_s() -> f64 {
    // SAFETY: getrusage with a valid `who` and a pointer to a zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn run_wrk(url: &str, lua: &Path, seconds: u64) -> anyhow::Result<WrkResult> {
    let before = children_cpu_s();
    let out = Command::new("wrk")
        .args(["-t2", "-c8", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(lua)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("run wrk (apt-get install -y wrk)")?;
    let wrk_cpu_s = children_cpu_s() - before;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let requests_per_s = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    Ok(WrkResult {
        stdout,
        requests_per_s,
        wrk_cpu_s,
    })
}

fn wrk_count(stdout: &str, key: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `bench creates [--seconds 20] [--read-seconds 15] [--read-ids 5000] [--log info]`.
pub async fn creates(args: &[String]) -> anyhow::Result<()> {
    let o = Opts::parse(args, &["seconds", "read-seconds", "read-ids", "log"])?;
    let seconds: u64 = o.get("seconds", 20)?;
    let read_seconds: u64 = o.get("read-seconds", 15)?;
    let read_ids: usize = o.get("read-ids", 5000)?;
    let log: String = o.get("log", "info".to_owned())?;
    println!(
        "== creates: wrk -t2 -c8 -d{seconds}s POST /api/job?type=timing, then kill -9 (RUST_LOG={log})"
    );
    print_machine("at start");
    let mut svc = Service::new(&log)?;
    svc.start(Duration::from_secs(60)).await?;
    let pid = svc.pid().context("pid")?;
    let work = tempfile::tempdir()?;
    let ids_path = work.path().join("acked.txt");
    let lua = work.path().join("create.lua");
    std::fs::write(&lua, create_lua(&ids_path))?;

    let c0 = cpu_of(pid);
    let t0 = Instant::now();
    let load0 = loadavg();
    let url = svc.url("/");
    let w = tokio::task::spawn_blocking({
        let lua = lua.clone();
        move || run_wrk(&url, &lua, seconds)
    })
    .await??;
    // Kill at once: anything acknowledged must already be durable.
    let c1 = cpu_of(pid);
    let wall = t0.elapsed();
    svc.kill9();
    let acked = wrk_count(&w.stdout, "ACKED");
    let non200 = wrk_count(&w.stdout, "NON200");
    println!("{}", indent(&w.stdout));
    println!("load average before {load0}, after {}", loadavg());
    println!(
        "creates: {acked} acknowledged (200) in {seconds} s = {:.0} creates/s (wrk: {:.0} requests/s), {non200} other answers",
        acked as f64 / seconds as f64,
        w.requests_per_s
    );
    print_cpu("CPU during wrk", c0, c1, wall);
    println!(
        "wrk itself used {:.0}% of one CPU",
        100.0 * w.wrk_cpu_s / wall.as_secs_f64()
    );

    // Restart on the same data and count.
    let ready = svc.start(Duration::from_secs(120)).await?;
    let st = svc.get_json("/api/stats").await?;
    let total = st["data"]["jobsTotal"].as_u64().unwrap_or(0);
    println!(
        "after kill -9 and restart ({:.2} s to ready): {total} jobs stored, {acked} acknowledged",
        ready.as_secs_f64()
    );

    // Reads over a sample of the acknowledged ids.
    let acked_ids: Vec<String> = std::fs::read_to_string(&ids_path)?
        .lines()
        .map(str::to_owned)
        .collect();
    let sample = work.path().join("read-ids.txt");
    {
        let mut f = std::fs::File::create(&sample)?;
        let step = (acked_ids.len() / read_ids.max(1)).max(1);
        for id in acked_ids.iter().step_by(step).take(read_ids) {
            writeln!(f, "{id}")?;
        }
    }
    let rlua = work.path().join("read.lua");
    std::fs::write(&rlua, read_lua(&sample))?;
    let pid = svc.pid().context("pid")?;
    let c0 = cpu_of(pid);
    let t0 = Instant::now();
    let url = svc.url("/");
    let r = tokio::task::spawn_blocking(move || run_wrk(&url, &rlua, read_seconds)).await??;
    let c1 = cpu_of(pid);
    println!("{}", indent(&r.stdout));
    println!(
        "reads: GET /api/job?id= over {} ids of a {total}-job store: {:.0} requests/s, {} non-200",
        read_ids.min(acked_ids.len()),
        r.requests_per_s,
        wrk_count(&r.stdout, "NON200")
    );
    print_cpu("CPU during reads", c0, c1, t0.elapsed());
    svc.terminate()?;

    // Every acknowledged id must be in the store.
    let store = SqliteStore::open(&svc.db_path())?;
    let (stored, _) = store
        .list_jobs(&JobListQuery {
            limit: None,
            ..JobListQuery::default()
        })
        .await?;
    store.close().await;
    let stored: HashSet<String> = stored.into_iter().map(|j| j.id).collect();
    let missing = acked_ids.iter().filter(|id| !stored.contains(*id)).count();
    println!(
        "durability: {} acknowledged ids checked, {missing} missing after kill -9; {} stored beyond the acknowledged (in flight when wrk stopped)",
        acked_ids.len(),
        stored.len().saturating_sub(acked_ids.len() - missing)
    );
    Ok(())
}
