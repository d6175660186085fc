-- Fewer, cheaper indexes on the scorer's write path (issue 13, lever 2; the figures are in
-- README "Performance" and docs/scorer.md "Indexes").

-- The form of an import's event ids. From now on 'ordered': `ev_` + a sortable id whose time
-- is the import's created_at and whose next digits are the row number, so the events key
-- (unit_id, event_id) grows at its right edge. Imports recorded before keep 'uuid5' (a
-- random-looking uuid5 each), so that a keyed retry of one of them still publishes the
-- ids its first try did.
ALTER TABLE imports ADD COLUMN event_ids text NOT NULL DEFAULT 'uuid5'
    CHECK (event_ids IN ('uuid5', 'ordered'));
ALTER TABLE imports ALTER COLUMN event_ids SET DEFAULT 'ordered';

-- GET /events without lead_id lists newest received first, by the primary key (event ids
-- are time-ordered): this index on the events' own time cost a random insert per event.
DROP INDEX events_by_time;
