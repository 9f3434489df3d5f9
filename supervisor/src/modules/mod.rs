//! Shared modules: JavaScript libraries stored in the job store (so every node of a
//! cluster has them), versioned like scripts, which scripts load by name.
//!
//! Before each run the [`Resolver`] finds the specifiers the script names
//! ([`deps::specifiers`]), then those of the modules it finds, and sends the whole set
//! with the run ([`protocol::SharedModule`]). Each run asks the store for the current
//! version numbers (one small read), so a module saved on any node is what the next
//! run of every job on every node gets; sources are immutable per version and cached.
//!
//! Must not: evaluate JavaScript (the worker does), or fail a run because a module it
//! names does not exist (the script may `try { require(…) }`; the worker throws
//! `MODULE_NOT_FOUND` where it is used).

pub mod deps;
pub mod names;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Context as _;
use parking_lot::Mutex;
use protocol::SharedModule;

use crate::store::Store;
use names::{Specifier, parse_specifier};

/// Most modules one run may load (its script's and theirs, transitively).
pub const MAX_MODULES_PER_RUN: usize = 64;
/// Most bytes of module sources one run may load.
pub const MAX_MODULE_BYTES_PER_RUN: usize = 8 * 1024 * 1024;
/// Sources kept in memory, all modules together; past it the cache starts over.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The script's modules are over [`MAX_MODULES_PER_RUN`] or [`MAX_MODULE_BYTES_PER_RUN`]:
/// the script's fault, unlike a store failure, which [`Resolver::for_script`] also
/// reports (callers tell them apart by downcasting).
#[derive(Debug, thiserror::Error)]
#[error(
    "the script loads more than {MAX_MODULES_PER_RUN} shared modules or more than {} MiB of them",
    MAX_MODULE_BYTES_PER_RUN / (1024 * 1024)
)]
pub struct TooManyModules;

/// Immutable sources by `(name, version)`, and their total size.
#[derive(Default)]
struct SourceCache {
    sources: HashMap<(String, u64), Arc<str>>,
    bytes: usize,
}

/// Finds and loads the shared modules of a run.
pub struct Resolver {
    store: Arc<dyn Store>,
    cache: Mutex<SourceCache>,
}

impl Resolver {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Mutex::new(SourceCache::default()),
        }
    }

    /// The shared modules `script` may load: what it names and, transitively, what
    /// they name. Names without a module are left out. Errs when the store fails or
    /// the set is over [`MAX_MODULES_PER_RUN`] or [`MAX_MODULE_BYTES_PER_RUN`].
    pub async fn for_script(&self, script: &str) -> anyhow::Result<Vec<SharedModule>> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut frontier = wanted(script, &mut seen);
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        while !frontier.is_empty() {
            let current: Vec<String> = frontier
                .iter()
                .filter(|(_, s)| s.pinned.is_none())
                .map(|(_, s)| s.name.clone())
                .collect();
            let heads: HashMap<String, u64> = if current.is_empty() {
                HashMap::new()
            } else {
                self.store
                    .module_heads(&current)
                    .await
                    .context("read the modules' current versions")?
                    .into_iter()
                    .collect()
            };
            let mut next = Vec::new();
            for (spec, s) in frontier {
                let Some(version) = s.pinned.or_else(|| heads.get(&s.name).copied()) else {
                    continue;
                };
                let Some(source) = self.source(&s.name, version).await? else {
                    continue;
                };
                bytes += source.len();
                if out.len() >= MAX_MODULES_PER_RUN || bytes > MAX_MODULE_BYTES_PER_RUN {
                    return Err(TooManyModules.into());
                }
                next.extend(wanted(&source, &mut seen));
                out.push(SharedModule {
                    specifier: spec,
                    version,
                    source: source.to_string(),
                });
            }
            frontier = next;
        }
        Ok(out)
    }

    /// One version's source, from the cache or the store.
    async fn source(&self, name: &str, version: u64) -> anyhow::Result<Option<Arc<str>>> {
        let key = (name.to_owned(), version);
        if let Some(s) = self.cache.lock().sources.get(&key) {
            return Ok(Some(s.clone()));
        }
        let Some(v) = self
            .store
            .get_module_version(name, version)
            .await
            .with_context(|| format!("read module {name} version {version}"))?
        else {
            return Ok(None);
        };
        let source: Arc<str> = v.source.unwrap_or_default().into();
        let mut cache = self.cache.lock();
        if cache.bytes + source.len() > CACHE_BYTES {
            *cache = SourceCache::default();
        }
        cache.bytes += source.len();
        cache.sources.insert(key, source.clone());
        Ok(Some(source))
    }
}

/// The specifiers of `source` not seen before, parsed; marks them seen.
fn wanted(source: &str, seen: &mut BTreeSet<String>) -> Vec<(String, Specifier)> {
    deps::specifiers(source)
        .into_iter()
        .filter_map(|spec| {
            let parsed = parse_specifier(&spec)?;
            seen.insert(spec.clone()).then_some((spec, parsed))
        })
        .collect()
}
