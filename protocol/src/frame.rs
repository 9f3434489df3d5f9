//! Length-prefixed bincode frames, blocking and async.
//!
//! A frame is `len: u32 LE` followed by `len` bytes of bincode. The length is checked
//! against [`MAX_FRAME_LEN`] before the body buffer is allocated, and decoding is capped
//! at the same size, so a hostile peer cannot make us allocate more than that. Every
//! failure is a [`FrameError`]; nothing here panics on peer data.

use std::io::{self, Read, Write};

use bincode::{Decode, Encode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame body either side accepts: room for a 256 KiB script and a capped
/// HTTP response body with plenty to spare.
pub const MAX_FRAME_LEN: usize = 32 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME_LEN>,
>;

const CONFIG: Config = bincode::config::standard().with_limit::<MAX_FRAME_LEN>();

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME_LEN}")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as one complete frame (prefix included), ready for one `write_all`.
pub fn encode<T: Encode>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    bincode::encode_into_std_write(msg, &mut buf, CONFIG)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Decodes one frame body (without its prefix). Trailing bytes are an error.
pub fn decode<T: Decode<()>>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, used) = bincode::decode_from_slice(body, CONFIG)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(msg)
}

fn check_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Reads one frame. `Ok(None)` means the peer closed the connection between frames.
pub fn read_frame<T: Decode<()>, R: Read>(r: &mut R) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; 4];
    if !read_exact_or_eof(r, &mut prefix)? {
        return Ok(None);
    }
    let len = check_len(prefix)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(eof_is_truncated)?;
    decode(&body).map(Some)
}

/// Writes one frame with a single `write_all`.
pub fn write_frame<T: Encode, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Async twin of [`read_frame`].
pub async fn read_frame_async<T: Decode<()>, R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = check_len(prefix)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(eof_is_truncated)?;
    decode(&body).map(Some)
}

/// Async twin of [`write_frame`].
pub async fn write_frame_async<T: Encode, W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?).await?;
    Ok(())
}

fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn eof_is_truncated(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;
    use std::io::Cursor;

    fn sample_messages() -> Vec<SupervisorMessage> {
        vec![
            SupervisorMessage::Welcome {
                protocol_version: 1,
            },
            SupervisorMessage::StartRun(StartRun {
                run_id: 7,
                script: "console.log('hi ✓')".into(),
                limits: Limits::default(),
                job: JobContext {
                    job_id: "j".into(),
                    job_name: "n".into(),
                    scheduled_at_ms: 1_700_000_000_000,
                    occurrence_id: "j@1700000000000".into(),
                    attempt: 1,
                    secrets: SecretValues(vec![("K".into(), "v".into())]),
                },
                modules: vec![SharedModule {
                    specifier: "lib@2".into(),
                    version: 2,
                    source: "module.exports = 1".into(),
                }],
            }),
            SupervisorMessage::HostReply {
                run_id: 7,
                call_id: 1,
                result: Ok(HostResponse::Http(HttpResponse {
                    status: 200,
                    status_text: "200 OK".into(),
                    headers: vec![("a".into(), "b".into())],
                    body: vec![0, 1, 2, 255],
                })),
            },
            SupervisorMessage::HostReply {
                run_id: 7,
                call_id: 2,
                result: Err("connection refused".into()),
            },
            SupervisorMessage::Cancel { run_id: 9 },
            SupervisorMessage::Shutdown,
        ]
    }

    #[test]
    fn every_supervisor_message_survives_a_round_trip() {
        let mut wire = Vec::new();
        for m in sample_messages() {
            write_frame(&mut wire, &m).unwrap();
        }
        let mut r = Cursor::new(wire);
        for m in sample_messages() {
            let got: SupervisorMessage = read_frame(&mut r).unwrap().unwrap();
            assert_eq!(got, m);
        }
        assert!(
            read_frame::<SupervisorMessage, _>(&mut r)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn worker_messages_survive_a_round_trip() {
        let msgs = vec![
            WorkerMessage::Hello {
                protocol_version: 1,
                worker_version: "0.1.0".into(),
                pid: 42,
                sandboxed: true,
            },
            WorkerMessage::Started { run_id: 3 },
            WorkerMessage::Console(ConsoleLine {
                run_id: 3,
                seq: 0,
                level: ConsoleLevel::Warn,
                text: "careful".into(),
                at_ms: 5,
            }),
            WorkerMessage::HostCall {
                run_id: 3,
                call_id: 1,
                call: HostCall::Http(HttpRequest {
                    method: "GET".into(),
                    url: "http://127.0.0.1/".into(),
                    headers: vec![],
                    body: None,
                }),
            },
            WorkerMessage::RunEnd(RunEnd {
                run_id: 3,
                outcome: Outcome::Failed,
                error: Some(ScriptError {
                    message: "Error: boom".into(),
                    stack: Some("at <eval>".into()),
                }),
                cpu_time_us: 10,
                peak_memory_bytes: 100,
            }),
        ];
        for m in msgs {
            let bytes = encode(&m).unwrap();
            assert_eq!(
                u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize,
                bytes.len() - 4
            );
            assert_eq!(decode::<WorkerMessage>(&bytes[4..]).unwrap(), m);
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let wire = (u32::MAX).to_le_bytes().to_vec();
        let err = read_frame::<SupervisorMessage, _>(&mut Cursor::new(wire)).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)), "{err}");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut wire = 5u32.to_le_bytes().to_vec();
        wire.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff]);
        let err = read_frame::<SupervisorMessage, _>(&mut Cursor::new(wire)).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn a_frame_cut_short_is_truncated() {
        let mut bytes = encode(&SupervisorMessage::Shutdown).unwrap();
        bytes.extend_from_slice(&100u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut r = Cursor::new(bytes);
        assert_eq!(
            read_frame::<SupervisorMessage, _>(&mut r).unwrap(),
            Some(SupervisorMessage::Shutdown)
        );
        let err = read_frame::<SupervisorMessage, _>(&mut r).unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_malformed() {
        let mut bytes = encode(&SupervisorMessage::Shutdown).unwrap();
        bytes.push(0);
        let len = (bytes.len() - 4) as u32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        let err = read_frame::<SupervisorMessage, _>(&mut Cursor::new(bytes)).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[tokio::test]
    async fn async_framing_matches_blocking_framing() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        for m in sample_messages() {
            write_frame_async(&mut a, &m).await.unwrap();
        }
        drop(a);
        for m in sample_messages() {
            let got: SupervisorMessage = read_frame_async(&mut b).await.unwrap().unwrap();
            assert_eq!(got, m);
        }
        assert!(
            read_frame_async::<SupervisorMessage, _>(&mut b)
                .await
                .unwrap()
                .is_none()
        );
    }
}
