-- Schema version 11, on both engines, after the engine's `disclosure_terms` table: a delivery
-- names its terms instead of holding them. The terms are the same for every delivery of one
-- agreement to one recipient (about 240 bytes each time), and a delivery row is written when it
-- is stored, claimed and settled, so they made its row (and the pages each commit writes) about a
-- third larger for nothing (benches/results/2026-12-05-terms). Terms rows are never deleted or
-- changed: a delivery's terms stay what they were at acceptance.
ALTER TABLE deliveries ADD COLUMN terms_id BIGINT;
INSERT INTO disclosure_terms (purpose, fields)
    SELECT DISTINCT purpose, fields FROM deliveries WHERE purpose IS NOT NULL AND fields IS NOT NULL;
UPDATE deliveries SET terms_id = (
        SELECT t.id FROM disclosure_terms t WHERE t.purpose = deliveries.purpose AND t.fields = deliveries.fields)
    WHERE purpose IS NOT NULL AND fields IS NOT NULL;
ALTER TABLE deliveries DROP COLUMN purpose;
ALTER TABLE deliveries DROP COLUMN fields;
