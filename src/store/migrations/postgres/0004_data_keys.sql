-- Schema version 4 on PostgreSQL: the data keys that seal stored bodies (`store/keys.rs`). The
-- columns and indexes both engines share follow in shared/0004_sealed_bodies.sql.

CREATE TABLE data_keys (
    -- `<agreement>/<UTC day>`: the agreement and the day of the bodies sealed under it.
    id           TEXT PRIMARY KEY,
    -- The key-encryption key `wrapped` is wrapped under (its id, never the key).
    kek_id       TEXT NOT NULL,
    -- The data key, wrapped; NULL once destroyed (crypto-shredding).
    wrapped      BYTEA,
    created_at   BIGINT NOT NULL,
    -- Unix ms from which nothing more is sealed under it: the end of its day.
    not_after    BIGINT NOT NULL,
    destroyed_at BIGINT
);
