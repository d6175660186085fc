-- Standard Webhooks signing with secret rotation, and fair delivery across units.
--
-- Signing secrets are still derived, never stored (trigger_service/webhooks.py): a trigger
-- holds the version of its current secret and, during a rollover, the version of the
-- previous one and when that stops signing. Version 0 has the key bytes of the secret
-- shown before this migration.
ALTER TABLE triggers
    ADD COLUMN secret_version integer NOT NULL DEFAULT 0,
    ADD COLUMN previous_secret_version integer,
    ADD COLUMN previous_secret_expires_at timestamptz,
    -- Triggers made before this migration keep the old X-LeadVibe-Signature header (over
    -- the body, keyed with the secret's old text) while their version-0 secret signs.
    ADD COLUMN legacy_signature boolean NOT NULL DEFAULT true,
    ADD CONSTRAINT triggers_previous_secret
        CHECK ((previous_secret_version IS NULL) = (previous_secret_expires_at IS NULL));
ALTER TABLE triggers ALTER COLUMN legacy_signature SET DEFAULT false;

-- The delivery worker claims round-robin across units: it walks the units that have
-- pending firings (a skip scan of this index) from where its last claim stopped, and
-- takes the oldest due firings of each of their triggers.
CREATE INDEX trigger_firings_queues ON trigger_firings (unit_id, trigger_id, next_attempt_at)
    WHERE delivery_status = 'pending';
