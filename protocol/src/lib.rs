//! Every message that crosses the process boundary between the traitor supervisor and a
//! worker, and how those messages are framed on the wire.
//!
//! This crate is the only IPC boundary: the supervisor and the worker share nothing
//! else. It knows nothing about jobs, storage, HTTP or JavaScript engines; it only
//! describes what a worker may be asked to do and what it may answer.
//!
//! The wire format is a stream of frames: a `u32` little-endian body length, then a
//! bincode (`=2.0.1`, standard config) body. Lengths above [`MAX_FRAME_LEN`] are
//! rejected before anything is allocated. The first frame in each direction is the
//! handshake ([`WorkerMessage::Hello`], then [`SupervisorMessage::Welcome`]).

pub mod frame;
pub mod messages;
pub mod version;

pub use frame::{
    FrameError, MAX_FRAME_LEN, decode, encode, read_frame, read_frame_async, write_frame,
    write_frame_async,
};
pub use messages::*;
pub use version::PROTOCOL_VERSION;
