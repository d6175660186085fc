-- CSV imports (POST /import) and how far the scorer has applied each one.

-- One row per upload whose file passed the whole-file checks, written before its events are
-- published ('publishing'), then marked 'completed' once Kafka acknowledged every event, or
-- 'failed' when publishing could not finish. A keyed upload retried after a failure
-- reuses its row (same import id, same event ids); a completed one is answered from here.
CREATE TABLE imports (
    unit_id          text NOT NULL REFERENCES org_units (unit_id),
    import_id        text NOT NULL,
    idempotency_key  text,
    status           text NOT NULL CHECK (status IN ('publishing', 'completed', 'failed')),
    skip_triggers    boolean NOT NULL,
    imported         bigint NOT NULL,
    errors           bigint NOT NULL,
    -- [{"row": 7, "error": "timestamp: not RFC 3339: '2025-13-01'"}, ...]: the first 10,000.
    error_rows       jsonb NOT NULL DEFAULT '[]',
    ignored_columns  text[] NOT NULL DEFAULT '{}',
    failure          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    PRIMARY KEY (unit_id, import_id),
    UNIQUE (unit_id, idempotency_key)
);

-- Filled by the scorer: how many of an import's events it has applied (for progress).
CREATE TABLE import_progress (
    unit_id          text NOT NULL,
    import_id        text NOT NULL,
    applied          bigint NOT NULL DEFAULT 0,
    last_applied_at  timestamptz,
    PRIMARY KEY (unit_id, import_id)
);
