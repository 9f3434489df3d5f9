//! Scheduling control beyond create/update: script versions and rollback, the plan of
//! a job, pause and resume, backfill, and the occurrence ledger.
//!
//! Like the rest of the service, every change here is validated first, stored second
//! and scheduled third, under the job's lock.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use web::dto::*;
use web::{Actor, ServiceError, ServiceResult};

use super::{Service, job_since, misfire_rule_of, ms_to_dt, plan_of, run_view, store_err};
use crate::job::{ScriptVersion, Trigger, occurrence_id};
use crate::scheduler::{Pending, catch_up, now_ms};
use crate::store::RunListQuery;

/// Most occurrences a plan lists or a backfill runs.
pub const MAX_WINDOW_OCCURRENCES: usize = 1_000;
/// Attempts an occurrence can have (the first and at most 20 retries).
const MAX_ATTEMPTS: u64 = 21;
const DAY_MS: i64 = 24 * 3_600_000;

fn version_view(v: ScriptVersion, current: u64) -> ScriptVersionView {
    ScriptVersionView {
        version: v.version,
        note: v.note,
        created_at: ms_to_dt(v.created_at_ms),
        bytes: v.bytes,
        current: v.version == current,
        script: v.source,
    }
}

fn invalid_plan(e: (&'static str, String)) -> ServiceError {
    ServiceError::invalid(e.0, e.1)
}

impl Service {
    pub(super) async fn versions_of(&self, id: &str) -> ServiceResult<Vec<ScriptVersionView>> {
        let job = self.load(id).await?;
        let versions = self
            .store
            .list_script_versions(id)
            .await
            .map_err(store_err)?;
        Ok(versions
            .into_iter()
            .map(|v| version_view(v, job.script_version))
            .collect())
    }

    pub(super) async fn version_of(
        &self,
        id: &str,
        version: u64,
    ) -> ServiceResult<ScriptVersionView> {
        let job = self.load(id).await?;
        let v = self
            .store
            .get_script_version(id, version)
            .await
            .map_err(store_err)?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("job {id:?} has no script version {version}"))
            })?;
        Ok(version_view(v, job.script_version))
    }

    pub(super) async fn rollback(
        &self,
        actor: &Actor,
        id: &str,
        version: u64,
        note: Option<String>,
    ) -> ServiceResult<u64> {
        let note = note.unwrap_or_else(|| format!("rollback to version {version}"));
        super::policy::check_note(&note)?;
        let source = self
            .version_of(id, version)
            .await?
            .script
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("version without source")))?;
        let _guard = self.lock_for(id).lock().await;
        let old = self.load(id).await?;
        let mut job = old.clone();
        job.script_version = old.script_version + 1;
        job.script_note = note;
        job.version += 1;
        job.updated_at_ms = now_ms();
        let mut detail = super::audit::job_changes(&old, &job, Some(&source));
        detail["restored"] = serde_json::json!(version);
        let entry = self.audit_entry(actor, "job.rollback", id, detail);
        self.save(&job, Some(&source), old.version, entry).await?;
        tracing::info!(job = %id, from = version, to = job.script_version, "script rolled back");
        Ok(job.script_version)
    }

    pub(super) async fn plan_window(
        &self,
        id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> ServiceResult<PlanView> {
        let job = self.load(id).await?;
        let now = now_ms();
        let from_ms = from.map_or(now, |d| d.timestamp_millis());
        let to_ms = to.map_or(from_ms.saturating_add(DAY_MS), |d| d.timestamp_millis());
        if to_ms < from_ms {
            return Err(ServiceError::invalid("to", "to must not be before from"));
        }
        let plan = plan_of(&job).map_err(invalid_plan)?;
        let (fires, truncated) = plan.between(from_ms, to_ms, MAX_WINDOW_OCCURRENCES);
        let paused_until = job.paused_until_ms.filter(|p| *p > now);
        let paused_fires = paused_until.map_or(0, |p| fires.iter().filter(|t| **t < p).count());
        let rule = misfire_rule_of(&job);
        let since = job_since(&job);
        // A stopped job is not scheduled at start-up, so it catches nothing up.
        let c = if job.enabled {
            catch_up(&plan, since, now, &rule)
        } else {
            Default::default()
        };
        Ok(PlanView {
            job_id: job.id.clone(),
            state: if job.enabled {
                JobState::Running
            } else {
                JobState::Stopped
            },
            from: ms_to_dt(from_ms),
            to: ms_to_dt(to_ms),
            fires: fires.into_iter().map(ms_to_dt).collect(),
            paused_fires,
            truncated,
            paused_until: paused_until.map(ms_to_dt),
            catch_up: CatchUpView {
                since: ms_to_dt(since),
                policy: job.misfire.as_str().to_owned(),
                window_s: job.misfire_window_s,
                missed: c.missed.into_iter().map(ms_to_dt).collect(),
                more_missed: c.more_missed,
                run: c.run.into_iter().map(ms_to_dt).collect(),
            },
        })
    }

    /// Sets or clears the job's pause.
    pub(super) async fn set_pause(
        &self,
        actor: &Actor,
        id: &str,
        until_ms: Option<i64>,
    ) -> ServiceResult<()> {
        if let Some(until) = until_ms
            && until <= now_ms()
        {
            return Err(ServiceError::invalid(
                "until",
                "until must be in the future (to end a pause, POST /api/job/resume)",
            ));
        }
        let _guard = self.lock_for(id).lock().await;
        let old = self.load(id).await?;
        if old.paused_until_ms == until_ms {
            return Ok(());
        }
        let mut job = old.clone();
        job.paused_until_ms = until_ms;
        job.version += 1;
        job.updated_at_ms = now_ms();
        let action = if until_ms.is_some() {
            "job.pause"
        } else {
            "job.resume"
        };
        let detail = super::audit::job_changes(&old, &job, None);
        let entry = self.audit_entry(actor, action, id, detail);
        self.save(&job, None, old.version, entry).await?;
        tracing::info!(job = %id, until_ms, "pause changed");
        Ok(())
    }

    pub(super) async fn backfill_range(
        &self,
        actor: &Actor,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ServiceResult<BackfillView> {
        let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
        if to_ms < from_ms {
            return Err(ServiceError::invalid("to", "to must not be before from"));
        }
        if to_ms > now_ms() {
            return Err(ServiceError::invalid(
                "to",
                "to must not be in the future: a backfill runs past occurrences",
            ));
        }
        let job = self.load(id).await?;
        let plan = plan_of(&job).map_err(invalid_plan)?;
        let (instants, truncated) = plan.between(from_ms, to_ms, MAX_WINDOW_OCCURRENCES);
        let done = self.ran_between(id, from_ms, to_ms).await?;
        let (suppressed, queued): (Vec<i64>, Vec<i64>) =
            instants.into_iter().partition(|t| done.contains(t));
        for t in &suppressed {
            if let Err(e) = self.store.note_duplicate(id, *t).await {
                tracing::warn!(job = %id, error = %e, "could not count a suppressed duplicate");
            }
        }
        let meta = std::sync::Arc::new(super::meta_of(&job));
        let items: Vec<Pending> = queued
            .iter()
            .map(|t| Pending {
                meta: meta.clone(),
                scheduled_ms: *t,
                trigger: Trigger::Backfill,
            })
            .collect();
        if !items.is_empty() {
            self.scheduler
                .backfill(items)
                .await
                .map_err(|_| ServiceError::Unavailable("the scheduler has stopped".into()))?;
        }
        let detail = serde_json::json!({
            "from": from,
            "to": to,
            "queued": queued.len(),
            "suppressed": suppressed.len(),
        });
        self.record(actor, "job.backfill", id, detail).await;
        tracing::info!(job = %id, queued = queued.len(), suppressed = suppressed.len(), "backfill queued");
        Ok(BackfillView {
            queued: queued.into_iter().map(ms_to_dt).collect(),
            suppressed: suppressed.into_iter().map(ms_to_dt).collect(),
            truncated,
        })
    }

    /// Instants in `[from, to]` whose occurrence the ledger says ran.
    async fn ran_between(&self, id: &str, from_ms: i64, to_ms: i64) -> ServiceResult<HashSet<i64>> {
        let mut done = HashSet::new();
        let mut before = to_ms.saturating_add(1);
        loop {
            let page = self
                .store
                .list_runs(
                    id,
                    &RunListQuery {
                        outcome: None,
                        before_ms: Some(before),
                        since_ms: Some(from_ms),
                        limit: 1_000,
                    },
                )
                .await
                .map_err(store_err)?;
            let full = page.len() == 1_000;
            let Some(last) = page.last().map(|r| r.scheduled_at_ms) else {
                break;
            };
            done.extend(
                page.iter()
                    .filter(|r| r.ran_its_occurrence())
                    .map(|r| r.scheduled_at_ms),
            );
            // The cursor is an instant: the next page starts again at `last`, so an
            // instant whose attempts straddle the end of a page is read whole. A page
            // of one instant alone would make no progress (an occurrence has at most
            // 21 attempts, so it cannot fill one).
            if !full
                || page.iter().all(|r| r.scheduled_at_ms == last)
                || done.len() > 2 * MAX_WINDOW_OCCURRENCES
            {
                break;
            }
            before = last + 1;
        }
        Ok(done)
    }

    pub(super) async fn ledger(
        &self,
        id: &str,
        before: Option<DateTime<Utc>>,
        limit: u64,
    ) -> ServiceResult<OccurrencePage> {
        self.load(id).await?;
        let fetch = (limit * MAX_ATTEMPTS).min(10_500);
        let runs = self
            .store
            .list_runs(
                id,
                &RunListQuery {
                    outcome: None,
                    before_ms: before.map(|d| d.timestamp_millis()),
                    since_ms: None,
                    limit: fetch,
                },
            )
            .await
            .map_err(store_err)?;
        let full = runs.len() as u64 == fetch;
        let mut items: Vec<OccurrenceView> = Vec::new();
        for r in &runs {
            let key = occurrence_id(&r.job_id, r.scheduled_at_ms, r.trigger);
            let view = run_view(r);
            match items.iter_mut().rev().find(|o| o.occurrence_id == key) {
                Some(o) => {
                    o.duplicates += r.duplicates;
                    o.attempts.push(view);
                }
                None => items.push(OccurrenceView {
                    occurrence_id: key,
                    scheduled_at: ms_to_dt(r.scheduled_at_ms),
                    trigger: r.trigger,
                    outcome: String::new(),
                    duplicates: r.duplicates,
                    attempts: vec![view],
                }),
            }
        }
        // The last occurrence of a full fetch may be missing attempts: leave it for the
        // next page (unless it is the only one).
        if full && items.len() > 1 {
            let cut = items.last().map(|o| o.scheduled_at);
            items.retain(|o| Some(o.scheduled_at) != cut);
        }
        items.truncate(limit as usize);
        for o in &mut items {
            o.attempts.sort_by_key(|a| std::cmp::Reverse(a.attempt));
            // The latest attempt speaks for the occurrence; for a backfilled miss that
            // is the run, not the miss it replaced.
            o.outcome = o
                .attempts
                .first()
                .map(|a| a.outcome.clone())
                .unwrap_or_default();
            if let Some(t) = o
                .attempts
                .iter()
                .find(|a| a.attempt == 1)
                .map(|a| a.trigger)
            {
                o.trigger = t;
            }
        }
        let next_before = if full || items.len() as u64 == limit {
            items.last().map(|o| o.scheduled_at)
        } else {
            None
        };
        Ok(OccurrencePage { items, next_before })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::outcome;
    use crate::store::conformance::sample_run;

    #[test]
    fn misses_skips_and_manual_runs_do_not_count_as_having_run() {
        let mut r = sample_run("r", "j", 1_000);
        assert!(r.ran_its_occurrence());
        for o in [outcome::MISSED, outcome::SKIPPED] {
            r.outcome = o.to_owned();
            assert!(!r.ran_its_occurrence());
        }
        r.outcome = "failed".into();
        assert!(r.ran_its_occurrence());
        r.trigger = Trigger::Manual;
        assert!(!r.ran_its_occurrence());
    }
}
