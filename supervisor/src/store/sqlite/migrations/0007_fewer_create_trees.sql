-- Version 7: fewer B-trees written per job create (docs/benchmarks.md, "creates",
-- fifth session).
--
-- Every create wrote nine B-trees. Two of them held nothing the others could not:
--
-- - `audit_by_time` repeated the audit table in its list order. The table is now
--   clustered on that order, `(at_ms, id)`, so one B-tree serves appends, lists and
--   pruning. Ids stay unique: they are UUID v7 made by the node, and a replayed entry
--   carries its own `at_ms` with it.
-- - `jobs_by_enabled` indexed every job, to count them. It becomes a partial index of
--   the enabled jobs' ids: a job created stopped no longer writes it, the count of
--   enabled jobs and the start-up's pages of enabled jobs walk only enabled jobs, and
--   the total count walks the smallest index of `jobs`.

CREATE TABLE audit_v7 (
    id     TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    node   TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    detail TEXT    NOT NULL,
    PRIMARY KEY (at_ms, id)
) STRICT, WITHOUT ROWID;

INSERT INTO audit_v7 (id, at_ms, actor, node, action, target, detail)
SELECT id, at_ms, actor, node, action, target, detail FROM audit;

DROP TABLE audit;
ALTER TABLE audit_v7 RENAME TO audit;
CREATE INDEX audit_by_target ON audit (target, at_ms, id);

DROP INDEX jobs_by_enabled;
CREATE INDEX jobs_enabled ON jobs (id) WHERE enabled = 1;
