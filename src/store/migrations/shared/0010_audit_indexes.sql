-- Schema version 10, on both engines: one index fewer for every delivery's audit entry.
-- The access record finds a delivery's `delivery.delivered` entry among its record's entries
-- (`audit_by_record`: an acceptance and each delivery's attempts), so the index of those
-- entries alone cost the store writer an insert per delivery for a rare read.
DROP INDEX audit_delivered;
