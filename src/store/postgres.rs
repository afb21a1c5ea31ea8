//! The PostgreSQL engine: the same tables and the same contract as SQLite, for several gateway
//! instances sharing one store.
//!
//! Writes that extend the audit chain (records, attempt results, replays, purges, appended
//! entries, checkpoints) go through one writer task per instance, which groups everything
//! queued into one transaction, exactly as the SQLite writer does. The chain stays one chain
//! across instances because each such transaction first locks the `audit_head` row (`FOR
//! UPDATE`), once per batch, and moves it forward before committing. Claims do not touch the
//! chain: they run in their own short transactions with `FOR UPDATE SKIP LOCKED`, so workers in
//! every instance take disjoint deliveries, and a lease held by an instance that died expires.
//!
//! **Invariant:** a caller's future resolves only after the transaction carrying its operation
//! has committed (or failed and rolled back).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::*;
use crate::audit::{self, AuditEntry, AuditEvent, AuditStamp, Checkpoint};
use crate::telemetry::Metrics;
use crate::telemetry::events::{AuditAppended, StoreCommitted};

/// Schema migrations, applied in order under an advisory lock, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
    CREATE TABLE records (
        record_id       TEXT PRIMARY KEY,
        sender          TEXT NOT NULL,
        record_type     TEXT NOT NULL,
        schema_version  TEXT NOT NULL,
        received_at     BIGINT NOT NULL,
        body            BYTEA,
        body_sha256     BYTEA NOT NULL,
        idempotency_key TEXT,
        traceparent     TEXT,
        receipt         BYTEA NOT NULL,
        audit_seq       BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX records_idempotency ON records(sender, idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX records_by_sender ON records(sender, received_at DESC, record_id DESC);
    CREATE TABLE deliveries (
        id              BIGSERIAL PRIMARY KEY,
        record_id       TEXT NOT NULL REFERENCES records(record_id),
        recipient       TEXT NOT NULL,
        agreement       TEXT NOT NULL,
        ordered         BOOLEAN NOT NULL,
        body            BYTEA,
        body_digest     BYTEA NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        replays         INTEGER NOT NULL DEFAULT 0,
        created_at      BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        last_attempt_at BIGINT,
        last_status     INTEGER,
        last_error      TEXT,
        delivered_at    BIGINT,
        claimed_until   BIGINT NOT NULL DEFAULT 0,
        claimed_by      TEXT
    );
    CREATE INDEX deliveries_by_record ON deliveries(record_id);
    CREATE INDEX deliveries_pending ON deliveries(recipient, next_attempt_at, id) WHERE status IN ('queued', 'retrying');
    CREATE INDEX deliveries_by_status ON deliveries(status, recipient, id);
    CREATE TABLE audit_log (
        seq         BIGINT PRIMARY KEY,
        at          BIGINT NOT NULL,
        kind        TEXT NOT NULL,
        actor       TEXT NOT NULL,
        record_id   TEXT,
        agreement   TEXT,
        recipient   TEXT,
        body_digest BYTEA,
        outcome     TEXT NOT NULL,
        reason      TEXT,
        count       BIGINT NOT NULL,
        prev_hash   BYTEA NOT NULL,
        hash        BYTEA NOT NULL
    );
    CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash BYTEA NOT NULL);
    INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
    CREATE TABLE audit_checkpoints (
        seq       BIGINT NOT NULL,
        key_id    TEXT NOT NULL,
        hash      BYTEA NOT NULL,
        at        BIGINT NOT NULL,
        signature BYTEA NOT NULL,
        PRIMARY KEY (seq, key_id)
    );
    "#,
    ),
    // The caller's `tracestate`, passed on with every delivery beside the `traceparent`.
    (2, "ALTER TABLE records ADD COLUMN tracestate TEXT;"),
];

/// Any number fits: the lock only serialises migrations between instances starting together.
const MIGRATION_LOCK: i64 = 0x7061_7373_6572_656c; // "passerel"

/// An engine error with its causes ("error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer"), so the operator reads why, not only what.
fn engine(e: impl std::error::Error) -> StoreError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message = format!("{message}: {cause_text}");
        }
        source = cause.source();
    }
    StoreError::Engine(message)
}

/// Settings of the PostgreSQL engine.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub config: tokio_postgres::Config,
    pub pool_size: usize,
    pub queue: usize,
    pub max_batch: usize,
    pub commit_timeout: Duration,
    /// TLS to the server (`store.ca_file`); `None` is plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
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

/// One operation for the writer, answered after the batch's commit.
enum Op {
    Commit(Box<NewRecord>, oneshot::Sender<Result<CommitOutcome, StoreError>>),
    Finish(Vec<AttemptUpdate>, oneshot::Sender<Result<(), StoreError>>),
    Append(Vec<AuditEvent>, oneshot::Sender<Result<Vec<AuditStamp>, StoreError>>),
    Checkpoint(Checkpoint, oneshot::Sender<Result<(), StoreError>>),
    Replay(ReplayRequest, oneshot::Sender<Result<Vec<ReplayResult>, StoreError>>),
    Purge(PurgeRequest, oneshot::Sender<Result<PurgeReport, StoreError>>),
}

/// The PostgreSQL store.
pub struct PostgresStore {
    /// Operations for this instance's writer task; bounded, so a saturated writer pushes back.
    writes: mpsc::Sender<Op>,
    /// Reads and claims.
    pool: Pool,
    commit_timeout: Duration,
}

impl PostgresStore {
    /// Connects, applies migrations (once across instances) and starts the writer task.
    pub async fn open(options: PostgresOptions, metrics: Metrics) -> Result<Self, StoreError> {
        let manager = Manager::from_config(
            with_ssl_mode(&options.config, &options.tls),
            connector(&options.tls),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager).max_size(options.pool_size.max(2)).build().map_err(engine)?;
        let mut client = connect(&options.config, &options.tls).await.map_err(engine)?;
        migrate(&mut client).await?;
        let (writes, rx) = mpsc::channel(options.queue);
        tokio::spawn(observe_pool(pool.clone(), metrics.clone(), writes.downgrade()));
        tokio::spawn(Writer { client, metrics }.run(rx, options.max_batch));
        Ok(PostgresStore { writes, pool, commit_timeout: options.commit_timeout })
    }

    async fn write<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        tokio::time::timeout_at(deadline, self.writes.send(make(tx)))
            .await
            .map_err(|_| StoreError::Unavailable("the commit queue is full"))?
            .map_err(|_| StoreError::Unavailable("the writer has stopped"))?;
        tokio::time::timeout_at(deadline, rx)
            .await
            .map_err(|_| StoreError::Unavailable("the commit did not finish in time"))?
            .map_err(|_| StoreError::Unavailable("the writer has stopped"))?
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::Unavailable(if e.to_string().is_empty() { "no connection" } else { "no database connection" })
        })
    }
}

/// Keeps the pool gauges current while the store exists (its writer channel is open).
async fn observe_pool(pool: Pool, metrics: Metrics, alive: mpsc::WeakSender<Op>) {
    while alive.upgrade().is_some() {
        let status = pool.status();
        metrics.store_pool_connections.with_label_values(&["in_use"]).set((status.size - status.available) as i64);
        metrics.store_pool_connections.with_label_values(&["idle"]).set(status.available as i64);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(engine)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(engine)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(engine)?;
    let current: i64 =
        tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await.map_err(engine)?.get(0);
    for (version, sql) in MIGRATIONS {
        if *version > current {
            tx.batch_execute(sql).await.map_err(engine)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &crate::clock::now_ms()],
            )
            .await
            .map_err(engine)?;
        }
    }
    tx.commit().await.map_err(engine)
}

/// A 32-byte hash or digest column: a value of another length is an error, never zero-filled.
struct Hash32([u8; 32]);

impl<'a> tokio_postgres::types::FromSql<'a> for Hash32 {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes = <&[u8]>::from_sql(ty, raw)?;
        let hash: [u8; 32] = bytes.try_into().map_err(|_| format!("a hash of {} bytes, not 32", bytes.len()))?;
        Ok(Hash32(hash))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&[u8] as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// A stored status read back as its type: a row whose status the code does not know is an
/// error naming it, never taken for another status.
impl<'a> tokio_postgres::types::FromSql<'a> for DeliveryStatus {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str>::from_sql(ty, raw)?;
        Ok(DeliveryStatus::parse(text).ok_or_else(|| format!("unknown delivery status `{text}`"))?)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for RecordState {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str>::from_sql(ty, raw)?;
        Ok(RecordState::parse(text).ok_or_else(|| format!("unknown record state `{text}`"))?)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Column `i` of `row` as a 32-byte hash.
fn hash(row: &Row, i: usize) -> Result<[u8; 32], tokio_postgres::Error> {
    Ok(row.try_get::<_, Hash32>(i)?.0)
}

/// Column `i` of `row` as an optional 32-byte digest.
fn digest(row: &Row, i: usize) -> Result<Option<[u8; 32]>, tokio_postgres::Error> {
    Ok(row.try_get::<_, Option<Hash32>>(i)?.map(|h| h.0))
}

struct Writer {
    client: tokio_postgres::Client,
    metrics: Metrics,
}

/// The writer's statements, prepared once on its connection (each prepare is a round trip).
struct Statements {
    insert_audit: tokio_postgres::Statement,
    insert_record: tokio_postgres::Statement,
    insert_delivery: tokio_postgres::Statement,
    finish_delivery: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Statements {
            // Multi-row inserts from one array per column: a batch's rows go in one round trip
            // per table. `WITH ORDINALITY ... ORDER BY` keeps the arrays' order, so delivery ids
            // (and first attempts) follow acceptance order.
            insert_audit: client
                .prepare(
                    "INSERT INTO audit_log (seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash)
                     SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[],
                                 $9::text[], $10::text[], $11::bigint[], $12::bytea[], $13::bytea[])
                          WITH ORDINALITY AS u(seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash, n)
                     ORDER BY n",
                )
                .await?,
            insert_record: client
                .prepare(
                    "INSERT INTO records (record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate)
                     SELECT record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::bytea[], $8::text[],
                                 $9::text[], $10::bytea[], $11::bigint[], $12::text[])
                          WITH ORDINALITY AS u(record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate, n)
                     ORDER BY n",
                )
                .await?,
            insert_delivery: client
                .prepare(
                    "INSERT INTO deliveries (record_id, recipient, agreement, ordered, body, body_digest, status, created_at, next_attempt_at)
                     SELECT record_id, recipient, agreement, ordered, body, body_digest, 'queued', created_at, created_at
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::boolean[], $5::bytea[], $6::bytea[], $7::bigint[])
                          WITH ORDINALITY AS u(record_id, recipient, agreement, ordered, body, body_digest, created_at, n)
                     ORDER BY n",
                )
                .await?,
            // Every attempt result of a batch in one statement; a worker that lost its lease
            // matches nothing, and RETURNING says which rows changed.
            finish_delivery: client
                .prepare(
                    "UPDATE deliveries AS d SET status = u.status, attempts = d.attempts + 1, last_attempt_at = u.at,
                         last_status = u.code, last_error = u.error, next_attempt_at = u.next, delivered_at = u.delivered,
                         claimed_until = 0, claimed_by = NULL
                     FROM UNNEST($1::text[], $2::bigint[], $3::integer[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])
                          AS u(status, at, code, error, next, delivered, id, worker)
                     WHERE d.id = u.id AND d.claimed_by = u.worker
                     RETURNING d.id",
                )
                .await?,
        })
    }
}

/// What a batch's transaction sees: the chain head, locked once, and the rows written so far
/// but not yet sent (see [`Pending`]).
struct Cx<'a, 't> {
    tx: &'a Transaction<'t>,
    statements: &'a Statements,
    head: Option<AuditStamp>,
    appended: Vec<String>,
    pending: Pending,
}

/// Inserts waiting to be sent, one array per column: a batch's audit entries, records and
/// deliveries go to the server in three statements at the next [`Cx::flush`], instead of one
/// round trip per row. Every read in the batch flushes first, so the transaction always sees
/// its own writes; any failure still fails the whole batch.
#[derive(Default)]
struct Pending {
    audit: AuditColumns,
    records: RecordColumns,
    deliveries: DeliveryColumns,
    /// Body bytes waiting; past [`MAX_PENDING_BYTES`] they are sent before the next record.
    bytes: usize,
}

/// Body bytes one flush sends at most (plus one record's worth): PostgreSQL refuses a message
/// or an array over about 1 GB, and a group commit of large records must not come near it.
const MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
struct AuditColumns {
    seq: Vec<i64>,
    at: Vec<i64>,
    kind: Vec<String>,
    actor: Vec<String>,
    record_id: Vec<Option<String>>,
    agreement: Vec<Option<String>>,
    recipient: Vec<Option<String>>,
    body_digest: Vec<Option<Vec<u8>>>,
    outcome: Vec<String>,
    reason: Vec<Option<String>>,
    count: Vec<i64>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

#[derive(Default)]
struct RecordColumns {
    record_id: Vec<String>,
    sender: Vec<String>,
    record_type: Vec<String>,
    schema_version: Vec<String>,
    received_at: Vec<i64>,
    body: Vec<Bytes>,
    body_sha256: Vec<Vec<u8>>,
    idempotency_key: Vec<Option<String>>,
    traceparent: Vec<Option<String>>,
    receipt: Vec<Vec<u8>>,
    audit_seq: Vec<i64>,
    tracestate: Vec<Option<String>>,
}

#[derive(Default)]
struct DeliveryColumns {
    record_id: Vec<String>,
    recipient: Vec<String>,
    agreement: Vec<String>,
    ordered: Vec<bool>,
    body: Vec<Bytes>,
    body_digest: Vec<Vec<u8>>,
    created_at: Vec<i64>,
}

impl Cx<'_, '_> {
    /// Extends the chain by `events` (their rows are sent at the next flush).
    async fn append(&mut self, events: Vec<AuditEvent>) -> Result<Vec<AuditStamp>, tokio_postgres::Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let head = match self.head {
            Some(h) => h,
            None => {
                let row = self.tx.query_one("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE", &[]).await?;
                let h = AuditStamp { seq: row.get(0), hash: hash(&row, 1)? };
                self.head = Some(h);
                h
            }
        };
        let mut stamps = Vec::with_capacity(events.len());
        let a = &mut self.pending.audit;
        for e in audit::chain(head, events) {
            stamps.push(AuditStamp { seq: e.seq, hash: e.hash });
            self.appended.push(e.event.kind.clone());
            let ev = e.event;
            a.seq.push(e.seq);
            a.at.push(ev.at);
            a.kind.push(ev.kind);
            a.actor.push(ev.actor);
            a.record_id.push(ev.record_id);
            a.agreement.push(ev.agreement);
            a.recipient.push(ev.recipient);
            a.body_digest.push(ev.body_digest.map(|d| d.to_vec()));
            a.outcome.push(ev.outcome);
            a.reason.push(ev.reason);
            a.count.push(ev.count);
            a.prev_hash.push(e.prev_hash.to_vec());
            a.hash.push(e.hash.to_vec());
        }
        if let Some(last) = stamps.last() {
            self.head = Some(*last);
        }
        Ok(stamps)
    }

    /// Adds an accepted record and its deliveries to the pending rows.
    fn insert_record(&mut self, record: &NewRecord, audit_seq: i64) {
        self.pending.bytes += record.body.len() + record.deliveries.iter().map(|d| d.body.len()).sum::<usize>();
        let r = &mut self.pending.records;
        r.record_id.push(record.record_id.clone());
        r.sender.push(record.sender.clone());
        r.record_type.push(record.record_type.clone());
        r.schema_version.push(record.schema_version.clone());
        r.received_at.push(record.received_at);
        r.body.push(record.body.clone());
        r.body_sha256.push(record.body_sha256.to_vec());
        r.idempotency_key.push(record.idempotency_key.clone());
        r.traceparent.push(record.traceparent.clone());
        r.receipt.push(record.receipt.to_vec());
        r.audit_seq.push(audit_seq);
        r.tracestate.push(record.tracestate.clone());
        let d = &mut self.pending.deliveries;
        for delivery in &record.deliveries {
            d.record_id.push(record.record_id.clone());
            d.recipient.push(delivery.recipient.clone());
            d.agreement.push(delivery.agreement.clone());
            d.ordered.push(delivery.ordered);
            d.body.push(delivery.body.clone());
            d.body_digest.push(delivery.body_digest.to_vec());
            d.created_at.push(record.received_at);
        }
    }

    /// Sends the pending rows: audit entries, then records, then their deliveries.
    async fn flush(&mut self) -> Result<(), tokio_postgres::Error> {
        let Pending { audit: a, records: r, deliveries: d, bytes: _ } = std::mem::take(&mut self.pending);
        // Bound as `bytea[]` without copying the bodies.
        let record_bodies: Vec<&[u8]> = r.body.iter().map(|b| &b[..]).collect();
        let delivery_bodies: Vec<&[u8]> = d.body.iter().map(|b| &b[..]).collect();
        if !a.seq.is_empty() {
            self.tx
                .execute(
                    &self.statements.insert_audit,
                    &[
                        &a.seq,
                        &a.at,
                        &a.kind,
                        &a.actor,
                        &a.record_id,
                        &a.agreement,
                        &a.recipient,
                        &a.body_digest,
                        &a.outcome,
                        &a.reason,
                        &a.count,
                        &a.prev_hash,
                        &a.hash,
                    ],
                )
                .await?;
        }
        if !r.record_id.is_empty() {
            self.tx
                .execute(
                    &self.statements.insert_record,
                    &[
                        &r.record_id,
                        &r.sender,
                        &r.record_type,
                        &r.schema_version,
                        &r.received_at,
                        &record_bodies,
                        &r.body_sha256,
                        &r.idempotency_key,
                        &r.traceparent,
                        &r.receipt,
                        &r.audit_seq,
                        &r.tracestate,
                    ],
                )
                .await?;
        }
        if !d.record_id.is_empty() {
            self.tx
                .execute(
                    &self.statements.insert_delivery,
                    &[
                        &d.record_id,
                        &d.recipient,
                        &d.agreement,
                        &d.ordered,
                        &delivery_bodies,
                        &d.body_digest,
                        &d.created_at,
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<String>, tokio_postgres::Error> {
        self.flush().await?;
        if let Some(head) = self.head {
            self.tx
                .execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &[&head.seq, &&head.hash[..]])
                .await?;
        }
        Ok(self.appended)
    }
}

/// The answer to an operation, kept until the commit.
enum Answer {
    Commit(CommitOutcome),
    Unit,
    Stamps(Vec<AuditStamp>),
    Replay(Vec<ReplayResult>),
    Purge(PurgeReport),
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>, max_batch: usize) {
        let statements = match Statements::prepare(&self.client).await {
            Ok(s) => s,
            Err(error) => {
                // Every caller then gets "the writer has stopped" (503), and /readyz still answers.
                tracing::error!(message = "The store's writer cannot prepare its statements.", %error);
                return;
            }
        };
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.run_batch(&mut batch, &statements).await;
        }
    }

    async fn run_batch(&mut self, batch: &mut Vec<Op>, statements: &Statements) {
        let started = Instant::now();
        let records = batch.iter().filter(|op| matches!(op, Op::Commit(..))).count();
        let result = async {
            let tx = self.client.transaction().await?;
            let mut cx = Cx { tx: &tx, statements, head: None, appended: Vec::new(), pending: Pending::default() };
            let attempts: Vec<&AttemptUpdate> = batch
                .iter()
                .filter_map(|op| if let Op::Finish(updates, _) = op { Some(updates.iter()) } else { None })
                .flatten()
                .collect();
            let changed = record_attempts(&cx, &attempts).await?;
            let mut answers = Vec::with_capacity(batch.len());
            for op in batch.iter() {
                answers.push(match op {
                    Op::Commit(record, _) => Answer::Commit(commit_record(&mut cx, record).await?),
                    Op::Finish(updates, _) => {
                        let events = updates.iter().filter(|u| changed.contains(&u.delivery_id)).map(|u| u.event());
                        cx.append(events.collect()).await?;
                        Answer::Unit
                    }
                    Op::Append(events, _) => Answer::Stamps(cx.append(events.clone()).await?),
                    Op::Checkpoint(c, _) => {
                        cx.flush().await?;
                        cx.tx
                            .execute(
                                "INSERT INTO audit_checkpoints (seq, key_id, hash, at, signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                                &[&c.seq, &c.key_id, &&c.hash[..], &c.at, &c.signature],
                            )
                            .await?;
                        Answer::Unit
                    }
                    Op::Replay(request, _) => Answer::Replay(replay(&mut cx, request).await?),
                    Op::Purge(request, _) => Answer::Purge(purge(&mut cx, request).await?),
                });
            }
            let appended = cx.finish().await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>((answers, appended))
        }
        .await;
        if records > 0 {
            StoreCommitted { engine: "postgres", records, duration: started.elapsed(), ok: result.is_ok() }
                .emit(&self.metrics);
        }
        let (answers, failure) = match result {
            Ok((answers, appended)) => {
                for kind in &appended {
                    AuditAppended { kind }.emit(&self.metrics);
                }
                (answers.into_iter().map(Some).collect::<Vec<_>>(), None)
            }
            Err(e) => ((0..batch.len()).map(|_| None).collect(), Some(e.to_string())),
        };
        let fail = || StoreError::Engine(failure.clone().unwrap_or_else(|| "the operation did not run".into()));
        for (op, answer) in batch.drain(..).zip(answers) {
            // A caller that gave up has dropped its receiver; its answer is simply discarded.
            match (op, answer) {
                (Op::Commit(_, r), Some(Answer::Commit(o))) => drop(r.send(Ok(o))),
                (Op::Finish(_, r), Some(Answer::Unit)) | (Op::Checkpoint(_, r), Some(Answer::Unit)) => {
                    drop(r.send(Ok(())))
                }
                (Op::Append(_, r), Some(Answer::Stamps(s))) => drop(r.send(Ok(s))),
                (Op::Replay(_, r), Some(Answer::Replay(x))) => drop(r.send(Ok(x))),
                (Op::Purge(_, r), Some(Answer::Purge(x))) => drop(r.send(Ok(x))),
                (Op::Commit(_, r), _) => drop(r.send(Err(fail()))),
                (Op::Finish(_, r), _) | (Op::Checkpoint(_, r), _) => drop(r.send(Err(fail()))),
                (Op::Append(_, r), _) => drop(r.send(Err(fail()))),
                (Op::Replay(_, r), _) => drop(r.send(Err(fail()))),
                (Op::Purge(_, r), _) => drop(r.send(Err(fail()))),
            }
        }
    }
}

async fn commit_record(cx: &mut Cx<'_, '_>, record: &NewRecord) -> Result<CommitOutcome, tokio_postgres::Error> {
    if let Some(key) = &record.idempotency_key {
        // An earlier record of this batch may carry the same key: it must be visible.
        cx.flush().await?;
        let existing = cx
            .tx
            .query_opt(
                "SELECT r.body_sha256, r.receipt, a.seq, a.hash FROM records r JOIN audit_log a ON a.seq = r.audit_seq
                 WHERE r.sender = $1 AND r.idempotency_key = $2",
                &[&record.sender, key],
            )
            .await?;
        if let Some(row) = existing {
            let stamp = AuditStamp { seq: row.get(2), hash: hash(&row, 3)? };
            return Ok(if row.get::<_, &[u8]>(0) == record.body_sha256 {
                CommitOutcome::Duplicate { receipt: Bytes::from(row.get::<_, Vec<u8>>(1)), stamp }
            } else {
                CommitOutcome::Conflict
            });
        }
    }
    if cx.pending.bytes >= MAX_PENDING_BYTES {
        cx.flush().await?;
    }
    let stamp = cx.append(vec![record.accepted_event()]).await?[0];
    cx.insert_record(record, stamp.seq);
    Ok(CommitOutcome::Accepted { receipt: record.receipt.clone(), stamp })
}

/// Records every attempt result of a batch in one statement, before the chain head is locked;
/// returns the deliveries whose row changed (a worker that lost its lease reports nothing: the
/// attempt of the new holder counts). The rows were committed by earlier transactions (a
/// delivery is claimed only once committed), so nothing pending needs flushing first.
async fn record_attempts(
    cx: &Cx<'_, '_>,
    updates: &[&AttemptUpdate],
) -> Result<std::collections::HashSet<i64>, tokio_postgres::Error> {
    if updates.is_empty() {
        return Ok(Default::default());
    }
    let n = updates.len();
    let (mut status, mut at, mut code, mut error) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut next, mut delivered, mut ids, mut workers) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for u in updates {
        let effect = u.effect();
        status.push(effect.status.as_str());
        at.push(u.at);
        code.push(effect.http_status.map(i32::from));
        error.push(effect.error);
        next.push(effect.next_attempt_at);
        delivered.push(effect.delivered_at);
        ids.push(u.delivery_id);
        workers.push(u.worker.as_str());
    }
    let rows = cx
        .tx
        .query(&cx.statements.finish_delivery, &[&status, &at, &code, &error, &next, &delivered, &ids, &workers])
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

async fn replay(cx: &mut Cx<'_, '_>, request: &ReplayRequest) -> Result<Vec<ReplayResult>, tokio_postgres::Error> {
    cx.flush().await?;
    let rows = match &request.target {
        ReplayTarget::One(id) => {
            cx.tx
                .query(
                    "SELECT id, record_id, recipient, agreement, body_digest, body IS NOT NULL, status FROM deliveries WHERE id = $1 FOR UPDATE",
                    &[id],
                )
                .await?
        }
        ReplayTarget::Recipient(r) => {
            cx.tx
                .query(
                    "SELECT id, record_id, recipient, agreement, body_digest, body IS NOT NULL, status FROM deliveries
                     WHERE recipient = $1 AND status = 'dead' ORDER BY id FOR UPDATE",
                    &[r],
                )
                .await?
        }
    };
    if rows.is_empty()
        && let ReplayTarget::One(id) = request.target
    {
        return Ok(vec![ReplayResult { id, recipient: None, agreement: None, outcome: ReplayOutcome::NotFound }]);
    }
    let mut results = Vec::with_capacity(rows.len());
    let mut events = Vec::new();
    for row in rows {
        let (id, record_id, recipient, agreement): (i64, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let outcome = if row.get::<_, &str>(6) != "dead" {
            ReplayOutcome::NotDead
        } else if !row.get::<_, bool>(5) {
            ReplayOutcome::BodyPurged
        } else {
            cx.tx
                .execute(
                    "UPDATE deliveries SET status = 'queued', next_attempt_at = $1, claimed_until = 0, claimed_by = NULL, replays = replays + 1 WHERE id = $2",
                    &[&request.now, &id],
                )
                .await?;
            events.push(request.event(record_id, &agreement, &recipient, hash(&row, 4)?));
            ReplayOutcome::Replayed
        };
        results.push(ReplayResult { id, recipient: Some(recipient), agreement: Some(agreement), outcome });
    }
    cx.append(events).await?;
    Ok(results)
}

async fn purge(cx: &mut Cx<'_, '_>, request: &PurgeRequest) -> Result<PurgeReport, tokio_postgres::Error> {
    cx.flush().await?;
    let delivered_before = request.now - request.delivered_retention_ms;
    let dead_before = request.now - request.dead_retention_ms;
    let delivery_bodies = cx
        .tx
        .execute(
            "UPDATE deliveries SET body = NULL WHERE body IS NOT NULL AND (
                 (status = 'delivered' AND delivered_at < $1) OR (status = 'dead' AND last_attempt_at < $2))",
            &[&delivered_before, &dead_before],
        )
        .await?;
    let record_bodies = cx
        .tx
        .execute(
            "UPDATE records SET body = NULL WHERE body IS NOT NULL AND received_at < $1 AND NOT EXISTS (
                 SELECT 1 FROM deliveries d WHERE d.record_id = records.record_id AND d.body IS NOT NULL)",
            &[&delivered_before],
        )
        .await?;
    let report = PurgeReport { record_bodies, delivery_bodies };
    if let Some(event) = report.event(request.now) {
        cx.append(vec![event]).await?;
    }
    Ok(report)
}

const STATE_SQL: &str = "CASE
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.record_id AND d.status IN ('queued', 'retrying')) THEN 'pending'
    WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.record_id AND d.status = 'dead') THEN 'failed'
    ELSE 'delivered' END";

async fn record_views(
    client: &deadpool_postgres::Object,
    rows: Vec<Row>,
) -> Result<Vec<RecordView>, tokio_postgres::Error> {
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let record_id: String = row.get(0);
        let deliveries = client
            .query(
                "SELECT recipient, agreement, status, attempts, last_attempt_at, delivered_at, next_attempt_at, last_error
                 FROM deliveries WHERE record_id = $1 ORDER BY id",
                &[&record_id],
            )
            .await?
            .into_iter()
            .map(|r| {
                let status: DeliveryStatus = r.try_get(2)?;
                let pending = matches!(status, DeliveryStatus::Queued | DeliveryStatus::Retrying);
                Ok(DeliveryView {
                    recipient: r.get(0),
                    agreement: r.get(1),
                    status,
                    attempts: r.get::<_, i32>(3) as u32,
                    last_attempt_at: r.get::<_, Option<i64>>(4).map(crate::clock::rfc3339_ms),
                    delivered_at: r.get::<_, Option<i64>>(5).map(crate::clock::rfc3339_ms),
                    next_attempt_at: pending.then(|| crate::clock::rfc3339_ms(r.get(6))),
                    last_error: r.get(7),
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        views.push(RecordView {
            record_id,
            record_type: row.get(1),
            schema_version: row.get(2),
            received_at: crate::clock::rfc3339_ms(row.get(3)),
            status: row.try_get(4)?,
            deliveries,
        });
    }
    Ok(views)
}

fn audit_row(r: &Row) -> Result<AuditEntry, tokio_postgres::Error> {
    Ok(AuditEntry {
        seq: r.get(0),
        event: AuditEvent {
            at: r.get(1),
            kind: r.get(2),
            actor: r.get(3),
            record_id: r.get(4),
            agreement: r.get(5),
            recipient: r.get(6),
            body_digest: digest(r, 7)?,
            outcome: r.get(8),
            reason: r.get(9),
            count: r.get(10),
        },
        prev_hash: hash(r, 11)?,
        hash: hash(r, 12)?,
    })
}

impl Store for PostgresStore {
    fn commit_record(&self, record: NewRecord) -> StoreFuture<'_, CommitOutcome> {
        Box::pin(self.write(move |tx| Op::Commit(Box::new(record), tx)))
    }

    fn claim_due(&self, claim: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedDelivery>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(engine)?;
            let columns = "d.id, d.record_id, d.recipient, d.agreement, r.sender, r.record_type, r.schema_version, r.traceparent, d.body, d.body_digest, d.attempts, d.created_at, d.next_attempt_at, d.claimed_until, r.tracestate";
            let rows = if claim.head_only {
                // The head, whatever its state, locked: one instance at a time decides about it. No
                // SKIP LOCKED here: skipping a head another instance is claiming would hand out the
                // delivery behind it and break the order. Waiting is short (claims are short) and
                // then the head is seen leased.
                tx.query(
                    &format!(
                        "SELECT {columns} FROM deliveries d JOIN records r ON r.record_id = d.record_id
                         WHERE d.recipient = $1 AND d.status IN ('queued', 'retrying') ORDER BY d.id LIMIT 1 FOR UPDATE OF d"
                    ),
                    &[&claim.recipient],
                )
                .await
            } else {
                tx.query(
                    &format!(
                        "SELECT {columns} FROM deliveries d JOIN records r ON r.record_id = d.record_id
                         WHERE d.recipient = $1 AND d.status IN ('queued', 'retrying') AND d.next_attempt_at <= $2 AND d.claimed_until < $2
                         ORDER BY d.next_attempt_at, d.id LIMIT $3 FOR UPDATE OF d SKIP LOCKED"
                    ),
                    &[&claim.recipient, &claim.now, &(claim.limit as i64)],
                )
                .await
            }
            .map_err(engine)?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                let (next_attempt_at, claimed_until): (i64, i64) = (row.get(12), row.get(13));
                if claim.head_only && (next_attempt_at > claim.now || claimed_until >= claim.now) {
                    continue;
                }
                let id: i64 = row.get(0);
                tx.execute(
                    "UPDATE deliveries SET claimed_until = $1, claimed_by = $2 WHERE id = $3",
                    &[&claim.lease_until, &claim.worker, &id],
                )
                .await
                .map_err(engine)?;
                claimed.push(ClaimedDelivery {
                    id,
                    record_id: row.get(1),
                    recipient: row.get(2),
                    agreement: row.get(3),
                    sender: row.get(4),
                    record_type: row.get(5),
                    schema_version: row.get(6),
                    traceparent: row.get(7),
                    tracestate: row.get(14),
                    body: Bytes::from(row.get::<_, Option<Vec<u8>>>(8).unwrap_or_default()),
                    body_digest: hash(&row, 9).map_err(engine)?,
                    attempts: row.get::<_, i32>(10) as u32,
                    created_at: row.get(11),
                });
            }
            tx.commit().await.map_err(engine)?;
            Ok(claimed)
        })
    }

    fn finish_attempts(&self, updates: Vec<AttemptUpdate>) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| Op::Finish(updates, tx)))
    }

    fn record(&self, sender: String, record_id: String) -> StoreFuture<'_, Option<RecordView>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT r.record_id, r.record_type, r.schema_version, r.received_at, {STATE_SQL} FROM records r
                         WHERE r.record_id = $1 AND r.sender = $2"
                    ),
                    &[&record_id, &sender],
                )
                .await
                .map_err(engine)?;
            Ok(record_views(&client, rows).await.map_err(engine)?.pop())
        })
    }

    fn receipt(&self, record_id: String) -> StoreFuture<'_, Option<StoredReceipt>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT r.receipt, a.seq, a.hash, a.body_digest FROM records r JOIN audit_log a ON a.seq = r.audit_seq
                     WHERE r.record_id = $1",
                    &[&record_id],
                )
                .await
                .map_err(engine)?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(StoredReceipt {
                receipt: Bytes::from(r.get::<_, Vec<u8>>(0)),
                stamp: AuditStamp { seq: r.get(1), hash: hash(&r, 2).map_err(engine)? },
                body_digest: digest(&r, 3).map_err(engine)?,
            }))
        })
    }

    fn list_records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<RecordView>> {
        Box::pin(async move {
            let client = self.client().await?;
            let (before_at, before_id) = query.before.clone().map_or((None, None), |(at, id)| (Some(at), Some(id)));
            let status = query.status.map(|s| match s {
                RecordState::Pending => "pending",
                RecordState::Delivered => "delivered",
                RecordState::Failed => "failed",
            });
            let params: [&(dyn ToSql + Sync); 6] =
                [&query.sender, &query.since, &before_at, &before_id, &status, &(query.limit as i64)];
            let rows = client
                .query(
                    &format!(
                        "SELECT * FROM (
                            SELECT r.record_id, r.record_type, r.schema_version, r.received_at, {STATE_SQL} AS state FROM records r
                            WHERE r.sender = $1 AND ($2::BIGINT IS NULL OR r.received_at >= $2)
                              AND ($3::BIGINT IS NULL OR (r.received_at, r.record_id) < ($3, $4::TEXT))
                         ) page WHERE ($5::TEXT IS NULL OR state = $5) ORDER BY received_at DESC, record_id DESC LIMIT $6"
                    ),
                    &params,
                )
                .await
                .map_err(engine)?;
            record_views(&client, rows).await.map_err(engine)
        })
    }

    fn backlog(&self) -> StoreFuture<'_, Vec<RecipientBacklog>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT recipient,
                            COUNT(*) FILTER (WHERE status IN ('queued', 'retrying')),
                            MIN(created_at) FILTER (WHERE status IN ('queued', 'retrying')),
                            COUNT(*) FILTER (WHERE status = 'dead')
                     FROM deliveries WHERE status IN ('queued', 'retrying', 'dead') GROUP BY recipient",
                    &[],
                )
                .await
                .map_err(engine)?;
            Ok(rows
                .into_iter()
                .map(|r| RecipientBacklog {
                    recipient: r.get(0),
                    pending: r.get(1),
                    oldest_pending_at: r.get(2),
                    dead: r.get(3),
                })
                .collect())
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.client().await?.query_one("SELECT 1", &[]).await.map_err(engine)?;
            Ok(())
        })
    }

    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn append_audit(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, Vec<AuditStamp>> {
        Box::pin(self.write(move |tx| Op::Append(events, tx)))
    }

    fn audit_head(&self) -> StoreFuture<'_, Option<AuditStamp>> {
        Box::pin(async move {
            let row = self
                .client()
                .await?
                .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
                .await
                .map_err(engine)?;
            let head = AuditStamp { seq: row.get(0), hash: hash(&row, 1).map_err(engine)? };
            Ok((head.seq > 0).then_some(head))
        })
    }

    fn audit_entries(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash
                     FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &(limit as i64)],
                )
                .await
                .map_err(engine)?;
            rows.iter().map(audit_row).collect::<Result<_, _>>().map_err(engine)
        })
    }

    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| Op::Checkpoint(checkpoint, tx)))
    }

    fn checkpoints(&self) -> StoreFuture<'_, Vec<Checkpoint>> {
        Box::pin(async move {
            let rows = self
                .client()
                .await?
                .query("SELECT seq, key_id, hash, at, signature FROM audit_checkpoints ORDER BY seq, key_id", &[])
                .await
                .map_err(engine)?;
            rows.iter()
                .map(|r| {
                    Ok(Checkpoint {
                        seq: r.get(0),
                        key_id: r.get(1),
                        hash: hash(r, 2)?,
                        at: r.get(3),
                        signature: r.get(4),
                    })
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(engine)
        })
    }

    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<'_, Vec<DeliveryAdminView>> {
        Box::pin(async move {
            let status = filter.status.map(DeliveryStatus::as_str);
            let params: [&(dyn ToSql + Sync); 4] =
                [&status, &filter.recipient, &filter.after_id.unwrap_or(0), &(filter.limit as i64)];
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT d.id, d.record_id, r.sender, r.record_type, d.recipient, d.agreement, d.status, d.attempts, d.replays,
                            d.created_at, d.last_attempt_at, d.last_status, d.last_error, d.body IS NOT NULL
                     FROM deliveries d JOIN records r ON r.record_id = d.record_id
                     WHERE ($1::TEXT IS NULL OR d.status = $1) AND ($2::TEXT IS NULL OR d.recipient = $2) AND d.id > $3
                     ORDER BY d.id LIMIT $4",
                    &params,
                )
                .await
                .map_err(engine)?;
            rows.iter()
                .map(|r| {
                    Ok(DeliveryAdminView {
                        id: r.get(0),
                        record_id: r.get(1),
                        sender: r.get(2),
                        record_type: r.get(3),
                        recipient: r.get(4),
                        agreement: r.get(5),
                        status: r.try_get(6)?,
                        attempts: r.get::<_, i32>(7) as u32,
                        replays: r.get::<_, i32>(8) as u32,
                        created_at: crate::clock::rfc3339_ms(r.get(9)),
                        last_attempt_at: r.get::<_, Option<i64>>(10).map(crate::clock::rfc3339_ms),
                        last_status: r.get::<_, Option<i32>>(11).map(|s| s as u16),
                        last_error: r.get(12),
                        body_kept: r.get(13),
                    })
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(engine)
        })
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, Vec<ReplayResult>> {
        Box::pin(self.write(move |tx| Op::Replay(request, tx)))
    }

    fn purge(&self, request: PurgeRequest) -> StoreFuture<'_, PurgeReport> {
        Box::pin(self.write(move |tx| Op::Purge(request, tx)))
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

    /// A store in a schema of its own, so tests run in parallel on one database.
    async fn store() -> (Arc<dyn Store>, Schema) {
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(&server(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests ({}): {e}", server()));
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
        let mut config: tokio_postgres::Config = server().parse().unwrap();
        config.options(format!("-c search_path={schema}"));
        let options = PostgresOptions {
            config,
            pool_size: 4,
            queue: 64,
            max_batch: 16,
            commit_timeout: Duration::from_secs(10),
            tls: None,
        };
        (Arc::new(PostgresStore::open(options, Metrics::new()).await.unwrap()), Schema(schema))
    }

    crate::store_conformance!(store());

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
            tls: Some(crate::tls::recipient_client(&[ca], None, None, &crate::tls::disk).unwrap()),
        };
        let Err(error) = PostgresStore::open(options, Metrics::new()).await else {
            panic!("a server certificate from another CA was accepted");
        };
        assert!(error.to_string().contains("certificate"), "{error}");
    }
}
