-- The generation of each unit's projections: bumped by whatever rewrites them behind the
-- scorer (a replay's or rescore's switch, later an erasure), in the transaction that does
-- it. A scorer holds a unit's leads and aliases in memory (docs/scorer.md, "State in the
-- scorer"); it reads the generations of its batch's units in the query it makes for every
-- batch anyway, and drops what it holds of a unit whose generation moved. A unit without a
-- row is at generation 0.
CREATE TABLE projection_generations (
    unit_id     text PRIMARY KEY,
    generation  bigint NOT NULL
);
