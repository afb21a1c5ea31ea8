//! The SQLite writer's side: the schema migrations, and the batch transaction the shared writer
//! runs ([`Batch`]) with the statements only SQLite runs, one row at a time (rows cost nothing to
//! send in-process).

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{Connection, params};

use super::Conn;
use crate::audit::AuditEntry;
use crate::store::sql;
use crate::store::writes::Batch;
use crate::store::{AttemptUpdate, Lease, NewRecord, StoreError, StoreErrorKind};

/// Schema migrations, applied in order; each runs once and is recorded in `schema_migrations`: a
/// version and the scripts that make it (this engine's tables, then what both engines share).
const MIGRATIONS: &[(i64, &[&str])] = &[
    (1, &[include_str!("../migrations/sqlite/0001_tables.sql"), sql::INDEXES]),
    (2, &[sql::TRACESTATE]),
    (3, &[sql::SETTLED_INDEX]),
    (4, &[include_str!("../migrations/sqlite/0004_data_keys.sql"), sql::SEALED_BODIES]),
    (5, &[sql::DELIVERY_VERSION]),
    (6, &[include_str!("../migrations/sqlite/0006_subjects.sql"), sql::DISCLOSURES]),
    (7, &[sql::INVESTIGATION]),
    (8, &[include_str!("../migrations/sqlite/0008_receipt_trees.sql")]),
    (9, &[sql::DELIVERY_INDEXES]),
    (10, &[sql::AUDIT_INDEXES]),
    (11, &[include_str!("../migrations/sqlite/0011_disclosure_terms.sql"), sql::DISCLOSURE_TERMS]),
];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Applies the migrations up to version `target` (the tests build older stores with it).
pub(super) fn migrate_to(conn: &mut Connection, target: i64) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    for (version, scripts) in MIGRATIONS {
        if *version > current && *version <= target {
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

/// Refuses a file that is not a Passerelle store, or one a newer program migrated.
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 =
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(|e| {
            StoreError::new(StoreErrorKind::Incompatible, format!("{} is not a Passerelle store", path.display()))
                .caused_by(e)
        })?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::new(
            StoreErrorKind::Incompatible,
            format!("{} is at schema version {version}, newer than this program's {SCHEMA_VERSION}", path.display()),
        ));
    }
    Ok(())
}

const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

const INSERT_RECORD: &str = "INSERT INTO records (record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, tracestate, receipt, audit_seq, key_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

const INSERT_DELIVERY: &str = "INSERT INTO deliveries (record_id, recipient, agreement, ordered, body, body_digest, status, created_at, next_attempt_at, key_id, schema_version, terms_id, claimed_until, claimed_by)
     VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $8, $9, $10, $11, $12)";

const INSERT_SUBJECT: &str = "INSERT INTO record_subjects (subject, record_id, received_at) VALUES ($1, $2, $3)";

/// Only while the worker still holds the lease (`claimed_by`).
const FINISH_ATTEMPT: &str = "UPDATE deliveries SET status = $1, attempts = attempts + 1, last_attempt_at = $2, last_status = $3, last_error = $4,
         next_attempt_at = $5, delivered_at = $6, claimed_until = 0, claimed_by = NULL
     WHERE id = $7 AND claimed_by = $8";

/// Every statement only SQLite runs, for the test of their parameters.
#[cfg(test)]
pub(super) const STATEMENTS: &[&str] = &[INSERT_AUDIT, INSERT_RECORD, INSERT_DELIVERY, INSERT_SUBJECT, FINISH_ATTEMPT];

impl Batch for Conn {
    const ENGINE: &'static str = "sqlite";

    async fn begin(&mut self) -> Result<(), StoreError> {
        // A transaction a failed rollback left open would refuse every later one.
        if !self.0.is_autocommit() {
            self.0.execute_batch("ROLLBACK")?;
        }
        self.1.clear();
        // The write lock now, not at the first write: the chain head read under it stays the head.
        Ok(self.0.execute_batch("BEGIN IMMEDIATE")?)
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        Ok(self.0.execute_batch("COMMIT")?)
    }

    async fn rollback(&mut self) {
        if !self.0.is_autocommit()
            && let Err(error) = self.0.execute_batch("ROLLBACK")
        {
            tracing::warn!(message = "A store rollback failed; the next batch tries again.", %error);
        }
    }

    async fn insert_entries(&mut self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        let mut insert = self.0.prepare_cached(INSERT_AUDIT)?;
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
        self.0.prepare_cached(INSERT_RECORD)?.execute(params![
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
            audit_seq,
            record.key_id,
        ])?;
        let mut insert = self.0.prepare_cached(INSERT_DELIVERY)?;
        let leases = leases.iter().chain(std::iter::repeat(&None));
        for ((d, lease), terms) in record.deliveries.iter().zip(leases).zip(terms) {
            insert.execute(params![
                record.record_id,
                d.recipient,
                d.agreement,
                d.ordered,
                &d.body[..],
                &d.body_digest[..],
                record.received_at,
                d.key_id,
                d.schema_version,
                terms,
                lease.as_ref().map_or(0, |l| l.until),
                lease.as_ref().map(|l| &l.worker),
            ])?;
            self.1.push(self.0.last_insert_rowid());
        }
        let mut insert = self.0.prepare_cached(INSERT_SUBJECT)?;
        for subject in &record.subjects {
            insert.execute(params![&subject[..], record.record_id, record.received_at])?;
        }
        Ok(())
    }

    fn take_inserted_deliveries(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.1)
    }

    async fn record_attempts(&mut self, updates: &[&AttemptUpdate]) -> Result<HashSet<usize>, StoreError> {
        let mut finish = self.0.prepare_cached(FINISH_ATTEMPT)?;
        let mut applied = HashSet::new();
        for (position, u) in updates.iter().enumerate() {
            let e = u.effect();
            let params = params![
                e.status.as_str(),
                u.at,
                e.http_status,
                e.error,
                e.next_attempt_at,
                e.delivered_at,
                u.delivery_id,
                u.worker
            ];
            if finish.execute(params)? == 1 {
                applied.insert(position);
            }
        }
        Ok(applied)
    }
}
