-- Which gateway process publishes an import, so that an import a crash left 'publishing'
-- is found and marked 'failed' (ingest_gateway/recovery.py, docs/api.md "Crashes").
--   publisher         the gateway instance's name (LEADVIBE_GATEWAY_INSTANCE, host:port by
--                     default): one process at a time holds it
--   publisher_boot    a random id of that process, new at every start
--   publishing_since  when this attempt began publishing (a retry takes the row over)
ALTER TABLE imports
    ADD COLUMN publisher        text,
    ADD COLUMN publisher_boot   text,
    ADD COLUMN publishing_since timestamptz;

CREATE INDEX imports_publishing ON imports (publisher) WHERE status = 'publishing';
