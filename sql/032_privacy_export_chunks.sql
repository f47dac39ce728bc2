-- Exports in chunks (issue 12, policy section 8): an export is NDJSON text split over rows of this table, one
-- `{"category": ..., "row": {...}}` line per exported row, instead of one jsonb value (about 256 MB at most; a
-- large organization holds millions of metric rows). `nexjobs privacy download ID` streams the chunks in `seq`
-- order. The request's `result` keeps a summary (format, chunks, rows per category, bytes). Chunks go with their
-- request (retention: 30 days after completion; erasure). Idempotent.
CREATE TABLE IF NOT EXISTS nexcomet.privacy_export_chunks (
    request_id  bigint NOT NULL REFERENCES nexcomet.privacy_requests (id) ON DELETE CASCADE,
    seq         integer NOT NULL CHECK (seq >= 0),
    body        text NOT NULL,
    PRIMARY KEY (request_id, seq)
);
