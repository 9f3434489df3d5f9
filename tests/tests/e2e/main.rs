//! The one end-to-end test binary (one link instead of one per file). Every test here
//! starts real processes: `traitor exec`, real `traitor-worker`s, real sockets. Fakes
//! appear only where a broken worker has to be played.

mod api;
mod exec;
mod pool;
