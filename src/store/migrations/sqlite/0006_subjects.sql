-- Schema version 6 on SQLite: the subjects of each record, by which the access record of a
-- person finds every delivery that disclosed something about them. The columns and indexes
-- both engines share follow in shared/0006_disclosures.sql.

CREATE TABLE record_subjects (
    -- HMAC-SHA-256 of one subject identifier under the subject key: never the identifier.
    subject     BLOB NOT NULL,
    record_id   TEXT NOT NULL REFERENCES records(record_id),
    -- When the record was accepted: the access record's retention counts from it.
    received_at INTEGER NOT NULL,
    PRIMARY KEY (subject, record_id)
) WITHOUT ROWID;
