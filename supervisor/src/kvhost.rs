//! The per-job key-value store as host calls: `kv.get/set/delete` in a script become
//! [`protocol::HostCall::Kv`], answered here against the job store for the job that
//! owns the run ([`RunContextInfo::job_id`]). [`KvHost`] wraps the other host calls
//! (HTTP) and hands them on untouched.
//!
//! Caps (each refusal rejects the script's promise with a message naming the cap): a key
//! is 1–[`MAX_KEY_BYTES`] bytes, a value at most [`MAX_VALUE_BYTES`] of JSON, a job at
//! most [`KvCaps::max_keys`] keys and [`KvCaps::max_total_bytes`] of keys and values.
//! A draft's debug run (no job) has no kv.
//!
//! Must not: let a run touch another job's entries, or panic on anything a script sends.

use std::sync::Arc;

use protocol::{HostCall, HostResponse, KvCall};

use crate::hostcall::{HostCalls, HostFuture, RunContextInfo};
use crate::store::{KvCaps, KvSet, Store};

/// Longest key, bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, bytes of JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Answers kv calls from the store; everything else goes to `inner`.
pub struct KvHost<H> {
    inner: H,
    store: Arc<dyn Store>,
    caps: KvCaps,
}

impl<H: HostCalls> KvHost<H> {
    pub fn new(inner: H, store: Arc<dyn Store>) -> Self {
        KvHost {
            inner,
            store,
            caps: KvCaps::default(),
        }
    }
}

impl<H: HostCalls> HostCalls for KvHost<H> {
    fn call(&self, run: &RunContextInfo, call: HostCall) -> HostFuture {
        match call {
            HostCall::Kv(kv) => {
                let store = self.store.clone();
                let job_id = run.job_id.clone();
                let caps = self.caps;
                Box::pin(async move { answer(&*store, &job_id, kv, caps).await })
            }
            other => self.inner.call(run, other),
        }
    }
}

/// Checks a key against the caps.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".to_owned());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "the key is {} bytes, more than the {MAX_KEY_BYTES} allowed",
            key.len()
        ));
    }
    Ok(())
}

async fn answer(
    store: &dyn Store,
    job_id: &str,
    call: KvCall,
    caps: KvCaps,
) -> Result<HostResponse, String> {
    if job_id.is_empty() {
        return Err("kv is only available to saved jobs (this run has no job)".to_owned());
    }
    let fail = |e: crate::store::StoreError| match e {
        crate::store::StoreError::NotFound(_) => {
            format!("there is no saved job {job_id:?} (kv is only for saved jobs)")
        }
        e => {
            tracing::warn!(job_id, error = %e, "a kv host call failed");
            "the job store is unavailable".to_owned()
        }
    };
    match call {
        KvCall::Get { key } => {
            check_key(&key)?;
            let v = store.kv_get(job_id, &key).await.map_err(fail)?;
            Ok(HostResponse::Kv(v))
        }
        KvCall::Set { key, value_json } => {
            check_key(&key)?;
            if value_json.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "the value is {} bytes of JSON, more than the {MAX_VALUE_BYTES} allowed",
                    value_json.len()
                ));
            }
            if serde_json::from_str::<serde_json::Value>(&value_json).is_err() {
                return Err("the value is not JSON".to_owned());
            }
            match store
                .kv_set(job_id, &key, &value_json, caps)
                .await
                .map_err(fail)?
            {
                KvSet::Stored => Ok(HostResponse::Kv(None)),
                KvSet::TooManyKeys => Err(format!(
                    "the job already has {} keys, the most allowed",
                    caps.max_keys
                )),
                KvSet::TooLarge => Err(format!(
                    "the job's keys and values would exceed {} bytes",
                    caps.max_total_bytes
                )),
            }
        }
        KvCall::Delete { key } => {
            check_key(&key)?;
            let found = store.kv_delete(job_id, &key).await.map_err(fail)?;
            Ok(HostResponse::Kv(found.then(|| "true".to_owned())))
        }
    }
}
