-- Scoring: the rulesets a unit manages over the API, and the projections the scorer keeps
-- (leads, aliases, events, per-ruleset scores, alias conflicts).
--
-- The projection tables carry their unit but no foreign keys: the scorer is their only
-- writer, checks each record's unit once per batch, and they can be dropped and rebuilt
-- by replaying the events topic (DESIGN.md decision 1). A foreign key would cost a lookup
-- per inserted row on the hot path and nothing else.

CREATE TABLE rulesets (
    ruleset_id  text PRIMARY KEY,
    unit_id     text NOT NULL REFERENCES org_units (unit_id) ON DELETE CASCADE,
    name        text NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    -- Validity of the ruleset for an event's own timestamp: starts_at <= t < ends_at.
    starts_at   timestamptz,
    ends_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (unit_id, name),
    CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at)
);

CREATE TABLE rules (
    ruleset_id  text NOT NULL REFERENCES rulesets (ruleset_id) ON DELETE CASCADE,
    event_type  text NOT NULL,
    points      integer NOT NULL,
    position    integer NOT NULL,  -- the order the client gave, returned as given
    PRIMARY KEY (ruleset_id, event_type)
);

CREATE TABLE leads (
    unit_id         text NOT NULL,
    lead_id         text NOT NULL,
    score           bigint NOT NULL DEFAULT 0,
    event_count     bigint NOT NULL DEFAULT 0,
    first_event_at  timestamptz,
    last_event_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, lead_id)
);

CREATE INDEX leads_by_score ON leads (unit_id, score DESC, lead_id);

-- A lead's score is the sum of these: one row per ruleset that ever scored it.
CREATE TABLE lead_ruleset_scores (
    unit_id     text NOT NULL,
    lead_id     text NOT NULL,
    ruleset_id  text NOT NULL,
    score       bigint NOT NULL,
    PRIMARY KEY (unit_id, lead_id, ruleset_id)
);

-- An alias (normalised value) belongs to at most one lead of a unit. The primary key is
-- what makes two scorers racing on the same new alias end with one lead: the second
-- claim finds the first one's row and that scorer resolves its batch again.
CREATE TABLE aliases (
    unit_id     text NOT NULL,
    kind        text NOT NULL,
    value       text NOT NULL,
    lead_id     text NOT NULL,
    event_id    text NOT NULL,  -- the event that attached it
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, kind, value)
);

CREATE INDEX aliases_by_lead ON aliases (unit_id, lead_id);

-- Unique per (unit, event_id): an event published twice is applied once.
CREATE TABLE events (
    unit_id        text NOT NULL,
    event_id       text NOT NULL,
    lead_id        text NOT NULL,
    event_type     text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    source         text NOT NULL,
    skip_triggers  boolean NOT NULL,
    import_id      text,
    import_row     integer,
    points         bigint NOT NULL,
    score_after    bigint NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, event_id)
);

CREATE INDEX events_by_lead ON events (unit_id, lead_id, occurred_at DESC, event_id DESC);
CREATE INDEX events_by_time ON events (unit_id, occurred_at DESC, event_id DESC);

-- An event named an alias that another lead already owns. The alias stays where it was
-- (never merged silently); this row lets a person decide.
CREATE TABLE alias_conflicts (
    unit_id        text NOT NULL,
    event_id       text NOT NULL,
    kind           text NOT NULL,
    value          text NOT NULL,
    owner_lead_id  text NOT NULL,  -- keeps the alias
    event_lead_id  text NOT NULL,  -- the lead the event was applied to
    detected_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, event_id, kind, value)
);

CREATE INDEX alias_conflicts_by_owner ON alias_conflicts (unit_id, owner_lead_id);
CREATE INDEX alias_conflicts_by_event_lead ON alias_conflicts (unit_id, event_lead_id);
