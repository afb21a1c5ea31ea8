-- Schema version 7, on both engines: what an operator investigating a record needs.

-- One row per delivery attempt, written in the transaction that records the attempt's result:
-- when, what it made of the delivery, the recipient's status, how long it took and what kind
-- of failure it met. Never a body or a value. Kept like the delivery rows (the purge deletes
-- bodies, not metadata).
CREATE TABLE delivery_attempts (
    delivery_id     BIGINT NOT NULL REFERENCES deliveries(id),
    attempt         INTEGER NOT NULL,
    at              BIGINT NOT NULL,
    -- `delivered`, `retrying` or `dead`: the delivery's status after the attempt.
    outcome         TEXT NOT NULL,
    status          INTEGER,
    latency_ms      BIGINT,
    -- `store::ErrorClass`: a fixed label, never the recipient's answer.
    error_class     TEXT,
    next_attempt_at BIGINT,
    PRIMARY KEY (delivery_id, attempt)
);
-- The statistics read attempts by time.
CREATE INDEX delivery_attempts_by_time ON delivery_attempts(at);
-- Records by time range, whoever sent them (the console's search and statistics).
CREATE INDEX records_by_time ON records(received_at DESC, record_id DESC);
-- The audit entries that name a record, and the trail by time.
CREATE INDEX audit_by_record ON audit_log(record_id) WHERE record_id IS NOT NULL;
CREATE INDEX audit_by_time ON audit_log(at);
-- Deliveries by agreement: the deliveries list's filter and an agreement's statistics.
CREATE INDEX deliveries_by_agreement ON deliveries(agreement, id);
