//! The first exchange with a new worker: its `Hello`, our `Welcome`.
//!
//! Generic over the stream so it can be tested in memory. It decides whether a worker
//! may be used at all: a worker that speaks another protocol version is refused with a
//! message that tells the operator what to do, and is never sent a run. It must not
//! keep state: the session takes over after it.

use std::time::Duration;

use protocol::{PROTOCOL_VERSION, SupervisorMessage, WorkerMessage};
use tokio::io::{AsyncRead, AsyncWrite};

/// What a worker said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) worker_version: String,
    pub(crate) pid: u32,
    pub(crate) sandboxed: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error(
        "worker speaks protocol v{worker}, this supervisor speaks v{ours}: rebuild/reinstall \
         so both come from the same release (worker version {worker_version})"
    )]
    VersionMismatch {
        worker: u32,
        ours: u32,
        worker_version: String,
    },
    #[error("worker sent no hello within {0:?}")]
    Timeout(Duration),
    #[error("worker closed its socket before saying hello")]
    Closed,
    #[error("worker's first frame was not a hello: {0}")]
    NotHello(String),
    #[error("worker's hello was unreadable: {0}")]
    Frame(#[from] protocol::FrameError),
}

/// Reads the worker's `Hello` (within `timeout`), checks its version and answers
/// `Welcome`.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Hello, HandshakeError> {
    let first = tokio::time::timeout(timeout, protocol::read_frame_async(stream))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))??;
    let hello = match first {
        None => return Err(HandshakeError::Closed),
        Some(WorkerMessage::Hello {
            protocol_version,
            worker_version,
            pid,
            sandboxed,
        }) => {
            if protocol_version != PROTOCOL_VERSION {
                return Err(HandshakeError::VersionMismatch {
                    worker: protocol_version,
                    ours: PROTOCOL_VERSION,
                    worker_version,
                });
            }
            Hello {
                worker_version,
                pid,
                sandboxed,
            }
        }
        Some(other) => {
            let mut s = format!("{other:?}");
            s.truncate(200);
            return Err(HandshakeError::NotHello(s));
        }
    };
    tokio::time::timeout(
        timeout,
        protocol::write_frame_async(
            stream,
            &SupervisorMessage::Welcome {
                protocol_version: PROTOCOL_VERSION,
            },
        ),
    )
    .await
    .map_err(|_| HandshakeError::Timeout(timeout))??;
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const T: Duration = Duration::from_secs(2);

    fn hello(v: u32) -> WorkerMessage {
        WorkerMessage::Hello {
            protocol_version: v,
            worker_version: "9.9.9".into(),
            pid: 1234,
            sandboxed: true,
        }
    }

    #[tokio::test]
    async fn a_matching_worker_is_welcomed() {
        let (mut sup, mut wrk) = tokio::io::duplex(4096);
        protocol::write_frame_async(&mut wrk, &hello(PROTOCOL_VERSION))
            .await
            .unwrap();
        let h = handshake(&mut sup, T).await.unwrap();
        assert_eq!(h.pid, 1234);
        let welcome: SupervisorMessage =
            protocol::read_frame_async(&mut wrk).await.unwrap().unwrap();
        assert_eq!(
            welcome,
            SupervisorMessage::Welcome {
                protocol_version: PROTOCOL_VERSION
            }
        );
    }

    #[tokio::test]
    async fn another_protocol_version_is_refused_readably_and_not_welcomed() {
        let (mut sup, mut wrk) = tokio::io::duplex(4096);
        protocol::write_frame_async(&mut wrk, &hello(PROTOCOL_VERSION + 1))
            .await
            .unwrap();
        let err = handshake(&mut sup, T).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "worker speaks protocol v{}, this supervisor speaks v{}: rebuild/reinstall so \
                 both come from the same release (worker version 9.9.9)",
                PROTOCOL_VERSION + 1,
                PROTOCOL_VERSION
            )
        );
        drop(sup);
        let next: Option<SupervisorMessage> = protocol::read_frame_async(&mut wrk).await.unwrap();
        assert_eq!(next, None, "a refused worker must not be welcomed");
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (mut sup, _wrk) = tokio::io::duplex(4096);
        let err = handshake(&mut sup, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Timeout(_)), "{err}");
    }

    #[tokio::test]
    async fn garbage_and_wrong_first_frames_are_refused() {
        let (mut sup, mut wrk) = tokio::io::duplex(4096);
        wrk.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let err = handshake(&mut sup, T).await.unwrap_err();
        assert!(matches!(err, HandshakeError::Frame(_)), "{err}");

        let (mut sup, mut wrk) = tokio::io::duplex(4096);
        protocol::write_frame_async(&mut wrk, &WorkerMessage::Started { run_id: 1 })
            .await
            .unwrap();
        let err = handshake(&mut sup, T).await.unwrap_err();
        assert!(matches!(err, HandshakeError::NotHello(_)), "{err}");

        let (mut sup, wrk) = tokio::io::duplex(4096);
        drop(wrk);
        let err = handshake(&mut sup, T).await.unwrap_err();
        assert!(matches!(err, HandshakeError::Closed), "{err}");
    }
}
