-- Schema version 4, on both engines: which data key each stored body is sealed under (NULL for
-- a body stored in plaintext, before encryption or with it turned off).
ALTER TABLE records ADD COLUMN key_id TEXT;
ALTER TABLE deliveries ADD COLUMN key_id TEXT;
-- A data key is destroyed once no body is left under it: these answer "any body left?" per key,
-- and find the plaintext bodies `passerelle store encrypt` seals.
CREATE INDEX records_by_key ON records(key_id) WHERE body IS NOT NULL;
CREATE INDEX deliveries_by_key ON deliveries(key_id) WHERE body IS NOT NULL;
