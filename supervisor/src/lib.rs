//! The traitor service, everything but HTTP: configuration, the job model and cron, the
//! timing wheel, storage, the worker pool, dispatch and run history.
//!
//! The supervisor never runs user JavaScript itself: every script goes to a worker
//! process through [`pool`]. It never speaks HTTP to clients either: `web` does, over
//! the [`web::Backend`]-style seam this crate implements.

pub mod config;
pub mod exec;
pub mod hostcall;
pub mod pool;
pub mod job;
pub mod store;
pub mod cron;
pub mod scheduler;
