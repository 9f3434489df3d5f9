//! The traitor service, everything but HTTP: configuration, the job model and cron, the
//! timing wheel, storage, the worker pool, dispatch and run history.
//!
//! The supervisor never runs user JavaScript itself: every script goes to a worker
//! process through [`pool`]. It never answers HTTP either: `web` does, calling the
//! [`web::Backend`] that [`service::Service`] implements.

pub mod app;
pub mod cluster;
pub mod config;
pub mod cron;
pub mod egress;
pub mod exec;
pub mod history;
pub mod hostcall;
pub mod job;
pub mod kvhost;
pub mod metrics;
pub mod modules;
pub mod ops;
pub mod pool;
pub mod runner;
pub mod scheduler;
pub mod secrets;
pub mod service;
pub mod stats;
pub mod store;
