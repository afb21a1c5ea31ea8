-- Schema version 10, on both engines: two index entries fewer for every delivery settled.
-- The access record finds a delivery's `delivery.delivered` entry among its record's entries
-- (`audit_by_record`: an acceptance and each delivery's attempts), so the index of those
-- entries alone cost the store writer an insert per delivery for a rare read.
DROP INDEX audit_delivered;
-- The completion notices' scan finds the deliveries settled since its last pass through their
-- attempts (`delivery_attempts_by_time`: every settlement is an attempt, push or pull), so the
-- index of settled deliveries by their last attempt goes.
DROP INDEX deliveries_settled;
