//! The redo log (`<database>-redo`): how a job create is acknowledged before the
//! transaction that holds it commits.
//!
//! A commit writes every B-tree page it touched to the WAL, whole. A group of three
//! creates touched ~17 pages (~70 KB of WAL, ~23 KB per create): on a disk that flushes
//! slowly that, not the CPU, set the create rate (docs/benchmarks.md, "sixth session").
//! So a group made only of creates is applied in the writer's open transaction, its
//! statements and their parameters are appended here as one compact record per create
//! (a few hundred bytes, one `write(2)` per group), and the group is answered. The
//! transaction commits a few milliseconds later ([`COMMIT_AFTER`]), or sooner when a
//! read, or any other kind of write, needs it: each page then carries a hundred
//! creates, not three.
//!
//! Durability is unchanged: an answered create's record has been handed to the kernel
//! with `write(2)`, as a WAL frame was before, so it survives `kill -9`. Each commit
//! also stores the sequence number of its last record (table `redo_applied`, in the
//! same transaction); at the next open, records above it are applied again and the file
//! is emptied. A record is `[len u32][crc32 u32][body]`: a record torn by the death of
//! the process was never answered, and the first record that fails its checksum ends
//! the log.
//!
//! This module knows nothing of jobs: it stores and replays statements of [`Stmt`].
//! It must not be used with `synchronous=FULL`, whose promise (power loss) it does not
//! keep: that mode commits every group as before.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql, params_from_iter};

/// How long an answered create may wait for its commit.
pub(super) const COMMIT_AFTER: Duration = Duration::from_millis(10);
/// Answered records that make the writer commit at once.
const MAX_PENDING_RECORDS: usize = 4096;
/// Answered bytes that make the writer commit at once.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;
/// How soon a failed commit of answered records is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// Most bytes of one record (a create carries a script of at most a few MiB).
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// A statement a record can hold. The SQL lives with the code that runs it first, so
/// that a replay runs the very same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stmt {
    InsertJob,
    InsertScriptVersion,
    AppendAudit,
}

impl Stmt {
    fn tag(self) -> u8 {
        match self {
            Stmt::InsertJob => 1,
            Stmt::InsertScriptVersion => 2,
            Stmt::AppendAudit => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<Stmt> {
        match tag {
            1 => Some(Stmt::InsertJob),
            2 => Some(Stmt::InsertScriptVersion),
            3 => Some(Stmt::AppendAudit),
            _ => None,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Stmt::InsertJob => super::writer::insert_job_sql(),
            Stmt::InsertScriptVersion => super::writer::INSERT_SCRIPT_VERSION,
            Stmt::AppendAudit => super::audit::APPEND,
        }
    }
}

/// Records being built for one group, numbered from where the log is.
pub(super) struct Batch {
    pub bytes: Vec<u8>,
    pub count: usize,
    first_seq: u64,
    next_seq: u64,
}

impl Batch {
    /// Appends one record: the statements of one write, in the order they ran.
    pub fn record(&mut self, stmts: &[(Stmt, &[&dyn ToSql])]) -> rusqlite::Result<()> {
        let start = self.bytes.len();
        let res = self.encode(start, stmts);
        if res.is_err() {
            self.bytes.truncate(start);
        }
        res
    }

    fn encode(&mut self, start: usize, stmts: &[(Stmt, &[&dyn ToSql])]) -> rusqlite::Result<()> {
        self.bytes.extend_from_slice(&[0; 8]);
        self.bytes.extend_from_slice(&self.next_seq.to_le_bytes());
        let n = u8::try_from(stmts.len()).map_err(|_| unrecordable())?;
        self.bytes.push(n);
        for (stmt, params) in stmts {
            self.bytes.push(stmt.tag());
            let n = u16::try_from(params.len()).map_err(|_| unrecordable())?;
            self.bytes.extend_from_slice(&n.to_le_bytes());
            for p in *params {
                let out = p.to_sql()?;
                let v = match &out {
                    ToSqlOutput::Borrowed(v) => *v,
                    ToSqlOutput::Owned(v) => ValueRef::from(v),
                    _ => return Err(unrecordable()),
                };
                put_value(&mut self.bytes, v);
            }
        }
        let body = &self.bytes[start + 8..];
        let len = u32::try_from(body.len()).map_err(|_| unrecordable())?;
        let crc = crc32fast::hash(body);
        self.bytes[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.next_seq += 1;
        self.count += 1;
        Ok(())
    }

    /// An empty batch whose first record is `seq` (tests build logs with it).
    #[cfg(test)]
    pub fn starting_at(seq: u64) -> Batch {
        Batch {
            bytes: Vec::new(),
            count: 0,
            first_seq: seq,
            next_seq: seq,
        }
    }

    /// Forgets every record (the group is being run again).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
        self.next_seq = self.first_seq;
    }
}

fn unrecordable() -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure("a redo record cannot hold this statement".into())
}

fn put_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        ValueRef::Real(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        ValueRef::Text(b) | ValueRef::Blob(b) => {
            out.push(if matches!(v, ValueRef::Text(_)) { 3 } else { 4 });
            // Bounded by MAX_RECORD's u32 length check at the end of the record.
            out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// One record read back.
pub(super) struct Record {
    pub seq: u64,
    pub stmts: Vec<(Stmt, Vec<Value>)>,
}

/// How a log read back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// After its last whole record.
    Clean,
    /// In a record whose header promises more bytes than follow: a write cut short by
    /// the death of the process, never answered.
    Torn,
    /// In a whole record that fails its checksum or does not read.
    Damaged,
}

/// The records of a log, read from its start until its end or the first record that
/// is torn or damaged.
pub(super) struct Decoded {
    pub records: Vec<Record>,
    /// Bytes the records took.
    pub used: usize,
    pub end: End,
}

pub(super) fn decode(data: &[u8]) -> Decoded {
    let mut records = Vec::new();
    let mut at = 0;
    let end = loop {
        let Some(header) = data.get(at..at + 8) else {
            break if at == data.len() {
                End::Clean
            } else {
                End::Torn
            };
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = data.get(at + 8..at + 8 + len) else {
            break End::Torn;
        };
        if len > MAX_RECORD || crc32fast::hash(body) != crc {
            break End::Damaged;
        }
        let Some(record) = decode_body(body) else {
            break End::Damaged;
        };
        records.push(record);
        at += 8 + len;
    };
    Decoded {
        records,
        used: at,
        end,
    }
}

fn decode_body(body: &[u8]) -> Option<Record> {
    let mut r = Reader(body);
    let seq = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let n = r.take(1)?[0];
    let mut stmts = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let stmt = Stmt::from_tag(r.take(1)?[0])?;
        let count = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let mut values = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            values.push(r.value()?);
        }
        stmts.push((stmt, values));
    }
    r.0.is_empty().then_some(Record { seq, stmts })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn value(&mut self) -> Option<Value> {
        let tag = self.take(1)?[0];
        Some(match tag {
            0 => Value::Null,
            1 => Value::Integer(i64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => Value::Real(f64::from_bits(u64::from_le_bytes(
                self.take(8)?.try_into().ok()?,
            ))),
            3 | 4 => {
                let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
                let bytes = self.take(len)?;
                if tag == 3 {
                    Value::Text(String::from_utf8(bytes.to_vec()).ok()?)
                } else {
                    Value::Blob(bytes.to_vec())
                }
            }
            _ => return None,
        })
    }
}

/// Runs a record's statements. `Ok(false)`: a statement changed nothing (the row was
/// there already), so the caller undoes the record.
pub(super) fn apply(conn: &Connection, record: &Record) -> rusqlite::Result<bool> {
    for (stmt, values) in &record.stmts {
        let changed = conn
            .prepare_cached(stmt.sql())?
            .execute(params_from_iter(values.iter()))?;
        if changed == 0 && *stmt == Stmt::InsertJob {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The log file and the records answered but not yet committed.
pub(super) struct Redo {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    len: u64,
    next_seq: u64,
    /// The answered records not yet committed, as they are in the file.
    pending: Vec<u8>,
    pending_count: usize,
    last_pending_seq: u64,
    /// When the oldest pending record was answered.
    since: Option<Instant>,
    /// A commit of the pending records failed: they are not in the open transaction
    /// (there is none) and must be applied again before anything else.
    stranded: bool,
    retry_at: Option<Instant>,
    /// True while answered writes are not yet visible to readers (see
    /// [`super::SqliteStore::read`]).
    pub unseen: Arc<AtomicBool>,
}

impl Redo {
    /// Opens the log beside the database, applies what a crash left in it, and empties
    /// it. Runs before the writer thread starts, on the writer's connection.
    pub fn open(conn: &mut Connection, db: &Path) -> anyhow::Result<Redo> {
        let mut name = db.as_os_str().to_owned();
        name.push("-redo");
        let path = PathBuf::from(name);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("open the redo log {}", path.display()))?;
        file.try_lock().map_err(|e| {
            anyhow!(
                "the redo log {} is locked: another process has this database open ({e})",
                path.display()
            )
        })?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .with_context(|| format!("read the redo log {}", path.display()))?;
        let applied: i64 = conn
            .query_row("SELECT seq FROM redo_applied", [], |r| r.get(0))
            .context("read the redo log's high-water mark")?;
        let applied = u64::try_from(applied).context("negative redo high-water mark")?;
        let Decoded { records, used, end } = decode(&data);
        match end {
            End::Clean => {}
            End::Torn => tracing::info!(
                bytes = data.len() - used,
                "ignored a torn record at the end of the redo log"
            ),
            End::Damaged => keep_damaged_copy(&path, &data, data.len() - used),
        }
        let last = records
            .iter()
            .map(|r| r.seq)
            .max()
            .unwrap_or(0)
            .max(applied);
        let todo: Vec<&Record> = records.iter().filter(|r| r.seq > applied).collect();
        if !todo.is_empty() {
            replay(conn, &todo, last)
                .with_context(|| format!("apply the redo log {}", path.display()))?;
            tracing::info!(
                records = todo.len(),
                log = %path.display(),
                "applied answered writes that a crash left uncommitted"
            );
        }
        file.set_len(0)
            .with_context(|| format!("empty the redo log {}", path.display()))?;
        Ok(Redo {
            path,
            file,
            len: 0,
            next_seq: last + 1,
            pending: Vec::new(),
            pending_count: 0,
            last_pending_seq: 0,
            since: None,
            stranded: false,
            retry_at: None,
            unseen: Arc::new(AtomicBool::new(false)),
        })
    }

    /// An empty batch numbered from the log's next sequence number.
    pub fn batch(&self) -> Batch {
        Batch {
            bytes: Vec::new(),
            count: 0,
            first_seq: self.next_seq,
            next_seq: self.next_seq,
        }
    }

    /// Writes a group's records. Once this returns `Ok`, they may be answered.
    pub fn append(&mut self, batch: &Batch) -> std::io::Result<()> {
        if batch.count == 0 {
            return Ok(());
        }
        if let Err(e) = self.file.write_all_at(&batch.bytes, self.len) {
            // Part of it may be there: cut it off, so that the log does not end in
            // bytes that look damaged (the caller commits instead).
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += batch.bytes.len() as u64;
        self.next_seq = batch.next_seq;
        self.last_pending_seq = batch.next_seq - 1;
        self.pending.extend_from_slice(&batch.bytes);
        self.pending_count += batch.count;
        self.since.get_or_insert_with(Instant::now);
        self.unseen.store(true, Ordering::Release);
        Ok(())
    }

    /// The sequence number the next commit stores, if it holds answered records.
    pub fn pending_seq(&self) -> Option<u64> {
        (self.pending_count > 0).then_some(self.last_pending_seq)
    }

    /// Whether so much is pending that the writer should commit now.
    pub fn full(&self) -> bool {
        self.pending_count >= MAX_PENDING_RECORDS || self.pending.len() >= MAX_PENDING_BYTES
    }

    /// When the writer must commit even if nothing else comes.
    pub fn due(&self) -> Option<Instant> {
        if self.stranded {
            return self.retry_at.or(Some(Instant::now()));
        }
        self.since.map(|t| t + COMMIT_AFTER)
    }

    /// The pending records are committed: readers see them, and the file can go.
    pub fn committed(&mut self) {
        if self.pending_count == 0 && self.len == 0 {
            return;
        }
        self.pending.clear();
        self.pending_count = 0;
        self.since = None;
        self.stranded = false;
        self.retry_at = None;
        self.unseen.store(false, Ordering::Release);
        match self.file.set_len(0) {
            Ok(()) => self.len = 0,
            // Harmless: the records are at or below the stored high-water mark.
            Err(e) => tracing::warn!(error = %e, log = %self.path.display(), "empty the redo log"),
        }
    }

    /// The transaction that held the pending records is gone (its commit failed).
    pub fn strand(&mut self) {
        if self.pending_count > 0 {
            self.stranded = true;
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
        }
    }

    pub fn is_stranded(&self) -> bool {
        self.stranded
    }

    /// Applies the pending records again in the (new, open) transaction.
    pub fn reapply(&mut self, conn: &Connection) -> anyhow::Result<()> {
        let decoded = decode(&self.pending);
        if decoded.end != End::Clean {
            bail!("the pending redo records do not read back");
        }
        for record in &decoded.records {
            if !apply(conn, record).context("apply a pending redo record")? {
                tracing::warn!(
                    seq = record.seq,
                    "a pending redo record was applied already"
                );
            }
        }
        self.stranded = false;
        self.retry_at = None;
        Ok(())
    }

    /// Sets the next retry of a stranded commit.
    pub fn retry_later(&mut self) {
        self.retry_at = Some(Instant::now() + RETRY_AFTER);
    }
}

/// Applies the records of a crashed run in one transaction, with the high-water mark.
fn replay(conn: &mut Connection, records: &[&Record], last: u64) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for record in records {
        tx.execute_batch("SAVEPOINT record")?;
        match apply(&tx, record) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(seq = record.seq, "a redo record's job is there already");
                tx.execute_batch("ROLLBACK TO record")?;
            }
            Err(e) => {
                tracing::error!(seq = record.seq, error = %e, "a redo record does not apply");
                tx.execute_batch("ROLLBACK TO record")?;
            }
        }
        tx.execute_batch("RELEASE record")?;
    }
    set_applied(&tx, last)?;
    tx.commit()?;
    Ok(())
}

/// Stores the high-water mark, in the caller's transaction.
pub(super) fn set_applied(conn: &Connection, seq: u64) -> rusqlite::Result<()> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    conn.prepare_cached("UPDATE redo_applied SET seq = ?1")?
        .execute([seq])?;
    Ok(())
}

/// Keeps a copy of a log that ends in a damaged record (`tail` bytes from there on)
/// before the log is emptied: a torn last record is expected, damage is worth a look.
fn keep_damaged_copy(path: &Path, data: &[u8], tail: usize) {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".damaged-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f")
    ));
    let copy = PathBuf::from(name);
    match std::fs::write(&copy, data) {
        Ok(()) => tracing::error!(
            bytes = tail,
            copy = %copy.display(),
            "the redo log ends in bytes that do not read as records; kept a copy"
        ),
        Err(e) => tracing::error!(
            bytes = tail,
            error = %e,
            "the redo log ends in bytes that do not read as records, and a copy failed"
        ),
    }
}
