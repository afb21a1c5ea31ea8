//! The PostgreSQL writer's side: the schema migrations, and the connection the shared writer
//! runs its batches on ([`Batch`]), with the statements only PostgreSQL runs: a batch's audit
//! entries, records, deliveries and record subjects go to the server as one multi-row insert per
//! table, and every attempt result of a batch as one update.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use tokio_postgres::Statement;

use tokio_postgres::types::ToSql;

use super::{DIALECT, MOVE_HEAD, bind};
use crate::audit::receipt::TreeHead;
use crate::audit::{AuditEntry, AuditStamp};
use crate::store::sql::{self, Dialect, Param, Row, Sql};
use crate::store::writes::{self, Batch, EarlierUses, KeyUse};
use crate::store::{AttemptResult, AttemptUpdate, ErrorClass, Lease, NewRecord, StoreError};

/// Schema migrations, applied in order under an advisory lock, each once: a version and the
/// scripts that make it (this engine's tables, then what both engines share).
const MIGRATIONS: &[(i64, &[&str])] = &[
    (1, &[include_str!("../migrations/postgres/0001_tables.sql"), sql::INDEXES]),
    (2, &[sql::TRACESTATE]),
    (3, &[sql::SETTLED_INDEX]),
    (4, &[include_str!("../migrations/postgres/0004_data_keys.sql"), sql::SEALED_BODIES]),
    (5, &[sql::DELIVERY_VERSION]),
    (6, &[include_str!("../migrations/postgres/0006_subjects.sql"), sql::DISCLOSURES]),
    (7, &[sql::INVESTIGATION]),
    (8, &[include_str!("../migrations/postgres/0008_receipt_trees.sql")]),
    (9, &[sql::DELIVERY_INDEXES]),
    (10, &[sql::AUDIT_INDEXES]),
    (11, &[include_str!("../migrations/postgres/0011_disclosure_terms.sql"), sql::DISCLOSURE_TERMS]),
];

/// Any number fits: the lock only serialises migrations between instances starting together.
const MIGRATION_LOCK: i64 = 0x7061_7373_6572_656c; // "passerel"

async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    migrate_to(client, MIGRATIONS.len() as i64).await
}

/// Applies the migrations up to version `target` (the tests build older stores with it).
pub(super) async fn migrate_to(client: &mut tokio_postgres::Client, target: i64) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let current: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?.get(0);
    for (version, scripts) in MIGRATIONS {
        if *version > current && *version <= target {
            for script in *scripts {
                tx.batch_execute(script).await?;
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &crate::clock::now_ms()],
            )
            .await?;
        }
    }
    Ok(tx.commit().await?)
}

// Multi-row inserts from one array per column: a batch's rows go in one round trip per table.
// `WITH ORDINALITY ... ORDER BY` keeps the arrays' order, so delivery ids (and first attempts)
// follow acceptance order.

const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash)
     SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash
     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[],
                 $9::text[], $10::text[], $11::bigint[], $12::bytea[], $13::bytea[])
          WITH ORDINALITY AS u(seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash, n)
     ORDER BY n";

const INSERT_RECORD: &str = "INSERT INTO records (record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate, key_id)
     SELECT record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate, key_id
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bytea[], $7::bytea[], $8::text[],
                 $9::text[], $10::bytea[], $11::bigint[], $12::text[], $13::text[])
          WITH ORDINALITY AS u(record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate, key_id, n)
     ORDER BY n";

/// Returns the ids given; they are drawn from the sequence in the arrays' order, so sorted they
/// are the rows' ids in that order (whatever order RETURNING lists them in).
const INSERT_DELIVERY: &str = "INSERT INTO deliveries (record_id, recipient, agreement, ordered, body, body_digest, status, created_at, next_attempt_at, key_id, schema_version, terms_id, claimed_until, claimed_by)
     SELECT record_id, recipient, agreement, ordered, body, body_digest, 'queued', created_at, created_at, key_id, schema_version, terms_id, claimed_until, claimed_by
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::boolean[], $5::bytea[], $6::bytea[], $7::bigint[], $8::text[], $9::text[],
                 $10::bigint[], $11::bigint[], $12::text[])
          WITH ORDINALITY AS u(record_id, recipient, agreement, ordered, body, body_digest, created_at, key_id, schema_version, terms_id, claimed_until, claimed_by, n)
     ORDER BY n
     RETURNING id";

const INSERT_SUBJECTS: &str = "INSERT INTO record_subjects (subject, record_id, received_at)
     SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bigint[])";

/// Every attempt result of a batch in one statement. A worker that lost its lease matches
/// nothing, and RETURNING says which results (by their 1-based position) were applied; of two
/// results for one row, only one is.
const FINISH_ATTEMPTS: &str = "UPDATE deliveries AS d SET status = u.status, attempts = d.attempts + 1, last_attempt_at = u.at,
         last_status = u.code, last_error = u.error, next_attempt_at = u.next, delivered_at = u.delivered,
         claimed_until = 0, claimed_by = NULL
     FROM UNNEST($1::text[], $2::bigint[], $3::integer[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])
          WITH ORDINALITY AS u(status, at, code, error, next, delivered, id, worker, n)
     WHERE d.id = u.id AND d.claimed_by = u.worker
     RETURNING u.n";

/// Applied attempts added to their deliveries' timelines, each numbered by its delivery's
/// attempts (updated earlier in the transaction).
const INSERT_ATTEMPTS: &str = "INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, status, latency_ms, error_class, next_attempt_at)
     SELECT d.id, d.attempts, u.at, u.outcome, u.status, u.latency_ms, u.error_class, u.next
     FROM UNNEST($1::bigint[], $2::text[], $3::integer[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[])
          WITH ORDINALITY AS u(at, outcome, status, latency_ms, error_class, next, id, n)
     JOIN deliveries d ON d.id = u.id
     ORDER BY u.n";

/// The earlier uses of a batch's idempotency keys (`$1` senders, `$2` keys, pairwise), in one
/// statement: `sender, key`, then the columns of `sql::IDEMPOTENT`.
const EARLIER_USES: &str = "SELECT u.sender, u.key, r.body_sha256, r.receipt, a.seq, a.hash
     FROM UNNEST($1::text[], $2::text[]) AS u(sender, key)
     JOIN records r ON r.sender = u.sender AND r.idempotency_key = u.key
     JOIN audit_log a ON a.seq = r.audit_seq";

/// Every statement only PostgreSQL's writer runs.
pub(super) const STATEMENTS: &[&str] =
    &[INSERT_AUDIT, INSERT_RECORD, INSERT_DELIVERY, INSERT_SUBJECTS, FINISH_ATTEMPTS, INSERT_ATTEMPTS, EARLIER_USES];

/// The statements of the shared writer this engine's writer runs.
const SHARED: &[&str] = &[
    sql::IDEMPOTENT,
    sql::ADD_CHECKPOINT,
    sql::ADD_RECEIPT_TREE,
    sql::INSERT_ATTEMPT,
    sql::PURGE_DELIVERED,
    sql::PURGE_DEAD,
    sql::PURGE_RECORDS,
    sql::PURGE_SUBJECTS,
    DIALECT.chain_head,
    DIALECT.replay_one,
    DIALECT.replay_recipient,
    DIALECT.requeue,
    DIALECT.held,
];

/// The writer's own connection, outside the pool.
pub(super) struct WriterConnection {
    client: tokio_postgres::Client,
    /// Every statement the writer runs, prepared once per connection (each prepare is a round
    /// trip): at open for the records' writer, on first use for the claims'.
    statements: HashMap<&'static str, Statement>,
    /// Rows inserted by the batch but not sent yet.
    pending: Pending,
    /// The ids of the deliveries the open transaction inserted, in the order inserted.
    inserted: Vec<i64>,
    /// How to connect again once the server has closed the connection (a restart, a failover,
    /// an administrator ending the session).
    config: tokio_postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl WriterConnection {
    /// Connects, applies the migrations (once across instances) and prepares the statements.
    pub async fn open(
        config: &tokio_postgres::Config,
        tls: &Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, StoreError> {
        let mut connection = Self::open_for_claims(config, tls).await?;
        migrate(&mut connection.client).await?;
        for sql in SHARED.iter().chain(STATEMENTS).chain([&MOVE_HEAD]) {
            let statement = connection.client.prepare(sql).await?;
            connection.statements.insert(*sql, statement);
        }
        Ok(connection)
    }

    /// A connection for the claims' group commit, once [`WriterConnection::open`] has migrated:
    /// it prepares the claim statements on first use.
    pub async fn open_for_claims(
        config: &tokio_postgres::Config,
        tls: &Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, StoreError> {
        let client = super::connect(config, tls).await?;
        let statements = HashMap::new();
        Ok(WriterConnection {
            client,
            statements,
            pending: Pending::default(),
            inserted: Vec::new(),
            config: config.clone(),
            tls: tls.clone(),
        })
    }

    /// Connects again if the server closed the connection: the batch that found it closed has
    /// failed (its callers were told), the next one runs on a new connection, its statements
    /// prepared again as they are used. A server still down fails this batch too.
    async fn reconnect_if_closed(&mut self) -> Result<(), StoreError> {
        if !self.client.is_closed() {
            return Ok(());
        }
        self.client = super::connect(&self.config, &self.tls).await?;
        self.statements.clear();
        self.pending = Pending::default();
        tracing::info!(message = "The store writer connected to the database again.");
        Ok(())
    }

    /// A statement prepared at open; one the list missed is prepared now, once.
    async fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Every statement sends the pending rows first, so the transaction always sees its own writes.
impl Sql for WriterConnection {
    const DIALECT: Dialect = DIALECT;

    async fn query<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        read: impl FnMut(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.flush().await?;
        let statement = self.statement(sql).await?;
        let rows = self.client.query(&statement, &bind(params)).await?;
        rows.iter().map(|row| row as &dyn Row).map(read).collect()
    }

    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        self.flush().await?;
        let statement = self.statement(sql).await?;
        Ok(self.client.execute(&statement, &bind(params)).await?)
    }
}

impl Batch for WriterConnection {
    const ENGINE: &'static str = "postgres";

    async fn begin(&mut self) -> Result<(), StoreError> {
        self.reconnect_if_closed().await?;
        self.inserted.clear();
        Ok(self.client.batch_execute("BEGIN").await?)
    }

    /// The batch's last rows, its tree, the head's move and the commit go in one flight.
    async fn commit(&mut self) -> Result<(), StoreError> {
        self.send_pending(true).await
    }

    async fn rollback(&mut self) {
        self.pending = Pending::default();
        if let Err(error) = self.client.batch_execute("ROLLBACK").await {
            tracing::warn!(message = "A store rollback failed.", %error);
        }
    }

    async fn insert_entries(&mut self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        let a = &mut self.pending.audit;
        for e in entries {
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
        Ok(())
    }

    async fn insert_record(
        &mut self,
        record: &NewRecord,
        audit_seq: i64,
        leases: &[Option<Lease>],
        terms: &[Option<i64>],
    ) -> Result<(), StoreError> {
        if self.pending.bytes >= MAX_PENDING_BYTES {
            self.flush().await?;
        }
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
        r.key_id.push(record.key_id.clone());
        let d = &mut self.pending.deliveries;
        let leases = leases.iter().chain(std::iter::repeat(&None));
        for ((delivery, lease), terms) in record.deliveries.iter().zip(leases).zip(terms) {
            d.record_id.push(record.record_id.clone());
            d.recipient.push(delivery.recipient.clone());
            d.agreement.push(delivery.agreement.clone());
            d.ordered.push(delivery.ordered);
            d.body.push(delivery.body.clone());
            d.body_digest.push(delivery.body_digest.to_vec());
            d.created_at.push(record.received_at);
            d.key_id.push(delivery.key_id.clone());
            d.schema_version.push(delivery.schema_version.clone());
            d.terms_id.push(*terms);
            d.claimed_until.push(lease.as_ref().map_or(0, |l| l.until));
            d.claimed_by.push(lease.as_ref().map(|l| l.worker.clone()));
        }
        let s = &mut self.pending.subjects;
        for subject in &record.subjects {
            s.subject.push(subject.to_vec());
            s.record_id.push(record.record_id.clone());
            s.received_at.push(record.received_at);
        }
        Ok(())
    }

    /// The lock and the lookup go in one flight: the lookup runs once the lock is granted, so it
    /// sees every key another instance committed before releasing the head.
    async fn lock_chain_and_find(&mut self, keys: &[KeyUse<'_>]) -> Result<(AuditStamp, EarlierUses), StoreError> {
        self.flush().await?;
        let lock = self.statement(DIALECT.chain_head).await?;
        let find = self.statement(EARLIER_USES).await?;
        let (senders, keys): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
        let lookup = async {
            if senders.is_empty() { Ok(Vec::new()) } else { self.client.query(&find, &[&senders, &keys]).await }
        };
        let (head, found) = tokio::try_join!(self.client.query(&lock, &[]), lookup)?;
        let head = match head.first() {
            Some(row) => writes::stamp(row)?,
            None => AuditStamp::GENESIS,
        };
        let mut earlier = EarlierUses::new();
        for row in &found {
            let row: &dyn Row = row;
            earlier.insert((row.text(0)?, row.text(1)?), writes::earlier_use(row, 2)?);
        }
        Ok((head, earlier))
    }

    async fn insert_attempts(&mut self, attempts: &[&AttemptUpdate]) -> Result<(), StoreError> {
        let a = &mut self.pending.attempts;
        for u in attempts {
            let effect = u.effect();
            a.at.push(u.at);
            a.outcome.push(effect.status.as_str());
            a.status.push(effect.http_status.map(i32::from));
            a.latency_ms.push(u.latency_ms);
            a.error_class.push(u.error_class().map(ErrorClass::as_str));
            a.next.push(matches!(u.result, AttemptResult::Retry { .. }).then_some(effect.next_attempt_at));
            a.id.push(u.delivery_id);
        }
        Ok(())
    }

    async fn insert_tree(&mut self, head: &TreeHead, last_seq: i64) -> Result<(), StoreError> {
        self.pending.tree = Some((head.clone(), last_seq));
        Ok(())
    }

    async fn move_head(&mut self, head: AuditStamp) -> Result<(), StoreError> {
        self.pending.head = Some(head);
        Ok(())
    }

    fn take_inserted_deliveries(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.inserted)
    }

    /// The rows were committed by earlier transactions (a delivery is attempted only once
    /// committed), so nothing pending needs sending first.
    async fn record_attempts(&mut self, updates: &[&AttemptUpdate]) -> Result<HashSet<usize>, StoreError> {
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
        let statement = self.statement(FINISH_ATTEMPTS).await?;
        let rows =
            self.client.query(&statement, &[&status, &at, &code, &error, &next, &delivered, &ids, &workers]).await?;
        // RETURNING gives 1-based positions.
        rows.iter().map(|r| Ok((r as &dyn Row).small::<usize>(0)?.saturating_sub(1))).collect()
    }
}

/// Inserts waiting to be sent, one array per column: a batch's audit entries, records,
/// deliveries and subjects go to the server in four statements at the next [`WriterConnection::flush`],
/// instead of one round trip per row. Every other statement flushes first; any failure still
/// fails the whole batch.
#[derive(Default)]
struct Pending {
    audit: AuditColumns,
    records: RecordColumns,
    deliveries: DeliveryColumns,
    subjects: SubjectColumns,
    attempts: AttemptColumns,
    /// The batch's receipt tree and the seq of its last receipt.
    tree: Option<(TreeHead, i64)>,
    /// Where the chain head moves before the commit.
    head: Option<AuditStamp>,
    /// Body bytes waiting; past [`MAX_PENDING_BYTES`] they are sent before the next record.
    bytes: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.audit.seq.is_empty()
            && self.records.record_id.is_empty()
            && self.deliveries.record_id.is_empty()
            && self.subjects.subject.is_empty()
            && self.attempts.id.is_empty()
            && self.tree.is_none()
            && self.head.is_none()
    }
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
    key_id: Vec<Option<String>>,
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
    key_id: Vec<Option<String>>,
    schema_version: Vec<Option<String>>,
    terms_id: Vec<Option<i64>>,
    claimed_until: Vec<i64>,
    claimed_by: Vec<Option<String>>,
}

#[derive(Default)]
struct AttemptColumns {
    at: Vec<i64>,
    outcome: Vec<&'static str>,
    status: Vec<Option<i32>>,
    latency_ms: Vec<Option<i64>>,
    error_class: Vec<Option<&'static str>>,
    next: Vec<Option<i64>>,
    id: Vec<i64>,
}

#[derive(Default)]
struct SubjectColumns {
    subject: Vec<Vec<u8>>,
    record_id: Vec<String>,
    received_at: Vec<i64>,
}

impl WriterConnection {
    /// Sends the pending rows before another statement.
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.send_pending(false).await
    }

    /// Sends the pending rows (audit entries, then records, their deliveries and subjects, then
    /// attempts), the receipt tree and the head's move, and with `commit` the commit, pipelined:
    /// one round trip in all. The first failure fails the batch (a commit sent after a failed
    /// statement only rolls back).
    async fn send_pending(&mut self, commit: bool) -> Result<(), StoreError> {
        if !commit && self.pending.is_empty() {
            return Ok(());
        }
        let Pending { audit: a, records: r, deliveries: d, subjects: s, attempts: t, tree, head, bytes: _ } =
            std::mem::take(&mut self.pending);
        let audit = self.statement(INSERT_AUDIT).await?;
        let record = self.statement(INSERT_RECORD).await?;
        let delivery = self.statement(INSERT_DELIVERY).await?;
        let subject = self.statement(INSERT_SUBJECTS).await?;
        let attempt = self.statement(INSERT_ATTEMPTS).await?;
        let add_tree = self.statement(sql::ADD_RECEIPT_TREE).await?;
        let move_head = self.statement(MOVE_HEAD).await?;
        let client = &self.client;
        // Bound as `bytea[]` without copying the bodies.
        let record_bodies: Vec<&[u8]> = r.body.iter().map(|b| &b[..]).collect();
        let delivery_bodies: Vec<&[u8]> = d.body.iter().map(|b| &b[..]).collect();
        let audit = async {
            if a.seq.is_empty() {
                return Ok(0);
            }
            let params: [&(dyn ToSql + Sync); 13] = [
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
            ];
            client.execute(&audit, &params).await
        };
        let records = async {
            if r.record_id.is_empty() {
                return Ok(0);
            }
            let params: [&(dyn ToSql + Sync); 13] = [
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
                &r.key_id,
            ];
            client.execute(&record, &params).await
        };
        let deliveries = async {
            if d.record_id.is_empty() {
                return Ok(Vec::new());
            }
            let params: [&(dyn ToSql + Sync); 12] = [
                &d.record_id,
                &d.recipient,
                &d.agreement,
                &d.ordered,
                &delivery_bodies,
                &d.body_digest,
                &d.created_at,
                &d.key_id,
                &d.schema_version,
                &d.terms_id,
                &d.claimed_until,
                &d.claimed_by,
            ];
            client.query(&delivery, &params).await
        };
        let subjects = async {
            if s.subject.is_empty() {
                return Ok(0);
            }
            client.execute(&subject, &[&s.subject, &s.record_id, &s.received_at]).await
        };
        let attempts = async {
            if t.id.is_empty() {
                return Ok(0);
            }
            let params: [&(dyn ToSql + Sync); 7] =
                [&t.at, &t.outcome, &t.status, &t.latency_ms, &t.error_class, &t.next, &t.id];
            client.execute(&attempt, &params).await
        };
        let tree = async {
            let Some((h, last_seq)) = &tree else { return Ok(0) };
            let size = h.size as i64;
            let params: [&(dyn ToSql + Sync); 7] =
                [&h.first_seq, last_seq, &size, &&h.root[..], &h.signed_at, &h.key_id, &h.signature];
            client.execute(&add_tree, &params).await
        };
        let moved = async {
            let Some(head) = &head else { return Ok(0) };
            client.execute(&move_head, &[&head.seq, &&head.hash[..]]).await
        };
        let commit = async { if commit { client.batch_execute("COMMIT").await } else { Ok(()) } };
        let (_, _, inserted, ..) =
            tokio::try_join!(audit, records, deliveries, subjects, attempts, tree, moved, commit)?;
        let first = self.inserted.len();
        for row in &inserted {
            self.inserted.push(row.try_get(0)?);
        }
        self.inserted[first..].sort_unstable();
        Ok(())
    }
}
