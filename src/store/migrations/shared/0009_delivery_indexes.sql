-- Schema version 9, on both engines: indexes a new delivery does not enter. The store writer
-- writes every delivery of an accepted record into each index whose condition it meets, and at
-- an acceptance burst that is where its time goes (benches/results/2026-12-05-burst). A queued
-- delivery entered six indexes; now three: by record, pending, by data key. Each of the others
-- holds only deliveries in the state its reads look for.

-- The pending deliveries of each recipient by due time, with their status: the claims read it,
-- and the backlog counts queued and retrying deliveries over it alone.
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_pending ON deliveries(recipient, next_attempt_at, id, status)
    WHERE status IN ('queued', 'retrying');
-- The dead deliveries of each recipient: the backlog's dead count, a recipient's replay.
CREATE INDEX deliveries_dead ON deliveries(recipient, id) WHERE status = 'dead';
-- Settled deliveries that still hold a body, by when they settled: what the purge deletes. A
-- delivery leaves them when its body goes.
CREATE INDEX deliveries_delivered_with_body ON deliveries(delivered_at)
    WHERE status = 'delivered' AND body IS NOT NULL;
CREATE INDEX deliveries_dead_with_body ON deliveries(last_attempt_at)
    WHERE status = 'dead' AND body IS NOT NULL;
-- Every delivery by status: the three above serve each of its reads.
DROP INDEX deliveries_by_status;
-- Settled deliveries by their last attempt: the completion notices' scan reads those settled
-- since its last pass (a record completes or fails only when one of its deliveries settles).
DROP INDEX deliveries_by_last_attempt;
CREATE INDEX deliveries_settled ON deliveries(last_attempt_at) WHERE status IN ('delivered', 'dead');
-- The statistics' agreement filter looks among a record's own deliveries (deliveries_by_record);
-- SQLite chose this index for it instead and read every delivery of the agreement per record.
-- The deliveries list walks deliveries by id and filters, as it did on SQLite.
DROP INDEX deliveries_by_agreement;
