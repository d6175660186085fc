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

-- GET /leads sorts the unit's leads by score when asked (a top-N sort) instead of reading
-- an index that every score change rewrote: without an index on score, a lead's update
-- is HOT (heap-only: no index entry at all), given room on its page, which fillfactor 80
-- keeps for the pages written from now on (existing pages get it as they are rewritten).
DROP INDEX leads_by_score;
ALTER TABLE leads SET (fillfactor = 80);
