//! The run-history writer: one task that batches run records into the store.
//!
//! Records are not acknowledged to anyone, so they can be written in batches: while one
//! batch is being committed the next accumulates, which keeps the store's write rate
//! independent of the fire rate. Within a batch, later records of the same run replace
//! earlier ones (a `running` record and its final record often travel together).
//!
//! This module never decides what a record says; it only gets records to the store,
//! retrying a failed batch a few times before dropping it loudly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::job::RunRecord;
use crate::store::Store;

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 2_000;
const RETRIES: u32 = 5;
/// How long the writer gathers records before a commit.
const GATHER: Duration = Duration::from_millis(15);

enum Msg {
    Record(Box<RunRecord>),
    Flush(oneshot::Sender<()>),
}

/// Sends records to the writer. Cheap to clone.
#[derive(Clone)]
pub struct HistoryTx(mpsc::UnboundedSender<Msg>);

impl HistoryTx {
    pub fn record(&self, rec: RunRecord) {
        if self.0.send(Msg::Record(Box::new(rec))).is_err() {
            tracing::warn!("run history writer has stopped; a record was dropped");
        }
    }

    /// Waits until every record sent before this call has been written (or given up on).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

pub fn spawn_writer(store: Arc<dyn Store>) -> (HistoryTx, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (HistoryTx(tx), tokio::spawn(write_loop(store, rx)))
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch: Vec<RunRecord> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        // Gather for a few milliseconds before committing: at hundreds of fires per
        // second this turns hundreds of small commits (each a WAL write the fire path
        // competes with for CPU) into a few large ones. A flush cuts the wait short.
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(r) => batch.push(*r),
                Msg::Flush(ack) => flushes.push(ack),
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(_) if !flushes.is_empty() => None,
                Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
        }
        write_batch(&*store, &mut batch).await;
        for ack in flushes.drain(..) {
            let _ = ack.send(());
        }
    }
}

async fn write_batch(store: &dyn Store, batch: &mut Vec<RunRecord>) {
    if batch.is_empty() {
        return;
    }
    let records = dedupe_keep_last(std::mem::take(batch));
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=RETRIES {
        match store.record_runs(&records).await {
            Ok(()) => return,
            Err(e) if attempt < RETRIES => {
                tracing::warn!(error = %e, attempt, records = records.len(), "writing run history failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "writing run history failed; records dropped");
            }
        }
    }
}

fn dedupe_keep_last(records: Vec<RunRecord>) -> Vec<RunRecord> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<RunRecord> = Vec::with_capacity(records.len());
    for r in records {
        match index.get(&r.run_id) {
            Some(&i) => out[i] = r,
            None => {
                index.insert(r.run_id.clone(), out.len());
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Trigger;

    fn rec(id: &str, outcome: &str) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            job_id: "j".into(),
            trigger: Trigger::Schedule,
            scheduled_at_ms: 0,
            started_at_ms: None,
            ended_at_ms: None,
            outcome: outcome.into(),
            attempt: 1,
            script_version: None,
            duplicates: 0,
            node: "n".into(),
            error_message: None,
            error_stack: None,
            cpu_time_us: None,
            peak_memory_bytes: None,
            log: vec![],
            log_truncated: false,
        }
    }

    #[test]
    fn later_records_of_a_run_replace_earlier_ones_in_place() {
        let out = dedupe_keep_last(vec![
            rec("a", "running"),
            rec("b", "running"),
            rec("a", "succeeded"),
        ]);
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|r| (r.run_id.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(got, [("a", "succeeded"), ("b", "running")]);
    }
}
