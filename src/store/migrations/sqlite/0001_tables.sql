-- The tables of schema version 1 on SQLite; the indexes both engines share follow in
-- shared/0001_indexes.sql, in the same migration.

CREATE TABLE records (
    record_id       TEXT PRIMARY KEY,
    sender          TEXT NOT NULL,
    record_type     TEXT NOT NULL,
    schema_version  TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    body            BLOB,
    body_sha256     BLOB NOT NULL,
    idempotency_key TEXT,
    traceparent     TEXT,
    receipt         BLOB NOT NULL,
    audit_seq       INTEGER NOT NULL
);
-- The retention purge looks for records that still have a body.
CREATE INDEX records_with_body ON records(received_at) WHERE body IS NOT NULL;

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id       TEXT NOT NULL REFERENCES records(record_id),
    recipient       TEXT NOT NULL,
    agreement       TEXT NOT NULL,
    ordered         INTEGER NOT NULL,
    body            BLOB,
    body_digest     BLOB NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    replays         INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    claimed_until   INTEGER NOT NULL DEFAULT 0,
    claimed_by      TEXT
);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    record_id   TEXT,
    agreement   TEXT,
    recipient   TEXT,
    body_digest BLOB,
    outcome     TEXT NOT NULL,
    reason      TEXT,
    count       INTEGER NOT NULL,
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
);

CREATE TABLE audit_checkpoints (
    seq       INTEGER NOT NULL,
    key_id    TEXT NOT NULL,
    hash      BLOB NOT NULL,
    at        INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (seq, key_id)
);
