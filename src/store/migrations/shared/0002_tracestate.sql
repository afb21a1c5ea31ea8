-- Schema version 2: the caller's `tracestate`, passed on with every delivery beside the
-- `traceparent`.
ALTER TABLE records ADD COLUMN tracestate TEXT;
