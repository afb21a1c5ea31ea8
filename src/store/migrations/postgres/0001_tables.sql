-- The tables of schema version 1 on PostgreSQL; the indexes both engines share follow in
-- shared/0001_indexes.sql, in the same migration.

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

-- The chain head, one row: every transaction that extends the chain locks it first, so
-- instances sharing the database extend one chain.
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
