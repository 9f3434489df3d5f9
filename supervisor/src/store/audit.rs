//! The audit log's rows as every store keeps them, and how they are listed.
//!
//! A store keeps entries as they are given (the service decides what an entry says) and
//! lists them newest first by `(at_ms, id)`; that pair is also the keyset cursor of the
//! pages, so a page never repeats or skips an entry, even among entries of one
//! millisecond.

/// One change made through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unique; made by the node that records the entry (a UUID v7).
    pub id: String,
    /// When the change was made (Unix ms, the recording node's clock).
    pub at_ms: i64,
    /// Who made it: the API token's name, or `local`.
    pub actor: String,
    /// The node that made it.
    pub node: String,
    /// What was done, `<kind>.<verb>`: `job.update`, `secret.put`, …
    pub action: String,
    /// What it was done to: a job id, a secret's or a module's name.
    pub target: String,
    /// A small JSON object describing the change. Never a script or a secret's value.
    pub detail_json: String,
}

/// Which entries [`Store::list_audit`](super::Store::list_audit) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditListQuery {
    /// Only entries about this target.
    pub target: Option<String>,
    /// Only entries made by this actor.
    pub actor: Option<String>,
    /// Only entries whose action starts with this text (`job.` for every job action).
    pub action_prefix: Option<String>,
    /// Only entries strictly before this `(at_ms, id)` in the list's order; an instant
    /// alone is `(ms, "")`, which every entry of that millisecond follows.
    pub before: Option<(i64, String)>,
    pub limit: u64,
}
