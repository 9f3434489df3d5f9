//! The HTTP tier of the tests: the router against an in-memory [`fake::Fake`] backend,
//! through `oneshot` (`http`) and through a real socket for the debug WebSocket (`ws`).
//! These check the HTTP mapping only; end-to-end behaviour is tested against the binary.

mod fake;
mod http;
mod ws;
