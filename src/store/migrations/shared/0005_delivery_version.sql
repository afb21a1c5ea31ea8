-- Schema version 5, on both engines: the schema version a delivery's body is in, when the
-- recipient is pinned to another version than the record was sent in (NULL: the record's).
ALTER TABLE deliveries ADD COLUMN schema_version TEXT;
