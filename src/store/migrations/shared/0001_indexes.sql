-- The indexes of schema version 1, the same on both engines (run after the engine's tables).

-- One record per (sender, idempotency key): the uniqueness holds inside the commit.
CREATE UNIQUE INDEX records_idempotency ON records(sender, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A sender's records, newest first (`GET /v1/records`).
CREATE INDEX records_by_sender ON records(sender, received_at DESC, record_id DESC);

CREATE INDEX deliveries_by_record ON deliveries(record_id);
-- What a worker claims: the due deliveries of one recipient.
CREATE INDEX deliveries_pending ON deliveries(recipient, next_attempt_at, id)
    WHERE status IN ('queued', 'retrying');
-- What operators list (`/admin/v1/deliveries?status=`).
CREATE INDEX deliveries_by_status ON deliveries(status, recipient, id);
