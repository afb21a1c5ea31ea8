-- Schema version 8 on Sqlite: the signed head of the tree over each group commit's receipts
-- (format 3, see audit::receipt). The tree's receipts are the records whose audit entry lies
-- between first_seq and last_seq, in that order: one transaction at a time extends the chain, so
-- no other transaction's entry falls between. The heads in first_seq order are the sequence a
-- transparency log would publish.
CREATE TABLE receipt_trees (
    first_seq  INTEGER PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    signed_at  INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BLOB NOT NULL
);
-- A tree's receipts, read by their entries (a replay's receipt, `audit verify`).
CREATE INDEX records_by_audit_seq ON records(audit_seq);
