//! The embedded engine: one SQLite file in WAL mode, fsync on every commit, group commit.
//!
//! One writer thread owns the only writing connection and runs the shared group commit
//! (`store::writer`) on a runtime of its own; readers use their own connections from a small
//! pool. What this engine adds is only how SQLite opens, binds values, reads columns and
//! checkpoints its log (`batch` holds the writer's transaction and its statements).
//!
//! The audit chain's append is serialised by the transaction: each batch takes SQLite's write
//! lock (`BEGIN IMMEDIATE`) and reads the chain head once under it, so another process writing
//! the same file (a command-line replay) still extends one chain.
//!
//! **Invariant:** a caller's future resolves only after the transaction carrying its operation
//! has committed (or failed and rolled back).

mod batch;
mod checkpoint;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::keys::{self, Keks, KeyRing, KeySource, NewDataKey, PlainBody, RewrappedKey, SealedBody, StoredKey};
use super::sql::{self, Column, Dialect, Param, Row, Sql};
use super::writer::{Queue, Writer};
use super::*;
use crate::audit::{AuditEntry, AuditEvent, AuditStamp, Checkpoint};
use crate::telemetry::Metrics;
pub use batch::SCHEMA_VERSION;
use checkpoint::{Checkpoints, LOG_SIZE_LIMIT};

/// Settings of the SQLite engine.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub queue: usize,
    pub max_batch: usize,
    pub commit_timeout: Duration,
    /// How long a shallow batch waits for more writes while the writer is busy (zero: never).
    pub linger: Duration,
    /// The key-encryption keys bodies are sealed under; `None` stores them in plaintext.
    pub encryption: Option<Arc<Keks>>,
    /// The key that signs each group commit's receipt tree; `None`: no tree is signed, and
    /// receipts are signed one by one after the commit.
    pub receipts: Option<Arc<crate::audit::keys::SigningKey>>,
}

/// The statements whose text is SQLite's own. The writer holds the write lock for its whole
/// transaction, so no row is locked apart (and no two writers run side by side); a list of ids
/// is a JSON array read with `json_each`.
const DIALECT: Dialect = Dialect {
    audit_head: "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    chain_head: "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    move_head: None,
    claim_due: sql::claim_due!(""),
    claim_head: sql::claim_head!(""),
    lease: sql::lease!("IN (SELECT value FROM json_each($3))"),
    replay_one: sql::replay_one!(""),
    replay_recipient: sql::replay_recipient!(""),
    requeue: sql::requeue!("IN (SELECT value FROM json_each($2))"),
    // By id: otherwise SQLite walks the recipient's whole pending index for a few ids.
    held: sql::held!("deliveries NOT INDEXED", "IN (SELECT value FROM json_each($3))", ""),
    lock_records: None,
    completed: sql::completed!("IN (SELECT value FROM json_each($1))"),
};

/// The SQLite store.
pub struct SqliteStore {
    /// The writer's queue; `None` when the store is opened read-only: there is no writer, and
    /// writes are refused.
    queue: Option<Queue>,
    keys: KeyRing,
    readers: Arc<ReadPool>,
    /// The checkpoint thread, stopped when the store goes away; `None` read-only.
    _checkpoints: Option<Checkpoints>,
}

struct ReadPool {
    path: PathBuf,
    /// Connections are opened read-only and leave the file exactly as it is (see
    /// [`SqliteStore::open_read_only`]).
    read_only: bool,
    /// Idle read connections; at most a few are kept, more are opened under load.
    idle: Mutex<Vec<Conn>>,
}

impl ReadPool {
    fn connect(&self) -> rusqlite::Result<Conn> {
        Ok(Conn::new(if self.read_only { open_read_only(&self.path)? } else { open(&self.path)? }))
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
    // What a statement deletes from a page is overwritten with zeros there, at no extra I/O: a
    // destroyed data key leaves no copy of its wrapping in its page's free space.
    conn.pragma_update(None, "secure_delete", "FAST")?;
    // A log started over is cut back to this, so a burst does not leave its length on disk.
    conn.pragma_update(None, "journal_size_limit", LOG_SIZE_LIMIT)?;
    // Room for every statement a connection runs, so none is prepared twice.
    conn.set_prepared_statement_cache_capacity(32);
    plans_ignore_values(&conn)?;
    Ok(conn)
}

/// Plans that do not depend on the values bound (SQLite's query planner stability guarantee).
/// Without it, SQLite prepares a statement again whenever a value its plan looked at is bound
/// anew, such as a `LIMIT $3`: every delivery worker's claim was compiled again each round,
/// 5 % of the store writer's time while deliveries drained. No statement here needs a plan
/// chosen by value: the partial indexes' conditions are written in the statements themselves.
fn plans_ignore_values(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(|_| ())
}

/// A connection that can only read, and changes nothing in the file: not its journal mode, not
/// its schema. It never creates the file.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    plans_ignore_values(&conn)?;
    Ok(conn)
}

/// A connection the shared reads, claims and writer run their statements on. Its futures are
/// ready at once: SQLite does its I/O inside each call, on the thread that makes it. The writer's
/// also keeps the ids of the deliveries its open transaction inserted.
pub(super) struct Conn(Connection, Vec<i64>);

impl Conn {
    fn new(conn: Connection) -> Self {
        Conn(conn, Vec::new())
    }
}

impl Sql for Conn {
    const DIALECT: Dialect = DIALECT;

    async fn query<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        mut read: impl FnMut(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = self.0.prepare_cached(sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut values = Vec::new();
        while let Some(row) = rows.next()? {
            values.push(read(row)?);
        }
        Ok(values)
    }

    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Ok(self.0.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))? as u64)
    }
}

/// What a SQLite column holds, as it is stored.
impl Row for rusqlite::Row<'_> {
    fn column(&self, i: usize) -> Result<Column<'_>, StoreError> {
        Ok(match self.get_ref(i)? {
            ValueRef::Null => Column::Null,
            ValueRef::Integer(v) => Column::Int(v),
            ValueRef::Text(text) => Column::Text(
                std::str::from_utf8(text)
                    .map_err(|e| StoreError::corrupt(format!("column {i} is not UTF-8")).caused_by(e))?,
            ),
            ValueRef::Blob(bytes) => Column::Bytes(bytes),
            ValueRef::Real(_) => return Err(StoreError::corrupt(format!("column {i} holds a real number"))),
        })
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Null => ToSqlOutput::Owned(Value::Null),
            Param::Int(v) => ToSqlOutput::Owned(Value::Integer(v)),
            Param::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Param::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            // A JSON array, which the dialect's statements read with `json_each`.
            Param::Ids(ids) => {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                ToSqlOutput::Owned(Value::Text(format!("[{}]", list.join(","))))
            }
        })
    }
}

/// A read to run on a pooled connection.
type Read<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + 'c>>;

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store and starts its writer thread.
    pub fn open(options: SqliteOptions, metrics: Metrics) -> Result<Self, StoreError> {
        let unavailable = |context: String| StoreError::new(StoreErrorKind::Unavailable, context);
        // Created owner-only before SQLite sees it, so its -wal and -shm files are too.
        crate::secrets::create_private_file(&options.path)
            .map_err(|e| unavailable(format!("cannot create {}", options.path.display())).caused_by(e))?;
        let mut conn = open(&options.path)?;
        batch::migrate(&mut conn)?;
        // Checkpoints copy the log into the database file and fsync it: on the writer they would
        // stall every commit queued behind them, so another thread does them, and the writer
        // only the tail of a long log (see `checkpoint`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = Checkpoints::start(options.path.clone(), &mut conn)
            .map_err(|e| unavailable("cannot start the checkpoint thread".into()).caused_by(e))?;
        // The shared writer is async; on its own thread it runs on a runtime of its own, which
        // only waits for the queue (SQLite's calls block that thread, and no other).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| unavailable("cannot start the writer's runtime".into()).caused_by(e))?;
        let (queue, rx) = Queue::new(options.queue, options.commit_timeout);
        let writer = Writer::new(Conn::new(conn), metrics, options.max_batch, options.linger, options.receipts)
            .claiming_in_commit_order();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || runtime.block_on(writer.run(rx)))
            .map_err(|e| unavailable("cannot start the writer thread".into()).caused_by(e))?;
        Ok(SqliteStore {
            queue: Some(queue),
            keys: KeyRing::new(options.encryption),
            _checkpoints: Some(checkpoints),
            readers: Arc::new(ReadPool { path: options.path, read_only: false, idle: Mutex::new(Vec::new()) }),
        })
    }

    /// Opens an existing store file to read it only: no writer thread, no checkpoints, no
    /// migration, nothing written to the file (every write answers
    /// [`StoreErrorKind::Unavailable`]). This is how a copy made by `passerelle backup` is
    /// verified before anyone uses it; the file must be in rollback-journal mode, as the backup
    /// leaves it, since reading a file in WAL mode needs its `-shm` index.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = open_read_only(path)
            .map_err(|e| StoreError::from(e).with_context(format!("cannot open {}", path.display())))?;
        batch::check_version(&conn, path)?;
        Ok(SqliteStore {
            queue: None,
            keys: KeyRing::plaintext(),
            _checkpoints: None,
            readers: Arc::new(ReadPool {
                path: path.to_path_buf(),
                read_only: true,
                idle: Mutex::new(vec![Conn::new(conn)]),
            }),
        })
    }

    fn queue(&self) -> Result<&Queue, StoreError> {
        self.queue.as_ref().ok_or_else(|| StoreError::new(StoreErrorKind::Unavailable, "the store is open read-only"))
    }

    /// Runs `read` on a pooled connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl for<'c> FnOnce(&'c mut Conn) -> Read<'c, T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => pool.connect()?,
            };
            // Ready at once (see `Conn`): this only unwraps the answer.
            let result = tokio::runtime::Handle::current().block_on(read(&mut conn));
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

impl Store for SqliteStore {
    fn commit_record(&self, record: NewRecord) -> StoreFuture<'_, CommitOutcome> {
        Box::pin(async move {
            let record = self.keys.seal(self, record).await?;
            self.queue()?.commit_record(record).await
        })
    }

    fn claim_due(&self, claim: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedDelivery>> {
        Box::pin(async move { self.keys.open(self, self.queue()?.claim_due(claim).await?).await })
    }

    fn finish_attempts(&self, updates: Vec<AttemptUpdate>) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.queue()?.finish_attempts(updates).await })
    }

    fn settle(&self, settlement: Settlement) -> StoreFuture<'_, Settled> {
        Box::pin(async move { self.queue()?.settle(settlement).await })
    }

    fn record(&self, sender: String, record_id: String) -> StoreFuture<'_, Option<RecordView>> {
        Box::pin(self.read(move |c| Box::pin(read::record(c, sender, record_id))))
    }

    fn receipt(&self, record_id: String) -> StoreFuture<'_, Option<StoredReceipt>> {
        Box::pin(self.read(move |c| Box::pin(read::receipt(c, record_id))))
    }

    fn list_records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<RecordView>> {
        Box::pin(self.read(move |c| Box::pin(read::list_records(c, query))))
    }

    fn notices_due(&self, scan: NoticeScan) -> StoreFuture<'_, Vec<NoticeDue>> {
        Box::pin(self.read(move |c| Box::pin(read::notices_due(c, scan))))
    }

    fn backlog(&self) -> StoreFuture<'_, Vec<RecipientBacklog>> {
        Box::pin(self.read(|c| Box::pin(read::backlog(c))))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        // Open connections keep working on a file that was deleted or moved away (and whatever
        // they wrote would be lost at the next start): the file must still be at its path.
        let path = self.readers.path.clone();
        Box::pin(async move {
            if !tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
                return Err(StoreError::new(StoreErrorKind::Unavailable, "the database file is not at its path"));
            }
            self.read(|c| Box::pin(read::ping(c))).await
        })
    }

    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn append_audit(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, Vec<AuditStamp>> {
        Box::pin(async move { self.queue()?.append_audit(events).await })
    }

    fn audit_head(&self) -> StoreFuture<'_, Option<AuditStamp>> {
        Box::pin(self.read(|c| Box::pin(read::audit_head(c))))
    }

    fn audit_entries(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(self.read(move |c| Box::pin(read::audit_entries(c, after, limit))))
    }

    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.queue()?.add_checkpoint(checkpoint).await })
    }

    fn checkpoints(&self) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(self.read(|c| Box::pin(read::checkpoints(c))))
    }

    fn receipt_trees(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<StoredTree>> {
        Box::pin(self.read(move |c| Box::pin(read::receipt_trees(c, after, limit))))
    }

    fn tree_receipts(&self, tree: StoredTree) -> StoreFuture<'_, Vec<StoredReceipt>> {
        Box::pin(self.read(move |c| Box::pin(read::tree_receipts(c, tree))))
    }

    fn inclusion(&self, seq: i64) -> StoreFuture<'_, Option<Inclusion>> {
        Box::pin(self.read(move |c| Box::pin(read::inclusion(c, seq))))
    }

    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<'_, Vec<DeliveryAdminView>> {
        Box::pin(self.read(move |c| Box::pin(read::deliveries(c, filter))))
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, Vec<ReplayResult>> {
        Box::pin(async move { self.queue()?.replay(request).await })
    }

    fn purge(&self, request: PurgeRequest) -> StoreFuture<'_, PurgeReport> {
        Box::pin(async move {
            let report = self.queue()?.purge(request).await?;
            self.keys.forget_ended(request.now - keys::SHRED_GRACE_MS);
            Ok(report)
        })
    }

    fn access(&self, query: AccessQuery) -> StoreFuture<'_, Vec<Disclosure>> {
        Box::pin(self.read(move |c| Box::pin(read::access(c, query))))
    }

    fn find_records(&self, search: RecordSearch) -> StoreFuture<'_, Vec<RecordFound>> {
        Box::pin(self.read(move |c| Box::pin(read::find_records(c, search))))
    }

    fn attempts(&self, record_id: String) -> StoreFuture<'_, Vec<AttemptView>> {
        Box::pin(self.read(move |c| Box::pin(read::attempts(c, record_id))))
    }

    fn audit_naming(&self, record_id: String, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(self.read(move |c| Box::pin(read::audit_naming(c, record_id, limit))))
    }

    fn audit_range(&self, range: AuditRange) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(self.read(move |c| Box::pin(read::audit_range(c, range))))
    }

    fn checkpoints_between(&self, first: i64, last: i64) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(self.read(move |c| Box::pin(read::checkpoints_between(c, first, last))))
    }

    fn stats(&self, query: StatsQuery) -> StoreFuture<'_, Stats> {
        Box::pin(self.read(move |c| Box::pin(read::stats(c, query))))
    }

    fn body(&self, body: BodyRef) -> StoreFuture<'_, Option<Option<Bytes>>> {
        Box::pin(async move {
            let Some(stored) = self.read(move |c| Box::pin(read::body(c, body))).await? else { return Ok(None) };
            self.keys.open_body(self, stored).await.map(Some)
        })
    }

    keys::key_methods!();
}

impl KeySource for SqliteStore {
    fn stored_key(&self, id: String) -> StoreFuture<'_, Option<StoredKey>> {
        Box::pin(self.read(move |c| Box::pin(read::stored_key(c, id))))
    }

    fn add_key(&self, key: NewDataKey) -> StoreFuture<'_, StoredKey> {
        Box::pin(async move { self.queue()?.add_key(key).await })
    }

    fn plain_bodies(&self, limit: usize) -> StoreFuture<'_, Vec<PlainBody>> {
        Box::pin(self.read(move |c| Box::pin(read::plain_bodies(c, limit))))
    }

    fn write_sealed(&self, bodies: Vec<SealedBody>, at: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move { self.queue()?.write_sealed(bodies, at).await })
    }

    fn keys_wrapped_elsewhere(&self, kek_id: String, limit: usize) -> StoreFuture<'_, Vec<StoredKey>> {
        Box::pin(self.read(move |c| Box::pin(read::keys_wrapped_elsewhere(c, kek_id, limit))))
    }

    fn write_rewrapped(&self, keys: Vec<RewrappedKey>, at: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move { self.queue()?.write_rewrapped(keys, at).await })
    }

    fn key_census(&self) -> StoreFuture<'_, KeyCensus> {
        Box::pin(self.read(|c| Box::pin(read::key_census(c))))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rusqlite::params;

    use super::*;

    fn open_at(dir: &Path) -> SqliteStore {
        open_with(dir, Metrics::new())
    }

    /// A store that reports to `metrics`.
    fn open_with(dir: &Path, metrics: Metrics) -> SqliteStore {
        let options = SqliteOptions {
            path: dir.join("s.sqlite"),
            queue: 64,
            max_batch: 16,
            commit_timeout: Duration::from_secs(5),
            linger: Duration::ZERO,
            encryption: Some(keys::test_keks()),
            receipts: Some(crate::store::conformance::receipt_key()),
        };
        SqliteStore::open(options, metrics).unwrap()
    }

    /// A store whose writer lingers for `linger` when busy, its batches counted in `metrics`.
    fn lingering(dir: &Path, metrics: Metrics, linger: Duration) -> Arc<SqliteStore> {
        let options = SqliteOptions {
            path: dir.join("s.sqlite"),
            queue: 64,
            max_batch: 512,
            commit_timeout: Duration::from_secs(5),
            linger,
            encryption: None,
            receipts: None,
        };
        Arc::new(SqliteStore::open(options, metrics).unwrap())
    }

    /// Commits `record(n)` in a task of its own.
    fn commit(store: &Arc<SqliteStore>, n: usize) -> tokio::task::JoinHandle<Result<CommitOutcome, StoreError>> {
        let store = store.clone();
        tokio::spawn(async move { store.commit_record(crate::store::conformance::record(n, &["r"])).await })
    }

    #[tokio::test]
    async fn an_idle_writer_commits_a_lone_record_at_once_whatever_its_linger() {
        // A linger longer than the commit timeout: a lone record it delayed would time out.
        let dir = tempfile::tempdir().unwrap();
        let store = lingering(dir.path(), Metrics::new(), Duration::from_secs(60));
        for n in 1..=3 {
            commit(&store, n).await.unwrap().expect("a lone record is committed at once");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_never_linger_even_when_the_writer_is_busy() {
        // A linger longer than the commit timeout: a claim it delayed would time out.
        let dir = tempfile::tempdir().unwrap();
        let store = lingering(dir.path(), Metrics::new(), Duration::from_secs(60));
        let blocker = rusqlite::Connection::open(dir.path().join("s.sqlite")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let first = commit(&store, 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Two workers' claims queue behind the held batch: when it commits, the writer is busy.
        let claims: Vec<_> = ["w1", "w2"]
            .map(|worker| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.claim_due(crate::store::conformance::claim(worker, 1, 2_000, false)).await },
                )
            })
            .into_iter()
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        blocker.execute_batch("COMMIT").unwrap();
        first.await.unwrap().unwrap();
        for claim in claims {
            claim.await.unwrap().expect("a claim is committed without a linger");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_reads_after_the_records_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = lingering(dir.path(), Metrics::new(), Duration::ZERO);
        // Another connection holds the write lock, so what follows the first record queues.
        let blocker = rusqlite::Connection::open(dir.path().join("s.sqlite")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = move || blocker.execute_batch("COMMIT").unwrap();
        crate::store::conformance::a_claim_reads_after_the_records_of_its_batch(store, release).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_writer_lets_a_shallow_batch_gather_what_arrives_within_its_linger() {
        for linger in [Duration::from_secs(2), Duration::ZERO] {
            let (dir, metrics) = (tempfile::tempdir().unwrap(), Metrics::new());
            let store = lingering(dir.path(), metrics.clone(), linger);
            // Another connection holds the write lock, so the writer is stuck on its first batch
            // while three more records queue behind it: when it comes back, it is busy.
            let blocker = rusqlite::Connection::open(dir.path().join("s.sqlite")).unwrap();
            blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
            let first = commit(&store, 1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let queued: Vec<_> = (2..=4).map(|n| commit(&store, n)).collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
            blocker.execute_batch("COMMIT").unwrap();
            // Two more arrive while those three are lingering (if the writer lingers).
            tokio::time::sleep(Duration::from_millis(300)).await;
            let late: Vec<_> = (5..=6).map(|n| commit(&store, n)).collect();
            for handle in std::iter::once(first).chain(queued).chain(late) {
                handle.await.unwrap().unwrap();
            }
            let sizes = &metrics.store_commit_batch_size;
            assert_eq!(sizes.get_sample_sum(), 6.0, "every record is committed once");
            let batches = sizes.get_sample_count();
            if linger.is_zero() {
                // The first alone, the three queued, then the late ones in one or two more.
                assert!(batches >= 3, "without a linger the late records commit apart: {batches} batches");
            } else {
                assert_eq!(batches, 2, "the first alone (the writer was idle), then the five together");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_never_pauses_still_has_its_log_started_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = lingering(dir.path(), Metrics::new(), Duration::ZERO);
        let (path, log) = (dir.path().join("s.sqlite"), dir.path().join("s.sqlite-wal"));
        // In unit tests the writer asks the checkpoint thread at 256 frames (1 MiB), copies a
        // tail of 64 frames itself, and the whole log at 512 (2 MiB).
        // 2,000 records, always 16 in flight: the writer never waits for work.
        let mut in_flight = std::collections::VecDeque::new();
        let mut longest = 0;
        for n in 1..=2_000 {
            in_flight.push_back(commit(&store, n));
            if in_flight.len() == 16 {
                in_flight.pop_front().unwrap().await.unwrap().unwrap();
                longest = longest.max(std::fs::metadata(&log).map_or(0, |m| m.len()));
            }
        }
        for handle in in_flight {
            handle.await.unwrap().unwrap();
        }
        let database = std::fs::metadata(&path).unwrap().len();
        // Without the writer's catch-up it grew with every commit: 30 MiB when this test was
        // written, beside a database the checkpoint thread had not yet copied anything into.
        assert!(longest < 4 << 20, "the log reached {longest} bytes beside a database of {database}");
    }

    async fn store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Arc::new(open_at(dir.path())), dir)
    }

    crate::store_conformance!(store());

    #[tokio::test]
    async fn a_late_answer_in_the_holders_batch_is_not_audited() {
        let (store, _dir) = store().await;
        crate::store::writer::a_late_answer_in_the_holders_batch_is_not_audited(store.as_ref()).await;
    }

    #[tokio::test]
    async fn a_claim_is_witnessed_where_it_read_among_the_commits() {
        let (store, _dir) = store().await;
        crate::store::conformance::a_claim_is_witnessed_where_it_read_among_the_commits(store.as_ref(), true).await;
    }

    #[tokio::test]
    async fn the_writer_reports_the_time_it_is_busy() {
        let (dir, metrics) = (tempfile::tempdir().unwrap(), Metrics::new());
        let store = open_with(dir.path(), metrics.clone());
        crate::store::conformance::the_writer_reports_the_time_it_is_busy(&store, &metrics).await;
    }

    #[tokio::test]
    async fn a_record_is_counted_complete_once_by_its_last_delivery() {
        let (dir, metrics) = (tempfile::tempdir().unwrap(), Metrics::new());
        let store = open_with(dir.path(), metrics.clone());
        crate::store::conformance::a_record_is_counted_complete_once_by_its_last_delivery(&store, &metrics).await;
    }

    /// Every statement both engines run, and SQLite's own, numbers its parameters `$1, $2, …` in
    /// order of first appearance: SQLite binds by that order, PostgreSQL by the number.
    #[test]
    fn shared_statements_bind_their_parameters_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("s.sqlite")).unwrap();
        batch::migrate(&mut conn).unwrap();
        for sql in sql::SHARED.iter().chain(&DIALECT.statements()).chain(batch::STATEMENTS) {
            let statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
            for i in 1..=statement.parameter_count() {
                let expected = format!("${i}");
                assert_eq!(statement.parameter_name(i), Some(expected.as_str()), "{sql}");
            }
        }
    }

    /// A statement's plan does not depend on the values bound to it (SQLite's query planner
    /// stability guarantee), so running it again with other values does not prepare it again:
    /// a delivery worker's claim, its `LIMIT` bound each time, was prepared anew every round.
    #[test]
    fn statements_are_not_prepared_again_for_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("s.sqlite")).unwrap();
        batch::migrate(&mut conn).unwrap();
        let mut claim = conn.prepare_cached(DIALECT.claim_due).unwrap();
        for limit in [5, 7, 9] {
            claim.query(rusqlite::params!["r", 1_000, limit]).unwrap().next().unwrap();
        }
        assert_eq!(claim.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// SQLite's plan for `sql`, one step per line.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let mut rows = statement.raw_query();
        let mut steps = String::new();
        while let Some(row) = rows.next().unwrap() {
            steps.push_str(&row.get::<_, String>(3).unwrap());
            steps.push('\n');
        }
        steps
    }

    /// No statement walks a whole table that grows with traffic: each reaches its rows through
    /// an index, and the few whose wrong index would cost a walk of a recipient's backlog or of
    /// every delivery ever attempted use the one meant for them. SQLite has no statistics to
    /// go by, so a new index can change a plan the statement's text did not.
    #[test]
    fn every_statement_reaches_its_rows_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("s.sqlite")).unwrap();
        batch::migrate(&mut conn).unwrap();
        // A derived table, a list of ids or the data keys (one per agreement and day) may be read
        // whole, and the chain head is the audit log's last row by rowid (a backward scan that
        // stops at one).
        let whole = ["p", "b", "data_keys", "CONSTANT ROW"];
        for sql in sql::SHARED.iter().chain(&DIALECT.statements()).chain(batch::STATEMENTS) {
            let plan = plan(&conn, sql);
            let head = sql.ends_with("FROM audit_log ORDER BY seq DESC LIMIT 1");
            for step in plan.lines() {
                if let Some(table) = step.strip_prefix("SCAN ") {
                    let derived =
                        table.starts_with("(subquery-") || table.starts_with("json_each ") || whole.contains(&table);
                    let read = table.contains(" USING ") || (head && table == "audit_log");
                    assert!(derived || read, "{step}\n{plan}\n{sql}");
                }
            }
        }
        for (sql, step) in [
            (DIALECT.held, "SEARCH deliveries USING INTEGER PRIMARY KEY (rowid=?)"),
            (DIALECT.claim_due, "SEARCH d USING INDEX deliveries_pending (recipient=? AND next_attempt_at<?)"),
            (sql::PURGE_DELIVERED, "SEARCH deliveries USING INDEX deliveries_delivered_with_body (delivered_at<?)"),
            (sql::PURGE_DEAD, "SEARCH deliveries USING INDEX deliveries_dead_with_body (last_attempt_at<?)"),
            (sql::NOTICES_DUE, "SEARCH t USING INDEX delivery_attempts_by_time (at>?)"),
            (sql::ACCESS, "CORRELATED SCALAR SUBQUERY 1"),
            (sql::ACCESS, "SEARCH a USING INDEX audit_by_record (record_id=?)"),
            (sql::BACKLOG, "SCAN deliveries USING COVERING INDEX deliveries_pending"),
            (sql::BACKLOG, "SCAN deliveries USING COVERING INDEX deliveries_dead"),
            (DIALECT.replay_recipient, "SEARCH deliveries USING INDEX deliveries_dead (recipient=?)"),
        ] {
            let plan = plan(&conn, sql);
            assert!(plan.lines().any(|s| s == step), "expected `{step}` in\n{plan}\n{sql}");
        }
        // The statistics' agreement filter looks among each record's own deliveries.
        let stats = plan(&conn, sql::STATS_ACCEPTED);
        assert_eq!(stats.matches("SEARCH d USING INDEX deliveries_by_record (record_id=?)").count(), 2, "{stats}");
    }

    #[tokio::test]
    async fn migrations_run_once_and_reopen_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_at(dir.path()));
        let s = open_at(dir.path());
        s.ping().await.unwrap();
        let conn = Connection::open(dir.path().join("s.sqlite")).unwrap();
        let versions: i64 = conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(versions, batch::SCHEMA_VERSION);
    }

    /// Schema version 11 moves the terms each delivery held into one row per distinct terms,
    /// and the access record reads the same disclosures after as before.
    #[tokio::test]
    async fn the_terms_deliveries_held_are_stored_once_by_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        batch::migrate_to(&mut conn, 10).unwrap();
        let subject = [0xa_u8; 32];
        let fields = |to: &str| format!("[\"/{to}\"]");
        for n in 1..=2 {
            let id = format!("r{n}");
            conn.execute(
                "INSERT INTO records (record_id, sender, record_type, schema_version, received_at, body_sha256, receipt, audit_seq)
                 VALUES (?1, 's', 't', '1.0', ?2, x'00', x'00', ?2)",
                params![id, n],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO record_subjects (subject, record_id, received_at) VALUES (?1, ?2, ?3)",
                params![&subject[..], id, n],
            )
            .unwrap();
            for (to, purpose, fields) in
                [("q", Some("Pay"), Some(fields("q"))), ("r", Some("Plan"), Some(fields("r"))), ("x", None, None)]
            {
                conn.execute(
                    "INSERT INTO deliveries (record_id, recipient, agreement, ordered, body_digest, status, created_at, next_attempt_at, purpose, fields)
                     VALUES (?1, ?2, 'a', 0, x'00', 'queued', ?3, ?3, ?4, ?5)",
                    params![id, to, n, purpose, fields],
                )
                .unwrap();
            }
        }
        drop(conn);

        let s = open_at(dir.path());
        crate::store::conformance::the_terms_before_version_11_read_the_same(&s, subject).await;
        let conn = Connection::open(&path).unwrap();
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM disclosure_terms", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 2, "one row per distinct terms");
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('deliveries')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(columns.contains(&"terms_id".to_owned()) && !columns.iter().any(|c| c == "purpose" || c == "fields"));
        // New deliveries with terms already stored name the same rows.
        s.commit_record(crate::store::conformance::record(3, &["r"])).await.unwrap();
        s.commit_record(crate::store::conformance::record(4, &["r"])).await.unwrap();
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM disclosure_terms", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 3, "the conformance record's terms, once for both records");
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
