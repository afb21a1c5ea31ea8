-- Schema version 8 on Postgres: the signed head of the tree over each group commit's receipts
-- (format 3, see audit::receipt). The tree's receipts are the records whose audit entry lies
-- between first_seq and last_seq, in that order: one transaction at a time extends the chain, so
-- no other transaction's entry falls between. The heads in first_seq order are the sequence a
-- transparency log would publish.
CREATE TABLE receipt_trees (
    first_seq  BIGINT PRIMARY KEY,
    last_seq   BIGINT NOT NULL,
    size       BIGINT NOT NULL,
    root       BYTEA NOT NULL,
    signed_at  BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BYTEA NOT NULL
);
-- A tree's receipts, read by their entries (a replay's receipt, `audit verify`).
CREATE INDEX records_by_audit_seq ON records(audit_seq);
