//! What `GET /metrics` and `GET /readyz` report, gathered from the parts that keep the
//! numbers: run statistics, the pool, the scheduler, the store, the cluster and
//! [`Metrics`].
//!
//! Reading only: nothing here changes a part, and a scrape costs no store call
//! (readiness costs one cheap read, with a deadline). HTTP status codes are `web`'s.

use std::sync::Arc;
use std::time::Duration;

use web::{Readiness, ReadinessCheck};

use crate::cluster::Cluster;
use crate::metrics::{Exposition, Metrics};
use crate::pool::Pool;
use crate::scheduler::SchedulerHandle;
use crate::stats::RunStats;
use crate::store::Store;

/// How long the store may take to answer the readiness probe.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A borrowed view of the service's parts.
pub struct Ops<'a> {
    pub store: &'a Arc<dyn Store>,
    pub scheduler: &'a SchedulerHandle,
    pub pool: &'a Pool,
    pub stats: &'a RunStats,
    pub cluster: Option<&'a Cluster>,
    pub metrics: &'a Metrics,
    /// `std` or `multi`.
    pub mode: &'a str,
    pub node: &'a str,
}

fn check(name: &str, ready: bool, detail: Option<String>) -> ReadinessCheck {
    ReadinessCheck {
        name: name.to_owned(),
        ready,
        detail,
    }
}

impl Ops<'_> {
    pub async fn readiness(&self) -> Readiness {
        let mut checks = Vec::with_capacity(4);
        let probe = tokio::time::timeout(
            STORE_PROBE_TIMEOUT,
            self.store.get_job("traitor-readiness-probe"),
        )
        .await;
        checks.push(match probe {
            Ok(Ok(_)) => check("store", true, None),
            Ok(Err(e)) => check("store", false, Some(format!("{e:#}"))),
            Err(_) => check(
                "store",
                false,
                Some(format!(
                    "no answer within {} s",
                    STORE_PROBE_TIMEOUT.as_secs()
                )),
            ),
        });
        let alive = self.scheduler.is_alive();
        checks.push(check(
            "scheduler",
            alive,
            (!alive).then(|| "the scheduler has stopped".to_owned()),
        ));
        let pool = self.pool.stats();
        checks.push(check(
            "workers",
            pool.workers_alive > 0,
            Some(format!(
                "{} of {} worker processes alive",
                pool.workers_alive, pool.workers
            )),
        ));
        if let Some(c) = self.cluster {
            checks.push(check(
                "cluster",
                c.healthy(),
                c.problem()
                    .or_else(|| (!c.healthy()).then(|| "not in the live set".to_owned())),
            ));
        }
        Readiness::from_checks(checks)
    }

    /// The Prometheus text exposition of this node.
    pub async fn metrics_text(&self) -> String {
        let mut e = Exposition::default();
        e.family(
            "traitor_info",
            "gauge",
            "This node: version, mode and name.",
        )
        .sample(
            "traitor_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("mode", self.mode),
                ("node", self.node),
            ],
            1.0,
        );
        self.runs(&mut e);
        self.pool_and_schedule(&mut e);
        self.store_and_egress(&mut e);
        if let Some(c) = self.cluster {
            self.membership(&mut e, c).await;
        }
        e.finish()
    }

    fn runs(&self, e: &mut Exposition) {
        let t = self.stats.totals();
        let r = &t.runs;
        e.family(
            "traitor_runs_total",
            "counter",
            "Occurrences handled by this node since it started, by outcome.",
        );
        for (outcome, n) in [
            ("succeeded", r.succeeded),
            ("failed", r.failed),
            ("timed_out", r.timed_out),
            ("out_of_memory", r.out_of_memory),
            ("output_limit", r.output_limit),
            ("crashed", r.crashed),
            ("cancelled", r.cancelled),
            ("skipped", r.skipped),
            ("missed", r.missed),
        ] {
            e.sample("traitor_runs_total", &[("outcome", outcome)], n as f64);
        }
        e.family(
            "traitor_fire_lateness_seconds",
            "histogram",
            "How long after its scheduled instant a run started.",
        )
        .histogram("traitor_fire_lateness_seconds", &[], &t.lateness);
    }

    fn pool_and_schedule(&self, e: &mut Exposition) {
        let p = self.pool.stats();
        let gauges = [
            (
                "traitor_runs_queued",
                "Runs waiting for a worker (queue depth).",
                p.runs_queued as f64,
            ),
            (
                "traitor_runs_in_flight",
                "Runs sent to a worker and not yet ended.",
                p.runs_in_flight as f64,
            ),
            (
                "traitor_workers_configured",
                "Worker processes the pool keeps.",
                p.workers as f64,
            ),
            (
                "traitor_workers_alive",
                "Worker processes alive and ready.",
                p.workers_alive as f64,
            ),
            (
                "traitor_workers_busy",
                "Live worker processes holding at least one run.",
                p.workers_busy as f64,
            ),
            (
                "traitor_jobs_scheduled",
                "Jobs in this node's timing wheel.",
                self.scheduler.scheduled() as f64,
            ),
        ];
        for (name, help, v) in gauges {
            e.family(name, "gauge", help).sample(name, &[], v);
        }
        e.family(
            "traitor_worker_restarts_total",
            "counter",
            "Worker processes started again after one died.",
        )
        .sample(
            "traitor_worker_restarts_total",
            &[],
            p.restarts_total as f64,
        );
    }

    fn store_and_egress(&self, e: &mut Exposition) {
        e.family(
            "traitor_store_call_duration_seconds",
            "histogram",
            "Duration of store calls (job writes, run history writes, reads), by call.",
        );
        for (op, h) in self.metrics.store.snapshot() {
            e.histogram("traitor_store_call_duration_seconds", &[("op", op)], &h);
        }
        let (allowed, denied) = self.metrics.egress.totals();
        e.family(
            "traitor_egress_requests_total",
            "counter",
            "HTTP requests of scripts, by egress policy decision.",
        )
        .sample(
            "traitor_egress_requests_total",
            &[("decision", "allowed")],
            allowed as f64,
        )
        .sample(
            "traitor_egress_requests_total",
            &[("decision", "denied")],
            denied as f64,
        );
        e.family(
            "traitor_egress_job_requests_total",
            "counter",
            "HTTP requests of scripts per job, by egress policy decision.",
        );
        for (job, n) in self.metrics.egress.per_job() {
            for (decision, v) in [("allowed", n.allowed), ("denied", n.denied)] {
                e.sample(
                    "traitor_egress_job_requests_total",
                    &[("job_id", &job), ("decision", decision)],
                    v as f64,
                );
            }
        }
    }

    async fn membership(&self, e: &mut Exposition, c: &Cluster) {
        let ring = c.ring();
        let owned = self
            .scheduler
            .versions()
            .await
            .iter()
            .filter(|(id, _)| ring.owner(id) == Some(c.node()))
            .count();
        let gauges = [
            (
                "traitor_cluster_healthy",
                "1 while this node is in the cluster's live set and reaches Redis.",
                if c.healthy() { 1.0 } else { 0.0 },
            ),
            (
                "traitor_cluster_nodes",
                "Live nodes of the cluster, as this node sees them.",
                c.members().len() as f64,
            ),
            (
                "traitor_cluster_jobs_owned",
                "Scheduled jobs this node owns on the ring.",
                owned as f64,
            ),
        ];
        for (name, help, v) in gauges {
            e.family(name, "gauge", help).sample(name, &[], v);
        }
    }
}
