//! The checkpointer thread: copies committed WAL frames into the database file off the
//! writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold, and
//! a checkpoint fsyncs the WAL and the database: on a slow disk that stalls every
//! writer waiting on that group commit. Instead this thread, with its own connection,
//! runs a PASSIVE checkpoint (which never blocks the writer or readers) a few times a
//! second when something was committed, and every few milliseconds while the WAL is
//! long: under a steady stream of commits the WAL never gets back to empty, and if
//! this thread fell behind, the writer's automatic checkpoint (a high threshold, kept
//! as a safety net) would do the copying on the commit path, as it did at 200 ms
//! (stalls of 10-30 ms every ~150 ms under 17,000 creates/s).
//!
//! Checkpoints move data that is already committed; they play no part in durability
//! and nothing waits for them. This thread must not write anything else.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;

/// How often the thread looks for committed work to checkpoint.
const INTERVAL: Duration = Duration::from_millis(200);

/// How soon it checkpoints again when the WAL is at least [`LONG_WAL`] frames long.
const BUSY_INTERVAL: Duration = Duration::from_millis(10);

/// A WAL this long (frames of 4 KiB; 4 MiB) means writes are streaming in.
const LONG_WAL: i64 = 1_000;

pub(super) struct Checkpointer {
    /// Set by the writer after each commit; cleared here before each checkpoint.
    pub dirty: Arc<AtomicBool>,
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> anyhow::Result<Checkpointer> {
        let conn = Connection::open(path)
            .with_context(|| format!("open {} for checkpoints", path.display()))?;
        conn.busy_timeout(Duration::from_millis(100))
            .context("set checkpointer busy timeout")?;
        let dirty = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let flag = dirty.clone();
        let thread = std::thread::Builder::new()
            .name("traitor-sqlite-checkpoint".into())
            .spawn(move || run(conn, &flag, &stopped))
            .context("start the SQLite checkpointer thread")?;
        Ok(Checkpointer {
            dirty,
            stop,
            thread,
        })
    }

    /// Stops the thread and waits for it (at most one checkpoint's time).
    pub fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            tracing::error!("the SQLite checkpointer thread panicked");
        }
    }
}

fn run(conn: Connection, dirty: &AtomicBool, stopped: &mpsc::Receiver<()>) {
    let mut wait = INTERVAL;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        wait = INTERVAL;
        if !dirty.swap(false, Ordering::AcqRel) {
            continue;
        }
        // The row is (busy, frames in the WAL, frames checkpointed). SQLite answers
        // "another checkpoint holds the lock" with busy = 1 in the row, not an error.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)? != 0, r.get::<_, i64>(1)?))
        }) {
            Ok((false, frames)) if frames >= LONG_WAL => wait = BUSY_INTERVAL,
            Ok((false, _)) => {}
            // Busy now and then is expected; the next round retries.
            Ok((true, _)) => dirty.store(true, Ordering::Release),
            Err(e) => {
                tracing::debug!(error = %e, "passive WAL checkpoint");
                dirty.store(true, Ordering::Release);
            }
        }
    }
}
