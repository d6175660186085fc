-- Milestone triggers (managed over the API), their firings, and the log of every webhook
-- delivery attempt. The firings table is also the durable delivery queue: a pending
-- firing carries the time of its next attempt, so a restarted trigger service resumes
-- the deliveries it had not finished.

CREATE TABLE triggers (
    trigger_id       text PRIMARY KEY,
    unit_id          text NOT NULL REFERENCES org_units (unit_id) ON DELETE CASCADE,
    name             text NOT NULL,
    score_threshold  bigint NOT NULL,
    event_type       text,  -- NULL: any event type
    fire_mode        text NOT NULL CHECK (fire_mode IN ('once', 'always')),
    webhook_url      text NOT NULL,
    active           boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (unit_id, name)
);

-- The consumer reads the active triggers of a batch's units once per batch.
CREATE INDEX triggers_active ON triggers (unit_id) WHERE active;

-- One row per firing, written in the consumer's transaction with its offsets. The
-- threshold and fire mode are copied from the trigger as it was when it fired, so the
-- webhook body is the same bytes on every attempt even if the trigger is edited since.
-- No foreign key to triggers: its check is a lookup per inserted row. The consumer
-- key-share-locks the triggers a batch fires (one statement), and deleting a trigger
-- deletes its firings, and with them any delivery still pending, in the same transaction.
CREATE TABLE trigger_firings (
    firing_id        text PRIMARY KEY,  -- derived from (trigger, event): stable across replays
    unit_id          text NOT NULL,
    trigger_id       text NOT NULL,
    lead_id          text NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    score_threshold  bigint NOT NULL,
    score_before     bigint NOT NULL,
    score_after      bigint NOT NULL,
    once             boolean NOT NULL,
    fired_at         timestamptz NOT NULL,
    delivery_status  text NOT NULL DEFAULT 'pending'
                     CHECK (delivery_status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,  -- set while pending; a claim pushes it out as a lease
    delivered_at     timestamptz,
    last_error       text,
    UNIQUE (trigger_id, event_id),
    CHECK ((delivery_status = 'pending') = (next_attempt_at IS NOT NULL))
);

-- A fire-once trigger fires at most once per lead, ever (DESIGN.md decision 2).
CREATE UNIQUE INDEX trigger_firings_once ON trigger_firings (trigger_id, lead_id) WHERE once;
-- "Has this lead fired this trigger before?", for a trigger switched to fire-once later.
CREATE INDEX trigger_firings_by_lead ON trigger_firings (trigger_id, lead_id);
CREATE INDEX trigger_firings_listing ON trigger_firings (trigger_id, fired_at DESC, firing_id);
-- The delivery queue: only pending firings, by when they are due.
CREATE INDEX trigger_firings_due ON trigger_firings (next_attempt_at)
    WHERE delivery_status = 'pending';

-- Every webhook attempt, successful or not. An attempt is logged when it ends: one cut
-- short by a crash is not logged, and is made again under the same number.
CREATE TABLE webhook_attempts (
    firing_id    text NOT NULL REFERENCES trigger_firings (firing_id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    unit_id      text NOT NULL,
    url          text NOT NULL,
    started_at   timestamptz NOT NULL,
    duration_ms  integer NOT NULL,
    status_code  integer,  -- NULL when no response came (refused, timeout, connection error)
    error        text,     -- NULL when the receiver answered 2xx
    PRIMARY KEY (firing_id, attempt)
);
