//! The one end-to-end test binary (one link instead of one per file). Every test here
//! starts real processes: `traitor exec`, real `traitor-worker`s, real sockets. Fakes
//! appear only where a broken worker has to be played.

// A test fails loudly on unexpected data: that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod audit;
mod cluster;
mod exec;
mod modules;
mod ops;
mod plugins;
mod policies;
mod policies_cluster;
mod pool;
mod secrets;
