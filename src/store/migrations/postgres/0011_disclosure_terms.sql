-- Schema version 11 on PostgreSQL: each distinct disclosure (a purpose and the fields it gives)
-- is stored once, and a delivery names it. The column and the copy both engines share follow in
-- shared/0011_disclosure_terms.sql.

CREATE TABLE disclosure_terms (
    id      BIGSERIAL PRIMARY KEY,
    -- The agreement's purpose, as it read when a record was accepted.
    purpose TEXT NOT NULL,
    -- The fields the recipient receives, as a JSON array of pointers: never values.
    fields  TEXT NOT NULL,
    UNIQUE (purpose, fields)
);
