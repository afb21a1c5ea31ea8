-- Schema version 4 on SQLite: the data keys that seal stored bodies (`store/keys.rs`). The
-- columns and indexes both engines share follow in shared/0004_sealed_bodies.sql.

CREATE TABLE data_keys (
    -- `<agreement>/<UTC day>`: the agreement and the day of the bodies sealed under it.
    id           TEXT PRIMARY KEY,
    -- The key-encryption key `wrapped` is wrapped under (its id, never the key).
    kek_id       TEXT NOT NULL,
    -- The data key, wrapped; NULL once destroyed (crypto-shredding).
    wrapped      BLOB,
    created_at   INTEGER NOT NULL,
    -- Unix ms from which nothing more is sealed under it: the end of its day.
    not_after    INTEGER NOT NULL,
    destroyed_at INTEGER
);
