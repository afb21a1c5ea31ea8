//! The embedded engine: one SQLite file in WAL mode, fsync on every commit, group commit.
//!
//! One writer thread owns the only writing connection. Requests send their operation with a
//! oneshot for the answer through a bounded channel; the writer takes everything queued (up to
//! `max_batch`), runs it in one transaction, commits, then answers all of them. Readers use their
//! own connections from a small pool. A full channel makes callers wait (then answer 503); it
//! never grows.
//!
//! The audit chain's append is serialised by the transaction: each transaction reads the chain
//! head once under SQLite's write lock, so another process writing the same file (a command-line
//! replay) still extends one chain.
//!
//! **Invariant:** a caller's future resolves only after the transaction carrying its operation
//! has committed (or failed and rolled back).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::audit::{self, AuditEntry, AuditEvent, AuditStamp, Checkpoint, GENESIS};
use crate::telemetry::Metrics;
use crate::telemetry::events::{AuditAppended, StoreCommitted};

/// Schema migrations, applied in order; each runs once and is recorded in `schema_migrations`: a
/// version and the scripts that make it (this engine's tables, then what both engines share).
const MIGRATIONS: &[(i64, &[&str])] =
    &[(1, &[include_str!("migrations/sqlite/0001_tables.sql"), super::sql::INDEXES]), (2, &[super::sql::TRACESTATE])];

/// Settings of the SQLite engine.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub queue: usize,
    pub max_batch: usize,
    pub commit_timeout: Duration,
}

/// The SQLite store.
pub struct SqliteStore {
    /// Operations for the writer thread; bounded, so a saturated writer pushes back on callers.
    /// `None` when the store is opened read-only: there is no writer, and writes are refused.
    writes: Option<mpsc::Sender<Box<dyn Job>>>,
    /// How long a caller waits for room in `writes` and for its answer before giving up.
    commit_timeout: Duration,
    readers: Arc<ReadPool>,
    /// Tells the checkpoint thread to stop when the store goes away.
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpoints.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Copies the write-ahead log into the database file every half second (passive: never blocks
/// the writer or readers), so the log stays small without the writer paying for it.
fn checkpoints(path: &Path, stop: &std::sync::atomic::AtomicBool) {
    let Ok(conn) = open(path) else { return };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(message = "A store checkpoint failed; it is retried.", %error);
        }
    }
    // A last one on the way out, so a stopped gateway leaves a short log behind.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

struct ReadPool {
    path: PathBuf,
    /// Connections are opened read-only and leave the file exactly as it is (see
    /// [`SqliteStore::open_read_only`]).
    read_only: bool,
    /// Idle read connections; at most a few are kept, more are opened under load.
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn connect(&self) -> rusqlite::Result<Connection> {
        if self.read_only { open_read_only(&self.path) } else { open(&self.path) }
    }
}

/// What kind of store failure a SQLite error is; the error itself stays as the cause.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as Code;
        let kind = match &error {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                // The busy timeout passed with another connection (or process) holding the lock.
                Code::DatabaseBusy | Code::DatabaseLocked => StoreErrorKind::TimedOut,
                Code::CannotOpen | Code::ReadOnly | Code::PermissionDenied => StoreErrorKind::Unavailable,
                Code::ConstraintViolation => StoreErrorKind::Constraint,
                Code::DatabaseCorrupt | Code::NotADatabase => StoreErrorKind::Corrupt,
                _ => StoreErrorKind::Failed,
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::InvalidColumnType(..) => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Failed,
        };
        StoreError::new(kind, "").caused_by(error)
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL in WAL mode fsyncs the log on every commit: an acknowledged record survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// A connection that can only read, and changes nothing in the file: not its journal mode, not
/// its schema. It never creates the file.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    for (version, scripts) in MIGRATIONS {
        if *version > current {
            for script in *scripts {
                tx.execute_batch(script)?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, crate::clock::now_ms()],
            )?;
        }
    }
    tx.commit()
}

/// What an operation sees inside the writer's transaction.
pub struct Cx<'t> {
    tx: &'t rusqlite::Transaction<'t>,
    /// The chain head, read once per transaction under the write lock.
    head: Option<AuditStamp>,
    /// Entries appended in this transaction, by kind, for the metrics after commit.
    appended: Vec<String>,
}

impl Cx<'_> {
    fn head(&mut self) -> rusqlite::Result<AuditStamp> {
        if let Some(h) = self.head {
            return Ok(h);
        }
        let head = self
            .tx
            .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok(AuditStamp { seq: r.get(0)?, hash: r.get::<_, [u8; 32]>(1)? }))
            .optional()?
            .unwrap_or(AuditStamp { seq: 0, hash: GENESIS });
        self.head = Some(head);
        Ok(head)
    }

    /// Appends `events` to the chain.
    fn append(&mut self, events: Vec<AuditEvent>) -> rusqlite::Result<Vec<AuditStamp>> {
        let head = self.head()?;
        let entries = audit::chain(head, events);
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO audit_log (seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let mut stamps = Vec::with_capacity(entries.len());
        for e in &entries {
            let ev = &e.event;
            insert.execute(params![
                e.seq,
                ev.at,
                ev.kind,
                ev.actor,
                ev.record_id,
                ev.agreement,
                ev.recipient,
                ev.body_digest.as_ref().map(|d| &d[..]),
                ev.outcome,
                ev.reason,
                ev.count,
                &e.prev_hash[..],
                &e.hash[..],
            ])?;
            stamps.push(AuditStamp { seq: e.seq, hash: e.hash });
            self.appended.push(ev.kind.clone());
        }
        if let Some(last) = stamps.last() {
            self.head = Some(*last);
        }
        Ok(stamps)
    }
}

/// A stored status read back as its type: a row whose status the code does not know is an
/// error naming it, never taken for another status.
impl rusqlite::types::FromSql for DeliveryStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        DeliveryStatus::parse(text)
            .ok_or_else(|| rusqlite::types::FromSqlError::Other(format!("unknown delivery status `{text}`").into()))
    }
}

impl rusqlite::types::FromSql for RecordState {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        RecordState::parse(text)
            .ok_or_else(|| rusqlite::types::FromSqlError::Other(format!("unknown record state `{text}`").into()))
    }
}

/// One operation for the writer: run inside the transaction, answered after the commit.
trait Job: Send {
    fn run(&mut self, cx: &mut Cx<'_>) -> rusqlite::Result<()>;
    /// Answers the caller: with the result if the transaction committed, else with `failure`.
    fn answer(self: Box<Self>, failure: Option<&StoreError>);
    /// Records this operation carries (for the group-commit metrics).
    fn records(&self) -> usize;
}

struct Op<T, F> {
    work: Option<F>,
    result: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
    records: usize,
}

impl<T: Send, F: FnOnce(&mut Cx<'_>) -> rusqlite::Result<T> + Send> Job for Op<T, F> {
    fn run(&mut self, cx: &mut Cx<'_>) -> rusqlite::Result<()> {
        if let Some(work) = self.work.take() {
            self.result = Some(work(cx)?);
        }
        Ok(())
    }

    fn answer(self: Box<Self>, failure: Option<&StoreError>) {
        let answer = match (failure, self.result) {
            (None, Some(result)) => Ok(result),
            (Some(failure), _) => Err(failure.clone()),
            (None, None) => Err(StoreError::new(StoreErrorKind::Failed, "the operation did not run")),
        };
        // A caller that gave up has dropped its receiver; its answer is simply discarded.
        let _ = self.reply.send(answer);
    }

    fn records(&self) -> usize {
        self.records
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store and starts its writer thread.
    pub fn open(options: SqliteOptions, metrics: Metrics) -> Result<Self, StoreError> {
        // Created owner-only before SQLite sees it, so its -wal and -shm files are too.
        crate::secrets::create_private_file(&options.path).map_err(|e| {
            StoreError::new(StoreErrorKind::Unavailable, format!("cannot create {}", options.path.display()))
                .caused_by(e)
        })?;
        let mut conn = open(&options.path)?;
        migrate(&mut conn)?;
        // Checkpoints copy the log into the database file and fsync it: on the writer they would
        // stall every commit queued behind them, so another thread does them (see `checkpoints`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (path, flag) = (options.path.clone(), stop.clone());
        std::thread::Builder::new().name("store-checkpoint".into()).spawn(move || checkpoints(&path, &flag)).map_err(
            |e| StoreError::new(StoreErrorKind::Unavailable, "cannot start the checkpoint thread").caused_by(e),
        )?;
        let (writes, rx) = mpsc::channel(options.queue);
        let max_batch = options.max_batch;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || Writer { conn, metrics }.run(rx, max_batch))
            .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, "cannot start the writer thread").caused_by(e))?;
        Ok(SqliteStore {
            writes: Some(writes),
            stop_checkpoints: stop,
            commit_timeout: options.commit_timeout,
            readers: Arc::new(ReadPool { path: options.path, read_only: false, idle: Mutex::new(Vec::new()) }),
        })
    }

    /// Opens an existing store file to read it only: no writer thread, no checkpoints, no
    /// migration, nothing written to the file (every write answers [`StoreErrorKind::Unavailable`]).
    /// This is how a copy made by `passerelle backup` is verified before anyone uses it; the file
    /// must be in rollback-journal mode, as the backup leaves it, since reading a file in WAL mode
    /// needs its `-shm` index.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = open_read_only(path)
            .map_err(|e| StoreError::from(e).with_context(format!("cannot open {}", path.display())))?;
        let version: i64 = conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
            .map_err(|e| {
                StoreError::new(StoreErrorKind::Incompatible, format!("{} is not a Passerelle store", path.display()))
                    .caused_by(e)
            })?;
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if version > known {
            return Err(StoreError::new(
                StoreErrorKind::Incompatible,
                format!("{} is at schema version {version}, newer than this program's {known}", path.display()),
            ));
        }
        Ok(SqliteStore {
            writes: None,
            stop_checkpoints: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            commit_timeout: Duration::from_secs(5),
            readers: Arc::new(ReadPool { path: path.to_path_buf(), read_only: true, idle: Mutex::new(vec![conn]) }),
        })
    }

    /// Runs `work` in the writer's next transaction and waits for the commit.
    async fn write<T, F>(&self, records: usize, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Cx<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let Some(writes) = &self.writes else {
            return Err(StoreError::new(StoreErrorKind::Unavailable, "the store is open read-only"));
        };
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Op { work: Some(work), result: None, reply, records });
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        tokio::time::timeout_at(deadline, writes.send(job))
            .await
            .map_err(|_| StoreError::new(StoreErrorKind::Saturated, "the commit queue is full"))?
            .map_err(|_| StoreError::new(StoreErrorKind::Unavailable, "the writer has stopped"))?;
        // Once queued, the operation will run; waiting past the deadline would only hide a
        // stuck disk, so the caller is told, and a committed record is still delivered.
        tokio::time::timeout_at(deadline, rx)
            .await
            .map_err(|_| StoreError::new(StoreErrorKind::TimedOut, "the commit did not finish in time"))?
            .map_err(|_| StoreError::new(StoreErrorKind::Unavailable, "the writer has stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => pool.connect()?,
            };
            let result = f(&conn).map_err(StoreError::from);
            if let Ok(mut idle) = pool.idle.lock()
                && idle.len() < 4
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::new(StoreErrorKind::Unavailable, "a read task failed").caused_by(e))?
    }
}

struct Writer {
    conn: Connection,
    metrics: Metrics,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Box<dyn Job>>, max_batch: usize) {
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.run_batch(&mut batch);
        }
    }

    fn run_batch(&mut self, batch: &mut Vec<Box<dyn Job>>) {
        let started = Instant::now();
        let records: usize = batch.iter().map(|j| j.records()).sum();
        let mut appended = Vec::new();
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut cx = Cx { tx: &tx, head: None, appended: Vec::new() };
                for job in batch.iter_mut() {
                    job.run(&mut cx)?;
                }
                appended = cx.appended;
            }
            tx.commit()
        })();
        if records > 0 {
            StoreCommitted { engine: "sqlite", records, duration: started.elapsed(), ok: outcome.is_ok() }
                .emit(&self.metrics);
        }
        if outcome.is_ok() {
            for kind in &appended {
                AuditAppended { kind }.emit(&self.metrics);
            }
        }
        let failure = outcome.err().map(StoreError::from);
        for job in batch.drain(..) {
            job.answer(failure.as_ref());
        }
    }
}

fn commit_record(cx: &mut Cx<'_>, record: NewRecord) -> rusqlite::Result<CommitOutcome> {
    if let Some(key) = &record.idempotency_key {
        let existing = cx
            .tx
            .prepare_cached(
                "SELECT r.body_sha256, r.receipt, a.seq, a.hash FROM records r JOIN audit_log a ON a.seq = r.audit_seq
                 WHERE r.sender = ?1 AND r.idempotency_key = ?2",
            )?
            .query_row(params![record.sender, key], |r| {
                let stamp = AuditStamp { seq: r.get(2)?, hash: r.get::<_, [u8; 32]>(3)? };
                Ok((r.get::<_, Vec<u8>>(0)?, Bytes::from(r.get::<_, Vec<u8>>(1)?), stamp))
            })
            .optional()?;
        if let Some((digest, receipt, stamp)) = existing {
            return Ok(if digest == record.body_sha256 {
                CommitOutcome::Duplicate { receipt, stamp }
            } else {
                CommitOutcome::Conflict
            });
        }
    }
    let stamp = cx.append(vec![record.accepted_event()])?[0];
    cx.tx
        .prepare_cached(
            "INSERT INTO records (record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, tracestate, receipt, audit_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            record.record_id,
            record.sender,
            record.record_type,
            record.schema_version,
            record.received_at,
            &record.body[..],
            &record.body_sha256[..],
            record.idempotency_key,
            record.traceparent,
            record.tracestate,
            &record.receipt[..],
            stamp.seq,
        ])?;
    let mut insert = cx.tx.prepare_cached(
        "INSERT INTO deliveries (record_id, recipient, agreement, ordered, body, body_digest, status, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?7)",
    )?;
    for d in &record.deliveries {
        insert.execute(params![
            record.record_id,
            d.recipient,
            d.agreement,
            d.ordered,
            &d.body[..],
            &d.body_digest[..],
            record.received_at
        ])?;
    }
    Ok(CommitOutcome::Accepted { receipt: record.receipt, stamp })
}

const CLAIM_COLUMNS: &str = "d.id, d.record_id, d.recipient, d.agreement, r.sender, r.record_type, r.schema_version, r.traceparent, d.body, d.body_digest, d.attempts, d.created_at, d.next_attempt_at, d.claimed_until, r.tracestate";

fn claim_due(cx: &mut Cx<'_>, claim: &ClaimRequest) -> rusqlite::Result<Vec<ClaimedDelivery>> {
    let sql = if claim.head_only {
        // The head of the recipient's queue, whatever its state: if it is not due or is held by
        // another worker, nothing behind it may go either.
        format!(
            "SELECT {CLAIM_COLUMNS} FROM deliveries d JOIN records r ON r.record_id = d.record_id
             WHERE d.recipient = ?1 AND d.status IN ('queued', 'retrying') ORDER BY d.id LIMIT 1"
        )
    } else {
        format!(
            "SELECT {CLAIM_COLUMNS} FROM deliveries d JOIN records r ON r.record_id = d.record_id
             WHERE d.recipient = ?1 AND d.status IN ('queued', 'retrying') AND d.next_attempt_at <= ?2 AND d.claimed_until < ?2
             ORDER BY d.next_attempt_at, d.id LIMIT ?3"
        )
    };
    let mut stmt = cx.tx.prepare_cached(&sql)?;
    let rows = if claim.head_only {
        stmt.query_map(params![claim.recipient], claimed_row)?.collect::<rusqlite::Result<Vec<_>>>()?
    } else {
        stmt.query_map(params![claim.recipient, claim.now, claim.limit as i64], claimed_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut claimed = Vec::with_capacity(rows.len());
    let mut lease = cx.tx.prepare_cached("UPDATE deliveries SET claimed_until = ?1, claimed_by = ?2 WHERE id = ?3")?;
    for (delivery, next_attempt_at, claimed_until) in rows {
        if claim.head_only && (next_attempt_at > claim.now || claimed_until >= claim.now) {
            continue;
        }
        lease.execute(params![claim.lease_until, claim.worker, delivery.id])?;
        claimed.push(delivery);
    }
    Ok(claimed)
}

fn claimed_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ClaimedDelivery, i64, i64)> {
    let body: Option<Vec<u8>> = r.get(8)?;
    Ok((
        ClaimedDelivery {
            id: r.get(0)?,
            record_id: r.get(1)?,
            recipient: r.get(2)?,
            agreement: r.get(3)?,
            sender: r.get(4)?,
            record_type: r.get(5)?,
            schema_version: r.get(6)?,
            traceparent: r.get(7)?,
            tracestate: r.get(14)?,
            body: Bytes::from(body.unwrap_or_default()),
            body_digest: r.get::<_, [u8; 32]>(9)?,
            attempts: r.get(10)?,
            created_at: r.get(11)?,
        },
        r.get(12)?,
        r.get(13)?,
    ))
}

fn finish_attempts(cx: &mut Cx<'_>, updates: Vec<AttemptUpdate>) -> rusqlite::Result<()> {
    let mut events = Vec::with_capacity(updates.len());
    {
        let mut stmt = cx.tx.prepare_cached(
            "UPDATE deliveries SET status = ?1, attempts = attempts + 1, last_attempt_at = ?2, last_status = ?3, last_error = ?4,
                 next_attempt_at = ?5, delivered_at = ?6, claimed_until = 0, claimed_by = NULL
             WHERE id = ?7 AND claimed_by = ?8",
        )?;
        for u in updates {
            let effect = u.effect();
            let (status, code, error, next, delivered) =
                (effect.status, effect.http_status, effect.error, effect.next_attempt_at, effect.delivered_at);
            let changed =
                stmt.execute(params![status.as_str(), u.at, code, error, next, delivered, u.delivery_id, u.worker])?;
            // A worker that lost its lease reports nothing: the attempt of the new holder counts.
            if changed == 1 {
                events.push(u.event());
            }
        }
    }
    cx.append(events)?;
    Ok(())
}

struct ReplayCandidate {
    id: i64,
    record_id: String,
    recipient: String,
    agreement: String,
    digest: [u8; 32],
    body_kept: bool,
    dead: bool,
}

fn replay(cx: &mut Cx<'_>, request: ReplayRequest) -> rusqlite::Result<Vec<ReplayResult>> {
    let candidates: Vec<ReplayCandidate> = {
        let (sql, param) = match &request.target {
            ReplayTarget::One(id) => (
                "SELECT id, record_id, recipient, agreement, body_digest, body IS NOT NULL, status FROM deliveries WHERE id = ?1",
                rusqlite::types::Value::Integer(*id),
            ),
            ReplayTarget::Recipient(r) => (
                "SELECT id, record_id, recipient, agreement, body_digest, body IS NOT NULL, status FROM deliveries
                 WHERE recipient = ?1 AND status = 'dead' ORDER BY id",
                rusqlite::types::Value::Text(r.clone()),
            ),
        };
        cx.tx
            .prepare_cached(sql)?
            .query_map([param], |r| {
                Ok(ReplayCandidate {
                    id: r.get(0)?,
                    record_id: r.get(1)?,
                    recipient: r.get(2)?,
                    agreement: r.get(3)?,
                    digest: r.get::<_, [u8; 32]>(4)?,
                    body_kept: r.get(5)?,
                    dead: r.get::<_, String>(6)? == "dead",
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    if candidates.is_empty()
        && let ReplayTarget::One(id) = request.target
    {
        return Ok(vec![ReplayResult { id, recipient: None, agreement: None, outcome: ReplayOutcome::NotFound }]);
    }
    let mut results = Vec::with_capacity(candidates.len());
    let mut events = Vec::new();
    for ReplayCandidate { id, record_id, recipient, agreement, digest, body_kept, dead } in candidates {
        let outcome = if !dead {
            ReplayOutcome::NotDead
        } else if !body_kept {
            ReplayOutcome::BodyPurged
        } else {
            cx.tx
                .prepare_cached(
                    "UPDATE deliveries SET status = 'queued', next_attempt_at = ?1, claimed_until = 0, claimed_by = NULL,
                         replays = replays + 1 WHERE id = ?2",
                )?
                .execute(params![request.now, id])?;
            events.push(request.event(record_id, &agreement, &recipient, digest));
            ReplayOutcome::Replayed
        };
        results.push(ReplayResult { id, recipient: Some(recipient), agreement: Some(agreement), outcome });
    }
    cx.append(events)?;
    Ok(results)
}

fn purge(cx: &mut Cx<'_>, request: PurgeRequest) -> rusqlite::Result<PurgeReport> {
    let delivered_before = request.now - request.delivered_retention_ms;
    let dead_before = request.now - request.dead_retention_ms;
    let delivery_bodies = cx.tx.execute(
        "UPDATE deliveries SET body = NULL WHERE body IS NOT NULL AND (
             (status = 'delivered' AND delivered_at < ?1) OR (status = 'dead' AND last_attempt_at < ?2))",
        params![delivered_before, dead_before],
    )? as u64;
    // A record's own body goes once it is old enough and none of its deliveries still needs a body.
    let record_bodies = cx.tx.execute(
        "UPDATE records SET body = NULL WHERE body IS NOT NULL AND received_at < ?1 AND NOT EXISTS (
             SELECT 1 FROM deliveries d WHERE d.record_id = records.record_id AND d.body IS NOT NULL)",
        params![delivered_before],
    )? as u64;
    let report = PurgeReport { record_bodies, delivery_bodies };
    if let Some(event) = report.event(request.now) {
        cx.append(vec![event])?;
    }
    Ok(report)
}

const STATE_SQL: &str = "CASE
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.record_id AND d.status IN ('queued', 'retrying')) THEN 'pending'
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.record_id AND d.status = 'dead') THEN 'failed'
    ELSE 'delivered' END";

fn record_views(
    conn: &Connection,
    rows: Vec<(String, String, String, i64, RecordState)>,
) -> rusqlite::Result<Vec<RecordView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT recipient, agreement, status, attempts, last_attempt_at, delivered_at, next_attempt_at, last_error
         FROM deliveries WHERE record_id = ?1 ORDER BY id",
    )?;
    let mut views = Vec::with_capacity(rows.len());
    for (record_id, record_type, schema_version, received_at, state) in rows {
        let deliveries = stmt
            .query_map(params![record_id], |r| {
                let status = r.get::<_, DeliveryStatus>(2)?;
                let pending = matches!(status, DeliveryStatus::Queued | DeliveryStatus::Retrying);
                Ok(DeliveryView {
                    recipient: r.get(0)?,
                    agreement: r.get(1)?,
                    status,
                    attempts: r.get(3)?,
                    last_attempt_at: r.get::<_, Option<i64>>(4)?.map(crate::clock::rfc3339_ms),
                    delivered_at: r.get::<_, Option<i64>>(5)?.map(crate::clock::rfc3339_ms),
                    next_attempt_at: pending.then(|| r.get::<_, i64>(6).map(crate::clock::rfc3339_ms)).transpose()?,
                    last_error: r.get(7)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        views.push(RecordView {
            record_id,
            record_type,
            schema_version,
            received_at: crate::clock::rfc3339_ms(received_at),
            status: state,
            deliveries,
        });
    }
    Ok(views)
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        event: AuditEvent {
            at: r.get(1)?,
            kind: r.get(2)?,
            actor: r.get(3)?,
            record_id: r.get(4)?,
            agreement: r.get(5)?,
            recipient: r.get(6)?,
            body_digest: r.get::<_, Option<[u8; 32]>>(7)?,
            outcome: r.get(8)?,
            reason: r.get(9)?,
            count: r.get(10)?,
        },
        prev_hash: r.get::<_, [u8; 32]>(11)?,
        hash: r.get::<_, [u8; 32]>(12)?,
    })
}

impl Store for SqliteStore {
    fn commit_record(&self, record: NewRecord) -> StoreFuture<'_, CommitOutcome> {
        Box::pin(self.write(1, move |cx| commit_record(cx, record)))
    }

    fn claim_due(&self, claim: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedDelivery>> {
        Box::pin(self.write(0, move |cx| claim_due(cx, &claim)))
    }

    fn finish_attempts(&self, updates: Vec<AttemptUpdate>) -> StoreFuture<'_, ()> {
        Box::pin(self.write(0, move |cx| finish_attempts(cx, updates)))
    }

    fn record(&self, sender: String, record_id: String) -> StoreFuture<'_, Option<RecordView>> {
        Box::pin(self.read(move |conn| {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT r.record_id, r.record_type, r.schema_version, r.received_at, {STATE_SQL} FROM records r
                     WHERE r.record_id = ?1 AND r.sender = ?2"
                ))?
                .query_row(params![record_id, sender], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .optional()?;
            Ok(record_views(conn, row.into_iter().collect())?.pop())
        }))
    }

    fn receipt(&self, record_id: String) -> StoreFuture<'_, Option<StoredReceipt>> {
        Box::pin(self.read(move |conn| {
            conn.prepare_cached(
                "SELECT r.receipt, a.seq, a.hash, a.body_digest FROM records r JOIN audit_log a ON a.seq = r.audit_seq
                 WHERE r.record_id = ?1",
            )?
            .query_row(params![record_id], |r| {
                Ok(StoredReceipt {
                    receipt: Bytes::from(r.get::<_, Vec<u8>>(0)?),
                    stamp: AuditStamp { seq: r.get(1)?, hash: r.get::<_, [u8; 32]>(2)? },
                    body_digest: r.get::<_, Option<[u8; 32]>>(3)?,
                })
            })
            .optional()
        }))
    }

    fn list_records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<RecordView>> {
        Box::pin(self.read(move |conn| {
            let (before_at, before_id) = query.before.clone().map_or((None, None), |(at, id)| (Some(at), Some(id)));
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT * FROM (
                        SELECT r.record_id, r.record_type, r.schema_version, r.received_at, {STATE_SQL} AS state FROM records r
                        WHERE r.sender = ?1 AND (?2 IS NULL OR r.received_at >= ?2)
                          AND (?3 IS NULL OR (r.received_at, r.record_id) < (?3, ?4))
                        ORDER BY r.received_at DESC, r.record_id DESC
                     ) WHERE (?5 IS NULL OR state = ?5) LIMIT ?6"
                ))?
                .query_map(
                    params![
                        query.sender,
                        query.since,
                        before_at,
                        before_id,
                        query.status.map(|s| match s {
                            RecordState::Pending => "pending",
                            RecordState::Delivered => "delivered",
                            RecordState::Failed => "failed",
                        }),
                        query.limit as i64
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            record_views(conn, rows)
        }))
    }

    fn backlog(&self) -> StoreFuture<'_, Vec<RecipientBacklog>> {
        Box::pin(self.read(|conn| {
            conn.prepare_cached(
                "SELECT recipient,
                        SUM(status IN ('queued', 'retrying')),
                        MIN(CASE WHEN status IN ('queued', 'retrying') THEN created_at END),
                        SUM(status = 'dead')
                 FROM deliveries WHERE status IN ('queued', 'retrying', 'dead') GROUP BY recipient",
            )?
            .query_map([], |r| {
                Ok(RecipientBacklog {
                    recipient: r.get(0)?,
                    pending: r.get(1)?,
                    oldest_pending_at: r.get(2)?,
                    dead: r.get(3)?,
                })
            })?
            .collect()
        }))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        // Open connections keep working on a file that was deleted or moved away (and whatever
        // they wrote would be lost at the next start): the file must still be at its path.
        let path = self.readers.path.clone();
        Box::pin(async move {
            if !tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
                return Err(StoreError::new(StoreErrorKind::Unavailable, "the database file is not at its path"));
            }
            self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(()))).await
        })
    }

    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn append_audit(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, Vec<AuditStamp>> {
        Box::pin(self.write(0, move |cx| cx.append(events)))
    }

    fn audit_head(&self) -> StoreFuture<'_, Option<AuditStamp>> {
        Box::pin(self.read(|conn| {
            conn.prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
                .query_row([], |r| Ok(AuditStamp { seq: r.get(0)?, hash: r.get::<_, [u8; 32]>(1)? }))
                .optional()
        }))
    }

    fn audit_entries(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(self.read(move |conn| {
            conn.prepare_cached(
                "SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash
                 FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?
            .query_map(params![after, limit as i64], audit_row)?
            .collect()
        }))
    }

    fn add_checkpoint(&self, c: Checkpoint) -> StoreFuture<'_, ()> {
        Box::pin(self.write(0, move |cx| {
            cx.tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO audit_checkpoints (seq, key_id, hash, at, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![c.seq, c.key_id, &c.hash[..], c.at, c.signature])?;
            Ok(())
        }))
    }

    fn checkpoints(&self) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(self.read(|conn| {
            conn.prepare_cached("SELECT seq, key_id, hash, at, signature FROM audit_checkpoints ORDER BY seq, key_id")?
                .query_map([], |r| {
                    Ok(Checkpoint {
                        seq: r.get(0)?,
                        key_id: r.get(1)?,
                        hash: r.get::<_, [u8; 32]>(2)?,
                        at: r.get(3)?,
                        signature: r.get(4)?,
                    })
                })?
                .collect()
        }))
    }

    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<'_, Vec<DeliveryAdminView>> {
        Box::pin(self.read(move |conn| {
            conn.prepare_cached(
                "SELECT d.id, d.record_id, r.sender, r.record_type, d.recipient, d.agreement, d.status, d.attempts, d.replays,
                        d.created_at, d.last_attempt_at, d.last_status, d.last_error, d.body IS NOT NULL
                 FROM deliveries d JOIN records r ON r.record_id = d.record_id
                 WHERE (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.recipient = ?2) AND d.id > ?3
                 ORDER BY d.id LIMIT ?4",
            )?
            .query_map(
                params![
                    filter.status.map(DeliveryStatus::as_str),
                    filter.recipient,
                    filter.after_id.unwrap_or(0),
                    filter.limit as i64
                ],
                |r| {
                    Ok(DeliveryAdminView {
                        id: r.get(0)?,
                        record_id: r.get(1)?,
                        sender: r.get(2)?,
                        record_type: r.get(3)?,
                        recipient: r.get(4)?,
                        agreement: r.get(5)?,
                        status: r.get::<_, DeliveryStatus>(6)?,
                        attempts: r.get(7)?,
                        replays: r.get(8)?,
                        created_at: crate::clock::rfc3339_ms(r.get(9)?),
                        last_attempt_at: r.get::<_, Option<i64>>(10)?.map(crate::clock::rfc3339_ms),
                        last_status: r.get(11)?,
                        last_error: r.get(12)?,
                        body_kept: r.get(13)?,
                    })
                },
            )?
            .collect()
        }))
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, Vec<ReplayResult>> {
        Box::pin(self.write(0, move |cx| replay(cx, request)))
    }

    fn purge(&self, request: PurgeRequest) -> StoreFuture<'_, PurgeReport> {
        Box::pin(self.write(0, move |cx| purge(cx, request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_at(dir: &Path) -> SqliteStore {
        let options = SqliteOptions {
            path: dir.join("s.sqlite"),
            queue: 64,
            max_batch: 16,
            commit_timeout: Duration::from_secs(5),
        };
        SqliteStore::open(options, Metrics::new()).unwrap()
    }

    async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Arc::new(open_at(dir.path())), dir)
    }

    crate::store_conformance!(store());

    #[tokio::test]
    async fn migrations_run_once_and_reopen_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_at(dir.path()));
        let s = open_at(dir.path());
        s.ping().await.unwrap();
        let conn = Connection::open(dir.path().join("s.sqlite")).unwrap();
        let versions: i64 = conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(versions, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_store_opened_read_only_reads_and_refuses_writes_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_at(dir.path());
        s.append_audit(vec![AuditEvent::new(1, "config.loaded", "gateway", "loaded")]).await.unwrap();
        drop(s);
        // What `passerelle backup` leaves: one file in rollback-journal mode.
        let path = dir.path().join("s.sqlite");
        let conn = Connection::open(&path).unwrap();
        // The writer and checkpoint threads let go of the file shortly after the store is dropped.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = conn.pragma_update(None, "journal_mode", "DELETE") {
            assert!(Instant::now() < deadline, "{e}");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(conn);
        let before = std::fs::read(&path).unwrap();

        let s = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(s.audit_entries(0, 10).await.unwrap().len(), 1);
        assert!(matches!(
            s.append_audit(vec![AuditEvent::new(2, "config.loaded", "gateway", "loaded")]).await,
            Err(e) if e.kind() == StoreErrorKind::Unavailable
        ));
        drop(s);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s.sqlite")]);
        assert!(SqliteStore::open_read_only(&dir.path().join("absent.sqlite")).is_err());
        assert!(!dir.path().join("absent.sqlite").exists());
    }
}
