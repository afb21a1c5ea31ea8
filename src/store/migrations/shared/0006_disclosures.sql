-- Schema version 6, on both engines, after the engine's `record_subjects` table: what each
-- delivery discloses and why, fixed at acceptance (NULL for a delivery stored before, or one
-- that discloses nothing of a person).
ALTER TABLE deliveries ADD COLUMN purpose TEXT;
-- The fields the recipient receives, as a JSON array of pointers: never values.
ALTER TABLE deliveries ADD COLUMN fields TEXT;
-- The purge removes the subjects past the access record's own retention.
CREATE INDEX record_subjects_by_age ON record_subjects(received_at);
-- The access record shows each delivery's `delivery.delivered` entry, found by its record and
-- recipient; only those entries are indexed.
CREATE INDEX audit_delivered ON audit_log(record_id, recipient) WHERE kind = 'delivery.delivered';
