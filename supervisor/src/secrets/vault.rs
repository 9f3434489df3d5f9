//! [`Vault`]: secrets over the store and the key. Seals values on the way in, opens
//! them only to build a run's [`SecretValues`] (and the [`Masker`] for its output).
//!
//! Must not: return a value to anything but a run's `StartRun`.

use std::sync::Arc;

use anyhow::Context;
use protocol::SecretValues;

use super::{KeySource, Masker};
use crate::store::{AuditEntry, SecretMeta, Store};

pub struct Vault {
    store: Arc<dyn Store>,
    keys: KeySource,
}

/// What a run gets: the values to ship and the masker for its output.
#[derive(Debug, Default, Clone)]
pub struct RunSecrets {
    pub values: SecretValues,
    pub masker: Masker,
}

impl Vault {
    pub fn new(store: Arc<dyn Store>, keys: KeySource) -> Self {
        Vault { store, keys }
    }

    /// Seals and stores a value (the caller has checked name and size), with the
    /// change's audit entry when given (in the same transaction).
    pub async fn put(
        &self,
        name: &str,
        value: &str,
        now_ms: i64,
        audit: Option<&AuditEntry>,
    ) -> anyhow::Result<()> {
        let key = self.keys.require(true)?;
        let sealed = key.encrypt(name, value)?;
        self.store
            .put_secret_audited(name, &sealed, now_ms, audit)
            .await
            .context("store the secret")?;
        Ok(())
    }

    pub async fn list(&self) -> anyhow::Result<Vec<SecretMeta>> {
        Ok(self.store.list_secrets().await?)
    }

    /// Whether a key is configured (or standalone's file can be made).
    pub fn has_key_source(&self) -> bool {
        self.keys.key(false).map(|k| k.is_some()).unwrap_or(false)
    }

    /// The decrypted values of `names` for a run of `job_id`. A granted secret that no
    /// longer exists or does not decrypt is an error: the run must not start without
    /// what the job was promised.
    pub async fn for_run(&self, job_id: &str, names: &[String]) -> anyhow::Result<RunSecrets> {
        if names.is_empty() {
            return Ok(RunSecrets::default());
        }
        let key = self.keys.require(false)?;
        let sealed = self
            .store
            .sealed_secrets(names)
            .await
            .context("read the job's secrets")?;
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let Some((_, s)) = sealed.iter().find(|(n, _)| n == name) else {
                anyhow::bail!("job {job_id} is granted secret {name}, which does not exist");
            };
            values.push((name.clone(), key.decrypt(name, s)?));
        }
        let masker = Masker::new(values.iter().map(|(_, v)| v.as_str()));
        Ok(RunSecrets {
            values: SecretValues(values),
            masker,
        })
    }
}
