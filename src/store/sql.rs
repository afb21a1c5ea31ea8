//! SQL both engines run, written once, and the two seams each engine fills: how a value is bound
//! to a statement ([`Param`]) and what value a column of a row holds ([`Row::column`]).
//!
//! Shared statements number their parameters `$1, $2, …` in order of first appearance: that is
//! PostgreSQL's syntax, and SQLite reads `$1` as a named parameter whose index is the order in
//! which names first appear, so one text binds the same values on both (a test on each engine
//! holds every statement to it). Where PostgreSQL needs a parameter's type and cannot infer it
//! (`$2 IS NULL`), the first appearance is a `CAST`, which SQLite also accepts.
//!
//! The few statements whose text differs (row locks, a list of ids) are a [`Dialect`] each engine
//! fills, mostly from the shared fragments here; what only one engine runs (PostgreSQL's
//! multi-row inserts, SQLite's per-row ones) stays in the engine.
//!
//! The schema migrations: each engine creates its own tables (the column types differ), then
//! both create the same indexes and make the same later changes.

use std::str::FromStr;

use super::{StoreError, UnknownLabel};

/// The indexes of schema version 1, run after the engine's `0001_tables.sql`.
pub(super) const INDEXES: &str = include_str!("migrations/shared/0001_indexes.sql");
/// Schema version 2.
pub(super) const TRACESTATE: &str = include_str!("migrations/shared/0002_tracestate.sql");
/// Schema version 3.
pub(super) const SETTLED_INDEX: &str = include_str!("migrations/shared/0003_settled_index.sql");
/// Schema version 4 on both engines, after the engine's `data_keys` table.
pub(super) const SEALED_BODIES: &str = include_str!("migrations/shared/0004_sealed_bodies.sql");
/// Schema version 5.
pub(super) const DELIVERY_VERSION: &str = include_str!("migrations/shared/0005_delivery_version.sql");
/// Schema version 6 on both engines, after the engine's `record_subjects` table.
pub(super) const DISCLOSURES: &str = include_str!("migrations/shared/0006_disclosures.sql");
/// Schema version 7, the same on both engines: the attempt timeline and the investigation's
/// indexes.
pub(super) const INVESTIGATION: &str = include_str!("migrations/shared/0007_investigation.sql");
/// Schema version 9, the same on both engines: delivery indexes a new delivery does not enter.
pub(super) const DELIVERY_INDEXES: &str = include_str!("migrations/shared/0009_delivery_indexes.sql");
/// Schema version 10, the same on both engines: an audit index and a delivery index fewer.
pub(super) const AUDIT_INDEXES: &str = include_str!("migrations/shared/0010_audit_indexes.sql");
/// Schema version 11 (after the engine's `disclosure_terms` table).
pub(super) const DISCLOSURE_TERMS: &str = include_str!("migrations/shared/0011_disclosure_terms.sql");

/// A value bound to a statement parameter. Each engine converts it to the parameter's type.
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// A list of delivery ids (an array on PostgreSQL, a JSON array on SQLite).
    Ids(&'a [i64]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Bytes(v)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// What a column of a row holds, as the engine read it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Column<'r> {
    Null,
    /// Any integer, and booleans as 0 or 1.
    Int(i64),
    Text(&'r str),
    Bytes(&'r [u8]),
}

/// A row of a result. Each engine says what value a column holds; everything else reads rows
/// through the typed accessors on `dyn Row`, so a value of the wrong type or size is an error
/// naming its column, never a panic and never taken for another value.
pub(super) trait Row {
    fn column(&self, i: usize) -> Result<Column<'_>, StoreError>;
}

impl dyn Row + '_ {
    fn unexpected<T>(&self, i: usize, found: Column<'_>, wanted: &str) -> Result<T, StoreError> {
        let found = match found {
            Column::Null => "NULL",
            Column::Int(_) => "an integer",
            Column::Text(_) => "text",
            Column::Bytes(_) => "bytes",
        };
        Err(StoreError::corrupt(format!("column {i} holds {found}, not {wanted}")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.column(i)? {
            Column::Null => Ok(None),
            Column::Int(v) => Ok(Some(v)),
            other => self.unexpected(i, other, "an integer"),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.map_or_else(|| self.unexpected(i, Column::Null, "an integer"), Ok)
    }

    /// An integer column that must fit `T` (a count, an HTTP status).
    pub fn opt_small<T: TryFrom<i64>>(&self, i: usize) -> Result<Option<T>, StoreError> {
        self.opt_int(i)?
            .map(|v| T::try_from(v).map_err(|_| StoreError::corrupt(format!("column {i} holds {v}, out of range"))))
            .transpose()
    }

    pub fn small<T: TryFrom<i64>>(&self, i: usize) -> Result<T, StoreError> {
        self.opt_small(i)?.map_or_else(|| self.unexpected(i, Column::Null, "an integer"), Ok)
    }

    pub fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.column(i)? {
            Column::Null => Ok(None),
            Column::Text(v) => Ok(Some(v.to_owned())),
            other => self.unexpected(i, other, "text"),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.map_or_else(|| self.unexpected(i, Column::Null, "text"), Ok)
    }

    /// A label column read as its enum: a label the code does not know is an error naming it.
    pub fn label<T: FromStr<Err = UnknownLabel>>(&self, i: usize) -> Result<T, StoreError> {
        match self.column(i)? {
            Column::Text(v) => v.parse().map_err(|e: UnknownLabel| StoreError::corrupt(format!("column {i}: {e}"))),
            other => self.unexpected(i, other, "a label"),
        }
    }

    pub fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.column(i)? {
            Column::Null => Ok(None),
            Column::Bytes(v) => Ok(Some(v.to_vec())),
            other => self.unexpected(i, other, "bytes"),
        }
    }

    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        self.opt_bytes(i)?.map_or_else(|| self.unexpected(i, Column::Null, "bytes"), Ok)
    }

    /// A 32-byte hash or digest: a value of another length is an error, never zero-filled.
    pub fn opt_hash(&self, i: usize) -> Result<Option<[u8; 32]>, StoreError> {
        match self.column(i)? {
            Column::Null => Ok(None),
            Column::Bytes(v) => v
                .try_into()
                .map(Some)
                .map_err(|_| StoreError::corrupt(format!("column {i} holds a hash of {} bytes, not 32", v.len()))),
            other => self.unexpected(i, other, "a hash"),
        }
    }

    pub fn hash(&self, i: usize) -> Result<[u8; 32], StoreError> {
        self.opt_hash(i)?.map_or_else(|| self.unexpected(i, Column::Null, "a hash"), Ok)
    }
}

/// A connection (or a transaction on one) that runs statements: what each engine provides so
/// reads, claims and the writer's decisions are written once.
pub(super) trait Sql {
    /// The statements whose text is this engine's own.
    const DIALECT: Dialect;

    /// Runs `sql` and reads every row it returns with `read`.
    async fn query<T>(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
        read: impl FnMut(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>;

    /// Runs `sql` and returns how many rows it changed.
    async fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError>;
}

/// The statements whose text differs between engines, with what they take and give.
pub(super) struct Dialect {
    /// The newest entry of the chain (`seq`, `hash`), as a reader sees it; `seq` 0 or no row
    /// when the chain is empty.
    pub audit_head: &'static str,
    /// The same, read inside the writer's transaction and locked until it ends.
    pub chain_head: &'static str,
    /// Moves the chain head to (`$1` seq, `$2` hash) before a batch commits, if the engine keeps it apart.
    pub move_head: Option<&'static str>,
    /// `CLAIM_COLUMNS` of the due, unleased deliveries of recipient `$1` at `$2`, at most `$3`,
    /// locked where the engine locks rows.
    pub claim_due: &'static str,
    /// `CLAIM_COLUMNS` of the head of recipient `$1`'s queue, whatever its state, locked.
    pub claim_head: &'static str,
    /// Leases the deliveries `$3` (a list) until `$1` to worker `$2`.
    pub lease: &'static str,
    /// `REPLAY_COLUMNS` of delivery `$1`, locked.
    pub replay_one: &'static str,
    /// `REPLAY_COLUMNS` of the dead deliveries of recipient `$1`, oldest first, locked.
    pub replay_recipient: &'static str,
    /// Queues the deliveries `$2` (a list) again at `$1`.
    pub requeue: &'static str,
    /// `HELD_COLUMNS` of the deliveries `$3` (a list) of recipient `$1` still held under lease
    /// `$2` and pending, locked.
    pub held: &'static str,
    /// Locks the records of the deliveries `$1` (a list) until the transaction ends, if the
    /// engine's writers can run side by side: of two transactions delivering the last two
    /// deliveries of one record, the second then sees the first's and finds the record complete.
    pub lock_records: Option<&'static str>,
    /// The records of the deliveries `$1` (a list) that are complete: `record_id, record_type,
    /// received_at` and when the last delivery arrived.
    pub completed: &'static str,
}

/// The columns of a claimed delivery (with its record's acceptance time and audit seq, and the data
/// key its body is sealed under), then its `next_attempt_at` and `claimed_until`; from
/// `deliveries d JOIN records r`.
macro_rules! claim_columns {
    () => {
        "d.id, d.record_id, d.recipient, d.agreement, r.sender, r.record_type,
         COALESCE(d.schema_version, r.schema_version), r.traceparent, r.tracestate,
         d.body, d.body_digest, d.attempts, d.created_at, r.received_at, r.audit_seq, d.key_id, d.next_attempt_at,
         d.claimed_until"
    };
}

/// [`Dialect::claim_due`] without its lock clause.
macro_rules! claim_due {
    ($lock:literal) => {
        concat!(
            "SELECT ",
            $crate::store::sql::claim_columns!(),
            " FROM deliveries d JOIN records r ON r.record_id = d.record_id
             WHERE d.recipient = $1 AND d.status IN ('queued', 'retrying') AND d.next_attempt_at <= $2 AND d.claimed_until < $2
             ORDER BY d.next_attempt_at, d.id LIMIT $3",
            $lock
        )
    };
}

/// [`Dialect::claim_head`] without its lock clause. The head whatever its state: if it is not
/// due or another worker holds it, nothing behind it may go either.
macro_rules! claim_head {
    ($lock:literal) => {
        concat!(
            "SELECT ",
            $crate::store::sql::claim_columns!(),
            " FROM deliveries d JOIN records r ON r.record_id = d.record_id
             WHERE d.recipient = $1 AND d.status IN ('queued', 'retrying') ORDER BY d.id LIMIT 1",
            $lock
        )
    };
}

/// What a replay decides from: id, record, recipient, agreement, body digest, whether the body
/// is kept, status.
macro_rules! replay_columns {
    () => {
        "SELECT id, record_id, recipient, agreement, body_digest, body IS NOT NULL, status FROM deliveries"
    };
}

/// [`Dialect::replay_one`] without its lock clause.
macro_rules! replay_one {
    ($lock:literal) => {
        concat!($crate::store::sql::replay_columns!(), " WHERE id = $1", $lock)
    };
}

/// [`Dialect::replay_recipient`] without its lock clause.
macro_rules! replay_recipient {
    ($lock:literal) => {
        concat!($crate::store::sql::replay_columns!(), " WHERE recipient = $1 AND status = 'dead' ORDER BY id", $lock)
    };
}

/// [`Dialect::requeue`], given how the engine names the rows of the list `$2`.
macro_rules! requeue {
    ($ids:literal) => {
        concat!(
            "UPDATE deliveries SET status = 'queued', next_attempt_at = $1, claimed_until = 0, claimed_by = NULL,
                 replays = replays + 1 WHERE id ",
            $ids
        )
    };
}

/// [`Dialect::lease`], given how the engine names the rows of the list `$3`.
macro_rules! lease {
    ($ids:literal) => {
        concat!("UPDATE deliveries SET claimed_until = $1, claimed_by = $2 WHERE id ", $ids)
    };
}

/// [`Dialect::held`], given how the engine names the table (with any hint on how to reach its
/// rows), the rows of the list `$3`, and its lock clause.
macro_rules! held {
    ($table:literal, $ids:literal, $lock:literal) => {
        concat!(
            "SELECT id, record_id, agreement, body_digest, attempts, created_at FROM ",
            $table,
            "
             WHERE recipient = $1 AND claimed_by = $2 AND status IN ('queued', 'retrying') AND id ",
            $ids,
            " ORDER BY id",
            $lock
        )
    };
}

/// The records of the deliveries in a list, given how the engine names the rows of the list `$1`.
macro_rules! records_of {
    ($ids:literal) => {
        concat!("SELECT record_id FROM deliveries WHERE id ", $ids)
    };
}

/// [`Dialect::lock_records`], given how the engine names the rows of the list `$1`. Locked in
/// the order of the record ids, so two transactions never each hold a lock the other waits for.
macro_rules! lock_records {
    ($ids:literal) => {
        concat!(
            "SELECT record_id FROM records WHERE record_id IN (",
            $crate::store::sql::records_of!($ids),
            ") ORDER BY record_id FOR UPDATE"
        )
    };
}

/// [`Dialect::completed`], given how the engine names the rows of the list `$1`.
macro_rules! completed {
    ($ids:literal) => {
        concat!(
            "SELECT r.record_id, r.record_type, r.received_at, MAX(d.delivered_at)
             FROM records r JOIN deliveries d ON d.record_id = r.record_id
             WHERE r.record_id IN (",
            $crate::store::sql::records_of!($ids),
            ") GROUP BY r.record_id, r.record_type, r.received_at
             HAVING COUNT(*) FILTER (WHERE d.status <> 'delivered') = 0"
        )
    };
}

pub(super) use {
    claim_columns, claim_due, claim_head, completed, held, lease, lock_records, records_of, replay_columns, replay_one,
    replay_recipient, requeue,
};

/// A record's state from its deliveries (`r` is the record): pending while any is queued or
/// retrying, failed if any is dead, else delivered.
macro_rules! record_state {
    () => {
        "CASE
            WHEN EXISTS (SELECT 1 FROM deliveries s WHERE s.record_id = r.record_id AND s.status IN ('queued', 'retrying')) THEN 'pending'
            WHEN EXISTS (SELECT 1 FROM deliveries s WHERE s.record_id = r.record_id AND s.status = 'dead') THEN 'failed'
            ELSE 'delivered' END"
    };
}

/// Records chosen by a query (its text given in pieces, then `;` and the order to show them in)
/// giving `record_id, record_type, schema_version, received_at, state`, each with when it was
/// complete and its deliveries, oldest first: one row per delivery, and one with NULL delivery
/// columns for a record without any. A complete record (state `delivered`) was complete when its
/// last delivery arrived, or, without deliveries, when it was received.
macro_rules! with_deliveries {
    ($($records:expr),+; $order:literal) => {
        concat!(
            "SELECT p.record_id, p.record_type, p.schema_version, p.received_at, p.state,
                    CASE WHEN p.state = 'delivered'
                         THEN COALESCE(MAX(d.delivered_at) OVER (PARTITION BY p.record_id), p.received_at) END,
                    d.recipient, d.agreement, d.status, d.attempts, d.last_attempt_at, d.delivered_at, d.next_attempt_at, d.last_error
             FROM (",
            $($records),+,
            ") p LEFT JOIN deliveries d ON d.record_id = p.record_id ORDER BY ",
            $order,
            "d.id"
        )
    };
}

/// Record `$1` with its deliveries, if `$2` sent it (`with_deliveries!` columns).
pub(super) const RECORD: &str = with_deliveries!(
    "SELECT r.record_id, r.record_type, r.schema_version, r.received_at, ",
    record_state!(),
    " AS state FROM records r WHERE r.record_id = $1 AND r.sender = $2";
    ""
);

/// A page of sender `$1`'s records with their deliveries, newest first: received at or after
/// `$2` if set, before the position (`$3` received_at, `$4` record_id) if set, in state `$5` if
/// set, not in state `$6` if set, at most `$7` records (`with_deliveries!` columns).
pub(super) const RECORD_PAGE: &str = with_deliveries!(
    "SELECT * FROM (
        SELECT r.record_id, r.record_type, r.schema_version, r.received_at, ",
    record_state!(),
    " AS state FROM records r
        WHERE r.sender = $1 AND (CAST($2 AS BIGINT) IS NULL OR r.received_at >= $2)
          AND (CAST($3 AS BIGINT) IS NULL OR (r.received_at, r.record_id) < ($3, CAST($4 AS TEXT)))
     ) s WHERE (CAST($5 AS TEXT) IS NULL OR s.state = $5) AND (CAST($6 AS TEXT) IS NULL OR s.state <> $6)
     ORDER BY s.received_at DESC, s.record_id DESC LIMIT $7";
    "p.received_at DESC, p.record_id DESC, "
);

/// The receipt stored with record `$1`, and its entry's seq, hash and body digest.
pub(super) const RECEIPT: &str =
    "SELECT r.receipt, a.seq, a.hash, a.body_digest FROM records r JOIN audit_log a ON a.seq = r.audit_seq
     WHERE r.record_id = $1";

/// Records of sender `$1` with a delivery settled (delivered or dead) by an attempt at or after
/// `$2` (found through the attempts, `delivery_attempts_by_time`) that are due a completion
/// notice of a kind they have none of (its record is sender `$3`'s with idempotency key
/// `<record id>.<kind>`), oldest first, at most `$4` records, each with its deliveries in order:
/// `record_id, record_type, schema_version, received_at, audit_seq, kind`, then the delivery's
/// `recipient, agreement, status, attempts, last_attempt_at, delivered_at, next_attempt_at,
/// last_error`. `incomplete` as soon as a delivery is dead, `complete` once every one is
/// delivered.
pub(super) const NOTICES_DUE: &str = "SELECT p.record_id, p.record_type, p.schema_version, p.received_at, p.audit_seq, p.kind,
        d.recipient, d.agreement, d.status, d.attempts, d.last_attempt_at, d.delivered_at, d.next_attempt_at, d.last_error
     FROM (
        SELECT k.* FROM (
            SELECT r.record_id, r.record_type, r.schema_version, r.received_at, r.audit_seq,
                CASE WHEN EXISTS (SELECT 1 FROM deliveries s WHERE s.record_id = r.record_id AND s.status = 'dead')
                     THEN 'incomplete'
                     WHEN NOT EXISTS (SELECT 1 FROM deliveries s WHERE s.record_id = r.record_id AND s.status <> 'delivered')
                     THEN 'complete' END AS kind
            FROM records r
            WHERE r.sender = $1 AND r.record_id IN (
                SELECT d.record_id FROM delivery_attempts t JOIN deliveries d ON d.id = t.delivery_id
                WHERE t.at >= $2 AND t.outcome IN ('delivered', 'dead'))
        ) k
        WHERE k.kind IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM records n WHERE n.sender = $3 AND n.idempotency_key = k.record_id || '.' || k.kind)
        ORDER BY k.received_at, k.record_id LIMIT $4
     ) p JOIN deliveries d ON d.record_id = p.record_id
     ORDER BY p.received_at, p.record_id, d.id";

/// Per status (`queued`, `retrying`, `dead`) and recipient: how many deliveries, and when the
/// first of them by id was created. The `deliveries_pending` and `deliveries_dead` indexes hold
/// all of it but the creation times, so each engine counts over the indexes alone, in their
/// order (by recipient, both statuses of a pending delivery at once), and reads one row per
/// group: reading every row of a deep backlog competed with the writer for as long as it took
/// (SQLite, 80,000 pending deliveries: 150 ms per read). Over a status index of every delivery
/// it took 10 ms, this way 15 ms, and the writer no longer enters every delivery in that index
/// (schema version 9). Ids follow
/// acceptance, so the first by id is the oldest to within the few milliseconds concurrent
/// requests take to commit: nothing a gauge in seconds shows.
pub(super) const BACKLOG: &str = "WITH p AS MATERIALIZED (
         SELECT recipient,
                COUNT(*) FILTER (WHERE status = 'queued') AS queued, MIN(id) FILTER (WHERE status = 'queued') AS first_queued,
                COUNT(*) FILTER (WHERE status = 'retrying') AS retrying, MIN(id) FILTER (WHERE status = 'retrying') AS first_retrying
         FROM deliveries WHERE status IN ('queued', 'retrying') GROUP BY recipient)
     SELECT b.recipient, b.status, b.n, d.created_at
     FROM (SELECT recipient, 'queued' AS status, queued AS n, first_queued AS first FROM p WHERE queued > 0
           UNION ALL
           SELECT recipient, 'retrying', retrying, first_retrying FROM p WHERE retrying > 0
           UNION ALL
           SELECT recipient, 'dead', COUNT(*), MIN(id) FROM deliveries WHERE status = 'dead' GROUP BY recipient) b
     JOIN deliveries d ON d.id = b.first";

/// Up to `$2` audit entries after seq `$1`, in order.
pub(super) const AUDIT_ENTRIES: &str =
    "SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash
     FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2";

/// Every checkpoint, oldest first.
pub(super) const CHECKPOINTS: &str =
    "SELECT seq, key_id, hash, at, signature FROM audit_checkpoints ORDER BY seq, key_id";

/// The checkpoints of the entries `$1` to `$2`, oldest first (`CHECKPOINTS` columns).
pub(super) const CHECKPOINTS_BETWEEN: &str =
    "SELECT seq, key_id, hash, at, signature FROM audit_checkpoints WHERE seq >= $1 AND seq <= $2 ORDER BY seq, key_id";

/// Records a checkpoint (`$1` seq, `$2` key id, `$3` hash, `$4` at, `$5` signature) once.
pub(super) const ADD_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (seq, key_id, hash, at, signature)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

/// Deliveries as operators see them: in status `$1` if set, to recipient `$2` if set, after id
/// `$3`, of agreement `$4` if set, sent or received by partner `$5` if set, of record `$6` if
/// set, at most `$7`, oldest first.
pub(super) const DELIVERIES: &str =
    "SELECT d.id, d.record_id, r.sender, r.record_type, d.recipient, d.agreement, d.status, d.attempts, d.replays,
            d.created_at, d.last_attempt_at, d.last_status, d.last_error, d.body IS NOT NULL, d.next_attempt_at
     FROM deliveries d JOIN records r ON r.record_id = d.record_id
     WHERE (CAST($1 AS TEXT) IS NULL OR d.status = $1) AND (CAST($2 AS TEXT) IS NULL OR d.recipient = $2) AND d.id > $3
       AND (CAST($4 AS TEXT) IS NULL OR d.agreement = $4)
       AND (CAST($5 AS TEXT) IS NULL OR d.recipient = $5 OR r.sender = $5)
       AND (CAST($6 AS TEXT) IS NULL OR d.record_id = $6)
     ORDER BY d.id LIMIT $7";

/// Records operators look for, newest first, each with its deliveries' recipient, agreement and
/// status (one row per delivery, one with NULLs for a record without any): record `$1` if set,
/// sent by `$2` if set, with idempotency key `$3` if set, of type `$4` if set, received at or
/// after `$5` and before `$6` if set, before the position (`$7` received_at, `$8` record_id) if
/// set, at most `$9` records. Columns: `record_id, sender, record_type, schema_version,
/// received_at, state, idempotency_key`, whether the body is kept, `audit_seq`, then the
/// delivery's `recipient, agreement, status`.
pub(super) const FIND_RECORDS: &str = concat!(
    "SELECT p.record_id, p.sender, p.record_type, p.schema_version, p.received_at, p.state, p.idempotency_key,
            p.body_kept, p.audit_seq, d.recipient, d.agreement, d.status
     FROM (
        SELECT r.record_id, r.sender, r.record_type, r.schema_version, r.received_at, ",
    record_state!(),
    " AS state, r.idempotency_key, r.body IS NOT NULL AS body_kept, r.audit_seq
        FROM records r
        WHERE (CAST($1 AS TEXT) IS NULL OR r.record_id = $1) AND (CAST($2 AS TEXT) IS NULL OR r.sender = $2)
          AND (CAST($3 AS TEXT) IS NULL OR r.idempotency_key = $3) AND (CAST($4 AS TEXT) IS NULL OR r.record_type = $4)
          AND (CAST($5 AS BIGINT) IS NULL OR r.received_at >= $5) AND (CAST($6 AS BIGINT) IS NULL OR r.received_at < $6)
          AND (CAST($7 AS BIGINT) IS NULL OR (r.received_at, r.record_id) < ($7, CAST($8 AS TEXT)))
        ORDER BY r.received_at DESC, r.record_id DESC LIMIT $9
     ) p LEFT JOIN deliveries d ON d.record_id = p.record_id
     ORDER BY p.received_at DESC, p.record_id DESC, d.id"
);

/// Records one attempt of delivery `$7`, whose row the attempt's result has just updated (its
/// `attempts` is the attempt's number): at `$1`, outcome `$2`, status `$3`, latency `$4`, error
/// class `$5`, next attempt `$6`.
pub(super) const INSERT_ATTEMPT: &str =
    "INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, status, latency_ms, error_class, next_attempt_at)
     SELECT id, attempts, CAST($1 AS BIGINT), CAST($2 AS TEXT), CAST($3 AS INTEGER), CAST($4 AS BIGINT),
            CAST($5 AS TEXT), CAST($6 AS BIGINT)
     FROM deliveries WHERE id = $7";

/// Every attempt of the deliveries of record `$1`, by delivery then attempt.
pub(super) const ATTEMPTS: &str =
    "SELECT a.delivery_id, a.attempt, a.at, a.outcome, a.status, a.latency_ms, a.error_class, a.next_attempt_at
     FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
     WHERE d.record_id = $1 ORDER BY a.delivery_id, a.attempt";

/// The audit columns `AUDIT_ENTRIES` reads, of the entries naming record `$1`, at most `$2`.
pub(super) const AUDIT_NAMING: &str =
    "SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash
     FROM audit_log WHERE record_id = $1 ORDER BY seq LIMIT $2";

/// The audit columns `AUDIT_ENTRIES` reads, of the entries after seq `$1`, at or after `$2` if
/// set, before `$3` if set, at most `$4`, in order.
pub(super) const AUDIT_RANGE: &str =
    "SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash
     FROM audit_log WHERE seq > $1 AND (CAST($2 AS BIGINT) IS NULL OR at >= $2) AND (CAST($3 AS BIGINT) IS NULL OR at < $3)
     ORDER BY seq LIMIT $4";

/// Records accepted per bucket of `$1` ms from `$2` to `$3`, sent by or delivered to partner
/// `$4` if set, with a delivery under agreement `$5` if set: bucket start, count.
pub(super) const STATS_ACCEPTED: &str = "SELECT (r.received_at / $1) * $1 AS bucket, COUNT(*) FROM records r
     WHERE r.received_at >= $2 AND r.received_at < $3
       AND (CAST($4 AS TEXT) IS NULL OR r.sender = $4
            OR EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.record_id AND d.recipient = $4))
       AND (CAST($5 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM deliveries d WHERE d.record_id = r.record_id AND d.agreement = $5))
     GROUP BY bucket ORDER BY bucket";

/// Attempts per bucket of `$1` ms from `$2` to `$3` and outcome, of deliveries sent or received
/// by partner `$4` if set, under agreement `$5` if set: bucket start, outcome, count, sum of
/// latencies, how many had one, longest.
pub(super) const STATS_ATTEMPTS: &str =
    "SELECT (a.at / $1) * $1 AS bucket, a.outcome, COUNT(*), CAST(COALESCE(SUM(a.latency_ms), 0) AS BIGINT),
        COUNT(a.latency_ms), COALESCE(MAX(a.latency_ms), 0)
     FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN records r ON r.record_id = d.record_id
     WHERE a.at >= $2 AND a.at < $3
       AND (CAST($4 AS TEXT) IS NULL OR d.recipient = $4 OR r.sender = $4)
       AND (CAST($5 AS TEXT) IS NULL OR d.agreement = $5)
     GROUP BY bucket, a.outcome ORDER BY bucket";

/// Rejected records from `$1` to `$2` by reason, from the audit trail's per-minute tallies,
/// of sender `$3` if set: reason, count.
pub(super) const STATS_REJECTED: &str = "SELECT outcome, CAST(SUM(count) AS BIGINT) FROM audit_log
     WHERE kind = 'records.rejected' AND at >= $1 AND at < $2 AND (CAST($3 AS TEXT) IS NULL OR actor = $3)
     GROUP BY outcome ORDER BY outcome";

/// Record `$1`'s body as stored, and the data key it is sealed under.
pub(super) const RECORD_BODY: &str = "SELECT record_id, body, key_id FROM records WHERE record_id = $1";

/// Delivery `$1`'s body as stored, its record and recipient, and the data key it is sealed under.
pub(super) const DELIVERY_BODY: &str = "SELECT record_id, recipient, body, key_id FROM deliveries WHERE id = $1";

/// The columns of a signed receipt tree, as `stored_tree` reads them.
macro_rules! tree_columns {
    () => {
        "t.first_seq, t.last_seq, t.size, t.root, t.signed_at, t.key_id, t.signature"
    };
}

/// The signed receipt tree that holds the receipt of audit entry `$1`, if one does.
pub(super) const RECEIPT_TREE: &str = concat!(
    "SELECT ",
    tree_columns!(),
    " FROM receipt_trees t
     WHERE t.first_seq = (SELECT MAX(first_seq) FROM receipt_trees WHERE first_seq <= $1) AND t.last_seq >= $1"
);

/// Up to `$2` signed receipt trees after first entry `$1`, in order.
pub(super) const RECEIPT_TREES: &str =
    concat!("SELECT ", tree_columns!(), " FROM receipt_trees t WHERE t.first_seq > $1 ORDER BY t.first_seq LIMIT $2");

/// The receipts of the records whose entries lie from `$1` to `$2`, in audit order, each with its
/// entry's seq, hash and body digest (`RECEIPT` columns).
pub(super) const TREE_RECEIPTS: &str =
    "SELECT r.receipt, a.seq, a.hash, a.body_digest FROM records r JOIN audit_log a ON a.seq = r.audit_seq
     WHERE r.audit_seq >= $1 AND r.audit_seq <= $2 ORDER BY r.audit_seq";

/// Records the signed head of a group commit's receipt tree: `$1` first seq, `$2` last seq, `$3`
/// size, `$4` root, `$5` signed at, `$6` key id, `$7` signature.
pub(super) const ADD_RECEIPT_TREE: &str =
    "INSERT INTO receipt_trees (first_seq, last_seq, size, root, signed_at, key_id, signature)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The record sender `$1` committed with idempotency key `$2`: its body's SHA-256, receipt, and
/// entry's seq and hash.
pub(super) const IDEMPOTENT: &str =
    "SELECT r.body_sha256, r.receipt, a.seq, a.hash FROM records r JOIN audit_log a ON a.seq = r.audit_seq
     WHERE r.sender = $1 AND r.idempotency_key = $2";

/// Deletes the bodies of deliveries delivered before `$1`. The statement names the whole
/// condition of `deliveries_delivered_with_body`, so both engines read only that index.
pub(super) const PURGE_DELIVERED: &str = "UPDATE deliveries SET body = NULL
     WHERE status = 'delivered' AND body IS NOT NULL AND delivered_at < $1";

/// Deletes the bodies of deliveries dead since before `$1`, through `deliveries_dead_with_body`.
pub(super) const PURGE_DEAD: &str = "UPDATE deliveries SET body = NULL
     WHERE status = 'dead' AND body IS NOT NULL AND last_attempt_at < $1";

/// Deletes the subjects of records received before `$1`: past the access record's retention.
pub(super) const PURGE_SUBJECTS: &str = "DELETE FROM record_subjects WHERE received_at < $1";

/// The deliveries of the records subject `$1` appears in, after delivery id `$2`, at most `$3`,
/// by id: `id, record_id, sender, record_type, schema_version`, the version the recipient
/// receives, `recipient, agreement, purpose, fields, received_at`, the acceptance entry's seq,
/// `status, delivered_at`, and the seq of the delivery's `delivery.delivered` entry.
pub(super) const ACCESS: &str = "SELECT d.id, d.record_id, r.sender, r.record_type, r.schema_version,
        COALESCE(d.schema_version, r.schema_version), d.recipient, d.agreement, t.purpose, t.fields,
        r.received_at, r.audit_seq, d.status, d.delivered_at,
        (SELECT MAX(a.seq) FROM audit_log a
         WHERE a.kind = 'delivery.delivered' AND a.record_id = d.record_id AND a.recipient = d.recipient)
     FROM record_subjects s JOIN records r ON r.record_id = s.record_id JOIN deliveries d ON d.record_id = s.record_id
          LEFT JOIN disclosure_terms t ON t.id = d.terms_id
     WHERE s.subject = $1 AND d.id > $2
     ORDER BY d.id LIMIT $3";

/// Deletes the bodies of records received before `$1` once none of their deliveries needs a body.
pub(super) const PURGE_RECORDS: &str =
    "UPDATE records SET body = NULL WHERE body IS NOT NULL AND received_at < $1 AND NOT EXISTS (
         SELECT 1 FROM deliveries d WHERE d.record_id = records.record_id AND d.body IS NOT NULL)";

/// Data key `$1`: its id, its wrapping key's id, and the wrapped key (NULL once destroyed).
pub(super) const DATA_KEY: &str = "SELECT id, kek_id, wrapped FROM data_keys WHERE id = $1";

/// Adds data key `$1` wrapped under `$2` as `$3`, created at `$4`, for bodies until `$5`,
/// unless a key has that id (another instance made the day's key first).
pub(super) const ADD_DATA_KEY: &str = "INSERT INTO data_keys (id, kek_id, wrapped, created_at, not_after)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";

/// Up to `$2` live data keys wrapped under another key than `$1`, as `DATA_KEY` reads them.
pub(super) const KEYS_WRAPPED_ELSEWHERE: &str =
    "SELECT id, kek_id, wrapped FROM data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1 ORDER BY id LIMIT $2";

/// Wraps data key `$3` as `$2` under `$1`, if it is still wrapped under `$4`.
pub(super) const REWRAP_KEY: &str =
    "UPDATE data_keys SET kek_id = $1, wrapped = $2 WHERE id = $3 AND kek_id = $4 AND wrapped IS NOT NULL";

/// Destroys, at `$1`, the data keys whose day ended before `$2` and under which no body is
/// left; their ids.
pub(super) const DESTROY_KEYS: &str = "UPDATE data_keys SET wrapped = NULL, destroyed_at = $1
     WHERE wrapped IS NOT NULL AND not_after < $2
       AND NOT EXISTS (SELECT 1 FROM records r WHERE r.key_id = data_keys.id AND r.body IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.key_id = data_keys.id AND d.body IS NOT NULL)
     RETURNING id";

/// Live data keys per wrapping key: `kek_id`, count.
pub(super) const LIVE_KEYS: &str =
    "SELECT kek_id, COUNT(*) FROM data_keys WHERE wrapped IS NOT NULL GROUP BY kek_id ORDER BY kek_id";

/// How many data keys were destroyed, and how many record and delivery bodies are plaintext.
pub(super) const KEY_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM data_keys WHERE wrapped IS NULL),
            (SELECT COUNT(*) FROM records WHERE key_id IS NULL AND body IS NOT NULL),
            (SELECT COUNT(*) FROM deliveries WHERE key_id IS NULL AND body IS NOT NULL)";

/// Up to `$1` record bodies in plaintext: record id, body, and the agreement of its first
/// delivery (its sender when it has none).
pub(super) const PLAIN_RECORDS: &str = "SELECT r.record_id, r.body,
            COALESCE((SELECT d.agreement FROM deliveries d WHERE d.record_id = r.record_id ORDER BY d.id LIMIT 1), r.sender)
     FROM records r WHERE r.key_id IS NULL AND r.body IS NOT NULL ORDER BY r.record_id LIMIT $1";

/// Up to `$1` delivery bodies in plaintext: id, record id, recipient, body, agreement.
pub(super) const PLAIN_DELIVERIES: &str = "SELECT id, record_id, recipient, body, agreement FROM deliveries
     WHERE key_id IS NULL AND body IS NOT NULL ORDER BY id LIMIT $1";

/// Replaces record `$3`'s plaintext body with `$1`, sealed under `$2`, if it is still plaintext.
pub(super) const SEAL_RECORD: &str =
    "UPDATE records SET body = $1, key_id = $2 WHERE record_id = $3 AND key_id IS NULL AND body IS NOT NULL";

/// Replaces delivery `$3`'s plaintext body with `$1`, sealed under `$2`, if it is still plaintext.
pub(super) const SEAL_DELIVERY: &str =
    "UPDATE deliveries SET body = $1, key_id = $2 WHERE id = $3 AND key_id IS NULL AND body IS NOT NULL";

/// Stores terms `$1` (purpose), `$2` (fields column) unless they are stored already.
pub(super) const ADD_TERMS: &str =
    "INSERT INTO disclosure_terms (purpose, fields) VALUES ($1, $2) ON CONFLICT (purpose, fields) DO NOTHING";
/// The id of the stored terms `$1` (purpose), `$2` (fields column).
pub(super) const TERMS_ID: &str = "SELECT id FROM disclosure_terms WHERE purpose = $1 AND fields = $2";

/// Whether the store answers.
pub(super) const PING: &str = "SELECT 1";

/// Every shared statement, for the engines' tests.
#[cfg(test)]
pub(super) const SHARED: &[&str] = &[
    RECORD,
    RECORD_PAGE,
    RECEIPT,
    NOTICES_DUE,
    BACKLOG,
    AUDIT_ENTRIES,
    CHECKPOINTS,
    CHECKPOINTS_BETWEEN,
    ADD_CHECKPOINT,
    DELIVERIES,
    FIND_RECORDS,
    INSERT_ATTEMPT,
    ATTEMPTS,
    AUDIT_NAMING,
    AUDIT_RANGE,
    STATS_ACCEPTED,
    STATS_ATTEMPTS,
    STATS_REJECTED,
    RECORD_BODY,
    DELIVERY_BODY,
    IDEMPOTENT,
    RECEIPT_TREE,
    RECEIPT_TREES,
    TREE_RECEIPTS,
    ADD_RECEIPT_TREE,
    PURGE_DELIVERED,
    PURGE_DEAD,
    PURGE_RECORDS,
    PURGE_SUBJECTS,
    ACCESS,
    ADD_TERMS,
    TERMS_ID,
    DATA_KEY,
    ADD_DATA_KEY,
    KEYS_WRAPPED_ELSEWHERE,
    REWRAP_KEY,
    DESTROY_KEYS,
    LIVE_KEYS,
    KEY_COUNTS,
    PLAIN_RECORDS,
    PLAIN_DELIVERIES,
    SEAL_RECORD,
    SEAL_DELIVERY,
    PING,
];

#[cfg(test)]
impl Dialect {
    /// Every statement of the dialect, for the engines' tests.
    pub fn statements(&self) -> Vec<&'static str> {
        let mut all = vec![
            self.audit_head,
            self.chain_head,
            self.claim_due,
            self.claim_head,
            self.lease,
            self.replay_one,
            self.replay_recipient,
            self.requeue,
            self.held,
            self.completed,
        ];
        all.extend(self.move_head);
        all.extend(self.lock_records);
        all
    }
}
