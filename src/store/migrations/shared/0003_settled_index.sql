-- Schema version 3: deliveries by when they were last attempted, so the completion notices'
-- scan (`NOTICES_DUE`) reads only the deliveries that settled since its last pass.
CREATE INDEX deliveries_by_last_attempt ON deliveries(last_attempt_at);
