//! Protocol versions. Bump [`PROTOCOL_VERSION`] whenever a message changes shape; the
//! supervisor refuses a worker whose version differs from its own, with a readable
//! error, instead of misreading its frames.
//!
//! History:
//! - 1: the first version: handshake, runs, console lines, host calls (HTTP), cancel,
//!   run end, shutdown.
//! - 2: `JobContext::secrets` (a run's granted secrets), `HostCall::Kv` and
//!   `HostResponse::Kv` (the per-job key-value store).
//! - 3: `StartRun::modules` (the shared modules a run may `require` or `import`).

/// The version this build speaks.
pub const PROTOCOL_VERSION: u32 = 3;
