-- Organisations, their units, API tokens, and the offsets consumers store beside their effects.

CREATE TABLE organizations (
    org_id      text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE org_units (
    unit_id     text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES organizations (org_id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

-- Only a SHA-256 of each token is kept; the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    token_hash      bytea PRIMARY KEY,
    org_id          text NOT NULL REFERENCES organizations (org_id),
    active_unit_id  text NOT NULL REFERENCES org_units (unit_id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);

-- "Storing offsets outside Kafka": a consumer writes its effects and the next offset to
-- read in one transaction, and seeks here on start and on every partition assignment.
CREATE TABLE consumer_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
