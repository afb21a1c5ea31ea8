//! The PostgreSQL engine: the same tables and the same contract as SQLite, for several gateway
//! instances sharing one store.
//!
//! Writes that extend the audit chain (records, attempt results, replays, purges, appended
//! entries, checkpoints) go through one writer task per instance, the shared group commit
//! (`store::writer`), on a connection of its own (`batch`). The chain stays one chain across
//! instances because each such transaction locks the `audit_head` row (`FOR UPDATE`), once per
//! batch, and moves it forward before committing. Instances take turns on that row, so it is
//! held as briefly as the batch allows: everything that does not touch the chain (attempt
//! results, completions) runs before it; the lock and the lookup of the batch's idempotency keys
//! go in one round trip; the batch's rows, its receipt tree, the head's move and the commit go in
//! a second (pipelined: `batch::WriterConnection::send_pending`), then the commit's fsync.
//!
//! Claims do not touch the chain: they have a group commit of their own, on a second
//! connection, so the claims of every worker of an instance share one transaction; `FOR UPDATE
//! SKIP LOCKED` makes workers in every instance take disjoint deliveries, and a lease held by an
//! instance that died expires.
//! Reads prepare each statement once per pooled connection.
//!
//! **Invariant:** a caller's future resolves only after the transaction carrying its operation
//! has committed (or failed and rolled back).

mod batch;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::keys::{self, Keks, KeyRing, KeySource, NewDataKey, PlainBody, RewrappedKey, SealedBody, StoredKey};
use super::sql::{self, Column, Dialect, Param, Row, Sql};
use super::writer::{Queue, Write, Writer};
use super::*;
use crate::audit::{AuditEntry, AuditEvent, AuditStamp, Checkpoint};
use crate::telemetry::Metrics;

/// What kind of store failure a PostgreSQL error is, from its SQLSTATE class; the error itself
/// stays as the cause, so the message still says why ("error performing TLS handshake: invalid
/// peer certificate: UnknownIssuer").
impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let kind = match error.code().map(|c| c.code()) {
            // No SQLSTATE: the connection, TLS or the socket failed.
            None => StoreErrorKind::Unavailable,
            // A statement cancelled by its timeout; a lock not available in time.
            Some("57014" | "55P03") => StoreErrorKind::TimedOut,
            // Corrupted data or index (XX000 is any internal error).
            Some("XX001" | "XX002") => StoreErrorKind::Corrupt,
            Some(code) => match code.get(..2) {
                Some("23") => StoreErrorKind::Constraint,
                // Connection exceptions, insufficient resources, a server shutting down or
                // starting, a serialization failure or deadlock: the same request may pass later.
                Some("08" | "53" | "57" | "40") => StoreErrorKind::Unavailable,
                // Undefined tables or columns: the schema is not this program's.
                Some("42") => StoreErrorKind::Incompatible,
                _ => StoreErrorKind::Failed,
            },
        };
        StoreError::new(kind, "").caused_by(error)
    }
}

/// Settings of the PostgreSQL engine.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub config: tokio_postgres::Config,
    pub pool_size: usize,
    pub queue: usize,
    pub max_batch: usize,
    pub commit_timeout: Duration,
    /// How long a shallow batch waits for more writes while the writer is busy (zero: never).
    pub linger: Duration,
    /// TLS to the server (`store.ca_file`); `None` is plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The key-encryption keys bodies are sealed under; `None` stores them in plaintext.
    pub encryption: Option<Arc<Keks>>,
    /// The key that signs each group commit's receipt tree; `None`: no tree is signed, and
    /// receipts are signed one by one after the commit.
    pub receipts: Option<Arc<crate::audit::keys::SigningKey>>,
}

/// The connector for `tls`: rustls when configured; otherwise one that is never used, because
/// [`with_ssl_mode`] then sets `sslmode=disable`.
fn connector(tls: &Option<Arc<rustls::ClientConfig>>) -> MakeRustlsConnect {
    MakeRustlsConnect::new(tls.as_deref().cloned().unwrap_or_else(|| (*crate::tls::plain_client()).clone()))
}

/// With a CA, verified TLS or nothing; without one, no TLS at all (tokio-postgres would otherwise
/// try it under its default `sslmode=prefer` and fail on an unverifiable certificate).
fn with_ssl_mode(config: &tokio_postgres::Config, tls: &Option<Arc<rustls::ClientConfig>>) -> tokio_postgres::Config {
    let mut config = config.clone();
    // With a CA, TLS is required: `prefer` would fall back to plain text if someone on the path
    // refused the SSLRequest.
    config.ssl_mode(match tls {
        Some(_) => tokio_postgres::config::SslMode::Require,
        None => tokio_postgres::config::SslMode::Disable,
    });
    config
}

/// One connection outside the pool, its I/O driven by a task of its own.
pub async fn connect(
    config: &tokio_postgres::Config,
    tls: &Option<Arc<rustls::ClientConfig>>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = with_ssl_mode(config, tls).connect(connector(tls)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(message = "A store connection closed.", %error);
        }
    });
    Ok(client)
}

/// Moves the chain head (`$1` seq, `$2` hash): the last statement of a batch that extended the
/// chain.
const MOVE_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";

/// The statements whose text is PostgreSQL's own: the chain head is a row of its own, rows are
/// locked where instances could collide, and a list of ids is an array.
const DIALECT: Dialect = Dialect {
    audit_head: "SELECT seq, hash FROM audit_head WHERE id = 1",
    chain_head: "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
    move_head: Some(MOVE_HEAD),
    // Deliveries another instance is claiming are skipped: workers everywhere take disjoint ones.
    claim_due: sql::claim_due!(" FOR UPDATE OF d SKIP LOCKED"),
    // The head, locked: one instance at a time decides about it. No SKIP LOCKED here: skipping a
    // head another instance is claiming would hand out the delivery behind it and break the
    // order. Waiting is short (claims are short) and then the head is seen leased.
    claim_head: sql::claim_head!(" FOR UPDATE OF d"),
    lease: sql::lease!("= ANY($3)"),
    replay_one: sql::replay_one!(" FOR UPDATE"),
    replay_recipient: sql::replay_recipient!(" FOR UPDATE"),
    requeue: sql::requeue!("= ANY($2)"),
    held: sql::held!("deliveries", "= ANY($3)", " FOR UPDATE"),
    // Instances' writers run side by side: two of them delivering a record's last deliveries
    // each find it complete only if they take turns on the record.
    lock_records: Some(sql::lock_records!("= ANY($1)")),
    completed: sql::completed!("= ANY($1)"),
};

/// The PostgreSQL store.
pub struct PostgresStore {
    /// This instance's writer queue.
    queue: Queue,
    /// The queue of this instance's claims: a group commit of its own, on its own connection,
    /// so the delivery workers' claims share a transaction and its fsync, and never wait for
    /// the chain head.
    claims: Queue,
    /// Reads and claims.
    pool: Pool,
    keys: KeyRing,
}

impl PostgresStore {
    /// Connects, applies migrations (once across instances), prepares the writer's statements
    /// and starts the writer task.
    pub async fn open(options: PostgresOptions, metrics: Metrics) -> Result<Self, StoreError> {
        let manager = Manager::from_config(
            with_ssl_mode(&options.config, &options.tls),
            connector(&options.tls),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .build()
            .map_err(|e| StoreError::new(StoreErrorKind::Failed, "cannot build the connection pool").caused_by(e))?;
        let connection = batch::WriterConnection::open(&options.config, &options.tls).await?;
        let claiming = batch::WriterConnection::open_for_claims(&options.config, &options.tls).await?;
        let (queue, rx) = Queue::new(options.queue, options.commit_timeout);
        let (claims, claims_rx) = Queue::new(options.queue, options.commit_timeout);
        tokio::spawn(observe_pool(pool.clone(), metrics.clone(), queue.watch()));
        tokio::spawn(Writer::new(claiming, metrics.clone(), options.max_batch, Duration::ZERO, None).run(claims_rx));
        tokio::spawn(
            Writer::new(connection, metrics, options.max_batch, options.linger, options.receipts.clone()).run(rx),
        );
        Ok(PostgresStore { queue, claims, pool, keys: KeyRing::new(options.encryption) })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from(e),
            e => StoreError::new(StoreErrorKind::Unavailable, "no database connection").caused_by(e),
        })
    }
}

/// Keeps the pool gauges current while the store exists (its writer queue is open).
async fn observe_pool(pool: Pool, metrics: Metrics, alive: mpsc::WeakSender<Write>) {
    while alive.upgrade().is_some() {
        let status = pool.status();
        metrics.store_pool_connections.with_label_values(&["in_use"]).set((status.size - status.available) as i64);
        metrics.store_pool_connections.with_label_values(&["idle"]).set(status.available as i64);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A pooled connection, or a transaction on one, for reads and claims: each statement is
/// prepared once per connection (deadpool keeps the prepared statements with the connection).
struct Pooled<'c, C>(&'c C);

impl<C: GenericClient> Sql for Pooled<'_, C> {
    const DIALECT: Dialect = DIALECT;

    async fn query<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        read: impl FnMut(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let statement = self.0.prepare_cached(sql).await?;
        let rows = self.0.query(&statement, &bind(params)).await?;
        rows.iter().map(|row| row as &dyn Row).map(read).collect()
    }

    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.execute(&statement, &bind(params)).await?)
    }
}

/// Parameters as tokio-postgres takes them.
fn bind<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// What a PostgreSQL column holds, by its type.
impl Row for tokio_postgres::Row {
    fn column(&self, i: usize) -> Result<Column<'_>, StoreError> {
        let unreadable = |e: tokio_postgres::Error| StoreError::corrupt(format!("column {i}")).caused_by(e);
        let Some(column) = self.columns().get(i) else {
            return Err(StoreError::corrupt(format!("there is no column {i}")));
        };
        let int = |v: Option<i64>| v.map_or(Column::Null, Column::Int);
        Ok(match column.type_().name() {
            "int8" => int(self.try_get::<_, Option<i64>>(i).map_err(unreadable)?),
            "int4" => int(self.try_get::<_, Option<i32>>(i).map_err(unreadable)?.map(i64::from)),
            "int2" => int(self.try_get::<_, Option<i16>>(i).map_err(unreadable)?.map(i64::from)),
            "bool" => int(self.try_get::<_, Option<bool>>(i).map_err(unreadable)?.map(i64::from)),
            "text" | "varchar" => {
                self.try_get::<_, Option<&str>>(i).map_err(unreadable)?.map_or(Column::Null, Column::Text)
            }
            "bytea" => self.try_get::<_, Option<&[u8]>>(i).map_err(unreadable)?.map_or(Column::Null, Column::Bytes),
            other => return Err(StoreError::corrupt(format!("column {i} has type {other}"))),
        })
    }
}

/// A value as the parameter's type wants it: an integer fits the parameter's width or is
/// refused, never truncated.
impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql_checked(ty, out),
            Param::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql_checked(ty, out),
            Param::Int(v) => v.to_sql_checked(ty, out),
            Param::Text(v) => v.to_sql_checked(ty, out),
            Param::Bytes(v) => v.to_sql_checked(ty, out),
            Param::Ids(v) => v.to_sql_checked(ty, out),
        }
    }

    /// Each value checks the type when it is written (see `to_sql`).
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl Store for PostgresStore {
    fn commit_record(&self, record: NewRecord) -> StoreFuture<'_, CommitOutcome> {
        Box::pin(async move {
            let record = self.keys.seal(self, record).await?;
            self.queue.commit_record(record).await
        })
    }

    fn claim_due(&self, claim: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedDelivery>> {
        Box::pin(async move { self.keys.open(self, self.claims.claim_due(claim).await?).await })
    }

    fn finish_attempts(&self, updates: Vec<AttemptUpdate>) -> StoreFuture<'_, ()> {
        Box::pin(self.queue.finish_attempts(updates))
    }

    fn settle(&self, settlement: Settlement) -> StoreFuture<'_, Settled> {
        Box::pin(self.queue.settle(settlement))
    }

    fn record(&self, sender: String, record_id: String) -> StoreFuture<'_, Option<RecordView>> {
        Box::pin(async move { read::record(&mut Pooled(&self.client().await?), sender, record_id).await })
    }

    fn receipt(&self, record_id: String) -> StoreFuture<'_, Option<StoredReceipt>> {
        Box::pin(async move { read::receipt(&mut Pooled(&self.client().await?), record_id).await })
    }

    fn list_records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<RecordView>> {
        Box::pin(async move { read::list_records(&mut Pooled(&self.client().await?), query).await })
    }

    fn notices_due(&self, scan: NoticeScan) -> StoreFuture<'_, Vec<NoticeDue>> {
        Box::pin(async move { read::notices_due(&mut Pooled(&self.client().await?), scan).await })
    }

    fn backlog(&self) -> StoreFuture<'_, Vec<RecipientBacklog>> {
        Box::pin(async move { read::backlog(&mut Pooled(&self.client().await?)).await })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { read::ping(&mut Pooled(&self.client().await?)).await })
    }

    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn append_audit(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, Vec<AuditStamp>> {
        Box::pin(self.queue.append_audit(events))
    }

    fn audit_head(&self) -> StoreFuture<'_, Option<AuditStamp>> {
        Box::pin(async move { read::audit_head(&mut Pooled(&self.client().await?)).await })
    }

    fn audit_entries(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move { read::audit_entries(&mut Pooled(&self.client().await?), after, limit).await })
    }

    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()> {
        Box::pin(self.queue.add_checkpoint(checkpoint))
    }

    fn checkpoints(&self) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(async move { read::checkpoints(&mut Pooled(&self.client().await?)).await })
    }

    fn receipt_trees(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<StoredTree>> {
        Box::pin(async move { read::receipt_trees(&mut Pooled(&self.client().await?), after, limit).await })
    }

    fn tree_receipts(&self, tree: StoredTree) -> StoreFuture<'_, Vec<StoredReceipt>> {
        Box::pin(async move { read::tree_receipts(&mut Pooled(&self.client().await?), tree).await })
    }

    fn inclusion(&self, seq: i64) -> StoreFuture<'_, Option<Inclusion>> {
        Box::pin(async move { read::inclusion(&mut Pooled(&self.client().await?), seq).await })
    }

    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<'_, Vec<DeliveryAdminView>> {
        Box::pin(async move { read::deliveries(&mut Pooled(&self.client().await?), filter).await })
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, Vec<ReplayResult>> {
        Box::pin(self.queue.replay(request))
    }

    fn purge(&self, request: PurgeRequest) -> StoreFuture<'_, PurgeReport> {
        Box::pin(async move {
            let report = self.queue.purge(request).await?;
            self.keys.forget_ended(request.now - keys::SHRED_GRACE_MS);
            Ok(report)
        })
    }

    fn access(&self, query: AccessQuery) -> StoreFuture<'_, Vec<Disclosure>> {
        Box::pin(async move { read::access(&mut Pooled(&self.client().await?), query).await })
    }

    fn find_records(&self, search: RecordSearch) -> StoreFuture<'_, Vec<RecordFound>> {
        Box::pin(async move { read::find_records(&mut Pooled(&self.client().await?), search).await })
    }

    fn attempts(&self, record_id: String) -> StoreFuture<'_, Vec<AttemptView>> {
        Box::pin(async move { read::attempts(&mut Pooled(&self.client().await?), record_id).await })
    }

    fn audit_naming(&self, record_id: String, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move { read::audit_naming(&mut Pooled(&self.client().await?), record_id, limit).await })
    }

    fn audit_range(&self, range: AuditRange) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move { read::audit_range(&mut Pooled(&self.client().await?), range).await })
    }

    fn checkpoints_between(&self, first: i64, last: i64) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(async move { read::checkpoints_between(&mut Pooled(&self.client().await?), first, last).await })
    }

    fn stats(&self, query: StatsQuery) -> StoreFuture<'_, Stats> {
        Box::pin(async move { read::stats(&mut Pooled(&self.client().await?), query).await })
    }

    fn body(&self, body: BodyRef) -> StoreFuture<'_, Option<Option<Bytes>>> {
        Box::pin(async move {
            let stored = read::body(&mut Pooled(&self.client().await?), body).await?;
            let Some(stored) = stored else { return Ok(None) };
            self.keys.open_body(self, stored).await.map(Some)
        })
    }

    keys::key_methods!();
}

impl KeySource for PostgresStore {
    fn stored_key(&self, id: String) -> StoreFuture<'_, Option<StoredKey>> {
        Box::pin(async move { read::stored_key(&mut Pooled(&self.client().await?), id).await })
    }

    fn add_key(&self, key: NewDataKey) -> StoreFuture<'_, StoredKey> {
        Box::pin(self.queue.add_key(key))
    }

    fn plain_bodies(&self, limit: usize) -> StoreFuture<'_, Vec<PlainBody>> {
        Box::pin(async move { read::plain_bodies(&mut Pooled(&self.client().await?), limit).await })
    }

    fn write_sealed(&self, bodies: Vec<SealedBody>, at: i64) -> StoreFuture<'_, u64> {
        Box::pin(self.queue.write_sealed(bodies, at))
    }

    fn keys_wrapped_elsewhere(&self, kek_id: String, limit: usize) -> StoreFuture<'_, Vec<StoredKey>> {
        Box::pin(async move { read::keys_wrapped_elsewhere(&mut Pooled(&self.client().await?), kek_id, limit).await })
    }

    fn write_rewrapped(&self, keys: Vec<RewrappedKey>, at: i64) -> StoreFuture<'_, u64> {
        Box::pin(self.queue.write_rewrapped(keys, at))
    }

    fn key_census(&self) -> StoreFuture<'_, KeyCensus> {
        Box::pin(async move { read::key_census(&mut Pooled(&self.client().await?)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::NoTls;

    /// The test server: `PASSERELLE_TEST_POSTGRES` (a connection string), or the local one these
    /// machines run (127.0.0.1:5432, user postgres, database test).
    fn server() -> String {
        std::env::var("PASSERELLE_TEST_POSTGRES")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
    }

    /// Drops a test's schema when the test ends.
    struct Schema(String);

    impl Drop for Schema {
        fn drop(&mut self) {
            let statement = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0);
            // The test's runtime cannot be awaited from `drop`; a short-lived one can.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&server(), NoTls).await.ok()?;
                    tokio::spawn(connection);
                    client.batch_execute(&statement).await.ok()
                })
            })
            .join();
        }
    }

    /// A schema of its own for a test, so tests run in parallel on one database, and a
    /// configuration that uses it.
    async fn schema() -> (tokio_postgres::Config, Schema) {
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(&server(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests ({}): {e}", server()));
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        let mut config: tokio_postgres::Config = server().parse().unwrap();
        config.options(format!("-c search_path={schema}"));
        // The test's sessions are found by this name (to end them).
        config.application_name(&schema);
        (config, Schema(schema))
    }

    /// Schema version 11 moves the terms each delivery held into one row per distinct terms,
    /// and the access record reads the same disclosures after as before.
    #[tokio::test]
    async fn the_terms_deliveries_held_are_stored_once_by_the_migration() {
        let (config, _schema) = schema().await;
        let (mut client, connection) = config.connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        batch::migrate_to(&mut client, 10).await.unwrap();
        client
            .batch_execute(
                "INSERT INTO records (record_id, sender, record_type, schema_version, received_at, body_sha256, receipt, audit_seq)
                 VALUES ('r1', 's', 't', '1.0', 1, '\\x00', '\\x00', 1), ('r2', 's', 't', '1.0', 2, '\\x00', '\\x00', 2);
                 INSERT INTO record_subjects (subject, record_id, received_at)
                 SELECT decode(repeat('0a', 32), 'hex'), record_id, received_at FROM records;
                 INSERT INTO deliveries (record_id, recipient, agreement, ordered, body_digest, status, created_at, next_attempt_at, purpose, fields)
                 SELECT r.record_id, t.recipient, 'a', false, '\\x00', 'queued', r.received_at, r.received_at, t.purpose, t.fields
                 FROM records r, (VALUES (1, 'q', 'Pay', '[\"/q\"]'), (2, 'r', 'Plan', '[\"/r\"]'), (3, 'x', NULL, NULL))
                      AS t(n, recipient, purpose, fields)
                 ORDER BY r.record_id, t.n;",
            )
            .await
            .unwrap();

        let s = open(config, Metrics::new()).await;
        crate::store::conformance::the_terms_before_version_11_read_the_same(&s, [0xa; 32]).await;
        let rows: i64 = client.query_one("SELECT COUNT(*) FROM disclosure_terms", &[]).await.unwrap().get(0);
        assert_eq!(rows, 2, "one row per distinct terms");
        let dropped: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = 'deliveries' AND column_name IN ('purpose', 'fields')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(dropped, 0);
        // New terms go on from the migrated rows' ids.
        s.commit_record(crate::store::conformance::record(3, &["r"])).await.unwrap();
        let rows: i64 = client.query_one("SELECT COUNT(*) FROM disclosure_terms", &[]).await.unwrap().get(0);
        assert_eq!(rows, 3);
    }

    /// A store in a schema of its own.
    async fn store() -> (Arc<dyn Store>, Schema) {
        let (config, schema) = schema().await;
        (Arc::new(open(config, Metrics::new()).await), schema)
    }

    /// A store (an instance) on the schema `config` names, reporting to `metrics`.
    async fn open(config: tokio_postgres::Config, metrics: Metrics) -> PostgresStore {
        let options = PostgresOptions {
            config,
            pool_size: 4,
            queue: 64,
            max_batch: 16,
            commit_timeout: Duration::from_secs(10),
            linger: Duration::ZERO,
            tls: None,
            encryption: Some(keys::test_keks()),
            receipts: Some(crate::store::conformance::receipt_key()),
        };
        PostgresStore::open(options, metrics).await.unwrap()
    }

    crate::store_conformance!(store());

    #[tokio::test]
    async fn a_late_answer_in_the_holders_batch_is_not_audited() {
        let (store, _schema) = store().await;
        crate::store::writer::a_late_answer_in_the_holders_batch_is_not_audited(store.as_ref()).await;
    }

    #[tokio::test]
    async fn a_claim_is_not_witnessed_apart_from_the_commits() {
        let (store, _schema) = store().await;
        crate::store::conformance::a_claim_is_witnessed_where_it_read_among_the_commits(store.as_ref(), false).await;
    }

    #[tokio::test]
    async fn the_writer_reports_the_time_it_is_busy() {
        let ((config, _schema), metrics) = (schema().await, Metrics::new());
        let store = open(config, metrics.clone()).await;
        crate::store::conformance::the_writer_reports_the_time_it_is_busy(&store, &metrics).await;
    }

    #[tokio::test]
    async fn a_record_is_counted_complete_once_by_its_last_delivery() {
        let ((config, _schema), metrics) = (schema().await, Metrics::new());
        let store = open(config, metrics.clone()).await;
        crate::store::conformance::a_record_is_counted_complete_once_by_its_last_delivery(&store, &metrics).await;
    }

    /// The server ends every session of the store (a restart, a failover, an administrator):
    /// the writers connect again at their next batch, so records are accepted and deliveries
    /// claimed again without restarting the gateway, and the chain goes on unbroken.
    #[tokio::test]
    async fn the_writers_connect_again_after_the_server_ends_their_sessions() {
        let (config, schema) = schema().await;
        let store = open(config, Metrics::new()).await;
        store.commit_record(crate::store::conformance::record(1, &["r"])).await.unwrap();
        let (admin, connection) = tokio_postgres::connect(&server(), NoTls).await.unwrap();
        tokio::spawn(connection);
        let ended = admin
            .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&schema.0])
            .await
            .unwrap();
        assert!(ended >= 2, "the two writers' sessions and the pool's were ended ({ended})");
        let claim = ClaimRequest {
            recipient: "r".into(),
            worker: "w".into(),
            limit: 10,
            now: 2_000,
            lease_until: 60_000,
            head_only: false,
            witness: None,
        };
        // A write that finds its session ended fails (its caller is told); a later one succeeds.
        let (mut accepted, mut claimed) = (None, None);
        for _ in 0..50 {
            accepted = store.commit_record(crate::store::conformance::record(2, &["r"])).await.ok();
            if accepted.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for _ in 0..50 {
            claimed = store.claim_due(claim.clone()).await.ok();
            if claimed.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(matches!(accepted, Some(CommitOutcome::Accepted { .. })), "a record is accepted again: {accepted:?}");
        assert_eq!(claimed.map(|c| c.len()), Some(2), "both records' deliveries are claimed again");
        let entries = store.audit_entries(0, 10).await.unwrap();
        let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2], "one chain, unbroken");
        assert_eq!(entries[1].prev_hash, entries[0].hash, "the second entry follows the first");
        for e in &entries {
            assert_eq!(e.hash, crate::audit::entry_hash(&e.prev_hash, e.seq, &e.event));
        }
    }

    /// Two instances given the same keyed records at once: each key makes one record, and every
    /// other commit of it is a replay of that record's receipt and entry. The key's earlier use
    /// is read under the chain head's lock, so it sees what the other instance committed while
    /// it waited.
    #[tokio::test]
    async fn two_instances_given_one_key_make_one_record() {
        let (config, _schema) = schema().await;
        let (a, b) = (open(config.clone(), Metrics::new()).await, open(config, Metrics::new()).await);
        const KEYS: usize = 20;
        let keyed = |n: usize, copy: usize| {
            let mut r = crate::store::conformance::record(n * 10 + copy, &["r"]);
            r.idempotency_key = Some(format!("k-{n}"));
            r.body_sha256 = [n as u8; 32];
            r
        };
        let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
        for n in 0..KEYS {
            on_a.push(a.commit_record(keyed(n, 1)));
            on_b.push(b.commit_record(keyed(n, 2)));
        }
        let (on_a, on_b) = tokio::join!(futures_util::future::join_all(on_a), futures_util::future::join_all(on_b));
        for (n, (x, y)) in on_a.into_iter().zip(on_b).enumerate() {
            let outcomes = [x.unwrap(), y.unwrap()];
            let accepted: Vec<_> = outcomes
                .iter()
                .filter_map(|o| match o {
                    CommitOutcome::Accepted { stamp, receipt, .. } => Some((*stamp, receipt.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(accepted.len(), 1, "key {n}: one record, {outcomes:?}");
            let (stamp, receipt) = accepted[0].clone();
            assert!(
                outcomes.contains(&CommitOutcome::Duplicate { receipt, stamp }),
                "key {n}: the other commit replays the first, {outcomes:?}"
            );
        }
        let entries = a.audit_entries(0, 1_000).await.unwrap();
        let accepted = entries.iter().filter(|e| e.event.kind == crate::audit::kind::RECORD_ACCEPTED).count();
        assert_eq!(accepted, KEYS, "one audit entry per key");
    }

    /// Two instances each delivering one of the last two deliveries of the same records, at the
    /// same time: each record is counted complete exactly once between them (the second
    /// transaction waits for the first on the record, then sees its delivery).
    #[tokio::test]
    async fn two_instances_completing_one_record_count_it_once() {
        let (config, _schema) = schema().await;
        let (a_metrics, b_metrics) = (Metrics::new(), Metrics::new());
        let (a, b) = (open(config.clone(), a_metrics.clone()).await, open(config, b_metrics.clone()).await);
        const RECORDS: usize = 40;
        for n in 0..RECORDS {
            a.commit_record(crate::store::conformance::record(n, &["r", "q"])).await.unwrap();
        }
        let claim = |recipient: &str| ClaimRequest {
            recipient: recipient.into(),
            worker: "w".into(),
            limit: RECORDS,
            now: 2_000,
            lease_until: 60_000,
            head_only: false,
            witness: None,
        };
        let (to_r, to_q) = (a.claim_due(claim("r")).await.unwrap(), b.claim_due(claim("q")).await.unwrap());
        let delivered = |d: &ClaimedDelivery| {
            vec![crate::store::conformance::update(d.id, "w", 3_000, AttemptResult::Delivered { status: Some(200) })]
        };
        // One record at a time on both instances at once, so their transactions overlap.
        for (r, q) in to_r.iter().zip(&to_q) {
            let (ra, qb) = tokio::join!(a.finish_attempts(delivered(r)), b.finish_attempts(delivered(q)));
            ra.unwrap();
            qb.unwrap();
        }
        let count = |m: &Metrics| m.record_completion.with_label_values(&["t"]).get_sample_count();
        assert_eq!(count(&a_metrics) + count(&b_metrics), RECORDS as u64);
    }

    /// Every statement both engines run, and PostgreSQL's own, prepares on a migrated schema: the
    /// server infers a type for every parameter and knows every table and column named.
    #[tokio::test]
    async fn every_statement_prepares() {
        let (config, _schema) = schema().await;
        let writer = batch::WriterConnection::open(&config, &None).await.unwrap();
        let client = connect(&config, &None).await.unwrap();
        for sql in sql::SHARED.iter().chain(&DIALECT.statements()).chain(batch::STATEMENTS) {
            client.prepare(sql).await.unwrap_or_else(|e| panic!("{e}: {sql}"));
        }
        drop(writer);
    }

    /// A group commit of large records is sent in pieces (the pending bodies are bounded), and
    /// every record and delivery arrives intact.
    #[tokio::test]
    async fn large_records_in_one_batch_are_sent_in_pieces() {
        let (store, _schema) = store().await;
        let body = Bytes::from(vec![b'x'; 1024 * 1024]);
        let commits: Vec<_> = (0..40)
            .map(|n| {
                let mut record = crate::store::conformance::record(n, &["r1", "r2"]);
                record.body = body.clone();
                for d in &mut record.deliveries {
                    d.body = body.slice(..512 * 1024);
                }
                let store = store.clone();
                tokio::spawn(async move { store.commit_record(record).await })
            })
            .collect();
        for c in commits {
            assert!(matches!(c.await.unwrap(), Ok(CommitOutcome::Accepted { .. })));
        }
        let claim = |recipient: &str| ClaimRequest {
            recipient: recipient.to_owned(),
            worker: "w".into(),
            limit: 100,
            now: i64::MAX / 2,
            lease_until: i64::MAX / 2 + 1,
            head_only: false,
            witness: None,
        };
        let claimed = store.claim_due(claim("r2")).await.unwrap();
        assert_eq!(claimed.len(), 40);
        assert!(claimed.iter().all(|d| d.body.len() == 512 * 1024 && d.body.iter().all(|b| *b == b'x')));
        let records: std::collections::BTreeSet<&str> = claimed.iter().map(|d| d.record_id.as_str()).collect();
        assert_eq!(records.len(), 40, "one delivery per record");
    }

    /// A server whose certificate does not chain to `store.ca_file` is refused, and the error
    /// says why: a store never falls back to an unverified or plain connection.
    #[tokio::test]
    async fn a_database_certificate_from_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let authority = crate::pki::Authority::new("Some other CA").unwrap();
        let ca = dir.path().join("other-ca.pem");
        std::fs::write(&ca, &authority.cert_pem).unwrap();
        let config: tokio_postgres::Config =
            "host=localhost hostaddr=127.0.0.1 port=5432 user=postgres dbname=test sslmode=require".parse().unwrap();
        let options = PostgresOptions {
            config,
            pool_size: 2,
            queue: 4,
            max_batch: 4,
            commit_timeout: Duration::from_secs(5),
            linger: Duration::ZERO,
            tls: Some(crate::tls::recipient_client(&[ca], None, None, &crate::tls::disk).unwrap()),
            encryption: None,
            receipts: None,
        };
        let Err(error) = PostgresStore::open(options, Metrics::new()).await else {
            panic!("a server certificate from another CA was accepted");
        };
        assert!(error.to_string().contains("certificate"), "{error}");
    }
}
